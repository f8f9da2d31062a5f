"""proc.*/thread.* process fields for Falco's public rules: namespace ids, session and
process group leaders, environment, exe inode and flags, capabilities, start time.

Events are built in the decoder's shape (the params the driver's execve/clone exits carry)
and run through the real SystemState and rule compiler; the /proc snapshot is read from
this host's real /proc for processes spawned here with known facts.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from runtime.driver.schema import Decoder
from runtime.engine.capture import encode_record
from runtime.engine.fields import UnknownFieldError, render_param, render_value, resolve_field
from runtime.engine.fields_process import render_capabilities
from runtime.engine.rules import load_rules
from runtime.engine.state import CLONE_THREAD, SystemState, lite_kind
from runtime.engine.state.machine import LITE_CLONE
from runtime.engine.state.process import (
    EXE_FROM_MEMFD,
    EXE_LOWER_LAYER,
    EXE_UPPER_LAYER,
    EXE_WRITABLE,
)
from runtime.engine.state.procfs import overlay_layer, read_process, writable_by
from runtime.events import Event

RULES_DIR = Path(__file__).resolve().parent / "fixtures" / "falco_rules"
REPO = Path(__file__).resolve().parent.parent
CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_SYS_ADMIN = 1 << 0, 1 << 1, 1 << 21
SEC = 1_000_000_000

_clock = itertools.count(1000 * SEC, SEC)


def _ev(evt_type: str, *, res: int = 0, pid: int = 500, tid: int | None = None,
        ppid: int = 1, comm: str = "sh", ts: int | None = None,
        exec_params: dict[str, object] | None = None, **params: object) -> Event:
    params.update(exec_params or {})
    return Event(ts=next(_clock) if ts is None else ts, cpu=0, type=evt_type, syscall_nr=0,
                 res=res, pid=pid, tid=pid if tid is None else tid, ppid=ppid, uid=1000,
                 gid=1000, comm=comm, cgroup_id=0, params=dict(params))


def _exec_params(**overrides: object) -> dict[str, object]:
    """An execve exit as the driver's schema gives it (see driver/schema/events.yaml)."""
    params: dict[str, object] = {
        "filename": "/usr/bin/curl", "argv": ["curl", "x"], "cwd": "/tmp",
        "env": ["PATH=/usr/bin", "HTTP_PROXY= http://proxy:3128 ", "EMPTY="],
        "flags": EXE_WRITABLE | EXE_UPPER_LAYER,
        "exe_ino": 4242, "exe_ino_ctime": 900 * SEC, "exe_ino_mtime": 800 * SEC,
        "cap_inheritable": 0, "cap_permitted": CAP_CHOWN | CAP_SYS_ADMIN,
        "cap_effective": CAP_DAC_OVERRIDE,
        "vpid": 500, "vtid": 500, "vpgid": 500, "sid": 400, "tty": 34816,
        "loginuid": 1000,
    }
    params.update(overrides)
    return params


def _field(name: str, ev: Event, st: SystemState, arg: str | None = None) -> object:
    return resolve_field(name, arg).extract(ev, st)


def _apply(st: SystemState, ev: Event) -> Event:
    st.update(ev)
    return ev


def _matches(condition: str, ev: Event, st: SystemState) -> bool:
    rules = [{"rule": "probe", "desc": "d", "condition": condition, "output": "o",
              "priority": "NOTICE"}]
    ruleset = load_rules([], extra_texts=[("probe.yaml", yaml.safe_dump(rules))])
    (rule,) = ruleset.rules
    return bool(rule.match(ev, st))


def _spawned(st: SystemState, *, clone_ts: int, exec_ts: int, **overrides: object) -> Event:
    """Process 500 forked by 400 at clone_ts, then exec'd at exec_ts."""
    _apply(st, _ev("execve", pid=400, comm="bash", exec_params=_exec_params(
        vpid=400, vtid=400, vpgid=400, sid=400, filename="/bin/bash")))
    _apply(st, _ev("clone", res=500, pid=400, comm="bash", ts=clone_ts, flags=0,
                   vpid=400, vtid=400))
    return _apply(st, _ev("execve", pid=500, ppid=400, comm="curl", ts=exec_ts,
                          exec_params=_exec_params(**overrides)))


# ---- exec: every field from the driver's params -------------------------------------------

def test_exec_params_fill_every_field() -> None:
    st = SystemState()
    ev = _spawned(st, clone_ts=950 * SEC, exec_ts=960 * SEC)
    assert _field("proc.env", ev, st) == "PATH=/usr/bin HTTP_PROXY= http://proxy:3128  EMPTY="
    assert _field("proc.env", ev, st, "HTTP_PROXY") == "http://proxy:3128"
    assert _field("proc.env", ev, st, "PATH") == "/usr/bin"
    assert _field("proc.env", ev, st, "EMPTY") == ""  # libsinsp: a value must follow "="
    assert _field("proc.env", ev, st, "MISSING") == ""
    assert _field("proc.is_exe_writable", ev, st) is True
    assert _field("proc.is_exe_upper_layer", ev, st) is True
    assert _field("proc.is_exe_lower_layer", ev, st) is False
    assert _field("proc.is_exe_from_memfd", ev, st) is False
    assert _field("proc.exe_ino", ev, st) == 4242
    assert _field("proc.exe_ino.ctime", ev, st) == 900 * SEC
    assert _field("proc.exe_ino.mtime", ev, st) == 800 * SEC
    # Start (the clone) minus the exe's ctime, as libsinsp computes it at exec.
    assert _field("proc.exe_ino.ctime_duration_proc_start", ev, st) == 50 * SEC
    assert _field("thread.cap_permitted", ev, st) == "CAP_CHOWN CAP_SYS_ADMIN"
    assert _field("thread.cap_effective", ev, st) == "CAP_DAC_OVERRIDE"
    assert _field("thread.cap_inheritable", ev, st) == ""
    assert _field("proc.vpid", ev, st) == 500
    assert _field("thread.vtid", ev, st) == 500
    assert _field("proc.vpgid", ev, st) == 500
    assert _field("proc.sid", ev, st) == 400
    assert _field("proc.tty", ev, st) == 34816
    assert _field("user.loginuid", ev, st) == 1000
    assert _field("proc.pid.ts", ev, st) == 950 * SEC
    assert _field("proc.duration", ev, st) == 10 * SEC
    assert _field("proc.ppid.duration", ev, st) is None  # the parent's start was not seen
    assert _field("proc.is_vpgid_leader", ev, st) is True
    assert _field("proc.is_sid_leader", ev, st) is False
    assert _field("proc.sname", ev, st) == "bash"  # pid 400 leads session 400
    assert _field("proc.vpgid.name", ev, st) == "curl"  # it leads its own group
    assert _field("proc.vpgid.exe", ev, st) == _field("proc.exe", ev, st)


def test_unset_loginuid_reads_minus_one() -> None:
    st = SystemState()
    ev = _apply(st, _ev("execve", exec_params=_exec_params(loginuid=0xFFFFFFFF)))
    assert _field("user.loginuid", ev, st) == -1
    assert _matches("user.loginuid=-1", ev, st)


def test_event_without_new_params_reads_not_available() -> None:
    """An older driver's execve: the facts are not captured, so the fields are <NA>."""
    st = SystemState()
    ev = _apply(st, _ev("execve", filename="/bin/true", argv=["true"], cwd="/"))
    for name in ("proc.env", "proc.is_exe_writable", "proc.is_exe_upper_layer",
                 "proc.is_exe_from_memfd", "proc.exe_ino", "proc.exe_ino.ctime",
                 "proc.exe_ino.mtime", "proc.exe_ino.ctime_duration_proc_start",
                 "thread.cap_permitted", "thread.cap_effective", "thread.cap_inheritable",
                 "proc.vpid", "proc.vpgid", "proc.sid", "proc.sname", "proc.vpgid.name",
                 "proc.is_vpgid_leader", "proc.duration", "proc.pid.ts"):
        assert _field(name, ev, st) is None, name
    assert render_value(_field("thread.cap_permitted", ev, st)) == "<NA>"
    assert not _matches("thread.cap_permitted contains CAP_SYS_ADMIN", ev, st)
    assert not _matches("proc.duration <= 5000000000", ev, st)


def test_execveat_old_layout_flags_are_not_exe_flags() -> None:
    """execveat's `flags` meant AT_* flags until the exe flags took the name; without
    `at_flags` the event is of the old layout and says nothing about the exe."""
    st = SystemState()
    old = _apply(st, _ev("execveat", dirfd=-100, filename="/bin/true", flags=0x1000))
    assert _field("proc.is_exe_writable", old, st) is None
    new = _apply(st, _ev("execveat", dirfd=-100, at_flags=0x1000,
                         exec_params=_exec_params(flags=EXE_FROM_MEMFD)))
    assert _field("proc.is_exe_from_memfd", new, st) is True
    assert _field("proc.is_exe_writable", new, st) is False


def test_exepath_is_the_drivers_exe_file_path_when_captured() -> None:
    """proc.exepath is the path of the file the kernel runs (trusted_exepath, as libsinsp
    takes it): a memfd's "/memfd:<name> (deleted)", a symlink's target; the path exec was
    given only when the driver did not capture it (a capture of an earlier revision, or a
    read that failed), resolved against the cwd or the dirfd as before."""
    st = SystemState()
    memfd_exec = _exec_params(filename="/dev/fd/3", flags=EXE_FROM_MEMFD,
                              trusted_exepath="/memfd:rt-test-memfd (deleted)")
    memfd = _apply(st, _ev("execveat", pid=600, dirfd=3, at_flags=0x1000,
                           exec_params=memfd_exec))
    assert _field("proc.exepath", memfd, st) == "/memfd:rt-test-memfd (deleted)"
    assert _field("proc.is_exe_from_memfd", memfd, st) is True
    assert _field("evt.arg.trusted_exepath", memfd, st) == "/memfd:rt-test-memfd (deleted)"
    link = _apply(st, _ev("execve", pid=601, exec_params=_exec_params(
        filename="/usr/bin/python3", argv=["python3"], trusted_exepath="/usr/bin/python3.11")))
    assert _field("proc.exepath", link, st) == "/usr/bin/python3.11"
    assert _field("evt.arg.filename", link, st) == "/usr/bin/python3"
    child = _apply(st, _ev("openat", res=3, pid=601, dirfd=-100, name="/etc/hosts", flags=0,
                           mode=0))
    assert _field("proc.exepath", child, st) == "/usr/bin/python3.11"
    # Not captured: the empty param of a failed read, or no param at all.
    for absent in ({"trusted_exepath": None}, {"trusted_exepath": ""}, {}):
        ev = _apply(st, _ev("execve", pid=602, exec_params={
            **_exec_params(filename="bin/tool", argv=["tool"], cwd="/opt/app"), **absent}))
        if not absent:
            ev.params.pop("trusted_exepath", None)
        assert _field("proc.exepath", ev, st) == "/opt/app/bin/tool"


def test_driver_records_decode_into_the_fields() -> None:
    """The driver's own record layout, through the real decoder: the params arrive under
    the names (and in the shapes) the state reads."""
    decoder = Decoder("x86_64", 0)
    params = _exec_params(argv=["/usr/bin/curl", "x"], loginuid=0xFFFFFFFF)
    execve = decoder.decode(encode_record("execve", ts_boot_ns=5 * SEC, ret=0, pid=500,
                                          comm="curl", params=params))
    fork = decoder.decode(encode_record("clone", ts_boot_ns=6 * SEC, ret=501, pid=500,
                                        comm="curl", params={"flags": 0, "vpid": 500,
                                                             "vtid": 500}))
    st = SystemState()
    st.update(execve)
    assert _field("proc.env", execve, st, "PATH") == "/usr/bin"
    assert _field("thread.cap_permitted", execve, st) == "CAP_CHOWN CAP_SYS_ADMIN"
    assert _field("proc.exe_ino", execve, st) == 4242
    assert _field("proc.is_exe_upper_layer", execve, st) is True
    assert _field("evt.arg.flags", execve, st) == "EXE_WRITABLE|EXE_UPPER_LAYER"
    assert _field("user.loginuid", execve, st) == -1
    assert _field("proc.tty", execve, st) == 34816
    assert (_field("proc.vpgid", execve, st), _field("proc.sid", execve, st)) == (500, 400)
    st.update(fork)
    child = st.thread(501)
    assert child is not None
    assert child.start_ts == fork.ts and child.vpid == 501


# ---- clone inherits, exec replaces -------------------------------------------------------

def test_clone_inherits_process_facts_and_starts_its_own_clock() -> None:
    st = SystemState()
    parent = _spawned(st, clone_ts=950 * SEC, exec_ts=960 * SEC)
    _apply(st, _ev("clone", res=600, pid=500, ppid=400, comm="curl", ts=970 * SEC, flags=0,
                   vpid=500, vtid=500))
    child = _apply(st, _ev("openat", res=3, pid=600, ppid=500, comm="curl", ts=975 * SEC,
                           dirfd=-100, name="/etc/hosts", flags=0, mode=0))
    for name in ("proc.env", "thread.cap_permitted", "proc.exe_ino", "proc.sid",
                 "proc.vpgid", "proc.tty", "user.loginuid", "proc.is_exe_upper_layer",
                 "proc.exe_ino.ctime_duration_proc_start"):
        assert _field(name, child, st) == _field(name, parent, st), name
    assert _field("proc.pid.ts", child, st) == 970 * SEC
    assert _field("proc.duration", child, st) == 5 * SEC
    assert _field("proc.ppid.duration", child, st) == 25 * SEC  # parent started at 950
    # Host pid namespace (vpid == pid): the child's virtual ids are its real ones.
    assert _field("proc.vpid", child, st) == 600
    assert _field("proc.is_vpgid_leader", child, st) is False  # still in group 500
    assert _field("proc.vpgid.name", child, st) == "curl"


@pytest.mark.parametrize(("evt_type", "clone_ts"), [
    # Issue #11: the parent's clone (one CPU) reached the engine after the child's execve
    # (another CPU), later than the reorder window allows.
    ("clone", 950 * SEC),
    # vfork: the parent returns only once the child has exec'd, so its exit comes after.
    ("vfork", 961 * SEC),
])
def test_a_clone_returning_after_the_childs_exec_keeps_the_childs_image(
        evt_type: str, clone_ts: int) -> None:
    st = SystemState()
    _apply(st, _ev("execve", pid=400, comm="bash", exec_params=_exec_params(
        filename="/bin/bash", argv=["bash"])))
    _apply(st, _ev("execve", pid=500, ppid=400, comm="curl", ts=960 * SEC,
                   exec_params=_exec_params()))
    _apply(st, _ev(evt_type, res=500, pid=400, comm="bash", ts=clone_ts, flags=0))
    ev = _apply(st, _ev("openat", res=3, pid=500, ppid=400, comm="curl", ts=962 * SEC,
                        dirfd=-100, name="/etc/hosts", flags=0, mode=0))
    assert _field("proc.exepath", ev, st) == "/usr/bin/curl"
    assert _field("proc.name", ev, st) == "curl"
    assert _field("proc.pname", ev, st) == "bash"
    assert _field("proc.pid.ts", ev, st) == clone_ts  # the clone still dates it
    # Long after, the same tid from the same parent is a new child: the parent's copy.
    _apply(st, _ev("clone", res=500, pid=400, comm="bash", ts=1100 * SEC, flags=0))
    ev = _apply(st, _ev("openat", res=3, pid=500, ppid=400, comm="bash", ts=1101 * SEC,
                        dirfd=-100, name="/etc/hosts", flags=0, mode=0))
    assert _field("proc.exepath", ev, st) == "/bin/bash"


def test_thread_clone_keeps_the_process_vpid() -> None:
    st = SystemState()
    _spawned(st, clone_ts=950 * SEC, exec_ts=960 * SEC)
    _apply(st, _ev("clone", res=501, pid=500, ppid=400, comm="curl", flags=CLONE_THREAD,
                   vpid=500, vtid=500))
    ev = _apply(st, _ev("close", res=0, pid=500, tid=501, ppid=400, comm="curl", fd=9))
    assert _field("proc.vpid", ev, st) == 500
    assert _field("thread.vtid", ev, st) == 501


def test_clone_in_a_pid_namespace_learns_the_child_ids_from_the_child() -> None:
    st = SystemState()
    ns_init = _exec_params(vpid=1, vtid=1, vpgid=1, sid=1)
    _apply(st, _ev("execve", pid=7000, comm="init", exec_params=ns_init))
    _apply(st, _ev("clone", res=7001, pid=7000, comm="init", flags=0, vpid=1, vtid=1))
    before = _apply(st, _ev("close", res=0, pid=7001, ppid=7000, comm="init", fd=9))
    assert _field("proc.vpid", before, st) is None  # unknown until the child says
    own = _apply(st, _ev("clone", res=0, pid=7001, ppid=7000, comm="init", flags=0,
                         vpid=2, vtid=2))
    assert _field("proc.vpid", own, st) == 2
    # In the namespace the session leader is the eldest ancestor sharing the sid.
    assert _field("proc.sname", own, st) == "init"


def test_exec_replaces_env_caps_and_exe() -> None:
    st = SystemState()
    _spawned(st, clone_ts=950 * SEC, exec_ts=960 * SEC)
    again = _apply(st, _ev("execve", pid=500, ppid=400, comm="python3", exec_params=_exec_params(
        env=["LANG=C"], flags=0, exe_ino=77, exe_ino_ctime=940 * SEC,
        cap_permitted=0, cap_effective=0, tty=0)))
    assert _field("proc.env", again, st) == "LANG=C"
    assert _field("proc.env", again, st, "HTTP_PROXY") == ""
    assert _field("thread.cap_permitted", again, st) == ""
    assert _field("proc.exe_ino", again, st) == 77
    assert _field("proc.is_exe_writable", again, st) is False
    assert _field("proc.exe_ino.ctime_duration_proc_start", again, st) == 10 * SEC
    assert _field("proc.tty", again, st) == 0
    assert _field("proc.pid.ts", again, st) == 950 * SEC  # exec keeps the process's start


def test_lite_clone_dates_the_child_by_the_latest_event() -> None:
    """A clone the engine handles without an Event (no timestamp): the child's start is
    the latest full event's time, and the ids come from the lite params."""
    st = SystemState()
    _spawned(st, clone_ts=950 * SEC, exec_ts=960 * SEC)
    assert lite_kind("clone", ("flags", "vpid", "vtid")) == (LITE_CLONE, ("flags", "vpid",
                                                                          "vtid"))
    assert lite_kind("clone", ("flags",)) == (LITE_CLONE, ("flags",))
    assert st.update_lite((LITE_CLONE, 0, 500, 500, 400, 1000, 1000, 600, (0, 500, 500)))
    child = st.thread(600)
    assert child is not None
    assert (child.start_ts, child.vpid, child.env) == (960 * SEC, 600,
                                                       st.threads[500].env)
    assert st.update_lite((LITE_CLONE, 0, 600, 600, 500, 1000, 1000, 0, (0, 7, 7)))
    assert (child.vpid, child.vtid) == (7, 7)


# ---- rendering and rule comparisons --------------------------------------------------------

def test_capabilities_render_as_falco() -> None:
    assert render_capabilities(0) == ""
    assert render_capabilities(CAP_CHOWN | CAP_DAC_OVERRIDE) == "CAP_CHOWN CAP_DAC_OVERRIDE"
    assert render_capabilities(1 << 40) == "CAP_CHECKPOINT_RESTORE"
    assert render_capabilities(1 << 41) == ""  # beyond the names libsinsp knows


def test_rule_comparisons_as_the_public_rules_write_them() -> None:
    st = SystemState()
    ev = _spawned(st, clone_ts=958 * SEC, exec_ts=960 * SEC)
    assert _matches("thread.cap_permitted contains CAP_SYS_ADMIN", ev, st)
    assert not _matches("thread.cap_permitted contains CAP_SYS_MODULE", ev, st)
    assert _matches("thread.cap_effective icontains dac_override", ev, st)
    assert _matches("proc.env icontains http_proxy", ev, st)
    assert _matches("proc.duration <= 5000000000", ev, st)
    assert _matches("proc.is_vpgid_leader=true and proc.vpid=500", ev, st)
    assert _matches("proc.exe_ino.ctime_duration_proc_start >= 1", ev, st)
    assert _matches("proc.is_exe_upper_layer=true", ev, st)
    assert not _matches("proc.is_exe_from_memfd=true", ev, st)
    assert _matches("proc.sname=bash and proc.vpgid.name=curl", ev, st)
    assert _matches("proc.env[HTTP_PROXY] = http://proxy:3128", ev, st)


@pytest.mark.parametrize(("evt_type", "flags", "text"), [
    ("execve", EXE_WRITABLE | EXE_UPPER_LAYER, "EXE_WRITABLE|EXE_UPPER_LAYER"),
    ("execve", EXE_FROM_MEMFD, "EXE_FROM_MEMFD"),
    ("execveat", EXE_LOWER_LAYER | EXE_WRITABLE, "EXE_WRITABLE|EXE_LOWER_LAYER"),
    ("execve", 0, "0"),
    ("execve", 16, "16"),  # no known bit: libsinsp prints the number
])
def test_exe_flags_render_as_falco(evt_type: str, flags: int, text: str) -> None:
    assert render_param(evt_type, "flags", flags) == text
    st = SystemState()
    ev = _apply(st, _ev(evt_type, exec_params=_exec_params(flags=flags)))
    assert _field("evt.arg.flags", ev, st) == text


# ---- /proc snapshot of processes already running -----------------------------------------

@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child with a known environment, leading its own session and process group."""
    proc = subprocess.Popen(["sleep", "60"], env={"RT_MARKER": "a2-probe", "PATH": "/usr/bin:/bin"},
                            start_new_session=True)
    try:
        _wait_for_exec(proc.pid, "sleep")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _wait_for_exec(pid: int, comm: str) -> None:
    # Popen returns after fork; the exec itself may still be in flight. The kernel renames
    # the task before the new image's argv and environment are in place: wait for both.
    for _ in range(500):
        if (Path(f"/proc/{pid}/comm").read_text().strip() == comm
                and Path(f"/proc/{pid}/cmdline").read_bytes()):
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never became {comm}")


def _status_caps(pid: int) -> dict[str, int]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: int(v.strip(), 16) for k, _, v in (line.partition(":") for line in lines)
            if k in ("CapInh", "CapPrm", "CapEff")}


def test_procfs_snapshot_of_a_running_process(sleeper: subprocess.Popen[bytes]) -> None:
    th = read_process(Path(f"/proc/{sleeper.pid}"), sleeper.pid)
    assert th is not None
    assert th.env is not None and "RT_MARKER=a2-probe" in th.env
    assert th.sid == sleeper.pid and th.vpgid == sleeper.pid  # setsid()
    assert th.vpid == sleeper.pid and th.vtid == sleeper.pid  # our pid namespace
    caps = _status_caps(sleeper.pid)
    assert th.caps is not None
    assert (th.caps.inheritable, th.caps.permitted, th.caps.effective) == \
        (caps["CapInh"], caps["CapPrm"], caps["CapEff"])
    exe = os.stat(shutil.which("sleep") or "/bin/sleep")
    assert th.exe_file is not None
    assert (th.exe_file.ino, th.exe_file.ctime, th.exe_file.mtime) == \
        (exe.st_ino, exe.st_ctime_ns, exe.st_mtime_ns)
    assert not th.exe_file.flags & EXE_FROM_MEMFD
    # The start comes from clock ticks since boot: within seconds of now, not exact.
    assert abs(th.start_ts - time.time_ns()) < 60 * SEC
    assert th.exe_file.ctime_duration_proc_start == th.start_ts - exe.st_ctime_ns

    st = SystemState()
    st.seed_from_proc()
    ev = Event(ts=time.time_ns(), cpu=0, type="close", syscall_nr=0, res=0, pid=sleeper.pid,
               tid=sleeper.pid, ppid=os.getpid(), uid=os.getuid(), gid=os.getgid(),
               comm="sleep", cgroup_id=0, params={"fd": 9})
    st.update(ev)
    assert _field("proc.env", ev, st, "RT_MARKER") == "a2-probe"
    assert _field("proc.is_vpgid_leader", ev, st) is True
    assert _field("proc.sname", ev, st) == "sleep"
    duration = _field("proc.duration", ev, st)
    assert isinstance(duration, int) and duration >= 0


def test_procfs_environment_is_capped_like_the_driver() -> None:
    big = {"PATH": "/usr/bin:/bin", "HUGE": "x" * 10000, "AFTER": "never-read"}
    proc = subprocess.Popen(["sleep", "60"], env=big)
    try:
        _wait_for_exec(proc.pid, "sleep")
        th = read_process(Path(f"/proc/{proc.pid}"), proc.pid)
        assert th is not None and th.env is not None
        assert sum(len(e) + 1 for e in th.env) <= 4096 + 1
        assert not any(e.startswith("AFTER=") for e in th.env)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd_create")
def test_procfs_sees_a_memfd_executable() -> None:
    fd = os.memfd_create("a2-fileless", 0)
    try:
        with open(shutil.which("sleep") or "/bin/sleep", "rb") as src:
            os.write(fd, src.read())
        proc = subprocess.Popen([f"/proc/self/fd/{fd}", "60"], pass_fds=(fd,))
        try:
            # The comm of an fd-path exec is the fd number.
            _wait_for_exec(proc.pid, str(fd))
            th = read_process(Path(f"/proc/{proc.pid}"), proc.pid)
            assert th is not None and th.exe_file is not None
            assert th.exe_file.flags & EXE_FROM_MEMFD
            assert not th.exe_file.flags & (EXE_UPPER_LAYER | EXE_LOWER_LAYER)
        finally:
            proc.kill()
            proc.wait()
    finally:
        os.close(fd)


def test_overlay_layer_from_mountinfo(tmp_path: Path) -> None:
    upper = tmp_path / "upper dir"  # a space: mountinfo escapes it as \040
    (upper / "usr" / "bin").mkdir(parents=True)
    (upper / "usr" / "bin" / "dropped").write_bytes(b"")
    pdir = tmp_path / "proc"
    pdir.mkdir()
    escaped = str(upper).replace(" ", "\\040")
    (pdir / "mountinfo").write_text(
        "22 1 0:21 / / rw,relatime - overlay overlay "
        f"rw,lowerdir=/l1:/l2,upperdir={escaped},workdir=/w\n"
        "30 22 0:5 / /proc rw - proc proc rw\n"
        "31 22 8:1 / /data rw - ext4 /dev/sda1 rw\n")
    assert overlay_layer(pdir, "/usr/bin/dropped") == EXE_UPPER_LAYER
    assert overlay_layer(pdir, "/usr/bin/sleep") == EXE_LOWER_LAYER
    assert overlay_layer(pdir, "/data/tool") == 0  # a deeper, non-overlay mount


def test_writable_approximated_from_mode_bits(tmp_path: Path) -> None:
    target = tmp_path / "tool"
    target.write_bytes(b"")
    target.chmod(0o755)
    info = os.stat(target)
    owner, group = info.st_uid, info.st_gid
    assert writable_by(info, 0, 0, read_only=False)
    assert not writable_by(info, 0, 0, read_only=True)
    assert writable_by(info, owner or 1, group, read_only=False) == (owner != 0)
    assert not writable_by(info, 54321, 54321, read_only=False)
    target.chmod(0o757)
    assert writable_by(os.stat(target), 54321, 54321, read_only=False)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o757


# ---- Falco's public rules ------------------------------------------------------------------

_PROCESS_FIELD = re.compile(
    r"%?\b((?:proc|thread|user)\.[a-z_.]*[a-z_])(?:\[([^\]]*)\])?")


def test_public_rules_name_no_unknown_process_field() -> None:
    names: set[tuple[str, str | None]] = set()
    for path in sorted(RULES_DIR.glob("*.yaml")):
        for item in yaml.safe_load(path.read_text()) or []:
            texts = [item.get(k) for k in ("condition", "output") if isinstance(item, dict)]
            for text in texts:
                if isinstance(text, str):
                    names.update(_PROCESS_FIELD.findall(text))
    assert ("thread.cap_permitted", "") in names  # the scan reads what it should
    unknown = []
    for name, arg in names:
        try:
            resolve_field(name, arg or None)
        except UnknownFieldError as exc:
            unknown.append(str(exc))
    assert unknown == []


_NEW_FIELD = re.compile(r"proc\.(duration|sname|vpid|is_vpgid_leader|env|is_exe|exe_ino|vpgid"
                        r"|ppid\.duration)|thread\.cap_")


def _rules_using_new_fields(path: Path) -> tuple[list[dict[str, object]], int]:
    """The file's lists, and its rules whose condition (macros expanded by name) or output
    reads a field added here, with the macros they need; and how many such rules."""
    items = [i for i in yaml.safe_load(path.read_text()) if isinstance(i, dict)]
    macros = {str(i["macro"]): i for i in items if "macro" in i}

    def closure(text: str) -> set[str]:
        needed: set[str] = set()
        todo = [text]
        while todo:
            for word in set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", todo.pop())):
                if word in macros and word not in needed:
                    needed.add(word)
                    todo.append(str(macros[word].get("condition", "")))
        return needed

    chosen: list[dict[str, object]] = []
    needed: set[str] = set()
    for item in items:
        if "rule" not in item:
            continue
        uses = closure(str(item.get("condition", "")))
        text = " ".join([str(item.get("condition", "")), str(item.get("output", "")),
                         *(str(macros[m].get("condition", "")) for m in uses)])
        if _NEW_FIELD.search(text):
            chosen.append(item)
            needed |= uses
    lists = [i for i in items if "list" in i]
    return lists + [macros[m] for m in macros if m in needed] + chosen, len(chosen)


@pytest.mark.parametrize("name", ["falco_rules", "falco-incubating_rules",
                                  "falco-sandbox_rules"])
def test_rt_engine_validates_the_public_rules_reading_these_fields(
        name: str, tmp_path: Path) -> None:
    """`rt-engine validate` over the public rules that read the fields added here (the
    whole files may still fail for reasons owned elsewhere: engine version, fd fields)."""
    items, count = _rules_using_new_fields(RULES_DIR / f"{name}.yaml")
    assert count >= 2
    subset = tmp_path / f"{name}.yaml"
    subset.write_text(yaml.safe_dump(items))
    result = subprocess.run(
        [sys.executable, "-m", "runtime.engine.cli", "validate", "--rules", str(subset)],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
