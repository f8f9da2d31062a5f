"""Resolve a plan's kernel headers on the host and extract them into the cache.

Headers are downloaded once (content-addressed, size + sha256 checked), extracted once
into `<cache>/headers/<key>/`, and mounted read-only into the builder at the SAME path,
so a cached kernel builds with the container's network disabled and the `local`
processor can use the very same tree.

Debian's `linux-headers-<rel>/Makefile` names the `-common` tree (and, since 7.x, its own
KBUILD_OUTPUT) by absolute `/usr/src/...` paths; we point those at the extracted tree,
which is why the mount path in the container must equal the host path.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from driverkit.cache import DownloadCache
from driverkit.debarchive import DebianArchive
from driverkit.errors import DownloadError, HeadersNotFoundError
from driverkit.plan import BuildPlan
from driverkit.targets.base import Mirrors

_EXTRACT_FORMAT = 3  # bump when the extraction layout or fix-ups change


@dataclass(frozen=True)
class HeaderPackage:
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ResolvedHeaders:
    root: Path  # directory to mount read-only, at the same path
    kernel_dir: Path  # KERNELDIR for `make -C`
    packages: tuple[HeaderPackage, ...]
    tried: tuple[str, ...]  # URLs considered, for error messages and the manifest


def _ar_members(data: bytes) -> dict[str, bytes]:
    """Members of a Debian `ar` archive (the .deb container)."""
    if not data.startswith(b"!<arch>\n"):
        raise DownloadError("not a .deb (ar) archive")
    members: dict[str, bytes] = {}
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        pos += 60
        members[name] = data[pos : pos + size]
        pos += size + (size % 2)
    return members


def _open_data_tar(payload: bytes, member: str) -> tarfile.TarFile:
    if member.endswith(".zst"):
        # Python 3.11 has no zstd; the `zstd` tool is a documented host prerequisite.
        payload = subprocess.run(
            ["zstd", "-dc"], input=payload, capture_output=True, check=True
        ).stdout
        return tarfile.open(fileobj=io.BytesIO(payload), mode="r:")
    return tarfile.open(fileobj=io.BytesIO(payload), mode="r:*")


def extract_deb(deb: Path, dest: Path) -> None:
    """`dpkg-deb -x` in pure Python (works on non-Debian hosts too)."""
    members = _ar_members(deb.read_bytes())
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise DownloadError(f"{deb}: .deb without data.tar member")
    with _open_data_tar(members[data_name], data_name) as tar:
        # Symlinks inside headers point across packages (headers -> kbuild), so the
        # "tar" filter (no absolute names, no escaping paths) is the right strictness.
        tar.extractall(dest, filter="tar")


def _kernel_dir(root: Path, release: str) -> Path:
    exact = root / "usr" / "src" / f"linux-headers-{release}"
    if exact.is_dir():
        return exact
    for candidate in (
        root / "lib" / "modules" / release / "build",
        root / "usr" / "src" / "kernels" / release,
    ):
        if candidate.is_dir():
            return candidate
    dirs = [p for p in (root / "usr" / "src").glob("linux-headers-*") if (p / ".config").exists()]
    if len(dirs) == 1:
        return dirs[0]
    raise HeadersNotFoundError(
        f"headers for {release} extracted to {root} but no kernel dir with .config found"
    )


class HeaderResolver:
    def __init__(self, cache: DownloadCache, archive: DebianArchive | None = None):
        self.cache = cache
        self.archive = archive

    def packages_for(self, plan: BuildPlan) -> tuple[tuple[HeaderPackage, ...], tuple[str, ...]]:
        """Exact packages to download, and every URL considered."""
        release = str(plan.kernel)
        tried: list[str] = []
        if plan.target == "debian" and self.archive is not None:
            exact = [self.archive.package_by_url(u) for u in plan.headers if u.endswith(".deb")]
            if exact and all(p is not None for p in exact):
                # A catalog named the exact pool files: verify them by the index's sha256.
                return tuple(
                    HeaderPackage(p.url, p.sha256, p.size) for p in exact if p
                ), plan.headers
            try:
                found = self.archive.find_headers(release)
            except HeadersNotFoundError as exc:
                tried.extend(plan.headers)
                raise HeadersNotFoundError(
                    f"{exc}; candidate URLs: {', '.join(plan.headers) or 'none'}"
                ) from exc
            pkgs = tuple(HeaderPackage(p.url, p.sha256, p.size) for p in found.packages)
            return pkgs, tuple(p.url for p in pkgs)
        for url in plan.headers:
            tried.append(url)
            if self.cache.is_cached(url) or self.cache.exists(url):
                path = self.cache.fetch(url)
                return (HeaderPackage(url, path.name, path.stat().st_size),), tuple(tried)
        raise HeadersNotFoundError(
            f"no headers for {release} ({plan.target}): tried {', '.join(tried) or 'no URLs'}"
        )

    def resolve(self, plan: BuildPlan) -> ResolvedHeaders:
        pkgs, tried = self.packages_for(plan)
        key_src = f"{_EXTRACT_FORMAT}\n" + "\n".join(sorted(p.sha256 for p in pkgs))
        key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
        root = self.cache.root / "headers" / key
        release = str(plan.kernel)
        if not (root / ".complete").exists():
            paths = [self.cache.fetch(p.url, p.sha256, p.size) for p in pkgs]
            self._extract(paths, root)
        return ResolvedHeaders(root, _kernel_dir(root, release), pkgs, tried)

    def _extract(self, debs: Sequence[Path], root: Path) -> None:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
        try:
            for deb in debs:
                extract_deb(deb, tmp)
            # Includes must name the final path, which is only valid after the rename.
            _rewrite_absolute_includes_at(tmp, root)
            (tmp / ".complete").write_text("")
            try:
                os.rename(tmp, root)
            except OSError:
                # A parallel build of the same kernel won the race: theirs is identical.
                if not (root / ".complete").exists():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _rewrite_absolute_includes_at(tree: Path, final_root: Path) -> None:
    for makefile in (tree / "usr" / "src").glob("linux-headers-*/Makefile"):
        text = makefile.read_text()
        fixed = re.sub(r"(?<![\w/.])/usr/src/", f"{final_root}/usr/src/", text)
        if fixed != text:
            makefile.write_text(fixed)


def check_headers(plan: BuildPlan, mirrors: Mirrors, cache_dir: Path) -> list[str]:
    """`driverkit resolve --check`: the header URLs that exist, without downloading them.

    Debian answers from the archive index (exact pool files); other targets get a HEAD
    request per candidate. Nothing found raises HeadersNotFoundError naming the URLs.
    """
    cache = DownloadCache(cache_dir)
    archive = DebianArchive(mirrors, cache) if mirrors.debian else None
    resolver = HeaderResolver(cache, archive)
    if plan.target == "debian" and archive is not None:
        pkgs, _ = resolver.packages_for(plan)
        return [p.url for p in pkgs]
    found = [url for url in plan.headers if cache.is_cached(url) or cache.exists(url)]
    if not found:
        raise HeadersNotFoundError(
            f"no headers for {plan.kernel} ({plan.target}): "
            f"tried {', '.join(plan.headers) or 'no URLs'}"
        )
    return found
