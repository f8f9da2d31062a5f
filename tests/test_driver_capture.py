"""What the CO-RE probe captures for Falco's public rules, on the host kernel.

Each test runs a workload in a child process, which reports what the kernel says about
itself (/proc/self/status, stat(2), socket names) to a JSON file; the test then finds
that child's events by pid and checks every new param against that report. So the
expected values come from the kernel through another interface, never from this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runtime.driver import ProbeSource
from runtime.driver._syscalls import SYSCALLS
from runtime.driver.schema import machine_arch
from runtime.events import Event
from tests.conftest import REPO_ROOT, require
from tests.test_core_probe import Consumer

pytestmark = [pytest.mark.bpf, pytest.mark.root]

EXE_WRITABLE = 1
EXE_UPPER_LAYER = 2
EXE_FROM_MEMFD = 4
EXE_LOWER_LAYER = 8
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
SNAPLEN = 80


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(shutil.which("bpftool") is not None, "needs bpftool (apt-get install bpftool)")
    require(shutil.which("clang") is not None, "needs clang (apt-get install clang)")
    out = tmp_path_factory.mktemp("core")
    r = subprocess.run(["make", "-C", str(REPO_ROOT / "driver"), "core", f"OUT={out}"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return out / "rtcap_core.o"


def capture(probe: Path, syscalls: set[str], code: str, report: Path) -> tuple[int, list[Event],
                                                                          dict[str, Any]]:
    """Run `code` in a child under the probe; its pid, every event, and its JSON report."""
    with ProbeSource(probe, syscalls, 32 << 20) as src, Consumer(src) as consumer:
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)])
        assert proc.wait(timeout=60) == 0
    return proc.pid, consumer.events, json.loads(report.read_text())


def last_arg(ev: Event) -> object:
    args = ev.params.get("args")
    return args[-1] if isinstance(args, list) and args else None


def as_int(value: object) -> int:
    assert isinstance(value, int), value
    return value


def status_caps(text: str) -> dict[str, int]:
    return {k: int(v, 16) for k, v in (line.split(":\t") for line in text.splitlines())
            if k in ("CapInh", "CapPrm", "CapEff")}  # fmt: skip


# Runs in the exec'd image: reports what /proc and stat(2) say about this process.
SELF_REPORT = """
import json, os, sys
status = open("/proc/self/status").read()
stat = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
exe = os.path.realpath("/proc/self/exe")
st = os.stat("/proc/self/exe")
json.dump({"status": status, "pid": os.getpid(), "pgrp": os.getpgrp(), "sid": os.getsid(0),
           "tty_nr": int(stat[4]), "loginuid": int(open("/proc/self/loginuid").read()),
           "exe": exe, "exe_link": os.readlink("/proc/self/exe"), "ino": st.st_ino,
           "ctime": st.st_ctime_ns, "mtime": st.st_mtime_ns},
          open(sys.argv[1], "w"))
"""


def fs_magic(path: str) -> int:
    out = subprocess.run(["stat", "-f", "-c", "%t", path], capture_output=True, text=True,
                         check=True).stdout
    return int(out.strip(), 16)


def test_execve_exit_carries_env_caps_ids_and_exe_inode(probe: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code = f"""
        import os, sys
        env = {{"RTCAP_MARK": "known-value-42", "PATH": "/usr/bin:/bin"}}
        os.execve(sys.executable, [sys.executable, "-c", {SELF_REPORT!r}, {str(report)!r}], env)
    """
    pid, events, rep = capture(probe, {"execve"}, code, report)
    # the second exec of the child: the first is Popen's, of `code`
    execs = [e for e in events if e.pid == pid and e.type == "execve" and e.res == 0
             and last_arg(e) == str(report)]  # fmt: skip
    assert len(execs) == 1, [e.params for e in events if e.pid == pid]
    p = execs[0].params
    env = p["env"]
    assert isinstance(env, list)
    assert "RTCAP_MARK=known-value-42" in env and "PATH=/usr/bin:/bin" in env

    caps = status_caps(rep["status"])
    assert p["cap_effective"] == caps["CapEff"] and p["cap_effective"] != 0
    assert p["cap_permitted"] == caps["CapPrm"]
    assert p["cap_inheritable"] == caps["CapInh"]

    assert (p["exe_ino"], p["exe_ino_ctime"], p["exe_ino_mtime"]) == (
        rep["ino"], rep["ctime"], rep["mtime"])
    assert (p["vpid"], p["vtid"]) == (rep["pid"], rep["pid"]) == (pid, pid)
    assert (p["vpgid"], p["sid"]) == (rep["pgrp"], rep["sid"])
    assert p["tty"] == rep["tty_nr"]  # /proc/<pid>/stat encodes tty_nr as Falco does
    assert p["loginuid"] == rep["loginuid"]

    # the kernel's own path of the exe, /proc/<pid>/exe (d_path of mm->exe_file)
    assert p["trusted_exepath"] == rep["exe_link"] == rep["exe"]

    flags = as_int(p["flags"])
    assert not flags & EXE_FROM_MEMFD
    # root holds CAP_DAC_OVERRIDE: every file is writable to it
    assert flags & EXE_WRITABLE
    overlay = fs_magic(rep["exe"]) == 0x794C7630
    assert bool(flags & (EXE_UPPER_LAYER | EXE_LOWER_LAYER)) == overlay


def test_failed_execve_has_empty_exe_params(probe: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code = f"""
        import json, os
        try:
            os.execv("/nonexistent/rtcap-no-such-binary", ["x"])
        except OSError as e:
            json.dump({{"errno": e.errno}}, open({str(report)!r}, "w"))
    """
    pid, events, rep = capture(probe, {"execve"}, code, report)
    fails = [e for e in events if e.pid == pid and e.type == "execve" and e.res != 0]
    assert len(fails) == 1 and fails[0].res == -rep["errno"]
    p = fails[0].params
    assert p["env"] is None and p["flags"] == 0 and p["trusted_exepath"] is None
    assert (p["exe_ino"], p["exe_ino_ctime"], p["exe_ino_mtime"]) == (0, 0, 0)
    assert p["vpid"] == pid  # the caller's, still true after a failure


def test_exec_from_memfd_is_flagged(probe: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code = f"""
        import os, sys
        fd = os.memfd_create("rtcap-memfd-test", 0)
        os.write(fd, open(os.path.realpath(sys.executable), "rb").read())
        # fexecve: glibc issues execveat(fd, "", AT_EMPTY_PATH)
        os.execve(fd, [sys.executable, "-c", {SELF_REPORT!r}, {str(report)!r}], dict(os.environ))
    """
    pid, events, rep = capture(probe, {"execve", "execveat", "memfd_create"}, code, report)
    mine = [e for e in events if e.pid == pid]
    memfds = [e for e in mine if e.type == "memfd_create"]
    assert len(memfds) == 1, [e.type for e in mine]
    assert memfds[0].params["name"] == "rtcap-memfd-test" and memfds[0].params["flags"] == 0
    assert memfds[0].res >= 0
    execs = [e for e in mine if e.type in ("execve", "execveat") and e.res == 0
             and last_arg(e) == str(report)]  # fmt: skip
    assert len(execs) == 1, [(e.type, e.res) for e in mine]
    p = execs[0].params
    assert as_int(p["flags"]) & EXE_FROM_MEMFD
    assert p["exe_ino"] == rep["ino"]
    assert p["trusted_exepath"] == rep["exe_link"] == "/memfd:rtcap-memfd-test (deleted)"
    if execs[0].type == "execveat":
        assert as_int(p["at_flags"]) & 0x1000  # AT_EMPTY_PATH
        assert p["dirfd"] == memfds[0].res


def _exepath_field(events: list[Event], ev: Event) -> object:
    """proc.exepath of `ev` once the engine's state has seen `events` up to it."""
    from runtime.engine.fields import resolve_field
    from runtime.engine.state import SystemState

    st = SystemState()
    for e in events:
        st.update(e)
        if e is ev:
            return resolve_field("proc.exepath", None).extract(ev, st)
    raise AssertionError("event not in the list")


def test_exepath_is_the_exe_file_as_d_path_prints_it(probe: Path, tmp_path: Path) -> None:
    """trusted_exepath (and so proc.exepath) is the file the kernel runs, as d_path() and
    /proc/<pid>/exe print it: a memfd is "/memfd:<name> (deleted)", a symlink is its
    target, an unlinked file gets " (deleted)", a file on another mount has its full
    path, and in a chroot the path starts at the chroot. Each child execs with a marker
    as its last argument, which `true` ignores."""
    require(Path("/bin/busybox").exists(), "needs a static busybox (busybox-static)")
    true = os.path.realpath("/bin/true")
    link = tmp_path / "true-link"
    link.symlink_to(true)
    work = Path(os.path.realpath(tmp_path))
    root = work / "jail"
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    shm = Path("/dev/shm") / f"rt-test-exe-{os.getpid()}"
    report = tmp_path / "report.json"
    code = f"""
        import json, os, shutil
        def run(marker, exe, argv0="true", chroot=None):
            pid = os.fork()
            if pid == 0:
                if chroot:
                    os.chroot(chroot)
                    os.chdir("/")
                os.execve(exe, [argv0, marker], {{}})
            os.waitpid(pid, 0)
        memfd = os.memfd_create("rt-test-memfd", 0)
        os.write(memfd, open({true!r}, "rb").read())
        run("m-memfd", memfd)
        run("m-link", {str(link)!r})
        shutil.copy2({true!r}, {str(work / "deltrue")!r})
        gone = os.open({str(work / "deltrue")!r}, os.O_RDONLY)
        os.unlink({str(work / "deltrue")!r})
        run("m-deleted", gone)
        shutil.copy2({true!r}, {str(shm)!r})
        run("m-shm", {str(shm)!r})
        os.unlink({str(shm)!r})
        run("m-chroot", "/bin/busybox", chroot={str(root)!r})
        json.dump({{}}, open({str(report)!r}, "w"))
    """
    try:
        pid, events, _rep = capture(probe, {"execve", "execveat", "clone", "clone3", "fork"},
                                    code, report)
    finally:
        shm.unlink(missing_ok=True)
    want = {
        "m-memfd": "/memfd:rt-test-memfd (deleted)",
        "m-link": true,
        "m-deleted": f"{work}/deltrue (deleted)",
        "m-shm": str(shm),
        "m-chroot": "/bin/busybox",
    }
    got: dict[str, tuple[object, object]] = {}
    execs = [e for e in events if e.type in ("execve", "execveat") and e.res == 0]
    for ev in execs:
        marker = last_arg(ev)
        if isinstance(marker, str) and marker in want and ev.ppid == pid:
            got[marker] = (ev.params["trusted_exepath"], _exepath_field(events, ev))
    assert got == {k: (v, v) for k, v in want.items()}, [
        (e.pid, e.ppid, e.params.get("filename"), e.params.get("trusted_exepath")) for e in execs]


PAYLOAD = b"cafebabe" + bytes(range(32, 127)) + b"-tail-beyond-the-snaplen"


def test_udp_send_and_receive_show_tuple_and_data(probe: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code = f"""
        import json, socket
        payload = {PAYLOAD!r}
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.bind(("127.0.0.1", 0))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.sendto(payload, r.getsockname())
        got, peer = r.recvfrom(4096)
        s.sendmsg([payload[:40], payload[40:]], [], 0, r.getsockname())
        got2, _anc, _fl, peer2 = r.recvmsg(4096)
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        t.listen(7)
        json.dump({{"r": r.getsockname(), "s": s.getsockname(), "got": got.hex(),
                    "got2": got2.hex(), "peer": peer, "rfd": r.fileno(), "sfd": s.fileno(),
                    "tfd": t.fileno()}}, open({str(report)!r}, "w"))
    """
    syscalls = {"sendto", "recvfrom", "sendmsg", "recvmsg", "listen"}
    pid, events, rep = capture(probe, syscalls, code, report)
    mine = {e.type: e for e in events if e.pid == pid}
    assert set(mine) == syscalls, sorted(mine)
    r_port, s_port = rep["r"][1], rep["s"][1]
    assert bytes.fromhex(rep["got"]) == PAYLOAD == bytes.fromhex(rep["got2"])

    send, recv = mine["sendto"], mine["recvfrom"]
    assert send.res == len(PAYLOAD) and send.params["size"] == len(PAYLOAD)
    assert send.params["fd"] == rep["sfd"]
    assert send.params["data"] == PAYLOAD[:SNAPLEN]
    assert str(send.params["tuple"]) == f"127.0.0.1:{s_port}->127.0.0.1:{r_port}"
    assert (send.params["addr"], send.params["port"]) == ("127.0.0.1", r_port)
    assert recv.res == len(PAYLOAD) and recv.params["data"] == PAYLOAD[:SNAPLEN]
    assert recv.params["fd"] == rep["rfd"]
    assert str(recv.params["tuple"]) == f"127.0.0.1:{s_port}->127.0.0.1:{r_port}"
    assert (recv.params["addr"], recv.params["port"]) == ("127.0.0.1", s_port)

    smsg, rmsg = mine["sendmsg"], mine["recvmsg"]
    assert smsg.res == len(PAYLOAD) and smsg.params["size"] == len(PAYLOAD)
    assert smsg.params["data"] == PAYLOAD[:40]  # the first iovec only
    assert str(smsg.params["tuple"]) == f"127.0.0.1:{s_port}->127.0.0.1:{r_port}"
    assert rmsg.params["data"] == PAYLOAD[:SNAPLEN]
    assert str(rmsg.params["tuple"]) == f"127.0.0.1:{s_port}->127.0.0.1:{r_port}"

    listen = mine["listen"]
    assert listen.res == 0 and (listen.params["fd"], listen.params["backlog"]) == (rep["tfd"], 7)


def test_namespace_and_userfaultfd_events_carry_their_params(probe: Path,
                                                            tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    nr_uffd = SYSCALLS[machine_arch()]["userfaultfd"]
    code = f"""
        import ctypes, json, os
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.unshare({CLONE_NEWUTS}) == 0
        fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
        assert libc.setns(fd, {CLONE_NEWUTS}) == 0
        uffd = libc.syscall({nr_uffd}, os.O_CLOEXEC)
        err = ctypes.get_errno() if uffd < 0 else 0
        # a child in a new pid namespace is pid 1 there
        assert libc.unshare({CLONE_NEWPID}) == 0
        child = os.fork()
        if child == 0:
            os._exit(0)
        os.waitpid(child, 0)
        json.dump({{"nsfd": fd, "uffd": uffd, "err": err, "child": child}},
                  open({str(report)!r}, "w"))
    """
    syscalls = {"unshare", "setns", "userfaultfd", "clone", "clone3", "fork"}
    pid, events, rep = capture(probe, syscalls, code, report)
    mine = [e for e in events if e.pid == pid]
    unshares = [e.params["flags"] for e in mine if e.type == "unshare" and e.res == 0]
    assert unshares == [CLONE_NEWUTS, CLONE_NEWPID]
    setns = [e for e in mine if e.type == "setns"]
    assert len(setns) == 1 and setns[0].res == 0
    assert (setns[0].params["fd"], setns[0].params["nstype"]) == (rep["nsfd"], CLONE_NEWUTS)
    uffd = [e for e in mine if e.type == "userfaultfd"]
    assert len(uffd) == 1 and uffd[0].params["flags"] == os.O_CLOEXEC
    assert uffd[0].res == (rep["uffd"] if rep["uffd"] >= 0 else -rep["err"])

    clones = [e for e in mine if e.type in ("clone", "clone3", "fork") and e.res == rep["child"]]
    assert len(clones) == 1 and (clones[0].params["vpid"], clones[0].params["vtid"]) == (pid, pid)
    in_child = [e for e in events
                if e.pid == rep["child"] and e.type in ("clone", "clone3", "fork")]
    assert len(in_child) == 1 and in_child[0].res == 0
    assert (in_child[0].params["vpid"], in_child[0].params["vtid"]) == (1, 1)
