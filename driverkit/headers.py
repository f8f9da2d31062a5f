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
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from driverkit.cache import DownloadCache, decompress_by_suffix
from driverkit.debarchive import DebianArchive
from driverkit.errors import DownloadError, HeadersNotFoundError
from driverkit.netroutes import repository_session
from driverkit.plan import BuildPlan
from driverkit.targets import get_target
from driverkit.targets.base import HeaderLookup, Mirrors

_EXTRACT_FORMAT = 7  # bump when the extraction layout or fix-ups change


@dataclass(frozen=True)
class HeaderPackage:
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ResolvedHeaders:
    root: Path  # directory to mount read-only, at the same path (all shared packages)
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


def _untar(raw: bytes, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if shutil.which("tar"):
        # GNU tar is ~4x faster than tarfile on a 15k-file -common package; it strips
        # leading "/" and refuses ".." members by default.
        done = subprocess.run(
            ["tar", "-x", "--no-same-owner", "-C", str(dest), "-f", "-"],
            input=raw,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise DownloadError(f"tar failed: {done.stderr.decode(errors='replace').strip()}")
        return
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        # Symlinks inside headers point across packages (headers -> kbuild), so the
        # "tar" filter (no absolute names, no escaping paths) is the right strictness.
        tar.extractall(dest, filter="tar")


_RPM_MAGIC = b"\xed\xab\xee\xdb"


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def extract_package(package: Path, dest: Path) -> None:
    """A .deb (ar), an .rpm (through rpm2cpio) or a tarball of headers, plain or gz, bz2,
    xz or zstd compressed (Arch's .pkg.tar.zst, kernel.org's .tar.xz).

    The kind comes from the content, never the name: the download cache stores blobs
    under their hash."""
    with package.open("rb") as fh:
        magic = fh.read(8)
    if magic == b"!<arch>\n":
        extract_deb(package, dest)
        return
    if magic.startswith(_RPM_MAGIC):
        _extract_rpm(package, dest)
        return
    dest.mkdir(parents=True, exist_ok=True)
    if shutil.which("tar"):
        # GNU tar recognises every compression by its magic (zstd through the zstd
        # tool), strips leading "/" and refuses ".." members by default.
        done = subprocess.run(
            ["tar", "-x", "--no-same-owner", "-C", str(dest), "-f", str(package)],
            capture_output=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise DownloadError(f"{package}: neither a .deb, an .rpm nor a tarball tar can "
                                f"read ({done.stderr.decode(errors='replace').strip()})")
        return
    if magic.startswith(_ZSTD_MAGIC):
        raise DownloadError(f"{package}: a zstd tarball needs GNU tar and zstd on the host")
    try:
        with tarfile.open(package) as tar:
            tar.extractall(dest, filter="tar")
    except tarfile.TarError as exc:
        raise DownloadError(f"{package}: neither a .deb nor a tarball ({exc})") from exc


def _extract_rpm(rpm: Path, dest: Path) -> None:
    if shutil.which("rpm2cpio") is None or shutil.which("cpio") is None:
        raise DownloadError(f"{rpm}: extracting .rpm headers needs rpm2cpio and cpio on the host")
    dest.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(["rpm2cpio", str(rpm)], stdout=subprocess.PIPE) as conv:
        done = subprocess.run(
            ["cpio", "-idm", "--quiet", "--no-absolute-filenames"],
            stdin=conv.stdout,
            cwd=dest,
            capture_output=True,
            check=False,
        )
    if conv.returncode != 0 or done.returncode != 0:
        raise DownloadError(
            f"{rpm}: rpm2cpio | cpio failed: {done.stderr.decode(errors='replace')}"
        )


def extract_deb(deb: Path, dest: Path) -> None:
    """`dpkg-deb -x` without dpkg: our ar reader, then tar (works on non-Debian hosts)."""
    try:
        members = _ar_members(deb.read_bytes())
    except (DownloadError, ValueError) as exc:
        raise DownloadError(f"{deb}: {exc}") from exc
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise DownloadError(f"{deb}: .deb without data.tar member")
    try:
        _untar(decompress_by_suffix(data_name, members[data_name]), dest)
    except (DownloadError, lzma.LZMAError, OSError, tarfile.TarError) as exc:
        raise DownloadError(f"{deb}: cannot unpack {data_name}: {exc}") from exc


def _kernel_dir(root: Path, release: str) -> Path:
    exact = root / "usr" / "src" / f"linux-headers-{release}"
    if exact.is_dir():
        return exact
    for candidate in (
        root / "lib" / "modules" / release / "build",
        root / "usr" / "lib" / "modules" / release / "build",  # Arch, since usrmerge
        root / "usr" / "src" / "kernels" / release,  # rpm kernel-devel
    ):
        if candidate.is_dir():
            return candidate
    dirs = [p for p in (root / "usr" / "src").glob("linux-headers-*") if (p / ".config").exists()]
    if len(dirs) == 1:
        return dirs[0]
    sources = _source_trees(root)
    if len(sources) == 1:
        # kernel.org sources: the build script configures and prepares them out of tree.
        return sources[0]
    raise HeadersNotFoundError(
        f"headers for {release} extracted to {root} but no kernel dir with .config found"
    )


def _source_trees(root: Path) -> list[Path]:
    """Top-level kernel source trees (a kernel.org tarball's `linux-6.1.158/`)."""
    if not root.is_dir():
        return []
    return sorted(
        entry for entry in root.iterdir()
        if entry.is_dir() and (entry / "Kconfig").is_file() and (entry / "Makefile").is_file()
    )  # fmt: skip


def _from_debian_archive(plan: BuildPlan) -> bool:
    """Whether the plan's target names its exact packages through the Debian archive index."""
    return get_target(plan.target).header_lookup is HeaderLookup.DEBIAN_ARCHIVE


class HeaderResolver:
    def __init__(
        self,
        cache: DownloadCache,
        archive: DebianArchive | None = None,
        session: requests.Session | None = None,
    ):
        self.cache = cache
        self.archive = archive
        # Repository metadata goes through the same (possibly --repo-mirror routed)
        # session as the packages.
        self.session = session or requests.Session()

    def packages_for(self, plan: BuildPlan) -> tuple[tuple[HeaderPackage, ...], tuple[str, ...]]:
        """Exact packages to download, and every URL considered."""
        release = str(plan.kernel)
        tried: list[str] = []
        if _from_debian_archive(plan) and self.archive is not None:
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
        if _from_debian_archive(plan):
            raise HeadersNotFoundError(
                f"no Debian mirror to find {release}'s headers in: "
                "set DRIVERKIT_DEBIAN_MIRROR or --debian-mirror"
            )
        # Every other target's candidates go through its own strategy (mirror.list ->
        # repodata for Amazon, repodata search for the EL family, flavor + common for
        # Ubuntu...), which names the exact packages, with the sha256 and size their
        # repository publishes where it publishes them.
        from driverkit.repometa import find_header_urls

        located = find_header_urls(plan, self.session, cache_dir=self.cache.root)
        fetched: list[HeaderPackage] = []
        for package in located:
            path = self.cache.fetch(package.url, package.sha256 or None, package.size or None)
            fetched.append(HeaderPackage(package.url, path.name, path.stat().st_size))
        considered = (*plan.headers, *(p.url for p in located if p.url not in plan.headers))
        return tuple(fetched), considered

    def resolve(self, plan: BuildPlan) -> ResolvedHeaders:
        pkgs, tried = self.packages_for(plan)
        key_src = f"{_EXTRACT_FORMAT}\n" + "\n".join(sorted(p.sha256 for p in pkgs))
        key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
        headers_root = self.cache.root / "headers"
        tree = headers_root / "trees" / key
        if not (tree / ".complete").exists():
            pkg_dirs = [
                self._extracted(self.cache.fetch(p.url, p.sha256, p.size), headers_root)
                for p in pkgs
            ]
            _assemble_tree(pkg_dirs, tree)
        return ResolvedHeaders(headers_root, _kernel_dir(tree, str(plan.kernel)), pkgs, tried)

    @staticmethod
    def _extracted(package: Path, headers_root: Path) -> Path:
        """Each package is unpacked once and shared: the 60 MB `-common` tree serves
        every flavor (amd64, cloud, rt) of its kernel."""
        dest = headers_root / "pkgs" / package.name[:32]
        if (dest / ".complete").exists():
            return dest
        return _atomic_dir(dest, lambda tmp: extract_package(package, tmp))


def _atomic_dir(dest: Path, fill: Callable[[Path], None]) -> Path:
    """Fill a temp dir and rename it to `dest`; a concurrent identical fill may win."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        fill(tmp)
        (tmp / ".complete").write_text("")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / ".complete").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _assemble_tree(pkg_dirs: Sequence[Path], tree: Path) -> None:
    """A kernel's headers tree made of links into the shared package dirs.

    `usr/src/<name>/` are real directories so relative links inside them (`scripts ->
    ../../lib/linux-kbuild-6.1/scripts`) resolve within this tree, where the other
    packages are; their entries link to the package dirs. A directory holding a relative
    link that leaves it (Ubuntu's flavor package links `include/linux ->
    ../../linux-headers-<ver>/include/linux`, at any depth) is made real too, down to
    those links, so they also resolve in this tree rather than in one package's dir.
    Makefiles naming `/usr/src/...` get a rewritten copy pointing at this tree.
    """

    def fill(tmp: Path) -> None:
        for pkg in pkg_dirs:
            for top in ("usr/src", "usr/lib", "lib/modules"):
                src_top = pkg / top
                if not src_top.is_dir():
                    continue
                for entry in sorted(src_top.iterdir()):
                    target = tmp / top / entry.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if entry.is_symlink() or top != "usr/src" or not entry.is_dir():
                        _link_like(entry, target)
                        continue
                    target.mkdir(exist_ok=True)
                    for item in sorted(entry.iterdir()):
                        _mirror(item, target / item.name)
            for source in _source_trees(pkg):
                _link_like(source, tmp / source.name)
        _rewrite_absolute_paths(tmp, tree)

    _atomic_dir(tree, fill)


def _mirror(entry: Path, target: Path) -> None:
    """Link `entry` at `target`; a directory with links leaving it becomes a real one whose
    entries are mirrored the same way."""
    if entry.is_symlink() or not entry.is_dir() or not _has_leaving_links(entry):
        _link_like(entry, target)
        return
    if target.is_symlink():
        return  # an earlier package already provides it
    target.mkdir(exist_ok=True)
    for item in sorted(entry.iterdir()):
        _mirror(item, target / item.name)


def _has_leaving_links(directory: Path) -> bool:
    """Whether a relative symlink below `directory` points outside it."""
    top = os.path.normpath(directory)
    for root, dirs, files in os.walk(directory):  # never follows links
        for name in (*dirs, *files):
            path = os.path.join(root, name)
            if not os.path.islink(path):
                continue
            dest = os.readlink(path)
            if os.path.isabs(dest):
                continue  # rewritten or ignored like any absolute path in a package
            resolved = os.path.normpath(os.path.join(root, dest))
            if resolved != top and not resolved.startswith(top + os.sep):
                return True
    return False


def _link_like(entry: Path, target: Path) -> None:
    if target.exists() or target.is_symlink():
        return  # an earlier package already provides it (shared doc dirs etc.)
    if entry.is_symlink():
        os.symlink(os.readlink(entry), target)
    else:
        os.symlink(entry, target)


def _rewrite_absolute_paths(tmp: Path, final_root: Path) -> None:
    for makefile in (tmp / "usr" / "src").glob("linux-headers-*/Makefile"):
        text = makefile.read_text()
        fixed = re.sub(r"(?<![\w/.])/usr/src/", f"{final_root}/usr/src/", text)
        if fixed != text:
            makefile.unlink()  # a link into the shared package: replace, never edit
            makefile.write_text(fixed)


def check_headers(plan: BuildPlan, mirrors: Mirrors, cache_dir: Path) -> list[str]:
    """`driverkit resolve --check`: the header URLs that exist, without downloading them.

    Debian answers from the archive index (exact pool files); other targets follow their
    mirror lists and repository metadata (driverkit.repometa) or HEAD each exact URL.
    Nothing found raises HeadersNotFoundError naming the URLs.
    """
    cache = DownloadCache(cache_dir, repository_session(mirrors))
    archive = DebianArchive(mirrors, cache) if mirrors.debian else None
    resolver = HeaderResolver(cache, archive, repository_session(mirrors))
    from_archive = _from_debian_archive(plan)
    if from_archive and archive is not None:
        pkgs, _ = resolver.packages_for(plan)
        return [p.url for p in pkgs]
    if from_archive:
        raise HeadersNotFoundError(
            f"no Debian mirror to check {plan.kernel} against: set DRIVERKIT_DEBIAN_MIRROR"
        )
    # Other targets' candidates may be mirror lists or repository roots, which only
    # the repository metadata turns into exact package URLs.
    from driverkit.repometa import find_header_urls

    exact = find_header_urls(plan, resolver.session, cache_dir=cache_dir)
    return [package.url for package in exact]
