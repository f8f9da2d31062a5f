"""System state: /proc seeding, exec/clone/exit, fds, sockets, containers, bounds."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.engine.capture import AF_INET, AF_INET6, AF_UNIX, encode_record, encode_tuple
from runtime.engine.state import (
    CLONE_THREAD,
    HOST_CONTAINER_ID,
    REQUIRED_SYSCALLS,
    SystemState,
    container_from_cgroup_path,
    container_from_proc_cgroup,
    parse_tuple,
)
from runtime.events import Event, SocketTuple

CID = "3f4e8b9a0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f"


def ev(evt_type: str, *, res: int = 0, pid: int = 100, tid: int | None = None,
       ppid: int = 1, comm: str = "proc", **params: Any) -> Event:
    return Event(ts=1, cpu=0, type=evt_type, syscall_nr=0, res=res, pid=pid,
                 tid=tid if tid is not None else pid, ppid=ppid, uid=0, gid=0, comm=comm,
                 cgroup_id=0, params=dict(params))


# ---- containers -------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "runtime"), [
    (f"/docker/{CID}", "docker"),
    (f"/system.slice/docker-{CID}.scope", "docker"),
    (f"/kubepods/besteffort/pod0f9a2c3e-1111-2222-3333-444455556666/{CID}", "containerd"),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f9a2c3e_1111_2222_3333"
     f"_444455556666.slice/cri-containerd-{CID}.scope", "containerd"),
    ("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podabc.slice/"
     f"crio-{CID}.scope", "cri-o"),
    (f"/kubepods/burstable/podabc/crio-{CID}", "cri-o"),
    (f"/machine.slice/libpod-{CID}.scope", "podman"),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope/container",
     "podman"),
    (f"/libpod_parent/libpod-{CID}", "podman"),
    (f"/system.slice/containerd.service/default/{CID}", "containerd"),
])
def test_container_ids_from_cgroup_layouts(path: str, runtime: str) -> None:
    ref = container_from_cgroup_path(path)
    assert ref is not None
    assert ref.id == CID[:12]
    assert ref.full_id == CID
    assert ref.runtime == runtime


@pytest.mark.parametrize("path", [
    "/",
    "/user.slice/user-1000.slice/session-3.scope",
    "/system.slice/docker.service",
    f"/machine.slice/libpod-conmon-{CID}.scope",
    "/system.slice/docker-notanid.scope",
])
def test_host_cgroups_have_no_container(path: str) -> None:
    assert container_from_cgroup_path(path) is None


def test_proc_cgroup_file_v1_and_v2() -> None:
    v1 = ("12:pids:/docker/" + CID + "\n11:memory:/docker/" + CID + "\n1:name=systemd:/docker/"
          + CID + "\n")
    ref = container_from_proc_cgroup(v1)
    assert ref is not None and ref.id == CID[:12]
    assert container_from_proc_cgroup("0::/init.scope\n") is None


# ---- seeding ---------------------------------------------------------------------------------

def fake_proc(root: Path, pid: int, *, name: str, ppid: int, argv: list[str], cgroup: str,
              exe: str = "/usr/bin/x", cwd: str = "/", tids: tuple[int, ...] = (),
              fds: dict[int, str] | None = None) -> None:
    pdir = root / str(pid)
    pdir.mkdir(parents=True)
    (pdir / "status").write_text(
        f"Name:\t{name}\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{ppid}\nUid:\t1000\t1000\t1000\t1000\n"
        "Gid:\t100\t100\t100\t100\n")
    (pdir / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (pdir / "stat").write_text(f"{pid} ({name}) S {ppid} {pid} {pid} 34816 0 0\n")
    (pdir / "cgroup").write_text(cgroup)
    (pdir / "loginuid").write_text("1000")
    os.symlink(exe, pdir / "exe")
    os.symlink(cwd, pdir / "cwd")
    task = pdir / "task"
    task.mkdir()
    for tid in (pid, *tids):
        (task / str(tid)).mkdir()
        (task / str(tid) / "comm").write_text(f"{name}-{tid}\n" if tid != pid else f"{name}\n")
    (pdir / "fd").mkdir()
    for num, target in (fds or {}).items():
        os.symlink(target, pdir / "fd" / str(num))


def test_seed_from_fake_proc(tmp_path: Path) -> None:
    fake_proc(tmp_path, 1, name="init", ppid=0, argv=["/sbin/init"], cgroup="0::/init.scope\n")
    fake_proc(tmp_path, 42, name="nginx", ppid=1, argv=["nginx", "-g", "daemon off;"],
              cgroup=f"0::/system.slice/docker-{CID}.scope\n", exe="/usr/sbin/nginx",
              cwd="/srv", tids=(43,), fds={3: "/var/log/nginx.log", 4: "socket:[1234]",
                                          5: "pipe:[99]"})
    (tmp_path / "self").mkdir()
    st = SystemState()
    assert st.seed_from_proc(str(tmp_path)) == 3
    nginx = st.thread(42)
    assert nginx is not None
    assert (nginx.comm, nginx.ppid, nginx.exe, nginx.exepath, nginx.cwd) == (
        "nginx", 1, "nginx", "/usr/sbin/nginx", "/srv")
    assert nginx.args == ("-g", "daemon off;")
    assert (nginx.uid, nginx.gid, nginx.loginuid, nginx.tty) == (1000, 100, 1000, 34816)
    assert nginx.container_id == CID[:12]
    worker = st.thread(43)
    assert worker is not None and worker.pid == 42 and worker.comm == "nginx-43"
    assert worker.container_id == CID[:12]
    init = st.thread(1)
    assert init is not None and init.container_id == HOST_CONTAINER_ID
    log = st.fd(42, 3)
    assert log is not None and log.name == "/var/log/nginx.log" and log.typechar == "f"
    pipe = st.fd(42, 5)
    assert pipe is not None and pipe.typechar == "p"


def test_seed_from_real_proc_finds_this_process() -> None:
    st = SystemState()
    assert st.seed_from_proc("/proc") > 0
    me = st.thread(os.getpid())
    assert me is not None
    assert me.ppid == os.getppid()
    assert me.exepath == os.path.realpath(sys.executable)
    assert me.cwd == os.getcwd()


# ---- process lifecycle ---------------------------------------------------------------------

def test_clone_exec_exit() -> None:
    st = SystemState()
    st.update(ev("execve", pid=10, comm="bash", filename="/bin/bash", exe="bash", args=["-l"],
                 cwd="/home/u"))
    st.update(ev("openat", res=3, pid=10, comm="bash", name="/tmp/f", flags=0))
    st.update(ev("clone", res=11, pid=10, comm="bash"))
    child = st.thread(11)
    assert child is not None
    assert (child.pid, child.ppid, child.comm, child.cwd) == (11, 10, "bash", "/home/u")
    assert st.fd(11, 3) is not None  # fork copies the fd table
    st.update(ev("execve", pid=11, ppid=10, comm="ls", filename="/bin/ls", exe="ls",
                 args=["-la"]))
    child = st.thread(11)
    assert child is not None
    assert (child.comm, child.exe, child.exepath, child.args) == ("ls", "ls", "/bin/ls",
                                                                   ("-la",))
    parent = st.thread(10)
    assert parent is not None and parent.comm == "bash"  # exec changes only the child
    exit_ev = ev("procexit", pid=11, ppid=10, comm="ls")
    st.update(exit_ev)
    assert st.thread(11) is not None  # still resolvable for the exiting event
    assert st.thread_of(exit_ev).comm == "ls"
    st.update(ev("getpid", pid=10, comm="bash"))
    assert st.thread(11) is None
    assert st.fd(11, 3) is None


def test_failed_exec_changes_nothing() -> None:
    st = SystemState()
    st.update(ev("execve", pid=10, comm="bash", filename="/bin/bash", exe="bash"))
    st.update(ev("execve", res=-2, pid=10, comm="bash", filename="/nope", exe="nope"))
    th = st.thread(10)
    assert th is not None and th.exepath == "/bin/bash"


def test_thread_clone_shares_process() -> None:
    st = SystemState()
    st.update(ev("execve", pid=10, ppid=1, comm="java", filename="/usr/bin/java", exe="java"))
    st.update(ev("clone", res=12, pid=10, ppid=1, comm="java", flags=CLONE_THREAD))
    th = st.thread(12)
    assert th is not None and th.pid == 10 and th.ppid == 1
    st.update(ev("procexit", pid=10, tid=12, ppid=1, comm="java"))
    st.update(ev("getpid", pid=10, comm="java"))
    assert st.thread(12) is None and st.thread(10) is not None


def test_child_side_of_clone_and_unknown_threads() -> None:
    st = SystemState()
    st.update(ev("execve", pid=10, ppid=1, comm="sh", filename="/bin/sh", exe="sh", cwd="/w"))
    child_ev = ev("clone", res=0, pid=20, ppid=10, comm="sh")
    st.update(child_ev)
    th = st.thread(20)
    assert th is not None and th.cwd == "/w" and th.ppid == 10


def test_reparenting_follows_the_event() -> None:
    st = SystemState()
    st.update(ev("execve", pid=30, ppid=20, comm="x", filename="/x", exe="x"))
    st.update(ev("getpid", pid=30, ppid=1, comm="x"))
    th = st.thread(30)
    assert th is not None and th.ppid == 1


# ---- fds ---------------------------------------------------------------------------------

def test_open_close_dup_and_paths() -> None:
    st = SystemState()
    st.update(ev("execve", pid=10, comm="sh", filename="/bin/sh", exe="sh", cwd="/srv/app"))
    st.update(ev("openat", res=3, pid=10, name="conf/../data.txt", dirfd=-100, flags=0o2))
    info = st.fd(10, 3)
    assert info is not None and info.name == "/srv/app/data.txt"
    st.update(ev("openat", res=4, pid=10, name="/var/lib", flags=0o200000))
    d = st.fd(10, 4)
    assert d is not None and d.typechar == "d" and d.type == "directory"
    st.update(ev("openat", res=5, pid=10, name="x.db", dirfd=4, flags=0))
    rel = st.fd(10, 5)
    assert rel is not None and rel.name == "/var/lib/x.db"
    st.update(ev("dup2", res=9, pid=10, oldfd=3))
    dup = st.fd(10, 9)
    assert dup is not None and dup.name == "/srv/app/data.txt" and dup.fd == 9
    close = ev("close", res=0, pid=10, fd=3)
    st.update(close)
    assert st.fd_of(close) is not None  # still there for the close event itself
    st.update(ev("getpid", pid=10))
    assert st.fd(10, 3) is None
    st.update(ev("creat", res=6, pid=10, name="/tmp/new", mode=0o644))
    created = st.fd(10, 6)
    assert created is not None and created.flags & 0o100


def test_chdir_and_fchdir() -> None:
    st = SystemState()
    st.update(ev("execve", pid=10, comm="sh", filename="/bin/sh", exe="sh", cwd="/"))
    st.update(ev("chdir", pid=10, path="usr/lib"))
    th = st.thread(10)
    assert th is not None and th.cwd == "/usr/lib"
    st.update(ev("openat", res=3, pid=10, name="/etc", flags=0o200000))
    st.update(ev("fchdir", pid=10, fd=3))
    assert th.cwd == "/etc"


@pytest.mark.parametrize(("text", "parts"), [
    ("10.0.0.1:4000->1.2.3.4:80", ("10.0.0.1", 4000, "1.2.3.4", 80)),
    ("::1:5000->::1:443", ("::1", 5000, "::1", 443)),
    ("[fe80::1]:5000->[2001:db8::2]:443", ("fe80::1", 5000, "2001:db8::2", 443)),
])
def test_parse_tuple(text: str, parts: tuple[object, ...]) -> None:
    assert parse_tuple(text) == parts


def test_sockets_connect_and_accept() -> None:
    st = SystemState()
    st.update(ev("socket", res=3, pid=10, domain=10, type=1, proto=0))
    st.update(ev("connect", pid=10, fd=3, tuple="::1:5000->::1:443"))
    client = st.fd(10, 3)
    assert client is not None
    assert (client.typechar, client.l4proto, client.sip, client.sport, client.is_server) == (
        "6", "tcp", "::1", 443, False)
    st.update(ev("accept4", res=7, pid=20, fd=4, tuple="10.1.1.1:33000->10.1.1.2:8080"))
    server = st.fd(20, 7)
    assert server is not None and server.is_server and server.sport == 8080
    assert server.typechar == "4"
    st.update(ev("socket", res=8, pid=10, domain="AF_INET", type=3, proto=1))
    raw = st.fd(10, 8)
    assert raw is not None and raw.l4proto == "icmp"


# ---- bounds ------------------------------------------------------------------------------

def test_thread_table_is_bounded() -> None:
    st = SystemState(max_threads=100)
    for pid in range(1, 1001):
        st.update(ev("getpid", pid=pid, comm=f"p{pid}"))
    assert len(st.threads) <= 100
    assert st.thread(1000) is not None
    assert st.thread(1) is None  # the oldest went first


def test_fd_tables_are_bounded() -> None:
    st = SystemState(max_fds_per_process=10, max_processes_with_fds=5)
    for fd in range(100):
        st.update(ev("openat", res=fd, pid=10, name=f"/tmp/{fd}", flags=0))
    table = st.fds[10]
    assert len(table) == 10
    assert st.fd(10, 99) is not None and st.fd(10, 0) is None
    for pid in range(20, 40):
        st.update(ev("openat", res=3, pid=pid, name="/x", flags=0))
    assert len(st.fds) <= 5


def test_required_syscalls_cover_state_keeping() -> None:
    for name in ("execve", "clone", "procexit", "openat", "connect", "accept4", "close"):
        assert name in REQUIRED_SYSCALLS


def test_cgroups_param_on_exec_sets_the_container() -> None:
    st = SystemState()
    st.update(ev("execve", pid=10, comm="sh", filename="/bin/sh", exe="sh",
                 cgroups=f"cpu=/docker/{CID}"))
    th = st.thread(10)
    assert th is not None and th.container_id == CID[:12]


def test_cgroup_id_resolves_through_the_cgroup_tree(tmp_path: Path) -> None:
    leaf = tmp_path / "system.slice" / f"docker-{CID}.scope"
    leaf.mkdir(parents=True)
    st = SystemState(cgroup_root=str(tmp_path))
    # runc's child starts on the host, joins the container's cgroup, then execs the shell.
    st.update(ev("clone", res=0, pid=10, comm="runc:[2:INIT]"))
    exec_ev = Event(ts=1, cpu=0, type="execve", syscall_nr=59, res=0, pid=10, tid=10, ppid=1,
                    uid=0, gid=0, comm="sh", cgroup_id=leaf.stat().st_ino,
                    params={"filename": "/bin/sh", "exe": "sh", "args": []})
    st.update(exec_ev)
    th = st.thread(10)
    assert th is not None and th.container_id == CID[:12]
    assert th.container is not None and th.container.runtime == "docker"


def test_connect_with_only_the_destination_known() -> None:
    st = SystemState()
    st.update(ev("socket", res=3, pid=10, domain=2, type=2, proto=0))
    st.update(ev("connect", res=-111, pid=10, fd=3, tuple="->192.0.2.7:53", family=2,
                 addr="192.0.2.7", port=53))
    info = st.fd(10, 3)
    assert info is not None
    assert (info.cip, info.cport, info.sip, info.sport, info.l4proto) == (
        None, None, "192.0.2.7", 53, "udp")


def test_unix_connect_uses_the_path() -> None:
    st = SystemState()
    st.update(ev("connect", pid=10, fd=4, tuple="/run/docker.sock", family=1,
                 addr="/run/docker.sock", port=None))
    info = st.fd(10, 4)
    assert info is not None and info.typechar == "u" and info.name == "/run/docker.sock"


def test_seeded_sockets_come_from_proc_net(tmp_path: Path) -> None:
    net = tmp_path / "net"
    net.mkdir()
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid" \
             "  timeout inode\n"
    (net / "tcp").write_text(
        header
        + "   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
          "     0        0 1001 1 0 100 0 0 10 0\n"
        + "   1: 0200000A:0050 0900000A:D431 01 00000000:00000000 00:00000000 00000000"
          "     0        0 1002 1 0 100 0 0 10 0\n"
        + "   2: 0200000A:9C40 22D8B85D:01BB 01 00000000:00000000 00:00000000 00000000"
          "  1000        0 1003 1 0 100 0 0 10 0\n")
    (net / "tcp6").write_text(
        header
        + "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000"
          " 0A 00000000:00000000 00:00000000 00000000     0        0 1004 1 0 100 0 0 10 0\n")
    (net / "unix").write_text("Num       RefCount Protocol Flags    Type St Inode Path\n"
                              "0000000081bbdd74: 00000003 00000000 00000000 0001 03 1005"
                              " /run/docker.sock\n")
    fake_proc(tmp_path, 7, name="nginx", ppid=1, argv=["nginx"], cgroup="0::/\n",
              fds={3: "socket:[1001]", 4: "socket:[1002]", 5: "socket:[1003]",
                   6: "socket:[1004]", 7: "socket:[1005]", 8: "socket:[9999]"})
    st = SystemState()
    st.seed_from_proc(str(tmp_path))
    listen, accepted, outbound = st.fd(7, 3), st.fd(7, 4), st.fd(7, 5)
    v6, unix, unknown = st.fd(7, 6), st.fd(7, 7), st.fd(7, 8)
    assert listen is not None and (listen.sip, listen.sport, listen.is_server) == (
        "0.0.0.0", 80, True)
    assert accepted is not None and accepted.name == "10.0.0.9:54321->10.0.0.2:80"
    assert accepted.is_server and accepted.l4proto == "tcp"
    assert outbound is not None and outbound.name == "10.0.0.2:40000->93.184.216.34:443"
    assert not outbound.is_server and outbound.fd == 5
    assert v6 is not None and (v6.typechar, v6.sip, v6.sport) == ("6", "::1", 8080)
    assert unix is not None and (unix.typechar, unix.name) == ("u", "/run/docker.sock")
    assert unknown is not None and unknown.typechar == "u" and unknown.name == ""


# ---- endpoints: structured from the decoder, text from hand-built events ------------------

def _sockaddr_in(family: int, ip: str, port: int) -> bytes:
    import socket
    import struct

    if family == AF_INET:
        return struct.pack("=H", family) + struct.pack("!H", port) + socket.inet_aton(ip) \
            + bytes(8)
    return struct.pack("=H", family) + struct.pack("!H", port) + bytes(4) \
        + socket.inet_pton(socket.AF_INET6, ip) + bytes(4)


def _sockaddr_un(path: bytes) -> bytes:
    return (1).to_bytes(2, sys.byteorder) + path


# (event type, tuple param bytes, sockaddr param bytes or None for accept, res)
_NETWORK_RECORDS = [
    ("connect", encode_tuple(AF_INET, "10.0.0.1", 40000, "10.0.0.9", 8080),
     _sockaddr_in(AF_INET, "10.0.0.9", 8080), 0),
    ("connect", encode_tuple(AF_INET6, "fe80::1", 5000, "2001:db8::2", 443),
     _sockaddr_in(AF_INET6, "2001:db8::2", 443), 0),
    ("connect", b"", _sockaddr_in(AF_INET, "192.0.2.7", 53), -111),
    ("connect", b"", _sockaddr_in(AF_INET6, "::1", 53), -111),
    ("connect", bytes([AF_UNIX]), _sockaddr_un(b"/run/docker.sock\0"), 0),
    ("connect", bytes([AF_UNIX]), _sockaddr_un(b"\0abstract\0"), 0),
    ("connect", b"", _sockaddr_un(b""), -22),
    ("connect", b"", (17).to_bytes(2, sys.byteorder) + bytes(18), -97),  # AF_PACKET
    ("connect", b"", b"", -14),
    ("accept4", encode_tuple(AF_INET, "10.1.1.1", 33000, "10.1.1.2", 8080), None, 7),
    ("accept4", encode_tuple(AF_INET6, "::1", 5555, "::1", 22), None, 8),
]


@pytest.mark.parametrize(("evt_type", "tup", "sockaddr", "res"), _NETWORK_RECORDS, ids=[
    "v4", "v6", "v4-sockaddr-only", "v6-sockaddr-only", "unix-path", "unix-abstract",
    "unix-unnamed", "unknown-family", "no-address", "accept-v4", "accept-v6"])
def test_structured_endpoints_give_what_their_text_gives(
        evt_type: str, tup: bytes, sockaddr: bytes | None, res: int) -> None:
    """A decoded tuple (a SocketTuple) and its Falco text, as a hand-built event carries
    it, describe the same socket: same fd row, same fd.name, same evt.arg.tuple."""
    from runtime.driver.schema import Decoder
    from runtime.engine.fields import render_param

    params: dict[str, object] = {"tuple": tup}
    if sockaddr is not None:
        params.update(fd=5, addr=sockaddr)
    else:
        params["flags"] = 0
    record = encode_record(evt_type, ts_boot_ns=1, ret=res, pid=10, params=params)
    decoded = Decoder("x86_64", 0).decode(record)
    structured = decoded.params["tuple"]
    assert structured is None or isinstance(structured, SocketTuple)
    as_text = Event(**{name: getattr(decoded, name) for name in Event.__slots__})
    as_text.params = {k: (str(v) if k == "tuple" and v is not None else v)
                      for k, v in decoded.params.items()}
    rows = []
    for event in (decoded, as_text):
        st = SystemState()
        st.update(ev("socket", res=5, pid=10, domain=2, type=2, proto=0))
        st.update(event)
        rows.append((st.fd(10, 5 if evt_type == "connect" else res), st.fd_of(event)))
    assert rows[0] == rows[1]
    assert render_param(evt_type, "tuple", structured) == render_param(
        evt_type, "tuple", as_text.params["tuple"])


def test_socket_tuple_text_is_falcos() -> None:
    assert str(SocketTuple(AF_INET, "10.0.0.1", 4000, "1.2.3.4", 80)) == "10.0.0.1:4000->1.2.3.4:80"
    assert str(SocketTuple(AF_INET6, "::1", 5000, "::1", 443)) == "::1:5000->::1:443"
    assert str(SocketTuple(AF_INET, None, None, "192.0.2.7", 53)) == "->192.0.2.7:53"
    assert str(SocketTuple(AF_UNIX, None, None, "/run/docker.sock", None)) == "/run/docker.sock"
    assert str(SocketTuple(17, None, None, None, None)) == "->"
    for tup in (SocketTuple(AF_INET, "10.0.0.1", 4000, "1.2.3.4", 80),
                SocketTuple(AF_INET6, "fe80::1", 5000, "2001:db8::2", 443)):
        _family, *ends = tup
        assert parse_tuple(str(tup)) == tuple(ends)
