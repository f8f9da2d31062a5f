#!/usr/bin/env python3
"""Replay throughput of rt-engine on one core: decode -> state -> rules -> outputs.

Builds a synthetic capture of a realistic process mix (clone, execve, opens, closes, socket,
connect, exit, procexit), encoded with the driver's own record layout, then replays it:

  1. decode only (the driver's batch decoder), decode + state updates, and the engine
     without its output stage (alerts formatted but never queued or serialised),
  2. the whole pipeline through the default ruleset,
  3. the whole pipeline through 100 synthetic rules (mixed operators and event types),
  4. the default ruleset again with the pure-Python batch decoder (what a checkout without
     the compiled decoder, runtime/driver/_fastdecode.c, would do),
  5. the cost of processing in timestamp order (runtime/engine/reorder.py): the default
     ruleset with and without the reorder window, on the in-order capture and on one in
     arrival order (per-CPU batches handed over as they fill, as the probes do), and on
     the latter decoded into Events first (the live path: the window orders Events),
  6. Falco's own falco_rules.yaml + falco-incubating_rules.yaml (tests/fixtures/
     falco_rules/), beside the default ruleset (goal: no slower) and the same pipeline
     with no rules (the floor), each run in a fresh process, the three alternating,
     with and without the output stage, and each ruleset's own cost per event over the
     floor; a line saying "not loadable yet: <reason>" when the engine cannot load
     them.

Every run times the event loop only: loading the rules and building the Engine (which
generates the per-event-type matchers, ~60 ms for Falco's rules) happen before the clock
starts.

Prints events/s for each and the process's peak RSS. The process is pinned to one CPU so
the output worker thread competes with the loop, as it would in production.
Target (issue 5): >= 500k events/s through the default ruleset.

    python3 bench/bench_replay.py [--events 300000] [--repeat 3]
    python3 bench/bench_replay.py --instructions   # needs valgrind; ~1.5 min

`--instructions` counts instead of timing: callgrind counts the instructions the loop
executes (no output stage) with no rules, the default ruleset and Falco's, a figure that
does not move with the host's load as CPU seconds do (on a shared VM they vary by
+-20% run to run, more than the difference the Falco goal is about).

    python3 bench/bench_replay.py --instructions --by-class   # ~6 min more

`--by-class` adds where the two rulesets' difference goes: for each class of event in the
capture (its type; an open by its path, digits folded; an execve by its program), the
instructions one call of the type's generated matcher costs with each ruleset, and what
the difference comes to per event of the capture.
"""

from __future__ import annotations

import argparse
import operator
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime.driver.schema import compiled_decoder_status  # noqa: E402
from runtime.engine.app import Engine, Runner  # noqa: E402
from runtime.engine.capture import (  # noqa: E402
    AF_INET,
    CaptureHeader,
    CaptureWriter,
    encode_record,
    encode_tuple,
)
from runtime.engine.cli import default_rules_path  # noqa: E402
from runtime.engine.config import DropConfig  # noqa: E402
from runtime.engine.drops import DropMonitor  # noqa: E402
from runtime.engine.fields import OPEN_TYPES  # noqa: E402
from runtime.engine.metrics import EngineCounters, peak_rss_bytes  # noqa: E402
from runtime.engine.outputs import OutputQueue, StreamSink  # noqa: E402
from runtime.engine.reorder import DEFAULT_WINDOW_MS, OrderedSource  # noqa: E402
from runtime.engine.rules import load_rules  # noqa: E402
from runtime.engine.rules.ruleset import CompiledRule, DispatchFn  # noqa: E402
from runtime.engine.sources import ReplaySource, default_decoder, schema_identity  # noqa: E402
from runtime.engine.state import SystemState  # noqa: E402
from runtime.events import Event  # noqa: E402

BOOT_OFFSET_NS = 1_700_000_000_000_000_000
FALCO_RULES = (REPO / "tests/fixtures/falco_rules/falco_rules.yaml",
               REPO / "tests/fixtures/falco_rules/falco-incubating_rules.yaml")
# Records a CPU stages before handing them over in arrival-order captures (~4 KiB, the
# probes' batch size).
ARRIVAL_BATCH = 32
TARGET_EVENTS_PER_S = 500_000
LIBS = ("/etc/ld.so.cache", "/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libm.so.6")
PROGRAMS = (
    ("/usr/bin/curl", ["curl", "-s", "https://example.test/"]),
    ("/usr/bin/python3", ["python3", "-c", "pass"]),
    ("/usr/bin/grep", ["grep", "-r", "needle", "/srv"]),
    ("/bin/cat", ["cat", "/etc/shadow"]),  # one program in four trips the sensitive-file rule
)


def process_records(i: int, ts: int) -> list[bytes]:
    """The records one short-lived process leaves: ~18 events, one in fourteen an exec."""
    parent, child = 1000 + (i % 50), 100_000 + i
    exe, argv = PROGRAMS[i % len(PROGRAMS)]
    comm = Path(exe).name
    out: list[bytes] = []

    def rec(evt: str, pid: int, ret: int, comm: str, /, **params: object) -> None:
        nonlocal ts
        ts += 1500
        out.append(encode_record(evt, ts_boot_ns=ts, ret=ret, pid=pid,
                                 ppid=parent if pid == child else 1, uid=1000, gid=1000,
                                 comm=comm, cpu=i & 1, params=params))

    rec("clone", parent, child, "bash", flags=0x1200011)
    rec("clone", child, 0, "bash", flags=0x1200011)
    rec("execve", child, 0, comm, filename=exe, argv=argv, cwd="/home/user")
    fd = 3
    for path in LIBS:
        rec("openat", child, fd, comm, dirfd=-100, name=path, flags=0o2000000, mode=0)
        rec("close", child, 0, comm, fd=fd)
    target = argv[-1] if argv[-1].startswith("/etc") else "/home/user/.config/app.conf"
    rec("openat", child, fd, comm, dirfd=-100, name=target, flags=0, mode=0)
    rec("openat", child, fd + 1, comm, dirfd=-100, name=f"/tmp/out.{i}", flags=0o1101, mode=0o644)
    rec("socket", child, fd + 2, comm, domain=2, type=1, proto=0)
    rec("connect", child, 0, comm, fd=fd + 2,
        tuple=encode_tuple(AF_INET, "10.0.0.2", 40000 + i % 20000, "10.1.2.3", 443))
    rec("close", child, 0, comm, fd=fd + 2)
    rec("close", child, 0, comm, fd=fd + 1)
    rec("close", child, 0, comm, fd=fd)
    rec("exit", child, 0, comm, status=0)
    rec("procexit", child, 0, comm, status=0, sig=0, core=0)
    return out


def build_capture(path: Path, n_events: int, frame_bytes: int = 256 * 1024, *,
                  arrival: bool = False) -> int:
    """The mix in ts order; with `arrival`, in the order a live run records it: each
    CPU's records staged in batches of ARRIVAL_BATCH, a batch handed over when full, so
    a batch of one CPU often carries events older than the other CPU's batch before it."""
    api, schema_hash = schema_identity()
    writer = CaptureWriter(path, CaptureHeader(api, schema_hash, BOOT_OFFSET_NS, {"bench": 1}))
    count, i, ts = 0, 0, 1_000_000_000
    frame = bytearray()
    staged: dict[int, list[bytes]] = {0: [], 1: []}
    while count < n_events:
        records = process_records(i, ts)
        ts += 100_000
        cpu = i & 1
        i += 1
        count += len(records)
        if arrival:
            staged[cpu] += records
            if len(staged[cpu]) < ARRIVAL_BATCH:
                continue
            records, staged[cpu] = staged[cpu], []
        for record in records:
            frame += record
        if len(frame) >= frame_bytes:
            writer.write_events(bytes(frame))
            frame.clear()
    for records in staged.values():
        frame += b"".join(records)
    writer.write_events(bytes(frame))
    writer.close()
    return count


def synthetic_rules(n: int) -> str:
    """n rules over the mix's event types; each is cheap to state and never trivially true."""
    shapes = (
        "evt.type in (open, openat, openat2) and fd.name startswith /srv/app{i}/"
        " and not proc.name in (nginx, php-fpm{i})",
        "evt.type = execve and (proc.cmdline contains \"--token-{i}\" or proc.exe endswith /x{i})",
        "evt.type = connect and fd.sport = {port} and fd.sip != 10.9.9.{j}",
        "evt.type in (clone, clone3) and proc.pname = daemon{i} and user.uid >= 0",
        "evt.type = openat and fd.filename glob \"*.key{i}\" and evt.rawres >= 0",
        "evt.type = close and fd.directory = /var/spool/q{i}",
        "evt.type in (execve, execveat) and proc.name icontains MINER{i}",
    )
    out = ["- required_engine_version: 1"]
    for i in range(n):
        cond = shapes[i % len(shapes)].format(i=i, port=20000 + i, j=i % 250)
        out.append(
            f"- rule: synthetic rule {i}\n  desc: bench\n  condition: >\n    {cond}\n"
            f"  output: synthetic {i} %proc.name %fd.name\n  priority: NOTICE"
        )
    return "\n".join(out) + "\n"


def run_pipeline(capture: Path, rules_path: Path | Sequence[Path], *,
                 compiled: bool | None = None, window_ms: float | None = None,
                 decoded: bool = False) -> tuple[int, float, float, int]:
    """`window_ms`: events in ts order through a reorder window of that size.
    `decoded`: the source hands the engine decoded Events, as live drivers do."""
    ruleset = load_rules(rule_paths(rules_path))
    sink = StreamSink(open(os.devnull, "w"), json_output=True)  # noqa: SIM115
    outputs = OutputQueue([sink], maxsize=100_000)
    counters = EngineCounters()
    engine = Engine(ruleset, SystemState(), outputs.submit, counters=counters)
    source = ReplaySource(capture, compiled=compiled,
                          decoder=default_decoder(BOOT_OFFSET_NS) if decoded else None)
    drops = DropMonitor(DropConfig(), emit_alert=outputs.submit, log=lambda _: None)
    runner = Runner(source if window_ms is None else OrderedSource(source, window_ms=window_ms),
                    engine, outputs, drops)
    start, cpu_start = time.perf_counter(), time.process_time()
    runner.run()
    outputs.close()  # all alerts delivered: part of the cost
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    source.close()
    return counters.events, elapsed, cpu, sum(counters.matches.values())


def rule_paths(rules: Path | Sequence[Path]) -> list[Path]:
    return [rules] if isinstance(rules, Path) else list(rules)


def engine_without_outputs(capture: Path, rules: Path | Sequence[Path], *,
                           format_alerts: bool = True
                           ) -> tuple[Runner, EngineCounters, list[object], ReplaySource]:
    """A runner over `capture` whose alerts are formatted and kept, never queued,
    serialised or written (without `format_alerts`, matches are kept unformatted), its
    counters, the alerts, and the source to close after the run."""
    alerts: list[object] = []
    counters = EngineCounters()
    engine = Engine(load_rules(rule_paths(rules)), SystemState(), alerts.append,
                    counters=counters)
    if not format_alerts:
        setattr(engine, "_alert", lambda rule, ev: alerts.append(rule))  # noqa: B010
    source = ReplaySource(capture)
    drops = DropMonitor(DropConfig(), emit_alert=alerts.append, log=lambda _: None)
    return Runner(source, engine, None, drops), counters, alerts, source  # type: ignore[arg-type]


def engine_only(capture: Path, rules_path: Path | Sequence[Path]) -> tuple[int, float]:
    """The pipeline with alerts formatted but not queued, serialised or written: what the
    output stage (queue, worker thread, JSON) costs is the difference."""
    runner, counters, _, source = engine_without_outputs(capture, rules_path)
    start = time.process_time()
    runner.run()
    cpu = time.process_time() - start
    source.close()
    return counters.events, cpu


def raw_frames(capture: Path) -> list[bytes]:
    """The capture's event frames, undecoded (the stage timings decode them themselves)."""
    source = ReplaySource(capture, decoder=lambda raw: [])
    frames = [b.raw for b in iter(lambda: source.read(0), None) if b.raw]
    source.close()
    return frames


def decode_and_state(capture: Path) -> tuple[int, float]:
    """Decode + state updates, no rules: what the rules themselves add is the difference."""
    frames = raw_frames(capture)
    decode = default_decoder(BOOT_OFFSET_NS)
    update = SystemState().update
    start = time.process_time()
    n = 0
    for raw in frames:
        events = decode(raw)
        for ev in events:
            update(ev)
        n += len(events)
    return n, time.process_time() - start


def decode_only(capture: Path) -> tuple[int, float]:
    frames = raw_frames(capture)
    decode = default_decoder(BOOT_OFFSET_NS)
    start = time.process_time()
    n = sum(len(decode(raw)) for raw in frames)
    return n, time.process_time() - start


def best_rate(capture: Path, rules: Path | Sequence[Path], repeat: int,
              window_ms: float | None = None, decoded: bool = False) -> tuple[float, int]:
    """Events per CPU-second (best of `repeat`) and the alerts of that run."""
    runs = [run_pipeline(capture, rules, window_ms=window_ms, decoded=decoded)
            for _ in range(repeat)]
    events, _, cpu, alerts = min(runs, key=lambda r: r[2])
    return events / cpu, alerts


def print_order_cost(capture: Path, arrival: Path, n_events: int, repeat: int) -> None:
    """The default ruleset with and without the reorder window, the runs interleaved so
    a neighbour's load spreads over both; on the in-order capture and an arrival-order
    one (where the window has real work)."""
    build_capture(arrival, n_events, arrival=True)
    for label, path, decoded in (("in-order capture", capture, False),
                                 ("arrival-order capture", arrival, False),
                                 ("arrival, as Events", arrival, True)):
        plain: list[float] = []
        ordered: list[float] = []
        alerts = {}
        for _ in range(repeat):
            rate, alerts["plain"] = best_rate(path, default_rules_path(), 1, None, decoded)
            plain.append(rate)
            rate, alerts["ordered"] = best_rate(path, default_rules_path(), 1,
                                                DEFAULT_WINDOW_MS, decoded)
            ordered.append(rate)
        print(f"ts order, {label + ':':<23}{max(plain):>10,.0f} events/CPU-s without the "
              f"window, {max(ordered):>10,.0f} with it ({DEFAULT_WINDOW_MS:g} ms): "
              f"{max(ordered) / max(plain) - 1:+.1%}  (alerts {alerts['plain']} / "
              f"{alerts['ordered']})")


# The rulesets the Falco comparison measures, by the name a measuring child is given.
NO_RULES_YAML = "- required_engine_version: 1\n"
COMPARED = ("no rules", "default", "Falco")


def compared_rules(label: str, tmp: Path) -> Path | Sequence[Path]:
    if label == "default":
        return default_rules_path()
    if label == "Falco":
        return FALCO_RULES
    none = tmp / "none.yaml"
    none.write_text(NO_RULES_YAML)
    return none


def measure_child(capture: Path, label: str, outputs: bool) -> tuple[float, int]:
    """One run of one ruleset in a fresh interpreter: events per CPU-second and alerts
    (-1 without the output stage, which counts none). Runs meant to be compared each get
    a process of their own, so none runs on what an earlier one left: its heap, the
    interning and regex caches, the objects each run's tune_gc froze for good."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", label,
           "--capture", str(capture)] + ([] if outputs else ["--no-outputs"])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"bench_replay: measuring {label} failed: "
                         f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    rate, alerts = done.stdout.split()
    return float(rate), int(alerts)


def measure_main(capture: Path, label: str, outputs: bool) -> int:
    """The child's side of measure_child: prints events/CPU-s of one run."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory(prefix="bench-measure-") as tmp:
        rules = compared_rules(label, Path(tmp))
        if outputs:
            events, _, cpu, alerts = run_pipeline(capture, rules)
        else:
            (events, cpu), alerts = engine_only(capture, rules), -1
    print(f"{events / cpu:.1f} {alerts}")
    return 0


def print_falco_rules(capture: Path, repeat: int) -> None:
    """Falco's rules beside the default ruleset, and both over no rules at all (decode,
    state and the loop only: the floor), each run in a fresh process, the three
    alternating (so a neighbour's load weighs on all alike), best of `repeat` runs
    each; whole pipeline (the goal's figure) and without the output stage (where
    Falco's rules pay for twice the alerts)."""
    names = " + ".join(p.name for p in FALCO_RULES)
    try:
        count = {"Falco": len(load_rules(list(FALCO_RULES))),
                 "default": len(load_rules([default_rules_path()]))}
    except Exception as exc:  # whatever the loader says is the reason to print
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"Falco's {names}: not loadable yet: {reason}")
        return
    best: dict[bool, dict[str, float]] = {True: {}, False: {}}
    alerts: dict[str, int] = {}
    for _ in range(repeat):
        for outputs in (True, False):
            for label in COMPARED:
                rate, found = measure_child(capture, label, outputs)
                best[outputs][label] = max(rate, best[outputs].get(label, 0.0))
                if outputs:
                    alerts[label] = found
    rates = best[True]
    falco, default = rates["Falco"], rates["default"]
    verdict = falco_verdict(best)
    print(f"Falco's {names} ({count['Falco']} rules):{falco:>10,.0f} events/CPU-s; goal no "
          f"slower than the default ruleset ({default:,.0f}, {count['default']} rules): "
          f"{verdict} ({falco / default:.0%}; alerts {alerts['Falco']} / {alerts['default']}; "
          f"each a fresh process, runs alternating, best of {repeat})")
    for outputs, what in ((True, "whole pipeline"), (False, "no output stage")):
        floor, default, falco = (best[outputs][k] for k in COMPARED)

        def over(rate: float, floor: float = floor) -> float:
            return (1 / rate - 1 / floor) * 1e6  # µs per event over the floor

        print(f"  {what + ':':<16} no rules {floor:>10,.0f}, default {default:>10,.0f}, "
              f"Falco's rules {falco:>10,.0f} events/CPU-s ({falco / default:.0%}); the "
              f"rules' own cost over no rules: default {over(default):+.2f} µs/event, "
              f"Falco's {over(falco):+.2f} µs/event")


def falco_verdict(best: Mapping[bool, Mapping[str, float]]) -> str:
    """The goal's verdict from the best rates, keyed by (output stage on, ruleset). The
    output stage adds to each ruleset what its alerts cost, so Falco's rules (twice the
    alerts) cannot be faster than the default ruleset with it yet slower without it:
    when the two disagree, a run of one ruleset was slowed by the host in every repeat
    (seen here: the default at 367,412 beside 606,054 a minute earlier), and no verdict
    is given rather than a wrong one."""
    met = {outputs: rates["Falco"] >= rates["default"] for outputs, rates in best.items()}
    if met[True] and not met[False]:
        return "UNSETTLED (the host slowed one ruleset's runs: faster with the output " \
               "stage, slower without it; run again, or count with --instructions)"
    return "MET" if met[True] else "NOT MET"


# Instruction counts (see print_instructions): a capture this size keeps each callgrind
# run under a minute; callgrind counts only inside this C function of the interpreter,
# which runs the loop (operator.call) and nothing in the engine calls.
INSTRUCTION_EVENTS = 20_000
_TOGGLE = "_operator_call"


def event_class(ev: Event) -> str:
    """What the by-class breakdown groups an event under: its type; an open by its path,
    digit runs in the file's name folded (each /tmp/out.N is one class: a path the
    matchers have not seen yet), an execve by the program's name."""
    if ev.type in OPEN_TYPES:
        folder, _, name = str(ev.params.get("name")).rpartition("/")
        return f"{ev.type} {folder}/{_DIGITS.sub('#', name)}"
    if ev.type in ("execve", "execveat"):
        return f"{ev.type} {ev.comm}"
    return ev.type


_DIGITS = re.compile(r"\d+")


def count_main(capture: Path, label: str, format_alerts: bool,
               only_class: str | None = None) -> int:
    """The child's side of count_instructions: the engine without its output stage over
    `capture`, the loop alone under operator.call; prints events and alerts. Without
    `format_alerts` a match is counted, not formatted: the difference is what formatting
    alerts costs. With `only_class`, only the calls of the matchers for events of that
    class run under operator.call (the rest of the loop is not counted), and the first
    number printed is how many calls that was."""
    with tempfile.TemporaryDirectory(prefix="bench-count-") as tmp:
        runner, counters, alerts, source = engine_without_outputs(
            capture, compared_rules(label, Path(tmp)), format_alerts=format_alerts)
        if only_class is None:
            operator.call(runner.run)
            counted = counters.events
        else:
            calls = [0]
            engine = runner.engine

            def counted_in(match: DispatchFn) -> DispatchFn:
                def dispatch(ev: Event, st: SystemState) -> tuple[CompiledRule, ...]:
                    if event_class(ev) != only_class:
                        return match(ev, st)
                    calls[0] += 1
                    found: tuple[CompiledRule, ...] = operator.call(match, ev, st)
                    return found
                return dispatch

            # The engine's per-type matchers (runtime/engine/app.py), each behind a test
            # of the event's class; the lookup stays one dict read as in the engine.
            setattr(engine, "_dispatch", {  # noqa: B010
                evt_type: None if match is None else counted_in(match)
                for evt_type, match in getattr(engine, "_dispatch").items()})  # noqa: B009
            runner.run()
            counted = calls[0]
        source.close()
    print(counted, len(alerts))
    return 0


def count_instructions(capture: Path, label: str, format_alerts: bool = True,
                       only_class: str | None = None) -> tuple[int, int, int]:
    """Instructions the loop over `capture` executes with one ruleset (callgrind), its
    events and alerts. Unlike CPU time, the count does not move with the neighbours.
    With `only_class`: the instructions of the matcher calls for that class of events
    (see event_class), how many calls, and the alerts."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("bench_replay: --instructions needs valgrind (apt install valgrind)")
    cmd = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
           f"--toggle-collect={_TOGGLE}", sys.executable, str(Path(__file__).resolve()),
           "--count", label, "--capture", str(capture)]
    cmd += [] if format_alerts else ["--no-alert-format"]
    cmd += [] if only_class is None else ["--class", only_class]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bench_replay: counting {label} failed: {tail}")
    if int(found.group(1)) == 0 and only_class is None:
        raise SystemExit(f"bench_replay: callgrind found no {_TOGGLE} in {sys.executable} "
                         "(a stripped interpreter?): nothing counted")
    events, alerts = (int(v) for v in done.stdout.split())
    return int(found.group(1)), events, alerts


def capture_classes(capture: Path) -> dict[str, int]:
    """How many events of each class (see event_class) the capture holds."""
    found: dict[str, int] = {}
    source = ReplaySource(capture)
    source.start(None)
    try:
        while (batch := source.read(1.0)) is not None:
            for ev in batch.events:
                name = event_class(ev)
                found[name] = found.get(name, 0) + 1
    finally:
        source.close()
    return found


def print_instructions(by_class: bool = False) -> None:
    """Instructions per event of the loop (no output stage) with no rules, the default
    ruleset and Falco's, and how much of each ruleset's share formatting alerts is; the
    callgrind runs go two at a time (one per CPU here). `by_class` adds the matchers'
    cost per class of event (see print_classes)."""
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        capture = Path(tmp) / "mix.rtcap"
        build_capture(capture, INSTRUCTION_EVENTS)
        jobs = [(label, True) for label in COMPARED] + [("default", False), ("Falco", False)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            counts = dict(zip(jobs, pool.map(lambda job: count_instructions(capture, *job),
                                              jobs), strict=True))
        per_event = {job: ir / events for job, (ir, events, _) in counts.items()}
        floor = per_event[("no rules", True)]
        print(f"instructions per event, the loop without its output stage (callgrind, "
              f"{INSTRUCTION_EVENTS:,} events; a count, so it does not move with the host's "
              f"load):")
        print(f"  no rules:        {floor:>8,.0f}")
        for label, name in (("default", "default ruleset"), ("Falco", "Falco's rules")):
            total, unformatted = per_event[(label, True)], per_event[(label, False)]
            print(f"  {name + ':':<17}{total:>8,.0f}  (+{total - floor:,.0f} over no rules, "
                  f"of which formatting {counts[(label, True)][2]} alerts "
                  f"{total - unformatted:,.0f})")
        ratio = per_event[("default", True)] / per_event[("Falco", True)]
        print(f"  Falco's rules at {ratio:.0%} of the default ruleset's speed by this count "
              f"(goal: no slower)")
        print(f"  with Falco's matchers costing exactly what the default's do, formatting "
              f"its {counts[('Falco', True)][2]} alerts would leave it at "
              f"{matcher_parity_bound(per_event):.0%}")
        if by_class:
            print_classes(capture, per_event[("Falco", True)] - per_event[("default", True)])


def matcher_parity_bound(per_event: Mapping[tuple[str, bool], float]) -> float:
    """The default ruleset's speed over Falco's, per event counts keyed by (ruleset,
    alerts formatted), were Falco's matchers to cost what the default's do: the default's
    loop with matches counted but not formatted, plus what formatting Falco's own alerts
    costs. Falco's rules fire on more of the capture, with longer outputs, so this is
    below 100% whenever formatting them costs more than formatting the default's: then
    "no slower" asks for matchers cheaper than the default's, whatever their design."""
    falco_formatting = per_event[("Falco", True)] - per_event[("Falco", False)]
    return per_event[("default", True)] / (per_event[("default", False)] + falco_formatting)


def print_classes(capture: Path, gap: float) -> None:
    """For each class of event the capture holds that some rule of either ruleset can
    match: one call of its type's matcher in instructions with each ruleset, and the
    difference over the capture per event; then what the matchers add up to beside
    `gap`, the difference between the rulesets' totals per event (the rest: matched
    types decoded in full, alerts built and formatted)."""
    classes = capture_classes(capture)
    events = sum(classes.values())
    with tempfile.TemporaryDirectory(prefix="bench-classes-") as tmp:
        rulesets = {label: load_rules(rule_paths(compared_rules(label, Path(tmp))))
                    for label in ("default", "Falco")}
    jobs = [(label, name) for name in sorted(classes) for label in rulesets
            if rulesets[label].matches_type(name.split(" ", 1)[0])]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        found = dict(zip(jobs, pool.map(
            lambda job: count_instructions(capture, job[0], True, job[1]), jobs),
            strict=True))
    rows = []
    for name, n in classes.items():
        per_call = {}
        for label in rulesets:
            ir, calls, _ = found.get((label, name), (0, 0, 0))
            if calls != (n if (label, name) in found else 0):
                raise SystemExit(f"bench_replay: the {label} matcher ran {calls} times for"
                                 f" the capture's {n} events of class {name}")
            per_call[label] = ir / calls if calls else 0.0
        if (("default", name) in found) or (("Falco", name) in found):
            share = (per_call["Falco"] - per_call["default"]) * n / events
            rows.append((share, name, n, per_call["default"], per_call["Falco"]))
    print(f"  the matchers by class of event (instructions per call; the difference per "
          f"event of the {events:,}):")
    print(f"    {'class':<44}{'events':>7}{'default':>10}{'Falco':>10}{'Falco - default':>17}")
    for share, name, n, default, falco in sorted(rows, reverse=True):
        print(f"    {name[:43]:<44}{n:>7,}{default:>10,.0f}{falco:>10,.0f}{share:>+17,.0f}")
    total = sum(row[0] for row in rows)
    print(f"    matchers in all: {total:+,.0f} per event of the {gap:+,.0f} between the "
          f"rulesets' totals (the rest: matched types decoded in full, alerts built and "
          f"formatted)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs")
    parser.add_argument("--rules", type=int, default=100, help="synthetic rule count")
    # A measuring child (see measure_child): one run of one ruleset over a built capture.
    parser.add_argument("--measure", choices=COMPARED, help=argparse.SUPPRESS)
    parser.add_argument("--capture", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-outputs", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--instructions", action="store_true",
                        help="only count instructions per event with callgrind (no rules, "
                             "default ruleset, Falco's rules)")
    # A counting child (see count_instructions), run under callgrind.
    parser.add_argument("--count", choices=COMPARED, help=argparse.SUPPRESS)
    parser.add_argument("--no-alert-format", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--class", dest="only_class", help=argparse.SUPPRESS)
    parser.add_argument("--by-class", action="store_true",
                        help="with --instructions: also the matchers' instructions per "
                             "call for each class of event, both rulesets (~6 min more)")
    args = parser.parse_args()
    if args.by_class and not args.instructions:
        parser.error("--by-class goes with --instructions")
    if args.measure is not None:
        return measure_main(args.capture, args.measure, not args.no_outputs)
    if args.count is not None:
        return count_main(args.capture, args.count, not args.no_alert_format,
                          args.only_class)
    if args.instructions:
        print_instructions(args.by_class)
        return 0
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        capture = Path(tmp) / "mix.rtcap"
        n = build_capture(capture, args.events)
        print(f"capture: {n} events, {capture.stat().st_size / 1e6:.1f} MB "
              f"(clone/execve/openat/close/socket/connect/exit/procexit mix)")
        synth = Path(tmp) / "synthetic.yaml"
        synth.write_text(synthetic_rules(args.rules))

        # CPU seconds, not wall seconds: on a shared host the wall clock measures the
        # neighbours. Both are printed for the whole pipeline.
        best = min(decode_only(capture)[1] for _ in range(args.repeat))
        print(f"decode only:            {n / best:>12,.0f} events/CPU-s")
        best = min(decode_and_state(capture)[1] for _ in range(args.repeat))
        print(f"decode + state:         {n / best:>12,.0f} events/CPU-s")
        best = min(engine_only(capture, default_rules_path())[1] for _ in range(args.repeat))
        print(f"default rules, no outputs:{n / best:>10,.0f} events/CPU-s"
              "  (alerts formatted, not queued/serialised)")
        rates: dict[str, float] = {}
        for label, rules, compiled in (
                ("default ruleset", default_rules_path(), None),
                (f"{args.rules} synthetic rules", synth, None),
                ("default, Python decoder", default_rules_path(), False)):
            runs = [run_pipeline(capture, rules, compiled=compiled) for _ in range(args.repeat)]
            events, elapsed, cpu, alerts = min(runs, key=lambda r: r[2])
            rates[label] = events / cpu
            print(f"{label + ':':<24}{events / cpu:>12,.0f} events/CPU-s"
                  f"  {events / elapsed:>10,.0f} events/wall-s"
                  f"  ({events} events, {cpu:.3f} CPU-s, {alerts} alerts)")
        print_order_cost(capture, Path(tmp) / "arrival.rtcap", args.events, args.repeat)
        print_falco_rules(capture, args.repeat)
    print(f"peak RSS: {peak_rss_bytes() / 1e6:.1f} MB  (one CPU, python {sys.version.split()[0]})")
    status = compiled_decoder_status()
    print("batch decoder: " + ("compiled (runtime/driver/_fastdecode.c)" if status is None
                               else f"Python only: {status}"))
    rate = rates["default ruleset"]
    verdict = "MET" if rate >= TARGET_EVENTS_PER_S else "NOT MET"
    print(f"target (issue 5): >= {TARGET_EVENTS_PER_S:,} events/CPU-s through the default "
          f"ruleset on one core: {verdict} ({rate:,.0f}, {rate / TARGET_EVENTS_PER_S:.0%} "
          f"of target; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
