"""The state machine: process and fd tables kept from events, which the rules read.

The engine calls `SystemState.update(ev)` for every event BEFORE evaluating rules on it, so an
execve's new image or an open's new fd is already visible to that event's rules (as in
libsinsp). A close removes its fd at once but keeps it as the event's fd (`fd_of`), and a
procexit's thread is removed at the next update, so the closing or exiting event still
resolves its fd and process. Tables are bounded: the oldest entries are
evicted first, so a long run cannot grow without limit.
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from runtime.engine.state import procfs
from runtime.engine.state.containers import (
    CgroupPaths,
    ContainerMetadata,
    container_from_cgroup_path,
    container_from_proc_cgroup,
)
from runtime.engine.state.names import NameDb
from runtime.engine.state.params import as_int, socket_family
from runtime.engine.state.process import apply_clone_ids, apply_exec_params
from runtime.engine.state.sockets import (
    AF_INET,
    AF_INET6,
    AF_UNIX,
    ICMP_PROTOS,
    SOCK_TYPE_L4,
    SOCK_TYPE_MASK,
    SOCKET_FAMILIES,
    parse_tuple,
    read_socket_table,
)
from runtime.engine.state.tables import FdInfo, ThreadInfo, new_row
from runtime.events import Event, SocketTuple

# Syscalls the state needs whatever the rules say: without them process names, fds and
# container ids go stale. The engine adds these to the driver's in-kernel filter.
REQUIRED_SYSCALLS: frozenset[str] = frozenset({
    "execve", "execveat",
    "clone", "clone3", "fork", "vfork",
    "procexit",
    "open", "openat", "openat2", "creat",
    "socket", "connect", "accept", "accept4",
    "close",
    "dup", "dup2", "dup3",
    "chdir", "fchdir",
})

# A record's header starts with its CLOCK_BOOTTIME stamp (driver/schema/events.yaml).
_BOOT_TS = struct.Struct("=Q")
# How far up `ancestors` walks: a corrupt ppid chain must not loop forever.
MAX_ANCESTORS = 64
AT_FDCWD = -100
EINPROGRESS = 115
CLONE_THREAD = 0x00010000
O_CREAT = 0o100
O_TRUNC = 0o1000
O_WRONLY = 0o1
O_DIRECTORY = 0o200000


def _is_normal_abs(path: str) -> bool:
    """False when an absolute path needs posixpath.normpath(): it has `//`, or a `.`/`..`
    segment. Dot-files (`/home/u/.config`) contain "/." yet need nothing, so they skip the
    call; with a trailing slash they are normalised as before."""
    if "//" in path:
        return False
    if "/." not in path:
        return True
    return not ("/./" in path or "/../" in path or path.endswith(("/", "/.", "/..")))


EventHandler = Callable[["SystemState", Event], None]


# How long before its parent's clone returns a child's row made from the child's own
# events is taken as that child's (see SystemState._clone); older, it is a leftover of an
# earlier thread with the same tid whose exit was lost.
CHILD_FIRST_WINDOW_NS = 60 * 1_000_000_000


class SystemState:
    """Process and fd tables kept from events; see the module docstring for the contract."""

    def __init__(
        self,
        *,
        max_threads: int = 65536,
        max_fds_per_process: int = 1024,
        max_processes_with_fds: int = 16384,
        passwd_path: str = "/etc/passwd",
        group_path: str = "/etc/group",
        proc_fallback_root: str | None = None,
        cgroup_root: str | None = None,
    ) -> None:
        self.max_threads = max_threads
        self.max_fds_per_process = max_fds_per_process
        self.max_processes_with_fds = max_processes_with_fds
        self.threads: dict[int, ThreadInfo] = {}
        self.fds: dict[int, dict[int, FdInfo]] = {}
        self.event_count = 0
        self._users = NameDb(passwd_path)
        self._groups = NameDb(group_path)
        # uid -> name as known so far (see NameDb.names): user_name() for a uid it lacks.
        self.user_names = self._users.names
        # Live mode only: read /proc for a process first seen mid-run (None in replay).
        self._proc_fallback = Path(proc_fallback_root) if proc_fallback_root else None
        # Live mode only: the cgroup v2 mount, to map an event's cgroup id to a container
        # when a process changes cgroup (see CgroupPaths).
        self._cgroup_paths = CgroupPaths(Path(cgroup_root)) if cgroup_root else None
        self._pending_threads: list[int] = []
        # The latest full event's time: a lite clone (no Event) made without its frame
        # (see `lite_frame`) dates its child by it, off by the time since that event.
        self._last_ts = 0
        # The frame lite records point into, and its boot -> epoch offset: a lite clone
        # reads its own timestamp there, so the child's start is the clone's time, as
        # the full Event's update would date it.
        self._lite_raw = b""
        self._lite_epoch_ns = 0
        # Live mode only: the container runtime's metadata, set and started by the runner.
        self.container_metadata: ContainerMetadata | None = None
        # The last event that changed the name of its fd (Falco's fd.name_changed).
        self.name_changed_event: Event | None = None
        # The event `update` last took, its thread (set whenever _cur_ev is an Event) and
        # fd (valid once _cur_fd_resolved). Generated code (rule matchers, output
        # formatters) reads these three directly for the event at hand, as
        # thread_of/fd_of would answer, without the method calls (runtime/engine/fields.py
        # EVENT_THREAD, EVENT_FD).
        self._cur_ev: Event | None = None
        self._cur_thread: ThreadInfo | None = None
        self._cur_fd: FdInfo | None = None
        self._cur_fd_resolved = False

    # ---- lookups -------------------------------------------------------------------------

    def thread(self, tid: int) -> ThreadInfo | None:
        return self.threads.get(tid)

    def fd(self, pid: int, fd: int) -> FdInfo | None:
        table = self.fds.get(pid)
        return None if table is None else table.get(fd)

    def user_name(self, uid: int) -> str | None:
        return self._users.get(uid)

    def group_name(self, gid: int) -> str | None:
        return self._groups.get(gid)

    def thread_of(self, ev: Event) -> ThreadInfo:
        """The event's thread, created from the event itself when never seen before."""
        if ev is self._cur_ev and self._cur_thread is not None:
            return self._cur_thread
        th = self.threads.get(ev.tid)
        if th is None:
            th = self._thread_from_event(ev)
        return th

    def parent_of(self, th: ThreadInfo) -> ThreadInfo | None:
        if th.ppid <= 0 or th.ppid == th.pid:
            return None
        return self.threads.get(th.ppid)

    def ancestor(self, th: ThreadInfo, level: int) -> ThreadInfo | None:
        """The `level`-th entry of `ancestors(th)` (1: the parent), or None past its end:
        parent_of's test inlined, as rules and outputs ask for proc.aname[N] per event."""
        if level > MAX_ANCESTORS:
            return None
        threads = self.threads
        while level > 0:
            ppid = th.ppid
            if ppid <= 0 or ppid == th.pid:
                return None
            parent = threads.get(ppid)
            if parent is None:
                return None
            th = parent
            level -= 1
        return th

    def ancestors(self, th: ThreadInfo) -> Iterator[ThreadInfo]:
        """Parent, grandparent, ... (bounded: a corrupt ppid chain must not loop forever)."""
        seen = 0
        cur = self.parent_of(th)
        while cur is not None and seen < MAX_ANCESTORS:
            yield cur
            seen += 1
            cur = self.parent_of(cur)

    def fd_of(self, ev: Event) -> FdInfo | None:
        """The fd the event acts on (the new fd for open/socket/accept), or None."""
        if ev is self._cur_ev and self._cur_fd_resolved:
            return self._cur_fd
        info = self._event_fd_info(ev)
        if ev is self._cur_ev:
            self._cur_fd = info
            self._cur_fd_resolved = True
        return info

    def event_fd_num(self, ev: Event) -> int | None:
        if ev.type in _FD_FROM_RES:
            return ev.res
        value = ev.params.get("fd")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    # ---- seeding -------------------------------------------------------------------------

    def seed_from_proc(self, proc_root: str = "/proc") -> int:
        """Load every thread (and the fds of every process) visible under proc_root."""
        root = Path(proc_root)
        entries = procfs.numeric_entries(root)
        if not entries:
            return 0
        sockets = read_socket_table(root / "net")
        count = 0
        for entry in entries:
            pdir = root / entry
            main = procfs.read_process(pdir, int(entry))
            if main is None:
                continue
            self._insert_thread(main)
            count += 1
            for thread in procfs.read_threads(pdir, main):
                self._insert_thread(thread)
                count += 1
            self._seed_fds(pdir, main.pid, sockets)
        return count

    def _seed_fds(self, pdir: Path, pid: int, sockets: dict[int, FdInfo] | None = None
                  ) -> None:
        for info in procfs.read_fds(pdir, self.max_fds_per_process, sockets):
            self._add_fd(pid, info)

    # ---- updates -------------------------------------------------------------------------

    def update(self, ev: Event) -> None:
        # Hot: runs for every event, so it stays a straight line of attribute stores.
        if self._pending_threads:
            self._flush_removals()
        self.event_count += 1
        self._cur_ev = ev
        self._last_ts = ev.ts
        self._cur_fd_resolved = False  # _cur_fd is read only once resolved
        th = self.threads.get(ev.tid)
        if th is None:
            th = self._thread_from_event(ev)
        else:
            # The kernel's view is authoritative: reparenting and setuid show up here.
            th.ppid = ev.ppid
            th.uid = ev.uid
            th.gid = ev.gid
        self._cur_thread = th
        handler = _HANDLERS.get(ev.type)
        if handler is not None:
            handler(self, ev)

    def lite_frame(self, raw: bytes, epoch_offset_ns: int) -> None:
        """The frame (and its decoder's epoch offset) the next `update_lite` records
        come from; b"" when done with it."""
        self._lite_raw = raw
        self._lite_epoch_ns = epoch_offset_ns

    def update_lite(self, rec: tuple[int, int, int, int, int, int, int, int, object]) -> bool:
        """`update` without an Event, for the event types `lite_kind` accepts, from the
        record's fields: (kind, record offset, tid, pid, ppid, uid, gid, res, params): the
        params `lite_kind` names, None, one value, or a tuple of them.
        Returns False, having changed nothing the caller's `update` of the full Event would
        not redo, when the thread is unknown: creating it needs the Event."""
        if self._pending_threads:
            self._flush_removals()
        kind, off, tid, pid, ppid, uid, gid, res, param = rec
        th = self.threads.get(tid)
        if th is None:
            return False
        self.event_count += 1
        self._cur_ev = None  # no Event exists for the per-event caches to refer to
        self._cur_fd_resolved = False
        th.ppid = ppid
        th.uid = uid
        th.gid = gid
        self._cur_thread = th
        if kind == LITE_CLOSE:
            if res == 0 and param.__class__ is int:
                table = self.fds.get(pid)
                self._cur_fd = table.pop(param, None) if table else None
                self._cur_fd_resolved = True
        elif kind == LITE_CLONE:
            # (flags, vpid, vtid) from a driver that sends the ids, else the flags alone.
            ids: dict[str, object] = {}
            if param.__class__ is tuple:
                param, ids["vpid"], ids["vtid"] = param
            ts = self._last_ts
            if self._lite_raw:
                ts = _BOOT_TS.unpack_from(self._lite_raw, off)[0] + self._lite_epoch_ns
            child = self._clone(th, res, as_int(param), ts)
            if res >= 0:
                apply_clone_ids(th, child, ts, ids)
        elif kind == LITE_PROCEXIT:
            self._pending_threads.append(tid)
        elif kind == LITE_SOCKET and res >= 0:
            self._socket(pid, res, *param)  # type: ignore[misc]
        return True

    def _flush_removals(self) -> None:
        for tid in self._pending_threads:
            th = self.threads.pop(tid, None)
            if th is not None and th.tid == th.pid:
                self.fds.pop(th.pid, None)
        self._pending_threads.clear()

    def _insert_thread(self, th: ThreadInfo) -> None:
        threads = self.threads
        if th.tid not in threads and len(threads) >= self.max_threads:
            del threads[next(iter(threads))]
        threads[th.tid] = th

    def _thread_from_event(self, ev: Event) -> ThreadInfo:
        th: ThreadInfo | None = None
        if self._proc_fallback is not None:
            th = procfs.read_process(self._proc_fallback / str(ev.pid), ev.pid)
            if th is not None:
                self._seed_fds(self._proc_fallback / str(ev.pid), ev.pid)
                th.tid = ev.tid
        if th is None:
            leader = self.threads.get(ev.pid)
            if leader is not None:
                th = leader.copy_as(ev.tid, leader.pid, ev.ppid, ev.comm)
            else:
                parent = self.threads.get(ev.ppid)
                th = ThreadInfo(
                    tid=ev.tid, pid=ev.pid, ppid=ev.ppid, comm=ev.comm, exe=ev.comm,
                    uid=ev.uid, gid=ev.gid,
                    cwd=parent.cwd if parent else "/",
                    container=parent.container if parent else None,
                    tty=parent.tty if parent else 0,
                    loginuid=parent.loginuid if parent else -1,
                )
        th.ppid = ev.ppid
        th.seen_ts = ev.ts
        self._insert_thread(th)
        return th

    def _add_fd(self, pid: int, info: FdInfo) -> None:
        table = self.fds.get(pid)
        if table is None:
            if len(self.fds) >= self.max_processes_with_fds:
                del self.fds[next(iter(self.fds))]
            table = self.fds[pid] = {}
        elif info.fd not in table and len(table) >= self.max_fds_per_process:
            del table[next(iter(table))]
        table[info.fd] = info

    def _abs_path(self, ev: Event, name: str, dirfd: object = AT_FDCWD) -> str:
        if not name:
            return name
        if name.startswith("/"):
            return name if _is_normal_abs(name) else posixpath.normpath(name)
        base: str | None = None
        dirfd_num = as_int(dirfd, AT_FDCWD)
        if dirfd_num != AT_FDCWD:
            info = self.fd(ev.pid, dirfd_num)
            base = info.name if info is not None else None
        if base is None:
            base = self.thread_of(ev).cwd or "/"
        return posixpath.normpath(posixpath.join(base, name))

    def _event_fd_info(self, ev: Event) -> FdInfo | None:
        num = self.event_fd_num(ev)
        if num is None:
            return None
        info = self.fd(ev.pid, num)
        if info is None and ev.type in _OPEN_TYPES:
            # A failed open has no table entry; rules still see the path it tried.
            info = self._open_fd_info(ev, num)
        return info

    def _open_fd_info(self, ev: Event, fd: int) -> FdInfo:
        params = ev.params
        name = params.get("name")
        if name.__class__ is not str:
            path_param = params.get("path")
            name = path_param if isinstance(path_param, str) else ""
        # Fast path: an absolute, already-normal path (the common case) needs no work.
        if not (name[:1] == "/" and _is_normal_abs(name)):
            name = self._abs_path(ev, name, params.get("dirfd", AT_FDCWD))
        flags = params.get("flags", 0)
        if flags.__class__ is not int:
            flags = as_int(flags)
        if ev.type == "creat":
            flags |= O_CREAT | O_WRONLY | O_TRUNC
        raw = params.get("name", params.get("path"))
        name_raw = raw if isinstance(raw, str) else ""
        if flags & O_DIRECTORY:
            return FdInfo(fd, "directory", "d", name, flags, name_raw=name_raw)
        return FdInfo(fd, "file", "f", name, flags, name_raw=name_raw)

    # -- per-syscall handlers (registered in _HANDLERS below) --

    def _on_execve(self, ev: Event) -> None:
        if ev.res != 0:
            return
        th = self._cur_thread
        assert th is not None
        params = ev.params
        args = params.get("args")
        if isinstance(args, (list, tuple)):
            th.args = tuple(map(str, args))
        # exec keeps the working directory: the cwd param is the one a relative
        # filename was resolved against
        cwd = params.get("cwd")
        if isinstance(cwd, str) and cwd:
            th.cwd = cwd
        exe = params.get("exe")
        filename = params.get("filename")
        trusted = params.get("trusted_exepath")
        if isinstance(trusted, str) and trusted:
            # The driver's path of the file the kernel runs (mm->exe_file): symlinks
            # resolved, "/memfd:<name> (deleted)" for a memfd, as libsinsp takes it.
            th.exepath = trusted
        elif isinstance(filename, str) and filename:
            # Not captured (an earlier driver's capture): the path exec was given.
            th.exepath = self._abs_path(ev, filename, params.get("dirfd", AT_FDCWD))
        if isinstance(exe, str) and exe:
            th.exe = exe
        elif isinstance(filename, str) and filename:
            th.exe = filename
        th.comm = ev.comm
        cgroup = params.get("cgroups") or params.get("cgroup")
        if isinstance(cgroup, str):
            # Falco's execve `cgroups` param: NUL-separated `controller=/path` entries.
            th.container = container_from_proc_cgroup(cgroup.replace("\0", "\n"))
        elif ev.cgroup_id and ev.cgroup_id != th.cgroup_id and self._cgroup_paths is not None:
            path = self.cgroup_path(ev.cgroup_id)
            if path is not None:
                th.container = container_from_cgroup_path(path)
        th.cgroup_id = ev.cgroup_id
        apply_exec_params(th, ev.type, params)

    def cgroup_path(self, cgroup_id: int) -> str | None:
        """Path (below the cgroup v2 root) of a cgroup id; None in replay, or when unknown."""
        paths = self._cgroup_paths
        return None if paths is None else paths.get(cgroup_id)

    def _on_clone(self, ev: Event) -> None:
        parent = self._cur_thread
        assert parent is not None
        child = self._clone(parent, ev.res, as_int(ev.params.get("flags")), ev.ts)
        if ev.res >= 0:
            apply_clone_ids(parent, child, ev.ts, ev.params)

    def _clone(self, parent: ThreadInfo, child_tid: int, flags: int,
               ts: int) -> ThreadInfo | None:
        """The new thread's row, or None for the child's own return (its thread was made
        by _thread_from_event) and for a failed clone."""
        if child_tid <= 0:
            return None
        is_thread = bool(flags & CLONE_THREAD)
        existing = self.threads.get(child_tid)
        if (existing is not None and existing.seen_ts
                and ts - existing.seen_ts < CHILD_FIRST_WINDOW_NS
                and existing.pid == (parent.pid if is_thread else child_tid)
                and existing.ppid == (parent.ppid if is_thread else parent.pid)):
            # The child's own events came first: always for vfork (the parent returns
            # only once the child has exec'd or exited), and for any clone whose exit
            # on one CPU reached the engine after the child's events on another. Its
            # row already holds what it did since, e.g. an execve's image; the parent's
            # copy would undo that and give the child its parent's exe and command
            # line. libsinsp keeps such a child the same way.
            if not is_thread:
                inherited = self.fds.get(parent.pid)
                if inherited:
                    self.fds[child_tid] = {**inherited, **self.fds.get(child_tid, {})}
            return existing
        if is_thread:
            child = parent.copy_as(child_tid, parent.pid, parent.ppid)
        else:
            child = parent.copy_as(child_tid, child_tid, parent.pid)
        self._insert_thread(child)
        if not is_thread:
            table = self.fds.get(parent.pid)
            if table:
                if len(self.fds) >= self.max_processes_with_fds:
                    del self.fds[next(iter(self.fds))]
                self.fds[child_tid] = dict(table)
        return child

    def _on_procexit(self, ev: Event) -> None:
        self._pending_threads.append(ev.tid)

    def _on_open(self, ev: Event) -> None:
        # The hottest handler: _open_fd_info inlined for the common absolute-path case.
        fd = ev.res
        params = ev.params
        name = params.get("name")
        flags = params.get("flags", 0)
        if (name.__class__ is str and name[:1] == "/" and "//" not in name
                and ("/." not in name or _is_normal_abs(name))
                and flags.__class__ is int and ev.type != "creat"):
            # Slot stores beat the dataclass __init__ with its six defaults by ~2x.
            info = new_row(FdInfo)
            if flags & O_DIRECTORY:
                info.type = "directory"
                info.typechar = "d"
            else:
                info.type = "file"
                info.typechar = "f"
            info.fd = fd
            info.name = info.name_raw = name
            info.flags = flags
            info.l4proto = info.cip = info.cport = info.sip = info.sport = None
            info.is_server = info.connected = False
        else:
            info = self._open_fd_info(ev, fd)
        # A failed open keeps its path for the rules but never enters the table.
        self._cur_fd = info
        self._cur_fd_resolved = True
        if fd < 0:
            return
        table = self.fds.get(ev.pid)
        if table is None or (fd not in table and len(table) >= self.max_fds_per_process):
            self._add_fd(ev.pid, info)
        else:
            table[fd] = info

    def _on_socket(self, ev: Event) -> None:
        if ev.res < 0:
            return
        params = ev.params
        self._socket(ev.pid, ev.res, params.get("domain", params.get("family")),
                     params.get("type"), params.get("proto"))

    def _socket(self, pid: int, fd: int, domain: object, sock_type: object, proto: object
                ) -> None:
        family = socket_family(domain)
        kind, char = SOCKET_FAMILIES.get(family, ("unix", "u"))
        l4 = SOCK_TYPE_L4.get(as_int(sock_type) & SOCK_TYPE_MASK) \
            if family in (AF_INET, AF_INET6) else None
        if l4 == "raw" and as_int(proto) in ICMP_PROTOS:
            l4 = "icmp"
        info = new_row(FdInfo)  # slot stores: ~2x cheaper than the keyword __init__
        info.fd = fd
        info.type = kind
        info.typechar = char
        info.name = info.name_raw = ""
        info.flags = 0
        info.l4proto = l4
        info.cip = info.cport = info.sip = info.sport = None
        info.is_server = info.connected = False
        self._add_fd(pid, info)

    def _socket_from_tuple(self, ev: Event, fd: int, is_server: bool, connected: bool
                           ) -> None:
        params = ev.params
        table = self.fds.get(ev.pid)
        existing = table.get(fd) if table is not None else None
        tup = params.get("tuple")
        cip: str | None
        cport: int | None
        sip: str | None
        sport: int | None
        if isinstance(tup, SocketTuple):  # decoded: the ends come structured
            _family, cip, cport, sip, sport = tup
            name = str(tup)  # Falco's text, for fd.name
        elif isinstance(tup, str) and "->" in tup:  # built by hand: Falco's text
            cip, cport, sip, sport = parse_tuple(tup)
            name = tup
        else:
            addr = params.get("addr")
            if not isinstance(addr, str):
                return
            port = params.get("port")
            sip, sport = addr, as_int(port) if port is not None else None
            cip, cport = None, None
            name = f"{addr}:{port}" if port is not None else addr
        family = socket_family(params["family"]) if "family" in params else 0
        if family == AF_UNIX or (sip is not None and sip.startswith("/")):
            kind, char = "unix", "u"
        elif family == AF_INET6 or (sip is not None and ":" in sip):
            kind, char = "ipv6", "6"
        else:
            kind, char = "ipv4", "4"
        l4 = params.get("l4proto")
        l4proto = l4 if l4.__class__ is str else (existing.l4proto if existing else None)
        if l4proto is None and kind != "unix":
            l4proto = "tcp"
        if existing is not None and existing.name != name:
            self.name_changed_event = ev
        info = new_row(FdInfo)  # slot stores: ~2x cheaper than the 11-argument __init__
        info.fd = fd
        info.type = kind
        info.typechar = char
        info.name = name
        info.name_raw = ""
        info.flags = 0
        info.l4proto = l4proto
        info.cip = cip
        info.cport = cport
        info.sip = sip
        info.sport = sport
        info.is_server = is_server
        info.connected = connected
        self._add_fd(ev.pid, info)
        self._cur_fd = info
        self._cur_fd_resolved = True

    def _on_connect(self, ev: Event) -> None:
        fd = ev.params.get("fd")
        if isinstance(fd, int) and fd >= 0:
            # As libsinsp: a non-blocking connect in progress counts as connected.
            self._socket_from_tuple(ev, fd, is_server=False,
                                    connected=ev.res >= 0 or ev.res == -EINPROGRESS)

    def _on_accept(self, ev: Event) -> None:
        if ev.res >= 0:
            self._socket_from_tuple(ev, ev.res, is_server=True, connected=True)

    def _on_transfer(self, ev: Event) -> None:
        """sendto/recvfrom/sendmsg/recvmsg: a datagram socket's ends are those of its
        latest peer, so a tuple unlike the fd's name renames the fd (fd.name_changed)."""
        if ev.res < 0:
            return
        params = ev.params
        tup = params.get("tuple")
        fd = params.get("fd")
        if tup is None or fd.__class__ is not int:
            return
        info = self.fd(ev.pid, fd)
        if info is None or info.typechar not in ("4", "6"):
            return
        if isinstance(tup, SocketTuple):
            _family, src, sport, dst, dport = tup
        elif isinstance(tup, str) and "->" in tup:
            src, sport, dst, dport = parse_tuple(tup)
        else:
            return
        if src is None or dst is None:
            return  # a tuple that says too little to rename by
        # Sent: src is this end, the client; received unconnected: src is the peer, and
        # this end (the receiver) the server, as libsinsp assigns the roles.
        received = ev.type.startswith("recv")
        is_server = info.is_server or (received and not info.connected)
        if is_server:
            ends = (src, sport, dst, dport) if received else (dst, dport, src, sport)
        else:
            ends = (dst, dport, src, sport) if received else (src, sport, dst, dport)
        if ends == (info.cip, info.cport, info.sip, info.sport):
            return  # the same peer as before
        info.is_server = is_server
        info.cip, info.cport, info.sip, info.sport = ends
        info.name = f"{ends[0]}:{ends[1]}->{ends[2]}:{ends[3]}"
        self.name_changed_event = ev
        self._cur_fd = info
        self._cur_fd_resolved = True

    def _on_close(self, ev: Event) -> None:
        fd = ev.params.get("fd")
        if ev.res == 0 and fd.__class__ is int:
            # Gone from the table now, yet still the close event's own fd for its rules.
            table = self.fds.get(ev.pid)
            self._cur_fd = table.pop(fd, None) if table else None
            self._cur_fd_resolved = True

    def _on_dup(self, ev: Event) -> None:
        if ev.res < 0:
            return
        params = ev.params
        old = params.get("oldfd", params.get("fd"))
        info = self.fd(ev.pid, as_int(old, -1))
        if info is not None and ev.res != info.fd:
            self._add_fd(ev.pid, replace(info, fd=ev.res))

    def _on_chdir(self, ev: Event) -> None:
        if ev.res != 0:
            return
        th = self._cur_thread
        assert th is not None
        path = ev.params.get("path")
        if isinstance(path, str) and path:
            th.cwd = self._abs_path(ev, path)

    def _on_fchdir(self, ev: Event) -> None:
        if ev.res != 0:
            return
        th = self._cur_thread
        assert th is not None
        info = self.fd(ev.pid, as_int(ev.params.get("fd"), -1))
        if info is not None and info.name:
            th.cwd = info.name


_OPEN_TYPES = frozenset({"open", "openat", "openat2", "creat"})
# Syscalls whose return value is the fd they act on.
_FD_FROM_RES = _OPEN_TYPES | {"socket", "accept", "accept4", "dup", "dup2", "dup3"}

_HANDLERS: dict[str, EventHandler] = {
    "execve": SystemState._on_execve,
    "execveat": SystemState._on_execve,
    "clone": SystemState._on_clone,
    "clone3": SystemState._on_clone,
    "fork": SystemState._on_clone,
    "vfork": SystemState._on_clone,
    "procexit": SystemState._on_procexit,
    "open": SystemState._on_open,
    "openat": SystemState._on_open,
    "openat2": SystemState._on_open,
    "creat": SystemState._on_open,
    "socket": SystemState._on_socket,
    "connect": SystemState._on_connect,
    "accept": SystemState._on_accept,
    "accept4": SystemState._on_accept,
    "sendto": SystemState._on_transfer,
    "recvfrom": SystemState._on_transfer,
    "sendmsg": SystemState._on_transfer,
    "recvmsg": SystemState._on_transfer,
    "close": SystemState._on_close,
    "dup": SystemState._on_dup,
    "dup2": SystemState._on_dup,
    "dup3": SystemState._on_dup,
    "chdir": SystemState._on_chdir,
    "fchdir": SystemState._on_fchdir,
}

# `update_lite` kinds: what the state does for an event beyond the thread's ids.
LITE_IDS, LITE_CLOSE, LITE_CLONE, LITE_PROCEXIT, LITE_SOCKET = range(5)
_LITE_BY_HANDLER: dict[EventHandler | None, tuple[int, tuple[str, ...]]] = {
    None: (LITE_IDS, ()),
    SystemState._on_close: (LITE_CLOSE, ("fd",)),
    SystemState._on_clone: (LITE_CLONE, ("flags", "vpid", "vtid")),
    SystemState._on_procexit: (LITE_PROCEXIT, ()),
    SystemState._on_socket: (LITE_SOCKET, ("domain", "type", "proto")),
}


def lite_kind(evt_type: str, param_names: tuple[str, ...]
              ) -> tuple[int, tuple[str, ...]] | None:
    """(kind, the params it reads) when `update_lite` can stand in for `update` on events
    of this type and params, else None (the state needs the whole Event)."""
    found = _LITE_BY_HANDLER.get(_HANDLERS.get(evt_type))
    if found is not None and found[0] == LITE_CLONE and not {"vpid", "vtid"} <= set(param_names):
        found = (LITE_CLONE, ("flags",))  # a driver that sends no namespace ids
    if found is None or not set(found[1]) <= set(param_names):
        return None  # fork and vfork carry no flags
    return found
