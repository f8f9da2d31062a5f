"""proc.* and thread.* fields added for Falco's public rules:
process identity, environment, executable flags and inode times, capabilities.

Registered into `runtime.engine.fields.FIELDS` when `runtime.engine.fields` is imported.

Values as libsinsp's thread filter checks give them, from the facts the state keeps
(runtime/engine/state/process.py). A fact the driver did not capture reads `<NA>`:
  proc.duration        ns since the process (thread) started: event ts - clone ts
  proc.sname           name of the session leader: the process whose pid is proc.sid (host
                       namespace), else the eldest ancestor with the same sid
  proc.vpgid.name      the same for the process group leader
  proc.is_vpgid_leader proc.vpgid == proc.vpid
  proc.env[NAME]       NAME's value (surrounding spaces stripped), "" when unset
  proc.exe_ino*        0 means "no inode" in libsinsp: `<NA>`
  thread.cap_*         capability names, space-separated (`CAP_CHOWN CAP_KILL`)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from runtime.engine.fields import ArgKind, BoundField, FieldType, _define, _define_arg
from runtime.engine.state import SystemState, ThreadInfo
from runtime.engine.state.process import (
    EXE_FROM_MEMFD,
    EXE_LOWER_LAYER,
    EXE_UPPER_LAYER,
    EXE_WRITABLE,
    UNKNOWN_ID,
    Capabilities,
)

if TYPE_CHECKING:
    from runtime.events import Event

# Capability bit -> name, in the kernel's numbering (linux/capability.h).
CAPABILITY_NAMES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


def render_capabilities(mask: int) -> str:
    """Falco's text of a capability set: each set bit's name, space-separated."""
    return " ".join(name for bit, name in enumerate(CAPABILITY_NAMES) if mask >> bit & 1)


def _thread(ev: Event, st: SystemState) -> ThreadInfo:
    return st.thread_of(ev)


def _known(value: int) -> int | None:
    return None if value == UNKNOWN_ID else value


def _since_start(th: ThreadInfo | None, ts: int) -> int | None:
    return ts - th.start_ts if th is not None and th.start_ts else None


def _main_thread(st: SystemState, th: ThreadInfo) -> ThreadInfo:
    """Process-wide facts (the environment) live on the main thread, as in libsinsp."""
    return th if th.tid == th.pid else st.thread(th.pid) or th


def _oldest_with_same(st: SystemState, th: ThreadInfo,
                      ident: Callable[[ThreadInfo], int]) -> ThreadInfo | None:
    """libsinsp's leader lookup for a virtual id (sid, vpgid): in the host pid namespace
    the process with that pid; else (or when it is gone) the eldest ancestor sharing it."""
    wanted = ident(th)
    if wanted == UNKNOWN_ID:
        return None
    if th.vpid == th.pid:
        leader = st.thread(wanted)
        if leader is not None:
            return leader
    found: ThreadInfo | None = None
    for ancestor in st.ancestors(th):
        if ident(ancestor) != wanted:
            break
        found = ancestor
    return found


def _leader_attr(ident: Callable[[ThreadInfo], int], attr: Callable[[ThreadInfo], str]
                 ) -> Callable[[Event, SystemState], object]:
    def extract(ev: Event, st: SystemState) -> object:
        th = _thread(ev, st)
        if ident(th) == UNKNOWN_ID:
            return None
        leader = _oldest_with_same(st, th, ident)
        return "" if leader is None else attr(leader)  # libsinsp: "" when none is found

    return extract


def _exe_flag(bit: int) -> Callable[[Event, SystemState], object]:
    def extract(ev: Event, st: SystemState) -> object:
        exe_file = _thread(ev, st).exe_file
        return None if exe_file is None else bool(exe_file.flags & bit)

    return extract


def _exe_number(get: Callable[[int, int, int, int], int]
                ) -> Callable[[Event, SystemState], object]:
    def extract(ev: Event, st: SystemState) -> object:
        f = _thread(ev, st).exe_file
        if f is None:
            return None
        value = get(f.ino, f.ctime, f.mtime, f.ctime_duration_proc_start)
        return value or None  # 0 is libsinsp's "not known"

    return extract


def _caps(get: Callable[[Capabilities], int]) -> Callable[[Event, SystemState], object]:
    def extract(ev: Event, st: SystemState) -> object:
        caps = _thread(ev, st).caps
        return None if caps is None else render_capabilities(get(caps))

    return extract


def _vpgid_leader(ev: Event, st: SystemState) -> object:
    th = _thread(ev, st)
    if UNKNOWN_ID in (th.vpgid, th.vpid):
        return None
    return th.vpgid == th.vpid


def _sid_leader(ev: Event, st: SystemState) -> object:
    th = _thread(ev, st)
    if UNKNOWN_ID in (th.sid, th.vpid):
        return None
    return th.sid == th.vpid


def _env_value(env: tuple[str, ...], name: str) -> str:
    prefix = name + "="
    for entry in env:
        if entry.startswith(prefix) and len(entry) > len(prefix):
            return entry[len(prefix):].strip(" ")
    return ""


def _env_of(st: SystemState, th: ThreadInfo, name: str | None) -> object:
    """proc.env (name None) or proc.env[name] of `th`'s process."""
    env = _main_thread(st, th).env
    if env is None:
        return None
    return " ".join(env) if name is None else _env_value(env, name)


def _build_env(text: str, arg: str | None) -> BoundField:
    def extract(ev: Event, st: SystemState) -> object:
        return _env_of(st, _thread(ev, st), arg)

    # Inline, _env_of without its two calls (proc.env is read per execve by Falco's rules):
    # the main thread's environment, then the text or the variable's value.
    env = ("(_en_ := (_th if _th.tid == _th.pid else (st.threads.get(_th.pid) or _th)).env)"
           " is None")
    if arg is None:
        return BoundField(text, FieldType.STRING, extract, needs=frozenset({"_th"}),
                          inline=f"(None if {env} else ' '.join(_en_))")
    return BoundField(text, FieldType.STRING, extract, needs=frozenset({"_th"}),
                      inline=f"(None if {env} else _env_value(_en_, {arg!r}))",
                      helpers=(("_env_value", _env_value),))


def _parent_duration(ev: Event, st: SystemState) -> object:
    return _since_start(st.parent_of(_thread(ev, st)), ev.ts)


def _pvpid(ev: Event, st: SystemState) -> object:
    parent = st.parent_of(_thread(ev, st))
    return None if parent is None else _known(parent.vpid)


_define("proc.pid.ts", FieldType.INT, "process start, ns since the epoch",
        lambda ev, st: _thread(ev, st).start_ts or None)
_define("proc.duration", FieldType.INT, "ns since the process started",
        lambda ev, st: _since_start(_thread(ev, st), ev.ts))
_define("proc.ppid.duration", FieldType.INT, "ns since the parent process started",
        _parent_duration)
_define("proc.vpid", FieldType.INT, "process id inside its pid namespace",
        lambda ev, st: _known(_thread(ev, st).vpid),
        inline=f"(None if _th.vpid == {UNKNOWN_ID} else _th.vpid)")
_define("thread.vtid", FieldType.INT, "thread id inside its pid namespace",
        lambda ev, st: _known(_thread(ev, st).vtid))
_define("proc.vtid", FieldType.INT, "thread id inside its pid namespace",
        lambda ev, st: _known(_thread(ev, st).vtid))
_define("proc.pvpid", FieldType.INT, "parent's process id inside its pid namespace", _pvpid)
_define("proc.sid", FieldType.INT, "session id", lambda ev, st: _known(_thread(ev, st).sid))
_define("proc.vpgid", FieldType.INT, "process group id inside its pid namespace",
        lambda ev, st: _known(_thread(ev, st).vpgid))
_define("proc.is_sid_leader", FieldType.BOOL, "true when proc.sid == proc.vpid", _sid_leader)
_define("proc.is_vpgid_leader", FieldType.BOOL, "true when proc.vpgid == proc.vpid",
        _vpgid_leader)

for _prefix, _ident in (("proc.sid", lambda t: t.sid), ("proc.vpgid", lambda t: t.vpgid)):
    _leader = "session" if _prefix == "proc.sid" else "process group"
    _define(f"{_prefix}.exe", FieldType.STRING, f"argv[0] of the {_leader} leader",
            _leader_attr(_ident, lambda t: t.exe))
    _define(f"{_prefix}.exepath", FieldType.STRING, f"executable path of the {_leader} leader",
            _leader_attr(_ident, lambda t: t.exepath))
_define("proc.sname", FieldType.STRING, "name of the session leader",
        _leader_attr(lambda t: t.sid, lambda t: t.comm))
_define("proc.sid.name", FieldType.STRING, "name of the session leader",
        _leader_attr(lambda t: t.sid, lambda t: t.comm))
_define("proc.vpgid.name", FieldType.STRING, "name of the process group leader",
        _leader_attr(lambda t: t.vpgid, lambda t: t.comm))

_define_arg("proc.env", FieldType.STRING,
            "environment as 'K=V K2=V2'; proc.env[NAME] is NAME's value",
            ArgKind.OPTIONAL, _build_env)


def _exe_flag_inline(bit: int) -> str:
    return f"(None if _th.exe_file is None else bool(_th.exe_file.flags & {bit}))"


_define("proc.is_exe_writable", FieldType.BOOL, "the executable is writable by the process",
        _exe_flag(EXE_WRITABLE), inline=_exe_flag_inline(EXE_WRITABLE))
_define("proc.is_exe_upper_layer", FieldType.BOOL,
        "the executable is in an overlay's upper (container-written) layer",
        _exe_flag(EXE_UPPER_LAYER), inline=_exe_flag_inline(EXE_UPPER_LAYER))
_define("proc.is_exe_lower_layer", FieldType.BOOL,
        "the executable is in an overlay's lower (image) layer", _exe_flag(EXE_LOWER_LAYER),
        inline=_exe_flag_inline(EXE_LOWER_LAYER))
_define("proc.is_exe_from_memfd", FieldType.BOOL, "the executable is a memfd (fileless)",
        _exe_flag(EXE_FROM_MEMFD), inline=_exe_flag_inline(EXE_FROM_MEMFD))
_define("proc.exe_ino", FieldType.INT, "inode number of the executable",
        _exe_number(lambda ino, ctime, mtime, since: ino))
_define("proc.exe_ino.ctime", FieldType.INT, "executable's ctime, ns since the epoch",
        _exe_number(lambda ino, ctime, mtime, since: ctime))
_define("proc.exe_ino.mtime", FieldType.INT, "executable's mtime, ns since the epoch",
        _exe_number(lambda ino, ctime, mtime, since: mtime))
_define("proc.exe_ino.ctime_duration_proc_start", FieldType.INT,
        "ns from the executable's ctime to the process start",
        _exe_number(lambda ino, ctime, mtime, since: since))

_define("thread.cap_inheritable", FieldType.STRING, "inheritable capabilities",
        _caps(lambda c: c.inheritable))
_define("thread.cap_permitted", FieldType.STRING, "permitted capabilities",
        _caps(lambda c: c.permitted))
_define("thread.cap_effective", FieldType.STRING, "effective capabilities",
        _caps(lambda c: c.effective))
