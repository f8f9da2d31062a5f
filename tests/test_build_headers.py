"""Header extraction: real .deb archives built here with dpkg-deb, unpacked by our
pure-Python reader, assembled into a per-kernel tree of links to shared packages."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from driverkit.cache import DownloadCache
from driverkit.config import load_config, resolve_plan
from driverkit.errors import DownloadError
from driverkit.headers import HeaderPackage, HeaderResolver, extract_deb, extract_package
from driverkit.targets.base import Mirrors
from tests.build_helpers import serve_dir
from tests.conftest import require

RELEASE = "6.1.0-47-amd64"


def _stage(root: Path, files: dict[str, str], links: dict[str, str]) -> Path:
    """A package's file tree: text files and symlinks at the given relative paths."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel, target in links.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(target)
    return root


def _deb(tmp: Path, name: str, files: dict[str, str], links: dict[str, str]) -> Path:
    require(shutil.which("dpkg-deb") is not None, "needs dpkg-deb to build test packages")
    root = _stage(tmp / f"{name}-root", files, links)
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
    )
    out = tmp / f"{name}.deb"
    subprocess.run(
        ["dpkg-deb", "-Zxz", "--build", str(root), str(out)], check=True, capture_output=True
    )
    return out


@pytest.fixture
def packages(tmp_path: Path) -> list[Path]:
    common = "linux-headers-6.1.0-47-common"
    include = f"include /usr/src/{common}/Makefile\n"
    return [
        _deb(
            tmp_path,
            f"linux-headers-{RELEASE}",
            {
                f"usr/src/linux-headers-{RELEASE}/Makefile": include,
                f"usr/src/linux-headers-{RELEASE}/.config": "CONFIG_X=y\n",
            },
            {f"usr/src/linux-headers-{RELEASE}/scripts": "../../lib/linux-kbuild-6.1/scripts"},
        ),
        _deb(
            tmp_path,
            common,
            {f"usr/src/{common}/Makefile": "# top\n", f"usr/src/{common}/include/a.h": "a\n"},
            {
                f"usr/src/{common}/scripts": "../../lib/linux-kbuild-6.1/scripts",
                f"usr/src/{common}/include/b.h": "a.h",
            },
        ),
        _deb(
            tmp_path, "linux-kbuild-6.1", {"usr/lib/linux-kbuild-6.1/scripts/modpost": "bin\n"}, {}
        ),
    ]


def test_extract_deb_matches_dpkg(tmp_path: Path, packages: list[Path]) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    extract_deb(packages[1], ours)
    subprocess.run(["dpkg-deb", "-x", str(packages[1]), str(theirs)], check=True)
    listing = sorted(str(p.relative_to(ours)) for p in ours.rglob("*"))
    assert listing == sorted(str(p.relative_to(theirs)) for p in theirs.rglob("*"))
    link = ours / "usr/src/linux-headers-6.1.0-47-common/include/b.h"
    assert link.is_symlink() and link.read_text() == "a\n"


def test_not_a_package_is_a_download_error(tmp_path: Path) -> None:
    bogus = tmp_path / "x.deb"
    bogus.write_bytes(b"<html>captive portal</html>")
    with pytest.raises(DownloadError, match=r"x\.deb"):
        extract_deb(bogus, tmp_path / "out")


def test_tree_links_shared_packages_and_rewrites_absolute_includes(
    tmp_path: Path, packages: list[Path]
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    for deb in packages:
        shutil.copy(deb, www / deb.name)
    cache = DownloadCache(tmp_path / "cache")
    with serve_dir(www) as (base, hits):
        pkgs = tuple(
            HeaderPackage(
                f"{base}/{d.name}", hashlib.sha256(d.read_bytes()).hexdigest(), d.stat().st_size
            )
            for d in packages
        )
        plan = resolve_plan(
            RELEASE,
            load_config({}),
            Mirrors(),
            target="debian",
            kernel_urls=tuple(p.url for p in pkgs),
        )

        class Fixed(HeaderResolver):
            def packages_for(
                self, plan: object
            ) -> tuple[tuple[HeaderPackage, ...], tuple[str, ...]]:
                return pkgs, tuple(p.url for p in pkgs)

        resolver = Fixed(cache)
        first = resolver.resolve(plan)
        again = resolver.resolve(plan)
        assert all(n == 1 for n in hits.values())
    assert first == again
    kdir = first.kernel_dir
    assert kdir.name == f"linux-headers-{RELEASE}" and kdir.is_dir() and not kdir.is_symlink()
    tree = kdir.parent.parent.parent
    assert (kdir / "Makefile").read_text() == (
        f"include {tree}/usr/src/linux-headers-6.1.0-47-common/Makefile\n"
    )
    # Relative links reach the kbuild package through the tree; sources stay shared.
    assert (kdir / "scripts" / "modpost").read_text() == "bin\n"
    common_inc = tree / "usr/src/linux-headers-6.1.0-47-common/include"
    assert common_inc.is_symlink() and (common_inc / "b.h").read_text() == "a\n"
    assert str(common_inc.resolve()).startswith(str(first.root / "pkgs"))
    # The shared package itself was never edited.
    pkg_makefiles = list((first.root / "pkgs").glob(f"*/usr/src/linux-headers-{RELEASE}/Makefile"))
    assert [p.read_text() for p in pkg_makefiles] == [
        "include /usr/src/linux-headers-6.1.0-47-common/Makefile\n"
    ]
    assert first.root == tmp_path / "cache" / "headers"


# ---- non-Debian packages: real archives made here with rpmbuild and GNU tar -------------
# Those distros' mirrors are unreachable from CI, so the packages are built locally in
# their real formats, with the layouts their distros use.

EL_RELEASE = "4.18.0-553.el8_10.x86_64"
ARCH_RELEASE = "6.6.30-1-lts"


def _rpm(tmp: Path, name: str, files: dict[str, str], links: dict[str, str]) -> Path:
    """A real binary rpm (rpmbuild), files and symlinks as given, like kernel-devel."""
    require(shutil.which("rpmbuild") is not None and shutil.which("rpm2cpio") is not None,
            "needs rpmbuild and rpm2cpio (Debian package rpm; see ci/setup.sh)")
    top = tmp / "rpmbuild"
    stage = _stage(tmp / f"{name}-stage", files, links)
    listed = "\n".join("/" + rel for rel in [*files, *links])
    spec = tmp / f"{name}.spec"
    spec.write_text(
        f"Name: {name}\nVersion: 1\nRelease: 1\nSummary: t\nLicense: GPL\nBuildArch: x86_64\n"
        f"%description\nt\n%install\ncp -a {stage}/. %{{buildroot}}/\n"
        f"%files\n{listed}\n"
    )
    subprocess.run(
        ["rpmbuild", "-bb", "--quiet", f"--define=_topdir {top}",
         "--define=__os_install_post %{nil}", "--define=debug_package %{nil}", str(spec)],
        check=True, capture_output=True,
    )  # fmt: skip
    (built,) = (top / "RPMS" / "x86_64").glob("*.rpm")
    return built


def _tarball(tmp: Path, name: str, compress: str, files: dict[str, str]) -> Path:
    require(shutil.which(compress) is not None, f"needs {compress}")
    stage = _stage(tmp / f"{name}-stage", files, {})
    out = tmp / name
    subprocess.run(["tar", f"--use-compress-program={compress}", "-cf", str(out), "-C",
                    str(stage), "."], check=True, capture_output=True)  # fmt: skip
    return out


def test_centos_kernel_devel_rpm_resolves_to_its_kernel_dir(tmp_path: Path) -> None:
    """kernel-devel as CentOS/RHEL ship it: the whole tree under /usr/src/kernels/<rel>,
    fetched from a (loopback) mirror, unpacked with rpm2cpio, found by the resolver."""
    kdir_rel = f"usr/src/kernels/{EL_RELEASE}"
    rpm = _rpm(tmp_path, "kernel-devel", {
        f"{kdir_rel}/Makefile": "VERSION = 4\n",
        f"{kdir_rel}/.config": "CONFIG_MODULES=y\n",
        f"{kdir_rel}/include/generated/utsrelease.h": f'#define UTS_RELEASE "{EL_RELEASE}"\n',
        f"{kdir_rel}/include/linux/a.h": "a\n",
    }, {f"{kdir_rel}/include/linux/b.h": "a.h"})
    www = tmp_path / "www"
    www.mkdir()
    served = www / f"kernel-devel-{EL_RELEASE}.rpm"
    shutil.copy(rpm, served)
    with serve_dir(www) as (base, _hits):
        plan = resolve_plan(EL_RELEASE, load_config({}), Mirrors(), target="centos",
                            kernel_urls=(f"{base}/{served.name}",))  # fmt: skip
        resolved = HeaderResolver(DownloadCache(tmp_path / "cache")).resolve(plan)
    kdir = resolved.kernel_dir
    assert kdir.name == EL_RELEASE and kdir.parent.name == "kernels"
    assert (kdir / ".config").read_text() == "CONFIG_MODULES=y\n"
    assert EL_RELEASE in (kdir / "include/generated/utsrelease.h").read_text()
    link = kdir / "include/linux/b.h"
    assert link.is_symlink() and link.read_text() == "a\n"


@pytest.mark.parametrize(("name", "compress"), [
    (f"linux-lts-headers-{ARCH_RELEASE}-x86_64.pkg.tar.zst", "zstd"),
    (f"linux-lts-headers-{ARCH_RELEASE}-x86_64.pkg.tar.xz", "xz"),
    ("linux-6.6.30.tar.gz", "gzip"),
])  # fmt: skip
def test_compressed_tarballs_unpack_whatever_their_name(tmp_path: Path, name: str,
                                                        compress: str) -> None:
    """Arch ships headers as .pkg.tar.zst (older ones .xz), kernel.org as .tar.xz/.gz; the
    cache names blobs by hash, so the format must come from the content."""
    build = f"usr/lib/modules/{ARCH_RELEASE}/build"
    tarball = _tarball(tmp_path, name, compress, {f"{build}/.config": "CONFIG_X=y\n",
                                                  f"{build}/Makefile": "# top\n"})
    blob = tmp_path / "blob-without-suffix"
    shutil.copy(tarball, blob)
    extract_package(blob, tmp_path / "out")
    assert (tmp_path / "out" / build / ".config").read_text() == "CONFIG_X=y\n"


def test_an_unknown_package_is_one_download_error(tmp_path: Path) -> None:
    bogus = tmp_path / "kernel-devel.rpm"
    bogus.write_bytes(b"<html>not found</html>" * 10)
    with pytest.raises(DownloadError, match=r"kernel-devel\.rpm: neither"):
        extract_package(bogus, tmp_path / "out")
