"""Per-process facts beyond name and args: namespace ids, session, environment,
the executable's inode and flags, capabilities, and when the process started.

Filled from execve/execveat and clone-family exit params (names as the driver's schema
gives them) and, for processes already running, from /proc (runtime/engine/state/procfs.py).
A param the event lacks means "not captured": the fact keeps its unknown value (-1 / None),
so the field reads `<NA>` instead of a made-up value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.engine.state.params import as_int

if TYPE_CHECKING:
    from runtime.engine.state.tables import ThreadInfo

# The driver's exe flags bitmask (execve/execveat `flags`), libs' PPM_EXE_* values.
EXE_WRITABLE = 1
EXE_UPPER_LAYER = 2
EXE_FROM_MEMFD = 4
EXE_LOWER_LAYER = 8
EXE_FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (EXE_WRITABLE, "EXE_WRITABLE"),
    (EXE_UPPER_LAYER, "EXE_UPPER_LAYER"),
    (EXE_FROM_MEMFD, "EXE_FROM_MEMFD"),
    (EXE_LOWER_LAYER, "EXE_LOWER_LAYER"),
)

# (uid_t)-1 as the driver sends an unset loginuid; Falco shows -1.
NO_LOGINUID_U32 = 0xFFFFFFFF
UNKNOWN_ID = -1  # libsinsp's "not set" for vpid, vtid, vpgid, sid


@dataclass(frozen=True, slots=True)
class ExeFile:
    """The executable the process runs, as seen at exec (or at the /proc snapshot)."""

    flags: int  # EXE_* bits
    ino: int  # 0 = unknown, as in libsinsp
    ctime: int  # ns since the epoch, 0 = unknown
    mtime: int
    # Process start minus exe ctime, fixed at exec time (a fork inherits it unchanged,
    # as libsinsp copies it); 0 = unknown.
    ctime_duration_proc_start: int


@dataclass(frozen=True, slots=True)
class Capabilities:
    inheritable: int
    permitted: int
    effective: int


def render_exe_flags(flags: int) -> str:
    """Falco's text of execve's exe flags: known bits `|`-joined; the number when none."""
    names = [name for bit, name in EXE_FLAG_NAMES if flags & bit]
    return "|".join(names) if names else str(flags)


def _param_int(params: dict[str, object], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    return as_int(value)


def loginuid_from_u32(value: int) -> int:
    return -1 if value in (NO_LOGINUID_U32, -1) else value


def apply_exec_params(th: ThreadInfo, evt_type: str, params: dict[str, object]) -> None:
    """A successful execve/execveat: the new image's facts replace the old ones. Each group
    of params is taken only when the event carries it (older drivers lack them)."""
    env = params.get("env")
    if isinstance(env, (list, tuple)):
        th.env = tuple(map(str, env))
    # execveat's `flags` were its AT_* flags before the exe flags took that name (the AT
    # flags then became `at_flags`): only the new layout says what the exe is.
    has_exe_flags = evt_type == "execve" or "at_flags" in params
    flags = _param_int(params, "flags") if has_exe_flags else None
    ino = _param_int(params, "exe_ino")
    if flags is not None or ino is not None:
        ctime = _param_int(params, "exe_ino_ctime") or 0
        mtime = _param_int(params, "exe_ino_mtime") or 0
        since = th.start_ts - ctime if th.start_ts and ctime else 0
        th.exe_file = ExeFile(flags or 0, ino or 0, ctime, mtime, since)
    effective = _param_int(params, "cap_effective")
    if effective is not None:
        th.caps = Capabilities(_param_int(params, "cap_inheritable") or 0,
                               _param_int(params, "cap_permitted") or 0, effective)
    for name in ("vpid", "vtid", "vpgid", "sid", "tty"):
        value = _param_int(params, name)
        if value is not None:
            setattr(th, name, value)
    loginuid = _param_int(params, "loginuid")
    if loginuid is not None:
        th.loginuid = loginuid_from_u32(loginuid)


def apply_clone_ids(caller: ThreadInfo, child: ThreadInfo | None, ts: int,
                    params: dict[str, object]) -> None:
    """A clone-family exit. In the caller, `child` is the row just made for the new
    thread; in the child's own return (`child` None) `caller` is the child's row. Either
    way the vpid/vtid params are those of the thread the event comes from."""
    vpid = _param_int(params, "vpid")
    vtid = _param_int(params, "vtid")
    if vpid is not None:
        caller.vpid = vpid
    if vtid is not None:
        caller.vtid = vtid
    if child is None:
        if not caller.start_ts:
            caller.start_ts = ts  # the parent's event was not seen: the child's is as close
        return
    is_thread = child.pid != child.tid
    child.start_ts = ts  # libsinsp's clone_ts: every thread, and so every process, has its own
    # In the host pid namespace the virtual ids are the real ones; inside a namespace the
    # child's own ids are known only from its own events.
    in_host_ns = caller.vpid == caller.pid
    if not is_thread:
        child.vpid = child.pid if in_host_ns else UNKNOWN_ID
    child.vtid = child.tid if in_host_ns else UNKNOWN_ID
