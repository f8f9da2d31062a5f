"""The stand-in distro repositories (tests/distro_repos.py): packages the distros' tools
read as theirs, repository metadata createrepo_c made, a loopback server that answers as a
mirror does, driverkit's own lookup finding each package, and trees that compile a module
whose vermagic names the stand-in release and whose CRCs are the real kernel's."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from driverkit.artifacts import validate_kmod
from driverkit.cache import sha256_file
from driverkit.repometa import (
    decompress_metadata,
    find_header_urls,
    parse_primary_sqlite,
    parse_primary_xml,
    parse_repomd,
)
from tests.build_helpers_real import resolve_real_headers
from tests.distro_repos import (
    RepoServer,
    StandInRepos,
    arch_pkgver,
    build_standins,
    builder_image_for,
    check_gcc,
    check_tree,
    common_tree,
    compile_hello,
    config_gcc,
    debian_kernel,
    install_packages,
    installed_kernel_dir,
    module_crcs,
    plan_for,
    repo_mirror_args,
    require_tools,
    routed_session,
    rpm_nvra,
    serve_repos,
    standin_tree,
    symvers_crcs,
)

# One worker builds the stand-ins and runs the module builds: they are CPU-heavy.
pytestmark = [pytest.mark.network, pytest.mark.xdist_group("docker-build")]

RPM_TARGETS = ("amazonlinux2", "centos", "rocky", "fedora")
ALL_TARGETS = (*RPM_TARGETS, "ubuntu", "arch")


@pytest.fixture(scope="module")
def repos() -> StandInRepos:
    require_tools()
    return build_standins()


@pytest.fixture(scope="module")
def server(repos: StandInRepos) -> Iterator[RepoServer]:
    with serve_repos(repos.root) as running:
        yield running


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def _repo_root(rpm: Path) -> Path:
    """The yum repository an rpm is in: the nearest directory above it with repodata/."""
    for parent in rpm.parents:
        if (parent / "repodata" / "repomd.xml").is_file():
            return parent
    raise AssertionError(f"no repodata above {rpm}")


# --- the tree -------------------------------------------------------------------------


def test_standin_tree_is_one_kernel_devel_tree(tmp_path: Path, ci_cache: Path) -> None:
    require_tools()
    dk = debian_kernel("bookworm", ci_cache)
    release = f"{dk.upstream}-{dk.abi}.el9.x86_64"
    tree = standin_tree(dk.headers, release, tmp_path / "tree")
    assert check_tree(tree, release, forbidden=(str(dk.headers.root),)) == []
    # The kernel's own Makefile on top, Debian's wrapper and its variables gone.
    assert (tree / "Makefile").read_bytes() == (common_tree(dk.headers) / "Makefile").read_bytes()
    assert not (tree / ".kernelvariables").exists()
    # The flavor's generated files and kbuild's binaries as real files.
    for name in (".config", "Module.symvers", "include/generated/autoconf.h"):
        assert (tree / name).read_bytes() == (dk.headers.kernel_dir / name).read_bytes(), name
    assert (tree / "scripts" / "mod" / "modpost").read_bytes()[:4] == b"\x7fELF"
    assert config_gcc(tree / ".config") == dk.gcc == "12"
    # The check sees a tree that names another release.
    problems = check_tree(tree, "6.1.0-1-other")
    assert any("utsrelease.h" in p for p in problems)
    assert any("kernel.release" in p for p in problems)
    shutil.rmtree(tree)  # 80 MB of small files: kept only when the test fails


# --- the packages ---------------------------------------------------------------------


@pytest.mark.parametrize("target", RPM_TARGETS)
def test_kernel_devel_rpm_is_what_rpm_reads(repos: StandInRepos, target: str) -> None:
    standin = repos.get(target)
    (rpm,) = standin.files
    version, release, arch = rpm_nvra(standin.release)
    assert rpm.name == f"kernel-devel-{version}-{release}.{arch}.rpm"
    fields = _run("rpm", "-qp", "--queryformat", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}", str(rpm))
    assert fields.split() == ["kernel-devel", version, release, arch]
    files = _run("rpm", "-qlp", str(rpm)).split()
    top = f"/usr/src/kernels/{standin.release}"
    assert files[0] == top and all(f == top or f.startswith(top + "/") for f in files)
    assert {f"{top}/Makefile", f"{top}/.config", f"{top}/Module.symvers"} <= set(files)
    requires = _run("rpm", "-qp", "--requires", str(rpm)).splitlines()
    assert all(r.startswith("rpmlib(") for r in requires), requires  # AutoReqProv: no


def test_rpm_releases_parse_as_rpm_splits_them() -> None:
    assert rpm_nvra("5.10.226-214.880.amzn2.x86_64") == ("5.10.226", "214.880.amzn2", "x86_64")
    assert rpm_nvra("6.1.192-57.1.el9_1.x86_64") == ("6.1.192", "57.1.el9_1", "x86_64")
    with pytest.raises(ValueError):
        rpm_nvra("6.1.0-57-generic")


@pytest.mark.parametrize("target", RPM_TARGETS)
def test_createrepo_primary_lists_the_rpm_with_its_sha256(repos: StandInRepos, target: str) -> None:
    (rpm,) = repos.get(target).files
    root = _repo_root(rpm)
    files = parse_repomd((root / "repodata" / "repomd.xml").read_bytes())
    assert {"primary", "primary_db", "filelists", "other"} <= set(files)
    version, release, arch = rpm_nvra(repos.get(target).release)
    for kind, parse in (("primary", parse_primary_xml), ("primary_db", parse_primary_sqlite)):
        ref = files[kind]
        blob = (root / ref.href).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == ref.checksum
        (entry,) = parse(decompress_metadata(ref.href, blob))
        assert (entry.name, entry.version, entry.release, entry.arch) == (
            "kernel-devel", version, release, arch)  # fmt: skip
        assert root / entry.href == rpm
        assert entry.sha256 == sha256_file(rpm) and entry.size == rpm.stat().st_size


def test_amazon_mirror_lists_name_hashed_repositories(repos: StandInRepos) -> None:
    (rpm,) = repos.get("amazonlinux2").files
    host = repos.root / "amazonlinux.us-east-1.amazonaws.com"
    named = {}
    for mirror_list in sorted(host.rglob("mirror.list")):
        (url,) = mirror_list.read_text().split()
        assert re.fullmatch(
            r"https://cdn\.amazonlinux\.com/2/[a-z0-9./-]+/x86_64/[0-9a-f]{64}/", url
        )
        named[mirror_list.parent.parent.relative_to(host).as_posix()] = url
    assert len(named) == 5 and named["2/core/latest"] == named["2/core/2.0"]
    # Only the kernel's own extras repository holds it; the others index nothing of ours.
    home = named["2/extras/kernel-5.10/latest"]
    assert rpm.is_relative_to(repos.root / home.removeprefix("https://"))
    for url in set(named.values()) - {home}:
        repo = repos.root / url.removeprefix("https://")
        ref = parse_repomd((repo / "repodata" / "repomd.xml").read_bytes())["primary"]
        assert (
            parse_primary_xml(decompress_metadata(ref.href, (repo / ref.href).read_bytes())) == []
        )


def test_ubuntu_pair_is_what_dpkg_reads_and_installs_whole(
    repos: StandInRepos, tmp_path: Path
) -> None:
    standin = repos.get("ubuntu")
    flavor_deb, all_deb = standin.files
    base = standin.release.removesuffix("-generic")
    version = f"{base}.{base.rsplit('-', 1)[1]}"
    assert flavor_deb.name == f"linux-headers-{standin.release}_{version}_amd64.deb"
    assert all_deb.name == f"linux-headers-{base}_{version}_all.deb"
    fields = _run("dpkg-deb", "-f", str(flavor_deb), "Package", "Version", "Architecture",
                  "Depends")  # fmt: skip
    assert f"Package: linux-headers-{standin.release}" in fields
    assert f"Version: {version}" in fields and "Architecture: amd64" in fields
    assert f"Depends: linux-headers-{base}," in fields
    assert _run("dpkg-deb", "-f", str(all_deb), "Architecture").strip() == "all"
    root = install_packages(standin.files, tmp_path / "root")
    flavor = root / "usr" / "src" / f"linux-headers-{standin.release}"
    # Generated files are the flavor's own; the rest are relative links into the _all tree,
    # at every depth, and every one of them resolves once both are installed.
    assert not (flavor / ".config").is_symlink() and (flavor / "Makefile").is_symlink()
    assert (flavor / "include" / "generated").is_dir()
    assert not (flavor / "include" / "generated").is_symlink()
    assert (flavor / "include" / "linux").is_symlink()
    assert (flavor / "include" / "linux" / "module.h").is_file()
    links = [p for p in flavor.rglob("*") if p.is_symlink()]
    assert links and all(not Path(p.readlink()).is_absolute() for p in links)
    assert [p for p in links if not p.exists()] == []
    assert (root / "lib" / "modules" / standin.release / "build").readlink() == Path(
        f"/usr/src/linux-headers-{standin.release}"
    )
    shutil.rmtree(root)


def test_arch_package_carries_pkginfo_first(repos: StandInRepos) -> None:
    standin = repos.get("arch")
    (package,) = standin.files
    pkgver, pkgrel = arch_pkgver(standin.release)
    assert package.name == f"linux-headers-{pkgver}-{pkgrel}-x86_64.pkg.tar.zst"
    assert package.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd
    members = _run("tar", "-t", "-f", str(package)).split()
    assert members[0] == ".PKGINFO"
    build = f"usr/lib/modules/{standin.release}/build"
    assert f"{build}/Makefile" in members and f"{build}/Module.symvers" in members
    info = dict(
        line.split(" = ", 1)
        for line in _run("tar", "-x", "-O", "-f", str(package), ".PKGINFO").splitlines()
        if " = " in line
    )
    assert info["pkgname"] == "linux-headers" and info["pkgver"] == f"{pkgver}-{pkgrel}"
    assert info["arch"] == "x86_64" and int(info["size"]) > 10_000_000


# --- the server -----------------------------------------------------------------------


def test_server_answers_head_get_and_ranges(repos: StandInRepos, server: RepoServer) -> None:
    (rpm,) = repos.get("centos").files
    (url,) = repos.get("centos").urls
    local = server.url_for(url)
    head = requests.head(local, timeout=10)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == rpm.stat().st_size
    first = requests.get(local, headers={"Range": "bytes=0-0"}, timeout=10)
    assert first.status_code == 206
    assert first.headers["Content-Range"] == f"bytes 0-0/{rpm.stat().st_size}"
    assert first.content == rpm.read_bytes()[:1]
    mirror_list = requests.get(
        f"{server.url}/amazonlinux.us-east-1.amazonaws.com/2/core/2.0/x86_64/mirror.list",
        timeout=10,
    )
    assert mirror_list.status_code == 200 and mirror_list.text.startswith("https://cdn.")
    assert requests.head(local + ".missing", timeout=10).status_code == 404
    assert requests.head(f"{server.url}/vault.centos.org/7.9.2009/", timeout=10).status_code == 404


def test_repo_mirror_args_route_every_served_host(repos: StandInRepos, server: RepoServer) -> None:
    args = repo_mirror_args(server)
    pairs = [args[i + 1] for i in range(0, len(args), 2) if args[i] == "--repo-mirror"]
    assert len(pairs) * 2 == len(args)
    for host in repos.hosts:
        for scheme in ("http", "https"):
            assert f"{scheme}://{host}/={server.url}/{host}/" in pairs
    # Every host a stand-in's candidates name is served, so no lookup leaves the machine.
    for standin in repos.standins:
        for candidate in plan_for(standin.target, standin.release, standin.kernel_version).headers:
            assert candidate.split("/")[2] in repos.hosts, candidate


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_driverkit_lookup_finds_the_standin(
    repos: StandInRepos, server: RepoServer, target: str
) -> None:
    """driverkit's own search (mirror.list -> repodata, HEAD walk, Ubuntu pair, Arch
    archive) through the server lands exactly on the stand-in's packages."""
    standin = repos.get(target)
    plan = plan_for(standin.target, standin.release, standin.kernel_version)
    with routed_session(server) as session:
        found = find_header_urls(plan, session, timeout=10)
    assert sorted(p.url for p in found) == sorted(standin.urls)
    for package in found:
        if package.sha256:  # the repositories that publish one: it is the file's
            assert package.sha256 in {sha256_file(f) for f in standin.files}


# --- compiling --------------------------------------------------------------------------


def test_each_target_gets_its_kernels_own_gcc(repos: StandInRepos) -> None:
    assert [check_gcc(s) for s in repos.standins] == [None] * len(repos.standins)
    suites = {s.target: (s.suite, s.gcc) for s in repos.standins}
    assert suites == {
        "amazonlinux2": ("bullseye", "10"), "centos": ("bookworm", "12"),
        "rocky": ("bookworm", "12"), "fedora": ("bookworm", "12"),
        "ubuntu": ("bookworm", "12"), "arch": ("trixie", "14"),
    }  # fmt: skip


# One per package format and Debian suite: centos and rocky hold the same bookworm tree
# as fedora, in the same rpm format, under other names.
COMPILED_TARGETS = ("amazonlinux2", "fedora", "ubuntu", "arch")


@pytest.mark.docker
@pytest.mark.parametrize("target", COMPILED_TARGETS)
def test_installed_standin_compiles_a_module(
    repos: StandInRepos, target: str, tmp_path: Path, ci_cache: Path
) -> None:
    """Installed as the distro installs it, the stand-in's tree builds a module in the
    builder driverkit picks for it; vermagic names the stand-in release and the symbol
    CRCs are the real kernel's (what lets it load on that Debian kernel)."""
    standin = repos.get(target)
    debian = resolve_real_headers(standin.debian_release, ci_cache).kernel_dir
    root = install_packages(standin.files, tmp_path / "root")
    kernel_dir = installed_kernel_dir(standin, root)
    assert (kernel_dir / ".config").read_bytes() == (debian / ".config").read_bytes()
    assert config_gcc(kernel_dir / ".config") == standin.gcc
    image = builder_image_for(standin, ci_cache)
    ko, log = compile_hello(kernel_dir, root, image, tmp_path / "build")
    info = validate_kmod(ko, standin.release, "amd64")
    assert info["vermagic"].startswith(f"{standin.release} SMP ")
    assert "modversions" in info["vermagic"]
    crcs = module_crcs(ko)
    real = symvers_crcs(debian / "Module.symvers")  # the Debian kernel's own
    assert "module_layout" in crcs or len(crcs) >= 2, crcs
    assert {name: real.get(name) for name in crcs} == crcs, log
    shutil.rmtree(root)
