"""Events reach the rules in timestamp order across CPUs (runtime/engine/reorder.py).

Unit level: the reorder window over interleaved per-CPU streams (any arrival skew within
the window comes out sorted, nothing lost; a late event is processed and counted; a quiet
stream holds nothing beyond the window; memory stays bounded). Replay: a capture in
arrival order (a child's execve recorded before its parent's clone) replays in ts order
through the CLI, so the rule shows the child's own exe and command line. Live (`bpf`):
`rt-engine run --driver core` over many short-lived processes on both CPUs processes in
non-decreasing ts and sees each child's execve after its clone.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from itertools import pairwise
from operator import itemgetter
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runtime.engine import reorder
from runtime.engine.app import Engine, Runner
from runtime.engine.capture import CaptureHeader, CaptureWriter, encode_record
from runtime.engine.config import DropConfig
from runtime.engine.drops import DropMonitor
from runtime.engine.metrics import EngineCounters, Metrics, _Collector
from runtime.engine.reorder import OrderedSource, ReorderCounters, ReorderWindow
from runtime.engine.rules import load_rules
from runtime.engine.sources import Batch, PerCpuStats, ReplaySource, schema_identity
from runtime.engine.state import SystemState
from runtime.events import Event
from tests.fuzz_helpers import FUZZ

BOOT_OFFSET = 1_750_000_000_000_000_000
MS = 1_000_000
Item = tuple[int, int]  # (ts, stream)


def window(window_ns: int = 20 * MS, max_held: int = 1 << 20, streams: range = range(0)
           ) -> ReorderWindow[Item]:
    return ReorderWindow(itemgetter(0), window_ns=window_ns, max_held=max_held,
                         streams=streams)


def push(w: ReorderWindow[Item], items: list[Item]) -> list[Item]:
    heads: dict[int, int] = {}
    for ts, stream in items:
        heads[stream] = ts
    w.push(items, heads)
    return w.release()


def arrival(streams: list[list[int]], batch: int, order: list[int]) -> list[list[Item]]:
    """Each stream cut into batches of `batch`, delivered in the stream order `order`
    names (one batch of that stream per entry), then whatever is left, stream by stream."""
    cursors = [0] * len(streams)
    out: list[list[Item]] = []
    for s in [*order, *range(len(streams))] * (1 + max(map(len, streams))):
        chunk = streams[s][cursors[s]:cursors[s] + batch]
        cursors[s] += len(chunk)
        if chunk:
            out.append([(ts, s) for ts in chunk])
    return out


@FUZZ
@given(
    gaps=st.lists(st.lists(st.integers(0, 3 * MS), min_size=1, max_size=60),
                  min_size=2, max_size=4),
    batch=st.integers(1, 16),
    order=st.lists(st.integers(0, 3), max_size=40),
)
@example(gaps=[[0, 1, 1], [5, 0]], batch=1, order=[1, 1, 0])
def test_any_interleaving_comes_out_sorted_and_whole(
    gaps: list[list[int]], batch: int, order: list[int]
) -> None:
    # Each stream is in order (stamps are running sums of gaps); batches of the streams
    # arrive in any interleaving. The streams are known from the start (a live driver's
    # CPUs) and the window is longer than any stream's span: nothing can be late.
    streams = [[sum(g[:i + 1]) for i in range(len(g))] for g in gaps]
    w = window(window_ns=1 << 40, streams=range(len(streams)))
    order = [s % len(streams) for s in order]
    released: list[Item] = []
    for chunk in arrival(streams, batch, order):
        released += push(w, chunk)
    released += w.drain()
    assert [ts for ts, _ in released] == sorted(ts for s in streams for ts in s)
    assert sorted(released) == sorted((ts, i) for i, s in enumerate(streams) for ts in s)
    assert w.counters.out_of_order == 0
    assert len(w) == 0


def test_released_once_every_stream_has_shown_a_later_ts() -> None:
    w = window(streams=range(2))
    assert push(w, [(10, 0), (20, 0), (30, 0)]) == []  # stream 1 may still show older
    assert push(w, [(25, 1), (40, 1)]) == [(10, 0), (20, 0), (25, 1), (30, 0)]
    assert push(w, [(35, 0), (45, 0)]) == [(35, 0), (40, 1)]
    assert w.drain() == [(45, 0)]
    assert w.counters.out_of_order == 0


def test_streams_not_declared_may_show_up_during_the_first_window() -> None:
    # A capture does not say which CPUs it has: for its first window of event time any
    # of them may still speak; after that a newcomer counts from its first event.
    w = window(window_ns=5 * MS)
    assert push(w, [(2 * MS, 1)]) == []
    assert push(w, [(1 * MS, 0)]) == []
    assert push(w, [(8 * MS, 1)]) == [(1 * MS, 0), (2 * MS, 1)]  # 8 - 5 = 3 ms reached
    assert push(w, [(5 * MS, 2)]) == []  # a newcomer waits like the rest
    late = (MS + MS // 2, 3)  # older than what has gone: processed at once, counted
    assert push(w, [late]) == [late]
    assert w.counters.out_of_order == 1
    assert w.drain() == [(5 * MS, 2), (8 * MS, 1)]
    declared = window(window_ns=5 * MS, streams=range(2))
    assert push(declared, [(2 * MS, 1)]) == []  # stream 0 may still speak
    assert push(declared, [(1 * MS, 0)]) == [(1 * MS, 0)]  # 2 ms: stream 0 may be older
    assert declared.drain() == [(2 * MS, 1)]
    assert declared.counters.out_of_order == 0


def test_a_quiet_stream_holds_nothing_beyond_the_window() -> None:
    w = window(window_ns=5 * MS)
    assert push(w, [(1 * MS, 1)]) == []  # stream 1 falls quiet after this
    out = push(w, [(2 * MS, 0), (4 * MS, 0), (7 * MS, 0), (9 * MS, 0)])
    # newest 9 ms - window 5 ms: up to 4 ms goes, the rest waits for more events...
    assert [ts for ts, _ in out] == [1 * MS, 2 * MS, 4 * MS]
    # ...or for the clock (a live read that found nothing new).
    assert [ts for ts, _ in w.release(now_ts=13 * MS)] == [7 * MS]
    assert [ts for ts, _ in w.release(now_ts=14 * MS)] == [9 * MS]


def test_a_sources_completeness_mark_bounds_the_time_rules() -> None:
    # A live probe that says a CPU still holds a batch from 3 ms: neither the newest ts
    # nor the clock releases past it, however late the read; the streams' rule (every
    # CPU has shown a later ts) is exact and is not bounded.
    w = window(window_ns=5 * MS, streams=range(2))
    w.push([(1 * MS, 0), (4 * MS, 0), (30 * MS, 0)], {0: 30 * MS})
    assert [ts for ts, _ in w.release(complete_before=3 * MS)] == [1 * MS]
    assert w.release(now_ts=90 * MS, complete_before=3 * MS) == []
    w.push([(3 * MS, 1)], {1: 3 * MS})
    assert [ts for ts, _ in w.release(now_ts=90 * MS, complete_before=31 * MS)] == [
        3 * MS, 4 * MS, 30 * MS]
    assert w.counters.out_of_order == 0
    streams = window(window_ns=5 * MS, streams=range(2))
    streams.push([(1 * MS, 0), (2 * MS, 1), (9 * MS, 0), (9 * MS, 1)], {0: 9 * MS, 1: 9 * MS})
    assert len(streams.release(complete_before=0)) == 4


def test_a_sources_completeness_mark_releases_without_waiting_out_the_window() -> None:
    # A storm on CPU 0, CPU 1 quiet: neither the streams' rule nor the newest ts (the
    # window is 20 ms) releases anything, the source's mark does, up to the margin
    # before it; what is closer to the mark than that waits for a later one.
    w = window(window_ns=20 * MS, streams=range(2))
    storm = [(n * MS // 10, 0) for n in range(1, 60)]  # 0.1 ms apart, to 5.9 ms
    w.push(storm, {0: storm[-1][0]})
    assert w.release() == []
    mark = 5 * MS
    out = w.release(complete_before=mark)
    assert out == [e for e in storm if e[0] <= mark - reorder.COMPLETE_MARGIN_NS]
    assert out and out[-1][0] == 4 * MS
    assert [ts for ts, _ in w.release(complete_before=6 * MS)] == [
        ts for ts, _ in storm if 4 * MS < ts <= 5 * MS]
    assert w.counters.out_of_order == 0


def test_a_late_event_is_processed_at_once_and_counted() -> None:
    w = window(window_ns=5 * MS)
    push(w, [(1 * MS, 0), (10 * MS, 0)])
    push(w, [(12 * MS, 1)])
    out = push(w, [(2 * MS, 1), (3 * MS, 1), (20 * MS, 0)])  # older than what has gone
    assert (2 * MS, 1) in out and (3 * MS, 1) in out
    assert w.counters.out_of_order == 2


def test_held_events_are_bounded_and_overflow_is_counted() -> None:
    # Stream 1 never speaks and the window is endless: only max_held bounds the rest.
    w = window(window_ns=1 << 40, max_held=100, streams=range(2))
    out: list[Item] = []
    for start in range(0, 1000, 50):
        out += push(w, [(ts, 0) for ts in range(start, start + 50)])
        assert len(w) <= 100
    assert [ts for ts, _ in out] == list(range(900))
    assert w.counters.forced_by_capacity == 900
    assert w.counters.held_peak <= 150


def test_window_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="negative"):
        window(window_ns=-1)
    with pytest.raises(ValueError, match="at least 1"):
        window(max_held=0)


# -- replay -----------------------------------------------------------------------------

PARENT, CHILD = 300, 301


def rec(evt: str, pid: int, ret: int, comm: str, ts: int, cpu: int,  # noqa: PLR0917
        /, *, ppid: int = 1, **params: object) -> bytes:
    return encode_record(evt, ts_boot_ns=ts, ret=ret, pid=pid, ppid=ppid, uid=0, gid=0,
                         comm=comm, cpu=cpu, params=params)


def child_capture(path: Path, *, migrated: bool = False) -> Path:
    """Arrival order as a live run recorded it: the child's CPU hands its execve over
    before the parent's CPU hands over the clone (stamped earlier). `migrated`: the
    child then moves to the parent's CPU, which hands its open over before the child's
    old CPU hands over the clone and execve."""
    bash = rec("execve", PARENT, 0, "bash", 1 * MS, 0, filename="/bin/bash",
               argv=["bash", "-l"], cwd="/root")
    child_start = [
        rec("clone", CHILD, 0, "bash", 3 * MS, 1, ppid=PARENT, flags=0x1200011),
        rec("execve", CHILD, 0, "cat", 4 * MS, 1, ppid=PARENT, filename="/bin/cat",
            argv=["cat", "/etc/shadow"], cwd="/root")]
    fork = rec("clone", PARENT, CHILD, "bash", 2 * MS, 0, flags=0x1200011)
    child_cpu = 0 if migrated else 1
    tail = [rec("openat", CHILD, 3, "cat", 5 * MS, child_cpu, ppid=PARENT, dirfd=-100,
                name="/etc/shadow", flags=0, mode=0),
            rec("close", PARENT, 0, "bash", 6 * MS, 0, fd=9)]
    if migrated:
        frames = [[bash], [fork], tail, child_start]
    else:
        frames = [[bash], child_start, [fork], tail]
    api, schema_hash = schema_identity()
    writer = CaptureWriter(path, CaptureHeader(api, schema_hash, BOOT_OFFSET, {"test": True}))
    for frame in frames:
        writer.write_events(b"".join(frame))
    writer.close()
    return path


RULE = """
- rule: shadow opened
  desc: test
  condition: evt.type = openat and fd.name = /etc/shadow
  output: "opened by exe=%proc.exe cmdline=%proc.cmdline parent=%proc.pname"
  priority: WARNING
"""


def rt_engine(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.engine.cli", *map(str, args)],
        check=False, capture_output=True, text=True, timeout=timeout,
    )


def replay_alert(tmp_path: Path, capture: Path, window_ms: str) -> tuple[dict[str, str], str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    done = rt_engine("run", "--replay", capture, "--rules", rules, "--json",
                     "--reorder-window-ms", window_ms)
    assert done.returncode == 0, done.stderr
    [alert] = [json.loads(line) for line in done.stdout.splitlines()]
    fields: dict[str, str] = alert["output_fields"]
    return fields, done.stderr


CAT = ("cat", "cat /etc/shadow", "bash")


@pytest.mark.parametrize("window_ms", ["20", "0"])
def test_replay_processes_in_ts_order(tmp_path: Path, window_ms: str) -> None:
    capture = child_capture(tmp_path / "child.rtcap", migrated=True)
    fields, stderr = replay_alert(tmp_path, capture, window_ms)
    got = (fields["proc.exe"], fields["proc.cmdline"], fields["proc.pname"])
    if window_ms == "0":
        # No window: each read is sorted, but frames keep their arrival order. The open
        # is processed before the child's execve: the rule sees the parent's image in
        # the child, the very failure the window exists for (and proof this test can
        # tell them apart).
        assert got == ("bash", "bash -l", "bash"), fields
        assert "out of ts order: 2" in stderr, stderr
    else:
        assert got == CAT, fields
        assert "out of ts order: 0" in stderr, stderr


@pytest.mark.parametrize("window_ms", ["20", "0"])
def test_a_clone_after_the_childs_execve_keeps_the_childs_image(tmp_path: Path,
                                                                window_ms: str) -> None:
    # The parent's clone exit processed after the child's execve (what a window of 0
    # gives here) must not overwrite the child with its parent: the state keeps a row
    # made from the child's own events (SystemState._clone), window or not.
    capture = child_capture(tmp_path / "child.rtcap")
    fields, stderr = replay_alert(tmp_path, capture, window_ms)
    assert (fields["proc.exe"], fields["proc.cmdline"], fields["proc.pname"]) == CAT, fields
    assert f"out of ts order: {1 if window_ms == '0' else 0}" in stderr, stderr


def test_ordered_replay_frames_hold_every_record_in_ts_order(tmp_path: Path) -> None:
    capture = child_capture(tmp_path / "child.rtcap")
    counters = ReorderCounters()
    source = OrderedSource(ReplaySource(capture), counters=counters)
    decoder = source.take_decoding()
    assert decoder is not None
    stamps: list[tuple[int, int]] = []
    while (batch := source.read(0)) is not None:
        if batch.raw:
            stamps += [(ev.ts - BOOT_OFFSET, ev.cpu) for ev in decoder.decode_stream(batch.raw)]
    source.close()
    assert [ts for ts, _ in stamps] == [ms * MS for ms in range(1, 7)]
    assert sorted(cpu for _, cpu in stamps) == [0, 0, 0, 1, 1, 1]
    assert counters.out_of_order == 0 and counters.held_peak >= 1


def test_replay_of_interleaved_cpu_batches_comes_out_whole_and_sorted(tmp_path: Path) -> None:
    # Two CPUs, each staging batches of 1 to 40 records handed over when full (what the
    # probes do), frames of several batches; later on, a stretch in order (one CPU),
    # which takes the in-order fast path.
    rng = random.Random(11)
    stamps = {0: iter(range(1000, 10**9, 7)), 1: iter(range(1003, 10**9, 5))}
    batches: list[tuple[int, list[int]]] = []
    for _ in range(300):
        cpu = rng.randrange(2)
        batches.append((cpu, [next(stamps[cpu]) for _ in range(rng.randint(1, 40))]))
    batches.sort(key=lambda b: b[1][-1])  # handed over when full: by its newest record
    tail = max(ts for _, batch in batches for ts in batch)
    batches += [(0, list(range(tail + 1, tail + 2000, 3)))]  # then CPU 0 alone, in order
    api, schema_hash = schema_identity()
    capture = tmp_path / "interleaved.rtcap"
    writer = CaptureWriter(capture, CaptureHeader(api, schema_hash, BOOT_OFFSET, {}))
    frame: list[bytes] = []
    for cpu, batch in batches:
        frame += [rec("close", 900 + cpu, 0, "x", ts, cpu, fd=3) for ts in batch]
        if rng.random() < 0.3:
            writer.write_events(b"".join(frame))
            frame.clear()
    writer.write_events(b"".join(frame))
    writer.close()
    counters = ReorderCounters()
    # A window (1 us) longer than any batch's span (<= 280 ns) and far shorter than the
    # capture's (~40 us): the per-CPU watermarks do the ordering.
    source = OrderedSource(ReplaySource(capture), window_ms=0.001, counters=counters)
    decoder = source.take_decoding()
    assert decoder is not None
    seen: list[int] = []
    while (read := source.read(0)) is not None:
        if read.raw:
            seen += [ev.ts - BOOT_OFFSET for ev in decoder.decode_stream(read.raw)]
    source.close()
    assert seen == sorted(ts for _, batch in batches for ts in batch)
    assert counters.out_of_order == 0
    assert counters.held_peak < len(seen) // 4  # released as it went, not at the end


class FakeLive:
    """A live source of hand-made batches (kind core: its CPUs are known at start)."""

    kind = "core"
    boot_offset_ns = 0
    keep_raw = False

    def __init__(self, batches: list[list[Event]], stop: threading.Event | None = None
                 ) -> None:
        self._batches = batches
        self._stop = stop

    def start(self, event_types: frozenset[str] | None) -> None:
        pass

    def read(self, timeout_s: float) -> Batch | None:
        if not self._batches:
            if self._stop is not None:
                self._stop.set()
            return Batch(events=[])
        return Batch(events=self._batches.pop(0))

    def stats(self) -> PerCpuStats:
        return {}

    def close(self) -> None:
        pass


def event(ts: int, cpu: int, pid: int) -> Event:
    return Event(ts=ts, cpu=cpu, type="close", syscall_nr=3, res=0, pid=pid, tid=pid,
                 ppid=1, uid=0, gid=0, comm="x", cgroup_id=0, params={"fd": 5})


def test_a_stopped_run_processes_what_the_window_still_holds(tmp_path: Path) -> None:
    # Far-future stamps: the idle-read release (now - window) cannot let them go, so
    # only the drain at stop processes them.
    future = time.time_ns() + 3600 * 10**9
    stop = threading.Event()
    cpu1 = [event(future + i, 1, 10 + i) for i in range(5)]
    source = OrderedSource(FakeLive([cpu1], stop), counters=ReorderCounters())
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    counters = EngineCounters()
    engine = Engine(load_rules([rules]), SystemState(), lambda alert: None, counters=counters)
    drops = DropMonitor(DropConfig(), emit_alert=lambda alert: None, log=lambda line: None)
    Runner(source, engine, None, drops, stop=stop).run()  # type: ignore[arg-type]
    assert counters.events == 5


def test_metrics_report_the_reorder_counters() -> None:
    reorder = ReorderCounters(window_ms=20, out_of_order=3, out_of_order_max_ns=7, held_peak=9)
    metrics = Metrics(EngineCounters(), dict, lambda: 0, reorder=reorder)
    snap = metrics.snapshot()
    assert snap["events_out_of_order"] == 3
    assert snap["reorder"] == {"window_ms": 20, "held_peak": 9, "out_of_order_max_ns": 7,
                               "forced_by_capacity": 0}
    scraped = {m.name: m for m in _Collector(metrics).collect()}
    assert scraped["rtengine_events_out_of_order"].samples[0].value == 3


# -- live -------------------------------------------------------------------------------

WORKLOAD = r"""
import os, sys
# Many short-lived processes from both CPUs: each worker is pinned to one CPU and runs
# `true` through fork+exec, so clones and execs of the two CPUs interleave closely.
rounds = int(sys.argv[1])
def worker(cpu):
    os.sched_setaffinity(0, {cpu})
    for i in range(rounds):
        pid = os.fork()
        if pid == 0:
            # Spelled so that this script's own command line does not contain it.
            os.execv("/bin/true", ["true", "rtorder-" + f"child-{cpu}-{i}"])
        os.waitpid(pid, 0)
kids = []
for cpu in sorted(os.sched_getaffinity(0))[:2]:
    pid = os.fork()
    if pid == 0:
        worker(cpu)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
"""

# The workload runs as `python3 -c WORKLOAD N rtorder-workload`; its forked children
# carry that command line until they exec `true rtorder-child-...`.
LIVE_RULES = """
- rule: order clone
  desc: >
    both returns of a fork by the workload (a child's own return may be processed
    before its parent's, when it ran first; its thread is then known by its comm only)
  condition: evt.type in (clone, clone3, fork, vfork) and proc.name = python3
  output: "clone ts=%evt.rawtime pid=%proc.pid res=%evt.rawres cpu=%evt.cpu"
  priority: NOTICE
- rule: order exec
  desc: the child's exec
  condition: evt.type = execve and evt.rawres = 0 and proc.cmdline contains rtorder-child
  output: "exec ts=%evt.rawtime pid=%proc.pid cpu=%evt.cpu exe=%proc.exe"
  priority: NOTICE
- rule: order after exec
  desc: the exec'd child opening its libraries, seen as itself
  condition: evt.type = openat and proc.cmdline contains rtorder-child
  output: >
    open ts=%evt.rawtime pid=%proc.pid cpu=%evt.cpu exe=%proc.exepath cmd=%proc.cmdline
  priority: NOTICE
"""
ROUNDS = 300


@pytest.mark.bpf
def test_live_core_processes_in_ts_order(repo_root: Path, tmp_path: Path) -> None:
    if shutil.which("make") is None or shutil.which("clang") is None:
        pytest.fail("needs make and clang to build the CO-RE probe")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("needs two CPUs: the point is events of both")
    out = tmp_path / "probe"
    subprocess.run(["make", "-C", str(repo_root / "driver"), "core", f"OUT={out}"],
                   check=True, capture_output=True, timeout=600)
    rules = tmp_path / "order.yaml"
    rules.write_text(LIVE_RULES)
    engine = subprocess.Popen(
        [sys.executable, "-m", "runtime.engine.cli", "run", "--driver", "core", "--probe",
         str(out / "rtcap_core.o"), "--rules", str(rules), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert engine.stderr is not None
        log = []
        for line in engine.stderr:
            log.append(line)
            if "rt-engine: running" in line:
                break
        else:
            pytest.fail("rt-engine ended before running: " + "".join(log))
        # Read alerts as they come: a full pipe would make the live queue drop them.
        lines: list[str] = []
        assert engine.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(engine.stdout or ()))
        reader.start()
        subprocess.run([sys.executable, "-c", WORKLOAD, str(ROUNDS), "rtorder-workload"],
                       check=True, timeout=300)
        time.sleep(0.5)  # past the reorder window and the probe's flush of quiet CPUs
    finally:
        engine.terminate()
        _, stderr = engine.communicate(timeout=60)
    reader.join(60)
    stdout = "".join(lines)
    assert engine.returncode == 0, stderr
    alerts = [json.loads(line) for line in stdout.splitlines()]
    by_rule: dict[str, list[tuple[int, dict[str, object]]]] = {}
    for i, alert in enumerate(alerts):
        by_rule.setdefault(alert["rule"], []).append((i, alert["output_fields"]))
    stamps = [int(a["output_fields"]["evt.rawtime"]) for a in alerts]
    cpus = {a["output_fields"]["evt.cpu"] for a in alerts}
    assert len(cpus) >= 2, f"events of one CPU only: {cpus}"
    inversions = [(a, b) for a, b in pairwise(stamps) if b < a]
    assert not inversions, f"{len(inversions)} of {len(stamps)} out of order: {inversions[:3]}"
    # Every exec'd child: its clone came first, and what it did after the exec carries
    # its own exe and command line (a clone applied after the exec would have given it
    # its parent's, and this rule, keyed on the child's command line, would not fire).
    clone_at = {f["proc.pid"]: i for i, f in by_rule.get("order clone", [])
                if int(str(f["evt.rawres"])) == 0}
    execs = by_rule.get("order exec", [])
    assert len(execs) >= ROUNDS, f"{len(execs)} execs seen of {2 * ROUNDS}\n{stderr}"
    paired = [(i, clone_at[f["proc.pid"]]) for i, f in execs if f["proc.pid"] in clone_at]
    # Nearly every exec has its clone (a busy host may drop a few events: counted in the
    # summary, and not an ordering question), and no clone comes after its exec.
    assert len(paired) >= 0.9 * len(execs), f"{len(paired)} of {len(execs)} paired\n{stderr}"
    late = [(i, at) for i, at in paired if at > i]
    assert not late, f"{len(late)} execs processed before their clone: {late[:5]}"
    opened = {f["proc.pid"] for _, f in by_rule.get("order after exec", [])}
    assert {f["proc.pid"] for _, f in execs} <= opened
    # proc.exepath is the file the kernel runs: /bin/true resolved (/usr/bin/true on a
    # merged-/usr system), as Falco shows it.
    true_path = os.path.realpath("/bin/true")
    wrong = [f for _, f in by_rule["order after exec"] if f["proc.exepath"] != true_path
             or not str(f["proc.cmdline"]).startswith("true rtorder-child-")]
    assert not wrong, wrong[:3]
    summary = [line for line in stderr.splitlines() if "out of ts order" in line]
    assert summary, stderr  # the count is reported (the host's other events count too)
