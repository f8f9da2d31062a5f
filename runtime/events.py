"""The decoded event every event source yields and the rules engine consumes.

Decoders (CO-RE probe, per-kernel probe, kernel module device, capture replay) all produce
this one type, so the engine never knows which driver it is reading from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# Falco's direction marker: we emit one event per syscall at exit, so every event is "<".
EXIT_DIRECTION = "<"

_AF_UNIX = 1


def _endpoint_text(addr: str | None, port: int | None) -> str:
    if addr is None:
        return ""
    return addr if port is None else f"{addr}:{port}"


class SocketTuple(NamedTuple):
    """The `tuple` param of connect and accept: a socket's two ends, as decoded.

    Carried structured from the decoder to the state (which fills fd.cip/fd.sip & co.
    from it); `str()` gives Falco's text, what fd.name and evt.arg.tuple show:
    `src:sport->dst:dport`, `->dst:dport` when only the destination is known (a connect
    the socket could not describe: unconnected UDP, failures), and the bare path of a
    unix socket. src is the client for connect and the peer for accept.
    """

    family: int  # AF_INET, AF_INET6, AF_UNIX, ...
    src: str | None  # None: only the destination is known
    sport: int | None
    dst: str | None  # IP text or unix socket path; None: no address in a known family
    dport: int | None

    def __str__(self) -> str:
        dst = _endpoint_text(self.dst, self.dport)
        if self.src is not None:
            return f"{_endpoint_text(self.src, self.sport)}->{dst}"
        return dst if self.family == _AF_UNIX else f"->{dst}"


@dataclass(slots=True)
class Event:
    """One syscall (or process lifecycle) event, already decoded.

    `type` is the event name rules match on: the syscall name (`openat`, `execve`, ...)
    for syscall events, `procexit` for process exit. `params` uses Falco's parameter
    names (`fd`, `name`, `flags`, `mode`, `dirfd`, `exe`, `args`, `cwd`, `tuple`, ...),
    so Falco rules written against `evt.arg.<name>` work unchanged. A decoded `tuple` is
    a SocketTuple (its `str()` is Falco's text); events built by hand may give the text.
    """

    ts: int  # nanoseconds since the Unix epoch
    cpu: int
    type: str
    syscall_nr: int
    res: int  # the syscall's return value (negative errno on failure)
    pid: int  # thread-group id
    tid: int
    ppid: int
    uid: int
    gid: int
    comm: str
    cgroup_id: int
    params: dict[str, object] = field(default_factory=dict)
    raw_args: tuple[int, ...] = ()

    @property
    def dir(self) -> str:
        return EXIT_DIRECTION
