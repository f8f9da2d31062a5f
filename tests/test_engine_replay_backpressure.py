"""A replay loses no alert to a slow reader: it slows down instead (issue #11, item 6).

Live mode keeps its bounded, counted output queue (a kernel ring must not back up behind
a slow sink; tests/test_engine_outputs.py covers that); a replay has nothing to protect,
so its queue waits for room instead of dropping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from runtime.engine.capture import CaptureHeader, CaptureWriter, encode_record
from runtime.engine.outputs import Alert, OutputQueue
from runtime.engine.sources import schema_identity

BOOT_OFFSET = 1_750_000_000_000_000_000
ALERTS = 4000


class SlowSink:
    """Takes a while per alert and records how many it saw."""

    name = "slow"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.seen: list[int] = []

    def emit(self, alert: Alert) -> None:
        time.sleep(self.delay_s)
        self.seen.append(alert.time_ns)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def alert(i: int) -> Alert:
    return Alert(i, "rule", "Warning", f"alert {i}")


def test_lossless_queue_waits_for_room_and_delivers_every_alert_in_order() -> None:
    sink = SlowSink(0.0005)
    queue = OutputQueue([sink], maxsize=5, block_when_full=True)
    assert all(queue.submit(alert(i)) for i in range(300))
    queue.close()
    assert sink.seen == list(range(300))
    assert queue.counters.dropped_queue_full == 0
    assert queue.counters.delivered == 300


def test_the_live_queue_still_drops_and_counts_behind_the_same_sink() -> None:
    sink = SlowSink(0.0005)
    queue = OutputQueue([sink], maxsize=5)
    accepted = sum(queue.submit(alert(i)) for i in range(300))
    queue.close()
    assert queue.counters.dropped_queue_full == 300 - accepted > 0
    assert len(sink.seen) == accepted


def test_close_waits_for_a_slow_sink_in_lossless_mode() -> None:
    sink = SlowSink(0.002)
    queue = OutputQueue([sink], maxsize=100, block_when_full=True)
    for i in range(100):
        queue.submit(alert(i))
    queue.close(timeout=0.01)  # would abandon most of them in live mode
    assert len(sink.seen) == 100


def test_submit_returns_when_the_worker_is_gone() -> None:
    # A worker that ended (close() from another path) must not leave submit blocked.
    queue = OutputQueue([SlowSink(0)], maxsize=1, block_when_full=True)
    queue.close()
    done = threading.Event()

    def fill() -> None:
        for i in range(3):
            queue.submit(alert(i))
        done.set()

    threading.Thread(target=fill, daemon=True).start()
    assert done.wait(30)


def many_alerts_capture(path: Path) -> Path:
    api, schema_hash = schema_identity()
    writer = CaptureWriter(path, CaptureHeader(api, schema_hash, BOOT_OFFSET, {"test": 1}))
    frame: list[bytes] = []
    for i in range(ALERTS):
        frame.append(encode_record(
            "openat", ts_boot_ns=1_000_000 + i * 1000, ret=3, pid=500 + i % 7, ppid=1,
            uid=0, gid=0, comm="cat", cpu=i & 1,
            params={"dirfd": -100, "name": f"/etc/shadow-{i}", "flags": 0, "mode": 0}))
        if len(frame) == 500:
            writer.write_events(b"".join(frame))
            frame.clear()
    writer.write_events(b"".join(frame))
    writer.close()
    return path


RULE = """
- rule: shadow family
  desc: test
  condition: evt.type = openat and fd.name startswith /etc/shadow-
  output: "opened %fd.name"
  priority: WARNING
"""

# Reads the engine's stdout in small pieces with a pause between them, far slower than
# the engine writes, then reports how many lines and which file names it saw.
SLOW_READER = r"""
import json, sys, time
seen, buf = [], b""
while True:
    chunk = sys.stdin.buffer.read1(2048)
    if not chunk:
        break
    buf += chunk
    *lines, buf = buf.split(b"\n")
    seen += [json.loads(line)["output_fields"]["fd.name"] for line in lines]
    time.sleep(0.002)
print(json.dumps(seen))
"""


def test_replay_into_a_slow_pipe_delivers_every_alert(tmp_path: Path) -> None:
    capture = many_alerts_capture(tmp_path / "many.rtcap")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    config = tmp_path / "engine.yaml"
    config.write_text("outputs:\n  queue_size: 20\n")  # full almost at once
    engine = subprocess.Popen(
        [sys.executable, "-m", "runtime.engine.cli", "run", "--replay", str(capture),
         "--rules", str(rules), "--config", str(config), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    reader = subprocess.Popen([sys.executable, "-c", SLOW_READER], stdin=engine.stdout,
                              stdout=subprocess.PIPE, text=True)
    assert engine.stdout is not None
    engine.stdout.close()  # the reader's end now; the engine sees EPIPE if it goes
    out, _ = reader.communicate(timeout=300)
    _, err = engine.communicate(timeout=60)
    assert engine.returncode == 0, err
    seen = json.loads(out)
    assert seen == [f"/etc/shadow-{i}" for i in range(ALERTS)]
    assert b"output queue drops: 0," in err, err
