"""Runs INSIDE a QEMU guest (virtme-ng, the host's userspace over 9p): the loader against a
signed repository served on the guest's own loopback, then each driver capturing events.

    python3 -m tests.guest.fleet_check --repo-dir DIR --public-key ed25519:... \
        --driver-version 0.1.0 --out result.json [--cli]

1. `python3 -m http.server` on the guest's 127.0.0.1 over DIR (the tree ci.fleet wrote and
   shared by 9p: no guest-to-host networking).
2. auto: the loader's install (identify, choose, fetch, verify) must choose core.
3. For core, kmod and probe, the loader type forced and a fresh state dir, so each is
   fetched, verified and loaded from the repository: `rt-engine run --driver auto`'s source
   (runtime.loader.autosource.AutoSource, which loads the module through
   runtime.loader.kmodload) captures while a workload opens /etc/hostname; the events read
   and the driver's drop counters (what the engine's drop monitor reads) are reported.

By default steps 2-3 run in this one process, through the functions the CLI calls: every
`rt-engine` start costs ~30 s of imports under TCG. `--cli` runs the real commands instead
(`rt-engine driver install --type auto`, `rt-engine run --driver auto --duration`, whose
summary gives events and drops), at ~4x the guest time.

Every step is recorded (name, ok, detail, numbers) and written as JSON for the host;
"FLEET-" marker lines go to the console log for diagnosis.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

DRIVERS = ("core", "kmod", "probe")
RUN_SECONDS = 3.0
STEP_TIMEOUT_S = 120.0
# Opens /etc/hostname (a redirection: the shell's own openat) every 50 ms.
SHELL_WORKLOAD = "while :; do read -r line < /etc/hostname; sleep 0.05; done"
_FETCHED = re.compile(r"loader: fetch: \S+ -> \S+, \d+ bytes \((\d+) ms\)")
_VERIFIED = re.compile(r"loader: verify: (\S+) sha256 \S+ and size match")
_LOADED = re.compile(r"loader: load: (\w+) (\S+) loaded \((\d+) ms")
_EVENTS = re.compile(r"rt-engine: events: (\d+)")
_DROPS = re.compile(r"events: (\d+), dropped: (\d+) \(")
_INSTALLED = re.compile(r"^(\w+) (\S+) sha256 ([0-9a-f]{64}) from (\S+): (\S+)$", re.M)


def engine(*args: str) -> list[str]:
    return [sys.executable, "-m", "runtime.engine.cli", *args]


def serve(repo_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """http.server on the guest's loopback, ready when a connect succeeds."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
         str(repo_dir), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"http.server exited with {server.returncode}") from None
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("http.server did not accept on loopback within 60 s")


def workload(stop: threading.Event) -> int:
    """Open /etc/hostname until told to stop; returns how many opens it made."""
    opens = 0
    while not stop.is_set():
        with open("/etc/hostname", "rb") as handle:
            handle.read()
        opens += 1
        time.sleep(0.05)
    return opens


def run_driver(kind: str, env: dict[str, str], state: Path) -> dict[str, Any]:
    """rt-engine with the loader forced to `kind`; the figures its log lines give."""
    env = {**env, "RT_ENGINE_LOADER_TYPE": kind, "RT_ENGINE_LOADER_STATE_DIR": str(state)}
    stop = threading.Event()
    counted: list[int] = []
    worker = threading.Thread(target=lambda: counted.append(workload(stop)))
    worker.start()
    started = time.monotonic()
    try:
        proc = subprocess.run(engine("run", "--driver", "auto", "--duration", str(RUN_SECONDS)),
                              env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S,
                              check=False)
    finally:
        stop.set()
        worker.join()
    log = proc.stderr
    fetched, loaded = _FETCHED.search(log), _LOADED.search(log)
    events, drops = _EVENTS.search(log), _DROPS.search(log)
    verified = [m.group(1) for m in _VERIFIED.finditer(log)]
    return {
        "rc": proc.returncode,
        "wall_s": round(time.monotonic() - started, 2),
        "fetch_ms": int(fetched.group(1)) if fetched else None,
        "verified": verified,
        "loaded": loaded.group(1) if loaded else None,
        "file": loaded.group(2) if loaded else None,
        "load_ms": int(loaded.group(3)) if loaded else None,
        "events": int(events.group(1)) if events else None,
        "driver_events": int(drops.group(1)) if drops else None,
        "drops": int(drops.group(2)) if drops else None,
        "opens": counted[0] if counted else 0,
        "log_tail": log.strip().splitlines()[-25:],
    }


def install_inproc(url: str, args: argparse.Namespace, state: Path) -> dict[str, Any]:
    """The loader's install with type auto, as `rt-engine driver install` runs it."""
    from runtime.loader.install import install

    lines: list[str] = []
    started = time.monotonic()
    done = install(_config(url, args, "auto", state), lines.append)
    fetched = _FETCHED.search("\n".join(lines))
    return {"rc": 0, "wall_s": round(time.monotonic() - started, 2),
            "chosen": str(done.candidate.kind), "file": done.candidate.file,
            "fetch_ms": int(fetched.group(1)) if fetched else None, "log_tail": lines[-15:]}


def _config(url: str, args: argparse.Namespace, kind: str, state: Path) -> Any:
    from runtime.loader.config import LoaderConfig

    return LoaderConfig(type=kind, repos=(url,), public_key=args.public_key,
                        driver_version=args.driver_version, state_dir=state)


def run_driver_inproc(kind: str, url: str, args: argparse.Namespace,
                      state: Path) -> dict[str, Any]:
    """`rt-engine run --driver auto`'s source with the type forced: fetch, verify, load,
    capture openat while the workload runs, then the driver's counters."""
    from runtime.loader.autosource import AutoSource

    lines: list[str] = []
    started = time.monotonic()
    source = AutoSource(_config(url, args, kind, state), buffer_bytes=1 << 22,
                        log=lines.append)
    events: list[Any] = []
    try:
        source.start(frozenset({"openat"}))
        # Another process: the sources skip the events of the process reading them.
        worker = subprocess.Popen(["/bin/sh", "-c", SHELL_WORKLOAD])
        deadline = time.monotonic() + RUN_SECONDS
        try:
            while time.monotonic() < deadline:
                batch = source.read(0.1)
                if batch is not None:
                    events += batch.events
        finally:
            worker.kill()
            worker.wait()
        for _ in range(3):  # what is still in the rings
            batch = source.read(0.1)
            if batch is not None:
                events += batch.events
        stats = source.stats()
    finally:
        source.close()
    log = "\n".join(lines)
    fetched, loaded = _FETCHED.search(log), _LOADED.search(log)
    drops = sum(s.get("n_drops_buffer", 0) + s.get("n_drops_pf", 0) + s.get("n_drops_bug", 0)
                for s in stats.values())
    return {
        "rc": 0,
        "wall_s": round(time.monotonic() - started, 2),
        "fetch_ms": int(fetched.group(1)) if fetched else None,
        "verified": [m.group(1) for m in _VERIFIED.finditer(log)],
        "loaded": loaded.group(1) if loaded else None,
        "file": loaded.group(2) if loaded else None,
        "load_ms": int(loaded.group(3)) if loaded else None,
        "events": len(events),
        "hostname_opens_seen": sum(1 for e in events if e.type == "openat"
                                   and e.params.get("name") == "/etc/hostname"),
        "driver_events": sum(s.get("n_evts", 0) for s in stats.values()) if stats else None,
        "drops": drops if stats else None,
        "log_tail": lines[-25:],
    }


def install_cli(env: dict[str, str], state: Path) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.run(
        engine("driver", "install", "--type", "auto", "--state-dir", str(state)),
        env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False)
    found = _INSTALLED.search(proc.stdout)
    fetched = _FETCHED.search(proc.stderr)
    return {"rc": proc.returncode, "wall_s": round(time.monotonic() - started, 2),
            "chosen": found.group(1) if found else None,
            "file": found.group(2) if found else None,
            "fetch_ms": int(fetched.group(1)) if fetched else None,
            "log_tail": [*proc.stderr.strip().splitlines()[-15:], proc.stdout.strip()]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo-dir", type=Path, required=True)
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--driver-version", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cli", action="store_true", help="run the rt-engine commands")
    args = parser.parse_args()
    result: dict[str, Any] = {"kernel": os.uname().release, "checks": [], "drivers": {},
                              "mode": "cli" if args.cli else "inproc"}

    def check(name: str, ok: bool, detail: str = "") -> None:
        result["checks"].append({"name": name, "ok": bool(ok), "detail": detail})
        print(f"FLEET-CHECK {'PASS' if ok else 'FAIL'} {name} {detail}", flush=True)

    t0 = time.monotonic()
    server = None
    try:
        server, url = serve(args.repo_dir)
        check("repo_on_guest_loopback", True, url)
        env = {**os.environ, "RT_ENGINE_LOADER_REPOS": url,
               "RT_ENGINE_LOADER_PUBLIC_KEY": args.public_key,
               "RT_ENGINE_LOADER_DRIVER_VERSION": args.driver_version}
        state = Path("/tmp/fleet-state")  # a tmpfs in the guest: nothing cached before
        auto = (install_cli(env, state / "auto") if args.cli
                else install_inproc(url, args, state / "auto"))
        result["auto"] = auto
        check("auto_chooses_core", auto["rc"] == 0 and auto["chosen"] == "core",
              f"rc={auto['rc']} chose {auto['chosen']} {auto['file']}")
        for kind in DRIVERS:
            try:
                got = (run_driver(kind, env, state / kind) if args.cli
                       else run_driver_inproc(kind, url, args, state / kind))
            except Exception as exc:
                got = {"rc": 1, "error": f"{exc!r}", "log_tail": traceback.format_exc()
                       .splitlines()[-10:]}
            result["drivers"][kind] = got
            ok = (got["rc"] == 0 and got.get("loaded") == kind and bool(got.get("verified"))
                  and (got.get("events") or 0) > 0 and got.get("drops") is not None
                  and (args.cli or got.get("hostname_opens_seen", 0) > 0))
            check(f"{kind}_fetched_verified_loaded_events",
                  ok, json.dumps({k: v for k, v in got.items() if k != "log_tail"}))
            if not ok:
                print("\n".join(f"FLEET-LOG {kind}: {line}" for line in got["log_tail"]),
                      flush=True)
    except Exception as exc:  # a crash here must still leave a verdict
        check("guest_script", False, f"{exc!r}\n{traceback.format_exc()}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    result["guest_s"] = round(time.monotonic() - t0, 1)
    result["ok"] = bool(result["checks"]) and all(c["ok"] for c in result["checks"])
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)
    print(f"FLEET-GUEST-RESULT {'PASS' if result['ok'] else 'FAIL'}", flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
