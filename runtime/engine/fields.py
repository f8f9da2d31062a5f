"""Falco's filter fields for syscall events: the registry and one extractor per field.

An extractor is `f(ev, state) -> value | None` (None = "not available", rendered `<NA>`, and a
comparison against it is false, as in libsinsp). Fields that read the event directly also
carry an `inline` Python expression so the rule compiler can emit them without a call.
"""

from __future__ import annotations

import base64
import errno
import functools
import operator
import posixpath
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from runtime.engine.state import (
    HOST_CONTAINER_ID,
    MAX_ANCESTORS,
    FdInfo,
    SystemState,
    ThreadInfo,
)
from runtime.engine.state.process import render_exe_flags
from runtime.events import SocketTuple

if TYPE_CHECKING:
    from runtime.events import Event

Extractor = Callable[["Event", SystemState], object]


class FieldType(Enum):
    STRING = "string"
    INT = "int"
    BOOL = "bool"
    IPADDR = "ipaddr"
    IPNET = "ipnet"


class ArgKind(Enum):
    NONE = "none"
    OPTIONAL = "optional"  # proc.aname / proc.aname[N]
    REQUIRED = "required"  # evt.arg[N] / evt.arg.NAME


class UnknownFieldError(ValueError):
    """A field name (or argument) the registry does not know; the message says which."""


@dataclass(frozen=True, slots=True)
class BoundField:
    """A field as written in a condition or output, resolved to its extractor."""

    text: str  # as written: "proc.aname[2]", "evt.arg.flags"
    type: FieldType
    extract: Extractor
    # Expression usable in generated code, over `ev` and `st`, plus `_th` (the event's
    # ThreadInfo) and `_f` (its FdInfo or None) when named in `needs`.
    inline: str | None = None
    nullable: bool = True
    is_list: bool = False  # a value per ancestor: comparisons hold if any element matches
    needs: frozenset[str] = frozenset()
    # Helpers the inline expression calls, by name, for the generated code's namespace.
    helpers: tuple[tuple[str, object], ...] = ()
    # Told the literals a condition compares this field against, as it is compiled (the
    # fd.*ip.name fields resolve those names: see runtime.engine.dns).
    on_literals: Callable[[list[object]], None] | None = None


Builder = Callable[[str | None], BoundField]


@dataclass(frozen=True, slots=True)
class FieldDef:
    name: str
    type: FieldType
    desc: str
    arg: ArgKind
    build: Callable[[str, str | None], BoundField]


FIELDS: dict[str, FieldDef] = {}


def _define(name: str, ftype: FieldType, desc: str, extract: Extractor, *,
            inline: str | None = None, nullable: bool = True,
            helpers: tuple[tuple[str, object], ...] = ()) -> None:
    # Whole names only: `_th.exe_file` reads the thread, not the fd `_f`.
    needs = frozenset(n for n in ("_th", "_f")
                      if inline is not None and re.search(rf"(?<![\w.]){n}(?!\w)", inline))

    def build(text: str, arg: str | None) -> BoundField:
        return BoundField(text, ftype, extract, inline, nullable, needs=needs, helpers=helpers)

    FIELDS[name] = FieldDef(name, ftype, desc, ArgKind.NONE, build)


def _define_arg(name: str, ftype: FieldType, desc: str, kind: ArgKind,
                build: Callable[[str, str | None], BoundField]) -> None:
    FIELDS[name] = FieldDef(name, ftype, desc, kind, build)


# ---- value rendering (Falco's spelling of flags and codes) --------------------------------

# Linux x86_64 open(2) flags, in the order Falco lists them.
_OPEN_FLAG_BITS: tuple[tuple[int, str], ...] = (
    (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o40000, "O_DIRECT"),
    (0o1000, "O_TRUNC"),
    (0o4010000, "O_SYNC"),
    (0o4000, "O_NONBLOCK"),
    (0o200, "O_EXCL"),
    (0o10000, "O_DSYNC"),
    (0o2000, "O_APPEND"),
    (0o100, "O_CREAT"),
    (0o2000000, "O_CLOEXEC"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o400, "O_NOCTTY"),
    (0o10000000, "O_PATH"),
    (0o20000000, "O_TMPFILE"),
)
O_ACCMODE = 0o3
O_WRONLY = 0o1
O_RDWR = 0o2
O_CREAT = 0o100
O_PATH = 0o10000000
OPEN_TYPES = _OPEN_TYPES = frozenset({"open", "openat", "openat2", "creat"})

_PTRACE_REQUESTS = {
    0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA", 3: "PTRACE_PEEKUSR",
    4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSR", 7: "PTRACE_CONT",
    8: "PTRACE_KILL", 9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS",
    16: "PTRACE_ATTACH", 17: "PTRACE_DETACH", 24: "PTRACE_SYSCALL", 0x4200: "PTRACE_SETOPTIONS",
    0x4206: "PTRACE_SEIZE", 0x4207: "PTRACE_INTERRUPT",
}


# chmod(2) mode bits, in the order libs' chmod_mode table lists them (PT_MODE params).
_MODE_BITS: tuple[tuple[int, str], ...] = (
    (0o1, "S_IXOTH"), (0o2, "S_IWOTH"), (0o4, "S_IROTH"),
    (0o10, "S_IXGRP"), (0o20, "S_IWGRP"), (0o40, "S_IRGRP"),
    (0o100, "S_IXUSR"), (0o200, "S_IWUSR"), (0o400, "S_IRUSR"),
    (0o1000, "S_ISVTX"), (0o2000, "S_ISGID"), (0o4000, "S_ISUID"),
)
_CHMOD_TYPES = frozenset({"chmod", "fchmod", "fchmodat"})


def render_chmod_mode(mode: int) -> str:
    """Falco's text of a chmod mode: each set bit's name, `|`-joined (`S_IRUSR|S_ISUID`);
    a mode with none of those bits is printed in octal, as its raw value."""
    names = [name for bit, name in _MODE_BITS if mode & bit]
    return "|".join(names) if names else (f"0{mode:o}" if mode else "0")


@functools.lru_cache(maxsize=1024)
def render_open_flags(flags: int) -> str:
    """Falco's rendering: the access mode first, then each set flag, `|`-joined.
    Remembered per value: a process opens with a handful of flag sets, and rules that
    test `evt.arg.flags contains O_TRUNC` ask for every open."""
    access = flags & O_ACCMODE
    names = ["O_RDWR" if access == O_RDWR else "O_WRONLY" if access == O_WRONLY else "O_RDONLY"]
    for bit, name in _OPEN_FLAG_BITS:
        if flags & bit == bit:
            names.append(name)
    return "|".join(names)


# socket(2) domains by number (linux/socket.h): libsinsp renders the parameter by name,
# and Falco's rules test the name ("Packet socket created in container": `evt.arg.domain
# contains AF_PACKET`).
_SOCKET_FAMILIES: dict[int, str] = dict(enumerate((
    "AF_UNSPEC", "AF_UNIX", "AF_INET", "AF_AX25", "AF_IPX", "AF_APPLETALK", "AF_NETROM",
    "AF_BRIDGE", "AF_ATMPVC", "AF_X25", "AF_INET6", "AF_ROSE", "AF_DECnet", "AF_NETBEUI",
    "AF_SECURITY", "AF_KEY", "AF_NETLINK", "AF_PACKET", "AF_ASH", "AF_ECONET", "AF_ATMSVC",
    "AF_RDS", "AF_SNA", "AF_IRDA", "AF_PPPOX", "AF_WANPIPE", "AF_LLC", "AF_IB", "AF_MPLS",
    "AF_CAN", "AF_TIPC", "AF_BLUETOOTH", "AF_IUCV", "AF_RXRPC", "AF_ISDN", "AF_PHONET",
    "AF_IEEE802154", "AF_CAIF", "AF_ALG", "AF_NFC", "AF_VSOCK", "AF_KCM", "AF_QIPCRTR",
    "AF_SMC", "AF_XDP", "AF_MCTP",
)))


# execve/execveat `flags`: the driver's exe flags (execveat's AT_* flags are `at_flags`).
_EXEC_TYPES = frozenset({"execve", "execveat"})


def render_param(evt_type: str, name: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, SocketTuple):  # before the generic tuple case: Falco's text
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if name == "flags" and evt_type in _OPEN_TYPES:
            return render_open_flags(value)
        if name == "mode" and evt_type in _OPEN_TYPES:
            return f"0{value:o}"
        if name == "mode" and evt_type in _CHMOD_TYPES:
            return render_chmod_mode(value)
        if name == "domain" and evt_type == "socket":
            return _SOCKET_FAMILIES.get(value, str(value))
        if name == "request" and evt_type == "ptrace":
            return _PTRACE_REQUESTS.get(value, str(value))
        if name == "flags" and evt_type in _EXEC_TYPES:
            return render_exe_flags(value)
        return str(value)
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def render_value(value: object) -> str:
    """A field value as Falco prints it in an output line."""
    if value is None:
        return "<NA>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(render_value(v) for v in value)
    if value.__class__ is bytes:  # a bytes subclass (an I/O Buffer) has its own text
        return value.decode("utf-8", errors="replace")
    return str(value)


# ---- evt.* ---------------------------------------------------------------------------------

def _time_parts(ts: int, fmt: str, utc: bool = False) -> str:
    secs, nanos = divmod(ts, 1_000_000_000)
    tm = time.gmtime(secs) if utc else time.localtime(secs)
    return time.strftime(fmt, tm).replace("@NS@", f"{nanos:09d}")


def _errno_name(res: int) -> str:
    """A failed syscall's return value as Falco's evt.res spells it."""
    return errno.errorcode.get(-res, str(res))


def _evt_res(ev: Event, st: SystemState) -> object:
    if ev.res >= 0:
        return "SUCCESS"
    return _errno_name(ev.res)


def _is_open(ev: Event) -> int | None:
    if ev.type not in _OPEN_TYPES:
        return None
    flags = ev.params.get("flags", 0)
    value = flags if isinstance(flags, int) else 0
    if ev.type == "creat":
        value |= O_CREAT | O_WRONLY
    return value


def _is_open_read(ev: Event, st: SystemState) -> object:
    flags = _is_open(ev)
    return flags is not None and flags & O_ACCMODE != O_WRONLY and not flags & O_PATH


def _is_open_write(ev: Event, st: SystemState) -> object:
    flags = _is_open(ev)
    return flags is not None and flags & O_ACCMODE in (O_WRONLY, O_RDWR)


def _is_open_exec(ev: Event, st: SystemState) -> object:
    flags = _is_open(ev)
    if flags is None or not flags & O_CREAT:
        return False
    mode = ev.params.get("mode", 0)
    return isinstance(mode, int) and bool(mode & 0o111)


def _is_open_create(ev: Event, st: SystemState) -> object:
    flags = _is_open(ev)
    return flags is not None and bool(flags & O_CREAT)


def _evt_args(ev: Event, st: SystemState) -> object:
    return " ".join(f"{k}={render_param(ev.type, k, v)}" for k, v in ev.params.items())


_define("evt.type", FieldType.STRING, "event type (syscall name or procexit)",
        lambda ev, st: ev.type, inline="ev.type", nullable=False)
_define("evt.dir", FieldType.STRING, "event direction: always '<' (exit)",
        lambda ev, st: "<", inline="'<'", nullable=False)
_define("evt.res", FieldType.STRING, "SUCCESS or the errno name", _evt_res, nullable=False,
        inline="('SUCCESS' if ev.res >= 0 else _errno_name(ev.res))",
        helpers=(("_errno_name", _errno_name),))
_define("evt.rawres", FieldType.INT, "the syscall's return value",
        lambda ev, st: ev.res, inline="ev.res", nullable=False)
_define("evt.failed", FieldType.BOOL, "true when the syscall returned an error",
        lambda ev, st: ev.res < 0, inline="(ev.res < 0)", nullable=False)
_define("evt.num", FieldType.INT, "event sequence number",
        lambda ev, st: st.event_count, inline="st.event_count", nullable=False)
_define("evt.cpu", FieldType.INT, "cpu the event ran on",
        lambda ev, st: ev.cpu, inline="ev.cpu", nullable=False)
_define("evt.rawtime", FieldType.INT, "timestamp, ns since the epoch",
        lambda ev, st: ev.ts, inline="ev.ts", nullable=False)
_define("evt.rawtime.s", FieldType.INT, "timestamp, seconds since the epoch",
        lambda ev, st: ev.ts // 1_000_000_000, nullable=False)
_define("evt.time", FieldType.STRING, "local time with nanoseconds, HH:MM:SS.nnnnnnnnn",
        lambda ev, st: _time_parts(ev.ts, "%H:%M:%S.@NS@"), nullable=False)
_define("evt.time.s", FieldType.STRING, "local time, HH:MM:SS",
        lambda ev, st: _time_parts(ev.ts, "%H:%M:%S"), nullable=False)
_define("evt.time.iso8601", FieldType.STRING, "UTC time, ISO 8601 with nanoseconds",
        lambda ev, st: _time_parts(ev.ts, "%Y-%m-%dT%H:%M:%S.@NS@Z", utc=True),
        nullable=False)
_define("evt.datetime", FieldType.STRING, "local date and time with nanoseconds",
        lambda ev, st: _time_parts(ev.ts, "%Y-%m-%d %H:%M:%S.@NS@"), nullable=False)
_define("evt.datetime.s", FieldType.STRING, "local date and time",
        lambda ev, st: _time_parts(ev.ts, "%Y-%m-%d %H:%M:%S"), nullable=False)
# Inline forms read the flags from the event's fd info, which the state builds for every
# open-family event (failed ones included).
_define("evt.is_open_read", FieldType.BOOL, "open family with read access", _is_open_read,
        inline="(ev.type in _OPEN_TYPES and (_f.flags & 3) != 1 and not (_f.flags & 0o10000000))",
        nullable=False)
_define("evt.is_open_write", FieldType.BOOL, "open family with write access", _is_open_write,
        inline="(ev.type in _OPEN_TYPES and (_f.flags & 3) in (1, 2))", nullable=False)
_define("evt.is_open_exec", FieldType.BOOL, "open family creating an executable file",
        _is_open_exec, nullable=False)
_define("evt.is_open_create", FieldType.BOOL, "open family with O_CREAT", _is_open_create,
        nullable=False)
_define("evt.args", FieldType.STRING, "all parameters, name=value", _evt_args, nullable=False)
_define("evt.source", FieldType.STRING, "event source: syscall",
        lambda ev, st: "syscall", inline="'syscall'", nullable=False)


# uid/gid params (setuid, setresuid, chown, ...): evt.arg shows the name, as libsinsp
# resolves PT_UID/PT_GID (`evt.arg.uid=nobody`); evt.rawarg keeps the number.
_USER_ID_PARAMS = frozenset({"uid", "ruid", "euid", "suid"})
_GROUP_ID_PARAMS = frozenset({"gid", "rgid", "egid", "sgid"})
_NO_ID = (-1, 0xFFFFFFFF)  # "leave unchanged" in setresuid & co.


def st_user_name(st: SystemState, ident: int) -> str | None:
    return st.user_name(ident)


def st_group_name(st: SystemState, ident: int) -> str | None:
    return st.group_name(ident)


def render_id_param(value: object, names: Callable[[SystemState, int], str | None],
                    st: SystemState) -> str | None:
    """libsinsp's text of a uid/gid param: the name, `<NA>` when the id has none, and
    `<NONE>` for -1."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        return str(value)
    if value in _NO_ID:
        return "<NONE>"
    return names(st, value) or "<NA>"


def _build_evt_arg(raw: bool) -> Callable[[str, str | None], BoundField]:
    def build(text: str, arg: str | None) -> BoundField:
        if arg is None:
            raise UnknownFieldError(f"field '{text}' needs an argument: evt.arg.NAME or evt.arg[N]")
        if arg.isdigit():
            index = int(arg)

            def by_index(ev: Event, st: SystemState) -> object:
                for i, (key, value) in enumerate(ev.params.items()):
                    if i == index:
                        return render_param("" if raw else ev.type, key, value)
                return None

            return BoundField(text, FieldType.STRING, by_index)
        name = arg

        if raw:
            def by_name_raw(ev: Event, st: SystemState) -> object:
                # Unrendered, but text: the field is string-typed so `= 577` and `< 0`
                # (numeric operators convert) both work on integer parameters.
                value = ev.params.get(name)
                if value is None:
                    return None
                if isinstance(value, SocketTuple):
                    return str(value)
                if isinstance(value, (list, tuple)):
                    return " ".join(str(v) for v in value)
                if isinstance(value, bytes):
                    return value.decode("utf-8", "replace")
                return str(value)

            return BoundField(text, FieldType.STRING, by_name_raw)

        if name in _USER_ID_PARAMS or name in _GROUP_ID_PARAMS:
            names = st_user_name if name in _USER_ID_PARAMS else st_group_name

            def by_id(ev: Event, st: SystemState) -> object:
                return render_id_param(ev.params.get(name), names, st)

            return BoundField(text, FieldType.STRING, by_id)

        def by_name(ev: Event, st: SystemState) -> object:
            return render_param(ev.type, name, ev.params.get(name))

        return BoundField(text, FieldType.STRING, by_name)

    return build


_define_arg("evt.arg", FieldType.STRING, "a parameter, rendered as Falco prints it",
            ArgKind.REQUIRED, _build_evt_arg(raw=False))
_define_arg("evt.rawarg", FieldType.STRING, "a parameter's raw value",
            ArgKind.REQUIRED, _build_evt_arg(raw=True))


# ---- proc.* / thread.* / user.* / group.* --------------------------------------------------

def _thread(ev: Event, st: SystemState) -> ThreadInfo:
    return st.thread_of(ev)


def _args_text(th: ThreadInfo) -> str:
    return " ".join(th.args)


def _cmdline(th: ThreadInfo) -> str:
    return " ".join((th.comm, *th.args)) if th.args else th.comm


def _parent(ev: Event, st: SystemState) -> ThreadInfo | None:
    return st.parent_of(st.thread_of(ev))


def _pname(ev: Event, st: SystemState) -> object:
    p = _parent(ev, st)
    return None if p is None else p.comm


def _pexe(ev: Event, st: SystemState) -> object:
    p = _parent(ev, st)
    return None if p is None else p.exe


def _pexepath(ev: Event, st: SystemState) -> object:
    p = _parent(ev, st)
    return None if p is None else p.exepath


def _pcmdline(ev: Event, st: SystemState) -> object:
    p = _parent(ev, st)
    return None if p is None else _cmdline(p)


# How generated code (the rule matchers, the output formatters) gets the event's thread
# (`_th`) and fd (`_f`): SystemState.thread_of's and fd_of's answer for the event `update`
# last took, read off the state without the method call, which costs more than most
# tests (see SystemState._cur_ev); the methods for any other event.
EVENT_THREAD = "(st._cur_thread if ev is st._cur_ev else st.thread_of(ev))"
EVENT_FD = "(st._cur_fd if ev is st._cur_ev and st._cur_fd_resolved else st.fd_of(ev))"


def _no_parent(child: str, parent: str) -> str:
    """Inline code true when `child` (a thread's variable) has no parent, else false with
    the parent in `parent`: SystemState.parent_of inlined (its tests, then the thread
    table's lookup). Falco's rules read proc.pname and proc.aname[N] for most event types,
    often as a guard key, and a Python method call costs more than the tests themselves."""
    return (f"(_pp_ := {child}.ppid) <= 0 or _pp_ == {child}.pid"
            f" or ({parent} := st.threads.get(_pp_)) is None")


def _of_parent(value: str) -> str:
    """Inline code for `value` (code over `_pt_`) of the event's thread's parent, None
    without one, the parent kept in a local for the expression."""
    return f"(None if {_no_parent('_th', '_pt_')} else {value})"


_define("proc.name", FieldType.STRING, "process name (comm)",
        lambda ev, st: ev.comm, inline="ev.comm", nullable=False)
_define("proc.exe", FieldType.STRING, "argv[0]", lambda ev, st: _thread(ev, st).exe,
        inline="_th.exe", nullable=False)
_define("proc.exepath", FieldType.STRING, "full path of the executable",
        lambda ev, st: _thread(ev, st).exepath or None, inline="(_th.exepath or None)")
_define("proc.args", FieldType.STRING, "arguments (argv[1:]) joined by spaces",
        # _args_text and _cmdline inlined: the same text without a call per read.
        lambda ev, st: _args_text(_thread(ev, st)), inline="(' '.join(_th.args))",
        nullable=False)
_define("proc.cmdline", FieldType.STRING, "name and arguments",
        lambda ev, st: _cmdline(_thread(ev, st)),
        inline="(' '.join((_th.comm, *_th.args)) if _th.args else _th.comm)", nullable=False)
_define("proc.pid", FieldType.INT, "process id", lambda ev, st: ev.pid, inline="ev.pid",
        nullable=False)
_define("proc.ppid", FieldType.INT, "parent process id", lambda ev, st: ev.ppid,
        inline="ev.ppid", nullable=False)
_define("proc.pname", FieldType.STRING, "parent process name", _pname,
        inline=_of_parent("_pt_.comm"))
_define("proc.pexe", FieldType.STRING, "parent's argv[0]", _pexe, inline=_of_parent("_pt_.exe"))
_define("proc.pexepath", FieldType.STRING, "parent's executable path", _pexepath,
        inline=_of_parent("_pt_.exepath"))
_define("proc.pcmdline", FieldType.STRING, "parent's command line", _pcmdline,
        inline=_of_parent("_cmdline(_pt_)"), helpers=(("_cmdline", _cmdline),))
_define("proc.cwd", FieldType.STRING, "current working directory",
        lambda ev, st: _thread(ev, st).cwd, inline="_th.cwd", nullable=False)
_define("proc.tty", FieldType.INT, "controlling terminal (0 if none)",
        lambda ev, st: _thread(ev, st).tty, inline="_th.tty", nullable=False)
_define("proc.is_container", FieldType.BOOL, "true inside a container",
        lambda ev, st: _thread(ev, st).container is not None, nullable=False)
_define("thread.tid", FieldType.INT, "thread id", lambda ev, st: ev.tid, inline="ev.tid",
        nullable=False)
_define("proc.tid", FieldType.INT, "thread id", lambda ev, st: ev.tid, inline="ev.tid",
        nullable=False)
_define("user.uid", FieldType.INT, "user id", lambda ev, st: ev.uid, inline="ev.uid",
        nullable=False)
_define("user.name", FieldType.STRING, "user name (from /etc/passwd)",
        lambda ev, st: st.user_name(ev.uid),
        inline="(st.user_names.get(ev.uid) or st.user_name(ev.uid))")
_define("user.loginuid", FieldType.INT, "audit login uid (-1 if unset)",
        lambda ev, st: _thread(ev, st).loginuid, inline="_th.loginuid", nullable=False)
_define("user.loginname", FieldType.STRING, "login user name",
        lambda ev, st: st.user_name(_thread(ev, st).loginuid))
_define("group.gid", FieldType.INT, "group id", lambda ev, st: ev.gid, inline="ev.gid",
        nullable=False)
_define("group.name", FieldType.STRING, "group name (from /etc/group)",
        lambda ev, st: st.group_name(ev.gid))


# proc.aname[N] and friends read inline up to this generation (see _build_ancestor).
_UNROLLED_ANCESTORS = 4


def _build_ancestor(attr_name: str, ftype: FieldType
                    ) -> Callable[[str, str | None], BoundField]:
    attr = operator.attrgetter(attr_name)

    def build(text: str, arg: str | None) -> BoundField:
        if arg is None:
            def every(ev: Event, st: SystemState) -> object:
                return [attr(a) for a in st.ancestors(st.thread_of(ev))]

            return BoundField(text, ftype, every, nullable=False, is_list=True)
        if not arg.isdigit():
            raise UnknownFieldError(f"field '{text}': the argument must be a number (generation)")
        level = int(arg)
        if level > MAX_ANCESTORS:
            def beyond(ev: Event, st: SystemState) -> object:
                return None  # st.ancestors() stops there

            return BoundField(text, ftype, beyond)

        def nth(ev: Event, st: SystemState) -> object:
            found = st.ancestor(st.thread_of(ev), level)
            return None if found is None else attr(found)

        # Inline, a condition or output reads it off the event's thread it already holds;
        # the first generations without the method call (SystemState.ancestor's walk
        # unrolled: Falco's exceptions read proc.aname[2..4] on hot paths), deeper ones
        # with it.
        if level == 0:  # the thread itself
            return BoundField(text, ftype, nth, needs=frozenset({"_th"}),
                              inline=f"_th.{attr_name}")
        if level <= _UNROLLED_ANCESTORS:
            found_at = " or ".join([_no_parent("_th", "_at_")]
                                   + [_no_parent("_at_", "_at_")] * (level - 1))
        else:
            found_at = f"(_at_ := st.ancestor(_th, {level})) is None"
        return BoundField(text, ftype, nth, needs=frozenset({"_th"}), inline=(
            f"(None if {found_at} else _at_.{attr_name})"))

    return build


_define_arg("proc.aname", FieldType.STRING, "ancestor name: [N] = Nth generation, none = any",
            ArgKind.OPTIONAL, _build_ancestor("comm", FieldType.STRING))
_define_arg("proc.apid", FieldType.INT, "ancestor pid: [N] = Nth generation, none = any",
            ArgKind.OPTIONAL, _build_ancestor("pid", FieldType.INT))
_define_arg("proc.aexe", FieldType.STRING, "ancestor argv[0]",
            ArgKind.OPTIONAL, _build_ancestor("exe", FieldType.STRING))
_define_arg("proc.aexepath", FieldType.STRING, "ancestor executable path",
            ArgKind.OPTIONAL, _build_ancestor("exepath", FieldType.STRING))


# ---- fd.* ------------------------------------------------------------------------------------

def _fd_attr(get: Callable[[FdInfo], object]) -> Extractor:
    def extract(ev: Event, st: SystemState) -> object:
        info = st.fd_of(ev)
        return None if info is None else get(info)

    return extract


def _fd_directory(info: FdInfo) -> object:
    if info.typechar == "d":
        return info.name
    name = info.name
    if info.typechar != "f" or not name:
        return None
    # Names are absolute and normalised by the state: no posixpath needed (hot in rules).
    return name[:name.rfind("/")] or "/"


def _fd_filename(info: FdInfo) -> object:
    name = info.name
    if info.typechar not in ("f", "d") or not name:
        return None
    return name[name.rfind("/") + 1:]


def _local(info: FdInfo) -> tuple[str | None, int | None]:
    return (info.sip, info.sport) if info.is_server else (info.cip, info.cport)


def _remote(info: FdInfo) -> tuple[str | None, int | None]:
    return (info.cip, info.cport) if info.is_server else (info.sip, info.sport)


def fd_end_ips(info: FdInfo) -> list[str] | None:
    """The addresses of the fd's ends that are known, or None."""
    cip, sip = info.cip, info.sip
    if cip is None:
        return None if sip is None else [sip]
    return [cip] if sip is None else [cip, sip]


def _fd_num(ev: Event, st: SystemState) -> object:
    return st.event_fd_num(ev)


_define("fd.num", FieldType.INT, "fd number", _fd_num,
        inline="(_f.fd if _f is not None else st.event_fd_num(ev))")
_define("fd.name", FieldType.STRING, "path, or the socket tuple",
        _fd_attr(lambda i: i.name or None), inline="(_f and (_f.name or None))")
_define("fd.directory", FieldType.STRING, "directory of the file",
        _fd_attr(_fd_directory), inline="(_f and _fd_directory(_f))",
        helpers=(("_fd_directory", _fd_directory),))
_define("fd.filename", FieldType.STRING, "file name without the directory",
        _fd_attr(_fd_filename), inline="(_f and _fd_filename(_f))",
        helpers=(("_fd_filename", _fd_filename),))
_define("fd.typechar", FieldType.STRING, "fd type as one character (f, d, 4, 6, u, p, ...)",
        _fd_attr(lambda i: i.typechar),
        inline="(_f and _f.typechar)")
_define("fd.type", FieldType.STRING, "fd type (file, directory, ipv4, ipv6, unix, ...)",
        _fd_attr(lambda i: i.type),
        inline="(_f and _f.type)")
_define("fd.l4proto", FieldType.STRING, "tcp, udp, icmp or raw", _fd_attr(lambda i: i.l4proto),
        inline="(_f and _f.l4proto)")
_define("fd.sip", FieldType.IPADDR, "server IP", _fd_attr(lambda i: i.sip),
        inline="(_f and _f.sip)")
_define("fd.sport", FieldType.INT, "server port", _fd_attr(lambda i: i.sport),
        inline="(_f and _f.sport)")
_define("fd.cip", FieldType.IPADDR, "client IP", _fd_attr(lambda i: i.cip),
        inline="(_f and _f.cip)")
_define("fd.cport", FieldType.INT, "client port", _fd_attr(lambda i: i.cport),
        inline="(_f and _f.cport)")
# fd.dip/fd.dport: the destination (server) end; not Falco fields, kept as aliases.
_define("fd.dip", FieldType.IPADDR, "destination (server) IP", _fd_attr(lambda i: i.sip))
_define("fd.dport", FieldType.INT, "destination (server) port", _fd_attr(lambda i: i.sport))
_define("fd.lip", FieldType.IPADDR, "local IP", _fd_attr(lambda i: _local(i)[0]))
_define("fd.lport", FieldType.INT, "local port", _fd_attr(lambda i: _local(i)[1]))
_define("fd.rip", FieldType.IPADDR, "remote IP", _fd_attr(lambda i: _remote(i)[0]))
_define("fd.rport", FieldType.INT, "remote port", _fd_attr(lambda i: _remote(i)[1]))
_define("fd.net", FieldType.IPNET, "either end's IP, compared with a CIDR network",
        _fd_attr(fd_end_ips), inline="(_f and fd_end_ips(_f))",
        helpers=(("fd_end_ips", fd_end_ips),))
_define("fd.snet", FieldType.IPNET, "server IP, compared with a CIDR network",
        _fd_attr(lambda i: [i.sip] if i.sip else None),
        inline="(_f and ([_f.sip] if _f.sip else None))")
_define("fd.cnet", FieldType.IPNET, "client IP, compared with a CIDR network",
        _fd_attr(lambda i: [i.cip] if i.cip else None),
        inline="(_f and ([_f.cip] if _f.cip else None))")
_define("fd.rnet", FieldType.IPNET, "remote IP, compared with a CIDR network",
        _fd_attr(lambda i: [ip] if (ip := _remote(i)[0]) else None))
_define("fd.lnet", FieldType.IPNET, "local IP, compared with a CIDR network",
        _fd_attr(lambda i: [ip] if (ip := _local(i)[0]) else None))
_define("fd.is_server", FieldType.BOOL, "true on the accepting side",
        _fd_attr(lambda i: i.is_server))
_SOCKET_FAMILY_BY_TYPECHAR = {"4": "ip", "6": "ip", "u": "unix"}
_define("fd.sockfamily", FieldType.STRING, "ip or unix",
        _fd_attr(lambda i: _SOCKET_FAMILY_BY_TYPECHAR.get(i.typechar)),
        inline="(_f and _SOCKET_FAMILY_BY_TYPECHAR.get(_f.typechar))",
        helpers=(("_SOCKET_FAMILY_BY_TYPECHAR", _SOCKET_FAMILY_BY_TYPECHAR),))


# ---- container.* -----------------------------------------------------------------------------

def _container_field(get: Callable[[ThreadInfo], object], host_value: object) -> Extractor:
    def extract(ev: Event, st: SystemState) -> object:
        th = st.thread_of(ev)
        if th.container is None:
            return host_value
        return get(th)

    return extract


_define("container.id", FieldType.STRING, "short container id, 'host' outside containers",
        lambda ev, st: st.thread_of(ev).container_id,
        # ThreadInfo.container_id spelled out: a property call costs twice these loads.
        inline=f"({HOST_CONTAINER_ID!r} if _th.container is None else _th.container.id)",
        nullable=False)
_define("container.full_id", FieldType.STRING, "full container id, 'host' outside containers",
        _container_field(lambda t: t.container.full_id if t.container else None,
                         HOST_CONTAINER_ID))
# container.name, .image, .type & co. (the runtime's metadata): runtime/engine/fields_container.py


# ---- resolution --------------------------------------------------------------------------

_TRANSFORMERS: dict[str, Callable[[object], object]] = {
    "tolower": lambda v: v.lower() if isinstance(v, str) else v,
    "toupper": lambda v: v.upper() if isinstance(v, str) else v,
    "b64": lambda v: base64.b64decode(v).decode("utf-8", "replace") if isinstance(v, str) else v,
    "basename": lambda v: posixpath.basename(v) if isinstance(v, str) else v,
}
TRANSFORMERS = frozenset(_TRANSFORMERS)


def resolve_field(name: str, arg: str | None = None) -> BoundField:
    """Resolve `name` (with an optional `[arg]`) or raise UnknownFieldError."""
    text = name if arg is None else f"{name}[{arg}]"
    fdef = FIELDS.get(name)
    if fdef is None:
        for prefix in ("evt.arg.", "evt.rawarg."):
            if name.startswith(prefix) and arg is None and len(name) > len(prefix):
                base = FIELDS[prefix[:-1]]
                return base.build(text, name[len(prefix):])
        raise UnknownFieldError(f"unknown field '{name}'")
    if fdef.arg is ArgKind.NONE and arg is not None:
        raise UnknownFieldError(f"field '{name}' takes no argument")
    return fdef.build(text, arg)


def apply_transformer(transformer: str, inner: BoundField) -> BoundField:
    func = _TRANSFORMERS.get(transformer)
    if func is None:
        raise UnknownFieldError(f"unknown transformer '{transformer}'")
    get = inner.extract

    def extract(ev: Event, st: SystemState) -> object:
        value = get(ev, st)
        return None if value is None else func(value)

    return BoundField(f"{transformer}({inner.text})", FieldType.STRING, extract)


__all__ = [
    "FIELDS",
    "OPEN_TYPES",
    "TRANSFORMERS",
    "ArgKind",
    "BoundField",
    "Extractor",
    "FieldDef",
    "FieldType",
    "UnknownFieldError",
    "apply_transformer",
    "fd_end_ips",
    "render_chmod_mode",
    "render_open_flags",
    "render_param",
    "render_value",
    "resolve_field",
]

# Field groups kept in files of their own register into FIELDS when this module loads.
from runtime.engine import fields_container as _fields_container  # noqa: E402,F401
from runtime.engine import fields_fd as _fields_fd  # noqa: E402,F401
from runtime.engine import fields_process as _fields_process  # noqa: E402,F401
