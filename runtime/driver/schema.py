"""Decode rtcap records (see driver/include/rtcap_schema.h) into `runtime.events.Event`.

Every producer (CO-RE probe, per-kernel probe, kernel module) writes the same record:
a fixed header, a u16 length per param, then the param bytes. Decoding is driven by the
generated `_schema` tables. Each event type gets a decoder generated as Python source at
start (`_fast_source`): one Struct unpack for header + length table + leading fixed
params, one per further run of fixed params, text params decoded in place, and the Event
filled slot by slot. `decode_into` frames a batch of back-to-back records with one call
per record. Records the fast decoders do not handle (an empty fixed param, damage, an
unknown type) go to the general per-type closures, which raise the precise DecodeError;
tests/test_engine_equivalence.py holds both paths to the same results. The engine reuses
the generated source (`fast_decoder_parts`) to decode records it needs no Event for.

When built, the compiled batch decoder (runtime/driver/_fastdecode.c, driven by the same
tables via `Decoder.frame_decoder`) replaces the generated ones for batches: it takes the
same common records, stops at the same unusual ones, and is held to the Python path's
results by the same tests (plus random damage).
"""

from __future__ import annotations

import importlib
import ipaddress
import platform
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import CodeType, ModuleType
from typing import Any, Final

from runtime.driver import _schema
from runtime.driver._syscalls import SYSCALLS
from runtime.events import Event, SocketTuple


def _load_compiled_decoder() -> ModuleType | None:
    try:
        return importlib.import_module("runtime.driver._fastdecode")
    except ImportError:  # not built (a source checkout without `pip install -e .`)
        return None


_fastdecode: Final = _load_compiled_decoder()

HDR: Final = struct.Struct(_schema.HDR_FORMAT)
HDR_SIZE: Final = _schema.HDR_SIZE
SCHEMA_HASH: Final = _schema.SCHEMA_HASH
# Schema revisions whose records decode here: this one and the earlier ones it lists
# (their records lack some optional params at the end of an event; see events.yaml).
READABLE_SCHEMA_HASHES: Final = frozenset((SCHEMA_HASH, *_schema.EARLIER_SCHEMA_HASHES))
F_TRUNCATED: Final = _schema.HEADER_FLAGS["TRUNCATED"]
F_PARAM_FAULT: Final = _schema.HEADER_FLAGS["PARAM_FAULT"]
_U16: Final = struct.Struct("=H")

# struct codes of fixed-size param types (host byte order, like the records).
_FIXED_CODE: Final = {
    "u32": "I",
    "u64": "Q",
    "s32": "i",
    "s64": "q",
    "fd": "q",
    "uid": "I",
    "gid": "I",
    "mode": "I",
    "flags32": "I",
    "flags64": "Q",
}
_AF_UNIX: Final = 1
_AF_INET: Final = 2
_AF_INET6: Final = 10


class DecodeError(ValueError):
    """A record that does not follow the schema (truncated, unknown type, bad lengths)."""


def machine_arch(machine: str | None = None) -> str:
    """The syscall-table name of this (or the given) `uname -m`."""
    m = machine or platform.machine()
    if m in ("x86_64", "amd64"):
        return "x86_64"
    if m in ("aarch64", "arm64"):
        return "arm64"
    raise DecodeError(f"unsupported architecture {m!r}: rtcap knows x86_64 and arm64")


def syscall_table(arch: str | None = None) -> dict[str, int]:
    return SYSCALLS[arch or machine_arch()]


def boot_clock_ns() -> int:
    """Now, on the records' clock: CLOCK_BOOTTIME, which (unlike CLOCK_MONOTONIC) keeps
    counting through suspend, so stamps from before and after one stay comparable."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def boot_to_epoch_ns() -> int:
    """What to add to a record's stamp (boot_clock_ns) to get epoch ns.

    The one place this offset is computed. A live source takes it once, at start, and
    hands it to its decoder and to the capture it records; a replay uses the recorded
    one, since this host's offset says nothing about another boot's stamps."""
    return time.clock_gettime_ns(time.CLOCK_REALTIME) - boot_clock_ns()


def _cstr(b: bytes) -> str:
    end = b.find(b"\0")
    return (b if end < 0 else b[:end]).decode("utf-8", "replace")


def _argv(b: bytes) -> list[str]:
    # One decode, then split: a NUL never sits inside a UTF-8 sequence, so this gives what
    # decoding each part would (checked on random bytes), at half the cost.
    parts = b.decode("utf-8", "replace").split("\0")
    if parts and parts[-1] == "":
        parts.pop()
    return parts


_V6_TEXT: dict[bytes, str] = {}  # ipaddress formats v6 slowly (~5 us); peers repeat
_V6_TEXT_MAX: Final = 4096
# A tuple param's whole layout in one unpack: family, src, sport, dst, dport.
_TUPLE4: Final = struct.Struct("=B4sH4sH")
_TUPLE6: Final = struct.Struct("=B16sH16sH")
_PORT: Final = struct.Struct("!H")  # a sockaddr's port: network order


def _ip(family: int, raw: bytes) -> str:
    if family == _AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw)
    text = _V6_TEXT.get(raw)
    if text is None:
        text = str(ipaddress.IPv6Address(raw))
        if len(_V6_TEXT) >= _V6_TEXT_MAX:
            _V6_TEXT.clear()
        _V6_TEXT[raw] = text
    return text


def decode_tuple(b: bytes) -> SocketTuple | None:
    """The ends of a tuple param (u8 family, addresses in network order, ports in host
    order), or None when only the family is known (not an IP socket, or cut short)."""
    if not b:
        return None
    family = b[0]
    if family == _AF_INET and len(b) >= _TUPLE4.size:
        _f, src, sport, dst, dport = _TUPLE4.unpack_from(b)
        return SocketTuple(family, socket.inet_ntop(socket.AF_INET, src), sport,
                           socket.inet_ntop(socket.AF_INET, dst), dport)
    if family == _AF_INET6 and len(b) >= _TUPLE6.size:
        _f, src, sport, dst, dport = _TUPLE6.unpack_from(b)
        return SocketTuple(family, _ip(family, src), sport, _ip(family, dst), dport)
    return None


def decode_sockaddr(b: bytes) -> tuple[int, str, int | None] | None:
    """(family, address, port) of a struct sockaddr as the caller passed it (host-order
    family, network-order port); the address is "" in a family we do not read."""
    if len(b) < 2:
        return None
    family: int = _U16.unpack_from(b, 0)[0]
    if family == _AF_INET and len(b) >= 8:
        return family, _ip(family, b[4:8]), _PORT.unpack_from(b, 2)[0]
    if family == _AF_INET6 and len(b) >= 24:
        return family, _ip(family, b[8:24]), _PORT.unpack_from(b, 2)[0]
    if family == _AF_UNIX:
        path = b[2:]
        if path[:1] == b"\0":  # abstract socket: Falco shows it with a leading @
            return family, "@" + path[1:].split(b"\0")[0].decode("utf-8", "replace"), None
        return family, _cstr(path), None
    return family, "", None


def _set_network(params: dict[str, object], is_accept: bool) -> None:
    """connect/accept/send*/recv* post-step: `tuple` as a SocketTuple, plus the family
    and the remote end's addr/port (fd.sip & co). The tuple stays structured on its way to the
    state; Falco's text of it (`str()`) is made only where it is shown: fd.name, and
    evt.arg.tuple / evt.args (runtime/engine/fields.py)."""
    raw_tuple = params.pop("tuple", None)
    tup = decode_tuple(raw_tuple) if isinstance(raw_tuple, bytes) else None
    addr: str | None = None
    port: int | None = None
    sa_family: int | None = None
    if tup is not None:
        addr, port = (tup.src, tup.sport) if is_accept else (tup.dst, tup.dport)
    else:
        # No tuple from the socket (a refused connect, unconnected UDP): the destination
        # the caller passed is all there is.
        sa = params.get("addr")
        sa_ends = decode_sockaddr(sa) if isinstance(sa, bytes) else None
        if sa_ends is not None:
            sa_family, addr, port = sa_ends
            # An address in a family we do not read is unknown, not empty; a unix
            # socket's path may be empty (an unnamed socket).
            dst = addr if addr or sa_family == _AF_UNIX else None
            tup = SocketTuple(sa_family, None, None, dst, port)
    params["tuple"] = tup
    if isinstance(raw_tuple, bytes) and raw_tuple:
        params["family"] = raw_tuple[0]
    else:
        params["family"] = sa_family
    params["addr"] = addr
    params["port"] = port


@dataclass(frozen=True)
class _EventSpec:
    id: int
    name: str
    ret: str
    names: tuple[str, ...]
    types: tuple[str, ...]
    fixed: struct.Struct | None  # lengths + values, when every param is fixed-size
    fixed_lens: tuple[int, ...]
    lens: struct.Struct
    post: Callable[[dict[str, object]], None] | None
    # Params every record carries; an earlier schema revision's record may end after
    # any count from here up to all of them (the rest are optional, read as absent).
    min_params: int


def _post_exec(params: dict[str, object]) -> None:
    argv = params.pop("argv", None)
    args = argv if isinstance(argv, list) else []
    params["exe"] = args[0] if args else None
    params["args"] = args[1:]


def _build_specs() -> dict[int, _EventSpec]:
    specs: dict[int, _EventSpec] = {}
    posts: dict[str, Callable[[dict[str, object]], None]] = {
        "execve": _post_exec,
        "execveat": _post_exec,
        "connect": lambda p: _set_network(p, is_accept=False),
        "accept": lambda p: _set_network(p, is_accept=True),
        "accept4": lambda p: _set_network(p, is_accept=True),
        # sends put our end first like connect, receives the peer first like accept
        "sendto": lambda p: _set_network(p, is_accept=False),
        "sendmsg": lambda p: _set_network(p, is_accept=False),
        "recvfrom": lambda p: _set_network(p, is_accept=True),
        "recvmsg": lambda p: _set_network(p, is_accept=True),
    }
    for ev in _schema.EVENTS:
        names = tuple(n for n, _t in ev["params"])
        types = tuple(t for _n, t in ev["params"])
        n = len(names)
        all_fixed = all(t in _FIXED_CODE for t in types)
        fixed = (
            struct.Struct("=" + "H" * n + "".join(_FIXED_CODE[t] for t in types))
            if all_fixed
            else None
        )
        specs[ev["id"]] = _EventSpec(
            id=ev["id"],
            name=ev["name"],
            ret=ev["ret"],
            names=names,
            types=types,
            fixed=fixed,
            fixed_lens=tuple(struct.calcsize("=" + _FIXED_CODE[t]) for t in types)
            if all_fixed
            else (),
            lens=struct.Struct("=" + "H" * n),
            post=posts.get(ev["name"]),
            min_params=ev["min_params"],
        )
    return specs


SPECS: Final = _build_specs()
EVENT_IDS: Final = {s.name: s.id for s in SPECS.values()}
GENERIC_ID: Final = EVENT_IDS["generic"]
PROCEXIT_ID: Final = EVENT_IDS["procexit"]
# syscall name -> event type id for syscalls with a decoded event
SYSCALL_EVENT: Final = {
    sc: ev["id"] for ev in _schema.EVENTS for sc in (ev["syscalls"] or [])
}
# event types produced at sys_enter (their syscalls never return)
AT_ENTER_SYSCALLS: Final = frozenset(
    sc for ev in _schema.EVENTS if ev["at_enter"] for sc in (ev["syscalls"] or [])
)
NON_SYSCALL_EVENTS: Final = frozenset(
    ev["name"] for ev in _schema.EVENTS if ev["syscalls"] is not None and not ev["syscalls"]
)


_Conv = Callable[[bytes | bytearray | memoryview, int, int], object]


def _converter(ptype: str) -> _Conv:
    """Reads one param of `ptype` at (pos, length) straight from the record buffer."""
    if ptype in _FIXED_CODE:
        st = struct.Struct("=" + _FIXED_CODE[ptype])
        size, unpack = st.size, st.unpack_from

        def fixed(buf: bytes | bytearray | memoryview, pos: int, ln: int) -> object:
            return unpack(buf, pos)[0] if ln == size else None

        return fixed
    if ptype in ("path", "string"):

        def text(buf: bytes | bytearray | memoryview, pos: int, ln: int) -> object:
            if not ln:
                return None
            end = pos + ln - 1 if buf[pos + ln - 1] == 0 else pos + ln
            return str(buf[pos:end], "utf-8", "replace")

        return text
    return lambda buf, pos, ln: _value(ptype, bytes(buf[pos : pos + ln]))


def _value(ptype: str, raw: bytes) -> object:
    if not raw:
        return None
    if ptype in ("path", "string"):
        return _cstr(raw)
    if ptype == "argv":
        return _argv(raw)
    if ptype in _FIXED_CODE:
        return struct.unpack("=" + _FIXED_CODE[ptype], raw)[0]
    return raw  # bytes, sockaddr, tuple: the post-step of the event interprets them


_TYPE_AT: Final = _schema.HDR_OFFSETS["type"]
_LEN_AT: Final = _schema.HDR_OFFSETS["len"]
# Length and type sit next to each other in the header: one unpack frames a record.
_LEN_TYPE: Final = struct.Struct("=IH")
assert _schema.HDR_OFFSETS["type"] == _LEN_AT + 4
# The u16 type's low and high byte (records are in host byte order): two byte reads
# beat a Struct call in the batch loop.
_TYPE_LO: Final = _TYPE_AT + (sys.byteorder == "big")
_TYPE_HI: Final = _TYPE_AT + (sys.byteorder == "little")
TYPE_LO: Final = _TYPE_LO
TYPE_HI: Final = _TYPE_HI
_RecordDecoder = Callable[[bytes | bytearray | memoryview, int], Event]
# (buffer, offset, buffer size) -> Event, or None when the record needs the careful path.
_FastDecoder = Callable[[Any, int, int], "Event | None"]
# (buffer, offset, buffer size, append) -> next record's offset, or -1 (careful path).
_FastStreamDecoder = Callable[[Any, int, int, Callable[[Event], None]], int]
_new_event: Final = object.__new__
# HDR_FORMAT with the type and flags fields as padding, checked against the header below.
_FAST_HDR_FORMAT: Final = "=QQqI2xHiIIIIII4x16s"
assert struct.calcsize(_FAST_HDR_FORMAT) == HDR_SIZE
assert [_schema.HDR_FIELDS[i] for i in (4, 13)] == ["type", "flags"]
assert HDR.format.replace("IHHi", "I2xHi").replace("II16s", "I4x16s") == _FAST_HDR_FORMAT


def _careful_into(buf: Any, off: int, size: int, append: Callable[[Event], None]) -> int:
    return -1  # placeholder for types without a fast decoder: the careful path decides
_COMM_CACHE_MAX: Final = 4096

# Param kinds of the compiled decoder (runtime/driver/_fastdecode.c), by the schema's types.
_C_FIXED: Final = {"I": 1, "Q": 2, "i": 3, "q": 4}
_C_PARAM_CODE: Final = {
    **{ptype: _C_FIXED[code] for ptype, code in _FIXED_CODE.items()},
    "path": 5, "string": 5, "argv": 6, "bytes": 7, "sockaddr": 7, "tuple": 7,
}
# What the engine's lite records need of one event type: (kind, indices of the params it
# reads, syscall numbers decoded lite); see runtime/engine/app.py.
LiteSpec = tuple[int, tuple[int, ...], frozenset[int]]
# (buffer, start, end, out list) -> offset it stopped at (see FrameDecoder.decode).
FrameDecodeFn = Callable[[Any, int, int, list[Any]], int]


def compiled_decoder_status() -> str | None:
    """None when the compiled decoder can be used, else why not (one line)."""
    if _fastdecode is None:
        return "runtime.driver._fastdecode is not built (run `pip install -e .`)"
    if _fastdecode.SCHEMA_HASH != SCHEMA_HASH:
        return ("runtime.driver._fastdecode was built from another event schema: "
                "rebuild it with `pip install -e .`")
    if sorted(_fastdecode.EVENT_SLOTS) != sorted(Event.__slots__):
        return "runtime.driver._fastdecode fills other Event fields than runtime.events has"
    if max(len(ev["params"]) for ev in _schema.EVENTS) > _fastdecode.MAX_PARAMS:
        return "an event type has more params than runtime.driver._fastdecode handles"
    unknown = {t for ev in _schema.EVENTS for _n, t in ev["params"]} - set(_C_PARAM_CODE)
    if unknown:
        return f"param types {sorted(unknown)} have no compiled decoding"
    return None


COMPILED_DECODER: Final = compiled_decoder_status() is None


def _fast_source(spec: _EventSpec) -> tuple[str, dict[str, object]]:
    """Python source of one event type's fast decoder (see `Decoder._make_fast`).

    The common record (every fixed-size param at its full size) is read with one Struct
    for header + length table + the leading fixed params, then one Struct per run of fixed
    params between variable ones; the Event is filled slot by slot without calling
    __init__ (a 14-argument call costs twice as much). Anything unusual returns None and
    the general decoder handles it, with its precise error messages."""
    n = len(spec.names)
    ns: dict[str, object] = {}
    nhdr = len(_schema.HDR_FIELDS)
    lens = [f"l{i}" for i in range(n)]
    vals = [f"p{i}" for i in range(n)]
    # Leading run of fixed params, folded into the header Struct.
    lead = 0
    while lead < n and spec.types[lead] in _FIXED_CODE:
        lead += 1
    head = struct.Struct(
        _FAST_HDR_FORMAT + "H" * n + "".join(_FIXED_CODE[t] for t in spec.types[:lead])
    )
    assert head.size == HDR.size + struct.calcsize("=" + "H" * n + "".join(
        _FIXED_CODE[t] for t in spec.types[:lead]))
    ns["HEAD"] = head.unpack_from
    # The type (known here) and the header flags (unused) are skipped as padding.
    hdr_names = ["ts", "cgid", "ret", "length", "nparams", "nr", "cpu", "pid", "tid",
                 "ppid", "uid", "gid", "comm_raw"]
    assert len(hdr_names) == nhdr - 2
    lines = [f"    ({', '.join(hdr_names + lens + vals[:lead])},) = HEAD(buf, off)"]
    checks = [f"nparams != {n}", "off + length > size", f"length < {HDR_SIZE}"]
    for i, t in enumerate(spec.types):
        if t in _FIXED_CODE:
            checks.append(f"l{i} != {struct.calcsize('=' + _FIXED_CODE[t])}")
    lines.append(f"    if {' or '.join(checks)}:\n        return None")
    lines.append(f"    pos = off + {head.size}")
    i = lead
    while i < n:
        t = spec.types[i]
        if t in _FIXED_CODE:
            j = i
            while j < n and spec.types[j] in _FIXED_CODE:
                j += 1
            run = struct.Struct("=" + "".join(_FIXED_CODE[x] for x in spec.types[i:j]))
            ns[f"RUN{i}"] = run.unpack_from
            lines.append(f"    ({', '.join(vals[i:j])},) = RUN{i}(buf, pos)")
            lines.append(f"    pos += {run.size}")
            i = j
            continue
        if t in ("path", "string"):
            # Like _converter's text(): one trailing NUL is the terminator, not text.
            lines.append(
                f"    if l{i}:\n"
                f"        end = pos + l{i}\n"
                f"        p{i} = str(buf[pos:end - 1 if buf[end - 1] == 0 else end],"
                f" 'utf-8', 'replace')\n"
                f"        pos = end\n"
                f"    else:\n        p{i} = None")
        elif t == "argv":
            ns["_argv"] = _argv
            lines.append(
                f"    if l{i}:\n        p{i} = _argv(bytes(buf[pos:pos + l{i}]))\n"
                f"        pos += l{i}\n    else:\n        p{i} = None")
        else:  # bytes, sockaddr, tuple: the post-step interprets them
            lines.append(
                f"    if l{i}:\n        p{i} = bytes(buf[pos:pos + l{i}])\n"
                f"        pos += l{i}\n    else:\n        p{i} = None")
        i += 1
    if lead < n:
        lines.append("    if pos - off > length:\n        return None")
    decode_part = len(lines)
    is_generic = spec.id == GENERIC_ID
    if is_generic:
        lines.append(f"    raw_args = ({', '.join(vals)},)")
        lines.append(f"    params = {{{spec.ret!r}: ret}}")
    else:
        lines.append("    raw_args = ()")
        items = [f"{name!r}: {v}" for name, v in zip(spec.names, vals, strict=True)]
        if spec.post is None:
            items.append(f"{spec.ret!r}: ret")
            lines.append(f"    params = {{{', '.join(items)}}}")
        else:
            ns["POST"] = spec.post
            lines.append(f"    params = {{{', '.join(items)}}}")
            lines.append(f"    POST(params)\n    params[{spec.ret!r}] = ret")
    lines.append(
        "    comm = COMMS_GET(comm_raw)\n"
        "    if comm is None:\n"
        "        z = comm_raw.find(b'\\0')\n"
        "        comm = (comm_raw if z < 0 else comm_raw[:z]).decode('utf-8', 'replace')\n"
        "        if len(COMMS) < COMM_MAX:\n"
        "            COMMS[comm_raw] = comm\n"
        "    if nr == NR0:\n"
        "        name = NAME0\n"
        "    elif nr < 0:\n"
        "        name = EV_NAME\n"
        "    else:\n"
        "        name = NAME_OF(nr) or f'syscall_{nr}'\n"
        "    ev = NEW(Event)\n"
        "    ev.ts = ts + EPOCH\n    ev.cpu = cpu\n    ev.type = name\n"
        "    ev.syscall_nr = nr\n    ev.res = ret\n    ev.pid = pid\n    ev.tid = tid\n"
        "    ev.ppid = ppid\n    ev.uid = uid\n    ev.gid = gid\n    ev.comm = comm\n"
        "    ev.cgroup_id = cgid\n    ev.params = params\n    ev.raw_args = raw_args")
    ns["EV_NAME"] = spec.name
    _FAST_PARTS[spec.id] = ("\n".join(lines[:decode_part]), "\n".join(lines[decode_part:]))
    body = "\n".join(lines)
    # Two entry points from one body: one record (returns the Event, or None), and the
    # stream variant (appends, returns the next record's offset, or -1).
    source = (
        "def decode(buf, off, size):\n" + body + "\n    return ev\n\n"
        "def decode_into(buf, off, size, append):\n"
        + body.replace("return None", "return -1")
        + "\n    append(ev)\n    return off + ((length + 7) & -8)\n"
    )
    return source, ns


_FAST_CODE: dict[int, tuple[CodeType, dict[str, object]]] = {}
# Event type id -> (source reading the record into locals, source building `ev` from them).
_FAST_PARTS: dict[int, tuple[str, str]] = {}


def fast_decoder_parts(type_name: str) -> tuple[str, str]:
    """The generated fast decoder of one event type in two pieces, for callers that fuse
    their own per-event work with decoding (runtime/engine/app.py): the first reads the
    record into locals (`ts`, `ret`, `pid`, `tid`, `ppid`, `uid`, `gid`, `nr`, `length`,
    `p0`.. in param order) and `return None`s (or raises struct.error or IndexError on
    a short buffer) on anything unusual, before any side effect; the second builds `ev`
    (and `name`, the event's type) from them. Both run in a namespace from
    `Decoder.fast_namespace` and take (buf, off, size)."""
    spec = SPECS[EVENT_IDS[type_name]]
    if spec.id not in _FAST_PARTS:
        _fast_source(spec)
    return _FAST_PARTS[spec.id]


def _fast_code(spec: _EventSpec) -> tuple[CodeType, dict[str, object]]:
    """The compiled fast decoder of one event type, compiled once per process: every
    Decoder (one per capture replayed, per probe) only binds its own constants to it."""
    found = _FAST_CODE.get(spec.id)
    if found is None:
        source, ns = _fast_source(spec)
        found = _FAST_CODE[spec.id] = (
            compile(source, f"<rtcap decoder of {spec.name}>", "exec"), ns)
    return found


def _syscalls_of(event_name: str) -> list[str]:
    for ev in _schema.EVENTS:
        if ev["name"] == event_name:
            return list(ev["syscalls"] or [])
    return []


class Decoder:
    """Turns records into Events for one arch and one boot-to-epoch offset.

    Each event type gets a generated fast decoder for the common record (see _fast_source)
    and a general closure for the rest (empty params, damaged records, precise errors).
    Batches go through the compiled decoder (_fastdecode.c) when it is built, unless
    `compiled=False`; it takes the same common records and leaves the rest to the careful
    path, like the generated ones."""

    def __init__(self, arch: str | None = None, epoch_offset_ns: int | None = None, *,
                 compiled: bool | None = None) -> None:
        self.arch = arch or machine_arch()
        table = SYSCALLS[self.arch]
        self.names_by_nr: dict[int, str] = {nr: name for name, nr in table.items()}
        self._comms: dict[bytes, str] = {}
        self._epoch_offset_ns = (
            boot_to_epoch_ns() if epoch_offset_ns is None else epoch_offset_ns
        )
        if compiled and not COMPILED_DECODER:
            raise RuntimeError(f"compiled decoder requested: {compiled_decoder_status()}")
        self.compiled = COMPILED_DECODER if compiled is None else compiled
        self._build()

    @property
    def epoch_offset_ns(self) -> int:
        return self._epoch_offset_ns

    @epoch_offset_ns.setter
    def epoch_offset_ns(self, value: int) -> None:
        # The decoders bake the offset in as a constant: rebuild them with the new one.
        self._epoch_offset_ns = value
        self._build()

    def _build(self) -> None:
        self._by_type: dict[int, _RecordDecoder] = {
            spec.id: self._make(spec) for spec in SPECS.values()
        }
        size = max(SPECS) + 1
        fast: list[_FastDecoder | None] = [None] * size
        # Unknown types get the careful path (which raises), so the loop never tests None.
        into: list[_FastStreamDecoder] = [_careful_into] * size
        for spec in SPECS.values():
            fast[spec.id], into[spec.id] = self._make_fast(spec)
        self._fast: tuple[_FastDecoder | None, ...] = tuple(fast)
        self._fast_into: tuple[_FastStreamDecoder, ...] = tuple(into)
        self._frame = self.frame_decoder() if self.compiled else None

    def frame_decoder(self, lite: Mapping[int, LiteSpec] | None = None) -> FrameDecodeFn:
        """The compiled batch decoder with this decoder's offset, syscall names and comm
        cache; event types in `lite` come out as the engine's lite tuples instead of
        Events. Raises RuntimeError when the compiled decoder cannot be used."""
        reason = compiled_decoder_status()
        if reason is not None or _fastdecode is None:
            raise RuntimeError(reason)
        lite = lite or {}
        specs: list[tuple[object, ...] | None] = [None] * (max(SPECS) + 1)
        for spec in SPECS.values():
            specs[spec.id] = (
                spec.name, spec.ret, spec.names,
                tuple(_C_PARAM_CODE[t] for t in spec.types),
                spec.post, spec.id == GENERIC_ID, lite.get(spec.id),
            )
        names: list[str | None] = [None] * (max(self.names_by_nr, default=0) + 1)
        for nr, name in self.names_by_nr.items():
            names[nr] = name
        frame = _fastdecode.FrameDecoder(
            event_type=Event, epoch_ns=self._epoch_offset_ns, names_by_nr=tuple(names),
            comms=self._comms, comm_max=_COMM_CACHE_MAX, specs=tuple(specs))
        decode: FrameDecodeFn = frame.decode
        return decode

    def _make_fast(self, spec: _EventSpec) -> tuple[_FastDecoder, _FastStreamDecoder]:
        code, ns = _fast_code(spec)
        ns = self.fast_namespace(spec.name)
        exec(code, ns)
        one, into = ns["decode"], ns["decode_into"]
        assert callable(one) and callable(into)
        return one, into

    def fast_namespace(self, type_name: str) -> dict[str, object]:
        """The globals the fast decoder of `type_name` runs with (this decoder's offset,
        syscall names and comm cache); see `fast_decoder_parts`."""
        spec = SPECS[EVENT_IDS[type_name]]
        ns = dict(_fast_code(spec)[1])
        comms = self._comms
        # The syscall number this event type usually carries, named without a lookup.
        table = SYSCALLS[self.arch]
        nr0 = next((table[sc] for sc in _syscalls_of(spec.name) if sc in table), -2)
        ns.update(
            Event=Event, NEW=_new_event, EPOCH=self._epoch_offset_ns, COMMS=comms,
            COMMS_GET=comms.get, COMM_MAX=_COMM_CACHE_MAX, NAME_OF=self.names_by_nr.get,
            # A type without a syscall of its own keeps its name for every nr < 0.
            NR0=nr0, NAME0=self.names_by_nr.get(nr0) if nr0 >= 0 else spec.name,
        )
        return ns

    def _syscall_name(self, nr: int, fallback: str) -> str:
        if nr < 0:
            return fallback
        return self.names_by_nr.get(nr) or f"syscall_{nr}"

    def _make(self, spec: _EventSpec, count: int | None = None) -> _RecordDecoder:
        """The general decoder of one event type's records, or (`count`) of an earlier
        schema revision's records of it, which end after that many params: the params
        they lack are read as absent (None), as from a driver that could not capture
        them, so the engine takes its fallbacks."""
        names = spec.names
        lacking: tuple[str, ...] = ()
        earlier: dict[int, _RecordDecoder] = {}
        if count is None:  # records of earlier revisions, by their param count
            for shorter in range(spec.min_params, len(names)):
                earlier[shorter] = self._make(spec, shorter)
        else:
            names, lacking = names[:count], names[count:]
        n = len(names)
        expected = f"{spec.min_params} to {n}" if earlier else str(n)
        head = struct.Struct(HDR.format + "H" * n)
        full = (struct.Struct(head.format + spec.fixed.format[1 + n :])
                if spec.fixed and not lacking else None)
        fixed_lens = spec.fixed_lens
        ret_name, post = spec.ret, spec.post
        nparams_at = _schema.HDR_OFFSETS["nparams"]
        is_generic = spec.id == GENERIC_ID
        epoch = self._epoch_offset_ns
        comms = self._comms
        syscall_name = self._syscall_name
        ev_name = spec.name
        nhdr = len(_schema.HDR_FIELDS)
        convs = tuple(_converter(t) for t in spec.types[:n])
        head_size = head.size

        def decode(buf: bytes | bytearray | memoryview, off: int) -> Event:
            if earlier:
                try:
                    older = earlier.get(_U16.unpack_from(buf, off + nparams_at)[0])
                except struct.error as e:
                    raise DecodeError(f"record at {off}: truncated") from e
                if older is not None:
                    return older(buf, off)
            v: tuple[Any, ...] | None = None
            try:
                if full is not None and len(buf) - off >= full.size:
                    v = full.unpack_from(buf, off)
                    if v[nhdr : nhdr + n] != fixed_lens:
                        v = None  # a param came back empty: lengths decide below
                if v is None:
                    v = head.unpack_from(buf, off)
            except struct.error as e:
                raise DecodeError(f"record at {off}: truncated") from e
            (ts, cgid, ret, length, _t, nparams, nr, cpu, pid, tid, ppid, uid, gid, _f,
             comm_raw) = v[:nhdr]
            if nparams != n or length > len(buf) - off:
                raise DecodeError(
                    f"record at {off}: {ev_name} has {nparams} params and {length} bytes, "
                    f"expected {expected} params within {len(buf) - off} bytes"
                )
            raw_args: tuple[int, ...] = ()
            params: dict[str, object]
            if len(v) > nhdr + n:  # every fixed param present: values are in v
                if is_generic:
                    raw_args = v[nhdr + n :]
                    params = {}
                else:
                    params = dict(zip(names, v[nhdr + n :], strict=True))
            else:
                lens = v[nhdr : nhdr + n]
                if head_size + sum(lens) > length:
                    raise DecodeError(f"record at {off}: param lengths exceed the record length")
                pos = off + head_size
                params = {}
                for name, conv, ln in zip(names, convs, lens, strict=True):
                    params[name] = conv(buf, pos, ln)
                    pos += ln
                if is_generic:
                    raw_args = tuple(x if isinstance(x, int) else 0 for x in params.values())
                    params = {}
            for name in lacking:
                params[name] = None
            if post is not None:
                post(params)
            params[ret_name] = ret
            comm = comms.get(comm_raw)
            if comm is None:
                end = comm_raw.find(b"\0")
                comm = (comm_raw if end < 0 else comm_raw[:end]).decode("utf-8", "replace")
                if len(comms) < _COMM_CACHE_MAX:
                    comms[comm_raw] = comm
            return Event(ts + epoch, cpu, syscall_name(nr, ev_name), nr, ret, pid, tid, ppid,
                         uid, gid, comm, cgid, params, raw_args)

        return decode

    def decode(self, buf: bytes | bytearray | memoryview, off: int = 0) -> Event:
        """One record starting at `off` (the live ring's per-record path)."""
        frame = self._frame
        if frame is not None:
            out: list[Event] = []
            try:
                length: int = _LEN_TYPE.unpack_from(buf, off + _LEN_AT)[0]
            except struct.error:
                length = 0  # the careful path names the damage
            if length >= HDR_SIZE:
                frame(buf, off, off + length, out)
            return out[0] if out else self.decode_careful(buf, off)
        ev: Event | None
        try:
            fast = self._fast[buf[off + _TYPE_LO] | buf[off + _TYPE_HI] << 8]
            ev = None if fast is None else fast(buf, off, len(buf))
        except (struct.error, IndexError):  # short buffer or unknown type: careful path
            ev = None
        return self.decode_careful(buf, off) if ev is None else ev

    def decode_careful(self, buf: bytes | bytearray | memoryview, off: int = 0) -> Event:
        """One record through the general decoder: every check, precise errors."""
        try:
            etype = _U16.unpack_from(buf, off + _TYPE_AT)[0]
        except struct.error as e:
            raise DecodeError(f"record at {off}: truncated header") from e
        dec = self._by_type.get(etype)
        if dec is None:
            raise DecodeError(f"record at {off}: unknown event type {etype}")
        return dec(buf, off)

    def decode_stream(self, buf: bytes | bytearray | memoryview) -> list[Event]:
        """Back-to-back records, each at an 8-byte aligned offset (module ring, capture)."""
        out: list[Event] = []
        size = len(buf)
        end = self.decode_into(buf, 0, size, out)
        if end < size and any(bytes(buf[end:])):
            raise DecodeError(f"{size - end} trailing bytes after the last record")
        return out

    def stream_decoders(self) -> list[Any]:
        """A copy of the per-type-id batch decoders `decode_into` calls: each takes
        (buf, offset, size, append) and returns the next record's offset, or -1 when the
        record needs `careful_into`."""
        return list(self._fast_into)

    def decode_into(self, buf: bytes | bytearray | memoryview, start: int, end: int,
                    out: list[Event]) -> int:
        """Decode the 8-byte aligned records in buf[start:end] onto `out`; returns the
        offset after the last whole record. The batch path: one generated call per record,
        framing included (a ring or capture frame holds many records back to back)."""
        frame = self._frame
        if frame is not None:
            off = frame(buf, start, end, out)
            while off + HDR_SIZE <= end:  # stopped at a record the careful path must take
                off = frame(buf, self.careful_into(buf, off, end, out.append), end, out)
            return off
        off = start
        append = out.append
        fast = self._fast_into
        careful = self.careful_into
        while off + HDR_SIZE <= end:
            try:
                nxt = fast[buf[off + _TYPE_LO] | buf[off + _TYPE_HI] << 8](
                    buf, off, end, append)
            except (struct.error, IndexError):
                nxt = -1
            off = careful(buf, off, end, append) if nxt < 0 else nxt
        return off

    def careful_into(self, buf: bytes | bytearray | memoryview, off: int, end: int,
                     append: Callable[[Event], None]) -> int:
        """One record at `off` through the general decoder onto `append`; returns the next
        record's offset. Raises DecodeError on a damaged record."""
        length: int = _LEN_TYPE.unpack_from(buf, off + _LEN_AT)[0]
        if length < HDR_SIZE:
            raise DecodeError(f"record at {off}: length {length} below the header size")
        view = buf if end == len(buf) else memoryview(buf)[:end]
        append(self.decode_careful(view, off))
        return off + ((length + 7) & -8)

    def decode_many(self, records: Iterable[bytes]) -> list[Event]:
        decode = self.decode
        return [decode(r) for r in records]


def frame_records(records: Iterable[bytes]) -> bytes:
    """Concatenate records into the stream layout decode_events() reads (each padded
    to 8 bytes), e.g. to write ProbeSource.poll_raw() output to a capture file."""
    out = bytearray()
    for r in records:
        length = struct.unpack_from("=I", r, _LEN_AT)[0]
        out += r[:length]
        out += bytes(-length % 8)
    return bytes(out)


def decode_events(
    buf: bytes | bytearray | memoryview,
    arch: str | None = None,
    epoch_offset_ns: int | None = None,
) -> list[Event]:
    """Decode a byte stream of records (8-byte aligned, as the module and captures lay
    them out). `epoch_offset_ns` converts the records' CLOCK_BOOTTIME stamps; None uses
    this host's current offset, right for records captured since this boot."""
    return Decoder(arch, epoch_offset_ns).decode_stream(buf)


def encode_record(
    event_name: str,
    params: list[bytes],
    *,
    ret: int = 0,
    syscall_nr: int = -1,
    ts: int = 0,
    pid: int = 0,
    tid: int = 0,
    ppid: int = 0,
    uid: int = 0,
    gid: int = 0,
    cpu: int = 0,
    cgroup_id: int = 0,
    comm: str = "",
    flags: int = 0,
) -> bytes:
    """Build one record the way a producer would (tests, synthetic captures). `params`
    are the already-encoded param bytes in schema order."""
    spec = SPECS[EVENT_IDS[event_name]]
    if len(params) != len(spec.names):
        raise ValueError(f"{event_name} takes {len(spec.names)} params, got {len(params)}")
    body = b"".join(_U16.pack(len(p)) for p in params) + b"".join(params)
    length = HDR_SIZE + len(body)
    hdr = HDR.pack(
        ts, cgroup_id, ret, length, spec.id, len(params), syscall_nr, cpu, pid, tid, ppid,
        uid, gid, flags, comm.encode()[:15],
    )
    return hdr + body


def encode_fixed(ptype: str, value: int) -> bytes:
    return struct.pack("=" + _FIXED_CODE[ptype], value)
