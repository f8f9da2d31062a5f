"""Debian archive index: which exact .deb files hold a kernel's headers.

We read `dists/<suite>/InRelease` for the sha256 and size of
`main/binary-<arch>/Packages.xz`, fetch that index through the content-addressed cache
(so the index itself is verified), and keep only the `linux-*` stanzas we need. The
chain starts at the InRelease signature, checked with gpgv against the keyring in
`Mirrors.debian_keyring` (the host's debian-archive-keyring unless configured): only
the text it signs is read, so a mirror or proxy cannot hand us other headers than
Debian published. As apt does, one good signature by a trusted key suffices and any bad
one fails; a signature by a key we lack (a newer release's) is ignored.

Suites come from the mirror roots in `Mirrors` (read from the host's apt sources by
driverkit.mirrors): the main root serves the release suites, -updates and -backports;
the security root, when apt lists one, serves `<codename>-security`.
"""

from __future__ import annotations

import functools
import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from driverkit.cache import DownloadCache, atomic_write_bytes
from driverkit.errors import DownloadError, HeadersNotFoundError
from driverkit.targets.base import Mirrors
from driverkit.targets.debian import crawled_codenames, suite_facts

# Kernel flavors the catalog covers; other flavors are resolvable but not crawled.
FLAVORS = ("amd64", "cloud-amd64", "rt-amd64")
INDEX_MAX_AGE_S = 6 * 3600
_PARSED_FORMAT = 1
# An ABI release has a three-part version: 5.10.0-30-amd64, 6.12.48+deb13-amd64,
# 6.1.0-0.deb11.52-amd64. Meta packages (linux-headers-6.12-amd64) have two parts.
_RELEASE_RE = re.compile(
    r"^linux-headers-(\d+\.\d+\.\d+[-+][0-9A-Za-z.+-]*?-(?:amd64|arm64|cloud-amd64|cloud-arm64|rt-amd64|rt-arm64))$"
)


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    architecture: str
    filename: str  # pool path relative to `root`
    size: int
    sha256: str
    depends: tuple[str, ...]  # raw comma-separated entries
    root: str  # mirror root serving this package
    suite: str

    @property
    def url(self) -> str:
        return f"{self.root.rstrip('/')}/{self.filename}"


@dataclass(frozen=True)
class KernelHeaders:
    """The packages that together make a usable headers tree for one kernel release."""

    release: str
    version: str  # Debian package version, e.g. 6.1.170-3
    suite: str
    packages: tuple[DebPackage, ...]  # headers-<rel>, headers-<...>-common, kbuild


@dataclass(frozen=True)
class KernelEntry:
    release: str  # uname -r, e.g. 6.1.0-47-amd64
    version: str  # Debian package version
    suite: str
    flavor: str


def suite_roots(
    mirrors: Mirrors, codenames: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """(suite, root) pairs to index, in preference order (release before updates).
    `codenames` defaults to the suites the suite table marks as crawled."""
    pairs: list[tuple[str, str]] = []
    for code in crawled_codenames() if codenames is None else codenames:
        suite = suite_facts(code)  # which companion suites it has: the suite table
        if mirrors.debian:
            pairs.append((code, mirrors.debian))
            if suite.has_updates:
                pairs.append((f"{code}-updates", mirrors.debian))
            if suite.backports_crawled:
                pairs.append((f"{code}-backports", mirrors.debian))
        if mirrors.debian_security and suite.has_security:
            pairs.append((f"{code}-security", mirrors.debian_security))
    return pairs


def verified_text(keyrings: str, signed: Path, detached: Path | None = None, *,
                  what: str) -> str:
    """The text a Release file vouches for: InRelease's signed part, or Release itself
    when `detached` (Release.gpg) holds its signature. Raises DownloadError unless gpgv
    finds a good signature by a key in `keyrings` (os.pathsep-separated) and no bad one.
    """
    rings = [k for k in keyrings.split(os.pathsep) if k]
    if not rings:
        raise DownloadError(f"{what}: no keyring to verify it with; install "
                            "debian-archive-keyring or set DRIVERKIT_DEBIAN_KEYRING")
    missing = [k for k in rings if not Path(k).is_file()]
    if missing:
        raise DownloadError(f"{what}: keyring {missing[0]} does not exist; install "
                            "debian-archive-keyring or set DRIVERKIT_DEBIAN_KEYRING")
    if shutil.which("gpgv") is None:
        raise DownloadError(f"{what}: verifying its signature needs gpgv (package gpgv)")
    with tempfile.TemporaryDirectory(prefix="driverkit-gpgv-") as tmp:
        out = Path(tmp) / "signed"
        files = [str(detached), str(signed)] if detached is not None else [str(signed)]
        done = subprocess.run(
            ["gpgv", "--status-fd", "1", *(f"--keyring={Path(k).resolve()}" for k in rings),
             *(["--output", str(out)] if detached is None else []), *files],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        status = [line.split()[1:2] for line in done.stdout.splitlines()
                  if line.startswith("[GNUPG:] ")]  # fmt: skip
        good = ["GOODSIG"] in status
        bad = any(s in (["BADSIG"], ["EXPKEYSIG"], ["REVKEYSIG"]) for s in status)
        if not good or bad:
            said = (done.stderr.strip().splitlines() or ["no signature found"])[-1]
            raise DownloadError(f"{what}: signature not verified against {keyrings} "
                                f"({said.removeprefix('gpgv: ')})")
        if detached is not None:
            return signed.read_text(errors="replace")
        return out.read_text(errors="replace")


def parse_release(text: str) -> dict[str, tuple[str, int]]:
    """Map index path -> (sha256, size) from the SHA256 section of a Release/InRelease."""
    out: dict[str, tuple[str, int]] = {}
    in_sha = False
    for line in text.splitlines():
        if not line.startswith(" "):
            in_sha = line.strip() == "SHA256:"
            continue
        if in_sha:
            parts = line.split()
            if len(parts) == 3:
                out[parts[2]] = (parts[0], int(parts[1]))
    return out


def parse_depends(field: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in field.split(",") if part.strip())


def depends_names(entries: Iterable[str]) -> list[tuple[str, str | None]]:
    """(package, exact version or None) for the first alternative of each Depends entry."""
    result: list[tuple[str, str | None]] = []
    for entry in entries:
        first = entry.split("|")[0].strip()
        m = re.match(
            r"^([a-z0-9][a-z0-9+.-]*)(?::\w+)?\s*(?:\(\s*([<>=]+)\s*([^)\s]+)\s*\))?", first
        )
        if not m:
            continue
        exact = m.group(3) if m.group(2) == "=" else None
        result.append((m.group(1), exact))
    return result


def parse_packages(
    text: str, root: str, suite: str, prefix: str = "linux-"
) -> dict[str, list[DebPackage]]:
    """Parse a Packages file, keeping packages whose name starts with `prefix`.

    The full bookworm index is ~50 MB; filtering on the first line keeps this fast.
    """
    out: dict[str, list[DebPackage]] = {}
    for stanza in text.split("\n\n"):
        if not stanza.startswith(f"Package: {prefix}"):
            continue
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        try:
            pkg = DebPackage(
                name=fields["Package"],
                version=fields["Version"],
                architecture=fields.get("Architecture", ""),
                filename=fields["Filename"],
                size=int(fields["Size"]),
                sha256=fields["SHA256"],
                depends=parse_depends(fields.get("Depends", "")),
                root=root,
                suite=suite,
            )
        except (KeyError, ValueError):
            continue
        out.setdefault(pkg.name, []).append(pkg)
    return out


# --- Debian version ordering (dpkg's algorithm), needed to pick the newest upload. ---


def _order(ch: str) -> int:
    if ch == "~":
        return -1
    if ch.isdigit():
        return 0
    if ch.isalpha():
        return ord(ch)
    return ord(ch) + 256


def _cmp_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not diff:
                diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if diff:
            return diff
    return 0


def compare_versions(a: str, b: str) -> int:
    """Negative, zero or positive as Debian version `a` sorts before, equal to, after `b`."""

    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(epoch or 0), upstream, revision

    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return ea - eb
    return _cmp_part(ua, ub) or _cmp_part(ra, rb)


def newest(pkgs: Iterable[DebPackage]) -> DebPackage:
    return max(pkgs, key=functools.cmp_to_key(_by_version))


def _closest(options: Sequence[DebPackage], version: str) -> DebPackage:
    """The dependency build nearest the kernel's own: the same version, else the oldest
    one not older than it (kbuild tools closest to the kernel), else the newest."""
    same = [p for p in options if p.version == version]
    if same:
        return same[0]
    newer = [p for p in options if compare_versions(p.version, version) > 0]
    if newer:
        return min(newer, key=functools.cmp_to_key(_by_version))
    return newest(options)


def _by_version(x: DebPackage, y: DebPackage) -> int:
    return compare_versions(x.version, y.version)


class DebianArchive:
    """Lazily indexed view of the kernel packages across the configured suites."""

    def __init__(
        self,
        mirrors: Mirrors,
        cache: DownloadCache | None = None,
        arch: str = "amd64",
        codenames: Sequence[str] | None = None,  # None: the crawled suites
        index_max_age_s: float = INDEX_MAX_AGE_S,
    ):
        self.mirrors = mirrors
        self.cache = cache or DownloadCache()
        self.arch = arch
        self.suites = suite_roots(mirrors, codenames)
        self.index_max_age_s = index_max_age_s
        self._lock = threading.Lock()
        self._indexes: dict[str, dict[str, list[DebPackage]]] = {}
        self.unreachable: dict[str, str] = {}  # suite -> reason, for the catalog report

    def packages(self, suite: str) -> dict[str, list[DebPackage]]:
        """The suite's linux-* packages; an unreachable suite indexes as empty (recorded)."""
        with self._lock:
            if suite not in self._indexes:
                root = dict(self.suites)[suite]
                try:
                    self._indexes[suite] = self._load_index(suite, root)
                except DownloadError as exc:
                    self.unreachable[suite] = str(exc)
                    self._indexes[suite] = {}
            return self._indexes[suite]

    def _load_index(self, suite: str, root: str) -> dict[str, list[DebPackage]]:
        base = f"{root.rstrip('/')}/dists/{suite}"
        keyrings = self.mirrors.debian_keyring
        try:
            inrelease = self.cache.fetch_fresh(f"{base}/InRelease", self.index_max_age_s)
        except DownloadError:
            # Some mirrors and old suites publish Release with a detached Release.gpg only.
            release = self.cache.fetch_fresh(f"{base}/Release", self.index_max_age_s)
            signature = self.cache.fetch_fresh(f"{base}/Release.gpg", self.index_max_age_s)
            text = verified_text(keyrings, release, signature, what=f"{base}/Release")
        else:
            text = verified_text(keyrings, inrelease, what=f"{base}/InRelease")
        checksums = parse_release(text)
        rel_path = f"main/binary-{self.arch}/Packages.xz"
        if rel_path not in checksums:
            raise DownloadError(f"{base}/InRelease does not list {rel_path}")
        sha, size = checksums[rel_path]
        parsed = self.cache.root / "parsed" / f"{sha}-{_PARSED_FORMAT}.json"
        if parsed.is_file():
            raw = json.loads(parsed.read_text())
            return {
                name: [DebPackage(**{**p, "depends": tuple(p["depends"])}) for p in plist]
                for name, plist in raw.items()
            }
        blob = self.cache.fetch(f"{base}/{rel_path}", sha, size)
        text = lzma.decompress(blob.read_bytes()).decode("utf-8", errors="replace")
        index = parse_packages(text, root, suite)
        payload = {name: [asdict(p) for p in plist] for name, plist in index.items()}
        atomic_write_bytes(parsed, json.dumps(payload).encode())
        return index

    def _candidates(self, name: str) -> list[DebPackage]:
        found: list[DebPackage] = []
        for suite, _ in self.suites:
            found.extend(self.packages(suite).get(name, []))
        return found

    def find_headers(self, release: str, version: str | None = None) -> KernelHeaders:
        """Exact header packages for `release` (the newest upload, or `version`),
        following Depends to -common and kbuild."""
        name = f"linux-headers-{release}"
        candidates = self._candidates(name)
        if version is not None:
            candidates = [p for p in candidates if p.version == version]
        if not candidates:
            tried = ", ".join(s for s, _ in self.suites)
            # An unreadable suite (signature, network) may be why: say so.
            untrusted = sorted((s, why) for s, why in self.unreachable.items()
                               if "signature" in why or "keyring" in why)  # fmt: skip
            unreadable = "" if not untrusted else (
                f"; {untrusted[0][0]} unreadable: {untrusted[0][1]}"
                + (f" (and {len(untrusted) - 1} more suites)" if len(untrusted) > 1 else ""))
            raise HeadersNotFoundError(
                f"no package {name} in Debian suites {tried} "
                f"(mirror roots: {self.mirrors.debian or '-'}, "
                f"{self.mirrors.debian_security or '-'}){unreadable}"
            )
        top = newest(candidates)
        chosen = [top]
        for dep, exact in depends_names(top.depends):
            if not dep.startswith(("linux-headers-", "linux-kbuild-")):
                continue
            options = self._candidates(dep)
            if exact is not None:
                options = [p for p in options if p.version == exact]
            if not options:
                raise HeadersNotFoundError(
                    f"{name} {top.version} depends on {dep} which no indexed suite has"
                )
            chosen.append(_closest(options, top.version))
        return KernelHeaders(release, top.version, top.suite, tuple(chosen))

    def package_by_url(self, url: str) -> DebPackage | None:
        """The indexed package a pool URL points at (to verify catalog URLs by sha256)."""
        for suite, _ in self.suites:
            for plist in self.packages(suite).values():
                for pkg in plist:
                    if pkg.url == url:
                        return pkg
        return None

    def find_image(self, release: str) -> DebPackage | None:
        """The kernel image package (unsigned preferred: it holds the plain vmlinuz)."""
        for name in (f"linux-image-{release}-unsigned", f"linux-image-{release}"):
            found = self._candidates(name)
            if found:
                return newest(found)
        return None

    def kernel_releases(self, suite: str) -> list[KernelEntry]:
        entries: list[KernelEntry] = []
        arch_suffix = self.arch
        for name, plist in self.packages(suite).items():
            m = _RELEASE_RE.match(name)
            if not m:
                continue
            release = m.group(1)
            flavor = next(
                (f for f in sorted(FLAVORS, key=len, reverse=True) if release.endswith("-" + f)),
                None,
            )
            if flavor is None or not flavor.endswith(arch_suffix):
                continue
            for pkg in plist:
                entries.append(KernelEntry(release, pkg.version, suite, flavor))
        return sorted(entries, key=lambda e: (e.release, e.version))


def write_fixture_excerpt(packages_text: str, names: Iterable[str], dest: Path) -> None:
    """Keep selected stanzas of a real Packages file: used to record test fixtures."""
    wanted = set(names)
    keep = [s for s in packages_text.split("\n\n") if s.partition("\n")[0][9:] in wanted]
    atomic_write_bytes(dest, ("\n\n".join(keep) + "\n").encode())
