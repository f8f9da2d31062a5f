"""Runs INSIDE a QEMU guest (virtme-ng, the host's userspace over 9p) booted on a Debian
kernel: proves the rtcap module on that kernel and writes a JSON verdict for the host.

    python3 -m tests.guest.kmod_check --ko rtcap.ko --foreign-ko other.ko --out result.json

Steps: the kernel is the exact upload the module was built for (`--uname-v`, what the
build was given as the kernel version); a module built for another kernel must be
refused; ours loads; capture with a filter while a workload execs a known binary, opens
a known file and connects to a loopback port; the events read from /dev/rtcap must show
exactly those with the right pids and args; the exe path of execs from a memfd, through
a symlink, of an unlinked file and in a chroot must be what d_path() prints (also as the
engine's proc.exepath); stats must account for every event; rmmod must succeed; and the
kernel log from our first insmod on must hold no oops, BUG, WARNING or call trace.

Every check is recorded (name, ok, detail) instead of stopping at the first failure, so
one boot (slow under TCG) reports everything that is wrong.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Lines that mean the kernel itself found a bug while our module was in it.
KERNEL_TROUBLE = ("Oops", "BUG:", "BUG ", "WARNING:", "Call Trace", "general protection")
KMSG_MARK = "rtcap-guest-check: begin"
# getppid events are 144 bytes: this overflows the module's 64 KiB test ring many times.
BURST_CALLS = 5000
TEST_RING_KB = 64


class Checks:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}

    def record(self, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append({"name": name, "ok": bool(ok), "detail": detail})
        print(f"RTCAP-CHECK {'PASS' if ok else 'FAIL'} {name} {detail}", flush=True)
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.items) and all(i["ok"] for i in self.items)


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def kmsg(line: str) -> None:
    with open("/dev/kmsg", "w") as handle:
        handle.write(line + "\n")


def dmesg_since_mark() -> list[str]:
    lines = run(["dmesg"]).stdout.splitlines()
    for i, line in enumerate(lines):
        if KMSG_MARK in line:
            return lines[i + 1 :]
    return lines


def check_foreign_module(checks: Checks, foreign: Path) -> None:
    """insmod of a module whose vermagic names another kernel must fail, visibly."""
    proc = run(["insmod", str(foreign)])
    err = (proc.stderr + proc.stdout).strip()
    refused = proc.returncode != 0
    reason = "Invalid module format" in err or "Exec format error" in err
    log = "\n".join(dmesg_since_mark())
    vermagic_logged = "version magic" in log or "disagrees about version" in log
    loaded = "rtcap" in Path("/proc/modules").read_text()
    checks.record(
        "foreign_module_refused",
        refused and reason and not loaded,
        f"rc={proc.returncode} err={err!r} vermagic_in_dmesg={vermagic_logged}",
    )
    if loaded:
        run(["rmmod", "rtcap"])


MFD_NAME = "rt-test-memfd"


def exec_paths(marker_dir: Path) -> dict[str, str]:
    """Execs of `true` (each with a marker as its last argument, which it ignores) whose
    exe file path the drivers must report as d_path() prints it: marker -> that path.
    Done in a tmpfs of the guest's own (mounted with libc, no exec of `mount` whose
    events would crowd the test ring), so the paths also cross a mount."""
    libc = ctypes.CDLL(None, use_errno=True)
    true = os.path.realpath("/bin/true")
    scratch = marker_dir / f"rtcap-exe-{os.getpid()}"
    scratch.mkdir(exist_ok=True)
    if libc.mount(b"rtcap-exe", str(scratch).encode(), b"tmpfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), f"mount tmpfs on {scratch}")
    want: dict[str, str] = {}
    fds: list[int] = []
    try:
        base = os.path.realpath(scratch)
        memfd = os.memfd_create(MFD_NAME, 0)
        fds.append(memfd)
        os.write(memfd, Path(true).read_bytes())
        link = scratch / "true-link"
        link.symlink_to(true)
        shutil.copy2(true, scratch / "deltrue")
        gone = os.open(scratch / "deltrue", os.O_RDONLY)
        fds.append(gone)
        os.unlink(scratch / "deltrue")
        cases: list[tuple[str, int | str, str | None, str]] = [
            ("rtcap-exe-memfd", memfd, None, f"/memfd:{MFD_NAME} (deleted)"),
            ("rtcap-exe-link", str(link), None, true),
            ("rtcap-exe-deleted", gone, None, f"{base}/deltrue (deleted)"),
        ]
        busybox = shutil.which("busybox")
        if busybox is not None:  # static: runs in a chroot holding nothing else
            jail = scratch / "jail"
            (jail / "bin").mkdir(parents=True)
            shutil.copy2(busybox, jail / "bin" / "busybox")
            cases.append(("rtcap-exe-chroot", "/bin/busybox", str(jail), "/bin/busybox"))
        for marker, exe, chroot, path in cases:
            pid = os.fork()
            if pid == 0:
                try:
                    if chroot is not None:
                        os.chroot(chroot)
                        os.chdir("/")
                    os.execve(exe, ["true", marker], {})
                finally:
                    os._exit(127)
            _, status = os.waitpid(pid, 0)
            if status == 0:  # an exec that failed is missing from `want`: the check says so
                want[marker] = path
    finally:
        for fd in fds:
            os.close(fd)
        libc.umount2(str(scratch).encode(), 0)
        shutil.rmtree(scratch, ignore_errors=True)
    return want


def workload(marker_dir: Path) -> dict[str, Any]:
    """The known activity: exec a binary, open a file, connect to a loopback port, and
    the execs of exec_paths."""
    expect: dict[str, Any] = {"self_pid": os.getpid()}
    token = f"rtcap-marker-{os.getpid()}"
    echo = "/bin/echo"
    child = subprocess.Popen([echo, token], stdout=subprocess.DEVNULL,
                             env={"RTCAP_TOKEN": token})  # fmt: skip
    child.wait()
    st = os.stat(echo)
    status = Path("/proc/self/status").read_text()
    cap_eff = next(int(line.split()[1], 16) for line in status.splitlines()
                   if line.startswith("CapEff:"))  # fmt: skip
    expect["exec"] = {"pid": child.pid, "filename": echo, "argv": [echo, token],
                      "env": f"RTCAP_TOKEN={token}", "ino": st.st_ino,
                      "ctime": st.st_ctime_ns, "mtime": st.st_mtime_ns,
                      "cap_effective": cap_eff}  # fmt: skip

    # A loopback UDP exchange on unconnected sockets: the tuple's peer comes from the
    # address the caller passed, the data from the user buffer.
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    payload = b"cafebabe" + token.encode()
    tx.sendto(payload, rx.getsockname())
    rx.recvfrom(256)
    expect["udp"] = {"payload": payload, "tuple": f"127.0.0.1:{tx.getsockname()[1]}->"
                     f"127.0.0.1:{rx.getsockname()[1]}"}  # fmt: skip
    rx.close()
    tx.close()

    target = marker_dir / f"{token}.txt"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    os.close(fd)
    # Python's os.open adds O_CLOEXEC itself.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    expect["open"] = {"name": str(target), "fd": fd, "flags": flags, "mode": 0o640}

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.connect(("127.0.0.1", port))
    expect["connect"] = {"fd": client.fileno(), "port": port,
                         "local_port": client.getsockname()[1]}  # fmt: skip
    conn, _ = server.accept()
    for sock in (conn, client, server):
        sock.close()
    expect["exe_paths"] = exec_paths(marker_dir)
    return expect


def param(evt: Any, name: str) -> Any:
    return evt.params.get(name)


def check_events(checks: Checks, events: list[Any], expect: dict[str, Any], pre: str = "") -> None:
    me = expect["self_pid"]
    ex = expect["exec"]
    execs = [e for e in events if e.type == "execve" and e.pid == ex["pid"]]
    ok = len(execs) == 1
    detail = f"{len(execs)} execve events of pid {ex['pid']}"
    if execs:
        e = execs[0]
        argv = [param(e, "exe"), *(param(e, "args") or [])]
        ok = (ok and e.res == 0 and param(e, "filename") == ex["filename"]
              and argv == ex["argv"] and e.ppid == me and bool(param(e, "cwd")))  # fmt: skip
        detail += (f"; res={e.res} filename={param(e, 'filename')!r} argv={argv!r}"
                   f" ppid={e.ppid} cwd={param(e, 'cwd')!r}")  # fmt: skip
        # what the exec'd task and its exe file are, after the exec
        want_facts = {"env": [ex["env"]], "exe_ino": ex["ino"], "exe_ino_ctime": ex["ctime"],
                      "exe_ino_mtime": ex["mtime"], "cap_effective": ex["cap_effective"],
                      "vpid": ex["pid"], "vtid": ex["pid"]}  # fmt: skip
        got_facts = {k: param(e, k) for k in want_facts}
        ok = ok and got_facts == want_facts
        detail += f"; task facts {got_facts} want {want_facts}"
    checks.record(pre + "event_execve", ok, detail)

    udp = expect["udp"]
    io = {e.type: e for e in events if e.type in ("sendto", "recvfrom") and e.pid == me}
    detail = f"{sorted(io)}; " + "; ".join(
        f"{t}: res={e.res} data={param(e, 'data')!r} tuple={param(e, 'tuple')}"
        for t, e in io.items())
    ok = sorted(io) == ["recvfrom", "sendto"] and all(
        e.res == len(udp["payload"]) == param(e, "size") and param(e, "data") == udp["payload"]
        and str(param(e, "tuple")) == udp["tuple"] for e in io.values())  # fmt: skip
    checks.record(pre + "event_udp", ok, detail + f" want {udp['tuple']}")

    op = expect["open"]
    opens = [e for e in events
             if e.type == "openat" and e.pid == me and param(e, "name") == op["name"]]  # fmt: skip
    ok = len(opens) == 1
    detail = f"{len(opens)} openat events for {op['name']}"
    if opens:
        e = opens[0]
        ok = (ok and e.res == op["fd"] and param(e, "dirfd") == -100
              and param(e, "flags") == op["flags"] and param(e, "mode") == op["mode"]
              and e.tid == me)  # fmt: skip
        detail += (f"; res={e.res} dirfd={param(e, 'dirfd')} flags={param(e, 'flags')}"
                   f" mode={param(e, 'mode')}")  # fmt: skip
    checks.record(pre + "event_openat", ok, detail)

    co = expect["connect"]
    conns = [e for e in events if e.type == "connect" and e.pid == me]
    ok = len(conns) == 1
    detail = f"{len(conns)} connect events of pid {me}"
    if conns:
        e = conns[0]
        tup = str(param(e, "tuple"))
        want = f"127.0.0.1:{co['local_port']}->127.0.0.1:{co['port']}"
        ok = (ok and e.res == 0 and param(e, "fd") == co["fd"] and tup == want
              and param(e, "port") == co["port"])  # fmt: skip
        detail += f"; res={e.res} fd={param(e, 'fd')} tuple={tup} want {want}"
    checks.record(pre + "event_connect", ok, detail)

    check_exe_paths(checks, events, expect, pre)

    common = [e for e in execs + opens + conns]
    ok = all(e.comm and e.uid == 0 and e.cpu >= 0 and e.ts > 0 for e in common)
    checks.record(pre + "event_common_fields", ok and bool(common),
                  "; ".join(f"{e.type}: comm={e.comm!r} uid={e.uid} cg={e.cgroup_id}"
                            for e in common))  # fmt: skip


def check_exe_paths(checks: Checks, events: list[Any], expect: dict[str, Any],
                    pre: str = "") -> None:
    """Each exec of exec_paths carries its exe file's path (trusted_exepath), and the
    engine's state gives it as proc.exepath (a memfd's "/memfd:<name> (deleted)")."""
    from runtime.engine.fields import resolve_field
    from runtime.engine.state import SystemState

    want: dict[str, str] = expect["exe_paths"]
    exepath = resolve_field("proc.exepath", None)
    state = SystemState()
    got: dict[str, tuple[Any, Any]] = {}
    for e in sorted(events, key=lambda e: e.ts):
        state.update(e)
        args = param(e, "args") if e.type in ("execve", "execveat") and e.res == 0 else None
        if args and args[-1] in want and e.ppid == expect["self_pid"]:
            got[args[-1]] = (param(e, "trusted_exepath"), exepath.extract(e, state))
    complete = {"rtcap-exe-memfd", "rtcap-exe-link", "rtcap-exe-deleted"} <= set(want)
    checks.record(pre + "event_exepath",
                  complete and got == {k: (v, v) for k, v in want.items()},
                  f"got (trusted_exepath, proc.exepath) {got} want {want}")


def check_stats(checks: Checks, stats: dict[int, dict[str, int]], delivered: int,
                pre: str = "") -> None:  # fmt: skip
    seen = sum(s["n_evts"] for s in stats.values())
    drops = sum(s["n_drops_buffer"] + s["n_drops_pf"] + s["n_drops_bug"] for s in stats.values())
    filtered = sum(s["n_filtered"] for s in stats.values())
    checks.record(
        pre + "stats_account_for_events",
        seen == delivered + drops and drops == 0 and filtered > 0 and bool(stats),
        f"cpus={sorted(stats)} n_evts={seen} delivered={delivered} drops={drops} "
        f"filtered={filtered}",
    )


def capture(checks: Checks, marker_dir: Path) -> None:
    from runtime.driver.kmod import KmodDevice, KmodSchemaMismatchError

    with KmodDevice() as dev:
        try:
            dev.start()
            checks.record("start_refused_before_handshake", False, "START accepted")
        except KmodSchemaMismatchError:
            checks.record("start_refused_before_handshake", True)
        dev.handshake()
        checks.record("handshake", True, f"schema {dev.schema_hash:#x}")
        dev.set_filter(["execve", "execveat", "openat", "connect", "sendto", "recvfrom"])
        dev.start()
        started = time.monotonic()
        expect = workload(marker_dir)
        checks.timings["workload_s"] = time.monotonic() - started
        events = dev.drain(idle_s=0.3)
        dev.stop()
        events += dev.drain(idle_s=0.1)
        stats = dev.stats()
        kinds: dict[str, int] = {}
        for e in events:
            kinds[e.type] = kinds.get(e.type, 0) + 1
        checks.record("events_read", bool(events), f"{len(events)} events {kinds}")
        check_events(checks, events, expect)
        check_stats(checks, stats, len(events))


def check_lifecycle(checks: Checks, marker_dir: Path) -> None:
    """Module only: process lifecycle (fork/clone, exit_group at sys_enter, procexit from
    the scheduler tracepoint) and directory events, in a second capture session."""
    from runtime.driver.kmod import KmodDevice

    me = os.getpid()
    with KmodDevice() as dev:
        dev.handshake()
        dev.set_filter(["clone", "clone3", "fork", "vfork", "exit", "exit_group",
                        "mkdir", "mkdirat", "rmdir", "unlinkat"])  # fmt: skip
        dev.start()
        child = subprocess.Popen(["/bin/sh", "-c", "exit 3"])
        child.wait()
        folder = marker_dir / f"rtcap-dir-{me}"
        os.mkdir(folder, 0o750)
        os.rmdir(folder)
        events = dev.drain(idle_s=0.3)
        dev.stop()
        events += dev.drain(idle_s=0.1)

    forks = [e for e in events if e.type in {"clone", "clone3", "fork", "vfork"}
             and e.pid == me and e.res == child.pid]  # fmt: skip
    checks.record("event_clone", len(forks) == 1,
                  f"{[(e.type, e.res) for e in forks]} child={child.pid}")  # fmt: skip
    # The decoder names it after the syscall (exit_group), like Falco.
    exits = [e for e in events if e.type in {"exit", "exit_group"} and e.pid == child.pid]
    checks.record("event_exit_at_enter",
                  len(exits) == 1 and exits[0].params.get("status") == 3,
                  f"{[e.params for e in exits]} all: {[(e.type, e.pid) for e in events]}")
    # exit_code as the kernel keeps it: exit status in bits 8-15.
    ends = [e for e in events if e.type == "procexit" and e.tid == child.pid]
    checks.record("event_procexit",
                  len(ends) == 1 and ends[0].params.get("status") == 3 << 8,
                  f"{[e.params for e in ends]}")  # fmt: skip
    made = [e for e in events if e.type in {"mkdir", "mkdirat"} and e.pid == me]
    checks.record("event_mkdir",
                  len(made) == 1 and made[0].params.get("path") == str(folder)
                  and made[0].params.get("mode") == 0o750 and made[0].res == 0,
                  f"{[(e.type, e.params, e.res) for e in made]}")  # fmt: skip
    gone = [e for e in events if e.type in {"rmdir", "unlinkat"} and e.pid == me]
    names = [e.params.get("path", e.params.get("name")) for e in gone]
    checks.record("event_rmdir", names == [str(folder)] and gone[0].res == 0,
                  f"{[(e.type, e.params, e.res) for e in gone]}")  # fmt: skip


def check_probe(checks: Checks, label: str, obj: Path, marker_dir: Path) -> None:
    """The same workload and checks through an eBPF probe (libbpf from the host)."""
    from dataclasses import asdict

    from runtime.driver import ProbeSource

    pre = f"probe_{label}_"
    try:
        with ProbeSource(obj, {"execve", "execveat", "openat", "connect", "sendto", "recvfrom",
                               "procexit"}, ignore_self=False) as src:  # fmt: skip
            src.start()
            checks.record(pre + "loaded", True, str(obj))
            expect = workload(marker_dir)
            events: list[Any] = []
            idle = 0
            while idle < 3:
                batch = src.poll(timeout_ms=100)
                events += batch
                idle = 0 if batch else idle + 1
            per_cpu = {i: asdict(s) for i, s in enumerate(src.stats())}
        check_events(checks, events, expect, pre)
        check_stats(checks, per_cpu, len(events), pre)
    except Exception as exc:
        checks.record(pre + "loaded", False, f"{exc!r}\n{traceback.format_exc()}")


def burst_without_reader(dev: Any) -> None:
    """BURST_CALLS getppid events into the rings, nobody reading, capture off after."""
    dev.handshake()
    dev.set_filter(["getppid"])
    dev.start()
    for _ in range(BURST_CALLS):
        os.getppid()
    dev.stop()


def check_drops(checks: Checks) -> None:
    """A burst larger than the ring, with no reader during it: drops are counted, and
    every event the module saw is either delivered or counted as a drop."""
    from runtime.driver.kmod import KmodDevice

    with KmodDevice() as dev:
        burst_without_reader(dev)
        delivered = len(dev.drain(idle_s=0.2))
        stats = dev.stats()
    seen = sum(s["n_evts"] for s in stats.values())
    full = sum(s["n_drops_buffer"] for s in stats.values())
    other = sum(s["n_drops_pf"] + s["n_drops_bug"] for s in stats.values())
    checks.record(
        "drops_counted_not_silent",
        full > 0 and seen == delivered + full + other and seen >= BURST_CALLS,
        f"calls={BURST_CALLS} n_evts={seen} delivered={delivered} drops_buffer={full} "
        f"drops_other={other}",
    )


def check_complete_mark(checks: Checks) -> None:
    """`complete_before_ns` (what the engine's reorder window may release up to) moves
    only with a read that emptied every ring: reads cut short by a small buffer leave
    older records behind, and no record read later is older than a mark given before."""
    from runtime.driver import _schema
    from runtime.driver.kmod import KmodDevice

    read_size = 2 * ((_schema.MAX_RECORD_SIZE + 7) & ~7)  # below the 64 KiB ring
    with KmodDevice(epoch_offset_ns=0, read_size=read_size) as dev:
        burst_without_reader(dev)
        reads: list[tuple[int, int | None, list[int]]] = []
        while (raw := dev.read_raw(0.2)):
            reads.append((len(raw), dev.complete_before_ns,
                          [e.ts for e in dev.decode(raw)]))
        final = dev.complete_before_ns  # after reads that found nothing
    behind = [(i, mark, min(ts)) for i, (_, mark, _) in enumerate(reads) if mark is not None
              for _, _, ts in reads[i + 1:] if ts and min(ts) < mark]
    cut = sum(n > read_size - _schema.MAX_RECORD_SIZE for n, _, _ in reads)
    checks.record(
        "complete_mark_waits_for_an_emptying_read",
        cut > 0 and not behind and final is not None
        and final > max(max(ts) for _, _, ts in reads if ts),
        f"{len(reads)} reads, {cut} cut short by the buffer, behind a mark: {behind[:3]}",
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ko", type=Path, required=True)
    parser.add_argument("--foreign-ko", type=Path)
    parser.add_argument("--uname-v", help="the `uname -v` the module was built for")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--probe", type=Path, help="per-kernel eBPF probe object")
    parser.add_argument("--core", type=Path, help="CO-RE eBPF probe object")
    parser.add_argument("--force-load", action="store_true",
                        help="insmod -f: a module built from the kernel's sources without its "
                             "Module.symvers (no CRCs, upstream vermagic)")  # fmt: skip
    args = parser.parse_args()
    checks = Checks()
    t0 = time.monotonic()
    checks.timings["guest_uptime_at_start_s"] = float(
        Path("/proc/uptime").read_text().split()[0]
    )  # fmt: skip
    try:
        kmsg(KMSG_MARK)
        checks.record("kernel_release", True, os.uname().release)
        if args.uname_v:
            running = os.uname().version
            checks.record("uname_v_is_the_built_one", running == args.uname_v,
                          f"running {running!r}, built for {args.uname_v!r}")  # fmt: skip
        if args.foreign_ko:
            check_foreign_module(checks, args.foreign_ko)
        force = ["-f"] if args.force_load else []
        proc = run(["insmod", *force, str(args.ko), f"ring_kb={TEST_RING_KB}"])
        how = "forced (insmod -f) " if force else ""
        loaded = checks.record("insmod", proc.returncode == 0, how + proc.stderr.strip())
        if loaded:
            checks.record("device_node", Path("/dev/rtcap").exists())
            marker_dir = args.out.parent
            try:
                capture(checks, marker_dir)
                check_lifecycle(checks, marker_dir)
                check_drops(checks)
                check_complete_mark(checks)
            except Exception as exc:  # a crash here must still leave a verdict
                checks.record("capture", False, f"{exc!r}\n{traceback.format_exc()}")
            proc = run(["rmmod", "rtcap"])
            checks.record("rmmod", proc.returncode == 0, proc.stderr.strip())
            checks.record("device_gone", not Path("/dev/rtcap").exists())
        for label, obj in (("kernel", args.probe), ("core", args.core)):
            if obj is not None:
                check_probe(checks, label, obj, args.out.parent)
        trouble = [ln for ln in dmesg_since_mark() if any(k in ln for k in KERNEL_TROUBLE)]
        checks.record("dmesg_clean", not trouble, "\n".join(trouble[:20]))
    except Exception as exc:
        checks.record("guest_script", False, f"{exc!r}\n{traceback.format_exc()}")
    checks.timings["checks_s"] = time.monotonic() - t0
    result = {"ok": checks.ok, "checks": checks.items, "timings": checks.timings,
              "dmesg_tail": dmesg_since_mark()[-40:]}  # fmt: skip
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)
    print(f"RTCAP-GUEST-RESULT {'PASS' if checks.ok else 'FAIL'}", flush=True)
    return 0 if checks.ok else 1


if __name__ == "__main__":
    sys.exit(main())
