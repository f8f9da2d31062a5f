"""The rows of the state's tables: one ThreadInfo per thread, one FdInfo per open fd.

Rules read these through runtime/engine/fields.py; they are plain slotted records, built
by the event handlers (runtime/engine/state/machine.py) and by /proc seeding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.engine.state.containers import HOST_CONTAINER_ID, ContainerRef
from runtime.engine.state.process import Capabilities, ExeFile

# object.__new__ plus slot stores builds a row at about half the cost of the dataclass
# __init__ with its defaults: the hot handlers (open, socket, connect, clone) use it.
new_row = object.__new__


@dataclass(slots=True)
class FdInfo:
    fd: int
    type: str  # Falco's fd.type: file, directory, ipv4, ipv6, unix, pipe, ...
    typechar: str  # Falco's fd.typechar: f, d, 4, 6, u, p, ...
    name: str  # path for files, "cip:cport->sip:sport" for connected sockets
    flags: int = 0
    l4proto: str | None = None
    cip: str | None = None
    cport: int | None = None
    sip: str | None = None
    sport: int | None = None
    is_server: bool = False  # accept side: the local end is the server
    # Falco's fd.connected: connect() succeeded (or is in progress), or accept()ed.
    connected: bool = False
    # Falco's fd.nameraw: the path as the open was given it (files only). Provenance, not
    # identity: two rows for the same file compare equal however it was spelled.
    name_raw: str = field(default="", compare=False)


@dataclass(slots=True)
class ThreadInfo:
    tid: int
    pid: int
    ppid: int
    comm: str
    exe: str = ""  # argv[0], Falco's proc.exe
    exepath: str = ""  # the executable's full path, Falco's proc.exepath
    args: tuple[str, ...] = ()  # argv[1:]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    loginuid: int = -1
    tty: int = 0
    container: ContainerRef | None = None
    cgroup_id: int = 0
    # Process facts (runtime/engine/state/process.py); -1 / 0 / None = not captured.
    start_ts: int = 0  # libsinsp's clone_ts: ns since the epoch
    vpid: int = -1
    vtid: int = -1
    vpgid: int = -1
    sid: int = -1
    env: tuple[str, ...] | None = None
    exe_file: ExeFile | None = None
    caps: Capabilities | None = None
    # ts of the first event the thread itself made, when its row was made from that event
    # (0: made by its parent's clone, copied, or read from /proc). A clone processed later
    # than this is older than what the row already holds: see SystemState._clone.
    seen_ts: int = 0

    @property
    def container_id(self) -> str:
        return HOST_CONTAINER_ID if self.container is None else self.container.id

    def copy_as(self, tid: int, pid: int, ppid: int, comm: str | None = None) -> ThreadInfo:
        """A new thread inheriting this one's image (dataclasses.replace is ~10x slower, and
        slot stores are ~2x faster than the 14-argument __init__)."""
        th = new_row(ThreadInfo)
        th.tid = tid
        th.pid = pid
        th.ppid = ppid
        th.comm = self.comm if comm is None else comm
        th.exe = self.exe
        th.exepath = self.exepath
        th.args = self.args
        th.cwd = self.cwd
        th.uid = self.uid
        th.gid = self.gid
        th.loginuid = self.loginuid
        th.tty = self.tty
        th.container = self.container
        th.cgroup_id = self.cgroup_id
        th.start_ts = self.start_ts
        th.vpid = self.vpid
        th.vtid = self.vtid
        th.vpgid = self.vpgid
        th.sid = self.sid
        th.env = self.env
        th.exe_file = self.exe_file
        th.caps = self.caps
        th.seen_ts = 0
        return th
