"""Capture files: the driver's raw records, so a replay runs the very decoder live capture runs.

Layout (little endian):

    header   magic "RTCAPTR\\0" | u16 format version | u16 driver API version | u32 reserved
             | u64 driver schema hash | s64 boot offset ns | u32 metadata length | metadata JSON
    frames   u8 kind | u32 payload length | payload, repeated to end of file

Frame kinds: EVENTS holds driver records exactly as read from the ring (each record carries
its own length), STATS holds the driver's cumulative per-CPU counters at one instant as
JSON `{"ts": <ns since epoch>, "per_cpu": {"<cpu>": {counter: n}}}`. Recording the counters
next to the events lets a replay reproduce the drop alerts a live run raised.
PROCS (first frame, when present) is the /proc snapshot the live run seeded its process
table from, so a replay knows the processes that existed before recording started (their
names, command lines, parents, open files) exactly as the live run did.

The boot offset converts the driver's CLOCK_BOOTTIME timestamps to wall time (the live
source's `runtime.driver.schema.boot_to_epoch_ns()`, taken once at start); it is stored
because a replay on another host (or after a reboot) cannot recompute it. The schema hash is
checked on open: a capture of another schema revision would decode into garbage, so it is
refused with a message that says so.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from drivercore.errors import UsageError

MAGIC = b"RTCAPTR\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sHHIQqI")
_FRAME = struct.Struct("<BI")
FRAME_EVENTS = 1
FRAME_STATS = 2
FRAME_PROCS = 3
MAX_FRAME = 256 * 1024 * 1024  # refuse absurd lengths from a corrupt file before allocating


class CaptureFormatError(UsageError):
    """The file is not a capture, or one this build cannot read."""


@dataclass(frozen=True)
class CaptureHeader:
    api_version: int
    schema_hash: int
    boot_offset_ns: int
    metadata: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatsFrame:
    ts_ns: int
    per_cpu: dict[int, dict[str, int]]


@dataclass(frozen=True, slots=True)
class ProcSnapshot:
    """The parts of /proc the state table seeds from, as plain data (see snapshot_proc)."""

    doc: Mapping[str, object]


_PROC_FILES = ("status", "cmdline", "stat", "loginuid", "cgroup")
_PROC_LINKS = ("exe", "cwd")
_NET_TABLES = ("tcp", "tcp6", "udp", "udp6", "raw", "raw6", "unix")


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:  # the process exited, or the file is not readable: leave it out
        return None


def _link_or_none(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def snapshot_proc(root: Path = Path("/proc")) -> ProcSnapshot:
    """Copy what SystemState.seed_from_proc reads: per process its status files, exe/cwd
    links, fd links and thread names, plus the socket tables."""
    procs: dict[str, object] = {}
    for entry in os.listdir(root):
        if not entry.isdigit():
            continue
        pdir = root / entry
        files = {n: t for n in _PROC_FILES if (t := _read_or_none(pdir / n)) is not None}
        if "status" not in files:
            continue
        links = {n: t for n in _PROC_LINKS if (t := _link_or_none(pdir / n)) is not None}
        try:
            fd_names = os.listdir(pdir / "fd")
        except OSError:
            fd_names = []
        fds = {n: t for n in fd_names if (t := _link_or_none(pdir / "fd" / n)) is not None}
        try:
            tids = [t for t in os.listdir(pdir / "task") if t.isdigit()]
        except OSError:
            tids = []
        tasks = {t: (_read_or_none(pdir / "task" / t / "comm") or "") for t in tids}
        procs[entry] = {"files": files, "links": links, "fds": fds, "tasks": tasks}
    net = {n: t for n in _NET_TABLES if (t := _read_or_none(root / "net" / n)) is not None}
    return ProcSnapshot({"procs": procs, "net": net})


def materialise_proc(snapshot: ProcSnapshot, root: Path) -> Path:
    """Lay a snapshot out as a /proc-shaped tree (files and dangling symlinks) under root,
    so the state table seeds from it through its ordinary /proc reader."""
    doc = snapshot.doc
    procs = doc.get("procs", {})
    net = doc.get("net", {})
    assert isinstance(procs, dict) and isinstance(net, dict)
    (root / "net").mkdir(parents=True, exist_ok=True)
    for name, text in net.items():
        if name in _NET_TABLES:
            (root / "net" / name).write_text(str(text), errors="surrogateescape")
    for pid, proc in procs.items():
        if not str(pid).isdigit():
            continue
        pdir = root / str(pid)
        (pdir / "fd").mkdir(parents=True, exist_ok=True)
        for name, text in proc.get("files", {}).items():
            if name in _PROC_FILES:
                (pdir / name).write_text(str(text), errors="surrogateescape")
        for name, target in proc.get("links", {}).items():
            if name in _PROC_LINKS:
                os.symlink(str(target), pdir / name)
        for fd, target in proc.get("fds", {}).items():
            if str(fd).isdigit():
                os.symlink(str(target), pdir / "fd" / str(fd))
        for tid, comm in proc.get("tasks", {}).items():
            if str(tid).isdigit():
                (pdir / "task" / str(tid)).mkdir(parents=True, exist_ok=True)
                (pdir / "task" / str(tid) / "comm").write_text(str(comm))
    return root


class CaptureWriter:
    """Writes to a temp file beside `path` and renames it into place on close, so a
    capture is either complete or absent, never half-written under its final name."""

    def __init__(self, path: Path, header: CaptureHeader) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self._tmp = Path(tmp)
        self._fh: BinaryIO = os.fdopen(fd, "wb", buffering=1024 * 1024)
        meta = json.dumps(dict(header.metadata), sort_keys=True).encode()
        self._fh.write(
            _HEADER.pack(
                MAGIC,
                FORMAT_VERSION,
                header.api_version,
                0,
                header.schema_hash,
                header.boot_offset_ns,
                len(meta),
            )
            + meta
        )
        self.events_bytes = 0

    def write_events(self, raw: bytes | bytearray | memoryview) -> None:
        if raw:
            self._fh.write(_FRAME.pack(FRAME_EVENTS, len(raw)))
            self._fh.write(raw)
            self.events_bytes += len(raw)

    def write_procs(self, snapshot: ProcSnapshot) -> None:
        payload = json.dumps(snapshot.doc, separators=(",", ":"),
                             ensure_ascii=False).encode("utf-8", "surrogateescape")
        self._fh.write(_FRAME.pack(FRAME_PROCS, len(payload)) + payload)

    def write_stats(self, ts_ns: int, per_cpu: Mapping[int, Mapping[str, int]]) -> None:
        payload = json.dumps(
            {"ts": ts_ns, "per_cpu": {str(c): dict(v) for c, v in per_cpu.items()}},
            separators=(",", ":"),
        ).encode()
        self._fh.write(_FRAME.pack(FRAME_STATS, len(payload)) + payload)

    def close(self) -> None:
        if self._fh.closed:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)


def _read_exact(fh: IO[bytes], size: int, path: Path, what: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise CaptureFormatError(f"capture {path}: truncated {what} ({len(data)}/{size} bytes)")
    return data


class CaptureReader:
    def __init__(self, path: Path, *, expect_schema_hash: int | None = None) -> None:
        self.path = path
        try:
            self._fh: BinaryIO = path.open("rb")
        except OSError as exc:
            raise CaptureFormatError(f"capture {path}: cannot open: {exc.strerror}") from None
        raw = self._fh.read(_HEADER.size)
        if len(raw) < _HEADER.size or not raw.startswith(MAGIC):
            self._fh.close()
            raise CaptureFormatError(
                f"capture {path}: not an rt-engine capture (bad magic); record one with"
                " `rt-engine run --record FILE`"
            )
        _, version, api, _, schema_hash, boot_offset, meta_len = _HEADER.unpack(raw)
        if version != FORMAT_VERSION:
            self._fh.close()
            raise CaptureFormatError(
                f"capture {path}: format version {version}, this rt-engine reads"
                f" {FORMAT_VERSION}"
            )
        if expect_schema_hash is not None and schema_hash != expect_schema_hash:
            self._fh.close()
            raise CaptureFormatError(
                f"capture {path}: recorded with driver schema {schema_hash:#018x}, this decoder"
                f" is {expect_schema_hash:#018x}; replay it with the rt-engine that recorded it"
            )
        try:
            metadata = json.loads(_read_exact(self._fh, meta_len, path, "metadata"))
        except ValueError:
            self._fh.close()
            raise CaptureFormatError(f"capture {path}: corrupt metadata") from None
        self.header = CaptureHeader(api, schema_hash, boot_offset, metadata)

    def frames(self) -> Iterator[bytes | StatsFrame | ProcSnapshot]:
        """EVENTS payloads (raw driver records), StatsFrame and ProcSnapshot objects, in
        file order."""
        fh, path = self._fh, self.path
        while True:
            head = fh.read(_FRAME.size)
            if not head:
                return
            if len(head) != _FRAME.size:
                raise CaptureFormatError(f"capture {path}: truncated frame header")
            kind, size = _FRAME.unpack(head)
            if size > MAX_FRAME:
                raise CaptureFormatError(f"capture {path}: frame of {size} bytes, file corrupt")
            payload = _read_exact(fh, size, path, "frame")
            if kind == FRAME_EVENTS:
                yield payload
            elif kind == FRAME_STATS:
                doc = json.loads(payload)
                yield StatsFrame(
                    ts_ns=int(doc["ts"]),
                    per_cpu={int(c): dict(v) for c, v in doc["per_cpu"].items()},
                )
            elif kind == FRAME_PROCS:
                yield ProcSnapshot(json.loads(payload.decode("utf-8", "surrogateescape")))
            else:
                raise CaptureFormatError(f"capture {path}: unknown frame kind {kind}")

    def close(self) -> None:
        self._fh.close()


# ---------------------------------------------------------------------------------------
# Synthetic records, for tests and benches: the exact bytes the driver would write, built
# from the generated schema tables so they cannot drift from the decoder.

_FIXED_PARAM_FORMATS = {
    "u32": "<I", "uid": "<I", "gid": "<I", "mode": "<I", "flags32": "<I",
    "s32": "<i", "u64": "<Q", "flags64": "<Q", "s64": "<q", "fd": "<q",
}
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10


def encode_tuple(family: int, src: str, sport: int, dst: str, dport: int) -> bytes:
    """The schema's `tuple` param: u8 family, addresses in network order, ports host order."""
    import ipaddress

    if family == AF_UNIX:
        return bytes([AF_UNIX]) + dst.encode() + b"\0"
    src_ip, dst_ip = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return (
        bytes([family])
        + src_ip.packed
        + struct.pack("<H", sport)
        + dst_ip.packed
        + struct.pack("<H", dport)
    )


def _encode_param(ptype: str, value: object) -> bytes:
    fmt = _FIXED_PARAM_FORMATS.get(ptype)
    if fmt is not None:
        assert isinstance(value, int), (ptype, value)
        return struct.pack(fmt, value)
    if ptype in ("path", "string"):
        assert isinstance(value, str), (ptype, value)
        return value.encode() + b"\0"
    if ptype == "argv":
        assert isinstance(value, list | tuple), (ptype, value)
        return b"".join(str(arg).encode() + b"\0" for arg in value)
    assert isinstance(value, bytes), (ptype, value)  # bytes, sockaddr, tuple
    return value


def encode_record(
    event_type: str,
    *,
    ts_boot_ns: int,
    ret: int,
    pid: int,
    tid: int | None = None,
    ppid: int = 1,
    uid: int = 0,
    gid: int = 0,
    comm: str = "",
    cpu: int = 0,
    cgroup_id: int = 0,
    syscall_nr: int | None = None,
    flags: int = 0,
    params: Mapping[str, object] | None = None,
) -> bytes:
    """One driver record from param VALUES (missing ones zero/empty), padded to 8 bytes as
    records sit in the module's ring and in capture frames. The byte layout itself is the
    driver's `encode_record`; this only encodes the values and picks the syscall number."""
    from runtime.driver import schema as driver_schema

    spec = driver_schema.SPECS[driver_schema.EVENT_IDS[event_type]]
    values = params or {}
    blobs = []
    for name, ptype in zip(spec.names, spec.types, strict=True):
        value = values.get(name)
        if value is None:
            value = _EMPTY.get(ptype, 0)
        blobs.append(_encode_param(ptype, value))
    if syscall_nr is None:
        # Decoded events are named by their syscall number; non-syscall events use -1.
        syscall_nr = driver_schema.syscall_table("x86_64").get(event_type, -1)
    record = driver_schema.encode_record(
        event_type, blobs, ret=ret, syscall_nr=syscall_nr, ts=ts_boot_ns, pid=pid,
        tid=pid if tid is None else tid, ppid=ppid, uid=uid, gid=gid, cpu=cpu,
        cgroup_id=cgroup_id, comm=comm, flags=flags,
    )
    return record + b"\0" * (-len(record) % 8)


_EMPTY: dict[str, object] = {
    "path": "", "string": "", "argv": [], "bytes": b"", "sockaddr": b"", "tuple": b"",
}
