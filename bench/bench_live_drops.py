#!/usr/bin/env python3
"""Live drop rate of rt-engine with the CO-RE probe under a paced syscall storm.

For each ring-buffer size, starts `rt-engine run --driver core` (default ruleset, JSON
metrics snapshots on stderr every second) and a storm process that does open+close pairs of
/dev/null at a target rate, then reports what the driver counted: captured events/s, drops
and drop % (from the engine's final metrics snapshot), plus the engine's CPU use.
Target (issue 5): no drops at 200k captured events/s with the default buffer.

With `--rulesets default,falco` it runs again with Falco's own falco_rules.yaml +
falco-incubating_rules.yaml (tests/fixtures/falco_rules/), once at the target rate and
once unpaced (the highest rate the storm reaches here; goal: no drops either), or prints
"not loadable yet: <reason>" when the engine cannot load them.

Needs root, BTF and tracefs. Builds the probe with `make -C driver core` unless --probe.

    python3 bench/bench_live_drops.py [--rate 200000] [--seconds 6] [--buffers default,33554432]
                                      [--rulesets default,falco]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_RATE = 200_000
FALCO_RULES = (REPO / "tests/fixtures/falco_rules/falco_rules.yaml",
               REPO / "tests/fixtures/falco_rules/falco-incubating_rules.yaml")
UNPACED = 1e12  # a target no storm reaches: it runs flat out

# Paced storm: open+close pairs in chunks, sleeping off any lead over the target rate.
STORM = r"""
import os, sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
pairs_per_s = rate / 2
chunk = 500
start = time.monotonic()
done = 0
while True:
    now = time.monotonic() - start
    if now >= seconds:
        break
    ahead = done / pairs_per_s - now
    if ahead > 0:
        time.sleep(ahead)
    for _ in range(chunk):
        os.close(os.open("/dev/null", os.O_RDONLY))
    done += chunk
print(done * 2 / (time.monotonic() - start))
"""


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (from /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_probe() -> Path:
    out = Path(tempfile.mkdtemp(prefix="bench-core-"))
    subprocess.run(["make", "-C", str(REPO / "driver"), "core", f"OUT={out}"], check=True,
                   capture_output=True)
    return out / "rtcap_core.o"


def falco_rules_problem() -> str | None:
    """Why the engine cannot load Falco's rules, or None when it can."""
    sys.path.insert(0, str(REPO))
    from runtime.engine.rules import load_rules

    try:
        load_rules(list(FALCO_RULES))
    except Exception as exc:  # whatever the loader says is the reason to print
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def run_one(
    probe: Path, buffer_bytes: int | None, rate: float, seconds: float,
    rules: tuple[Path, ...] = (),
) -> dict[str, object]:
    args = [sys.executable, "-m", "runtime.engine.cli", "run", "--driver", "core",
            "--probe", str(probe), "--json", "--stats-interval", "1"]
    for path in rules:
        args += ["--rules", str(path)]
    if buffer_bytes is not None:
        args += ["--buffer-bytes", str(buffer_bytes)]
    engine = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    assert engine.stderr is not None
    for line in engine.stderr:
        if "rt-engine: running" in line:
            break
    else:
        raise SystemExit("rt-engine did not start")
    time.sleep(1.0)  # let the first stats tick pass so the window holds only the storm
    cpu_before = process_cpu_s(engine.pid)
    storm = subprocess.run([sys.executable, "-c", STORM, str(rate), str(seconds)],
                           capture_output=True, text=True, check=True)
    time.sleep(1.0)
    engine_cpu = process_cpu_s(engine.pid) - cpu_before  # the storm window plus 1 s
    engine.send_signal(2)
    rest = engine.communicate(timeout=60)[1]
    snapshots = [json.loads(line) for line in rest.splitlines() if line.startswith("{")]
    last = snapshots[-1] if snapshots else {}
    driver = last.get("driver", {})
    return {
        "storm_rate": float(storm.stdout.strip() or 0),
        "n_evts": driver.get("n_evts", 0),
        "n_drops": driver.get("n_drops", 0),
        "n_drops_buffer": driver.get("n_drops_buffer", 0),
        "drop_pct": last.get("drop_pct_total", 0.0),
        "engine_events": last.get("events_total", 0),
        "peak_rss_mb": last.get("peak_rss_bytes", 0) / 1e6,
        "engine_cpu_s": engine_cpu,
        "summary": [ln for ln in rest.splitlines() if "dropped:" in ln],
        "out_of_order": last.get("events_out_of_order", 0),
    }


def print_falco_runs(probe: Path, rate: float, seconds: float) -> None:
    problem = falco_rules_problem()
    names = " + ".join(p.name for p in FALCO_RULES)
    if problem is not None:
        print(f"Falco's {names}: not loadable yet: {problem}")
        return
    for label, target in (("target rate", rate), ("unpaced", UNPACED)):
        r = run_one(probe, None, target, seconds, FALCO_RULES)
        verdict = "MET" if r["n_drops"] == 0 else "NOT MET"
        print(f"Falco's rules, {label:>11}: storm {r['storm_rate']:>10,.0f}/s  driver n_evts "
              f"{r['n_evts']:>9}  drops {r['n_drops']:>8} ({r['drop_pct']:.4f}%)  "
              f"engine events {r['engine_events']}  engine CPU {r['engine_cpu_s']:.2f} s  "
              f"out of ts order {r['out_of_order']}  goal no drops: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", type=Path)
    parser.add_argument("--rate", type=float, default=200_000, help="target syscalls/s")
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--buffers", default="default,33554432",
                        help="comma-separated ring sizes in bytes; 'default' = engine default")
    parser.add_argument("--rulesets", default="default,falco",
                        help="comma-separated: default (bundled), falco (Falco's own rules)")
    args = parser.parse_args()
    rulesets = set(args.rulesets.split(","))
    if os.geteuid() != 0:
        raise SystemExit("needs root (loads the CO-RE probe)")
    probe = args.probe or build_probe()
    print(f"storm: open+close of /dev/null, target {args.rate:,.0f} syscalls/s for "
          f"{args.seconds:g} s; default ruleset")
    verdict = "not measured (no 'default' in --buffers)"
    for spec in args.buffers.split(",") if "default" in rulesets else ():
        size = None if spec == "default" else int(spec)
        r = run_one(probe, size, args.rate, args.seconds)
        label = "default" if size is None else f"{size // 1024} KiB"
        print(f"buffer {label:>10}: storm {r['storm_rate']:>10,.0f}/s  driver n_evts "
              f"{r['n_evts']:>9}  drops {r['n_drops']:>8} ({r['drop_pct']:.4f}%, "
              f"{r['n_drops_buffer']} for a full buffer)  "
              f"engine events {r['engine_events']}  engine CPU {r['engine_cpu_s']:.2f} s  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
        if size is None:
            storm_rate = float(r["storm_rate"])  # type: ignore[arg-type]
            fast_enough = storm_rate >= 0.95 * TARGET_RATE
            verdict = ("MET" if r["n_drops"] == 0 and fast_enough else "NOT MET") + (
                f" ({r['n_drops']} drops at {storm_rate:,.0f} syscalls/s"
                + ("" if fast_enough else "; the storm fell short of the rate") + ")")
    print(f"target (issue 5): no drops at {TARGET_RATE:,} captured events/s with the default "
          f"buffer: {verdict}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if "falco" in rulesets:
        print_falco_runs(probe, args.rate, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
