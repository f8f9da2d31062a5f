"""The loader across the test kernels (ci.fleet): in a QEMU guest per kernel, drivers built
by driverkit are fetched from a signed repository on the guest's own loopback, verified,
loaded, and produce events, and the drivers' drop counters are read.

Per kernel of ci.kernels.TEST_KERNELS (5.10, 6.1, 6.12, the newest 7.x): auto must choose
the CO-RE probe; forced kmod and forced per-kernel probe are fetched, verified and loaded
too (the module through runtime.loader.kmodload: vermagic, finit_module); each produces
> 0 events, including the workload's opens of /etc/hostname, and reports drop counters.
Builds and kernel images come from the shared cache (driverkit skips unchanged kernels).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ci.kernels import TEST_KERNELS
from tests.conftest import require
from tests.test_kmod_qemu import qemu_test

_rows: dict[str, Any] = {}


def _row(selector: str) -> Any:
    from ci.fleet import run_kernel, table

    if selector not in _rows:
        require(os.geteuid() == 0, "needs root (docker builds, guest module loading)")
        for tool in ("vng", "driverkit", "docker", "dpkg-deb", "qemu-system-x86_64"):
            require(shutil.which(tool) is not None, f"needs {tool} (see ci/setup.sh)")
        _rows[selector] = run_kernel(selector)
        print("\n" + table([_rows[selector]]))
    return _rows[selector]


@qemu_test
@pytest.mark.parametrize("selector", TEST_KERNELS)
def test_fleet_kernel(selector: str) -> None:
    row = _row(selector)
    assert not row.problems(), f"{row.kernel}: " + "; ".join(row.problems())
    assert row.chosen == "core"
    for kind in ("core", "kmod", "probe"):
        got = row.driver(kind)
        assert got["loaded"] == kind and got["verified"], got
        assert got["events"] > 0 and got["hostname_opens_seen"] > 0, got
        assert got["drops"] is not None and got["driver_events"] >= got["events"], got
        assert got["fetch_ms"] is not None and got["load_ms"] is not None, got


# ---------------------------------------------------------------- no-VM unit tests


def test_the_fleet_repository_is_signed_and_readable(tmp_path: Path) -> None:
    """What ci.fleet writes verifies with the key it returns, through the loader's reader."""
    from ci.bootverify import BuiltDriver
    from ci.fleet import _artifact_kernel, write_signed_repo
    from drivercore.repoclient import RepoReader
    from drivercore.repoindex import parse_public_key

    stem = "rtcap_debian_6.1.192-3-amd64_1"
    files = {}
    for name in (f"{stem}.ko", f"{stem}.o", "rtcap_core.o"):
        files[name] = tmp_path / name
        files[name].write_bytes(name.encode() * 10)
    built = BuiltDriver("6.1.0-57-amd64", "debian", files[f"{stem}.ko"], files[f"{stem}.o"],
                        files["rtcap_core.o"])
    key = write_signed_repo(tmp_path / "repo", built, "0.1.0+x")
    reader = RepoReader(str(tmp_path / "repo"), parse_public_key(key))
    index = reader.arch_index("0.1.0+x", "amd64")
    assert sorted(index.entries) == sorted(files)
    entry = index.entries[f"{stem}.ko"]
    assert (entry.kind, entry.target, entry.kernelrelease, entry.kernelversion) == (
        "kmod", "debian", "6.1.192-3-amd64", "1")
    assert index.entries["rtcap_core.o"].target == ""
    got = reader.download(index, entry, tmp_path / "cache")
    assert hashlib.sha256(got.read_bytes()).hexdigest() == entry.sha256
    assert _artifact_kernel("rtcap_ubuntu-generic_5.15.0-1_2.ko") == ("5.15.0-1", "2")


def test_a_row_without_a_verdict_or_with_a_wrong_choice_fails(tmp_path: Path) -> None:
    from ci.bootverify import BootResult
    from ci.fleet import FleetRow, table

    none = FleetRow("6.1.0-57-amd64", BootResult("6.1.0-57-amd64", -1, 1.0,
                                                 tmp_path / "console.log", None))
    assert none.problems() == [f"no guest verdict (see {tmp_path / 'console.log'})"]
    good = {"loaded": "", "events": 5, "drops": 0, "fetch_ms": 1, "load_ms": 2}
    verdict: dict[str, Any] = {"ok": True, "checks": [], "auto": {"chosen": "kmod"},
               "drivers": {k: {**good, "loaded": k} for k in ("core", "kmod", "probe")}}
    verdict["drivers"]["probe"]["events"] = 0
    row = FleetRow("6.1.0-57-amd64", BootResult("6.1.0-57-amd64", 0, 70.0,
                                                tmp_path / "console.log", verdict))
    assert row.problems() == ["auto chose kmod, not core", "probe: no events"]
    lines = table([row]).splitlines()
    assert lines[0].split()[:2] == ["kernel", "chosen"]
    assert lines[1].split() == ["6.1.0-57-amd64", "kmod", "1/1/1", "2/2/2", "5/5/0", "0/0/0",
                                "70", "FAIL"]
