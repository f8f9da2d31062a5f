"""Dropped-syscall accounting: threshold, actions, token bucket, simulate_drops, summary."""

from __future__ import annotations

import pytest

from runtime.engine.config import DropConfig
from runtime.engine.drops import (
    DROP_RULE_NAME,
    DropMonitor,
    SyscallDropExitError,
    TokenBucket,
    total_stats,
)
from runtime.engine.outputs import Alert

S = 1_000_000_000


def _monitor(**kw: object) -> tuple[DropMonitor, list[Alert], list[str]]:
    alerts: list[Alert] = []
    logs: list[str] = []
    cfg = DropConfig(**kw)  # type: ignore[arg-type]
    return DropMonitor(cfg, emit_alert=alerts.append, log=logs.append, now_ns=0), alerts, logs


def _totals(n_evts: int, buffer: int = 0, pf: int = 0, bug: int = 0) -> dict[str, int]:
    return total_stats(
        {0: {"n_evts": n_evts, "n_drops_buffer": buffer, "n_drops_pf": pf, "n_drops_bug": bug}}
    )


def test_total_stats_sums_cpus_and_derives_n_drops() -> None:
    totals = total_stats(
        {
            0: {"n_evts": 10, "n_drops_buffer": 2, "n_drops_pf": 1, "n_drops_bug": 0,
                "n_filtered": 7},
            1: {"n_evts": 5, "n_drops_buffer": 3, "n_drops_pf": 0, "n_drops_bug": 1,
                "n_filtered": 1},
        }
    )
    assert totals == {
        "n_evts": 15, "n_drops_buffer": 5, "n_drops_pf": 1, "n_drops_bug": 1,
        "n_filtered": 8, "n_drops": 7,
    }


def test_token_bucket_refills_at_rate_up_to_burst() -> None:
    bucket = TokenBucket(rate=0.5, max_tokens=2, now_ns=0)
    assert bucket.claim(0) and bucket.claim(0)
    assert not bucket.claim(0)
    assert not bucket.claim(1 * S)  # half a token
    assert bucket.claim(2 * S)  # one token after 2 s at 0.5/s
    assert not bucket.claim(2 * S)
    assert bucket.claim(100 * S) and bucket.claim(100 * S)  # capped at max_tokens=2
    assert not bucket.claim(100 * S)


def test_alert_carries_per_category_deltas_and_percentage() -> None:
    mon, alerts, logs = _monitor(threshold=0.1, actions=("log", "alert"), rate=1, max_burst=1)
    mon.check(_totals(1000, buffer=5), 1 * S)  # first check: 5/1000 = 0.5% < 10%
    assert alerts == []
    mon.check(_totals(2000, buffer=305, pf=2, bug=1), 2 * S)  # delta: 1000 evts, 303 drops
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.rule == DROP_RULE_NAME
    assert alert.priority == "Critical"
    f = alert.output_fields
    assert (f["n_evts"], f["n_drops"], f["n_drops_buffer"], f["n_drops_pf"], f["n_drops_bug"]) == (
        1000, 303, 300, 2, 1,
    )
    assert f["drop_pct"] == pytest.approx(30.3)
    assert "303 system calls dropped" in alert.output
    assert any("303 system calls dropped" in line for line in logs)


def test_below_threshold_takes_no_action_but_is_summarised() -> None:
    mon, alerts, logs = _monitor(threshold=0.5, actions=("log", "alert"))
    mon.check(_totals(100, buffer=10), S)
    assert alerts == [] and logs == []
    assert mon.summary.seconds_with_drops == 1
    assert mon.summary.n_drops == 10
    assert "dropped: 10" in mon.summary.text()


def test_token_bucket_limits_actions_and_counts_suppressed() -> None:
    mon, alerts, _ = _monitor(threshold=0.0, actions=("alert",), rate=0.5, max_burst=1)
    for second in range(1, 7):
        mon.check(_totals(100 * second, buffer=50 * second), second * S)
    # Burst of 1 at t=1, then one token per 2 s: t=3 and t=5.
    assert [a.time_ns // S for a in alerts] == [1, 3, 5]
    assert mon.summary.actions_taken == 3
    assert mon.summary.actions_suppressed == 3


def test_ignore_action_only_accounts() -> None:
    mon, alerts, logs = _monitor(threshold=0.0, actions=("ignore",))
    mon.check(_totals(10, buffer=10), S)
    assert alerts == [] and logs == []
    assert mon.summary.actions_taken == 1


def test_exit_action_raises_typed_error() -> None:
    mon, _, _ = _monitor(threshold=0.0, actions=("log", "exit"))
    with pytest.raises(SyscallDropExitError) as info:
        mon.check(_totals(10, buffer=9), S)
    assert info.value.exit_code != 0
    assert "9 system calls dropped" in str(info.value)


def test_simulate_drops_alerts_on_a_quiet_host() -> None:
    mon, alerts, logs = _monitor(threshold=0.1, actions=("alert",), simulate_drops=True)
    mon.check(_totals(0), S)
    assert len(alerts) == 1
    assert alerts[0].output_fields["n_drops"] == 1
    assert any("simulating" in line for line in logs)


def test_without_simulation_a_quiet_host_is_quiet() -> None:
    mon, alerts, _ = _monitor(threshold=0.0, actions=("alert",))
    for second in range(1, 4):
        mon.check(_totals(1000 * second), second * S)
    assert alerts == []
    assert mon.summary.checks == 3
    assert mon.summary.n_evts == 3000
