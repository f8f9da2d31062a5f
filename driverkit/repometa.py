"""Turn a non-Debian target's candidate header URLs into exact, existing package URLs.

The targets (driverkit.targets) stay pure: they name where headers are likely to be. This
module is the network step that finds out where they actually are, the way driverkit does:

- Amazon Linux: candidates are repository `mirror.list` files. Each names a mirror whose
  `repodata/repomd.xml` points at `primary.sqlite.*` (or `primary.xml.*`); the
  `kernel-devel` entry for the release gives the rpm's location and its sha256.
- rpm distros with computable file names (CentOS, Rocky, Fedora, Photon, ...): a HEAD
  check per candidate; when none exists, the candidates' repositories' own indexes are
  searched for the same file name (point releases move to a vault, `Packages/` grows
  letter directories), which also yields a published sha256.
- openSUSE/SLES need two rpms (flavored devel + noarch kernel-devel); Ubuntu needs the
  arch `.deb` and its `_all.deb` from the same pool directory.
- everything else (Arch, vanilla, ...): the first candidate that exists.

Parsing functions are pure (bytes in, data out); all HTTP goes through `_Http`, which also
records every URL tried so a failure is ONE line naming them.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import re
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from drivercore.kernelrelease import parse_kernel_release
from driverkit.cache import DownloadCache, atomic_write_bytes, decompress_by_suffix
from driverkit.errors import HeadersNotFoundError, InvalidKernelReleaseError, UsageError
from driverkit.plan import BuildPlan
from driverkit.targets import get_target
from driverkit.targets.base import HeaderLookup
from driverkit.targets.common import rpm_arch, rpm_release_with_arch
from driverkit.targets.vanilla import kernel_org_urls

DEFAULT_TIMEOUT_S = 15.0
# Metadata caps: a primary index of a large repository is tens of MB compressed; anything
# far beyond that is not metadata and must not be read into memory.
MAX_SMALL_BYTES = 1 << 20  # mirror.list, repomd.xml, Flatcar package lists
MAX_PRIMARY_BYTES = 256 << 20
# Answers that mean "HEAD is not allowed here", not "missing": retry as a 1-byte GET.
HEAD_REFUSED = frozenset({403, 405, 501})

_REPO_NS = "{http://linux.duke.edu/metadata/repo}"
_COMMON_NS = "{http://linux.duke.edu/metadata/common}"
_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
_RPM_ARCH_DIRS = frozenset({"x86_64", "aarch64", "noarch"})
_FLATCAR_KERNEL = re.compile(rb"sys-kernel/coreos-(?:kernel|sources)-(\d+\.\d+\.\d+)\b")


@dataclass(frozen=True)
class ExactPackage:
    """A package file that exists; sha256/size come from repository metadata when it has them."""

    url: str
    sha256: str = ""
    size: int = 0


@dataclass(frozen=True)
class RepoDataFile:
    """One `<data>` entry of repomd.xml."""

    kind: str  # "primary", "primary_db", ...
    href: str  # relative to the repository root
    checksum: str
    checksum_type: str
    size: int


@dataclass(frozen=True)
class RpmEntry:
    """One package of a primary index."""

    name: str
    arch: str
    version: str
    release: str
    href: str  # location, relative to `base` or, when empty, to the repository root
    base: str
    checksum: str
    checksum_type: str
    size: int

    @property
    def filename(self) -> str:
        return self.href.rsplit("/", 1)[-1]

    @property
    def sha256(self) -> str:
        return self.checksum if self.checksum_type == "sha256" else ""

    def url(self, repo_root: str) -> str:
        base = self.base or repo_root
        return urljoin(base.rstrip("/") + "/", self.href)


class MetadataError(ValueError):
    """Repository metadata that cannot be read; recorded as the outcome of its URL."""


# ---------------------------------------------------------------------------------------
# Pure parsing


def parse_mirror_list(data: bytes, arch: str) -> list[str]:
    """Repository URLs of a yum `mirror.list`, `$basearch` filled in, in listed order."""
    mirrors: list[str] = []
    for raw in data.decode("utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        url = line.replace("$basearch", arch)
        if urlsplit(url).scheme in {"http", "https"}:
            mirrors.append(url)
    return mirrors


def parse_repomd(data: bytes) -> dict[str, RepoDataFile]:
    """The metadata files a repomd.xml lists, by type."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise MetadataError(f"repomd.xml is not XML ({exc})") from exc
    files: dict[str, RepoDataFile] = {}
    for node in root.iter(f"{_REPO_NS}data"):
        kind = node.get("type", "")
        location = node.find(f"{_REPO_NS}location")
        href = location.get("href", "") if location is not None else ""
        if not kind or not href:
            continue
        checksum = node.find(f"{_REPO_NS}checksum")
        size = node.find(f"{_REPO_NS}size")
        files[kind] = RepoDataFile(
            kind=kind,
            href=href,
            checksum=(checksum.text or "").strip() if checksum is not None else "",
            checksum_type=checksum.get("type", "") if checksum is not None else "",
            size=_int(size.text if size is not None else None),
        )
    if not files:
        raise MetadataError("repomd.xml lists no metadata files")
    return files


def verify_metadata(ref: RepoDataFile, blob: bytes) -> None:
    """The downloaded metadata file matches what repomd.xml says (when it says sha256)."""
    if ref.size and len(blob) != ref.size:
        raise MetadataError(f"{ref.href}: {len(blob)} bytes, repomd.xml says {ref.size}")
    if ref.checksum_type == "sha256" and ref.checksum:
        got = hashlib.sha256(blob).hexdigest()
        if got != ref.checksum:
            raise MetadataError(f"{ref.href}: sha256 {got} does not match repomd.xml")


def decompress_metadata(name: str, blob: bytes) -> bytes:
    """Decompress by the file's suffix (.gz, .bz2, .xz, .zst); other names are raw."""
    try:
        return decompress_by_suffix(name, blob)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:
        raise MetadataError(f"{name}: cannot decompress ({exc})") from exc
    except subprocess.CalledProcessError as exc:
        raise MetadataError(f"{name}: zstd failed: {exc.stderr.decode(errors='replace')}") from exc


def parse_primary_xml(data: bytes, filenames: Sequence[str] | None = None) -> list[RpmEntry]:
    """Packages of a primary.xml, only those whose file name is in `filenames` if given."""
    wanted = set(filenames) if filenames is not None else None
    entries: list[RpmEntry] = []
    try:
        # Streamed and cleared per package: a big repository's primary.xml is ~100 MB.
        for _, node in ET.iterparse(io.BytesIO(data)):
            if node.tag == f"{_COMMON_NS}package":
                entry = _xml_entry(node, wanted)
                node.clear()
                if entry is not None:
                    entries.append(entry)
    except ET.ParseError as exc:
        raise MetadataError(f"primary.xml is not XML ({exc})") from exc
    return entries


def _xml_entry(node: ET.Element, wanted: set[str] | None) -> RpmEntry | None:
    location = node.find(f"{_COMMON_NS}location")
    if location is None:
        return None
    href = location.get("href", "")
    if not href or (wanted is not None and href.rsplit("/", 1)[-1] not in wanted):
        return None
    version = node.find(f"{_COMMON_NS}version")
    checksum = node.find(f"{_COMMON_NS}checksum")
    size = node.find(f"{_COMMON_NS}size")
    return RpmEntry(
        name=node.findtext(f"{_COMMON_NS}name", "").strip(),
        arch=node.findtext(f"{_COMMON_NS}arch", "").strip(),
        version=version.get("ver", "") if version is not None else "",
        release=version.get("rel", "") if version is not None else "",
        href=href,
        base=location.get(_XML_BASE, ""),
        checksum=(checksum.text or "").strip() if checksum is not None else "",
        checksum_type=checksum.get("type", "") if checksum is not None else "",
        size=_int(size.get("package") if size is not None else None),
    )


def parse_primary_sqlite(data: bytes, filenames: Sequence[str] | None = None) -> list[RpmEntry]:
    """Packages of a createrepo primary.sqlite database (decompressed bytes)."""
    con = sqlite3.connect(":memory:")
    try:
        con.deserialize(data)
        rows = con.execute(
            "SELECT name, arch, version, release, location_href, location_base, pkgId, "
            "checksum_type, size_package FROM packages"
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise MetadataError(f"primary.sqlite is not a repository database ({exc})") from exc
    finally:
        con.close()
    wanted = set(filenames) if filenames is not None else None
    entries: list[RpmEntry] = []
    for name, arch, version, release, raw_href, base, pkgid, ctype, size in rows:
        href = str(raw_href or "")
        if not href or (wanted is not None and href.rsplit("/", 1)[-1] not in wanted):
            continue
        entries.append(
            RpmEntry(
                name=str(name), arch=str(arch), version=str(version), release=str(release),
                href=href, base=str(base or ""), checksum=str(pkgid or ""),
                checksum_type=str(ctype or ""), size=_int(size),
            )
        )  # fmt: skip
    return entries


def parse_flatcar_kernel(data: bytes) -> str | None:
    """The kernel version a Flatcar release's `flatcar_production_image_packages.txt` names."""
    match = _FLATCAR_KERNEL.search(data)
    return match.group(1).decode() if match else None


def repo_root_of(package_url: str) -> str:
    """The yum repository root that serves a package URL (where `repodata/` lives).

    Layouts: `<root>/Packages/<file>`, `<root>/Packages/k/<file>` (Fedora, Rocky),
    `<root>/getPackage/<file>` (Oracle), `<root>/<arch>/<file>` (Photon, SUSE).
    """
    parts = package_url.split("/")[:-1]
    if len(parts) > 1 and len(parts[-1]) == 1 and parts[-2] == "Packages":
        parts = parts[:-2]
    elif parts and parts[-1] in {"Packages", "getPackage"} | _RPM_ARCH_DIRS:
        parts = parts[:-1]
    return "/".join(parts) + "/"


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# ---------------------------------------------------------------------------------------
# HTTP, with a record of every URL tried


@dataclass
class _Http:
    session: requests.Session
    timeout: float
    tried: list[tuple[str, str]] = field(default_factory=list)  # (url, outcome)
    down: dict[str, str] = field(default_factory=dict)  # host -> why it is skipped
    skipped: dict[str, int] = field(default_factory=dict)  # host -> URLs not tried
    cache: DownloadCache | None = None  # keeps verified primary indexes between runs
    # Packages of the wanted name the indexes do list (`version-release.arch`): what a
    # release missing from the repositories is told it may have meant.
    listed: set[str] = field(default_factory=set)
    indexes_read: list[str] = field(default_factory=list)  # repository roots answered

    def cached_metadata(self, url: str, ref: RepoDataFile) -> bytes | None:
        """A primary index already downloaded: repomd.xml's sha256 names its content, so
        a matrix of kernels from one repository downloads the index once."""
        if self.cache is None or ref.checksum_type != "sha256" or not ref.checksum:
            return None
        path = self.cache.blob_path(ref.checksum)
        if not path.is_file():
            return None
        self.note(url, "cached")
        return path.read_bytes()

    def store_metadata(self, ref: RepoDataFile, blob: bytes) -> None:
        if self.cache is not None and ref.checksum_type == "sha256" and ref.checksum:
            atomic_write_bytes(self.cache.blob_path(ref.checksum), blob)

    def note(self, url: str, outcome: str) -> None:
        self.tried.append((url, _one_line(outcome)))

    def _host_down(self, url: str) -> bool:
        # One unreachable host would otherwise cost a timeout per candidate on it.
        host = urlsplit(url).netloc
        if host in self.down:
            self.skipped[host] = self.skipped.get(host, 0) + 1
            return True
        return False

    def _failed(self, url: str, exc: requests.RequestException) -> None:
        if isinstance(exc, requests.Timeout):
            outcome = f"no answer within {self.timeout:g}s"
        elif isinstance(exc, requests.ConnectionError):
            outcome = "connection failed"
        else:
            self.note(url, f"{exc.__class__.__name__}: {exc}")
            return
        self.down[urlsplit(url).netloc] = outcome
        self.note(url, outcome)

    def exists(self, url: str) -> int | None:
        """The size (0 when unknown) of an existing file, or None; HEAD, then a ranged GET
        when HEAD is refused."""
        if self._host_down(url):
            return None
        try:
            resp = self.session.head(url, allow_redirects=True, timeout=self.timeout)
            resp.close()
            size = _int(resp.headers.get("Content-Length", "0"))
            if resp.status_code in HEAD_REFUSED:
                resp = self.session.get(
                    url, headers={"Range": "bytes=0-0"}, stream=True,
                    allow_redirects=True, timeout=self.timeout,
                )  # fmt: skip
                resp.close()
                size = _ranged_size(resp)
        except requests.RequestException as exc:
            self._failed(url, exc)
            return None
        if resp.status_code in {200, 206}:
            self.note(url, "found")
            return size
        self.note(url, f"HTTP {resp.status_code}")
        return None

    def get(self, url: str, limit: int) -> bytes | None:
        """The body of `url` (redirects followed), or None with the outcome recorded."""
        if self._host_down(url):
            return None
        try:
            with self.session.get(
                url, stream=True, allow_redirects=True, timeout=self.timeout
            ) as resp:
                if resp.status_code != 200:
                    self.note(url, f"HTTP {resp.status_code}")
                    return None
                chunks: list[bytes] = []
                total = 0
                for chunk in resp.iter_content(1 << 16):
                    total += len(chunk)
                    if total > limit:
                        self.note(url, f"larger than {limit} bytes, not metadata")
                        return None
                    chunks.append(chunk)
        except requests.RequestException as exc:
            self._failed(url, exc)
            return None
        return b"".join(chunks)


def _ranged_size(resp: requests.Response) -> int:
    # "bytes 0-0/12345": the total after the slash is the file's size.
    total = resp.headers.get("Content-Range", "").rpartition("/")[2]
    if total.isdigit():
        return int(total)
    return _int(resp.headers.get("Content-Length", "0")) if resp.status_code == 200 else 0


# ---------------------------------------------------------------------------------------
# Strategies: each returns the exact packages, or [] (the caller raises with the URLs tried)

Strategy = Callable[[BuildPlan, _Http], list[ExactPackage]]


def _search_repo(root: str, filenames: Sequence[str], http: _Http) -> list[ExactPackage] | None:
    """Packages named `filenames` in the repository at `root`, preferred name first;
    None when the repository could not be read (try another mirror)."""
    root = root.rstrip("/") + "/"
    repomd_url = root + "repodata/repomd.xml"
    body = http.get(repomd_url, MAX_SMALL_BYTES)
    if body is None:
        return None
    try:
        files = parse_repomd(body)
    except MetadataError as exc:
        http.note(repomd_url, str(exc))
        return None
    # The sqlite index can be queried without parsing the XML; both carry the same data.
    ref = files.get("primary_db") or files.get("primary")
    if ref is None:
        http.note(repomd_url, "no primary index listed")
        return None
    primary_url = urljoin(root, ref.href)
    http.note(repomd_url, f"points to {ref.href}")
    cached = http.cached_metadata(primary_url, ref)
    blob = cached if cached is not None else http.get(primary_url, MAX_PRIMARY_BYTES)
    if blob is None:
        return None
    try:
        verify_metadata(ref, blob)
        if cached is None:
            http.store_metadata(ref, blob)
        raw = decompress_metadata(ref.href, blob)
        parse = parse_primary_sqlite if ref.kind == "primary_db" else parse_primary_xml
        entries = parse(raw, filenames)
    except MetadataError as exc:
        http.note(primary_url, str(exc))
        return None
    http.indexes_read.append(root)
    if not entries:
        http.note(primary_url, f"lists no {' or '.join(filenames)}")
        http.listed.update(_same_package(parse(raw, None), filenames))
        return []
    rank = {name: i for i, name in enumerate(filenames)}
    entries.sort(key=lambda e: rank.get(e.filename, len(rank)))
    http.note(primary_url, f"lists {entries[0].filename}")
    return [ExactPackage(entries[0].url(root), entries[0].sha256, entries[0].size)]


def rpm_package_name(filename: str) -> str:
    """`kernel-devel` of `kernel-devel-5.10.226-214.880.amzn2.x86_64.rpm` (name, version
    and release are the last two dashes' business)."""
    return filename.removesuffix(".rpm").rsplit("-", 2)[0]


def _same_package(entries: Sequence[RpmEntry], filenames: Sequence[str]) -> set[str]:
    """`version-release.arch` of the entries named like the wanted files, of their archs."""
    wanted = {rpm_package_name(name) for name in filenames}
    archs = {name.removesuffix(".rpm").rsplit(".", 1)[-1] for name in filenames}
    return {
        f"{e.version}-{e.release}.{e.arch}"
        for e in entries
        if e.name in wanted and e.arch in archs
    }


def nearest_releases(release: str, listed: Sequence[str], limit: int = 3) -> list[str]:
    """The listed kernels closest to `release`: same series first, then the nearest
    sublevel, then the newest build of it (pure; the did-you-mean of a missing release)."""
    want = parse_kernel_release(release)

    def distance(candidate: str) -> tuple[int, int, int, str]:
        try:
            have = parse_kernel_release(candidate)
        except InvalidKernelReleaseError:
            return (2, 0, 0, candidate)
        same_series = (have.version, have.patch_level) == (want.version, want.patch_level)
        build = max((int(n) for n in re.findall(r"\d+", have.full_extra_version)[:1]), default=0)
        return (0 if same_series else 1, abs(have.sublevel - want.sublevel), -build, candidate)

    return sorted(set(listed), key=distance)[:limit]


def _kernel_devel_names(plan: BuildPlan) -> tuple[str, ...]:
    return (f"kernel-devel-{rpm_release_with_arch(plan.kernel, plan.arch)}.rpm",)


def _from_mirror_lists(plan: BuildPlan, http: _Http) -> list[ExactPackage]:
    """Amazon Linux: mirror.list -> mirror -> repodata -> kernel-devel rpm."""
    arch = rpm_arch(plan.kernel, plan.arch)
    names = _kernel_devel_names(plan)
    searched: set[str] = set()
    for candidate in plan.headers:
        if candidate.endswith("/"):
            mirrors = [candidate]  # a repository root given directly (--kernel-urls)
        else:
            body = http.get(candidate, MAX_SMALL_BYTES)
            if body is None:
                continue
            mirrors = parse_mirror_list(body, arch)
            if not mirrors:
                http.note(candidate, "lists no mirror")
                continue
            http.note(candidate, f"names {mirrors[0]}")
        for mirror in mirrors:
            if mirror in searched:
                # AL2's core/2.0 and core/latest usually name the same repository.
                break
            searched.add(mirror)
            found = _search_repo(mirror, names, http)
            if found is not None:
                # This mirror answered: the others hold the same repository.
                if found:
                    return found
                break
    return []


def _first_existing(plan: BuildPlan, http: _Http) -> list[ExactPackage]:
    for url in plan.headers:
        if url.endswith("/"):
            found = _search_repo(url, _wanted_rpm_names(plan), http)
            if found:
                return found
            continue
        size = http.exists(url)
        if size is not None:
            return [ExactPackage(url, "", size)]
    return []


def _wanted_rpm_names(plan: BuildPlan) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(_basename(u) for u in plan.headers if u.endswith(".rpm")))
    return names or _kernel_devel_names(plan)


def _basename(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _first_rpm(plan: BuildPlan, http: _Http) -> list[ExactPackage]:
    found = _first_existing(plan, http)
    if found:
        return found
    # Repositories reorganise (point releases move to a vault, Packages/ gains letter
    # directories); the repository's own index knows where the file went.
    names = _wanted_rpm_names(plan)
    roots = dict.fromkeys(repo_root_of(u) for u in plan.headers if u.endswith(".rpm"))
    for root in roots:
        found = _search_repo(root, names, http) or []
        if found:
            return found
    return []


def _suse_pair(plan: BuildPlan, http: _Http) -> list[ExactPackage]:
    """SUSE needs the flavored devel rpm and the noarch kernel-devel of the same version."""
    noarch = [u for u in plan.headers if u.endswith(".noarch.rpm")]
    flavored = [u for u in plan.headers if u.endswith(".rpm") and u not in set(noarch)]
    for devel in flavored:
        size = http.exists(devel)
        if size is None:
            continue
        # kernel-default-devel-5.14.21-150400.24.46.1.x86_64.rpm -> 5.14.21-150400.24.46.1
        version = _basename(devel).split("-devel-", 1)[1].rsplit(".", 2)[0]
        common = f"kernel-devel-{version}.noarch.rpm"
        here = devel.rsplit("/", 2)[0]
        matching = [u for u in noarch if _basename(u) == common]
        # The noarch rpm of the same repository first.
        matching.sort(key=lambda u: u.rsplit("/", 2)[0] != here)
        for url in matching:
            common_size = http.exists(url)
            if common_size is not None:
                return [ExactPackage(devel, "", size), ExactPackage(url, "", common_size)]
        return []
    return []


def _ubuntu_pair(plan: BuildPlan, http: _Http) -> list[ExactPackage]:
    """Ubuntu needs the flavor's arch .deb and the shared `_all.deb` from one pool directory."""
    by_dir: dict[str, list[str]] = {}
    for url in plan.headers:
        by_dir.setdefault(url.rsplit("/", 1)[0], []).append(url)
    for urls in by_dir.values():
        found: list[ExactPackage] = []
        for url in urls:
            size = http.exists(url)
            if size is not None:
                found.append(ExactPackage(url, "", size))
        kinds = {p.url.endswith("_all.deb") for p in found}
        if kinds == {True, False}:
            return found
    return []


def _flatcar(plan: BuildPlan, http: _Http) -> list[ExactPackage]:
    """A Flatcar release number: its package list names the kernel, built from kernel.org."""
    lists = [u for u in plan.headers if u.endswith("flatcar_production_image_packages.txt")]
    if not lists:
        return _first_existing(plan, http)
    for url in lists:
        body = http.get(url, MAX_SMALL_BYTES)
        if body is None:
            continue
        version = parse_flatcar_kernel(body)
        if version is None:
            http.note(url, "names no sys-kernel/coreos-kernel package")
            continue
        for tarball in kernel_org_urls(parse_kernel_release(version)):
            size = http.exists(tarball)
            if size is not None:
                return [ExactPackage(tarball, "", size)]
        return []
    return []


def _debian(plan: BuildPlan, http: _Http) -> list[ExactPackage]:
    raise UsageError(
        "debian headers are resolved from the archive index (driverkit.headers), "
        "not by driverkit.repometa"
    )


# One strategy per header lookup a target row names (Target.header_lookup).
_BY_LOOKUP: dict[HeaderLookup, Strategy] = {
    HeaderLookup.DEBIAN_ARCHIVE: _debian,
    HeaderLookup.MIRROR_LISTS: _from_mirror_lists,
    HeaderLookup.SUSE_PAIR: _suse_pair,
    HeaderLookup.UBUNTU_PAIR: _ubuntu_pair,
    HeaderLookup.FLATCAR_RELEASE: _flatcar,
    HeaderLookup.FIRST_RPM: _first_rpm,
    HeaderLookup.FIRST_EXISTING: _first_existing,
}


def strategy_for(plan: BuildPlan) -> Strategy:
    return _BY_LOOKUP[get_target(plan.target).header_lookup]


def _not_found(plan: BuildPlan, http: _Http) -> HeadersNotFoundError:
    tried = ", ".join(f"{url} ({outcome})" for url, outcome in http.tried) or "no URLs"
    message = f"no kernel headers found for {plan.kernel} (target {plan.target}); tried {tried}"
    if http.listed:
        # The repositories answered and list other builds: that is the news, the URLs
        # are the evidence.
        names = {rpm_package_name(_basename(u)) for u in plan.headers if u.endswith(".rpm")}
        package = " or ".join(sorted(names)) or "kernel-devel"
        nearest = ", ".join(nearest_releases(str(plan.kernel), sorted(http.listed)))
        message = (
            f"no {package} {plan.kernel} in {plan.target}'s repositories "
            f"({len(http.indexes_read)} read); nearest: {nearest}; pass one of them "
            f"as --kernel (`uname -r` on the host); tried {tried}"
        )
    if http.skipped:
        hosts = ", ".join(
            f"{host} ({count} more URLs; {http.down[host]})" for host, count in http.skipped.items()
        )
        message += f"; not tried, host unreachable: {hosts}"
    return HeadersNotFoundError(_one_line(message))


def find_header_urls(
    plan: BuildPlan,
    session: requests.Session | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    *,
    cache_dir: Path | None = None,
) -> list[ExactPackage]:
    """The exact header packages of a (non-Debian) plan; HeadersNotFoundError naming every
    URL tried when there are none. With `cache_dir`, verified primary indexes are kept in
    the download cache's content-addressed blobs."""
    own_session = session is None
    cache = DownloadCache(cache_dir) if cache_dir is not None else None
    http = _Http(session or requests.Session(), timeout, cache=cache)
    try:
        found = strategy_for(plan)(plan, http)
    finally:
        if own_session:
            http.session.close()
    if not found:
        raise _not_found(plan, http)
    return found
