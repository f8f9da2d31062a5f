"""The boot harness shares host paths the virtme-ng guest would hide behind a tmpfs."""

from __future__ import annotations

from pathlib import Path

import pytest

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


# What stands in for virtme-ng here: a shell that plays the guest. What is tested is
# boot()'s own decision, which a real TCG boot cannot be made to need on demand.
_GUEST = """
attempts="$1/attempts"; echo x >> "$attempts"
case "$2" in
  died-before) exit 1 ;;                                  # QEMU gone before our command
  died-once) [ "$(wc -l < "$attempts")" -ge 2 ] || exit 1 ;;
esac
echo console of attempt $(wc -l < "$attempts")
sh -c "$3"
"""


@pytest.mark.parametrize(("how", "attempts", "has_verdict"), [
    ("ok", 1, True),
    ("died-once", 2, True),
    ("died-before", 2, False),
    ("ours-failed", 1, False),  # our command ran and wrote nothing: not booted again
])  # fmt: skip
def test_a_boot_that_died_before_our_command_is_booted_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, attempts: int,
    has_verdict: bool,
) -> None:
    from ci import bootverify
    from ci.kernels import KernelImage

    shared = tmp_path / "shared"
    monkeypatch.setenv("DRIVERKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(bootverify, "vng_command", lambda image, cmd, where: [
        "sh", "-c", _GUEST, "guest", str(tmp_path), how, cmd])
    verdict = shared / "result.json"
    command = "exit 3" if how == "ours-failed" else f"echo '{{\"ok\": true}}' > {verdict}"
    result = bootverify.boot(KernelImage("6.1.0-0-amd64", "6.1.0-0", tmp_path), command,
                             shared, timeout_s=30)
    assert result.timings["boot_attempts"] == attempts
    assert (result.verdict is not None) == has_verdict
    kept = sorted(p.name for p in shared.glob("console-attempt*.log"))
    assert kept == (["console-attempt1.log"] if attempts == 2 else [])
    if how == "died-once":
        assert "console of attempt 2" in result.console_log.read_text()
