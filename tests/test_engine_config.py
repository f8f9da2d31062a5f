"""Engine config: Falco-like YAML keys, flag overrides, did-you-mean on typos."""

from __future__ import annotations

from pathlib import Path

import pytest

from driverkit.errors import UsageError
from runtime.engine.config import EngineConfig, load_config, parse_config, with_overrides


def test_defaults_match_falco() -> None:
    cfg = EngineConfig()
    assert cfg.syscall_event_drops.threshold == 0.1
    assert cfg.syscall_event_drops.actions == ("log", "alert")
    assert cfg.syscall_event_drops.max_burst == 1
    assert cfg.priority == "debug"


def test_full_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text(
        """
driver: kmod
buffer_bytes: 65536
json_output: true
priority: warning
rules_files: [a.yaml, b.yaml]
outputs: {queue_size: 7, stdout: false, file: /tmp/alerts.jsonl}
webhook: {url: "http://127.0.0.1:2801/", timeout: 2}
syscall_event_drops:
  threshold: 0.2
  actions: [ignore, exit]
  rate: 0.5
  max_burst: 3
  simulate_drops: true
metrics: {enabled: true, interval: 2.5, prometheus_port: 0}
"""
    )
    cfg = load_config(path)
    assert cfg.driver == "kmod" and cfg.buffer_bytes == 65536 and cfg.json_output
    assert cfg.rules_files == (Path("a.yaml"), Path("b.yaml"))
    assert cfg.outputs.queue_size == 7 and not cfg.outputs.stdout
    assert cfg.webhook.url == "http://127.0.0.1:2801/" and cfg.webhook.timeout == 2
    d = cfg.syscall_event_drops
    assert (d.threshold, d.actions, d.rate, d.max_burst, d.simulate_drops) == (
        0.2, ("ignore", "exit"), 0.5, 3, True,
    )
    assert cfg.metrics.enabled and cfg.metrics.interval == 2.5 and cfg.metrics.prometheus_port == 0


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"json_outptu": True}, "did you mean 'json_output'"),
        ({"syscall_event_drops": {"treshold": 0.1}}, "did you mean 'threshold'"),
        ({"syscall_event_drops": {"actions": ["alrt"]}}, "did you mean 'alert'"),
        ({"metrics": {"prometheus_prot": 1}}, "did you mean 'prometheus_port'"),
        ({"driver": "cor"}, "did you mean 'core'"),
        ({"syscall_event_drops": {"threshold": 3}}, "between 0 and 1"),
        ({"buffer_bytes": "big"}, "expected an integer"),
        ({"webhook": {"url": "ftp://x"}}, "http:// or https://"),
    ],
)
def test_bad_keys_and_values_name_the_fix(doc: dict[str, object], expected: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_config(doc, "config t.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("config t.yaml")


def test_yaml_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("driver: core\nmetrics: {enabled: true\n")
    with pytest.raises(UsageError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "line" in str(info.value)


def test_flags_override_file_values() -> None:
    base = parse_config({"priority": "error", "json_output": False}, "c")
    cfg = with_overrides(base, priority="notice", json_output=None, stats_interval=0.5,
                         metrics_port=9000, rules_files=())
    assert cfg.priority == "notice"
    assert cfg.json_output is False  # flag not given keeps the file's value
    assert cfg.metrics.enabled and cfg.metrics.interval == 0.5
    assert cfg.metrics.prometheus_port == 9000
