"""Stand-in distro repositories on loopback, for `driverkit build` against non-Debian targets.

The distros' own mirrors (Amazon Linux, CentOS, Rocky, Fedora, Ubuntu, Arch) are out of
reach here, so these fixtures make their kernel header packages and repositories locally
and serve them on 127.0.0.1, laid out under the real host names and paths.

What is REAL:
- the kernel headers' bytes: a real Debian kernel's headers (`linux-headers-<rel>`, its
  `-common` tree and `linux-kbuild`), the newest ABI the Debian mirror serves at test time,
  verified by driverkit's own archive index (tests/build_helpers_real.py);
- the compilers: builder containers of the Debian suite whose gcc built that kernel;
- the tools and formats: `rpmbuild` makes the kernel-devel rpms, `createrepo_c` their
  repodata (repomd.xml, primary.xml.gz, primary.sqlite.*), `dpkg-deb` the Ubuntu .debs
  (real control files), GNU tar + zstd the Arch `.pkg.tar.zst` (with a `.PKGINFO` first,
  as makepkg writes it), and nginx serves them (HEAD, Range, 404 as a mirror answers);
- the layouts: Amazon Linux 2's `mirror.list` naming a content-hashed repository,
  Packages/ (and Packages/k/) directories, Ubuntu's pool and its flavor/`_all` split with
  relative symlinks, Arch's archive path.

What is STOOD IN:
- the distro's own bytes: each package holds the Debian kernel's headers, not the distro
  kernel's; package metadata (maintainer, packager, descriptions) is ours;
- the naming: release strings are distro-STYLE (`5.10.262-46.3.amzn2.x86_64`,
  `6.1.192-57.el9.x86_64`, `6.1.0-57-generic`, `6.12.118-arch1-1`) built from the Debian
  kernel's upstream version and ABI; no such kernel was ever shipped by those distros.
  The tree's `utsrelease.h` and `kernel.release` carry the stand-in release, so a module
  built against it has vermagic `<stand-in release> SMP ... modversions`. It still loads
  on the Debian kernel whose headers it came from: Debian enables CONFIG_MODVERSIONS, and
  the kernel's same_magic() skips the release part of vermagic for a module that carries
  symbol CRCs, which come from the real Module.symvers the tree keeps.

Which Debian suite backs which target is the gcc rule's choice: the builder driverkit picks
for the stand-in release must have the compiler the Debian kernel was built with
(`STANDIN_SPECS` and `check_gcc`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from ci.kernels import locked
from driverkit.headers import ResolvedHeaders
from tests.repo_servers import free_ports, stop_process, wait_until

# Bump when the trees, packages or layouts made here change: the cache key includes it.
FORMAT = 3
STANDINS_DIR = "standins"
ARCH_RPM = "x86_64"

# The suites whose kernels back the stand-ins, and which releases of each qualify.
DEBIAN_SELECTORS: dict[str, re.Pattern[str]] = {
    "bullseye": re.compile(r"5\.10\.0-\d+-amd64"),
    "bookworm": re.compile(r"6\.1\.0-\d+-amd64"),
    "trixie": re.compile(r"6\.12\.\d+\+deb13-amd64"),
}

_ELF_MAGIC = b"\x7fELF"
_PACKAGER = "driverkit stand-in packages <standin@test.invalid>"


# ---------------------------------------------------------------------------------------
# Debian kernels


def _natural(text: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def debian_release(suite: str, cache_root: Path) -> str:
    """The newest amd64 kernel of `suite` (bullseye 5.10, bookworm 6.1, trixie 6.12) whose
    header packages the mirror serves now: never pinned, the mirror drops old ABIs."""
    from tests.build_helpers_real import real_archive

    pattern = DEBIAN_SELECTORS[suite]
    archive = real_archive(cache_root)
    releases = {
        entry.release
        for name, _ in archive.suites
        if name == suite or name.startswith(suite + "-")
        for entry in archive.kernel_releases(name)
        if entry.flavor == "amd64" and pattern.fullmatch(entry.release)
    }
    for release in sorted(releases, key=_natural, reverse=True):
        found = archive.find_headers(release)
        if all(archive.cache.exists(p.url) for p in found.packages):
            return release
    pytest.fail(f"no reachable {suite} kernel on the mirror ({archive.unreachable})")


@dataclass(frozen=True)
class DebianKernel:
    """A real Debian kernel's headers and the facts the stand-in names derive from."""

    suite: str
    release: str  # 6.1.0-57-amd64
    package_version: str  # 6.1.192-3
    upstream: str  # 6.1.192: the tree Makefile's VERSION.PATCHLEVEL.SUBLEVEL
    abi: str  # 57 of 6.1.0-57-amd64; 6.12.118+deb13 has no ABI number: its SUBLEVEL
    gcc: str  # major of the gcc that built it (CONFIG_GCC_VERSION)
    headers: ResolvedHeaders

    @property
    def revision(self) -> str:
        return self.package_version.rpartition("-")[2] or "1"

    @property
    def package_sha256s(self) -> tuple[str, ...]:
        return tuple(sorted(p.sha256 for p in self.headers.packages))


def debian_kernel(suite: str, cache_root: Path) -> DebianKernel:
    from tests.build_helpers_real import resolve_real_headers

    release = debian_release(suite, cache_root)
    headers = resolve_real_headers(release, cache_root)
    flavor = headers.kernel_dir
    common = common_tree(headers)
    make_vars = dict(
        re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL)\s*=\s*(\d+)", (common / "Makefile").read_text(),
                   re.M)
    )  # fmt: skip
    upstream = f"{make_vars['VERSION']}.{make_vars['PATCHLEVEL']}.{make_vars['SUBLEVEL']}"
    abi_match = re.match(r"\d+\.\d+\.\d+-(\d+)-", release)
    name = next(
        p.url.rsplit("/", 1)[1] for p in headers.packages
        if p.url.rsplit("/", 1)[1].startswith(f"linux-headers-{release}_")
    )  # fmt: skip
    return DebianKernel(
        suite=suite,
        release=release,
        package_version=name.split("_")[1],
        upstream=upstream,
        abi=abi_match.group(1) if abi_match else make_vars["SUBLEVEL"],
        gcc=config_gcc(flavor / ".config"),
        headers=headers,
    )


def config_gcc(config: Path) -> str:
    """The gcc major a kernel .config records (CONFIG_GCC_VERSION=120200 -> 12)."""
    match = re.search(r"^CONFIG_GCC_VERSION=(\d+)$", config.read_text(errors="replace"), re.M)
    if match is None:
        raise ValueError(f"{config}: no CONFIG_GCC_VERSION (not built with gcc?)")
    return str(int(match.group(1)) // 10000)


# ---------------------------------------------------------------------------------------
# The self-contained kernel-devel tree


def common_tree(headers: ResolvedHeaders) -> Path:
    """The `-common` tree Debian's flavor wrapper Makefile includes."""
    flavor = headers.kernel_dir
    text = (flavor / "Makefile").read_text()
    match = re.search(r"^include\s+(\S+)/Makefile\s*$", text, re.M)
    if match is None:
        raise ValueError(f"{flavor}/Makefile includes no -common Makefile:\n{text}")
    common = Path(match.group(1))
    if not common.is_dir():
        # The wrapper as Debian ships it names /usr/src/...: the same path in this tree.
        tree_root = flavor.parents[2]
        common = tree_root / common.relative_to("/")
    if not (common / "Makefile").is_file():
        raise ValueError(f"{flavor}: its -common tree {common} has no Makefile")
    return common


# Debian's flavor wrapper (its Makefile includes the -common one with O=) and the variables
# Debian's patched Makefile reads (KERNELRELEASE override, CC=gcc-N): a kernel-devel tree
# has neither.
_FLAVOR_ONLY = frozenset({"Makefile", ".kernelvariables"})


def _flavor_entries(headers: ResolvedHeaders) -> list[Path]:
    """The flavor package's own entries: not its wrapper, not the links it shares with the
    -common tree (scripts, tools -> linux-kbuild)."""
    flavor, common = headers.kernel_dir, common_tree(headers)
    entries = []
    for entry in sorted(flavor.iterdir()):
        twin = common / entry.name
        if entry.name in _FLAVOR_ONLY or (twin.exists() and twin.resolve() == entry.resolve()):
            continue
        entries.append(entry)
    return entries


def flavor_files(headers: ResolvedHeaders) -> set[str]:
    """Paths (relative to the tree) of the files the flavor package generated for its
    kernel: .config, Module.symvers, include/generated, include/config, ..."""
    found: set[str] = set()
    for entry in _flavor_entries(headers):
        if not entry.is_dir():
            found.add(entry.name)
            continue
        for dirpath, _, files in os.walk(entry, followlinks=True):
            rel = Path(entry.name) / Path(dirpath).relative_to(entry)
            found.update((rel / name).as_posix() for name in files)
    return found


def _copy_dereferenced(sources: Sequence[Path], dest: Path) -> None:
    """cp -rL: real files everywhere, directories merged into `dest`."""
    if sources:
        subprocess.run(
            ["cp", "-rL", "--preserve=mode,timestamps", *map(str, sources), str(dest)],
            check=True, capture_output=True,
        )  # fmt: skip


def standin_tree(headers: ResolvedHeaders, release: str, dest: Path) -> Path:
    """One self-contained kernel-devel tree at `dest`, as an rpm `kernel-devel` ships it:
    srctree == objtree, real files (no links at all), the real kernel Makefile on top (not
    Debian's wrapper), no paths into Debian's split packages (/usr/src/linux-headers-*,
    linux-kbuild) or the cache it was made from, the release set to `release`.

    Made of the Debian kernel's -common tree, the flavor's generated files over it
    (.config, Module.symvers, include/generated, arch/x86/include/generated, ...) and
    linux-kbuild's scripts and tools binaries (the -common tree's scripts/tools links)."""
    common = common_tree(headers)
    if dest.exists():
        raise FileExistsError(dest)
    dest.mkdir(parents=True)
    _copy_dereferenced(sorted(common.iterdir()), dest)
    _copy_dereferenced(_flavor_entries(headers), dest)
    set_tree_release(dest, release)
    problems = check_tree(dest, release, forbidden=(str(headers.root),))
    if problems:
        raise AssertionError(f"stand-in tree {dest}: " + "; ".join(problems))
    return dest


def set_tree_release(tree: Path, release: str) -> None:
    """Name `release` where kbuild reads it: include/generated/utsrelease.h (vermagic's
    UTS_RELEASE) and include/config/kernel.release (KERNELRELEASE). Files are replaced,
    not edited, so hard-linked copies of a tree keep their own."""
    uts = tree / "include" / "generated" / "utsrelease.h"
    extra = [line for line in uts.read_text().splitlines()
             if line.strip() and "UTS_RELEASE " not in line]  # fmt: skip
    for path, text in (
        (uts, "\n".join([f'#define UTS_RELEASE "{release}"', *extra]) + "\n"),
        (tree / "include" / "config" / "kernel.release", release + "\n"),
    ):
        path.unlink(missing_ok=True)
        path.write_text(text)


def retarget_tree(base: Path, release: str, dest: Path) -> Path:
    """A copy of tree `base` (hard links) naming another release."""
    subprocess.run(["cp", "-al", str(base), str(dest)], check=True, capture_output=True)
    set_tree_release(dest, release)
    return dest


# Paths of Debian's split headers (the kernel's own sources mention /usr/src/linux in
# comments: those stay).
DEBIAN_PATHS = ("/usr/src/linux-headers-", "/usr/src/linux-kbuild-", "/usr/lib/linux-kbuild-")


def check_tree(tree: Path, release: str, forbidden: Sequence[str] = ()) -> list[str]:
    """What keeps `tree` from being a kernel-devel tree for `release` (empty: nothing):
    `forbidden` are more paths it must not name (where it was made from)."""
    problems = []
    makefile = (tree / "Makefile").read_text(errors="replace")
    if not re.search(r"^VERSION = \d+$", makefile, re.M) or "include/config/auto.conf" not in (
        makefile
    ):
        problems.append("the top Makefile is not the kernel's")
    for needed in (".config", "Module.symvers", "include/config/auto.conf",
                   "include/generated/autoconf.h", "scripts/basic/fixdep", "scripts/mod/modpost",
                   "arch/x86/include/generated/asm"):  # fmt: skip
        if not (tree / needed).exists():
            problems.append(f"no {needed}")
    uts = (tree / "include" / "generated" / "utsrelease.h").read_text()
    if f'#define UTS_RELEASE "{release}"' not in uts:
        problems.append(f"utsrelease.h does not name {release}: {uts.strip()!r}")
    if (tree / "include" / "config" / "kernel.release").read_text().strip() != release:
        problems.append("include/config/kernel.release does not name the release")
    links = [p for p in tree.rglob("*") if p.is_symlink()]
    if links:
        problems.append(f"{len(links)} symlinks, e.g. {links[0]} -> {os.readlink(links[0])}")
    patterns = [arg for path in (*DEBIAN_PATHS, *forbidden) for arg in ("-e", path)]
    found = subprocess.run(
        ["grep", "-rIlF", *patterns, str(tree)], capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    if found:
        problems.append(f"paths of the Debian packages named in {found[:3]}")
    return problems


# ---------------------------------------------------------------------------------------
# Packages, made by the distros' own tools


def rpm_nvra(release: str) -> tuple[str, str, str]:
    """(version, release, arch) rpm gives a kernel-devel built for `uname -r` = `release`:
    `5.10.226-214.880.amzn2.x86_64` -> (`5.10.226`, `214.880.amzn2`, `x86_64`)."""
    base, dot, arch = release.rpartition(".")
    if not dot or arch not in {"x86_64", "aarch64"}:
        raise ValueError(f"{release}: an rpm kernel release ends in .x86_64 or .aarch64")
    version, dash, rpm_release = base.partition("-")
    if not dash or "-" in rpm_release:
        raise ValueError(f"{release}: expected <version>-<release>.<arch>")
    return version, rpm_release, arch


def kernel_devel_rpm(tree: Path, release: str, outdir: Path) -> Path:
    """`kernel-devel-<version>-<release>.<arch>.rpm` built by rpmbuild, payload
    /usr/src/kernels/<release>/ (the tree), gzip -1 payload, no brp scripts, no strip,
    no automatic requires/provides."""
    version, rpm_release, arch = rpm_nvra(release)
    outdir.mkdir(parents=True, exist_ok=True)
    top = Path(tempfile.mkdtemp(prefix=".rpmbuild-", dir=outdir))
    try:
        spec = top / "kernel-devel.spec"
        spec.write_text(
            textwrap.dedent(f"""\
            %define _binary_payload w1.gzdio
            %define __os_install_post %{{nil}}
            %define __spec_install_post %{{nil}}
            %define debug_package %{{nil}}
            %define _build_id_links none
            Name: kernel-devel
            Version: {version}
            Release: {rpm_release}
            Summary: Development package for building kernel modules to match the kernel
            License: GPLv2
            AutoReqProv: no
            Provides: kernel-devel-{arch} = {version}-{rpm_release}
            Provides: kernel-devel-uname-r = {release}

            %description
            Stand-in kernel-devel for {release}: the kernel headers and makefiles
            sufficient to build modules against it, made from a Debian kernel's headers.

            %install
            mkdir -p %{{buildroot}}/usr/src/kernels
            cp -a '{tree}' '%{{buildroot}}/usr/src/kernels/{release}'

            %files
            %defattr(-,root,root)
            /usr/src/kernels/{release}
            """)
        )
        done = subprocess.run(
            ["rpmbuild", "-bb", "--target", arch, "--define", f"_topdir {top}",
             "--define", "_tmppath %{_topdir}/tmp", str(spec)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        built = top / "RPMS" / arch / f"kernel-devel-{version}-{rpm_release}.{arch}.rpm"
        if done.returncode != 0 or not built.is_file():
            raise RuntimeError(f"rpmbuild failed ({done.returncode}):\n{done.stderr[-3000:]}")
        dest = outdir / built.name
        os.replace(built, dest)
        return dest
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _is_elf(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == _ELF_MAGIC


def _installed_size_kib(root: Path) -> int:
    total = sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() or p.is_symlink())
    return (total + 1023) // 1024


def _dpkg_deb(staging: Path, control: dict[str, str], description: str, dest: Path) -> Path:
    control = {**control, "Installed-Size": str(_installed_size_kib(staging))}
    debian = staging / "DEBIAN"
    debian.mkdir(mode=0o755)
    lines = [f"{key}: {value}" for key, value in control.items()]
    summary, _, body = description.partition("\n")
    lines.append(f"Description: {summary}")
    lines.extend(f" {line}" if line.strip() else " ." for line in body.splitlines())
    (debian / "control").write_text("\n".join(lines) + "\n")
    (debian / "control").chmod(0o644)
    done = subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zzstd", "-z3", "--build", str(staging), str(dest)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"dpkg-deb --build failed: {done.stderr.strip()}")
    return dest


def _link_shared(shared: Path, flavor: Path, shared_name: str, rel: Path = Path()) -> None:
    """Fill `flavor` with relative links to what `shared` has and it lacks, as deep as
    needed: a directory both have is walked, anything else is one link to the shared tree
    (`include/linux -> ../../linux-headers-6.1.0-57/include/linux`)."""
    for entry in sorted((shared / rel).iterdir()):
        item = rel / entry.name
        own = flavor / item
        if own.is_dir() and not own.is_symlink():
            if entry.is_dir() and not entry.is_symlink():
                _link_shared(shared, flavor, shared_name, item)
            continue
        if own.exists() or own.is_symlink():
            continue
        own.symlink_to("../" * len(item.parts) + f"{shared_name}/{item.as_posix()}")


def ubuntu_header_debs(
    tree: Path, own_files: set[str], release: str, version: str, outdir: Path
) -> tuple[Path, Path]:
    """Ubuntu's pair for `release` (`6.1.0-57-generic`), package version `version`
    (`6.1.0-57.57`), built with dpkg-deb:

    - `linux-headers-<base>_<version>_all.deb`: /usr/src/linux-headers-<base>/, the tree
      without the flavor's files;
    - `linux-headers-<release>_<version>_amd64.deb`: /usr/src/linux-headers-<release>/,
      the flavor's generated files and the arch-dependent binaries (ELF files of
      scripts/ and tools/) as files, everything else a relative link into the `_all` tree,
      and /lib/modules/<release>/build -> that directory.

    `own_files`: the tree paths the flavor owns (flavor_files()).
    """
    match = re.fullmatch(r"(\d+\.\d+\.\d+-\d+)-([a-z][a-z0-9-]*)", release)
    if match is None:
        raise ValueError(f"{release}: an Ubuntu release looks like 6.1.0-57-generic")
    base, flavor_name = match.groups()
    shared_name, flavor_dir = f"linux-headers-{base}", f"linux-headers-{release}"
    owned = set(own_files)
    for sub in ("scripts", "tools"):
        owned.update(
            p.relative_to(tree).as_posix() for p in (tree / sub).rglob("*")
            if p.is_file() and not p.is_symlink() and _is_elf(p)
        )  # fmt: skip
    outdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ubuntu-debs-", dir=outdir))
    try:
        all_stage, flavor_stage = work / "all", work / "flavor"
        shared = all_stage / "usr" / "src" / shared_name
        own = flavor_stage / "usr" / "src" / flavor_dir
        shared.parent.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(tree), str(shared)], check=True, capture_output=True)
        for rel in sorted(owned):
            source = shared / rel
            if source.is_file():
                (own / rel).parent.mkdir(parents=True, exist_ok=True)
                os.rename(source, own / rel)
        for dirpath, _, _ in sorted(os.walk(shared), reverse=True):  # now-empty dirs
            with contextlib.suppress(OSError):
                Path(dirpath).rmdir()
        _link_shared(shared, own, shared_name)
        build_link = flavor_stage / "lib" / "modules" / release / "build"
        build_link.parent.mkdir(parents=True)
        build_link.symlink_to(f"/usr/src/{flavor_dir}")
        common = {"Source": "linux", "Version": version, "Section": "devel",
                  "Priority": "optional", "Maintainer": _PACKAGER}  # fmt: skip
        all_deb = _dpkg_deb(
            all_stage,
            {"Package": shared_name, **common, "Architecture": "all",
             "Multi-Arch": "foreign"},
            f"Header files related to Linux kernel version {base.split('-')[0]}\n"
            f"Stand-in: this package provides kernel header files for version {base}, made\n"
            "from a Debian kernel's headers for driverkit's tests.",
            outdir / f"{shared_name}_{version}_all.deb",
        )  # fmt: skip
        flavor_deb = _dpkg_deb(
            flavor_stage,
            {"Package": flavor_dir, **common, "Architecture": "amd64",
             "Depends": f"{shared_name}, libc6 (>= 2.34), libelf1 (>= 0.142), "
                        "libssl3 (>= 3.0.0~~alpha1), zlib1g (>= 1:1.2.3.3)",
             "Provides": "linux-headers, linux-headers-3.0"},
            f"Linux kernel headers for version {base.split('-')[0]} on 64 bit x86 SMP\n"
            f"Stand-in: the {flavor_name} flavor's headers for {release}, made from a\n"
            "Debian kernel's headers for driverkit's tests.",
            outdir / f"{flavor_dir}_{version}_amd64.deb",
        )  # fmt: skip
        return flavor_deb, all_deb
    finally:
        shutil.rmtree(work, ignore_errors=True)


_ARCH_RELEASE = re.compile(r"(\d+\.\d+(?:\.\d+)?)-(arch\d+)-(\d+)", re.ASCII)


def arch_pkgver(release: str) -> tuple[str, str]:
    """(pkgver, pkgrel) of Arch's linux-headers for `uname -r` = `release`:
    `6.12.9-arch1-1` -> (`6.12.9.arch1`, `1`); a zero sublevel is dropped (6.8.arch1)."""
    match = _ARCH_RELEASE.fullmatch(release)
    if match is None:
        raise ValueError(f"{release}: an Arch release looks like 6.12.9-arch1-1")
    version, tag, pkgrel = match.groups()
    if version.count(".") == 2 and version.endswith(".0"):
        version = version[: -len(".0")]
    return f"{version}.{tag}", pkgrel


def arch_headers_pkg(tree: Path, release: str, outdir: Path) -> Path:
    """`linux-headers-<pkgver>-<pkgrel>-x86_64.pkg.tar.zst` as makepkg lays it out:
    `.PKGINFO` first, then usr/lib/modules/<release>/build/ (the tree) and the
    usr/src/linux -> ../lib/modules/<release>/build link; zstd-compressed tar."""
    pkgver, pkgrel = arch_pkgver(release)
    outdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".arch-pkg-", dir=outdir))
    try:
        build = work / "usr" / "lib" / "modules" / release / "build"
        build.parent.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(tree), str(build)], check=True, capture_output=True)
        (work / "usr" / "src").mkdir()
        (work / "usr" / "src" / "linux").symlink_to(f"../lib/modules/{release}/build")
        builddate = int((tree / "Makefile").stat().st_mtime)
        size = sum(p.lstat().st_size for p in work.rglob("*") if not p.is_dir())
        (work / ".PKGINFO").write_text(
            textwrap.dedent(f"""\
            # Generated by tests/distro_repos.py (stand-in for makepkg)
            pkgname = linux-headers
            pkgbase = linux
            xdata = pkgtype=split
            pkgver = {pkgver}-{pkgrel}
            pkgdesc = Headers and scripts for building modules for the Linux kernel
            url = https://github.com/archlinux/linux
            builddate = {builddate}
            packager = {_PACKAGER}
            size = {size}
            arch = x86_64
            license = GPL-2.0-only
            depends = pahole
            """)
        )
        dest = outdir / f"linux-headers-{pkgver}-{pkgrel}-x86_64.pkg.tar.zst"
        members = [".PKGINFO", *sorted(p.name for p in work.iterdir() if p.name != ".PKGINFO")]
        done = subprocess.run(
            ["tar", "--zstd", "-c", "-f", str(dest), "-C", str(work), "--owner=0", "--group=0",
             "--numeric-owner", "--sort=name", *members],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"tar --zstd failed: {done.stderr.strip()}")
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def createrepo(repo: Path, revision: str = "") -> Path:
    """createrepo_c's repodata for the yum repository at `repo` (its repomd.xml);
    `revision`, when given, names the repository's revision (otherwise a timestamp)."""
    if shutil.which("createrepo_c") is None:
        raise RuntimeError("createrepo_c is missing: apt-get install createrepo-c (ci/setup.sh)")
    repo.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["createrepo_c", "--quiet", "--database", "--checksum", "sha256",
         *(["--revision", revision] if revision else []), str(repo)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"createrepo_c {repo} failed: {done.stderr.strip()}")
    return repo / "repodata" / "repomd.xml"


# ---------------------------------------------------------------------------------------
# The stand-ins: which Debian kernel backs which target, named how, laid out where


@dataclass(frozen=True)
class StandIn:
    """One target's stand-in kernel: pass `release`, `target` and `kernel_version` to
    `driverkit build` (with repo_mirror_args) and it finds `files` on the loopback server
    at `urls` (their real-host URLs)."""

    target: str  # --target
    target_id: str  # artifact target id (ubuntu-generic)
    release: str  # --kernel (`uname -r` of the stood-in kernel)
    kernel_version: str  # --kernel-version (`uname -v`, or a build number)
    debian_release: str  # the real Debian kernel whose headers these are
    suite: str  # its Debian suite
    gcc: str  # the gcc major that built it, and that driverkit's builder must have
    files: tuple[Path, ...]  # the packages, in the served root
    urls: tuple[str, ...]  # the same files as their real-host URLs


@dataclass(frozen=True)
class StandInRepos:
    root: Path  # <root>/<host>/<path>: serve this
    standins: tuple[StandIn, ...]

    def get(self, target: str) -> StandIn:
        for standin in self.standins:
            if target in (standin.target, standin.target_id):
                return standin
        raise KeyError(target)

    @property
    def hosts(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())


@dataclass(frozen=True)
class _Spec:
    target: str
    suite: str
    release: Callable[[DebianKernel], str]
    kernel_version: Callable[[DebianKernel], str]
    lay_out: Callable[[Path, DebianKernel, str, Path, Path], list[tuple[Path, str]]]


def _url_path(root: Path, url: str) -> Path:
    parts = urlsplit(url)
    return root / parts.netloc / parts.path.lstrip("/")


def _place(package: Path, root: Path, url: str) -> tuple[Path, str]:
    dest = _url_path(root, url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(package, dest)
    return dest, url


AL2_LISTS = "http://amazonlinux.us-east-1.amazonaws.com/2"
AL2_CDN = "https://cdn.amazonlinux.com/2"
# Amazon Linux 2's repositories as yum sees them; core/latest names core/2.0's mirror.
AL2_REPOS = ("core/2.0", "core/latest", "extras/kernel-5.4/latest", "extras/kernel-5.10/latest",
             "extras/kernel-5.15/latest")  # fmt: skip


def _al2_repo_of(upstream: str) -> str:
    series = ".".join(upstream.split(".")[:2])
    return f"extras/kernel-{series}/latest" if series in {"5.4", "5.10", "5.15"} else "core/2.0"


def _lay_out_al2(tree: Path, dk: DebianKernel, release: str, root: Path,
                 work: Path) -> list[tuple[Path, str]]:  # fmt: skip
    """mirror.list per repository, naming `https://cdn.amazonlinux.com/2/<repo>/x86_64/<hash>/`
    (the hash: of the repository's repomd.xml); the rpm only in its kernel's extras repo."""
    rpm = kernel_devel_rpm(tree, release, work)
    home = _al2_repo_of(dk.upstream)
    repo_urls: dict[str, str] = {}
    placed: list[tuple[Path, str]] = []
    for repo in AL2_REPOS:
        real = "core/2.0" if repo == "core/latest" else repo
        if real not in repo_urls:
            staging = _url_path(root, f"{AL2_CDN}/{real}/{ARCH_RPM}/.staging")
            packages = staging / "Packages"
            packages.mkdir(parents=True)
            if real == home:
                os.replace(rpm, packages / rpm.name)
            repomd = createrepo(staging, revision=f"amzn2-{real.replace('/', '-')}")
            digest = hashlib.sha256(repomd.read_bytes()).hexdigest()
            os.rename(staging, staging.with_name(digest))
            repo_urls[real] = f"{AL2_CDN}/{real}/{ARCH_RPM}/{digest}/"
            if real == home:
                url = f"{repo_urls[real]}Packages/{rpm.name}"
                placed.append((_url_path(root, url), url))
        mirror_list = _url_path(root, f"{AL2_LISTS}/{repo}/{ARCH_RPM}/mirror.list")
        mirror_list.parent.mkdir(parents=True, exist_ok=True)
        mirror_list.write_text(repo_urls[real] + "\n")
    return placed


def _yum_layout(repo_root: str, package_dir: str, empty_repos: Sequence[str] = ()) -> Callable[
    [Path, DebianKernel, str, Path, Path], list[tuple[Path, str]]
]:  # fmt: skip
    """The rpm in `<repo_root>/<package_dir>/`, createrepo_c repodata at `repo_root`, and
    repositories with nothing of ours (`empty_repos`) indexed empty."""

    def lay_out(tree: Path, dk: DebianKernel, release: str, root: Path,
                work: Path) -> list[tuple[Path, str]]:  # fmt: skip
        rpm = kernel_devel_rpm(tree, release, work)
        placed = _place(rpm, root, f"{repo_root}/{package_dir}/{rpm.name}")
        createrepo(_url_path(root, repo_root))
        for other in empty_repos:
            createrepo(_url_path(root, other))
        return [placed]

    return lay_out


UBUNTU_POOL = "https://mirrors.edge.kernel.org/ubuntu/pool/main/l/linux"


def _lay_out_ubuntu(tree: Path, dk: DebianKernel, release: str, root: Path,
                    work: Path) -> list[tuple[Path, str]]:  # fmt: skip
    version = f"{release.rsplit('-', 1)[0]}.{dk.abi}"
    debs = ubuntu_header_debs(tree, flavor_files(dk.headers), release, version, work)
    return [_place(deb, root, f"{UBUNTU_POOL}/{deb.name}") for deb in debs]


ARCH_ARCHIVE = "https://archive.archlinux.org/packages/l/linux-headers"


def _lay_out_arch(tree: Path, dk: DebianKernel, release: str, root: Path,
                  work: Path) -> list[tuple[Path, str]]:  # fmt: skip
    package = arch_headers_pkg(tree, release, work)
    return [_place(package, root, f"{ARCH_ARCHIVE}/{package.name}")]


def _rpm_release(template: str) -> Callable[[DebianKernel], str]:
    return lambda dk: template.format(up=dk.upstream, abi=dk.abi, rev=dk.revision)


# Per target: the suite whose gcc driverkit's rule picks for the stand-in release (checked
# by check_gcc), the stand-in release, and where the distro keeps such a package.
STANDIN_SPECS: tuple[_Spec, ...] = (
    # AL2's 5.10 kernels build with gcc 10 (the target's rule): bullseye's 5.10.
    _Spec(
        "amazonlinux2",
        "bullseye",
        _rpm_release("{up}-{abi}.{rev}.amzn2.x86_64"),
        lambda dk: "1",
        _lay_out_al2,
    ),
    # 6.1 gets the default gcc 12 everywhere (CentOS's gcc pins stop at 4.x): bookworm.
    # CentOS Stream 9 keeps kernel-devel in AppStream, flat Packages/ (a later candidate).
    _Spec(
        "centos",
        "bookworm",
        _rpm_release("{up}-{abi}.el9.x86_64"),
        lambda dk: "1",
        _yum_layout("http://mirror.stream.centos.org/9-stream/AppStream/x86_64/os", "Packages"),
    ),
    # Rocky 9.1 moved to the vault: not at the first candidate, the search must walk on.
    _Spec(
        "rocky",
        "bookworm",
        _rpm_release("{up}-{abi}.1.el9_1.x86_64"),
        lambda dk: "1",
        _yum_layout(
            "https://download.rockylinux.org/vault/rocky/9.1/AppStream/x86_64/os",
            "Packages/k",
            ["https://download.rockylinux.org/pub/rocky/9/AppStream/x86_64/os"],
        ),
    ),
    # Fedora 37 updates: Packages/k/, repodata at Everything/x86_64.
    _Spec(
        "fedora",
        "bookworm",
        _rpm_release("{up}-200.fc37.x86_64"),
        lambda dk: "1",
        _yum_layout("https://mirrors.kernel.org/fedora/updates/37/Everything/x86_64", "Packages/k"),
    ),
    # Ubuntu's ABI number is Debian's; its upload number rides in `uname -v`.
    _Spec(
        "ubuntu",
        "bookworm",
        lambda dk: f"{dk.upstream.rsplit('.', 1)[0]}.0-{dk.abi}-generic",
        lambda dk: f"#{dk.abi}-Ubuntu SMP PREEMPT_DYNAMIC",
        _lay_out_ubuntu,
    ),
    # 6.12 wants gcc 14: trixie's 6.12.
    _Spec("arch", "trixie", lambda dk: f"{dk.upstream}-arch1-1", lambda dk: "1", _lay_out_arch),
)


def plan_for(target: str, release: str, kernel_version: str = "1", **config: Any) -> Any:
    """driverkit's build plan for a stand-in (offline: no I/O)."""
    from driverkit.config import load_config, resolve_plan
    from driverkit.mirrors import host_mirrors

    return resolve_plan(release, load_config(config), host_mirrors(), target=target,
                        kernel_version=kernel_version)  # fmt: skip


def check_gcc(standin: StandIn) -> str | None:
    """Why driverkit's builder for the stand-in has another gcc than its kernel's, or None."""
    plan = plan_for(standin.target, standin.release, standin.kernel_version)
    if plan.gcc != standin.gcc:
        return (
            f"{standin.target} {standin.release}: driverkit builds with gcc {plan.gcc}, "
            f"the {standin.debian_release} headers were built with gcc {standin.gcc}"
        )
    return None


def _candidate_hosts(standin: StandIn) -> set[str]:
    """Every host driverkit's candidates for the stand-in name: served too (404 where we
    have nothing), so a lookup never leaves the machine."""
    plan = plan_for(standin.target, standin.release, standin.kernel_version)
    return {urlsplit(url).netloc for url in plan.headers}


def _fresh_dir(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
    path.chmod(0o755)  # nginx's workers (nobody) read the served root
    return path


def _standin_key(spec: _Spec, dk: DebianKernel) -> str:
    payload = json.dumps({"format": FORMAT, "target": spec.target, "release": spec.release(dk),
                          "kernel_version": spec.kernel_version(dk),
                          "debian": dk.package_sha256s}, sort_keys=True)  # fmt: skip
    return f"{spec.target}-{hashlib.sha256(payload.encode()).hexdigest()[:20]}"


def _build_one(spec: _Spec, dk: DebianKernel, tree: Path, dest: Path) -> None:
    """The stand-in's own part of the served root, under `dest/root`, and its record,
    `dest/standin.json`; `tree` is the stand-in tree for its release."""
    release, kernel_version = spec.release(dk), spec.kernel_version(dk)
    root = dest / "root"
    root.mkdir()
    work = dest / ".work"
    try:
        placed = spec.lay_out(tree, dk, release, root, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    plan = plan_for(spec.target, release, kernel_version)
    standin = StandIn(
        target=spec.target, target_id=str(plan.artifact.target_id), release=release,
        kernel_version=kernel_version, debian_release=dk.release, suite=dk.suite, gcc=dk.gcc,
        files=tuple(path for path, _ in placed), urls=tuple(url for _, url in placed),
    )  # fmt: skip
    for host in _candidate_hosts(standin):
        (root / host).mkdir(exist_ok=True)
    record = dataclasses.asdict(standin)
    record["files"] = [p.relative_to(root).as_posix() for p in standin.files]
    (dest / "standin.json").write_text(json.dumps(record, indent=2) + "\n")


def build_standins(cache_root: Path | None = None) -> StandInRepos:
    """Every stand-in (STANDIN_SPECS) and the one root that serves them all.

    Cached under `<cache>/standins/`: each stand-in by its target, release and the sha256s
    of the Debian packages it is made of (a new Debian upload makes a new one), the served
    root by the stand-ins it unites (hard links). Stale entries are removed. Safe across
    processes (one builds, the others wait for it)."""
    from driverkit.cache import default_cache_dir

    cache = cache_root or default_cache_dir()
    base = cache / STANDINS_DIR
    with locked(base / ".lock"):
        kernels = {s.suite: debian_kernel(s.suite, cache) for s in STANDIN_SPECS}
        keys: list[str] = []
        scratch = _fresh_dir(base, "scratch")
        trees: dict[str, Path] = {}  # one tree per Debian kernel, hard-linked per release
        try:
            for spec in STANDIN_SPECS:
                dk = kernels[spec.suite]
                key = _standin_key(spec, dk)
                keys.append(key)
                if (base / key / "standin.json").is_file():
                    continue
                tree = scratch / spec.target
                if spec.suite in trees:
                    retarget_tree(trees[spec.suite], spec.release(dk), tree)
                else:
                    trees[spec.suite] = standin_tree(dk.headers, spec.release(dk), tree)
                entry = _fresh_dir(base, key)
                try:
                    _build_one(spec, dk, tree, entry)
                except BaseException:
                    shutil.rmtree(entry, ignore_errors=True)
                    raise
                os.rename(entry, base / key)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        root_key = "root-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]
        served = base / root_key
        if not served.is_dir():
            tmp = _fresh_dir(base, root_key)
            for key in keys:
                subprocess.run(["cp", "-al", f"{base / key / 'root'}/.", str(tmp)],
                               check=True, capture_output=True)  # fmt: skip
            os.rename(tmp, served)
        _prune(base, {*keys, root_key})
    standins = []
    for key in keys:
        record = json.loads((base / key / "standin.json").read_text())
        record["files"] = tuple(served / f for f in record["files"])
        record["urls"] = tuple(record["urls"])
        standins.append(StandIn(**record))
    return StandInRepos(served, tuple(standins))


def _prune(base: Path, keep: set[str]) -> None:
    for entry in base.iterdir():
        if entry.name in keep or entry.name == ".lock":
            continue
        if entry.name.startswith(".") and time.time() - entry.stat().st_mtime < 3600:
            continue  # maybe another process's work in progress (it holds no lock then)
        shutil.rmtree(entry, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# The loopback server


@dataclass
class RepoServer:
    """nginx serving `root` read-only on 127.0.0.1: static files, HEAD, byte ranges, 404."""

    root: Path
    prefix: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, real_url: str) -> str:
        """Where the server answers for a real-host URL."""
        parts = urlsplit(real_url)
        return f"{self.url}/{parts.netloc}{parts.path}"

    def start(self) -> None:
        (self.prefix / "logs").mkdir(parents=True, exist_ok=True)
        (self.prefix / "tmp").mkdir(exist_ok=True)
        self.port = free_ports(1)[0]
        temp_paths = "\n".join(
            f"    {kind}_temp_path {self.prefix}/tmp/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # Workers drop to nobody under root: they need to reach the files.
        user = "" if os.geteuid() != 0 or _world_readable(self.root) else "user root;"
        conf = self.prefix / "nginx.conf"
        conf.write_text(
            textwrap.dedent(f"""\
            daemon off;
            worker_processes 1;
            {user}
            pid {self.prefix}/nginx.pid;
            error_log {self.prefix}/logs/error.log warn;
            events {{ worker_connections 256; }}
            http {{
            access_log {self.prefix}/logs/access.log;
            default_type application/octet-stream;
            sendfile on;
            {temp_paths.strip()}
                server {{
                    listen 127.0.0.1:{self.port};
                    root {self.root};
                    location / {{ autoindex off; }}
                }}
            }}
            """)
        )
        log = self.prefix / "logs" / "stderr.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["nginx", "-c", str(conf), "-p", str(self.prefix)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_until(lambda: requests.get(self.url + "/", timeout=2).status_code in {403, 404},
                       self.proc, "nginx", log)  # fmt: skip
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGQUIT, 10)


def _world_readable(path: Path) -> bool:
    """Whether others (nginx's workers) may traverse every directory down to `path`."""
    return all(part.stat().st_mode & 0o001 for part in (path, *path.parents))


@contextlib.contextmanager
def serve_repos(root: Path) -> Iterator[RepoServer]:
    """nginx on a free loopback port serving `root` until the block ends."""
    if shutil.which("nginx") is None:
        raise RuntimeError("nginx is missing: apt-get install nginx-light (ci/setup.sh)")
    prefix = Path(tempfile.mkdtemp(prefix="dk-standin-nginx-"))
    prefix.chmod(0o755)
    server = RepoServer(root, prefix)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(prefix, ignore_errors=True)


def repo_mirror_args(server: RepoServer) -> list[str]:
    """`--repo-mirror FROM=TO` for every real host the server has, both schemes:
    `https://cdn.amazonlinux.com/=http://127.0.0.1:PORT/cdn.amazonlinux.com/`."""
    args: list[str] = []
    for host in sorted(p.name for p in server.root.iterdir() if p.is_dir()):
        for scheme in ("http", "https"):
            args += ["--repo-mirror", f"{scheme}://{host}/={server.url}/{host}/"]
    return args


def routed_session(server: RepoServer) -> requests.Session:
    """A requests session that fetches every URL of a served host from the server, through
    driverkit's own --repo-mirror routing (what repo_mirror_args asks of the CLI), for
    library-level lookups in tests."""
    from driverkit.mirrors import resolve_mirrors
    from driverkit.netroutes import repository_session
    from driverkit.targets.base import Mirrors

    pairs = repo_mirror_args(server)[1::2]
    return repository_session(resolve_mirrors(discovered=Mirrors(), repo_mirrors=tuple(pairs)))


# ---------------------------------------------------------------------------------------
# Installing and compiling, as the distro's user would


def install_packages(files: Sequence[Path], dest: Path) -> Path:
    """Unpack the stand-in's packages into `dest` with the distro's own format tools
    (rpm2cpio | cpio, dpkg-deb -x, tar) as its package manager would lay them out."""
    dest.mkdir(parents=True, exist_ok=True)
    for package in files:
        if package.name.endswith(".rpm"):
            subprocess.run(f"rpm2cpio '{package}' | cpio -idm --quiet", shell=True,
                           cwd=dest, check=True)  # fmt: skip
        elif package.name.endswith(".deb"):
            subprocess.run(["dpkg-deb", "-x", str(package), str(dest)], check=True)
        else:
            subprocess.run(["tar", "-x", "-f", str(package), "-C", str(dest),
                            "--exclude=.PKGINFO"], check=True)  # fmt: skip
    return dest


def installed_kernel_dir(standin: StandIn, root: Path) -> Path:
    """Where the distro puts the headers tree once its packages are installed."""
    for candidate in (
        root / "usr" / "src" / "kernels" / standin.release,
        root / "usr" / "src" / f"linux-headers-{standin.release}",
        root / "usr" / "lib" / "modules" / standin.release / "build",
    ):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no headers tree for {standin.release} under {root}")


HELLO_C = """\
#include <linux/module.h>
#include <linux/init.h>

static int __init standin_hello_init(void)
{
	pr_info("standin_hello: loaded\\n");
	return 0;
}

static void __exit standin_hello_exit(void)
{
	pr_info("standin_hello: unloaded\\n");
}

module_init(standin_hello_init);
module_exit(standin_hello_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("checks that a stand-in kernel-devel tree builds modules");
"""


def compile_hello(kernel_dir: Path, mount: Path, image: str, workdir: Path) -> tuple[Path, str]:
    """`make -C <kernel_dir> M=<dir> modules` for a trivial module in builder `image`,
    with `mount` (holding kernel_dir) mounted read-only at the same path and no network.
    Returns (the .ko, the build log); raises with the log when the build fails."""
    from driverkit.containers import Mount, docker_engine

    module = workdir / "hello"
    module.mkdir(parents=True)
    (module / "standin_hello.c").write_text(HELLO_C)
    (module / "Makefile").write_text("obj-m := standin_hello.o\n")
    script = f"make -C '{kernel_dir}' M='{module}' modules 2>&1"
    with docker_engine() as engine:
        mounts = [Mount(mount, str(mount), read_only=True),
                  Mount(module, str(module), read_only=False)]  # fmt: skip
        with engine.container(image, ["sh", "-c", script], mounts=mounts) as box:
            result = box.run(600)
    ko = module / "standin_hello.ko"
    if result.exit_code != 0 or not ko.is_file():
        raise AssertionError(f"module build failed ({result.exit_code}):\n{result.logs[-4000:]}")
    return ko, result.logs


def module_crcs(ko: Path) -> dict[str, int]:
    """Symbol -> CRC from a module's __versions section (CONFIG_MODVERSIONS)."""
    from elftools.elf.elffile import ELFFile

    with ko.open("rb") as fh:
        section = ELFFile(fh).get_section_by_name("__versions")
        if section is None:
            return {}
        data = section.data()
    crcs: dict[str, int] = {}
    for offset in range(0, len(data) - 63, 64):  # struct modversion_info: u64 crc, name[56]
        name = data[offset + 8 : offset + 64].split(b"\0", 1)[0].decode()
        crcs[name] = int.from_bytes(data[offset : offset + 8], "little") & 0xFFFFFFFF
    return crcs


def symvers_crcs(symvers: Path) -> dict[str, int]:
    """Symbol -> CRC from a Module.symvers."""
    crcs: dict[str, int] = {}
    for line in symvers.read_text(errors="replace").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0].startswith("0x"):
            crcs[fields[1]] = int(fields[0], 16)
    return crcs


def builder_image_for(standin: StandIn, cache_root: Path) -> str:
    """The builder image `driverkit build` would run for the stand-in, built if missing
    (`driverkit images build`), from debootstrap unless DK_BASE_FROM=registry."""
    from driverkit.containers import docker_engine
    from driverkit.images import ensure_plan_image
    from driverkit.mirrors import host_mirrors

    plan = plan_for(standin.target, standin.release, standin.kernel_version,
                    base_from=os.environ.get("DK_BASE_FROM", "debootstrap"))  # fmt: skip
    with docker_engine() as engine:
        return str(ensure_plan_image(engine, plan, host_mirrors(), cache_root))


# ---------------------------------------------------------------------------------------
# pytest fixtures (import them into a conftest, or call the functions from your own)

TOOLS = ("rpmbuild", "createrepo_c", "dpkg-deb", "zstd", "tar", "nginx", "rpm2cpio", "cpio")


def require_tools() -> None:
    """Skip locally, fail under CI=true, when a tool the stand-ins need is missing."""
    from tests.conftest import require

    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    require(not missing, f"stand-in repositories need {', '.join(missing)} (see ci/setup.sh)")


@pytest.fixture(scope="session")
def distro_standins() -> StandInRepos:
    """Every stand-in, built or taken from the cache (needs the Debian mirror)."""
    require_tools()
    return build_standins()


@pytest.fixture(scope="session")
def distro_repo_server(distro_standins: StandInRepos) -> Iterator[RepoServer]:
    """nginx serving the stand-ins' root on loopback for the session."""
    with serve_repos(distro_standins.root) as server:
        yield server
