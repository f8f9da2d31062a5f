"""Target ids and artifact names on a host, checked against falcoctl's own test vectors.

The input/output pairs below are the data of falcosecurity/falcoctl's
pkg/driver/distro/*_test.go (amzn, bottlerocket, centos, cos, debian, distro, flatcar,
generic, minikube, rhel, talos, ubuntu), restated as tables; the code is ours. Each case
goes through the loader's whole path: a fake host root (os-release and release files
written in a temp dir, the only stand-in) -> identify -> host_target -> the names, which
drivercore.targets and drivercore.naming compute, as on the build side.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drivercore.kernelrelease import parse_kernel_release
from drivercore.naming import ArtifactKind
from driverkit.targets import get_target
from runtime.loader.identify import identify
from runtime.loader.target import UNDETERMINED, HostTarget, host_target
from tests.falcoctl_vectors import DEBIAN_FIXUP
from tests.loader_helpers import write_host_root


def _target(root: Path, files: dict[str, str], release: str = "5.10.0",
            version: str = "#1 SMP") -> HostTarget:
    write_host_root(root, files)
    host = identify(root, kernel_release=release, kernel_version=version, machine="x86_64")
    return host_target(host)


def _names(t: HostTarget) -> tuple[str, str, str]:
    return (t.kernel.target_id, t.kernel.kernel_release, t.kernel.kernel_version)




@pytest.mark.parametrize(("release", "version", "name_release", "name_version"), DEBIAN_FIXUP)
def test_falcoctl_debian_vectors(tmp_path: Path, release: str, version: str,
                                 name_release: str, name_version: str) -> None:
    found = _target(tmp_path, {"etc/os-release": "ID=debian\n"}, release, version)
    assert _names(found) == ("debian", name_release, name_version)


def test_debian_security_builds_keep_their_suffix_unlike_falcoctl(tmp_path: Path) -> None:
    """Intended difference: falcoctl reduces `6.12.107-1~deb12u1` to `6.12.107-1`, giving
    bookworm-security's build (gcc-12) and trixie's 6.12.107-1 (gcc-14) one file name. Our
    build side keeps the `~debNNuM` suffix (drivercore/targets.py), so the loader must too."""
    found = _target(
        tmp_path, {"etc/os-release": "ID=debian\nVERSION_ID=12\n"}, "6.12.107+deb12-amd64",
        "#1 SMP PREEMPT_DYNAMIC Debian 6.12.107-1~deb12u1 (2025-09-25)",
    )
    # falcoctl's name would carry 6.12.107-1-amd64.
    assert _names(found) == ("debian", "6.12.107-1~deb12u1-amd64", "1")


# ubuntu_test.go TestDistroUbuntuInitFixup: -> (flavored target id, version in names).
UBUNTU_FIXUP = [
    ("5.0.0-1028-aws-5.0", "#26~22.04.1-Ubuntu SMP Mon Apr 24 01:58:15 UTC 2023",
     "ubuntu-aws", "26~22.04.1"),
    ("5.0.0-1028-aws-5.0", "#26", "ubuntu-aws", "26"),
    ("5.0.0-1028-aws-5.0", "#26-Ubuntu", "ubuntu-aws", "26"),
    ("5.0.0", "#26", "ubuntu-generic", "26"),
    ("6.5.0-9-lowlatency", "#9.1", "ubuntu-lowlatency", "9.1"),
    ("6.5.0-1008-gcp", "#8", "ubuntu-gcp", "8"),
    ("6.5.0-1008-aws", "#8~22.04.1", "ubuntu-aws", "8~22.04.1"),
]


@pytest.mark.parametrize(("release", "version", "target_id", "name_version"), UBUNTU_FIXUP)
def test_falcoctl_ubuntu_vectors(tmp_path: Path, release: str, version: str, target_id: str,
                                 name_version: str) -> None:
    found = _target(tmp_path, {"etc/os-release": 'ID=ubuntu\nVERSION_ID="22.04"\n'},
                    release, version)
    assert _names(found) == (target_id, release, name_version)
    expected = f"rtcap_{target_id}_{release}_{name_version}.ko"
    assert found.artifact_file(ArtifactKind.KMOD) == expected


# generic_test.go TestDistroGeneric: distros without a fix-up keep only the build number.
GENERIC = [
    ("photon", "4.19.283-3.ph3", "#1-photon SMP Fri Jun 16 02:25:27 UTC 2023", "1"),
    ("arch", "6.7.2-arch1-2", "#1 SMP PREEMPT_DYNAMIC Wed, 31 Jan 2024 09:22:15 +0000", "1"),
    ("arch", "6.7.2-arch1-2", "#231asfa #rf3f", "231"),
    ("arch", "6.7.2-arch1-2", "#231asfa234", "231"),
]


@pytest.mark.parametrize(("distro", "release", "version", "name_version"), GENERIC)
def test_falcoctl_generic_vectors(tmp_path: Path, distro: str, release: str, version: str,
                                  name_version: str) -> None:
    found = _target(tmp_path, {"etc/os-release": f"ID={distro}\n"}, release, version)
    assert _names(found) == (distro, release, name_version)


# amzn_test.go TestDistroAmznInit: VERSION_ID -> target id; no VERSION_ID is an error there.
@pytest.mark.parametrize(
    ("version_line", "target_id"),
    [('VERSION_ID=""\n', "amazonlinux"), ('VERSION_ID="2"\n', "amazonlinux2"),
     ('VERSION_ID="2022"\n', "amazonlinux2022"), ('VERSION_ID="2023"\n', "amazonlinux2023"),
     ("", UNDETERMINED)],
)  # fmt: skip
def test_falcoctl_amazon_vectors(tmp_path: Path, version_line: str, target_id: str) -> None:
    found = _target(tmp_path, {"etc/os-release": "ID=amzn\n" + version_line}, "5.10.0-1.amzn2")
    assert found.target_id == target_id
    if target_id == UNDETERMINED:  # falcoctl errors; we fall back, saying what was missing
        assert "ID=amzn but has no VERSION_ID" in found.warnings[0]


# bottlerocket_test.go: (VERSION_ID, VARIANT_ID) -> kernel version in names.
@pytest.mark.parametrize(
    ("fields", "name_version"),
    [("VERSION_ID=1.11.0\nVARIANT_ID=aws-k8s-1.15\n", "1_1.11.0-aws"),
     ("VERSION_ID=1.17.0\nVARIANT_ID=aws\n", "1_1.17.0-aws"),
     ("VARIANT_ID=aws\n", None), ("VERSION_ID=1.11.0\n", None)],
)  # fmt: skip
def test_falcoctl_bottlerocket_vectors(tmp_path: Path, fields: str,
                                       name_version: str | None) -> None:
    found = _target(tmp_path, {"etc/os-release": "ID=bottlerocket\n" + fields}, "5.15.110")
    if name_version is None:
        assert found.target_id == UNDETERMINED and "VARIANT_ID" in found.warnings[0]
    else:
        assert _names(found) == ("bottlerocket", "5.15.110", name_version)


# talos_test.go: VERSION_ID -> kernel version; distro_test.go: talos without it is generic.
@pytest.mark.parametrize(
    ("fields", "name_version"),
    [("VERSION_ID=1.11.0\n", "1_1.11.0"), ("VERSION_ID=1.17.0\n", "1_1.17.0"), ("", None)],
)
def test_falcoctl_talos_vectors(tmp_path: Path, fields: str, name_version: str | None) -> None:
    found = _target(tmp_path, {"etc/os-release": "ID=talos\n" + fields}, "6.1.58-talos")
    if name_version is None:
        assert found.target_id == UNDETERMINED
    else:
        assert _names(found) == ("talos", "6.1.58-talos", name_version)


# flatcar_test.go: VERSION_ID replaces the release; the version is the build number.
@pytest.mark.parametrize(
    ("version_id", "uname_v", "name_version"),
    [("3185.0.0", "#1 SMP", "1"),
     ("3794.0.0", "#1 SMP PREEMPT_DYNAMIC Mon Nov 20 22:57:52 -00 2023", "1"),
     ("3794.0.0", "#27 SMP PREEMPT_DYNAMIC Mon Nov 20 22:57:52 -00 2023", "27")],
)  # fmt: skip
def test_falcoctl_flatcar_vectors(tmp_path: Path, version_id: str, uname_v: str,
                                  name_version: str) -> None:
    found = _target(tmp_path, {"etc/os-release": f"ID=flatcar\nVERSION_ID={version_id}\n"},
                    "6.1.62-flatcar", uname_v)
    assert _names(found) == ("flatcar", version_id, name_version)


def test_flatcar_without_version_id_falls_back(tmp_path: Path) -> None:
    found = _target(tmp_path, {"etc/os-release": "ID=flatcar\n"}, "6.1.62-flatcar")
    assert found.target_id == UNDETERMINED


# minikube_test.go: etc/VERSION -> kernel version `1_<x.y.z>`, even beside an os-release.
@pytest.mark.parametrize("os_release", [None, "ID=buildroot\nVERSION_ID=2021.02.12\n"])
def test_falcoctl_minikube_vectors(tmp_path: Path, os_release: str | None) -> None:
    files = {"etc/VERSION": "v1.26.0-1655407986-14197"}
    if os_release is not None:
        files["etc/os-release"] = os_release
    found = _target(tmp_path, files, "5.10.57")
    assert _names(found) == ("minikube", "5.10.57", "1_1.26.0")


# cos_test.go: BUILD_ID is required; names use the generic rule.
def test_falcoctl_cos_vectors(tmp_path: Path) -> None:
    found = _target(tmp_path / "a", {"etc/os-release": "ID=cos\nBUILD_ID=17162.127.33\n"},
                    "6.1.58+", "#1 SMP")
    assert _names(found) == ("cos", "6.1.58+", "1")
    assert _target(tmp_path / "b", {"etc/os-release": "ID=cos\n"}).target_id == UNDETERMINED


# distro_test.go TestDiscoverDistro, plus centos/debian/rhel_test.go's release-file checks.
@pytest.mark.parametrize(
    ("files", "release", "target_id", "warned"),
    [
        ({}, "5.10.0", UNDETERMINED, "looked for etc/os-release"),
        ({"etc/os-release": ""}, "5.10.0", UNDETERMINED, "has no ID"),
        ({"etc/os-release": "ID=foo\n"}, "5.10.0", "foo", "unknown distro ID=foo"),
        ({"etc/os-release": "ID=centos\n"}, "5.10.0", "centos", None),
        ({"etc/os-release": "ID=ol\n"}, "5.10.0-2047.510.5.5.el7uek.x86_64", "ol", None),
        ({"etc/centos-release": ""}, "5.10.0", "centos", None),
        ({"etc/debian_version": "12.5\n"}, "5.10.0", "debian", None),
        ({"etc/VERSION": "v1.26.0-1655407986-14197"}, "5.10.0", "minikube", None),
    ],
)
def test_falcoctl_discovery_vectors(tmp_path: Path, files: dict[str, str], release: str,
                                    target_id: str, warned: str | None) -> None:
    found = _target(tmp_path, files, release)
    assert found.target_id == target_id
    if warned is None:
        assert found.warnings == ()
    else:
        assert warned in found.warnings[0]


def test_rhel_is_named_redhat_as_our_build_side_builds_it(tmp_path: Path) -> None:
    """Intended difference: falcoctl names a RHEL host's artifacts `rhel`, but our build
    side's target id is `redhat` (drivercore.targets.TargetId.REDHAT); the repository holds
    what the build side wrote, so the loader asks for `redhat` (also via redhat-release)."""
    hosts = ({"etc/os-release": "ID=rhel\nVERSION_ID=9.3\n"},
             {"etc/redhat-release": "Red Hat Enterprise Linux release 9.3"})
    for number, files in enumerate(hosts):
        found = _target(tmp_path / str(number), files, "5.14.0-362.8.1.el9_3.x86_64")
        assert _names(found) == ("redhat", "5.14.0-362.8.1.el9_3.x86_64", "1")


@pytest.mark.parametrize("distro", ["rocky", "almalinux", "fedora", "centos", "ol"])
def test_rpm_distros_keep_their_os_release_id(tmp_path: Path, distro: str) -> None:
    found = _target(tmp_path, {"etc/os-release": f'ID="{distro}"\nVERSION_ID="9"\n'},
                    "5.14.0-362.el9.x86_64")
    assert _names(found) == (distro, "5.14.0-362.el9.x86_64", "1")


@pytest.mark.parametrize(
    ("distro", "release", "version"),
    [("debian", "6.1.0-13-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1 (2023-09-29)"),
     ("ubuntu", "6.5.0-1008-aws", "#8~22.04.1-Ubuntu SMP"),
     ("redhat", "5.14.0-362.8.1.el9_3.x86_64", "#1 SMP"),
     ("amazonlinux2", "5.10.199-190.747.amzn2.x86_64", "#1 SMP"),
     ("vanilla", "6.6.1", "#1 SMP")],
)  # fmt: skip
def test_the_loader_asks_for_the_name_the_build_side_writes(tmp_path: Path, distro: str,
                                                             release: str, version: str) -> None:
    """Real on both sides: driverkit's Target for the build, the loader for the host."""
    os_id = {"redhat": "rhel", "amazonlinux2": "amzn\nVERSION_ID=2", "vanilla": "vanilla"}
    found = _target(tmp_path, {"etc/os-release": f"ID={os_id.get(distro, distro)}\n"},
                    release, version)
    built = get_target(distro).artifact_kernel(parse_kernel_release(release), version)
    assert found.kernel == built
