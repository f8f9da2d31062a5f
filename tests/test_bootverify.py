"""The boot harness shares host paths the virtme-ng guest would hide behind a tmpfs."""

from __future__ import annotations

from pathlib import Path

from ci.bootverify import masked_shares


def test_paths_under_masked_dirs_are_shared_read_only() -> None:
    shares = masked_shares([Path("/var/tmp/clone"), Path("/tmp/venv"), Path("/var/tmp/clone")])
    assert shares == [
        "--rodir", "/var/tmp/clone=/var/tmp/clone",
        "--rodir", "/tmp/venv=/tmp/venv",
    ]  # fmt: skip


def test_paths_the_guest_sees_need_no_share() -> None:
    assert masked_shares([Path("/work/main"), Path("/root/.pyenv/versions/3.11.7")]) == []


def test_passed_boots_are_recorded_beside_the_manifests(tmp_path: Path) -> None:
    """The publisher learns from bootverify.json which kernels each artifact passed on;
    a failed boot, or a boot that loaded no probe, vouches for nothing more."""
    import json

    from ci.bootverify import BootResult, BuiltDriver, built_drivers, record_boot

    ko, probe, core = (tmp_path / n for n in ("a.ko", "a.o", "rtcap_core.o"))
    built = BuiltDriver("6.1.0-57-amd64", "debian", ko, probe, core)
    (tmp_path / "a.json").write_text(json.dumps(
        {"inputs": {"kind": "kernel", "kernel_release": "6.1.0-57-amd64"},
         "artifacts": {"a.ko": {}}}))  # fmt: skip

    def result(release: str, ok: bool, checks: list[str]) -> BootResult:
        verdict = {"ok": ok, "checks": [{"name": c, "ok": ok} for c in checks]}
        return BootResult(release, 0, 1.0, tmp_path / "console.log", verdict)

    record_boot(built, result("6.1.0-57-amd64", True, ["insmod", "probe_core_loaded"]))
    record_boot(built, result("6.1.0-57-rt-amd64", True, ["insmod"]))
    record_boot(built, result("5.10.0-46-amd64", False, ["insmod", "probe_core_loaded"]))
    recorded = json.loads((tmp_path / "bootverify.json").read_text())
    assert recorded == {
        "a.ko": ["6.1.0-57-amd64", "6.1.0-57-rt-amd64"],
        "a.o": ["6.1.0-57-amd64"],
        "rtcap_core.o": ["6.1.0-57-amd64"],
    }
    assert list(built_drivers(tmp_path)) == ["6.1.0-57-amd64"]  # not taken for a manifest


def test_sample_boots_the_newest_kernel_of_each_suite() -> None:
    from ci.bootverify import sample_per_suite

    releases = ["5.10.0-45-amd64", "5.10.0-46-amd64", "6.1.0-9-amd64", "6.1.0-57-amd64",
                "6.12.48+deb13-amd64", "6.12.118+deb13-amd64", "7.2.13+deb14-amd64"]
    assert sample_per_suite(releases) == [
        "5.10.0-46-amd64", "6.1.0-57-amd64", "6.12.118+deb13-amd64", "7.2.13+deb14-amd64"
    ]
