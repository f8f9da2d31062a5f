"""Falco's public rules on fixed captures: the exact alerts, pinned.

The engine's matchers are rewritten for speed (bench/bench_replay.py's line for Falco's
rules); none of that may change an alert. Two captures are replayed through Falco's own
rules files (tests/fixtures/falco_rules/): a seeded workload built to trip (and just miss)
those rules (tests/falco_workload.py: ~35k events, ~60 rules firing) and the bench's own
process mix. Every alert (rule, time, priority, output line, output fields, tags) is
compared with what the engine gave when these tests were written, kept as digests in
tests/fixtures/falco_replay_alerts.json: one per capture and one per rule, so a difference
names the rules it touches. Both event paths are checked: the replay's raw frames
(Engine.process_raw, lite records) and decoded Events (Engine.process, the live path).

A change that is meant to change alerts (a field fixed, new rules files) regenerates the
digests with `python3 -m tests.test_engine_falco_replay`, and says why in its review.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from runtime.driver import schema
from runtime.engine.app import Engine, Runner
from runtime.engine.config import DropConfig
from runtime.engine.drops import DropMonitor
from runtime.engine.metrics import EngineCounters
from runtime.engine.outputs import Alert
from runtime.engine.rules import Ruleset, load_rules
from runtime.engine.sources import ReplaySource
from runtime.engine.state import SystemState
from tests import falco_workload
from tests.conftest import FIXTURES
from tests.engine_reference import reference_matches

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import bench_replay  # noqa: E402

RULES_DIR = FIXTURES / "falco_rules"
ALL_RULES = [RULES_DIR / "falco_rules.yaml", RULES_DIR / "falco-incubating_rules.yaml",
             RULES_DIR / "falco-sandbox_rules.yaml"]
BENCH_RULES = list(bench_replay.FALCO_RULES)
GOLDEN = FIXTURES / "falco_replay_alerts.json"
BENCH_MIX_EVENTS = 20_000

AlertKey = tuple[str, int, str, str, str, tuple[str, ...], str]


def _key(alert: Alert) -> AlertKey:
    fields = json.dumps(dict(alert.output_fields), sort_keys=True, default=str)
    return (alert.rule, alert.time_ns, alert.priority, alert.output, fields, alert.tags,
            alert.source)


def summarize(alerts: Sequence[AlertKey]) -> dict[str, object]:
    """Count and sha256 of the whole ordered list, and of each rule's alerts."""
    def digest(items: Sequence[AlertKey]) -> str:
        text = "\n".join(json.dumps(list(item)) for item in items)
        return hashlib.sha256(text.encode()).hexdigest()

    by_rule: dict[str, list[AlertKey]] = {}
    for item in alerts:
        by_rule.setdefault(item[0], []).append(item)
    return {
        "count": len(alerts),
        "sha256": digest(alerts),
        "rules": {name: [len(items), digest(items)] for name, items in sorted(by_rule.items())},
    }


def _workload_capture(tmp: Path) -> Path:
    records = falco_workload.build_records(load_rules(ALL_RULES))
    return falco_workload.write_capture(tmp / "falco-workload.rtcap", records)


def _bench_capture(tmp: Path) -> Path:
    path = tmp / "bench-mix.rtcap"
    bench_replay.build_capture(path, BENCH_MIX_EVENTS, frame_bytes=64 * 1024)
    return path


CASES: dict[str, tuple[Callable[[Path], Path], list[Path]]] = {
    "workload": (_workload_capture, ALL_RULES),
    "bench_mix": (_bench_capture, BENCH_RULES),
}


def replay(capture: Path, rules: list[Path], tmp: Path, *, decoded: bool) -> list[AlertKey]:
    """The engine's alerts for `capture`: raw frames as a replay runs, or (`decoded`)
    decoded Events as a live driver hands them over."""
    alerts: list[Alert] = []
    engine = Engine(load_rules(rules), falco_workload.seeded_state(tmp), alerts.append,
                    counters=EngineCounters())
    source = ReplaySource(capture)
    if decoded:
        decoder = schema.Decoder(epoch_offset_ns=source.boot_offset_ns)
        for batch in iter(lambda: source.read(0), None):
            if batch.raw:
                engine.process(decoder.decode_stream(batch.raw))
    else:
        drops = DropMonitor(DropConfig(), emit_alert=alerts.append, log=lambda _: None)
        Runner(source, engine, None, drops).run()  # type: ignore[arg-type]
    source.close()
    return [_key(a) for a in alerts]


def reference(capture: Path, ruleset: Ruleset, state: SystemState) -> list[AlertKey]:
    """Each rule's own compiled condition, in load order, over the careful decoder: the
    plain path the per-type matchers must agree with."""
    return [_key(Alert(ev.ts, rule.name, rule.priority.falco_name, line, fields, rule.tags,
                       rule.source))
            for ev, rule, line, fields in reference_matches(capture, ruleset, state)]  # fmt: skip


def _difference(want: dict[str, object], got: dict[str, object]) -> str:
    want_rules = want["rules"]
    got_rules = got["rules"]
    assert isinstance(want_rules, dict) and isinstance(got_rules, dict)
    lines = [f"{name}: recorded {want_rules.get(name, [0])[0]} alerts, now "
             f"{got_rules.get(name, [0])[0]}"
             + ("" if name in want_rules and name in got_rules else " (rule missing)")
             for name in sorted(set(want_rules) | set(got_rules))
             if want_rules.get(name) != got_rules.get(name)]
    return f"alerts changed ({want['count']} -> {got['count']}):\n  " + "\n  ".join(
        lines or ["same per-rule alerts, in another order"])


@pytest.fixture(scope="module")
def golden() -> dict[str, dict[str, object]]:
    data = json.loads(GOLDEN.read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.usefixtures("decoder_path")
@pytest.mark.parametrize("decoded", [False, True], ids=["raw", "events"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_falco_rules_alerts_are_the_recorded_ones(case: str, decoded: bool, tmp_path: Path,
                                                  golden: dict[str, dict[str, object]]) -> None:
    build, rules = CASES[case]
    got = summarize(replay(build(tmp_path), rules, tmp_path, decoded=decoded))
    want = golden[case]
    assert int(str(want["count"])) > 0
    assert got == want, _difference(want, got)


def test_workload_trips_many_falco_rules(golden: dict[str, dict[str, object]]) -> None:
    """The workload is a useful guard only while it exercises most rules."""
    rules = golden["workload"]["rules"]
    assert isinstance(rules, dict) and len(rules) >= 50


@pytest.mark.parametrize("case", sorted(CASES))
def test_falco_rules_engine_equals_per_rule_evaluation(case: str, tmp_path: Path) -> None:
    build, rules = CASES[case]
    capture = build(tmp_path)
    expected = reference(capture, load_rules(rules), falco_workload.seeded_state(tmp_path))
    assert expected
    assert replay(capture, rules, tmp_path, decoded=False) == expected


def main() -> None:
    """Record the digests of what the engine gives now (see the module doc first)."""
    import tempfile

    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for case, (build, rules) in sorted(CASES.items()):
            out[case] = summarize(replay(build(tmp), rules, tmp, decoded=False))
    GOLDEN.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
