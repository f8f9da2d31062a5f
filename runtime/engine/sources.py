"""Event sources behind one small interface: live drivers (core, ebpf, kmod) and replay.

Every source hands the engine `Batch`es: the decoded events plus the raw driver bytes they
came from (so `--record` stores exactly what the decoder saw). A source returns None from
`read` when its stream has ended (a replay at end of file); live sources never end.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from runtime.engine.capture import (
    CaptureFormatError,
    CaptureHeader,
    CaptureReader,
    ProcSnapshot,
    StatsFrame,
    materialise_proc,
)
from runtime.events import Event

if TYPE_CHECKING:
    from runtime.driver import Decoder as DriverDecoder
    from runtime.driver import ProbeSource
    from runtime.engine.state import SystemState

PerCpuStats = dict[int, dict[str, int]]
Decoder = Callable[[bytes], list[Event]]


@dataclass(slots=True)
class Batch:
    events: list[Event]
    raw: bytes | None = None  # driver records these events were decoded from
    stats: StatsFrame | None = None  # replay only: counters recorded at this point
    # Replay after `take_decoding()`: `raw` holds the records and `events` stays empty;
    # the engine decodes them itself (Engine.process_raw).
    undecoded: bool = False
    # Live drivers that stage records: every event stamped before this (epoch ns) has
    # been delivered by this read or earlier ones. None: the driver does not say.
    complete_before: int | None = None


class EventSource(Protocol):
    kind: str
    boot_offset_ns: int
    keep_raw: bool  # set before start() when recording: Batch.raw must then be filled

    def start(self, event_types: frozenset[str] | None) -> None:
        """Begin capture; `event_types` None means everything the driver can produce."""

    def read(self, timeout_s: float) -> Batch | None: ...

    def stats(self) -> PerCpuStats: ...

    def close(self) -> None: ...


def schema_identity() -> tuple[int, int]:
    """(API version, schema hash) of the decoder in this build."""
    from runtime.driver import _schema

    return int(_schema.API_VERSION), int(_schema.SCHEMA_HASH)


def earlier_schema_hashes() -> tuple[int, ...]:
    """Earlier schema revisions whose captures this build's decoder still replays."""
    from runtime.driver import _schema

    return tuple(int(h) for h in _schema.EARLIER_SCHEMA_HASHES)


def syscalls_for_event_types(event_types: frozenset[str]) -> frozenset[str]:
    """The names the driver filter takes for these event types (`exit` -> exit, exit_group).

    Non-syscall events (procexit, from the scheduler tracepoint) keep their name, as the
    probe accepts it; a rule's event type the schema does not decode (`evt.type = write`) is
    a syscall name the driver captures generically, so it passes through as well.
    """
    from runtime.driver import _schema

    by_event = {str(e["name"]): e.get("syscalls") for e in _schema.EVENTS}
    names: set[str] = set()
    for evt_type in event_types:
        syscalls = by_event.get(evt_type)
        names.update(syscalls or [evt_type])
    return frozenset(names)


def default_decoder(boot_offset_ns: int) -> Decoder:
    """The driver's batch decoder, with BOOTTIME stamps turned into wall-clock time."""
    from runtime.driver import Decoder as DriverDecoder

    return DriverDecoder(epoch_offset_ns=boot_offset_ns).decode_stream


def pad8(record: bytes) -> bytes:
    """Records sit at 8-byte aligned offsets in a stream (module ring, capture frames)."""
    return record + b"\0" * (-len(record) % 8)


class ReplaySource:
    """Reads a capture file; needs no privileges. Emits recorded stats frames in order."""

    kind = "replay"
    keep_raw = False

    def __init__(self, path: Path, *, decoder: Decoder | None = None,
                 compiled: bool | None = None) -> None:
        """`decoder` replaces the driver's decoder; `compiled` picks the driver decoder's
        batch path (None: the compiled one when built; see runtime.driver.schema)."""
        _, schema_hash = schema_identity()
        self._reader = CaptureReader(path, expect_schema_hash=schema_hash,
                                     earlier_schema_hashes=earlier_schema_hashes())
        self.header: CaptureHeader = self._reader.header
        self.boot_offset_ns = self.header.boot_offset_ns
        self._driver_decoder: DriverDecoder | None = None
        if decoder is None:
            from runtime.driver import Decoder as DriverDecoder

            self._driver_decoder = DriverDecoder(epoch_offset_ns=self.boot_offset_ns,
                                                 compiled=compiled)
            decoder = self._driver_decoder.decode_stream
        self._decode = decoder
        self._defer = False
        frames = self._reader.frames()
        first = next(frames, None)
        # The /proc snapshot, when recorded, leads the file; anything else is put back.
        self.proc_snapshot = first if isinstance(first, ProcSnapshot) else None
        lead = [] if first is None or self.proc_snapshot is not None else [first]
        self._frames: Iterator[bytes | StatsFrame | ProcSnapshot] = itertools.chain(lead, frames)
        self._last_stats: PerCpuStats = {}

    def seed_state(self, state: SystemState) -> int:
        """Seed the process table from the recorded /proc snapshot (0 if none recorded)."""
        if self.proc_snapshot is None:
            return 0
        with tempfile.TemporaryDirectory(prefix="rt-engine-proc-") as tmp:
            return state.seed_from_proc(str(materialise_proc(self.proc_snapshot, Path(tmp))))

    def start(self, event_types: frozenset[str] | None) -> None:
        # A live driver filters in the kernel; a replay holds what was captured, and the
        # rules index already skips event types no rule wants.
        pass

    def take_decoding(self) -> DriverDecoder | None:
        """Hand decoding to the caller: from now on `read` returns undecoded batches, to be
        decoded with the returned decoder (None, and nothing changes, for a custom one)."""
        if self._driver_decoder is not None:
            self._defer = True
        return self._driver_decoder

    def frame_error(self, exc: ValueError) -> CaptureFormatError:
        """The error for a damaged frame the caller failed to decode."""
        return CaptureFormatError(f"capture {self._reader.path}: {exc}")

    def read(self, timeout_s: float) -> Batch | None:
        frame = next(self._frames, None)
        while isinstance(frame, ProcSnapshot):  # only meaningful at the start
            frame = next(self._frames, None)
        if frame is None:
            return None
        if isinstance(frame, StatsFrame):
            self._last_stats = frame.per_cpu
            return Batch(events=[], stats=frame)
        if self._defer:
            return Batch(events=[], raw=frame, undecoded=True)
        try:
            events = self._decode(frame)
        except ValueError as exc:  # the driver's DecodeError: a damaged frame
            raise self.frame_error(exc) from None
        return Batch(events=events, raw=frame)

    def stats(self) -> PerCpuStats:
        return self._last_stats

    def close(self) -> None:
        self._reader.close()


class BpfSource:
    """The CO-RE probe or a per-kernel probe: both load through the driver's ProbeSource."""

    def __init__(self, kind: str, *, probe: Path | None, buffer_bytes: int) -> None:
        from drivercore.errors import UsageError
        from runtime.driver.schema import boot_to_epoch_ns

        if probe is None:
            build = "make -C driver core OUT=DIR" if kind == "core" else (
                "make -C driver probe KERNELDIR=HEADERS OUT=DIR")
            raise UsageError(f"--driver {kind} needs --probe PATH (build it with `{build}`)")
        if buffer_bytes & (buffer_bytes - 1):
            raise UsageError(
                f"--buffer-bytes {buffer_bytes}: the BPF ring buffer size must be a power"
                f" of two (e.g. {1 << (buffer_bytes.bit_length() - 1)})"
            )
        self.kind = kind
        self.keep_raw = False
        self._probe_path = probe
        self._buffer_bytes = buffer_bytes
        self.boot_offset_ns = boot_to_epoch_ns()
        self._src: ProbeSource | None = None

    def start(self, event_types: frozenset[str] | None) -> None:
        from runtime.driver import ProbeSource

        src = ProbeSource(
            self._probe_path, filter_syscalls(event_types), self._buffer_bytes,
            ignore_self=True,  # our own writes and /proc reads must not feed back
            epoch_offset_ns=self.boot_offset_ns,
        )
        src.start()
        self._src = src

    def read(self, timeout_s: float) -> Batch | None:
        src = self._src
        assert src is not None, "start() first"
        timeout_ms = int(timeout_s * 1000)
        if not self.keep_raw:
            events = src.poll(timeout_ms)
            return Batch(events=events, complete_before=self._complete_before(src))
        records = src.poll_raw(timeout_ms)
        if not records:
            return Batch(events=[], complete_before=self._complete_before(src))
        # One framed buffer serves both the capture file and the batch decoder.
        raw = b"".join(pad8(r) for r in records)
        return Batch(events=src.decoder.decode_stream(raw), raw=raw,
                     complete_before=self._complete_before(src))

    def read_rest(self) -> Batch:
        """After a stop: what the probe has captured and not handed over yet, the batches
        still staged on each CPU included (pushed out now rather than after their
        flush_after_ms), without waiting for more."""
        src = self._src
        if src is None:
            return Batch(events=[])
        src.flush()
        return self.read(0) or Batch(events=[])

    def _complete_before(self, src: ProbeSource) -> int | None:
        mark = src.complete_before_ns
        return None if mark is None else mark + self.boot_offset_ns

    def stats(self) -> PerCpuStats:
        if self._src is None:
            return {}
        return {
            s.cpu: {name: getattr(s, name) for name in _stats_fields()} for s in self._src.stats()
        }

    def close(self) -> None:
        if self._src is not None:
            self._src.close()
            self._src = None


def _stats_fields() -> list[str]:
    from runtime.driver import _schema

    return list(_schema.STATS_FIELDS)


def all_syscalls() -> frozenset[str]:
    """Every syscall the driver's filter can index (used when some rule has no evt.type)."""
    from runtime.driver import _schema
    from runtime.driver.schema import syscall_table

    table = syscall_table()
    names = {name for name, nr in table.items() if nr < _schema.MAX_SYSCALLS}
    return frozenset(names | {"procexit"})


def filter_syscalls(event_types: frozenset[str] | None) -> frozenset[str]:
    return all_syscalls() if event_types is None else syscalls_for_event_types(event_types)


class KmodSource:
    """The kernel module's /dev/rtcap: read(2) hands us whole records from every CPU."""

    kind = "kmod"

    def __init__(self, *, module: Path | None = None) -> None:
        from runtime.driver import kmod
        from runtime.driver.schema import boot_to_epoch_ns

        if module is not None and not kmod.DEVICE.exists():
            _insmod(module)
        self.keep_raw = False
        self.boot_offset_ns = boot_to_epoch_ns()
        self._dev = kmod.KmodDevice(epoch_offset_ns=self.boot_offset_ns)
        try:
            self._dev.handshake()
        except Exception:
            self._dev.close()
            raise
        self._decode = default_decoder(self.boot_offset_ns)

    def start(self, event_types: frozenset[str] | None) -> None:
        self._dev.set_filter(sorted(filter_syscalls(event_types)))
        # Our own reads, writes and /proc scans would otherwise feed back into the stream.
        self._dev.ignore_tgid(os.getpid())
        self._dev.start()

    def read(self, timeout_s: float) -> Batch | None:
        raw = self._dev.read_raw(timeout_s)
        mark = self._dev.complete_before_ns
        return Batch(events=self._decode(raw) if raw else [], raw=raw or None,
                     complete_before=None if mark is None else mark + self.boot_offset_ns)

    def stats(self) -> PerCpuStats:
        return self._dev.stats()

    def close(self) -> None:
        try:
            self._dev.stop()
        finally:
            self._dev.close()


def _insmod(module: Path) -> None:
    import subprocess

    from drivercore.errors import UsageError

    done = subprocess.run(["insmod", str(module)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise UsageError(f"insmod {module} failed: {done.stderr.strip() or done.returncode}")


def open_live_source(kind: str, *, probe: Path | None, buffer_bytes: int) -> EventSource:
    """The core/ebpf/kmod source; the driver modules are imported only when used."""
    if kind == "kmod":
        return KmodSource(module=probe)
    return BpfSource(kind, probe=probe, buffer_bytes=buffer_bytes)
