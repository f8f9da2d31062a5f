"""Runs INSIDE a QEMU guest (virtme-ng, the host's userspace over 9p) booted on a Debian
kernel: proves the rtcap module on that kernel and writes a JSON verdict for the host.

    python3 -m tests.guest.kmod_check --ko rtcap.ko --foreign-ko other.ko --out result.json

Steps: a module built for another kernel must be refused; ours loads; capture with a
filter while a workload execs a known binary, opens a known file and connects to a
loopback port; the events read from /dev/rtcap must show exactly those with the right
pids and args; stats must account for every event; rmmod must succeed; and the kernel
log from our first insmod on must hold no oops, BUG, WARNING or call trace.

Every check is recorded (name, ok, detail) instead of stopping at the first failure, so
one boot (slow under TCG) reports everything that is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
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


def workload(marker_dir: Path) -> dict[str, Any]:
    """The known activity: exec a binary, open a file, connect to a loopback port."""
    expect: dict[str, Any] = {"self_pid": os.getpid()}
    token = f"rtcap-marker-{os.getpid()}"
    echo = "/bin/echo"
    child = subprocess.Popen([echo, token], stdout=subprocess.DEVNULL)
    child.wait()
    expect["exec"] = {"pid": child.pid, "filename": echo, "argv": [echo, token]}

    target = marker_dir / f"{token}.txt"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    os.close(fd)
    expect["open"] = {"name": str(target), "fd": fd,
                      "flags": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "mode": 0o640}  # fmt: skip

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
    return expect


def param(evt: Any, name: str) -> Any:
    return evt.params.get(name)


def check_events(checks: Checks, events: list[Any], expect: dict[str, Any]) -> None:
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
    checks.record("event_execve", ok, detail)

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
    checks.record("event_openat", ok, detail)

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
    checks.record("event_connect", ok, detail)

    common = [e for e in execs + opens + conns]
    ok = all(e.comm and e.uid == 0 and e.cpu >= 0 and e.ts > 0 for e in common)
    checks.record("event_common_fields", ok and bool(common),
                  "; ".join(f"{e.type}: comm={e.comm!r} uid={e.uid} cg={e.cgroup_id}"
                            for e in common))  # fmt: skip


def check_stats(checks: Checks, stats: dict[int, dict[str, int]], delivered: int) -> None:
    seen = sum(s["n_evts"] for s in stats.values())
    drops = sum(s["n_drops_buffer"] + s["n_drops_pf"] + s["n_drops_bug"] for s in stats.values())
    filtered = sum(s["n_filtered"] for s in stats.values())
    checks.record(
        "stats_account_for_events",
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
        dev.set_filter(["execve", "openat", "connect"])
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ko", type=Path, required=True)
    parser.add_argument("--foreign-ko", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    checks = Checks()
    t0 = time.monotonic()
    checks.timings["guest_uptime_at_start_s"] = float(
        Path("/proc/uptime").read_text().split()[0]
    )  # fmt: skip
    try:
        kmsg(KMSG_MARK)
        checks.record("kernel_release", True, os.uname().release)
        if args.foreign_ko:
            check_foreign_module(checks, args.foreign_ko)
        proc = run(["insmod", str(args.ko)])
        loaded = checks.record("insmod", proc.returncode == 0, proc.stderr.strip())
        if loaded:
            checks.record("device_node", Path("/dev/rtcap").exists())
            marker_dir = args.out.parent
            try:
                capture(checks, marker_dir)
            except Exception as exc:  # a crash here must still leave a verdict
                checks.record("capture", False, f"{exc!r}\n{traceback.format_exc()}")
            proc = run(["rmmod", "rtcap"])
            checks.record("rmmod", proc.returncode == 0, proc.stderr.strip())
            checks.record("device_gone", not Path("/dev/rtcap").exists())
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
