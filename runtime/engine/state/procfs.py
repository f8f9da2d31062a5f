"""What /proc says about one process: its thread row, its threads, its open fds.

Used to seed the state at start (every process) and, live, for a process first seen
mid-run. Everything here tolerates the process vanishing while it is read: a file that
cannot be read reads as empty.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from runtime.engine.state.containers import container_from_proc_cgroup
from runtime.engine.state.process import (
    EXE_FROM_MEMFD,
    EXE_LOWER_LAYER,
    EXE_UPPER_LAYER,
    EXE_WRITABLE,
    UNKNOWN_ID,
    Capabilities,
    ExeFile,
    loginuid_from_u32,
)
from runtime.engine.state.tables import FdInfo, ThreadInfo

# As the driver caps the environment it sends with execve.
ENVIRON_LIMIT = 4096
# /proc/<pid>/stat fields counted after the ")" closing the command name (proc(5) - 3).
_STAT_PGRP, _STAT_SESSION, _STAT_TTY, _STAT_STARTTIME = 2, 3, 4, 19
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")


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


def read_environ(pdir: Path) -> tuple[str, ...] | None:
    """The first ENVIRON_LIMIT bytes of the environment as "K=V" strings; None when it
    cannot be read (another user's process without privilege, a kernel thread)."""
    try:
        with (pdir / "environ").open("rb") as f:
            raw = f.read(ENVIRON_LIMIT)
    except OSError:
        return None
    return tuple(v.decode("utf-8", "replace") for v in raw.split(b"\0") if v)


def _innermost(value: str | None) -> int | None:
    """The last id of an NS* status line: the id inside the process's own namespace."""
    if not value:
        return None
    last = value.split()[-1]
    return int(last) if last.lstrip("-").isdigit() else None


def _capabilities(values: dict[str, str]) -> Capabilities | None:
    try:
        return Capabilities(int(values["CapInh"], 16), int(values["CapPrm"], 16),
                            int(values["CapEff"], 16))
    except (KeyError, ValueError):
        return None


def boot_time_ns() -> int:
    """The epoch time of boot, in ns: starttime in /proc/<pid>/stat counts from it."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def _unescape_mountinfo(text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo octal escapes.
    return _MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def overlay_layer(pdir: Path, exe_path: str) -> int:
    """EXE_UPPER_LAYER when the exe's mount is an overlay and the file is in its upper
    dir, EXE_LOWER_LAYER when it is an overlay file from a lower layer, else 0."""
    best: tuple[str, str] | None = None  # (mount point, super options) of the deepest match
    for line in read_text(pdir / "mountinfo").splitlines():
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        rest = tail.split()
        if not sep or len(fields) < 5 or len(rest) < 3:
            continue
        point = _unescape_mountinfo(fields[4])
        prefix = point.rstrip("/") + "/"
        inside = exe_path == point or exe_path.startswith(prefix)
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, rest[2]) if rest[0] == "overlay" else (point, "")
    if best is None or not best[1]:
        return 0
    upper = next((opt[len("upperdir="):] for opt in best[1].split(",")
                  if opt.startswith("upperdir=")), None)
    if upper is None:
        return EXE_LOWER_LAYER  # a read-only overlay: every file is from a lower layer
    relative = exe_path[len(best[0].rstrip("/")):].lstrip("/")
    try:
        found = os.lstat(os.path.join(_unescape_mountinfo(upper), relative))
    except OSError:
        return EXE_LOWER_LAYER
    # A whiteout (char device 0:0) hides the lower file, so it is not the file run.
    is_whiteout = stat.S_ISCHR(found.st_mode) and found.st_rdev == 0
    return EXE_LOWER_LAYER if is_whiteout else EXE_UPPER_LAYER


def writable_by(info: os.stat_result, uid: int, gid: int, read_only: bool) -> bool:
    """The driver asks the kernel whether the task may write the exe; from outside, the
    mode bits against the process's ids approximate that (root may write any file)."""
    if read_only:
        return False
    if uid == 0:
        return True
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IWUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IWGRP)
    return bool(info.st_mode & stat.S_IWOTH)


def read_exe_file(pdir: Path, uid: int, gid: int, start_ts: int) -> ExeFile | None:
    """The running executable's inode facts and flags; None when /proc/<pid>/exe cannot
    be followed (kernel threads, another user's process without privilege)."""
    link = _readlink(pdir / "exe")
    if not link:
        return None
    try:
        info = os.stat(pdir / "exe")
        read_only = bool(os.statvfs(pdir / "exe").f_flag & os.ST_RDONLY)
    except OSError:
        return None
    flags = EXE_WRITABLE if writable_by(info, uid, gid, read_only) else 0
    if link.startswith("/memfd:"):
        flags |= EXE_FROM_MEMFD
    else:
        flags |= overlay_layer(pdir, link.removesuffix(" (deleted)"))
    since = start_ts - info.st_ctime_ns if start_ts and info.st_ctime_ns else 0
    return ExeFile(flags, info.st_ino, info.st_ctime_ns, info.st_mtime_ns, since)


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
    stat_text = read_text(pdir / "stat")
    # The command name in stat may hold spaces and parens: fields start after the last ")".
    after = stat_text.rsplit(")", 1)[1].split() if ")" in stat_text else []
    numbers = [int(v) if v.lstrip("-").isdigit() else None for v in after]

    def stat_field(index: int) -> int | None:
        return numbers[index] if index < len(numbers) else None

    tty = stat_field(_STAT_TTY) or 0
    starttime = stat_field(_STAT_STARTTIME)
    start_ts = boot_time_ns() + starttime * 1_000_000_000 // _CLOCK_TICKS \
        if starttime is not None else 0
    vpgid = _innermost(values.get("NSpgid"))
    sid = _innermost(values.get("NSsid"))
    try:
        loginuid = loginuid_from_u32(int(read_text(pdir / "loginuid").strip(), 0))
    except ValueError:
        loginuid = -1
    vpid = _innermost(values.get("NStgid"))
    vtid = _innermost(values.get("NSpid"))
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
        start_ts=start_ts,
        vpid=vpid if vpid is not None else UNKNOWN_ID,
        vtid=vtid if vtid is not None else UNKNOWN_ID,
        vpgid=vpgid if vpgid is not None else stat_field(_STAT_PGRP) or UNKNOWN_ID,
        sid=sid if sid is not None else stat_field(_STAT_SESSION) or UNKNOWN_ID,
        env=read_environ(pdir),
        exe_file=read_exe_file(pdir, uid, gid, start_ts),
        caps=_capabilities(values),
    )


def read_threads(pdir: Path, main: ThreadInfo) -> Iterator[ThreadInfo]:
    """The process's other threads: its image under their own tid and comm."""
    for tid_text in numeric_entries(pdir / "task"):
        tid = int(tid_text)
        if tid == main.tid:
            continue
        comm = read_text(pdir / "task" / tid_text / "comm").strip()
        thread = main.copy_as(tid, main.pid, main.ppid, comm or main.comm)
        # In the host pid namespace a thread's virtual id is its tid; inside another, its
        # own events will say (the start stays the process's: close enough for a thread).
        thread.vtid = tid if main.vpid == main.pid else UNKNOWN_ID
        yield thread


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
