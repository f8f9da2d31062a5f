"""Target inference from the release string alone (driverkit needs --target; we do not).

Exactly one target must claim a release; several or none is a TargetInferenceError whose one
line asks for --target (and names the candidates when there are several).
"""

from __future__ import annotations

import pytest

from drivercore.kernelrelease import parse_kernel_release
from driverkit.errors import TargetInferenceError
from driverkit.targets import get_target, infer_target, matching_targets
from driverkit.targets.base import Mirrors

MIRRORS = Mirrors(debian="http://mirror.invalid/debian")

INFERRED = {
    # issue 2's rules
    "5.10.0-amzn2": "amazonlinux2",
    "4.14.171-136.231.amzn2.x86_64": "amazonlinux2",
    "6.1.41-63.114.amzn2023.x86_64": "amazonlinux2023",
    "3.10.0-1160.el7.x86_64": "centos",
    "5.4.17-2136.307.3.1.el8uek.x86_64": "ol",
    "5.15.0-91-generic": "ubuntu",
    "5.15.0-1051-aws": "ubuntu",
    "5.15.0-1048-gke": "ubuntu",
    "6.1.0-56-amd64": "debian",
    "5.10.0-30-cloud-amd64": "debian",
    "6.12.48+deb13-amd64": "debian",
    "6.6.15-1~bpo12+1-amd64": "debian",
    "6.1.0-13-rt-amd64": "debian",
    "6.5.6-300.fc39.x86_64": "fedora",
    "6.8.1-arch1-1": "arch",
    "4.19.283-3.ph3": "photon",
    "5.10.152-4.ph4": "photon",
    "6.1.62-flatcar": "flatcar",
    # more of the same families
    "4.14.355-196.647.amzn1.x86_64": "amazonlinux",
    "5.15.29-16.111.amzn2022.x86_64": "amazonlinux2022",
    "2.6.32-754.el6.x86_64": "centos",
    "3.10.0-957.12.2.el7.aarch64": "centos",
    "4.14.35-2047.510.5.5.el7uek.x86_64": "ol",
    "5.15.0-101.103.2.1.el9uek.x86_64": "ol",
    "6.5.0-1015-azure": "ubuntu",
    "6.2.0-1018-gcp": "ubuntu",
    "5.15.0-1049-kvm": "ubuntu",
    "5.15.0-1047-oracle": "ubuntu",
    "5.15.0-91-lowlatency": "ubuntu",
    "5.15.0-24-lowlatency-hwe-5.15": "ubuntu",
    "5.15.0-1004-intel-iotg": "ubuntu",
    "5.0.0-1028-aws-5.0": "ubuntu",
    "7.2.13+deb14-amd64": "debian",
    "6.1.0-50-arm64": "debian",
    "5.10.0-0.deb10.22-rt-amd64": "debian",
    "6.8.9-300.fc40.aarch64": "fedora",
    "5.19.3.arch1-1": "arch",
    "6.7.4-hardened1-1-hardened": "arch",
    "6.8.9-zen1-2-zen": "arch",
    "6.6.30-2-lts": "arch",
    "6.1.10-10.ph5": "photon",
    "4.19.225-3.ph3-esx": "photon",
    "5.15.119-flatcar": "flatcar",
    "3510.2.3": "flatcar",
    "6.1.58-talos": "talos",
    "4.19.91-26.al7.x86_64": "alinux",
    "5.10.134-16.3.al8.x86_64": "alinux",
    "6.8.5-1-default": "opensuse",
    "6.4-rc1": "vanilla",
    "6.4.0-rc1": "vanilla",
    "6.9-rc3": "vanilla",
}

AMBIGUOUS = {
    # RHEL 8/9 rebuilds share their releases.
    "4.18.0-477.10.1.el8_8.x86_64": {"centos", "rocky", "almalinux"},
    "5.14.0-362.el9.x86_64": {"centos", "rocky", "almalinux"},
    # Leap 15 runs SLE 15 kernels.
    "5.14.21-150400.24.46-default": {"opensuse", "sles"},
    # Bottlerocket and minikube run plain upstream numbers, as vanilla kernels do.
    "5.10.184": {"bottlerocket", "minikube", "vanilla"},
    "6.1.55": {"bottlerocket", "minikube", "vanilla"},
}

UNKNOWN = [
    "5.15.146+",  # COS: no driverkit target
    "5.4.119-19.0009.28",  # TencentOS
    "5.4.241-1-tlinux4-0017.7",  # TencentOS
    "4.9.65-2+grsecunoff1~bpo9+1-amd6",  # a custom build
    "5.15.0-91-mycustom",
]


@pytest.mark.parametrize(("release", "target"), sorted(INFERRED.items()))
def test_inference(release: str, target: str) -> None:
    assert infer_target(parse_kernel_release(release)).name == target


@pytest.mark.parametrize(("release", "targets"), sorted(AMBIGUOUS.items()))
def test_ambiguous_release_lists_candidates(release: str, targets: set[str]) -> None:
    kr = parse_kernel_release(release)
    assert {t.name for t in matching_targets(kr)} == targets
    with pytest.raises(TargetInferenceError) as info:
        infer_target(kr)
    message = str(info.value)
    assert "--target" in message and release in message and "\n" not in message
    for name in targets:
        assert name in message
    # Each candidate still resolves when chosen explicitly.
    for name in targets:
        assert get_target(name).header_urls(kr, "1", MIRRORS)


@pytest.mark.parametrize("release", UNKNOWN)
def test_unknown_release_asks_for_target(release: str) -> None:
    with pytest.raises(TargetInferenceError) as info:
        infer_target(parse_kernel_release(release))
    message = str(info.value)
    assert "--target" in message and release in message and "\n" not in message
    assert "debian" in message  # lists the valid targets


def test_redhat_is_only_chosen_explicitly() -> None:
    kr = parse_kernel_release("4.18.0-477.10.1.el8_8.x86_64")
    assert "redhat" not in {t.name for t in matching_targets(kr)}
    assert get_target("redhat").header_urls(kr, "1", MIRRORS)[0].startswith(
        "https://cdn.redhat.com/content/dist/rhel8/"
    )


def test_inferred_targets_resolve() -> None:
    for release, name in INFERRED.items():
        kr = parse_kernel_release(release)
        target = infer_target(kr)
        assert target.name == name
        assert target.header_urls(kr, "#1 SMP", MIRRORS)
