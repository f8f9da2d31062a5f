"""fd.* fields added for Falco's public rules:
connection state, raw names, ip/port either end, resolved names, and evt.buffer.

Registered into `runtime.engine.fields.FIELDS` when `runtime.engine.fields` is imported.

Semantics follow libsinsp's fd filter checks:
  fd.connected     connect() succeeded or is in progress (EINPROGRESS), or accept()ed;
                   false after a failed connect, and for files
  fd.name_changed  this event renamed its fd: a connect to another peer, or a datagram
                   send/receive whose peer differs from the fd's last one
  fd.nameraw       the path exactly as the open was given it (`//` collapsed, as
                   libsinsp does), "" for fds not opened by path
  fd.ip / fd.port  either end: `=`/`in` hold when one end matches, `!=` (fd.ip) when
                   neither does
  fd.*ip.name      the domain names of that end's address, from a DNS table that holds
                   only the names rules compare against, resolved (runtime.engine.dns, as
                   libsinsp's DNS manager); an address none of them resolved to extracts
                   NULL (`<NA>` in outputs, comparisons false), as in Falco.
  evt.buffer       the `data` param of read/write/send/recv events (bytes): `bcontains`
                   compares hex bytes, `contains` text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, SupportsIndex, cast

from runtime.engine.fields import (
    FIELDS,
    ArgKind,
    BoundField,
    FieldDef,
    FieldType,
    UnknownFieldError,
    _define,
    fd_end_ips,
)
from runtime.engine.state import FdInfo, SystemState

if TYPE_CHECKING:
    from runtime.events import Event

_IP_TYPECHARS = ("4", "6")


def _connected(ev: Event, st: SystemState) -> object:
    info = st.fd_of(ev)
    return None if info is None else info.connected


def _name_changed(ev: Event, st: SystemState) -> object:
    info = st.fd_of(ev)
    if info is None:
        return None
    return st.name_changed_event is ev


def _collapse_slashes(path: str) -> str:
    while "//" in path:
        path = path.replace("//", "/")
    return path


def _nameraw_of(info: FdInfo) -> str:
    raw = info.name_raw
    return _collapse_slashes(raw) if "//" in raw else raw


def _nameraw(ev: Event, st: SystemState) -> object:
    info = st.fd_of(ev)
    return None if info is None else _nameraw_of(info)


def fd_ips(ev: Event, st: SystemState) -> object:
    """Both ends' addresses (one for a listening socket), or None: not an IP socket."""
    info = st.fd_of(ev)
    if info is None or info.typechar not in _IP_TYPECHARS:
        return None
    return fd_end_ips(info)


def fd_ports(ev: Event, st: SystemState) -> object:
    """Both ends' ports; [] when the fd is not an IP socket (a list field: never None)."""
    info = st.fd_of(ev)
    if info is None or info.typechar not in _IP_TYPECHARS:
        return []
    return [port for port in (info.cport, info.sport) if port is not None]


def _define_resolved_name(name: str, desc: str, address_field: Callable[[str, str | None],
                                                                        BoundField]) -> None:
    """A list of the watched names the end's address resolved from: `=`/`in` hold when
    one of them matches (an address two rule names share matches both), outputs join them."""
    from runtime.engine.dns import DNS

    def build(text: str, arg: str | None) -> BoundField:
        if arg is not None:
            raise UnknownFieldError(f"field '{name}' takes no argument")
        address = address_field(text, None).extract

        def extract(ev: Event, st: SystemState) -> object:
            return DNS.names_of(address(ev, st))  # None: `<NA>` in outputs

        def names(ev: Event, st: SystemState) -> object:
            return DNS.names_of(address(ev, st)) or ()  # conditions test each name

        helper = f"_dns_{name.split('.')[1]}"
        return BoundField(text, FieldType.STRING, extract, inline=f"{helper}(ev, st)",
                          is_list=True, helpers=((helper, names),), on_literals=DNS.watch)

    FIELDS[name] = FieldDef(name, FieldType.STRING, desc, ArgKind.NONE, build)


class Buffer(bytes):
    """An I/O buffer: bytes that text operators can also search.

    `bcontains`/`bstartswith` see the exact bytes; `contains`, `startswith`, `endswith`
    and `icontains` take a text needle, compared as its UTF-8 bytes, as Falco compares a
    buffer with a string.
    """

    __slots__ = ()

    def __contains__(self, item: object) -> bool:
        needle = item.encode("utf-8") if isinstance(item, str) else item
        return bytes.__contains__(self, needle)  # type: ignore[operator]

    def startswith(self, prefix: object, *args: SupportsIndex | None) -> bool:
        needle = prefix.encode("utf-8") if isinstance(prefix, str) else prefix
        return bytes.startswith(self, cast(bytes, needle), *args)

    def endswith(self, suffix: object, *args: SupportsIndex | None) -> bool:
        needle = suffix.encode("utf-8") if isinstance(suffix, str) else suffix
        return bytes.endswith(self, cast(bytes, needle), *args)

    def lower(self) -> Buffer:
        return Buffer(bytes.lower(self))

    def __str__(self) -> str:
        # Falco's default buffer text: printable ASCII as is, any other byte as `.`.
        return "".join(chr(b) if 32 <= b < 127 else "." for b in self)


def _buffer(ev: Event, st: SystemState) -> object:
    data = ev.params.get("data")
    if isinstance(data, bytes):
        return data if data.__class__ is Buffer else Buffer(data)
    if isinstance(data, str):  # events built by hand
        return Buffer(data.encode("utf-8", "surrogateescape"))
    return None


def _define_list(name: str, ftype: FieldType, desc: str,
                 extract: object) -> None:
    """A field with a value per fd end: comparisons hold when any end matches."""
    def build(text: str, arg: str | None) -> BoundField:
        if arg is not None:
            raise UnknownFieldError(f"field '{name}' takes no argument")
        return BoundField(text, ftype, extract, nullable=False,  # type: ignore[arg-type]
                          is_list=True)

    FIELDS[name] = FieldDef(name, ftype, desc, ArgKind.NONE, build)


_define("fd.connected", FieldType.BOOL, "true when the socket is connected", _connected)
_define("fd.name_changed", FieldType.BOOL, "true when this event changed the fd's name",
        _name_changed)
_define("fd.nameraw", FieldType.STRING, "the path as the open was given it, unnormalised",
        # _nameraw_of inlined: a path with no `//` (nearly all) costs no call.
        _nameraw, inline="(_f and (_nr_ if '//' not in (_nr_ := _f.name_raw)"
                         " else _collapse_slashes(_nr_)))",
        helpers=(("_collapse_slashes", _collapse_slashes),))
# IPNET: one check over both ends, so `!=` means "neither end", as Falco's fd.ip does.
_define("fd.ip", FieldType.IPNET, "either end's IP address", fd_ips,
        inline=f"(None if _f is None or _f.typechar not in {_IP_TYPECHARS!r} else fd_end_ips(_f))",
        helpers=(("fd_end_ips", fd_end_ips),))
_define_list("fd.port", FieldType.INT, "either end's port", fd_ports)
for _end in ("sip", "cip", "lip", "rip"):
    _define_resolved_name(f"fd.{_end}.name", f"domain name of fd.{_end} (from the names rules "
                          "compare it against, resolved)", FIELDS[f"fd.{_end}"].build)
_define("evt.buffer", FieldType.STRING, "the data param of I/O events (bytes)", _buffer)

__all__ = ["Buffer", "fd_ips", "fd_ports"]
