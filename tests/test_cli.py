"""The driverkit CLI end to end, as a user runs it (subprocess, real exit codes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from driverkit.errors import InvalidKernelReleaseError, TargetInferenceError, UnknownTargetError


def run_driverkit(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DRIVERKIT_")}
    # A fixed mirror keeps the output independent of the machine's apt sources.
    full_env["DRIVERKIT_DEBIAN_MIRROR"] = "http://mirror.invalid/debian"
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "driverkit.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_resolve_amazonlinux2_offline() -> None:
    proc = run_driverkit("resolve", "--kernel", "5.10.0-amzn2")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["target"] == "amazonlinux2"
    assert plan["kernel"] == {
        "full_version": "5.10.0",
        "version": 5,
        "patch_level": 10,
        "sublevel": 0,
        "extra_version": "amzn2",
        "full_extra_version": "-amzn2",
    }
    assert plan["gcc"]
    assert plan["builder_image"]
    assert plan["headers"] and all(url.startswith("http") for url in plan["headers"])
    assert plan["artifacts"] == [
        f"rtcap_{plan['target_id']}_{plan['artifact_kernel_release']}_"
        f"{plan['artifact_kernel_version']}.{ext}"
        for ext in ("ko", "o")
    ]


def test_dry_run_prints_debian_plan_and_script_without_running() -> None:
    proc = run_driverkit("build", "--kernel", "6.1.0-56-amd64", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert '"target": "debian"' in proc.stdout
    assert "FROM " in proc.stdout  # the Dockerfile
    assert "6.1.0-56-amd64" in proc.stdout
    assert "make" in proc.stdout  # the build script


@pytest.mark.parametrize(
    "bad", ["5.10.0;id", "$(id)", "`id`", "5.10.0 -x", "5.10'0", "../5.10.0", "5.10.0/x"]
)
def test_unsafe_release_fails_before_rendering(bad: str) -> None:
    proc = run_driverkit("build", "--kernel", bad, "--dry-run")
    assert proc.returncode == InvalidKernelReleaseError.exit_code
    assert proc.stdout == ""  # nothing rendered, no partial output
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("driverkit: error:")


def test_unknown_target_lists_valid_ones() -> None:
    proc = run_driverkit("resolve", "--kernel", "5.10.0-1-amd64", "--target", "debain")
    assert proc.returncode == UnknownTargetError.exit_code
    assert "debian" in proc.stderr and "ubuntu" in proc.stderr


def test_uninferable_release_asks_for_target() -> None:
    proc = run_driverkit("resolve", "--kernel", "5.10.0")
    assert proc.returncode == TargetInferenceError.exit_code
    assert "--target" in proc.stderr


def test_config_file_env_and_flags_precedence(tmp_path: Path) -> None:
    config = tmp_path / "dk.yaml"
    config.write_text(
        "kernelrelease: 5.10.0-amzn2\ntarget: amazonlinux2\ndriverversion: from-file\n"
    )
    proc = run_driverkit("resolve", "-c", str(config))
    assert json.loads(proc.stdout)["driver_version"] == "from-file"
    proc = run_driverkit("resolve", "-c", str(config), env={"DRIVERKIT_DRIVERVERSION": "from-env"})
    assert json.loads(proc.stdout)["driver_version"] == "from-env"
    proc = run_driverkit(
        "resolve",
        "-c",
        str(config),
        "--driver-version",
        "from-flag",
        env={"DRIVERKIT_DRIVERVERSION": "from-env"},
    )
    assert json.loads(proc.stdout)["driver_version"] == "from-flag"


def test_unknown_config_key_fails_with_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "dk.yaml"
    config.write_text("kernelrelease: 5.10.0-amzn2\ntraget: amazonlinux2\n")
    proc = run_driverkit("resolve", "-c", str(config))
    assert proc.returncode == 2
    assert "unknown key 'traget' (did you mean 'target'?)" in proc.stderr


def test_targets_table_lists_every_driverkit_target() -> None:
    proc = run_driverkit("targets")
    assert proc.returncode == 0, proc.stderr
    for name in (
        "alinux",
        "almalinux",
        "amazonlinux",
        "amazonlinux2",
        "amazonlinux2022",
        "amazonlinux2023",
        "arch",
        "bottlerocket",
        "centos",
        "debian",
        "fedora",
        "flatcar",
        "minikube",
        "ol",
        "opensuse",
        "photon",
        "redhat",
        "rocky",
        "sles",
        "talos",
        "ubuntu",
        "vanilla",
    ):
        assert f" {name} " in proc.stdout, name


def test_targets_json_has_each_targets_headers_builders_and_e2e_test() -> None:
    proc = run_driverkit("targets", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["target"]: row for row in json.loads(proc.stdout)}
    assert len(rows) == 22
    for row in rows.values():
        assert row["header_source"] and row["header_format"] and row["builder"]
        assert row["builds_today"]
        assert all({"kernels", "wanted_gcc", "suite", "gcc", "substituted"} <= set(b)
                   for b in row["builders"])  # fmt: skip
    assert rows["centos"]["header_format"] == "rpm"
    assert rows["ubuntu"]["header_format"] == "ubuntu"
    assert rows["centos"]["e2e_test"] == "tests/test_build_distros.py::test_build_e2e[centos]"
    assert rows["debian"]["e2e_test"].startswith("tests/test_build_docker.py::")
    assert rows["sles"]["e2e_test"] is None
    assert any("4.8.5 (3.10)" in line and "no builder" in line
               for line in rows["centos"]["builder"])  # fmt: skip


@pytest.mark.parametrize("columns", [160, 100])
def test_targets_table_fits_the_terminal(columns: int) -> None:
    proc = run_driverkit("targets", env={"COLUMNS": str(columns)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert "test_build_e2e[centos]" in proc.stdout or columns < 160


def test_resolve_shows_the_wanted_gcc_no_builder_ships() -> None:
    proc = run_driverkit("resolve", "--kernel", "3.10.0-1160.el7.x86_64", "--target", "centos")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert (plan["wanted_gcc"], plan["gcc"]) == ("4.8.5", "7")
    assert plan["builder"] == {"base_image": "debian:buster", "distro_release": "buster",
                               "gcc": "7", "wanted_gcc": "4.8.5"}
    note = ("wants gcc 4.8.5 (CentOS 7 built 3.10 with it); no builder ships it: building "
            "with gcc 7 (buster), which may fail")
    assert plan["gcc_note"] == note
    assert plan["builder_image"].startswith("driverkit-builder-buster-gcc7:")
    assert proc.stderr == f"driverkit: warning: 3.10.0-1160.el7.x86_64: {note}\n"
    shipped = json.loads(run_driverkit("resolve", "--kernel", "5.10.0-amzn2").stdout)
    assert (shipped["wanted_gcc"], shipped["gcc"], shipped["gcc_note"]) == ("10", "10", "")


def test_gcc_version_no_builder_ships_is_one_line() -> None:
    proc = run_driverkit("resolve", "--kernel", "3.10.0-1160.el7.x86_64", "--target", "centos",
                         "--gcc-version", "4.8.5")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        "driverkit: error: --gcc-version 4.8.5: no builder ships it; builders have gcc "
        "7, 8 (buster), 9, 10 (bullseye), 11, 12 (bookworm), 13, 14 (trixie), 15, 16 (sid)\n"
    )
    forced = run_driverkit("resolve", "--kernel", "3.10.0-1160.el7.x86_64", "--target",
                           "centos", "--gcc-version", "8.3")
    assert forced.returncode == 0, forced.stderr
    plan = json.loads(forced.stdout)
    assert (plan["wanted_gcc"], plan["gcc"], plan["gcc_note"]) == ("8.3", "8", "")


def test_loglevel_reaches_python_logging() -> None:
    quiet = run_driverkit("resolve", "--kernel", "5.10.0-amzn2")
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = run_driverkit("resolve", "--kernel", "5.10.0-amzn2", "--loglevel", "debug")
    assert loud.returncode == 0, loud.stderr
    assert json.loads(loud.stdout) == json.loads(quiet.stdout)  # stdout stays the plan
    assert "5.10.0-amzn2" in loud.stderr and "amazonlinux2" in loud.stderr


def test_images_build_resolves_through_the_option_table(tmp_path: Path) -> None:
    helped = run_driverkit("images", "build", "--help")
    assert helped.returncode == 0
    for flag in ("--cache-dir", "--debian-mirror", "--base-from", "--builder-image", "-c,"):
        assert flag in helped.stdout, flag
    # Resolution fails the way `build` does, before any container engine is needed.
    none = run_driverkit("images", "build", "--cache-dir", str(tmp_path))
    assert none.returncode == 2 and "no kernel given" in none.stderr
    typo = run_driverkit("images", "build", env={"DRIVERKIT_BASEFORM": "debootstrap"})
    assert typo.returncode == 2 and "did you mean 'DRIVERKIT_BASEFROM'" in typo.stderr
