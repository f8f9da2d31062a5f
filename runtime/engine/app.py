"""The engine's main loop: source -> state.update -> per-type matcher -> outputs.

Hot path notes (measured, see bench/bench_replay.py): events arrive in decoded batches; each
event type has one generated matcher testing every rule that can fire on it (evt.type checks
folded away, thread/fd looked up once), built from a ruleset that already excludes rules
under `--min-priority`, so an event costs one state update, one dict lookup and one call.
Everything periodic (drop checks, metrics) runs between batches, never per event.
A replay hands the engine undecoded frames (`Engine.process_raw`): records of event types
no rule can match and whose state update needs at most a param or three (close, exit,
clone, socket, procexit: over half of a typical stream) never become Events. The compiled
batch decoder does that framing in one call per frame (0.47M -> 0.66M events/s).
"""

from __future__ import annotations

import gc
import struct
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import CodeType
from typing import IO, Any

from runtime.driver.schema import (
    GENERIC_ID,
    HDR_SIZE,
    SPECS,
    TYPE_HI,
    TYPE_LO,
    DecodeError,
    FrameDecodeFn,
    LiteSpec,
    fast_decoder_parts,
)
from runtime.driver.schema import Decoder as DriverDecoder
from runtime.engine.capture import CaptureWriter
from runtime.engine.drops import DropMonitor, total_stats
from runtime.engine.metrics import EngineCounters, Metrics
from runtime.engine.outputs import ALERT_HOSTNAME, Alert, OutputQueue, new_alert
from runtime.engine.rules import CompiledRule, Priority, Ruleset
from runtime.engine.rules.ruleset import DispatchFn
from runtime.engine.sources import EventSource
from runtime.engine.state import SystemState, lite_kind
from runtime.engine.state.containers import start_docker_metadata
from runtime.events import Event

DROP_CHECK_INTERVAL_S = 1.0
READ_TIMEOUT_S = 0.1


def _unbuilt(ev: Event, state: SystemState) -> tuple[CompiledRule, ...]:
    raise AssertionError("marker for a type whose matcher is not built yet; never called")


# A record of a type no rule matches and the state barely needs (see Engine.lite_specs
# and SystemState.update_lite): (kind, record offset, tid, pid, ppid, uid, gid, res, param).
LiteRecord = tuple[int, int, int, int, int, int, int, int, object]
# (frame, offset, frame size, append) -> next record's offset, or -1 for the careful path.
StreamDecodeFn = Callable[[bytes, int, int, Callable[[Any], None]], int]
# Generated source -> code: engines over the same rules (bench runs, tests) compile once.
_LITE_CODE: dict[str, CodeType] = {}


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
        # Generated now for every type a rule names (Falco's rules: ~36 types, ~60 ms),
        # not on the first event of each type: that would stall the event loop then.
        self._dispatch: dict[str, DispatchFn | None] = dict(ruleset.dispatchers())
        # Built on the first raw frame (see process_raw) for that decoder and its epoch
        # offset, which every frame decoder bakes in: the compiled batch decoder, else
        # the per-type-id Python decoders.
        self._lite_key: tuple[DriverDecoder, int] | None = None
        self._lite: FrameDecodeFn | list[StreamDecodeFn] | None = None

    def process(self, events: list[Event]) -> None:
        self._process(events)
        self.counters.events += len(events)

    def _process(self, events: Sequence[Event | LiteRecord], raw: bytes = b"",
                 decoder: DriverDecoder | None = None) -> None:
        update = self.state.update
        update_lite = self.state.update_lite
        state = self.state
        dispatch = self._dispatch
        get = dispatch.get
        ev: Event
        for item in events:
            if item.__class__ is tuple:
                if update_lite(item):
                    continue  # no rule matches this type: nothing more to do
                # A thread seen for the first time: the state builds it from the Event.
                assert decoder is not None
                ev = decoder.decode(raw, item[1])
            else:
                ev = item  # type: ignore[assignment]
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

    def process_raw(self, raw: bytes, decoder: DriverDecoder) -> None:
        """What `process(decoder.decode_stream(raw))` does, cheaper: records of event types
        no rule can match and whose state update is simple (close, exit, clone, socket,
        procexit) become a tuple of the few fields the state needs instead of an Event
        (see `lite_specs`).
        Decoding the whole frame first, then processing, is measurably faster than
        interleaving the two per record (bench_replay, CPython 3.11)."""
        key = (decoder, decoder.epoch_offset_ns)
        if self._lite_key is None or self._lite_key[0] is not decoder \
                or self._lite_key[1] != key[1]:
            lite = self.lite_specs(decoder)
            self._lite = (decoder.frame_decoder(lite) if decoder.compiled
                          else self._lite_decoders(decoder, lite))
            self._lite_key = key
        items: list[Event | LiteRecord] = []
        append = items.append
        size = len(raw)
        last = size - HDR_SIZE  # the last offset a whole header fits at
        careful = decoder.careful_into
        table = self._lite
        if not isinstance(table, list):
            assert table is not None
            off = table(raw, 0, size, items)
            while off <= last:  # stopped at a record the careful path must take
                off = table(raw, careful(raw, off, size, append), size, items)
        else:
            off = 0
            lo, hi = TYPE_LO, TYPE_HI
            while off <= last:
                try:
                    nxt = table[raw[off + lo] | raw[off + hi] << 8](raw, off, size, append)
                except (struct.error, IndexError):
                    nxt = -1
                off = careful(raw, off, size, append) if nxt < 0 else nxt
        if off < size and any(raw[off:]):
            raise DecodeError(f"{size - off} trailing bytes after the last record")
        self.state.lite_frame(raw, decoder.epoch_offset_ns)
        try:
            self._process(items, raw, decoder)
        finally:
            self.state.lite_frame(b"", 0)
        self.counters.events += len(items)

    def lite_specs(self, decoder: DriverDecoder) -> dict[int, LiteSpec]:
        """Event type id -> what its lite record carries, for the event types that need no
        Event: no rule matches them and the state reads a few params at most (close drops
        the fd, clone copies the thread, socket adds an fd, procexit schedules the thread's
        removal; see `lite_kind`). Another syscall decoded as the type (exit_group as exit)
        is another event type for the rules and the state, so only the type's own syscall
        numbers (or none) make a lite record."""
        specs: dict[int, LiteSpec] = {}
        for spec in SPECS.values():
            lite = lite_kind(spec.name, spec.names)
            # (matches_type, not dispatcher(): no matcher is generated for a type that
            # may never be seen)
            if spec.id == GENERIC_ID or lite is None or self.ruleset.matches_type(spec.name):
                continue
            kind, names = lite
            specs[spec.id] = (kind, tuple(spec.names.index(name) for name in names),
                              frozenset(nr for nr, name in decoder.names_by_nr.items()
                                        if name == spec.name))
        return specs

    def _lite_decoders(self, decoder: DriverDecoder, lite_specs: dict[int, LiteSpec]
                       ) -> list[StreamDecodeFn]:
        """The decoder's per-type batch decoders in Python, with generated lite ones for
        the types in `lite_specs` (the compiled decoder does the same in one call)."""
        table = decoder.stream_decoders()
        for type_id, (kind, indices, known_nrs) in lite_specs.items():
            spec = SPECS[type_id]
            values = [f"p{i}" for i in indices]
            param = values[0] if len(values) == 1 else f"({', '.join(values)},)" if values \
                else "None"
            decode_part, build_part = fast_decoder_parts(spec.name)
            ns = decoder.fast_namespace(spec.name)
            ns.update(KNOWN_NRS=known_nrs)
            source = "\n".join([
                "def decode_lite(buf, off, size, append):",
                decode_part.replace("return None", "return -1"),
                "    if nr >= 0 and nr not in KNOWN_NRS:",
                textwrap.indent(build_part, "    "),
                "        append(ev)",
                "    else:",
                f"        append(({kind}, off, tid, pid, ppid, uid, gid, ret, {param}))",
                "    return off + ((length + 7) & -8)",
            ]) + "\n"
            code = _LITE_CODE.get(source)
            if code is None:
                code = _LITE_CODE[source] = compile(source, f"<lite {spec.name}>", "exec")
            exec(code, ns)
            fn = ns["decode_lite"]
            assert callable(fn)
            table[spec.id] = fn
        return table

    def _alert(self, rule: CompiledRule, ev: Event) -> None:
        matches = self.counters.matches
        matches[rule.name] = matches.get(rule.name, 0) + 1
        line, fields = rule.format_output(ev, self.state)
        # new_alert: Alert(...) without NamedTuple's Python-level __new__ (see outputs).
        self._submit(new_alert((ev.ts, rule.name, rule.falco_priority, line, fields,
                                rule.tags, rule.source, ALERT_HOSTNAME)))


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
        # Live only: container names, images, mounts and k8s labels from Docker's API; a
        # replay must not ask this host's daemon about the recorded containers.
        state = self.engine.state
        metadata = start_docker_metadata(
            th.container for th in state.threads.values() if th.container is not None
        ) if self.live and state.container_metadata is None else None
        if metadata is not None:
            state.container_metadata = metadata
        opts = self.options
        start = time.monotonic()
        next_drop_check = start + DROP_CHECK_INTERVAL_S
        interval = opts.metrics_interval_s
        next_metrics = start + interval if interval else float("inf")
        deadline = start + opts.duration_s if opts.duration_s is not None else float("inf")
        source, engine, recorder = self.source, self.engine, self.recorder
        # A replay lets the engine decode its frames itself (see Engine.process_raw).
        take = getattr(source, "take_decoding", None)
        decoder: DriverDecoder | None = take() if take is not None else None
        while not self.stop.is_set():
            batch = source.read(READ_TIMEOUT_S)
            if batch is None:
                break
            if recorder is not None and batch.raw:
                recorder.write_events(batch.raw)
            if batch.events:
                engine.process(batch.events)
            elif batch.undecoded and batch.raw and decoder is not None:
                try:
                    engine.process_raw(batch.raw, decoder)
                except DecodeError as exc:
                    raise source.frame_error(exc) from None  # type: ignore[attr-defined]
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
        # Stopped early: what the driver captured before the stop and still holds (a
        # probe's staged batches), and what a reorder window holds (reorder.py), is
        # processed too.
        read_rest = getattr(source, "read_rest", None)
        if self.live and read_rest is not None:
            rest = read_rest()
            if recorder is not None and rest.raw:
                recorder.write_events(rest.raw)
            if rest.events:
                engine.process(rest.events)
        for held in getattr(source, "drain_held", list)():
            if held.events:
                engine.process(held.events)
            elif held.raw and decoder is not None:
                engine.process_raw(held.raw, decoder)
        if metadata is not None:
            metadata.close()
        if self.live:
            # Counters of the last partial second still belong in the summary.
            self._check_drops()
