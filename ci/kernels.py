"""Debian kernels for the driver's boot and compile tests: which ones, and their boot images.

The kernels are named by selectors (``6.1``, ``7``, ``6.1-rt``), never by releases: the
mirror drops superseded ABIs, so each selector resolves to the newest matching
``linux-headers-*`` package on it. Everything goes through driverkit's own Debian archive
client (``driverkit.debarchive.DebianArchive``: InRelease signature -> Packages sha256 ->
package sha256, cached), on the mirrors driverkit reads from the host's apt sources
(``driverkit.mirrors``), in driverkit's cache (``driverkit.cache.default_cache_dir``).

For a booted kernel we keep, under ``<cache>/boot-kernels/<release>/root``, the extracted
``linux-image-<release>`` (vmlinuz and modules, which virtme-ng needs to boot it; since 7.x
the image is a metapackage over ``linux-binary-*`` and ``linux-modules-*``). Headers are not
ours to fetch: ``driverkit build`` resolves and caches them itself (see ci.bootverify).

CLI: ``python -m ci.kernels resolve|fetch [KERNEL ...]``, ``prune-legacy`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from driverkit.cache import DownloadCache, default_cache_dir
from driverkit.debarchive import DebianArchive, DebPackage, depends_names, newest
from driverkit.errors import DownloadError, UsageError
from driverkit.mirrors import host_mirrors, require_debian_mirror

# The kernels the QEMU tests boot: one of each series the issue names, newest ABI of each.
# Selectors, not pinned releases, because the mirror drops superseded ABIs.
TEST_KERNELS: tuple[str, ...] = ("5.10", "6.1", "6.12", "7")
# Also booted, module only: PREEMPT_RT turns spinlocks into sleeping locks, so the
# module's atomic-context paths are proven there too.
RT_BOOT_KERNELS: tuple[str, ...] = ("6.1-rt",)
# Compile-checked only (warning-free): the other 6.12 line and the cloud/rt flavors.
COMPILE_ONLY_KERNELS: tuple[str, ...] = ("6.12-deb12", "6.1-cloud", "6.1-rt", "6.12-rt")
COMPILE_KERNELS: tuple[str, ...] = (*TEST_KERNELS, *COMPILE_ONLY_KERNELS)


@dataclass(frozen=True)
class KernelSelector:
    name: str
    abi: str  # regex matched against the release without its flavor suffix
    flavor: str


SELECTORS: dict[str, KernelSelector] = {
    s.name: s
    for s in (
        KernelSelector("5.10", r"5\.10\.0-\d+", "amd64"),
        KernelSelector("6.1", r"6\.1\.0-\d+", "amd64"),
        KernelSelector("6.1-cloud", r"6\.1\.0-\d+", "cloud-amd64"),
        KernelSelector("6.1-rt", r"6\.1\.0-\d+", "rt-amd64"),
        KernelSelector("6.12", r"6\.12\.\d+\+deb13(\.\d+)?", "amd64"),
        KernelSelector("6.12-rt", r"6\.12\.\d+\+deb13(\.\d+)?", "rt-amd64"),
        KernelSelector("6.12-deb12", r"6\.12\.\d+\+deb12", "amd64"),
        KernelSelector("7", r"7\.\d+\.\d+\+deb\d+", "amd64"),
    )
}

RELEASE_RE = re.compile(r"^[0-9][0-9A-Za-z.+~_-]*$")
# What the chroot pipeline ci/ had before it built through driverkit left in the cache:
# private apt lists, debootstrapped toolchains, kernel trees with headers, its builds.
LEGACY_CACHE_DIRS = ("apt", "chroots", "kernels", "kmod-builds", "probe-builds")


def cache_root() -> Path:
    """The one cache ci/ and the driverkit it runs share: driverkit's own --cache-dir
    default (DRIVERKIT_CACHE_DIR, else DK_CACHE, else driverkit.cache's default)."""
    explicit = os.environ.get("DRIVERKIT_CACHE_DIR")
    return Path(explicit).expanduser() if explicit else default_cache_dir()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise concurrent users (pytest-xdist workers, .ci/run) of one cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@functools.cache
def archive() -> DebianArchive:
    """driverkit's Debian archive view on the host's mirrors, one per process."""
    mirrors = host_mirrors()
    require_debian_mirror(mirrors)
    return DebianArchive(mirrors, DownloadCache(cache_root()))


def _release_key(release: str) -> list[int | str]:
    """Natural sort key: 6.12.9 < 6.12.10, and 5.10.0-9 < 5.10.0-46."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", release)]


def resolve(selector: str, debian: DebianArchive | None = None) -> str:
    """A selector (``6.1``) or an explicit release (``6.1.0-57-amd64``) -> a release."""
    if selector not in SELECTORS:
        if not RELEASE_RE.match(selector) or "-" not in selector:
            known = ", ".join(SELECTORS)
            raise UsageError(
                f"kernel {selector!r} is neither a release nor a selector ({known})"
            )
        return selector
    sel = SELECTORS[selector]
    debian = debian or archive()
    pattern = re.compile(rf"^linux-headers-({sel.abi})-{re.escape(sel.flavor)}$")
    releases = {
        m.group(1) + "-" + sel.flavor
        for suite, _ in debian.suites
        for m in map(pattern.match, debian.packages(suite))
        if m
    }
    if not releases:
        unreadable = "; ".join(f"{s}: {why}" for s, why in sorted(debian.unreachable.items()))
        raise DownloadError(
            f"no linux-headers package on the mirror matches selector {selector}"
            + (f" (unreadable suites: {unreadable})" if unreadable else "")
        )
    return max(releases, key=_release_key)


def headers_version(release: str, debian: DebianArchive | None = None) -> str:
    """The Debian package version of the newest headers upload for `release`."""
    return (debian or archive()).find_headers(release).version


def uname_v_of(vmlinuz: Path) -> str:
    """`uname -v` of a kernel image, read from its bzImage header: the setup header's
    kernel_version field (offset 0x20e) points at "<release> (<builder>) #1 SMP ...".
    """
    with vmlinuz.open("rb") as handle:
        head = handle.read(0x10000)
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        raise DownloadError(f"{vmlinuz}: not an x86 bzImage (no HdrS setup header)")
    start = struct.unpack_from("<H", head, 0x20E)[0] + 0x200
    end = head.find(b"\0", start)
    text = head[start:end].decode("ascii", errors="replace") if end > start else ""
    _, hash_sign, rest = text.partition(" #")
    if not hash_sign:
        raise DownloadError(f"{vmlinuz}: no uname -v in its version string {text!r}")
    return "#" + rest


@dataclass(frozen=True)
class KernelImage:
    """One extracted kernel image: what virtme-ng boots, and the `uname -v` it reports."""

    release: str
    version: str  # Debian package version, e.g. 6.1.192-3
    root: Path

    @property
    def vmlinuz(self) -> Path:
        # /boot up to 6.12; 7.x packages it beside its modules.
        legacy = self.root / "boot" / f"vmlinuz-{self.release}"
        return legacy if legacy.exists() else self.modules / "vmlinuz"

    @property
    def modules(self) -> Path:
        for base in (self.root / "lib" / "modules", self.root / "usr" / "lib" / "modules"):
            if (base / self.release).is_dir():
                return base / self.release
        return self.root / "lib" / "modules" / self.release

    @property
    def uname_v(self) -> str:
        return uname_v_of(self.vmlinuz)


def image_packages(release: str, debian: DebianArchive) -> list[DebPackage]:
    """The packages holding `release`'s vmlinuz and modules (unsigned image preferred)."""
    image = debian.find_image(release)
    if image is None:
        raise DownloadError(f"no linux-image-{release} package on the mirror")
    packages = [image]
    for dep, exact in depends_names(image.depends):
        if not re.match(r"linux-(binary|modules)-", dep):
            continue
        options = [p for suite, _ in debian.suites for p in debian.packages(suite).get(dep, [])
                   if exact is None or p.version == exact]  # fmt: skip
        if not options:
            raise DownloadError(f"{image.name} {image.version} depends on {dep}, "
                                "which no indexed suite has")  # fmt: skip
        packages.append(newest(options))
    return packages


def _run(cmd: list[str], *, what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise DownloadError(f"{what} failed ({proc.returncode}): {' | '.join(tail)}")


def fetch(release: str, debian: DebianArchive | None = None) -> KernelImage:
    """Download (sha256-verified) and extract one kernel's image and modules; a cache hit
    does no network I/O. The .debs are dropped once extracted: the tree is the cache."""
    if not RELEASE_RE.match(release):
        raise UsageError(f"kernel release {release!r} has characters a release cannot have")
    base = cache_root() / "boot-kernels" / release
    meta_path = base / "meta.json"
    with locked(base.parent / f".{release}.lock"):
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            return KernelImage(release, str(meta["version"]), base / "root")
        debian = debian or archive()
        packages = image_packages(release, debian)
        staging = base.parent / f".{release}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "root").mkdir(parents=True)
        for pkg in packages:
            deb = debian.cache.fetch(pkg.url, pkg.sha256, pkg.size)
            _run(["dpkg-deb", "-x", str(deb), str(staging / "root")], what=f"extract {pkg.name}")
            deb.unlink(missing_ok=True)
        staged = KernelImage(release, packages[0].version, staging / "root")
        if not staged.vmlinuz.is_file() or not staged.modules.is_dir():
            raise DownloadError(f"kernel {release}: packages lack vmlinuz or modules")
        meta = {"release": release, "version": staged.version, "uname_v": staged.uname_v,
                "packages": [f"{p.name}={p.version}" for p in packages]}  # fmt: skip
        # meta.json last: its presence is what marks the entry complete.
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        shutil.rmtree(base, ignore_errors=True)
        os.replace(staging, base)
        return KernelImage(release, staged.version, base / "root")


def cached_image(release: str) -> KernelImage | None:
    """The extracted image of `release` if a previous fetch left one, else None."""
    base = cache_root() / "boot-kernels" / release
    meta_path = base / "meta.json"
    if not meta_path.is_file():
        return None
    return KernelImage(release, str(json.loads(meta_path.read_text())["version"]), base / "root")


def kernel_version(release: str) -> str:
    """What `driverkit build --kernel-version` gets for `release`: the image's own
    `uname -v` when we have the image; otherwise the part of it driverkit reads (the
    Debian package version picks the exact header packages)."""
    image = cached_image(release)
    if image is not None:
        return image.uname_v
    return f"#1 SMP Debian {headers_version(release)}"


# ---------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_resolve = sub.add_parser("resolve", help="print `selector release` per kernel")
    p_resolve.add_argument("kernels", nargs="*", help="default: the boot-test set")
    p_resolve.add_argument("--compile-set", action="store_true",
                           help="the boot and compile-check set")  # fmt: skip
    p_resolve.add_argument("--releases", action="store_true", help="print releases only")
    p_fetch = sub.add_parser("fetch", help="download + extract boot images (default: test set)")
    p_fetch.add_argument("kernels", nargs="*")
    sub.add_parser("prune-legacy", help="delete what the old chroot pipeline cached")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "prune-legacy":
            for name in LEGACY_CACHE_DIRS:
                path = cache_root() / name
                if path.is_dir():
                    shutil.rmtree(path)
                    print(f"removed {path}")
            return 0
        if args.cmd == "resolve":
            default = (COMPILE_KERNELS if args.compile_set
                       else (*TEST_KERNELS, *RT_BOOT_KERNELS))  # fmt: skip
            selected = args.kernels or list(default)
            for sel in selected:
                rel = resolve(sel)
                print(rel if args.releases else f"{sel} {rel}")
            return 0
        for sel in args.kernels or [*TEST_KERNELS, *RT_BOOT_KERNELS]:
            started = time.monotonic()
            image = fetch(resolve(sel))
            print(f"{image.release} {image.version} {image.vmlinuz} "
                  f"({time.monotonic() - started:.1f}s)")  # fmt: skip
        return 0
    except (DownloadError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
