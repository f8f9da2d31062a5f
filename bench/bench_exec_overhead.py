#!/usr/bin/env python3
"""Per-exec cost of the rtcap CO-RE probe's execve/execveat events (run as root).

A C loop pinned to one CPU forks, execs a binary and waits, N times; phases interleave
within each repetition (the minimum over --reps runs is reported):
  untraced   nothing attached: wall ns per fork+exec+wait
  captured   the probe capturing execve and execveat, a C consumer draining the ring
Then, with kernel.bpf_stats_enabled (the kernel times every run of the probe's sys_exit
program), the same loop under the probe once with nothing of the loop in its filter
(idle) and once capturing the execs: (captured time - runs x idle mean) / execs is the
probe's own time per exec event (every param of it: argv, env, the cwd walk and the
walk of the exe file's path that gives trusted_exepath), net of a filtered syscall.
Two binaries: /bin/true (its exe path /usr/bin/true on a merged-/usr system) and a copy
12 path components deep, to show what each component adds. Wall-clock differences of a
few us are within the noise of a fork+exec; the kernel-timed figure is the one to read.

    sudo python3 bench/bench_exec_overhead.py [--reps 5] [--execs 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import bench_syscall_overhead as base  # noqa: E402

from runtime.driver import ProbeSource, total  # noqa: E402

LOOP_CPU = base.LOOP_CPU
EXEC_EVENTS = {"execve", "execveat"}


def loop(helper: Path, exe: Path, n: int) -> float:
    r = subprocess.run([str(helper), "loop", "exec", str(n), str(LOOP_CPU)],
                       capture_output=True, text=True, check=True,
                       env={**os.environ, "RTCAP_BENCH_EXE": str(exe)})
    return float(r.stdout)


def kernel_time(probe: Path, helper: Path, exe: Path, n: int, *, syscalls: set[str],
                ringbuf: int) -> tuple[float, int, int]:
    """(total ns, runs) of the probe's sys_exit program over one loop, and the exec
    events it emitted."""
    others = base.prog_ids("rtcap_sys_exit")
    with ProbeSource(probe, syscalls, ringbuf) as src, base.CConsumer(helper, src), \
            base.BpfStats():
        before = total(src.stats())
        loop(helper, exe, n)
        mean, runs = base.BpfStats.ns_per_run("rtcap_sys_exit", others)
        after = total(src.stats())
    events = after.n_evts - before.n_evts if syscalls & EXEC_EVENTS else 0
    return mean * runs, runs, events


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--execs", type=int, default=2000, help="fork+execs per run")
    ap.add_argument("--ringbuf", type=int, default=64 << 20)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: loading BPF programs needs it", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="rtcap-bench-exec-"))
    try:
        probe, helper, _floor = base.build(work)
        deep = work.joinpath(*"abcdefghi") / "true"
        deep.parent.mkdir(parents=True)
        shutil.copy2(os.path.realpath("/bin/true"), deep)
        exes = {"/bin/true": Path("/bin/true"), "deep copy": deep}
        wall: dict[tuple[str, str], list[float]] = {}
        per_exec: dict[str, list[float]] = {}
        for _rep in range(args.reps):
            for label, exe in exes.items():
                wall.setdefault(("untraced", label), []).append(loop(helper, exe, args.execs))
                with ProbeSource(probe, EXEC_EVENTS, args.ringbuf) as src, \
                        base.CConsumer(helper, src):
                    wall.setdefault(("captured", label), []).append(
                        loop(helper, exe, args.execs))
                idle_t, idle_runs, _ = kernel_time(probe, helper, exe, args.execs,
                                                   syscalls={"getppid"}, ringbuf=args.ringbuf)
                cap_t, cap_runs, execs = kernel_time(probe, helper, exe, args.execs,
                                                     syscalls=EXEC_EVENTS, ringbuf=args.ringbuf)
                if idle_runs and execs:
                    extra = cap_t - cap_runs * (idle_t / idle_runs)
                    per_exec.setdefault(label, []).append(extra / execs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"fork+exec+wait on CPU {LOOP_CPU}, {args.execs} per run, min over {args.reps} "
          "runs (median in brackets), ns")
    for label in exes:
        u, c = wall[("untraced", label)], wall[("captured", label)]
        print(f"{label:10} untraced {min(u):10.0f} ({statistics.median(u):.0f})   "
              f"captured {min(c):10.0f} ({statistics.median(c):.0f})   "
              f"+{min(c) - min(u):.0f} ns per exec")
    for label, values in per_exec.items():
        print(f"{label:10} probe time per exec event (kernel bpf_stats, over a filtered "
              f"syscall): {min(values):7.0f} ns (median {statistics.median(values):.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
