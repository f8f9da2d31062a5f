"""Events from every CPU in timestamp order: a bounded reorder window in front of the engine.

The drivers deliver per-CPU streams interleaved in arrival order, not in time order: the
probes stage a CPU's records and hand a batch over when it is full, 1 ms old, or (for a
CPU that fell quiet) when user space flushes it after 10 ms (runtime/driver/probe.py); the
kernel module's read(2) walks one CPU's ring after the other. Left as it arrives, a
child's execve can be processed before the clone that created it (the child then inherits
its parent's exe and command line in the state) and a rule sees an effect before its
cause. A capture records arrival order, so a replay needs the same treatment.

`ReorderWindow` holds what arrived, sorted by the record header's `ts`, and releases an
event once it can no longer be overtaken:

- every stream (CPU) has shown an event at or after its `ts` (each CPU's own stream
  arrives in order, so nothing earlier can follow from it). A live source's streams are
  all the host's CPUs from the start; a capture's are those seen so far, and only after
  its first window of event time (until then any CPU may still show up), or
- it is older than the newest `ts` seen by more than the window (a quiet CPU stops holding
  the others back), or
- live only, when a read found nothing new: it is older than now by more than the window.

The two time rules guess that a driver hands everything over within the window; a
consumer starved for longer (a loaded host: the flush of a quiet CPU and the ring drain
run late) broke that guess, and a CPU's staged batch arrived behind later events of the
others; the module's per-CPU rings, read one after the other into a bounded buffer,
left older records of later CPUs behind a full read. A source that can tell bounds both
time rules with `Batch.complete_before` (the probes: the oldest batch still staged when
the drain began; the module: when the last read that emptied every ring began); the
streams' rule needs no bound. That word also releases: what is older than the mark by
more than COMPLETE_MARGIN_NS cannot be overtaken any more, so it goes without waiting out
the window (under a syscall storm on one CPU the quiet other one held back the window's
20 ms of it, ~7,600 events at 380,000 events/s, that the probe's mark, at most a batch's
age behind, says are complete).

Event time rather than wall time drives the second rule, so a backlog (the engine behind
the ring by seconds) is still ordered. An event that arrives after a later-stamped one
has already gone is processed at once, never dropped, and counted (`out_of_order`, and
by how much at most); each event pushed out early because `max_held` events were held is
counted too (`forced_by_capacity`). The window is `rt-engine run --reorder-window-ms`
(default DEFAULT_WINDOW_MS; 0 holds nothing back, each read is still sorted).

Cost (bench/bench_replay.py): a replay walks each frame's record headers in Python
(~0.2-0.5 us a record here) and, for frames that arrive in order, passes them on as
slices; frames that need reordering are rebuilt record by record.

`OrderedSource` wraps any `EventSource` with a window: decoded batches (live drivers, a
replay with a custom decoder) are ordered as Events; a replay's undecoded frames are
ordered as raw records and handed on as rebuilt frames, so the engine's raw fast path
(Engine.process_raw) stays as it is. A replayed stats frame first releases what its live
run had processed when it was written (older than its wall time by the window); recorded
raw bytes pass through.
"""

from __future__ import annotations

import os
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Generic, TypeVar

from runtime.driver.schema import HDR_SIZE, boot_clock_ns
from runtime.engine.sources import Batch, EventSource, PerCpuStats
from runtime.events import Event

if TYPE_CHECKING:
    from runtime.driver import Decoder as DriverDecoder
    from runtime.engine.capture import CaptureFormatError, StatsFrame

# The probe hands over a quiet CPU's staged batch after at most 10 ms (+ the 1 ms batch
# age); the lateness measured on a live capture before this window existed was at most
# 10.8 ms (issue #11). 20 ms covers that with room for a scheduling delay of the reader.
DEFAULT_WINDOW_MS = 20.0
# Bounds memory (a decoded event with its params is ~0.5 KB): at 200k events/s a 20 ms
# window holds ~4k events; this is 16x that, ~32 MB at most.
DEFAULT_MAX_HELD = 65_536
NS_PER_MS = 1_000_000
# A source's completeness mark is taken before its drain: a record whose program took its
# timestamp just before that instant and is still writing it (microseconds, preemption
# off) arrives with the next drain. A millisecond covers that many times over.
COMPLETE_MARGIN_NS = 1_000_000

T = TypeVar("T")

# ts (u64 at 0), len (u32 at 24), cpu (u32 at 36) of the record header (events.yaml).
_TS_LEN_CPU = struct.Struct("=Q16xI8xI")
# A raw record held for release: (ts, the record's bytes padded to 8).
RawRecord = tuple[int, bytes]


@dataclass
class ReorderCounters:
    """Written by the event loop only; read by metrics and the exit summary."""

    window_ms: float = DEFAULT_WINDOW_MS
    out_of_order: int = 0  # processed after an event with a later ts
    out_of_order_max_ns: int = 0  # how far the latest of them was behind
    forced_by_capacity: int = 0  # released early because max_held events were held
    held_peak: int = 0  # most events held at once


class ReorderWindow(Generic[T]):
    """Items of several ts-ordered streams, released in ts order (see the module doc)."""

    def __init__(self, ts_of: Callable[[T], int], *, window_ns: int,
                 max_held: int = DEFAULT_MAX_HELD, streams: Iterable[int] = (),
                 counters: ReorderCounters | None = None) -> None:
        """`streams`: the streams known to exist before any has spoken (a live driver's
        CPUs); one that has not shown anything yet holds the rest back up to the
        window. Without them (a capture), for the first window of event time any
        stream may still show up, so only the window releases; after that a stream
        first seen counts from then on."""
        if window_ns < 0:
            raise ValueError(f"reorder window must not be negative, got {window_ns} ns")
        if max_held < 1:
            raise ValueError(f"reorder max_held must be at least 1, got {max_held}")
        self._ts = ts_of
        self.window_ns = window_ns
        self.max_held = max_held
        self.counters = counters or ReorderCounters(window_ms=window_ns / NS_PER_MS)
        self._held: list[T] = []  # sorted by ts, ties in arrival order
        self._stream_ts = dict.fromkeys(streams, -1)  # stream -> newest ts it has shown
        self._newest = -1
        self._released = -1  # ts of the last item released
        self._declared = bool(self._stream_ts)
        self._first = -1  # the first ts seen (the undeclared streams' warm-up)

    def __len__(self) -> int:
        return len(self._held)

    def push(self, items: list[T], stream_heads: dict[int, int]) -> None:
        """Add a batch; `stream_heads` maps each stream in it to the newest ts it showed."""
        if not items:
            return
        ts = self._ts
        new = sorted(items, key=ts)  # C-level, stable; a stream's run is already sorted
        held = self._held
        if held and ts(new[0]) < ts(held[-1]):
            # Only the held tail the batch overlaps is merged again, not the whole window.
            cut = bisect_right(held, ts(new[0]), key=ts)
            new = sorted(held[cut:] + new, key=ts)
            del held[cut:]
        held.extend(new)
        self.note_streams(stream_heads, ts(new[0]), ts(held[-1]))
        self.counters.held_peak = max(self.counters.held_peak, len(held))

    def note_streams(self, stream_heads: dict[int, int], oldest: int, newest: int) -> None:
        """Record what streams have shown, `oldest` to `newest` (push does this; so does
        a caller that passes an in-order run straight through, see `pass_in_order`)."""
        if self._first < 0:
            self._first = oldest
        self._newest = max(self._newest, newest)
        seen = self._stream_ts
        for stream, head in stream_heads.items():
            if head > seen.get(stream, -1):
                seen[stream] = head

    def horizon(self, now_ts: int | None = None, complete_before: int | None = None) -> int:
        """The newest ts nothing can overtake any more (see the module doc). The window's
        time rules never pass `complete_before`, a source's own word that older events
        have all been delivered, and that word releases up to COMPLETE_MARGIN_NS before
        it whatever the window says; the streams' rule is exact and needs no bound."""
        horizon = self._newest - self.window_ns
        if now_ts is not None:
            horizon = max(horizon, now_ts - self.window_ns)
        if complete_before is not None:
            horizon = max(min(horizon, complete_before - 1),
                          complete_before - COMPLETE_MARGIN_NS)
        warming_up = not self._declared and self._newest - self.window_ns < self._first
        if self._stream_ts and not warming_up:
            horizon = max(horizon, min(self._stream_ts.values()))
        return horizon

    def newest_held(self) -> int | None:
        return self._ts(self._held[-1]) if self._held else None

    def pass_in_order(self, run_ts: list[int]) -> None:
        """Account for a leading part of a sorted run, not before anything held, that the
        caller releases itself right after `drain()` (the fast path for frames that
        arrive in order: no per-item bookkeeping)."""
        if run_ts[0] < self._released:
            self._late(bisect_left(run_ts, self._released), run_ts[0])
        self._released = max(self._released, run_ts[-1])

    def release(self, now_ts: int | None = None, complete_before: int | None = None,
                ) -> list[T]:
        """What can no longer be overtaken, in ts order. `now_ts` (the clock the items are
        stamped with) also releases what is older than now by more than the window."""
        held = self._held
        if not held:
            return []
        horizon = self.horizon(now_ts, complete_before)
        ts = self._ts
        cut = bisect_right(held, horizon, key=ts)
        excess = len(held) - cut - self.max_held
        if excess > 0:
            cut += excess
            self.counters.forced_by_capacity += excess
        return self._take(cut)

    def drain(self) -> list[T]:
        """Everything held, in ts order (end of stream, stop)."""
        return self._take(len(self._held))

    def _late(self, count: int, oldest_ts: int) -> None:
        counters = self.counters
        counters.out_of_order += count
        counters.out_of_order_max_ns = max(counters.out_of_order_max_ns,
                                           self._released - oldest_ts)

    def _take(self, cut: int) -> list[T]:
        if cut <= 0:
            return []
        held = self._held
        out = held[:cut]
        del held[:cut]
        ts = self._ts
        if ts(out[0]) < self._released:
            self._late(bisect_left(out, self._released, key=ts), ts(out[0]))
        last = ts(out[-1])
        self._released = max(self._released, last)
        return out


def event_heads(events: list[Event]) -> dict[int, int]:
    """Each CPU's last ts in arrival order (its newest, as a CPU's stream is in order)."""
    return {ev.cpu: ev.ts for ev in events}


@dataclass(frozen=True)
class FramedRecords:
    """Where a frame's records start (`offsets[i]`; `offsets[-1]` is the end of the
    last one), their ts, and each CPU's last ts."""

    offsets: list[int]
    stamps: list[int]
    heads: dict[int, int]

    def records(self, frame: bytes, start: int = 0) -> list[RawRecord]:
        offs = self.offsets
        return [(ts, frame[offs[i]:offs[i + 1]])
                for i, ts in enumerate(self.stamps[start:], start)]


def frame_records(frame: bytes) -> FramedRecords | None:
    """The frame's record boundaries and stamps; None when the frame cannot be framed
    (the engine's decoder then reports it exactly as it would without a window)."""
    offsets: list[int] = []
    stamps: list[int] = []
    add_offset, add_stamp = offsets.append, stamps.append
    heads: dict[int, int] = {}
    unpack = _TS_LEN_CPU.unpack_from
    size = len(frame)
    off = 0
    while off + HDR_SIZE <= size:
        ts, length, cpu = unpack(frame, off)
        if length < HDR_SIZE:
            break
        if off + length > size:
            return None
        add_offset(off)
        add_stamp(ts)
        heads[cpu] = ts
        off = (off + length + 7) & -8  # records start 8-byte aligned
    if off < size and any(frame[off:]):
        return None  # trailing bytes that are not padding
    add_offset(min(off, size))
    return FramedRecords(offsets, stamps, heads)


class OrderedSource:
    """An EventSource whose batches come out in ts order (see the module doc)."""

    def __init__(self, source: EventSource, *, window_ms: float = DEFAULT_WINDOW_MS,
                 max_held: int = DEFAULT_MAX_HELD,
                 counters: ReorderCounters | None = None) -> None:
        self.inner = source
        self.counters = counters or ReorderCounters()
        self.counters.window_ms = window_ms
        window_ns = int(window_ms * NS_PER_MS)
        # A live driver's streams are its CPUs, all known at start; a capture's are not.
        cpus = range(os.cpu_count() or 1) if source.kind != "replay" else range(0)
        self._events: ReorderWindow[Event] = ReorderWindow(
            attrgetter("ts"), window_ns=window_ns, max_held=max_held, streams=cpus,
            counters=self.counters)
        self._raw: ReorderWindow[RawRecord] = ReorderWindow(
            itemgetter(0), window_ns=window_ns, max_held=max_held, counters=self.counters)
        self._window_s = window_ms / 1000
        self._ended = False

    # EventSource attributes the engine reads or sets, forwarded to the wrapped source
    # (an auto source learns its kind and clock only once it has loaded a driver).
    @property
    def kind(self) -> str:
        return self.inner.kind

    @kind.setter
    def kind(self, value: str) -> None:
        self.inner.kind = value

    @property
    def boot_offset_ns(self) -> int:
        return self.inner.boot_offset_ns

    @boot_offset_ns.setter
    def boot_offset_ns(self, value: int) -> None:
        self.inner.boot_offset_ns = value

    @property
    def keep_raw(self) -> bool:
        return self.inner.keep_raw

    @keep_raw.setter
    def keep_raw(self, value: bool) -> None:
        self.inner.keep_raw = value

    def start(self, event_types: frozenset[str] | None) -> None:
        self.inner.start(event_types)

    def stats(self) -> PerCpuStats:
        return self.inner.stats()

    def close(self) -> None:
        self.inner.close()

    def take_decoding(self) -> DriverDecoder | None:
        take = getattr(self.inner, "take_decoding", None)
        return take() if take is not None else None

    def frame_error(self, exc: ValueError) -> CaptureFormatError:
        error: CaptureFormatError = self.inner.frame_error(exc)  # type: ignore[attr-defined]
        return error

    def read(self, timeout_s: float) -> Batch | None:
        if self._ended:
            return None
        held = len(self._events) or len(self._raw)
        # Held events must not wait a whole idle read for release.
        batch = self.inner.read(min(timeout_s, self._window_s) if held else timeout_s)
        if batch is None:
            return self._end()
        if batch.undecoded and batch.raw:
            return self._raw_batch(batch)
        if batch.stats is not None and not batch.events:
            return self._stats_batch(batch.stats)
        window = self._events
        if batch.events:
            window.push(batch.events, event_heads(batch.events))
            out = window.release(complete_before=batch.complete_before)
        elif self.inner.kind != "replay" and len(window):
            # Nothing new arrived: whatever the driver had staged has come by now, unless
            # it says otherwise.
            out = window.release(boot_clock_ns() + self.inner.boot_offset_ns,
                                 batch.complete_before)
        else:
            out = []
        return Batch(events=out, raw=batch.raw, stats=batch.stats)

    def _raw_batch(self, batch: Batch) -> Batch:
        frame = batch.raw
        assert frame is not None
        window = self._raw
        framed = frame_records(frame)
        if framed is None:
            # Unframeable: everything before it goes first, then the frame as it is, for
            # the engine's decoder to report.
            front = b"".join(rec for _, rec in window.drain())
            return Batch(events=[], raw=front + frame, undecoded=True)
        stamps = framed.stamps
        if not stamps:
            return Batch(events=[], stats=batch.stats)
        newest_held = window.newest_held()
        if stamps == sorted(stamps) and (newest_held is None or stamps[0] >= newest_held):
            # In order, and after all that is held: what the horizon allows leaves as one
            # slice of the frame, after everything held (all older than it).
            window.note_streams(framed.heads, stamps[0], stamps[-1])
            cut = bisect_right(stamps, window.horizon())
            if cut:
                front = b"".join(rec for _, rec in window.drain())
                window.pass_in_order(stamps[:cut])
                window.push(framed.records(frame, cut), {})
                return Batch(events=[], raw=front + frame[:framed.offsets[cut]],
                             undecoded=True, stats=batch.stats)
        window.push(framed.records(frame), framed.heads)
        out = window.release()
        return Batch(events=[], raw=b"".join(rec for _, rec in out), undecoded=True,
                     stats=batch.stats)

    def _stats_batch(self, stats: StatsFrame) -> Batch:
        """A replayed stats frame: its live run wrote it at `ts_ns` (wall clock), when
        what had waited longer than the window had been processed. Releasing that first
        lets the drop check (and an exit action) see the events the live run had seen."""
        now = stats.ts_ns
        events = self._events.release(now)
        raw = b"".join(rec for _, rec in self._raw.release(now - self.inner.boot_offset_ns))
        return Batch(events=events, raw=raw or None, undecoded=bool(raw), stats=stats)

    def read_rest(self) -> Batch:
        """After a stop, for a live source that can tell: what it still has (see
        BpfSource.read_rest) joins what is held, for `drain_held` to hand on in ts order;
        only its raw records (for a recording) come back."""
        rest = getattr(self.inner, "read_rest", None)
        batch: Batch = rest() if rest is not None else Batch(events=[])
        if batch.events:
            self._events.push(batch.events, event_heads(batch.events))
        return Batch(events=[], raw=batch.raw)

    def drain_held(self) -> list[Batch]:
        """Everything still held, in ts order: for a run that stops before its source
        ends (a signal, --duration), so no event read is left unprocessed."""
        out = []
        events = self._events.drain()
        if events:
            out.append(Batch(events=events))
        raw = b"".join(rec for _, rec in self._raw.drain())
        if raw:
            out.append(Batch(events=[], raw=raw, undecoded=True))
        return out

    def _end(self) -> Batch | None:
        """What is still held, one kind per call, then None: the stream has ended."""
        events = self._events.drain()
        if events:
            return Batch(events=events)
        raw = b"".join(rec for _, rec in self._raw.drain())
        if raw:
            return Batch(events=[], raw=raw, undecoded=True)
        self._ended = True
        return None
