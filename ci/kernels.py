"""Debian kernels for the driver's boot and compile tests: fetch, extract, and build against.

For each kernel release we keep, under ``$DK_CACHE/kernels/<release>/root``, the extracted
``linux-image-<release>`` (vmlinuz + modules, which virtme-ng needs to boot it),
``linux-headers-<release>``, its ``-common`` tree and ``linux-kbuild`` (the headers tree
symlinks into both, so the three are extracted into one root). Packages come from a private
apt configuration covering bullseye, bookworm (+updates, +security, +backports), trixie and
sid, so the host's apt state is never touched. The mirror is the host's own (read from its
apt sources), never a name written here.

Each kernel is built with the gcc major it was built with (its headers package depends on
it). When the host lacks that gcc, a minimal chroot of the suite that ships it is
debootstrapped once under ``$DK_CACHE/chroots/<suite>`` and the module is built inside it.

CLI: ``python -m ci.kernels resolve|fetch|build-kmod|toolchain ...`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from driverkit.errors import BuildFailedError, DownloadError, UsageError
from driverkit.mirrors import debian_mirror_from_apt, debian_security_mirror_from_apt

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

# Which Debian suite ships each gcc major the kernels were built with.
GCC_SUITE: dict[int, str] = {10: "bullseye", 12: "bookworm", 14: "trixie", 15: "sid", 16: "sid"}

APT_LISTS_MAX_AGE_S = 6 * 3600
RELEASE_RE = re.compile(r"^[0-9][0-9A-Za-z.+~_-]*$")


def cache_root() -> Path:
    return Path(os.environ.get("DK_CACHE", "/var/cache/driverkit-ci"))


def _mirrors() -> tuple[str, str]:
    main = debian_mirror_from_apt()
    if not main:
        raise UsageError(
            "no Debian mirror in /etc/apt sources; set DRIVERKIT_DEBIAN_MIRROR=http://<host>/debian"
        )
    security = debian_security_mirror_from_apt() or main + "-security"
    return main, security


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise concurrent fetches (pytest-xdist workers, .ci/run) on one cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], *, cwd: Path | None = None, what: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise DownloadError(f"{what} failed ({proc.returncode}): {' | '.join(tail)}")
    return proc.stdout


class PrivateApt:
    """apt-get/apt-cache bound to our own sources, lists and cache under $DK_CACHE/apt."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root() / "apt"

    def _options(self) -> list[str]:
        r = self.root
        return [
            "-o", f"Dir::Etc::sourcelist={r / 'sources.list'}",
            "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={r / 'lists'}",
            "-o", f"Dir::Cache={r / 'cache'}",
            "-o", "Dir::State::status=/dev/null",
            "-o", "APT::Architecture=amd64",
            "-o", "APT::Architectures=amd64",
            "-o", "Debug::NoLocking=1",
        ]  # fmt: skip

    def _sources(self) -> str:
        main, security = _mirrors()
        keyring = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
        entries = [
            (main, "bullseye"),
            (security, "bullseye-security"),
            (main, "bookworm"),
            (main, "bookworm-updates"),
            (main, "bookworm-backports"),
            (security, "bookworm-security"),
            (main, "trixie"),
            (main, "trixie-updates"),
            (security, "trixie-security"),
            (main, "sid"),
        ]
        return "".join(f"deb {keyring} {uri} {suite} main\n" for uri, suite in entries)

    def update(self, *, force: bool = False) -> None:
        with _locked(self.root / ".lock"):
            for sub in ("lists/partial", "cache/archives/partial"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            sources = self.root / "sources.list"
            wanted = self._sources()
            stamp = self.root / "lists" / ".updated"
            fresh = (
                stamp.exists()
                and time.time() - stamp.stat().st_mtime < APT_LISTS_MAX_AGE_S
                and sources.exists()
                and sources.read_text() == wanted
            )
            if fresh and not force:
                return
            _atomic_write(sources, wanted)
            _run(["apt-get", *self._options(), "-q", "update"], what="private apt-get update")
            stamp.touch()

    def cache(self, *args: str) -> str:
        return _run(["apt-cache", *self._options(), *args], what=f"apt-cache {' '.join(args)}")

    def download(self, packages: list[str], dest: Path) -> None:
        _run(
            ["apt-get", *self._options(), "-q", "download", *packages],
            cwd=dest,
            what=f"apt-get download {' '.join(packages)}",
        )


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _release_key(release: str) -> list[int | str]:
    """Natural sort key: 6.12.9 < 6.12.10, and 5.10.0-9 < 5.10.0-46."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", release)]


def resolve(selector: str, apt: PrivateApt | None = None) -> str:
    """A selector (``6.1``) or an explicit release (``6.1.0-56-amd64``) → a release."""
    if selector not in SELECTORS:
        if not RELEASE_RE.match(selector) or "-" not in selector:
            known = ", ".join(SELECTORS)
            raise UsageError(
                f"kernel {selector!r} is neither a release nor a selector ({known})"
            )
        return selector
    sel = SELECTORS[selector]
    apt = apt or PrivateApt()
    apt.update()
    out = apt.cache("pkgnames", "linux-headers-")
    pattern = re.compile(rf"^linux-headers-({sel.abi})-{re.escape(sel.flavor)}$")
    releases = [m.group(1) + "-" + sel.flavor for m in map(pattern.match, out.split()) if m]
    if not releases:
        raise DownloadError(f"no linux-headers package on the mirror matches selector {selector}")
    return max(releases, key=_release_key)


@dataclass(frozen=True)
class PackageInfo:
    name: str
    version: str
    depends: tuple[str, ...]  # package names only, alternatives flattened


def package_info(apt: PrivateApt, name: str) -> PackageInfo:
    text = apt.cache("show", "--no-all-versions", name)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith(" ") and key not in fields:
            fields[key] = value.strip()
    depends = tuple(
        alt.strip().split(" ")[0]
        for clause in fields.get("Depends", "").split(",")
        for alt in clause.split("|")
        if alt.strip()
    )
    return PackageInfo(name, fields.get("Version", ""), depends)


def _gcc_major(depends: tuple[str, ...]) -> int:
    for dep in depends:
        m = re.fullmatch(r"(?:linux-compiler-)?gcc-(\d+)(?:-x86|-for-host)?", dep)
        if m:
            return int(m.group(1))
    raise DownloadError(f"cannot tell the kernel's gcc from its headers' depends: {depends}")


@dataclass(frozen=True)
class KernelTree:
    """One extracted kernel: boot image, modules and a headers tree to build against."""

    release: str
    version: str  # Debian package version, e.g. 6.1.192-2
    root: Path
    gcc_major: int

    @property
    def vmlinuz(self) -> Path:
        # /boot up to 6.12; 7.x packages it beside its modules.
        legacy = self.root / "boot" / f"vmlinuz-{self.release}"
        return legacy if legacy.exists() else self.modules / "vmlinuz"

    @property
    def headers(self) -> Path:
        return self.root / "usr" / "src" / f"linux-headers-{self.release}"

    @property
    def modules(self) -> Path:
        for base in (self.root / "lib" / "modules", self.root / "usr" / "lib" / "modules"):
            if (base / self.release).is_dir():
                return base / self.release
        return self.root / "lib" / "modules" / self.release

    @property
    def suite(self) -> str:
        return GCC_SUITE.get(self.gcc_major, "sid")


def fetch(release: str, apt: PrivateApt | None = None, *, image: bool = True) -> KernelTree:
    """Download and extract one kernel's headers (+ image and modules unless `image` is
    False: compile checks need no boot); a cache hit does no network I/O."""
    if not RELEASE_RE.match(release):
        raise UsageError(f"kernel release {release!r} has characters a release cannot have")
    base = cache_root() / "kernels" / release
    meta_path = base / "meta.json"
    with _locked(base.parent / f".{release}.lock"):
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("image", True) or not image:
                return KernelTree(release, meta["version"], base / "root", int(meta["gcc_major"]))
        apt = apt or PrivateApt()
        apt.update()
        headers = package_info(apt, f"linux-headers-{release}")
        if not headers.version:
            raise DownloadError(f"linux-headers-{release} is not on the mirror")
        gcc = _gcc_major(headers.depends)
        # The headers tree needs its -common tree and kbuild (and linux-base-<rel> on 7.x).
        companions = [
            d for d in headers.depends if re.match(r"linux-(headers|kbuild|base)-", d)
        ]
        packages = [f"linux-headers-{release}={headers.version}"]
        for dep in companions:
            info = package_info(apt, dep)
            packages.append(f"{dep}={info.version}" if info.version else dep)
        # Since 7.x the image is a metapackage over linux-binary-* (vmlinuz) and
        # linux-modules-*; older image packages carry both themselves.
        if image:
            image_pkg = package_info(apt, f"linux-image-{release}")
            packages.append(f"linux-image-{release}={image_pkg.version}")
            for dep in image_pkg.depends:
                if re.match(r"linux-(binary|modules)-", dep):
                    packages.append(f"{dep}={package_info(apt, dep).version}")
        shutil.rmtree(base, ignore_errors=True)
        staging = base.parent / f".{release}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "debs").mkdir(parents=True)
        apt.download(packages, staging / "debs")
        for deb in sorted((staging / "debs").glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(staging / "root")], what=f"extract {deb.name}")
        shutil.rmtree(staging / "debs")
        meta = {"release": release, "version": headers.version, "gcc_major": gcc,
                "packages": packages, "image": image}  # fmt: skip
        staged = KernelTree(release, headers.version, staging / "root", gcc)
        if (image and not staged.vmlinuz.exists()) or not staged.headers.is_dir():
            raise DownloadError(f"kernel {release}: packages lack vmlinuz or a headers tree")
        # meta.json last: its presence is what marks the entry complete.
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(staging, base)
        return KernelTree(release, headers.version, base / "root", gcc)


# ---------------------------------------------------------------------------- toolchains


def toolchain_root(gcc_major: int) -> Path:
    """A debootstrapped chroot of the suite whose gcc built the kernel.

    Even when the host has that gcc we build in a chroot: Debian's headers tree includes
    its -common tree and kbuild by absolute /usr/src and /usr/lib paths, which we mount
    there inside the chroot rather than on the host.
    """
    suite = GCC_SUITE.get(gcc_major)
    if suite is None:
        raise BuildFailedError(f"no known Debian suite ships gcc-{gcc_major}")
    root = cache_root() / "chroots" / suite
    # libelf/libssl: the suite's prebuilt kbuild tools (modpost, objtool) link them;
    # dwarves (pahole): kernels with BTF for modules run it on every .ko.
    include = f"gcc-{gcc_major},make,libc6-dev,libelf-dev,libssl-dev,dwarves"
    marker = root / ".complete"
    with _locked(root.parent / f".{suite}.lock"):
        if marker.exists() and marker.read_text() == include:
            return root
        main, _ = _mirrors()
        staging = root.parent / f".{suite}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        _run(
            ["debootstrap", "--variant=minbase", f"--include={include}", suite,
             str(staging), main],
            what=f"debootstrap {suite}",
        )  # fmt: skip
        (staging / ".complete").write_text(include)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(staging, root)
        return root


def build_kmod(tree: KernelTree, driver_dir: Path, out_dir: Path) -> Path:
    """Build driver/kmod against `tree` with its own gcc; returns the .ko path in out_dir.

    Sources are copied to a scratch dir first: kbuild writes objects next to the sources,
    and several kernels may build at once. The build runs chrooted in a private mount
    namespace, so the bind mounts (kernel trees at /usr/src and /usr/lib, the scratch
    dir at /dk) vanish with it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    chroot = toolchain_root(tree.gcc_major)
    binds: list[tuple[Path, str]] = []
    for sub in ("usr/src", "usr/lib"):
        for entry in sorted((tree.root / sub).glob("linux-*")):
            if entry.is_dir() and not entry.name.startswith("linux-image"):
                binds.append((entry, f"/{sub}/{entry.name}"))
    with tempfile.TemporaryDirectory(prefix="rtcap-kmod-") as scratch_s:
        scratch = Path(scratch_s)
        shutil.copytree(driver_dir / "kmod", scratch / "driver" / "kmod")
        shutil.copytree(driver_dir / "include", scratch / "driver" / "include")
        (scratch / "out").mkdir()
        binds.append((scratch, "/dk"))
        # objtool reads /proc/self/limits; kbuild's shell snippets write to /dev/null.
        lines = ["set -e", 'mount -t proc proc "$R/proc"', 'mount --bind /dev "$R/dev"']
        for src, dst in binds:
            lines.append(f'mkdir -p "$R{dst}"; mount --bind "{src}" "$R{dst}"')
        lines.append('exec chroot "$R" "$@"')
        make = ["make", "-C", "/dk/driver/kmod", f"KERNELDIR=/usr/src/linux-headers-{tree.release}",
                "OUT=/dk/out", f"CC=gcc-{tree.gcc_major}"]  # fmt: skip
        cmd = ["env", f"R={chroot}", "unshare", "-m", "sh", "-c", "; ".join(lines), "sh", *make]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        log = proc.stdout + proc.stderr
        (out_dir / "build.log").write_text(log)
        if proc.returncode != 0:
            errors = [ln for ln in log.splitlines() if "error" in ln.lower()][:8]
            raise BuildFailedError(
                f"kmod build for {tree.release} failed: " + (" | ".join(errors) or log[-800:])
            )
        built = scratch / "out" / "rtcap.ko"
        if not built.exists():
            raise BuildFailedError(f"kmod build for {tree.release} produced no rtcap.ko")
        tmp = out_dir / ".rtcap.ko.tmp"
        shutil.copy2(built, tmp)
        os.replace(tmp, out_dir / "rtcap.ko")
        return out_dir / "rtcap.ko"


def build_warnings(log: str) -> list[str]:
    """Compiler warnings in a kbuild log (the module must build warning-free)."""
    return [ln for ln in log.splitlines() if re.search(r"\bwarning:", ln)]


# ---------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.kernels", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_resolve = sub.add_parser("resolve", help="print the release each selector names")
    p_resolve.add_argument("kernels", nargs="*")
    p_fetch = sub.add_parser("fetch", help="download + extract kernels (default: test set)")
    p_fetch.add_argument("kernels", nargs="*")
    p_fetch.add_argument("--compile-set", action="store_true", help="the compile-check set")
    p_build = sub.add_parser("build-kmod", help="build driver/kmod for kernels")
    p_build.add_argument("kernels", nargs="*")
    p_build.add_argument("--compile-set", action="store_true")
    p_build.add_argument("--driver", type=Path, default=Path(__file__).parent.parent / "driver")
    p_build.add_argument("--out", type=Path, default=cache_root() / "kmod-builds")
    p_tool = sub.add_parser("toolchain", help="prepare the chroot holding gcc-N")
    p_tool.add_argument("gcc", type=int, nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "toolchain":
            for major in args.gcc:
                print(major, toolchain_root(major))
            return 0
        default = COMPILE_KERNELS if getattr(args, "compile_set", False) else TEST_KERNELS
        selected = args.kernels or list(default)
        apt = PrivateApt()
        releases = [resolve(s, apt) for s in selected]
        if args.cmd == "resolve":
            for sel, rel in zip(selected, releases, strict=True):
                print(sel, rel)
            return 0
        status = 0
        for rel in releases:
            started = time.monotonic()
            tree = fetch(rel, apt, image=args.cmd == "fetch")
            if args.cmd == "fetch":
                print(f"{rel} gcc-{tree.gcc_major} {tree.root} ({time.monotonic() - started:.1f}s)")
                continue
            try:
                ko = build_kmod(tree, args.driver, args.out / rel)
            except BuildFailedError as exc:
                print(f"{rel}: FAILED {exc}")
                status = 1
                continue
            warnings = build_warnings((args.out / rel / "build.log").read_text())
            verdict = "ok" if not warnings else f"{len(warnings)} WARNINGS"
            print(f"{rel} gcc-{tree.gcc_major}: {ko} {verdict} ({time.monotonic() - started:.1f}s)")
            for line in warnings:
                print("   ", line)
            status |= bool(warnings)
        return status
    except (DownloadError, UsageError, BuildFailedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
