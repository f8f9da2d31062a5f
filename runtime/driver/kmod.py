"""Userspace side of the rtcap kernel module: /dev/rtcap.

Open the device, check the module speaks our schema (the handshake ioctl returns its
schema hash; the module refuses to start capture until a client has read it), set the
in-kernel filter (syscall number -> event type), start/stop, read per-CPU stats, and read
records with read(2), which the module fills with whole 8-byte aligned records from every
CPU's ring. Records decode with the shared decoder into `runtime.events.Event`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import time
from collections.abc import Iterable
from pathlib import Path

from runtime.driver import _schema
from runtime.driver.errors import DriverError, SchemaMismatchError
from runtime.driver.probe import resolve_filter
from runtime.driver.schema import Decoder, boot_clock_ns
from runtime.events import Event

DEVICE = Path("/dev/rtcap")
# read(2) must offer room for the largest record, else the module returns EINVAL.
READ_SIZE = 1 << 20
_STATS_QUERY = struct.Struct("=II" + "Q" * len(_schema.STATS_FIELDS))
_U64 = struct.Struct("=Q")
_U32 = struct.Struct("=I")


class KmodError(DriverError):
    """The rtcap device is missing, busy, or refused a request."""


class KmodSchemaMismatchError(KmodError, SchemaMismatchError):
    """The loaded module was built from another schema revision, or was not asked first."""

    exit_code = SchemaMismatchError.exit_code


def build_filter(syscalls: Iterable[str]) -> bytes:
    """The SET_FILTER argument: one event-type byte per native (x86-64) syscall number.

    The same resolution as the eBPF probes (decoded event, else generic; unknown names
    refused). `procexit` is accepted but the module emits it whenever capturing: the
    schema has no switch for it yet.
    """
    table, _needs_enter, _procexit = resolve_filter(syscalls, "x86_64")
    return table


class KmodDevice:
    """One open of /dev/rtcap (the module allows a single consumer at a time)."""

    def __init__(self, path: Path = DEVICE, *, epoch_offset_ns: int | None = None,
                 read_size: int = READ_SIZE) -> None:
        least = (_schema.MAX_RECORD_SIZE + 7) & ~7
        if read_size < least:
            raise KmodError(f"read_size={read_size}: a read must have room for the largest"
                            f" record ({least} bytes)")
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise KmodError(f"{path} does not exist: load the rtcap module first") from exc
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise KmodError(f"{path} is busy: another consumer has it open") from exc
            raise KmodError(f"cannot open {path}: {exc.strerror}") from exc
        self.path = path
        self.schema_hash = 0
        self._buf = bytearray(read_size)
        # Boot-clock time before which every record has been read (bar one a CPU is
        # writing at this instant): when a read began that emptied every CPU's ring. A
        # read its buffer cut short leaves later CPUs' rings, older records included,
        # for the next one, and moves nothing.
        self.complete_before_ns: int | None = None
        # None: this host's offset now (see schema.boot_to_epoch_ns).
        self._decoder = Decoder("x86_64", epoch_offset_ns)

    # ------------------------------------------------------------------ control
    def _ioctl(self, name: str, arg: bytes | bytearray | int = 0) -> bytes:
        request = _schema.IOCTLS[name]
        try:
            if isinstance(arg, int):
                fcntl.ioctl(self._fd, request, arg)
                return b""
            buf = bytearray(arg)
            fcntl.ioctl(self._fd, request, buf, True)
            return bytes(buf)
        except OSError as exc:
            if exc.errno == errno.EPROTO:
                raise KmodSchemaMismatchError(
                    f"{self.path}: {name} refused before the schema handshake"
                ) from exc
            raise KmodError(f"{self.path}: ioctl {name} failed: {exc.strerror}") from exc

    def handshake(self) -> None:
        """Read the module's schema hash; refuse a module built from another schema."""
        (self.schema_hash,) = _U64.unpack(self._ioctl("GET_API_VERSION", bytes(_U64.size)))
        if self.schema_hash != _schema.SCHEMA_HASH:
            raise KmodSchemaMismatchError(
                f"rtcap module schema {self.schema_hash:#x} != decoder schema "
                f"{_schema.SCHEMA_HASH:#x}: load the module built from this revision"
            )

    def set_filter(self, syscalls: Iterable[str]) -> None:
        self._ioctl("SET_FILTER", build_filter(syscalls))

    def set_filter_table(self, table: bytes) -> None:
        if len(table) != _schema.MAX_SYSCALLS:
            raise KmodError(f"filter table must be {_schema.MAX_SYSCALLS} bytes")
        self._ioctl("SET_FILTER", table)

    def ignore_tgid(self, tgid: int) -> None:
        """Skip events of this process (the consumer's own reads); 0 clears."""
        self._ioctl("SET_IGNORE_TGID", _U32.pack(tgid))

    def start(self) -> None:
        self._ioctl("START")

    def stop(self) -> None:
        self._ioctl("STOP")

    def ncpus(self) -> int:
        (n,) = _U32.unpack(self._ioctl("GET_NCPUS", bytes(_U32.size)))
        return int(n)

    def stats(self) -> dict[int, dict[str, int]]:
        """Per-CPU counters; CPUs the kernel cannot have (not possible) are skipped."""
        per_cpu: dict[int, dict[str, int]] = {}
        for cpu in range(self.ncpus()):
            query = _STATS_QUERY.pack(cpu, 0, *([0] * len(_schema.STATS_FIELDS)))
            try:
                out = self._ioctl("GET_STATS", query)
            except KmodError:
                continue
            values = _STATS_QUERY.unpack(out)[2:]
            per_cpu[cpu] = dict(zip(_schema.STATS_FIELDS, values, strict=True))
        return per_cpu

    # --------------------------------------------------------------------- data
    def read_raw(self, timeout_s: float) -> bytes:
        """Whatever records are buffered now, waiting up to `timeout_s` for some."""
        deadline = time.monotonic() + timeout_s
        while True:
            started = boot_clock_ns()
            try:
                n = os.readv(self._fd, [self._buf])
            except BlockingIOError:
                self.complete_before_ns = started
            else:
                if len(self._buf) - n >= _schema.MAX_RECORD_SIZE:
                    self.complete_before_ns = started
                return bytes(self._buf[:n])
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            # The module never wakes readers (a wake-up per event costs too much), so
            # select() on it would return at once: poll at a short interval instead.
            select.select([], [], [], min(left, 0.01))

    def decode(self, raw: bytes) -> list[Event]:
        return self._decoder.decode_stream(raw)

    def read_events(self, timeout_s: float) -> list[Event]:
        raw = self.read_raw(timeout_s)
        return self.decode(raw) if raw else []

    def drain(self, *, idle_s: float = 0.2) -> list[Event]:
        """Read until the rings stay empty for `idle_s`."""
        events: list[Event] = []
        while True:
            batch = self.read_events(idle_s)
            if not batch:
                return events
            events.extend(batch)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> KmodDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
