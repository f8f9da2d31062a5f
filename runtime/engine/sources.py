"""Event sources behind one small interface: live drivers (core, ebpf, kmod) and replay.

Every source hands the engine `Batch`es: the decoded events plus the raw driver bytes they
came from (so `--record` stores exactly what the decoder saw). A source returns None from
`read` when its stream has ended (a replay at end of file); live sources never end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runtime.engine.capture import CaptureHeader, CaptureReader, StatsFrame
from runtime.events import Event

PerCpuStats = dict[int, dict[str, int]]
Decoder = Callable[[bytes], list[Event]]


@dataclass(slots=True)
class Batch:
    events: list[Event]
    raw: bytes | None = None  # driver records these events were decoded from
    stats: StatsFrame | None = None  # replay only: counters recorded at this point


class EventSource(Protocol):
    kind: str
    boot_offset_ns: int

    def start(self, event_types: frozenset[str] | None) -> None:
        """Begin capture; `event_types` None means everything the driver can produce."""

    def read(self, timeout_s: float) -> Batch | None: ...

    def stats(self) -> PerCpuStats: ...

    def close(self) -> None: ...


def schema_identity() -> tuple[int, int]:
    """(API version, schema hash) of the decoder in this build."""
    from runtime.driver import _schema

    return int(_schema.API_VERSION), int(_schema.SCHEMA_HASH)


def syscalls_for_event_types(event_types: frozenset[str]) -> frozenset[str]:
    """The kernel syscall names producing these event types (`exit` -> exit, exit_group).

    Event types without syscalls (procexit comes from the scheduler tracepoint) and names
    the schema does not know (a rule on a syscall the driver only reports generically) are
    passed through unchanged, as the driver's filter takes raw syscall names too.
    """
    from runtime.driver import _schema

    by_event = {e["name"]: e.get("syscalls") for e in _schema.EVENTS}
    names: set[str] = set()
    for evt_type in event_types:
        syscalls = by_event.get(evt_type)
        if syscalls:
            names.update(syscalls)
        elif syscalls is None or evt_type not in by_event:
            names.add(evt_type)
    return frozenset(names)


def default_decoder(boot_offset_ns: int) -> Decoder:
    """The driver's batch decoder, with BOOTTIME stamps turned into wall-clock time."""
    from runtime.driver import decode_events

    def decode(buf: bytes) -> list[Event]:
        return decode_events(buf, boot_offset_ns=boot_offset_ns)

    return decode


class ReplaySource:
    """Reads a capture file; needs no privileges. Emits recorded stats frames in order."""

    kind = "replay"

    def __init__(self, path: Path, *, decoder: Decoder | None = None) -> None:
        _, schema_hash = schema_identity()
        self._reader = CaptureReader(path, expect_schema_hash=schema_hash)
        self.header: CaptureHeader = self._reader.header
        self.boot_offset_ns = self.header.boot_offset_ns
        self._decode = decoder or default_decoder(self.boot_offset_ns)
        self._frames: Iterator[bytes | StatsFrame] = self._reader.frames()
        self._last_stats: PerCpuStats = {}
        self._filter: frozenset[str] | None = None

    def start(self, event_types: frozenset[str] | None) -> None:
        # A live driver filters in the kernel; a replay has everything, and filtering here
        # would only hide events the state table needs, so replay keeps them all.
        self._filter = event_types

    def read(self, timeout_s: float) -> Batch | None:
        frame = next(self._frames, None)
        if frame is None:
            return None
        if isinstance(frame, StatsFrame):
            self._last_stats = frame.per_cpu
            return Batch(events=[], stats=frame)
        return Batch(events=self._decode(frame), raw=frame)

    def stats(self) -> PerCpuStats:
        return self._last_stats

    def close(self) -> None:
        self._reader.close()


def all_syscalls() -> frozenset[str]:
    """Every syscall the driver's filter can index (used when some rule has no evt.type)."""
    import platform

    from runtime.driver import _schema, _syscalls

    arch = {"aarch64": "arm64"}.get(platform.machine(), platform.machine())
    table = _syscalls.SYSCALLS.get(arch) or _syscalls.SYSCALLS["x86_64"]
    return frozenset(name for name, nr in table.items() if nr < _schema.MAX_SYSCALLS)


def filter_syscalls(event_types: frozenset[str] | None) -> frozenset[str]:
    return all_syscalls() if event_types is None else syscalls_for_event_types(event_types)


class KmodSource:
    """The kernel module's /dev/rtcap: read(2) hands us whole records from every CPU."""

    kind = "kmod"

    def __init__(self, *, module: Path | None = None) -> None:
        from runtime.driver import kmod

        if module is not None and not kmod.DEVICE.exists():
            _insmod(module)
        self._dev = kmod.KmodDevice()
        try:
            self._dev.handshake()
        except Exception:
            self._dev.close()
            raise
        self.boot_offset_ns = kmod.boot_offset_ns()
        self._decode = default_decoder(self.boot_offset_ns)

    def start(self, event_types: frozenset[str] | None) -> None:
        self._dev.set_filter(sorted(filter_syscalls(event_types)))
        # Our own reads, writes and /proc scans would otherwise feed back into the stream.
        self._dev.ignore_tgid(os.getpid())
        self._dev.start()

    def read(self, timeout_s: float) -> Batch | None:
        raw = self._dev.read_raw(timeout_s)
        return Batch(events=self._decode(raw) if raw else [], raw=raw or None)

    def stats(self) -> PerCpuStats:
        return self._dev.stats()

    def close(self) -> None:
        try:
            self._dev.stop()
        finally:
            self._dev.close()


def _insmod(module: Path) -> None:
    import subprocess

    from driverkit.errors import UsageError

    done = subprocess.run(["insmod", str(module)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise UsageError(f"insmod {module} failed: {done.stderr.strip() or done.returncode}")


def open_live_source(kind: str, *, probe: Path | None, buffer_bytes: int) -> EventSource:
    """The core/ebpf/kmod source; imported lazily so replay needs no libbpf."""
    if kind == "kmod":
        return KmodSource(module=probe)
    return BpfSource(kind, probe=probe, buffer_bytes=buffer_bytes)
