"""What /proc says about one process: its thread row, its threads, its open fds.

Used to seed the state at start (every process) and, live, for a process first seen
mid-run. Everything here tolerates the process vanishing while it is read: a file that
cannot be read reads as empty.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from runtime.engine.state.containers import container_from_proc_cgroup
from runtime.engine.state.tables import FdInfo, ThreadInfo

# /proc/<pid>/loginuid of a process that never logged in: (uid_t)-1.
_NO_LOGINUID = 4294967295


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def numeric_entries(path: Path) -> list[str]:
    """The pid (or tid) directories under /proc or /proc/<pid>/task."""
    try:
        return [e for e in os.listdir(path) if e.isdigit()]
    except OSError:
        return []


def read_process(pdir: Path, pid: int) -> ThreadInfo | None:
    """The main thread of /proc/<pid>, or None when it is gone or unreadable."""
    status = read_text(pdir / "status")
    if not status:
        return None
    values: dict[str, str] = {}
    for line in status.splitlines():
        key, _, val = line.partition(":")
        values[key] = val.strip()
    try:
        ppid = int(values.get("PPid", "0"))
        uid = int(values.get("Uid", "0").split()[0])
        gid = int(values.get("Gid", "0").split()[0])
    except ValueError:
        return None
    raw_cmdline = read_text(pdir / "cmdline")
    argv = raw_cmdline.split("\0")
    if argv and argv[-1] == "":
        argv.pop()
    stat = read_text(pdir / "stat")
    tty = 0
    # The command name in stat may hold spaces and parens: fields start after the last ")".
    if ")" in stat:
        after = stat.rsplit(")", 1)[1].split()
        if len(after) > 4 and after[4].lstrip("-").isdigit():
            tty = int(after[4])
    try:
        loginuid = int(read_text(pdir / "loginuid").strip(), 0)
    except ValueError:
        loginuid = -1
    if loginuid == _NO_LOGINUID:
        loginuid = -1
    return ThreadInfo(
        tid=pid,
        pid=pid,
        ppid=ppid,
        comm=values.get("Name", ""),
        exe=argv[0] if argv else "",
        exepath=_readlink(pdir / "exe"),
        args=tuple(argv[1:]),
        cwd=_readlink(pdir / "cwd") or "/",
        uid=uid,
        gid=gid,
        loginuid=loginuid,
        tty=tty,
        container=container_from_proc_cgroup(read_text(pdir / "cgroup")),
    )


def read_threads(pdir: Path, main: ThreadInfo) -> Iterator[ThreadInfo]:
    """The process's other threads: its image under their own tid and comm."""
    for tid_text in numeric_entries(pdir / "task"):
        tid = int(tid_text)
        if tid == main.tid:
            continue
        comm = read_text(pdir / "task" / tid_text / "comm").strip()
        yield main.copy_as(tid, main.pid, main.ppid, comm or main.comm)


def read_fds(pdir: Path, limit: int, sockets: dict[int, FdInfo] | None = None
             ) -> Iterator[FdInfo]:
    """The process's open fds (at most `limit` of them), sockets described from
    `sockets` (socket inode -> template, see sockets.read_socket_table)."""
    fd_dir = pdir / "fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return
    for name in names[:limit]:
        if not name.isdigit():
            continue
        target = _readlink(fd_dir / name)
        if not target:
            continue
        fd = int(name)
        if target.startswith("socket:"):
            inode = target[len("socket:["):-1]
            known = sockets.get(int(inode)) if sockets and inode.isdigit() else None
            # Unknown (another netns, or gone): connect/accept will describe it later.
            yield replace(known, fd=fd) if known else FdInfo(fd, "unix", "u", "")
        elif target.startswith("pipe:"):
            yield FdInfo(fd, "pipe", "p", target)
        elif target.startswith("anon_inode:"):
            yield FdInfo(fd, target[len("anon_inode:"):].strip("[]"), "e", target)
        else:
            yield FdInfo(fd, "file", "f", target)
