"""The decoded event every event source yields and the rules engine consumes.

Decoders (CO-RE probe, per-kernel probe, kernel module device, capture replay) all produce
this one type, so the engine never knows which driver it is reading from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Falco's direction marker: we emit one event per syscall at exit, so every event is "<".
EXIT_DIRECTION = "<"


@dataclass(slots=True)
class Event:
    """One syscall (or process lifecycle) event, already decoded.

    `type` is the event name rules match on: the syscall name (`openat`, `execve`, ...)
    for syscall events, `procexit` for process exit. `params` uses Falco's parameter
    names (`fd`, `name`, `flags`, `mode`, `dirfd`, `exe`, `args`, `cwd`, `tuple`, ...),
    so Falco rules written against `evt.arg.<name>` work unchanged.
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
