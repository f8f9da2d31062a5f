"""Choose: which driver a host gets, in order, and why; explicit types honoured or refused.

Real: identify, host_target and choose. Stood in: the host, as a root written in a temp dir
with or without BTF and module support, and uname (overridden).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drivercore.errors import ExitCode
from drivercore.naming import ArtifactKind
from runtime.loader.choose import Choice, DriverType, choose
from runtime.loader.errors import DriverTypeRefusedError
from runtime.loader.identify import identify
from runtime.loader.target import host_target
from tests.loader_helpers import write_host_root

CORE, KMOD, PROBE = ArtifactKind.CORE, ArtifactKind.KMOD, ArtifactKind.PROBE


def _choose(root: Path, files: dict[str, str | None], requested: DriverType,
            release: str = "6.1.0-13-amd64") -> Choice:
    write_host_root(root, {"etc/os-release": "ID=debian\n", **files})
    host = identify(root, kernel_release=release, kernel_version="#1 SMP Debian 6.1.55-1",
                    machine="x86_64")
    return choose(host, host_target(host), requested)


@pytest.mark.parametrize(
    ("files", "release", "order", "ruled_out"),
    [
        ({}, "6.1.0-13-amd64", [CORE, KMOD, PROBE], []),
        ({"sys/kernel/btf/vmlinux": None}, "6.1.0-13-amd64", [KMOD, PROBE], [CORE]),
        ({}, "5.4.0-1-amd64", [KMOD, PROBE], [CORE]),
        ({"proc/modules": None}, "6.1.0-13-amd64", [CORE, PROBE], [KMOD]),
        ({"sys/kernel/btf/vmlinux": None, "proc/modules": None}, "6.1.0-13-amd64", [PROBE],
         [CORE, KMOD]),
    ],
)
def test_auto_prefers_core_then_kmod_then_probe(tmp_path: Path, files: dict[str, str | None],
                                                release: str, order: list[ArtifactKind],
                                                ruled_out: list[ArtifactKind]) -> None:
    choice = _choose(tmp_path, files, DriverType.AUTO, release)
    assert [c.kind for c in choice.candidates] == order
    assert [kind for kind, _ in choice.ruled_out] == ruled_out
    assert all(c.reason for c in choice.candidates)


def test_candidates_carry_the_file_names(tmp_path: Path) -> None:
    choice = _choose(tmp_path, {}, DriverType.AUTO)
    assert [c.file for c in choice.candidates] == [
        "rtcap_core.o", "rtcap_debian_6.1.55-1-amd64_1.ko", "rtcap_debian_6.1.55-1-amd64_1.o"
    ]


@pytest.mark.parametrize(
    ("files", "requested", "message"),
    [
        ({"proc/modules": None}, DriverType.KMOD,
         "kmod: this kernel cannot load modules (no /proc/modules)"),
        ({"sys/kernel/security/lockdown": "none [integrity] confidentiality"}, DriverType.KMOD,
         "kmod: kernel lockdown [integrity] refuses unsigned modules"),
        ({"sys/kernel/btf/vmlinux": None}, DriverType.CORE, "core: no kernel BTF at"),
    ],
)
def test_an_explicit_type_that_cannot_work_is_refused_with_the_reason(
    tmp_path: Path, files: dict[str, str | None], requested: DriverType, message: str
) -> None:
    with pytest.raises(DriverTypeRefusedError) as refused:
        _choose(tmp_path, files, requested)
    assert str(refused.value).startswith(message)
    assert refused.value.exit_code is ExitCode.DRIVER_TYPE_REFUSED


def test_core_refused_on_a_kernel_without_the_ring_buffer(tmp_path: Path) -> None:
    with pytest.raises(DriverTypeRefusedError, match=r"5.4.0-1-amd64 predates the BPF ring"):
        _choose(tmp_path, {}, DriverType.CORE, "5.4.0-1-amd64")


@pytest.mark.parametrize("requested", [DriverType.CORE, DriverType.KMOD, DriverType.PROBE])
def test_an_explicit_type_that_works_is_the_only_candidate(tmp_path: Path,
                                                           requested: DriverType) -> None:
    choice = _choose(tmp_path, {}, requested)
    assert [c.kind.value for c in choice.candidates] == [requested.value]
    assert choice.candidates[0].reason.startswith("requested")
