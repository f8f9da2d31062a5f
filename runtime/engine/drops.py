"""Dropped-syscall accounting, after Falco's `syscall_event_drops`.

Once a second the engine reads the driver's cumulative per-CPU counters, sums them, and
looks at the delta since the previous check. When some events of that second were lost and
their share reaches `threshold`, the configured actions run, but no more often than a token
bucket allows (`rate` actions per second, `max_burst` at once) so a sustained storm yields a
steady trickle of alerts rather than one per second forever. `simulate_drops` pretends one
event was lost every second, to prove the alert path end to end on a quiet host.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from drivercore.errors import ExitCode, ToolError
from runtime.engine.config import DropConfig
from runtime.engine.outputs import Alert

DROP_RULE_NAME = "rt-engine internal: syscall event drop"
DROP_PRIORITY = "Critical"
NS_PER_S = 1_000_000_000

# The driver's drop categories, summed into n_drops. Anything else the driver reports
# (filtered, ignored_self, partial/truncated deliveries) is carried along but is not a drop.
DROP_CATEGORIES = ("n_drops_buffer", "n_drops_pf", "n_drops_bug")


class SyscallDropExitError(ToolError):
    """`syscall_event_drops.actions` contains `exit` and the threshold was reached."""

    exit_code = ExitCode.SYSCALL_DROP_EXIT


class TokenBucket:
    """`rate` tokens per second up to `max_tokens`; starts full, like Falco's."""

    def __init__(self, rate: float, max_tokens: float, now_ns: int) -> None:
        self.rate = rate
        self.max_tokens = max_tokens
        self.tokens = max_tokens
        self._last_ns = now_ns

    def claim(self, now_ns: int, count: float = 1.0) -> bool:
        elapsed = max(0, now_ns - self._last_ns) / NS_PER_S
        self._last_ns = max(self._last_ns, now_ns)
        self.tokens = min(self.max_tokens, self.tokens + elapsed * self.rate)
        if self.tokens < count:
            return False
        self.tokens -= count
        return True


def total_stats(per_cpu: Mapping[int, Mapping[str, int]]) -> dict[str, int]:
    """Sum per-CPU counters and derive n_drops, the one number the threshold applies to."""
    totals: dict[str, int] = {}
    for counters in per_cpu.values():
        for name, value in counters.items():
            totals[name] = totals.get(name, 0) + int(value)
    totals["n_drops"] = sum(totals.get(name, 0) for name in DROP_CATEGORIES)
    totals.setdefault("n_evts", 0)
    return totals


@dataclass
class DropSummary:
    checks: int = 0
    seconds_with_drops: int = 0
    actions_taken: int = 0
    actions_suppressed: int = 0  # threshold reached but the token bucket was empty
    n_evts: int = 0
    n_drops: int = 0
    by_category: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        pct = 100.0 * self.n_drops / self.n_evts if self.n_evts else 0.0
        cats = ", ".join(f"{k}={v}" for k, v in sorted(self.by_category.items()))
        return (
            "syscall event drop monitoring:\n"
            f"   - events: {self.n_evts}, dropped: {self.n_drops} ({pct:.4f}%)"
            + (f" [{cats}]" if cats else "")
            + "\n"
            f"   - seconds with drops: {self.seconds_with_drops}\n"
            f"   - actions taken: {self.actions_taken}"
            f" (suppressed by rate limit: {self.actions_suppressed})"
        )


class DropMonitor:
    """Feed it the driver's cumulative counters once a second via `check`."""

    def __init__(
        self,
        config: DropConfig,
        *,
        emit_alert: Callable[[Alert], object],
        log: Callable[[str], None] | None = None,
        now_ns: int = 0,
        extra_fields: Mapping[str, object] | None = None,
    ) -> None:
        self.config = config
        self._emit_alert = emit_alert
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._bucket = TokenBucket(config.rate, config.max_burst, now_ns)
        self._last: dict[str, int] | None = None
        self._extra = dict(extra_fields or {})
        self.summary = DropSummary()

    def check(self, totals: Mapping[str, int], now_ns: int) -> None:
        """Compare with the previous check; may log, alert or raise SyscallDropExitError."""
        current = dict(totals)
        current.setdefault("n_drops", sum(current.get(c, 0) for c in DROP_CATEGORIES))
        previous = self._last or dict.fromkeys(current, 0)
        self._last = current
        delta = {name: value - previous.get(name, 0) for name, value in current.items()}
        self._account(delta)
        if self.config.simulate_drops:
            self._log("rt-engine: simulating a syscall event drop")
            delta["n_drops"] = max(1, delta["n_drops"])
        if delta["n_drops"] <= 0:
            return
        self.summary.seconds_with_drops += 1
        # n_evts counts every attempted event including the lost ones, so this is the
        # share of the second's events that never reached us; with simulated drops on an
        # idle host n_evts may be 0, which counts as 100%.
        ratio = delta["n_drops"] / delta["n_evts"] if delta["n_evts"] > 0 else 1.0
        if ratio < self.config.threshold:
            return
        if not self._bucket.claim(now_ns):
            self.summary.actions_suppressed += 1
            return
        self.summary.actions_taken += 1
        self._perform(delta, ratio, now_ns)

    def _account(self, delta: Mapping[str, int]) -> None:
        s = self.summary
        s.checks += 1
        s.n_evts += max(0, delta.get("n_evts", 0))
        s.n_drops += max(0, delta.get("n_drops", 0))
        for name in DROP_CATEGORIES:
            if delta.get(name, 0) > 0:
                s.by_category[name] = s.by_category.get(name, 0) + delta[name]

    def _perform(self, delta: Mapping[str, int], ratio: float, now_ns: int) -> None:
        message = (
            f"{DROP_RULE_NAME}. {delta['n_drops']} system calls dropped in last second"
            f" ({100 * ratio:.2f}% of {delta['n_evts']})."
        )
        for action in self.config.actions:
            if action == "log":
                self._log(f"rt-engine: {message}")
            elif action == "alert":
                fields: dict[str, object] = {
                    name: value for name, value in sorted(delta.items()) if name.startswith("n_")
                }
                fields["drop_pct"] = round(100 * ratio, 4)
                fields.update(self._extra)
                self._emit_alert(
                    Alert(
                        time_ns=now_ns,
                        rule=DROP_RULE_NAME,
                        priority=DROP_PRIORITY,
                        output=message,
                        output_fields=fields,
                        tags=("rt-engine", "internal", "drops"),
                    )
                )
            elif action == "exit":
                raise SyscallDropExitError(f"{message} Exiting (syscall_event_drops.actions).")
            # "ignore": counted in the summary, nothing else
