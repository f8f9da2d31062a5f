"""Capture files: the driver's raw records, so a replay runs the very decoder live capture runs.

Layout (little endian):

    header   magic "RTCAPTR\\0" | u16 format version | u16 driver API version | u32 reserved
             | u64 driver schema hash | s64 boot offset ns | u32 metadata length | metadata JSON
             | u32 CRC32 of everything before it
    frames   u8 kind | u32 payload length | u32 CRC32 of kind, length and payload | payload,
             repeated to end of file

Every length is bounded before anything is read (MAX_METADATA, MAX_FRAME per kind, and the
bytes left in the file), and every frame carries a CRC32: a flipped bit inside an event
payload still decodes into a plausible record, so without it a damaged capture would replay
into different alerts instead of being reported. Format 1 captures had no checksums; they
are refused with a one-line "re-record" message rather than analysed unverified.

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
refused with a message that says so, unless it is an earlier revision the decoder still
reads (its records lack only optional params this one appended: driver/schema/events.yaml
`earlier_revisions`; the engine then falls back as for a driver that did not capture them).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from drivercore.errors import UsageError

MAGIC = b"RTCAPTR\x00"
FORMAT_VERSION = 2
_HEADER = struct.Struct("<8sHHIQqI")
_CRC = struct.Struct("<I")
_FRAME = struct.Struct("<BII")
_FRAME_KIND_LEN = struct.Struct("<BI")
FRAME_EVENTS = 1
FRAME_STATS = 2
FRAME_PROCS = 3
# Refuse absurd lengths from a corrupt file before allocating. Metadata is a few host facts;
# stats frames a few counters per CPU; a /proc snapshot a few MB on a busy host.
MAX_METADATA = 1024 * 1024
MAX_FRAME = 256 * 1024 * 1024
_MAX_FRAME_BY_KIND = {FRAME_EVENTS: MAX_FRAME, FRAME_STATS: 4 * 1024 * 1024,
                      FRAME_PROCS: 128 * 1024 * 1024}


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
    if not isinstance(procs, dict) or not isinstance(net, dict):  # CaptureReader checked
        raise CaptureFormatError("the /proc snapshot is malformed")
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
                # surrogateescape: a name that was not UTF-8 in /proc gets its bytes back
                (pdir / "task" / str(tid) / "comm").write_text(str(comm),
                                                                errors="surrogateescape")
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
        head = _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            header.api_version,
            0,
            header.schema_hash,
            header.boot_offset_ns,
            len(meta),
        ) + meta
        self._fh.write(head + _CRC.pack(zlib.crc32(head)))
        self.events_bytes = 0

    def _write_frame(self, kind: int, payload: bytes | bytearray | memoryview) -> None:
        kind_len = _FRAME_KIND_LEN.pack(kind, len(payload))
        crc = zlib.crc32(payload, zlib.crc32(kind_len))
        self._fh.write(_FRAME.pack(kind, len(payload), crc))
        self._fh.write(payload)

    def write_events(self, raw: bytes | bytearray | memoryview) -> None:
        if raw:
            self._write_frame(FRAME_EVENTS, raw)
            self.events_bytes += len(raw)

    def write_procs(self, snapshot: ProcSnapshot) -> None:
        payload = json.dumps(snapshot.doc, separators=(",", ":"),
                             ensure_ascii=False).encode("utf-8", "surrogateescape")
        self._write_frame(FRAME_PROCS, payload)

    def write_stats(self, ts_ns: int, per_cpu: Mapping[int, Mapping[str, int]]) -> None:
        payload = json.dumps(
            {"ts": ts_ns, "per_cpu": {str(c): dict(v) for c, v in per_cpu.items()}},
            separators=(",", ":"),
        ).encode()
        self._write_frame(FRAME_STATS, payload)

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


class _Damaged(ValueError):
    """A frame payload whose content does not have the recorded shape."""


def _text_map(doc: object, what: str, *, nul_in_values: bool = True) -> dict[str, str]:
    # Names become paths and link targets symlinks, which cannot hold a NUL; file contents
    # can (cmdline separates its arguments with them).
    if not isinstance(doc, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and "\0" not in k
        and (nul_in_values or "\0" not in v) for k, v in doc.items()
    ):
        raise _Damaged(f"{what} is not a map of strings")
    return doc


def _number_name(name: object) -> bool:
    return isinstance(name, str) and name.isascii() and name.isdigit() and len(name) < 20


def _checked_snapshot(doc: object) -> ProcSnapshot:
    """The snapshot, once every part materialise_proc lays out has the recorded shape."""
    if not isinstance(doc, dict):
        raise _Damaged("the /proc snapshot is not a JSON object")
    procs, net = doc.get("procs", {}), doc.get("net", {})
    if not isinstance(procs, dict):
        raise _Damaged("the /proc snapshot's procs is not a map")
    _text_map(net, "the /proc snapshot's net")
    for pid, proc in procs.items():
        if not _number_name(pid) or not isinstance(proc, dict):
            raise _Damaged(f"the /proc snapshot's process {pid!r} is malformed")
        for part in ("files", "links", "fds", "tasks"):
            _text_map(proc.get(part, {}), f"the /proc snapshot's process {pid} {part}",
                      nul_in_values=part in ("files", "tasks"))
        for number in (*proc.get("fds", {}), *proc.get("tasks", {})):
            if not _number_name(number):
                raise _Damaged(f"the /proc snapshot's process {pid} has fd/task {number!r}")
    return ProcSnapshot(doc)


def _checked_stats(doc: object) -> StatsFrame:
    if not isinstance(doc, dict) or not isinstance(doc.get("per_cpu"), dict):
        raise _Damaged("a stats frame is not {ts, per_cpu}")
    ts = doc.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < 1 << 63:
        raise _Damaged(f"a stats frame's ts is {ts!r}")
    per_cpu: dict[int, dict[str, int]] = {}
    for cpu, counters in doc["per_cpu"].items():
        if not _number_name(cpu) or not isinstance(counters, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            and 0 <= v < 1 << 64 for k, v in counters.items()
        ):
            raise _Damaged(f"a stats frame's cpu {cpu!r} counters are malformed")
        per_cpu[int(cpu)] = dict(counters)
    return StatsFrame(ts_ns=ts, per_cpu=per_cpu)


class CaptureReader:
    def __init__(self, path: Path, *, expect_schema_hash: int | None = None,
                 earlier_schema_hashes: Collection[int] = ()) -> None:
        """`expect_schema_hash`: the decoder's schema (None: any); a capture of another
        one is refused unless it is one of the `earlier_schema_hashes` the decoder reads."""
        self.path = path
        self._earlier = frozenset(earlier_schema_hashes)
        try:
            self._fh: BinaryIO = path.open("rb")
            self._size = os.fstat(self._fh.fileno()).st_size
        except OSError as exc:
            raise CaptureFormatError(f"capture {path}: cannot open: {exc.strerror}") from None
        try:
            self.header = self._read_header(expect_schema_hash)
        except BaseException:
            self._fh.close()
            raise
        self.frame_number = 0  # of the last frame read, 1-based; the header is not a frame
        self.frame_offset = 0

    def _fail(self, detail: str) -> CaptureFormatError:
        return CaptureFormatError(f"capture {self.path}: {detail}")

    def _read_exact(self, size: int, what: str) -> bytes:
        # Compared with what is left in the file before reading, so a damaged length
        # never allocates more than the file holds.
        left = self._size - self._fh.tell()
        if size > left:
            raise self._fail(f"truncated {what} ({max(left, 0)} of {size} bytes present);"
                             " the file is damaged or was cut short, re-record it")
        return self._fh.read(size)

    def _read_header(self, expect_schema_hash: int | None) -> CaptureHeader:
        raw = self._fh.read(_HEADER.size)
        if len(raw) < _HEADER.size or not raw.startswith(MAGIC):
            raise self._fail("not an rt-engine capture (bad magic); record one with"
                             " `rt-engine run --record FILE`")
        _, version, api, _, schema_hash, boot_offset, meta_len = _HEADER.unpack(raw)
        if version < FORMAT_VERSION:
            raise self._fail(f"format version {version} was recorded by an older rt-engine"
                             " (frames carry no checksums); re-record it with"
                             " `rt-engine run --record FILE`")
        if version != FORMAT_VERSION:
            raise self._fail(f"format version {version}, this rt-engine reads"
                             f" {FORMAT_VERSION}; replay it with the rt-engine that recorded it")
        if meta_len > MAX_METADATA:
            raise self._fail(f"metadata length {meta_len} exceeds the {MAX_METADATA}-byte"
                             " limit; the header is damaged, re-record it")
        meta = self._read_exact(meta_len, "metadata")
        (crc,) = _CRC.unpack(self._read_exact(_CRC.size, "header checksum"))
        if zlib.crc32(raw + meta) != crc:
            raise self._fail("header checksum mismatch; the file is damaged, re-record it")
        if (expect_schema_hash is not None and schema_hash != expect_schema_hash
                and schema_hash not in self._earlier):
            also = "".join(f", {h:#018x}" for h in sorted(self._earlier))
            raise self._fail(
                f"recorded with driver schema {schema_hash:#018x}, this decoder"
                f" reads {expect_schema_hash:#018x}{also}; replay it with the rt-engine"
                " that recorded it"
            )
        try:
            metadata = json.loads(meta)
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict):
            raise self._fail("corrupt metadata (not a JSON object)")
        return CaptureHeader(api, schema_hash, boot_offset, metadata)

    def frames(self) -> Iterator[bytes | StatsFrame | ProcSnapshot]:
        """EVENTS payloads (raw driver records), StatsFrame and ProcSnapshot objects, in
        file order; a damaged frame raises CaptureFormatError naming its number and offset."""
        fh = self._fh
        while True:
            offset = fh.tell()
            head = fh.read(_FRAME.size)
            if not head:
                return
            self.frame_number += 1
            self.frame_offset = offset
            where = f"frame {self.frame_number} at offset {offset}"
            if len(head) != _FRAME.size:
                raise self._fail(f"{where}: truncated frame header; re-record it")
            kind, size, crc = _FRAME.unpack(head)
            limit = _MAX_FRAME_BY_KIND.get(kind)
            if limit is None:
                raise self._fail(f"{where}: unknown frame kind {kind}; the file is damaged")
            if size > limit:
                raise self._fail(f"{where}: length {size} exceeds the {limit}-byte limit for"
                                 " its kind; the file is damaged")
            payload = self._read_exact(size, where)
            if zlib.crc32(payload, zlib.crc32(head[:_FRAME_KIND_LEN.size])) != crc:
                raise self._fail(f"{where}: checksum mismatch, the frame is damaged;"
                                 " nothing from it was analysed")
            if kind == FRAME_EVENTS:
                yield payload
                continue
            try:
                doc = json.loads(payload.decode("utf-8", "surrogateescape"))
                yield _checked_stats(doc) if kind == FRAME_STATS else _checked_snapshot(doc)
            except (ValueError, RecursionError) as exc:  # _Damaged, JSONDecodeError
                raise self._fail(f"{where}: malformed content: {exc}") from None

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
