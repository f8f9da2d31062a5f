"""The engine's main loop: source -> state.update -> per-type matcher -> outputs.

Hot path notes (measured, see bench/bench_replay.py): events arrive in decoded batches; each
event type has one generated matcher testing every rule that can fire on it (evt.type checks
folded away, thread/fd looked up once), built from a ruleset that already excludes rules
under `--min-priority`, so an event costs one state update, one dict lookup and one call.
Everything periodic (drop checks, metrics) runs between batches, never per event.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from runtime.engine.capture import CaptureWriter
from runtime.engine.drops import DropMonitor, total_stats
from runtime.engine.metrics import EngineCounters, Metrics
from runtime.engine.outputs import Alert, OutputQueue
from runtime.engine.rules import CompiledRule, Priority, Ruleset
from runtime.engine.rules.ruleset import DispatchFn
from runtime.engine.sources import EventSource
from runtime.engine.state import SystemState
from runtime.events import Event

DROP_CHECK_INTERVAL_S = 1.0
READ_TIMEOUT_S = 0.1


def _unbuilt(ev: Event, state: SystemState) -> tuple[CompiledRule, ...]:
    raise AssertionError("marker for a type whose matcher is not built yet; never called")


class Engine:
    """Evaluates rules on event batches and hands matches to the output queue."""

    def __init__(
        self,
        ruleset: Ruleset,
        state: SystemState,
        submit: Callable[[Alert], object],
        *,
        min_priority: Priority = Priority.DEBUG,
        counters: EngineCounters | None = None,
    ) -> None:
        # Rules under the minimum priority could never produce an alert: drop them before
        # the per-type matchers are generated, so they cost nothing per event.
        if any(r.priority > min_priority for r in ruleset.rules):
            ruleset = ruleset.filtered(min_priority)
        self.ruleset = ruleset
        self.state = state
        self._submit = submit
        self.min_priority = min_priority
        self.counters = counters or EngineCounters()
        # evt.type -> generated matcher, None for types no rule can match (no call at all).
        self._dispatch: dict[str, DispatchFn | None] = {}

    def process(self, events: list[Event]) -> None:
        update = self.state.update
        state = self.state
        dispatch = self._dispatch
        get = dispatch.get
        for ev in events:
            update(ev)
            fn = get(ev.type, _unbuilt)
            if fn is None:
                continue
            if fn is _unbuilt:
                fn = dispatch[ev.type] = self.ruleset.dispatcher(ev.type)
                if fn is None:
                    continue
            hits = fn(ev, state)
            if hits:
                for rule in hits:
                    self._alert(rule, ev)
        self.counters.events += len(events)

    def _alert(self, rule: CompiledRule, ev: Event) -> None:
        matches = self.counters.matches
        matches[rule.name] = matches.get(rule.name, 0) + 1
        line, fields = rule.format_output(ev, self.state)
        self._submit(
            Alert(
                time_ns=ev.ts,
                rule=rule.name,
                priority=rule.priority.falco_name,
                output=line,
                output_fields=fields,
                tags=rule.tags,
                source=rule.source,
            )
        )


def tune_gc() -> None:
    """Make the cyclic GC rare: events and their params never form cycles, yet at default
    thresholds a collection runs every 700 allocations and, as the state tables grow,
    full collections walk them all. Freezing what exists at start (compiled rules, the
    seeded process table) and raising the thresholds bought ~8% in bench_replay."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


@dataclass
class RunOptions:
    duration_s: float | None = None
    metrics_interval_s: float | None = None
    metrics_stream: IO[str] | None = None


class Runner:
    """Drives one source to its end (replay) or until stopped (live)."""

    def __init__(
        self,
        source: EventSource,
        engine: Engine,
        outputs: OutputQueue,
        drops: DropMonitor,
        *,
        metrics: Metrics | None = None,
        recorder: CaptureWriter | None = None,
        options: RunOptions | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.source = source
        self.engine = engine
        self.outputs = outputs
        self.drops = drops
        self.metrics = metrics
        self.recorder = recorder
        self.options = options or RunOptions()
        self.stop = stop or threading.Event()
        self.live = source.kind != "replay"

    def _check_drops(self) -> None:
        per_cpu = self.source.stats()
        now_ns = time.time_ns()
        if self.recorder is not None:
            self.recorder.write_stats(now_ns, per_cpu)
        self.drops.check(total_stats(per_cpu), now_ns)

    def run(self) -> None:
        """Returns on end of stream, stop, or duration; SyscallDropExitError propagates."""
        tune_gc()
        opts = self.options
        start = time.monotonic()
        next_drop_check = start + DROP_CHECK_INTERVAL_S
        interval = opts.metrics_interval_s
        next_metrics = start + interval if interval else float("inf")
        deadline = start + opts.duration_s if opts.duration_s is not None else float("inf")
        source, engine, recorder = self.source, self.engine, self.recorder
        while not self.stop.is_set():
            batch = source.read(READ_TIMEOUT_S)
            if batch is None:
                break
            if recorder is not None and batch.raw:
                recorder.write_events(batch.raw)
            if batch.events:
                engine.process(batch.events)
            if batch.stats is not None:
                # A replayed capture carries the counters its live run saw each second.
                self.drops.check(total_stats(batch.stats.per_cpu), batch.stats.ts_ns)
            now = time.monotonic()
            if self.live and now >= next_drop_check:
                self._check_drops()
                next_drop_check = now + DROP_CHECK_INTERVAL_S
            if now >= next_metrics and self.metrics is not None:
                self.metrics.write_snapshot(opts.metrics_stream or sys.stderr)
                next_metrics = now + (interval or 0)
            if now >= deadline:
                break
        if self.live:
            # Counters of the last partial second still belong in the summary.
            self._check_drops()
