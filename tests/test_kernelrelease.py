"""Kernel release / kernel version parsing: driverkit's public cases, real releases of every
distro we name, a round-trip property, and the strict validation that keeps release
strings out of shell scripts."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivercore.kernelrelease import (
    MAX_RELEASE_LEN,
    KernelRelease,
    debian_package_version,
    non_deb_arch,
    normalize_arch,
    parse_kernel_release,
    parse_kernel_version,
    ubuntu_kernel_version,
    validate_kernel_version,
)
from driverkit.errors import InvalidKernelReleaseError, UsageError

# driverkit pkg/kernelrelease TestFromString (its empty-string case is an error here):
# input -> (full_version, version, patch_level, sublevel, extra_version, full_extra_version)
DRIVERKIT_FROM_STRING = {
    "5.5.2-arch1-1": ("5.5.2", 5, 5, 2, "arch1-1", "-arch1-1"),
    "7": ("7", 7, 0, 0, "", ""),
    "6.4-rc1": ("6.4", 6, 4, 0, "rc1", "-rc1"),
    "5.5.2": ("5.5.2", 5, 5, 2, "", ""),
    "4.15.0-1057-aws": ("4.15.0", 4, 15, 0, "1057-aws", "-1057-aws"),
    "3.10.0-957.12.2.el7.aarch64": ("3.10.0", 3, 10, 0, "957", "-957.12.2.el7.aarch64"),
    "2.6.32-754.el6.x86_64": ("2.6.32", 2, 6, 32, "754", "-754.el6.x86_64"),
    "3.16.0-10-amd64": ("3.16.0", 3, 16, 0, "10-amd64", "-10-amd64"),
    "4.19.0-6-amd64": ("4.19.0", 4, 19, 0, "6-amd64", "-6-amd64"),
    "4.14.171-136.231.amzn2.x86_64": ("4.14.171", 4, 14, 171, "136", "-136.231.amzn2.x86_64"),
    "4.15.0-1044-gke": ("4.15.0", 4, 15, 0, "1044-gke", "-1044-gke"),
    "5.19.3.arch1-1": ("5.19.3", 5, 19, 3, "arch1-1", ".arch1-1"),
    "4.9.65-2+grsecunoff1~bpo9+1-amd6": ("4.9.65", 4, 9, 65, "2", "-2+grsecunoff1~bpo9+1-amd6"),
    "4.19.118-2+deb10u1~bpo9+1-amd64": ("4.19.118", 4, 19, 118, "2", "-2+deb10u1~bpo9+1-amd64"),
    "5.10.136-1~deb10u3-amd64": ("5.10.136", 5, 10, 136, "1", "-1~deb10u3-amd64"),
    "4.19+105+deb10u4~bpo9+1": ("4.19+105", 4, 19, 105, "deb10u4", "+deb10u4~bpo9+1"),
    "5.4.119-19.0009.28": ("5.4.119", 5, 4, 119, "19", "-19.0009.28"),
    "5.15.146+": ("5.15.146", 5, 15, 146, "", "+"),
}

# Real `uname -r` strings of every distro issue 2 names.
REAL_RELEASES = [
    # Ubuntu flavors
    "5.15.0-91-generic", "5.15.0-1051-aws", "5.15.0-1048-gke", "6.5.0-1015-azure",
    "6.2.0-1018-gcp", "5.15.0-1049-kvm", "5.15.0-1047-oracle", "5.15.0-91-lowlatency",
    "5.15.0-24-lowlatency-hwe-5.15", "5.15.0-1004-intel-iotg", "5.0.0-1028-aws-5.0",
    # Debian: amd64, cloud, rt, old and new backports, +deb12/+deb13, sid, arm64
    "6.1.0-56-amd64", "5.10.0-30-amd64", "5.10.0-30-cloud-amd64", "6.1.0-13-rt-amd64",
    "6.12.48+deb13-amd64", "6.12.117+deb12-cloud-amd64", "5.10.0-0.deb10.22-rt-amd64",
    "6.5.3-1~bpo12+1-rt-amd64", "7.2.13+deb14-amd64", "6.1.0-50-arm64",
    # Amazon Linux 1, 2, 2022, 2023
    "4.14.355-196.647.amzn1.x86_64", "4.14.171-136.231.amzn2.x86_64", "5.10.0-amzn2",
    "5.10.213-201.855.amzn2.x86_64", "5.15.29-16.111.amzn2022.x86_64",
    "6.1.41-63.114.amzn2023.x86_64",
    # CentOS 6/7/8/Stream, RHEL, Rocky, Alma
    "2.6.32-754.el6.x86_64", "3.10.0-1160.el7.x86_64", "4.18.0-348.7.1.el8_5.x86_64",
    "5.14.0-362.el9.x86_64", "4.18.0-477.10.1.el8_8.x86_64", "5.14.0-427.13.1.el9_4.x86_64",
    # Oracle UEK
    "5.4.17-2136.307.3.1.el8uek.x86_64", "4.14.35-2047.510.5.5.el7uek.x86_64",
    "5.15.0-101.103.2.1.el9uek.x86_64",
    # Fedora, Arch, Photon
    "6.5.6-300.fc39.x86_64", "6.8.9-300.fc40.aarch64", "6.8.1-arch1-1", "6.7.2-arch1-2",
    "6.7.4-hardened1-1-hardened", "6.8.9-zen1-2-zen", "6.6.30-2-lts",
    "4.19.283-3.ph3", "5.10.152-4.ph4", "6.1.10-10.ph5", "4.19.225-3.ph3-esx",
    # openSUSE / SLES
    "5.14.21-150400.24.46-default", "6.8.5-1-default", "5.3.18-150300.59.93-default",
    # Flatcar (kernel and Flatcar release), COS, Bottlerocket, Talos, minikube
    "5.15.119-flatcar", "6.1.62-flatcar", "3510.2.3", "5.15.146+", "6.1.58+",
    "5.10.184", "5.15.108", "6.1.58-talos", "5.15.102-talos", "5.10.57",
    # vanilla incl. release candidates
    "6.4-rc1", "6.4.0-rc1", "6.1.55", "6.9.0",
    # TencentOS, Alibaba Cloud Linux
    "5.4.119-19.0009.28", "5.4.241-1-tlinux4-0017.7", "4.19.91-26.al7.x86_64",
    "5.10.134-13.al8.x86_64", "5.10.134-16.3.al8.x86_64",
]  # fmt: skip

INJECTIONS = [
    "5.10.0;id", "$(id)", "`id`", "5.10.0`id`", "5.10.0$(id)", "5.10.0'", '5.10.0"',
    "5.10.0 -amd64", "5.10.0\tx", "5.10.0\n", "5.10.0/../x", "../5.10.0", "5.10..0",
    "5.10.0|cat", "5.10.0&&id", "5.10.0>x", "5.10.0<x", "5.10.0\\x", "5.10.0\x00",
    "5.10.0*", "5.10.0?", "5.10.0{a,b}", "5.10.0=x", "", " ", "-5.10.0", "amd64",
    "5" * (MAX_RELEASE_LEN + 1), "5.10.0-é",
]  # fmt: skip


@pytest.mark.parametrize("release", sorted(DRIVERKIT_FROM_STRING))
def test_driverkit_from_string_cases(release: str) -> None:
    kr = parse_kernel_release(release)
    parts = (kr.full_version, kr.version, kr.patch_level, kr.sublevel, kr.extra_version,
             kr.full_extra_version)  # fmt: skip
    assert parts == DRIVERKIT_FROM_STRING[release]
    assert str(kr) == release
    assert kr.raw == release


@pytest.mark.parametrize("release", REAL_RELEASES)
def test_real_releases_round_trip(release: str) -> None:
    kr = parse_kernel_release(release)
    assert kr.full_version + kr.full_extra_version == release
    assert kr.version >= 2
    assert release.startswith(kr.full_version)


def test_to_json_uses_driverkit_tags() -> None:
    kr = parse_kernel_release("4.14.171-136.231.amzn2.x86_64")
    assert kr.to_json() == {
        "full_version": "4.14.171",
        "version": 4,
        "patch_level": 14,
        "sublevel": 171,
        "extra_version": "136",
        "full_extra_version": "-136.231.amzn2.x86_64",
    }


def test_kernel_release_is_frozen() -> None:
    kr = parse_kernel_release("6.1.0-56-amd64")
    with pytest.raises(AttributeError):
        kr.version = 7  # type: ignore[misc]
    assert isinstance(kr, KernelRelease)


@pytest.mark.parametrize("bad", INJECTIONS)
def test_unsafe_releases_are_rejected_with_one_line(bad: str) -> None:
    with pytest.raises(InvalidKernelReleaseError) as info:
        parse_kernel_release(bad)
    message = str(info.value)
    assert "\n" not in message
    assert "kernel release" in message
    assert "6.1.0-56-amd64" in message  # says what a release looks like
    assert repr(bad[:80])[1:-1][:10] in message  # names the input (escaped)


def test_rejection_names_the_offending_characters() -> None:
    with pytest.raises(InvalidKernelReleaseError, match=r"contains ';'"):
        parse_kernel_release("5.10.0;id")


# The grammar of real releases: a version, then words joined by - . + (and ~ after the
# first word, as in Debian's 1~bpo12+1).
_word = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)
_version = st.lists(st.integers(min_value=0, max_value=999), min_size=1, max_size=3).filter(
    lambda nums: nums[0] > 0
)
_release = st.builds(
    lambda nums, first, rest: ".".join(str(n) for n in nums)
    + "".join(sep + w for sep, w in (first + rest if first else [])),
    _version,
    st.lists(st.tuples(st.sampled_from(["-", ".", "+"]), _word), max_size=1),
    st.lists(st.tuples(st.sampled_from(["-", ".", "+", "~"]), _word), max_size=5),
).filter(lambda release: len(release) <= MAX_RELEASE_LEN)


@settings(max_examples=400, deadline=None)
@given(_release)
def test_round_trip_property(release: str) -> None:
    kr = parse_kernel_release(release)
    assert kr.full_version + kr.full_extra_version == release
    leading = re.match(r"\d+", release)
    assert leading is not None
    assert kr.version == int(leading.group(0))


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_never_crashes_and_safe_when_accepted(text: str) -> None:
    try:
        kr = parse_kernel_release(text)
    except InvalidKernelReleaseError:
        return
    assert str(kr) == text
    assert set(text) <= set(string.ascii_letters + string.digits + "._+~-")
    assert ".." not in text


# falcoctl's generic fix-up cases (pkg/driver/distro/generic_test.go) and Falco's rule.
@pytest.mark.parametrize(
    ("uname_v", "expected"),
    [
        ("#1-photon SMP Fri Jun 16 02:25:27 UTC 2023", "1"),
        ("#1 SMP PREEMPT_DYNAMIC Wed, 31 Jan 2024 09:22:15 +0000", "1"),
        ("#231asfa #rf3f", "231"),
        ("#231asfa234", "231"),
        ("#1 SMP Debian 5.10.179-1 (2023-05-12)", "1"),
        ("#39 SMP PREEMPT_DYNAMIC", "39"),
        ("#1 SMP PREEMPT_DYNAMIC @0", "1"),  # a reproducible build's date (this CI host)
        ("1", "1"),
        ("27", "27"),
        ("malformed", "malformed"),
    ],
)
def test_parse_kernel_version(uname_v: str, expected: str) -> None:
    assert parse_kernel_version(uname_v) == expected


# falcoctl's Ubuntu fix-up cases (pkg/driver/distro/ubuntu_test.go).
@pytest.mark.parametrize(
    ("uname_v", "expected"),
    [
        ("#26~22.04.1-Ubuntu SMP Mon Apr 24 01:58:15 UTC 2023", "26~22.04.1"),
        ("#26", "26"),
        ("#26-Ubuntu", "26"),
        ("#9.1", "9.1"),
        ("#8", "8"),
        ("#8~22.04.1", "8~22.04.1"),
    ],
)
def test_ubuntu_kernel_version(uname_v: str, expected: str) -> None:
    assert ubuntu_kernel_version(uname_v) == expected


@pytest.mark.parametrize(
    "bad",
    ["#1 $(id)", "#1 `id`", "#1; id", "1'", '"1"', "#1\nx", "", "   ", "#1 a|b", "#1 a&b",
     "x" * 200, "#1 \\x", "../1"],
)  # fmt: skip
def test_unsafe_kernel_versions_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidKernelReleaseError) as info:
        parse_kernel_version(bad)
    assert "\n" not in str(info.value)
    assert "kernel version" in str(info.value)


def test_validate_kernel_version_keeps_debian_text() -> None:
    text = "#1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1~deb12u1 (2025-11-10)"
    assert validate_kernel_version(text) == text


@pytest.mark.parametrize(
    ("uname_v", "expected"),
    [
        ("#1 SMP Debian 5.10.179-1 (2023-05-12)", "5.10.179-1"),
        ("#1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1~deb12u1 (2025-11-10)", "6.12.117-1~deb12u1"),
        ("#1 SMP PREEMPT_DYNAMIC Debian 6.12.95-1~bpo12+1 (2025-07-01)", "6.12.95-1~bpo12+1"),
        ("#1 SMP PREEMPT_DYNAMIC", None),
        ("1", None),
    ],
)
def test_debian_package_version(uname_v: str, expected: str | None) -> None:
    assert debian_package_version(uname_v) == expected


@pytest.mark.parametrize(
    ("given", "deb", "rpm"),
    [("x86_64", "amd64", "x86_64"), ("amd64", "amd64", "x86_64"), ("aarch64", "arm64", "aarch64"),
     ("ARM64", "arm64", "aarch64")],
)  # fmt: skip
def test_arch_normalisation(given: str, deb: str, rpm: str) -> None:
    assert normalize_arch(given) == deb
    assert non_deb_arch(given) == rpm


def test_unknown_arch_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="amd64, arm64"):
        normalize_arch("s390x")
