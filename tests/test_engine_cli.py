"""CLI behaviour: validate, rule-file errors, bad flags and config keys, signals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_engine_replay import WORLD, rt_engine, write_capture


def test_validate_default_ruleset_lists_event_types(repo_root: Path) -> None:
    rules = repo_root / "runtime" / "engine" / "default_rules.yaml"
    result = rt_engine("validate", "--rules", rules)
    assert result.returncode == 0, result.stderr
    assert "ok," in result.stdout
    for evt in ("openat", "execve", "connect", "finit_module", "ptrace"):
        assert evt in result.stdout


def test_default_ruleset_has_the_promised_rules(repo_root: Path) -> None:
    from runtime.engine.cli import default_rules_path
    from runtime.engine.rules import load_rules

    names = {r.name for r in load_rules([default_rules_path()]).rules}
    for wanted in (
        "Sensitive file opened by untrusted program",
        "Shell spawned in a container",
        "Write below binary directory",
        "Outbound connection by network tool or shell",
        "Kernel module loaded",
        "Process attached with ptrace",
    ):
        assert wanted in names
    assert len(names) >= 10


BAD_RULES = {
    "yaml": ("- rule: x\n  condition: [unclosed\n", "yaml"),
    "unknown_macro": (
        "- rule: r\n  desc: d\n  condition: evt.type = openat and no_such_macro\n"
        "  output: o\n  priority: NOTICE\n",
        "no_such_macro",
    ),
    "unknown_field": (
        "- rule: r\n  desc: d\n  condition: evt.type = openat and proc.nmae = cat\n"
        "  output: o\n  priority: NOTICE\n",
        "proc.nmae",
    ),
    "bad_operator": (
        "- rule: r\n  desc: d\n  condition: evt.type = openat and proc.name likes cat\n"
        "  output: o\n  priority: NOTICE\n",
        "likes",
    ),
    "cyclic_macros": (
        "- macro: a\n  condition: b and evt.type = openat\n"
        "- macro: b\n  condition: a\n"
        "- rule: r\n  desc: d\n  condition: a\n  output: o\n  priority: NOTICE\n",
        "cycl",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RULES))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_rule_files_fail_with_one_clear_line(tmp_path: Path, case: str, command: str) -> None:
    text, needle = BAD_RULES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    args: list[str | Path] = ["--rules", path]
    if command == "run":
        args += ["--replay", tmp_path / "x"]
    result = rt_engine(command, *args)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert str(path) in errors[0] and needle in errors[0].lower(), errors[0]
    assert "Traceback" not in result.stderr


def test_unknown_flag_suggests_the_right_one() -> None:
    result = rt_engine("run", "--jsonn")
    assert result.returncode == 2
    assert "--json" in result.stderr and "Did you mean" in result.stderr


def test_unknown_config_key_suggests_the_right_one(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("syscall_event_drops:\n  max_brust: 2\n")
    result = rt_engine("run", "--config", config, "--replay", tmp_path / "x")
    assert result.returncode == 2
    assert "did you mean 'max_burst'" in result.stderr and str(config) in result.stderr


def test_bad_min_priority_is_a_usage_error(tmp_path: Path) -> None:
    result = rt_engine("run", "--replay", tmp_path / "x", "--min-priority", "loud")
    assert result.returncode == 2 and "loud" in result.stderr


def test_replay_with_driver_is_refused(tmp_path: Path) -> None:
    result = rt_engine("run", "--replay", tmp_path / "x", "--driver", "core")
    assert result.returncode == 2 and "--replay" in result.stderr


def test_alerts_to_file_and_metrics_snapshots(tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "w.rtcap", [WORLD])
    config = tmp_path / "engine.yaml"
    out = tmp_path / "alerts.jsonl"
    metrics = tmp_path / "metrics.jsonl"
    config.write_text(
        f"json_output: true\noutputs: {{stdout: false, file: {out}}}\n"
        f"metrics: {{enabled: true, interval: 60, output_file: {metrics}}}\n"
    )
    result = rt_engine("run", "--replay", capture, "--config", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    assert any(a["rule"] == "Sensitive file opened by untrusted program" for a in alerts)
    snaps = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert snaps[-1]["events_total"] == len(WORLD)
    assert snaps[-1]["rule_matches"]["Sensitive file opened by untrusted program"] == 1


def test_live_driver_needs_a_probe_and_a_power_of_two_buffer(tmp_path: Path) -> None:
    result = rt_engine("run", "--driver", "core")
    assert result.returncode == 2 and "--probe" in result.stderr
    assert "make -C driver core" in result.stderr
    result = rt_engine("run", "--driver", "core", "--probe", tmp_path / "p.o",
                       "--buffer-bytes", "100000")
    assert result.returncode == 2 and "power of two" in result.stderr and "65536" in result.stderr


def test_a_missing_capture_is_one_error_without_a_run_summary(tmp_path: Path) -> None:
    result = rt_engine("run", "--replay", str(tmp_path / "nope.rtc"))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [f"rt-engine: error: capture {tmp_path / 'nope.rtc'}: cannot open: "
                      "No such file or directory"]
    assert "events:" not in result.stderr and result.stdout == ""
