"""Identify: the loader's view of a host, from files under a host root.

Real: the identify functions and the files they read. Stood in: the host itself, as a
host root written in a temp dir (the same files a bind-mounted /host holds), and uname,
passed as overrides.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.loader.identify import HostInfo, identify, parse_os_release, read_os_release
from tests.loader_helpers import write_host_root

SECURE_BOOT_VAR = "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def _host(root: Path, files: dict[str, str | bytes | None],
          release: str = "6.1.0-13-amd64") -> HostInfo:
    write_host_root(root, files)
    return identify(root, kernel_release=release, kernel_version="#1 SMP", machine="x86_64")


def test_os_release_quotes_comments_and_escapes() -> None:
    text = '# comment\nID="ubuntu"\nVERSION_ID=\'22.04\'\nPRETTY_NAME="A \\"quoted\\" name"\n\nX\n'
    assert parse_os_release(text) == {
        "ID": "ubuntu", "VERSION_ID": "22.04", "PRETTY_NAME": 'A "quoted" name'
    }


@pytest.mark.parametrize(
    ("files", "expected_id", "source"),
    [
        ({"etc/os-release": "ID=Debian\nVERSION_ID=12\n"}, "debian", "etc/os-release"),
        ({"etc/debian_version": "12.5\n"}, "debian", "etc/debian_version"),
        ({"etc/centos-release": "CentOS 7", "etc/redhat-release": "CentOS 7"}, "centos",
         "etc/centos-release"),
        ({"etc/redhat-release": "Red Hat Enterprise Linux 9"}, "rhel", "etc/redhat-release"),
        ({}, "", ""),
    ],
)
def test_os_release_and_its_fallbacks(tmp_path: Path, files: dict[str, str],
                                      expected_id: str, source: str) -> None:
    write_host_root(tmp_path, files)
    found = read_os_release(tmp_path)
    assert (found.id, found.source) == (expected_id, source)


def test_minikube_version_file_is_noticed_with_or_without_os_release(tmp_path: Path) -> None:
    write_host_root(tmp_path, {"etc/VERSION": "v1.26.0-1655407986-14197"})
    assert read_os_release(tmp_path).minikube_version == "v1.26.0-1655407986-14197"
    (tmp_path / "etc/os-release").write_text("ID=buildroot\nVERSION_ID=2021.02.12\n")
    found = read_os_release(tmp_path)
    assert (found.id, found.minikube_version) == ("buildroot", "v1.26.0-1655407986-14197")


def test_a_capable_host(tmp_path: Path) -> None:
    host = _host(tmp_path, {"etc/os-release": "ID=debian\n"})
    assert host.btf and host.ring_buffer and host.modules.can_load
    assert host.kernel_root == tmp_path
    assert (host.lockdown, host.secure_boot) == ("", None)


def test_no_btf_and_an_old_kernel(tmp_path: Path) -> None:
    host = _host(tmp_path, {"sys/kernel/btf/vmlinux": None}, release="5.4.0-150-generic")
    assert not host.btf and not host.ring_buffer
    assert _host(tmp_path / "b", {}, release="5.8.0").ring_buffer


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"proc/modules": None}, "this kernel cannot load modules (no /proc/modules)"),
        ({"proc/sys/kernel/modules_disabled": "1\n"}, "kernel.modules_disabled=1"),
        ({"sys/kernel/security/lockdown": "none [integrity] confidentiality\n"},
         "lockdown [integrity]"),
        ({"sys/kernel/security/lockdown": "none integrity [confidentiality]\n"},
         "lockdown [confidentiality]"),
        ({"sys/module/module/parameters/sig_enforce": "Y\n"}, "sig_enforce"),
        ({"proc/cmdline": "root=/dev/sda1 module.sig_enforce=1 quiet\n"}, "sig_enforce"),
    ],
)
def test_why_modules_cannot_load(tmp_path: Path, files: dict[str, str | bytes | None],
                                 reason: str) -> None:
    host = _host(tmp_path, files)
    assert not host.modules.can_load
    assert reason in host.modules.reason


def test_lockdown_none_lets_modules_load(tmp_path: Path) -> None:
    host = _host(tmp_path, {"sys/kernel/security/lockdown": "[none] integrity confidentiality"})
    assert host.modules.can_load and host.lockdown == "none"


@pytest.mark.parametrize(("value", "expected"), [(1, True), (0, False)])
def test_secure_boot_from_the_efi_variable(tmp_path: Path, value: int, expected: bool) -> None:
    host = _host(tmp_path, {SECURE_BOOT_VAR: bytes([6, 0, 0, 0, value])})
    assert host.secure_boot is expected


def test_kernel_facts_come_from_slash_without_a_proc_folder(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text("ID=fedora\n")
    host = identify(tmp_path)
    assert host.kernel_root == Path("/")
    assert host.os_release.id == "fedora"
