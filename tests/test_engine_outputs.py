"""Alert outputs: Falco's JSON shape, file and webhook sinks, and counted queue drops."""

from __future__ import annotations

import io
import json
import json.encoder
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.engine.outputs import (
    FLUSH_EVERY,
    Alert,
    FileSink,
    OutputQueue,
    StreamSink,
    WebhookSink,
    display_priority,
    rfc3339_ns,
)

RFC3339_NS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def _alert(n: int = 0) -> Alert:
    return Alert(
        time_ns=1_700_000_000_123_456_789 + n,
        rule="Sensitive file opened by untrusted program",
        priority="Warning",
        output=f"Sensitive file opened (file=/etc/shadow proc.name=cat n={n})",
        output_fields={"fd.name": "/etc/shadow", "proc.name": "cat", "proc.pid": 42 + n},
        tags=("filesystem", "credentials"),
    )


def test_rfc3339_keeps_nanoseconds() -> None:
    assert rfc3339_ns(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert rfc3339_ns(5) == "1970-01-01T00:00:00.000000005Z"


def test_priority_display_names_follow_falco() -> None:
    assert display_priority("info") == "Informational"
    assert display_priority("WARNING") == "Warning"


def test_json_line_has_falco_shape() -> None:
    doc = json.loads(_alert().json_line())
    assert set(doc) == {
        "hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time"
    }
    assert RFC3339_NS.match(doc["time"])
    assert doc["source"] == "syscall"
    assert doc["priority"] == "Warning"
    assert doc["output"].startswith(doc["time"] + ": Warning Sensitive file opened")
    assert doc["output_fields"] == {"fd.name": "/etc/shadow", "proc.name": "cat", "proc.pid": 42}
    assert doc["tags"] == ["credentials", "filesystem"]
    assert doc["hostname"]


def test_stream_sink_text_and_json() -> None:
    text, js = io.StringIO(), io.StringIO()
    StreamSink(text, json_output=False).emit(_alert())
    StreamSink(js, json_output=True).emit(_alert())
    assert text.getvalue() == _alert().text_line() + "\n"
    assert json.loads(js.getvalue())["rule"] == _alert().rule


def test_file_sink_appends_lines(tmp_path: Path) -> None:
    path = tmp_path / "out" / "alerts.jsonl"
    queue = OutputQueue([FileSink(path, json_output=True)], maxsize=100)
    for n in range(5):
        assert queue.submit(_alert(n))
    queue.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["output_fields"]["proc.pid"] for line in lines] == [42, 43, 44, 45, 46]
    assert queue.counters.delivered == 5
    assert queue.counters.dropped_queue_full == 0


class _Collector:
    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        self.content_types: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self.status = 200


@pytest.fixture
def webhook() -> Iterator[tuple[str, _Collector]]:
    collector = _Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            collector.release.wait(30)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            collector.bodies.append(json.loads(body))
            collector.content_types.append(self.headers["Content-Type"])
            self.send_response(collector.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", collector
    finally:
        collector.release.set()
        server.shutdown()
        server.server_close()


def test_webhook_posts_falco_json(webhook: tuple[str, _Collector]) -> None:
    url, collector = webhook
    queue = OutputQueue([WebhookSink(url, timeout=5)], maxsize=10)
    queue.submit(_alert(1))
    queue.submit(_alert(2))
    queue.close()
    assert collector.content_types == ["application/json", "application/json"]
    assert [b["output_fields"]["proc.pid"] for b in collector.bodies] == [43, 44]  # type: ignore[index]
    assert collector.bodies[0]["rule"] == _alert().rule
    assert queue.counters.sink_errors == {}


def test_webhook_error_is_counted_not_fatal(webhook: tuple[str, _Collector]) -> None:
    url, collector = webhook
    collector.status = 500
    out = io.StringIO()
    queue = OutputQueue([WebhookSink(url, timeout=5), StreamSink(out, json_output=True)])
    queue.submit(_alert())
    queue.close()
    assert queue.counters.sink_errors == {f"webhook:{url}": 1}
    assert len(out.getvalue().splitlines()) == 1  # the other sink still got it


def test_full_queue_counts_drops(webhook: tuple[str, _Collector]) -> None:
    url, collector = webhook
    collector.release.clear()  # the webhook hangs: the worker blocks on the first POST
    queue = OutputQueue([WebhookSink(url, timeout=30)], maxsize=3)
    accepted = [queue.submit(_alert(n)) for n in range(20)]
    # One alert is in the worker's hands (or still queued), three fit in the queue.
    assert accepted.count(True) in (3, 4)
    assert queue.counters.dropped_queue_full == accepted.count(False)
    assert queue.counters.submitted == 20
    collector.release.set()
    queue.close()
    assert len(collector.bodies) == accepted.count(True)
    assert queue.counters.delivered == accepted.count(True)


def test_json_line_equals_plain_serialisation_of_as_json() -> None:
    """json_line is assembled from cached fragments; it must stay byte-identical to
    serialising as_json() directly, whatever the field values."""
    from pathlib import PurePosixPath

    from runtime.engine.outputs import Alert

    alerts = [
        Alert(1_700_000_000_123_456_789, "R \"quoted\"", "Critical", "x=1 é \u2603",
              {"proc.name": "cat", "fd.num": 3, "none": None, "path": PurePosixPath("/etc")},
              ("z", "a", "m")),
        Alert(5, "r2", "Notice", "", {}, ()),
        Alert(1_700_000_000_999_999_999, "r2", "Notice", "tab\there", {"l": [1, "b"]}, ("t",),
              hostname="h\u00f6st"),
    ]
    for alert in alerts:
        plain = json.dumps(alert.as_json(), separators=(",", ":"), default=str)
        assert alert.json_line() == plain


class _GatedSink:
    """A real in-memory sink whose emit or flush can be held, to put the worker thread at
    a chosen point (busy in a sink, or flushing) while the test submits."""

    name = "gated"

    def __init__(self, *, hold_emit: bool = False, hold_flush: bool = False) -> None:
        self.emitted: list[Alert] = []
        self.flushed_at: list[int] = []  # len(emitted) at each flush
        self.closed = False
        self.entered = threading.Event()  # the worker reached the held call
        self.release = threading.Event()
        self._hold_emit = hold_emit
        self._hold_flush = hold_flush

    def _hold(self) -> None:
        self.entered.set()
        assert self.release.wait(30), "test never released the sink"

    def emit(self, alert: Alert) -> None:
        self.emitted.append(alert)
        if self._hold_emit and len(self.emitted) == 1:
            self._hold()

    def flush(self) -> None:
        self.flushed_at.append(len(self.emitted))
        if self._hold_flush and len(self.flushed_at) == 1:
            self._hold()

    def close(self) -> None:
        self.closed = True


def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_burst_beyond_maxsize_drops_exactly_the_excess() -> None:
    sink = _GatedSink(hold_emit=True)
    queue = OutputQueue([sink], maxsize=50)
    assert queue.submit(_alert(0))
    assert sink.entered.wait(10)  # alert 0 is in the worker's hands, the queue is empty
    accepted = [queue.submit(_alert(n)) for n in range(1, 81)]
    assert accepted == [True] * 50 + [False] * 30
    assert queue.counters.submitted == 81
    assert queue.counters.dropped_queue_full == 30
    sink.release.set()
    queue.close()
    assert [a.time_ns - _alert(0).time_ns for a in sink.emitted] == list(range(51))
    assert queue.counters.delivered == 51
    assert sink.closed


def test_alert_submitted_while_worker_flushes_is_delivered_without_another_submit() -> None:
    """The worker is mid-flush (not idle) when the alert arrives, so submit does not wake
    it; it must find the alert itself before sleeping. A lost wake-up leaves the alert
    queued until the next submit or close(), which this test never makes in time."""
    sink = _GatedSink(hold_flush=True)
    queue = OutputQueue([sink], maxsize=10)
    queue.submit(_alert(0))
    assert sink.entered.wait(10)
    queue.submit(_alert(1))
    sink.release.set()
    delivered = _wait_until(lambda: queue.counters.delivered == 2)
    queue.close()
    assert delivered, f"alert 1 stuck in the queue: {queue.counters}"
    assert [a.output_fields["proc.pid"] for a in sink.emitted] == [42, 43]


class _SlowFlushSink(_GatedSink):
    def flush(self) -> None:
        super().flush()
        # Like a file or pipe flush, the write releases the GIL for a while: the engine
        # runs, and submits, while the worker is between its last look at the queue and
        # going idle.
        time.sleep(0.0002)


def test_no_wakeup_lost_when_submits_race_the_worker_going_idle() -> None:
    """Pairs of alerts, the second submitted after a delay that grows each round, so it
    lands in every phase of the worker's cycle: still asleep, emitting, flushing (the
    window where submit does not wake it), idle. A lost wake-up leaves the second
    alert undelivered, as nothing else is submitted until it is."""
    sink = _SlowFlushSink()
    queue = OutputQueue([sink], maxsize=10)
    counters = queue.counters
    previous = sys.getswitchinterval()
    # The delay loop below must hand the GIL to the worker as soon as it is woken, as a
    # loop doing real work does at the default interval over a longer time.
    sys.setswitchinterval(1e-6)
    try:
        for n in range(0, 1000, 2):
            queue.submit(_alert(n))
            start = time.perf_counter()
            while time.perf_counter() - start < (n % 100) * 5e-6:
                pass  # a precise, sub-millisecond delay: sleep() would oversleep
            queue.submit(_alert(n + 1))
            delivered = _wait_until(lambda: counters.delivered == n + 2, timeout=5)  # noqa: B023
            assert delivered, f"alert {n + 1} never delivered: {counters}"
    finally:
        sys.setswitchinterval(previous)
    queue.close()
    first = _alert(0).time_ns
    assert [a.time_ns - first for a in sink.emitted] == list(range(1000))
    assert counters.dropped_queue_full == 0


def test_close_delivers_an_alert_submitted_while_the_worker_flushes() -> None:
    """close() lands while the worker is flushing the previous burst, with one more alert
    queued behind it: the worker must deliver that alert before it exits."""
    sink = _GatedSink(hold_flush=True)
    queue = OutputQueue([sink], maxsize=10)
    queue.submit(_alert(0))
    assert sink.entered.wait(10)
    queue.submit(_alert(1))
    closer = threading.Thread(target=queue.close)
    closer.start()
    # Release the flush only once close() has told the worker to stop.
    assert _wait_until(lambda: queue._closing)
    sink.release.set()
    closer.join(30)
    assert not closer.is_alive()
    assert [a.output_fields["proc.pid"] for a in sink.emitted] == [42, 43]
    assert queue.counters.delivered == 2
    assert sink.closed


def test_sustained_burst_is_flushed_every_flush_every_alerts() -> None:
    sink = _GatedSink(hold_emit=True)
    queue = OutputQueue([sink], maxsize=1000)
    queue.submit(_alert(0))
    assert sink.entered.wait(10)
    for n in range(1, 601):
        queue.submit(_alert(n))
    sink.release.set()
    queue.close()
    # One drain: alert 0 and the 600 queued behind it, flushed at each FLUSH_EVERY.
    assert sink.flushed_at == [FLUSH_EVERY, 2 * FLUSH_EVERY, 601]
    assert queue.counters.delivered == 601


def test_close_gives_up_on_a_stuck_sink_after_the_timeout() -> None:
    sink = _GatedSink(hold_emit=True)
    queue = OutputQueue([sink], maxsize=5)
    for n in range(5):
        queue.submit(_alert(n))
    assert sink.entered.wait(10)
    start = time.monotonic()
    queue.close(timeout=0.3)
    took = time.monotonic() - start
    sink.release.set()
    assert 0.25 <= took < 5, took
    assert sink.closed
    assert queue.counters.delivered == 0  # nothing was flushed before the deadline


def test_queue_must_hold_at_least_one_alert() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        OutputQueue([], maxsize=0)


def test_alert_is_immutable_and_default_fields_are_not_shared_state() -> None:
    alert = Alert(5, "r", "Notice", "out")
    with pytest.raises(AttributeError):
        alert.rule = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        alert.output_fields["x"] = 1  # type: ignore[index]
    assert alert.json_line() == json.dumps(alert.as_json(), separators=(",", ":"), default=str)
    assert json.loads(alert.json_line())["output_fields"] == {}


_JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    | st.builds(PurePosixPath, st.text(min_size=1))
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    rule=st.text(),
    priority=st.text(),
    output=st.text(),
    fields=st.dictionaries(
        st.text(), _JSON_SCALARS | st.lists(_JSON_SCALARS, max_size=3), max_size=6
    ),
    tags=st.lists(st.text(), max_size=4).map(tuple),
    hostname=st.text(),
    time_ns=st.integers(min_value=0, max_value=2**62),
)
def test_json_line_is_byte_identical_to_dumps_of_as_json(
    *,
    rule: str, priority: str, output: str, fields: dict[str, object],
    tags: tuple[str, ...], hostname: str, time_ns: int,
) -> None:
    alert = Alert(time_ns, rule, priority, output, fields, tags, hostname=hostname)
    assert alert.json_line() == json.dumps(alert.as_json(), separators=(",", ":"), default=str)


def test_json_line_fast_paths_match_dumps_at_their_edges() -> None:
    """json_line skips escaping an output that needs none, and formats output_fields
    with each key set's encoding cached: both must match json.dumps where the fast paths
    end (each character JSON escapes, `%` in keys, the same keys with other value types,
    values only the C encoder writes)."""
    texts = ["plain", 'q"uote', "back\\slash", "del\x7f", "nl\n", "nul\x00", "é", "~ !", ""]
    keys = ["a%s", "%", "b", "fd.name"]
    values: list[object] = ["x", None, 0, -7, 10**30, True, False, 1.5, float("nan"),
                            [1, "a\""], {"k": None}, PurePosixPath("/etc")]
    for n, text in enumerate(texts * 3):
        fields = {k: values[(n + i) % len(values)] for i, k in enumerate(keys)}
        alert = Alert(1_700_000_000_000_000_001 + n, "r", "Warning", text, fields, ("t",))
        assert alert.json_line() == json.dumps(alert.as_json(), separators=(",", ":"),
                                               default=str)
    odd_keys = Alert(5, "r", "Notice", "o", {1: "int key", None: 2}, ())  # type: ignore[dict-item]
    assert odd_keys.json_line() == json.dumps(odd_keys.as_json(), separators=(",", ":"),
                                              default=str)


def test_new_alert_is_an_alert_with_the_default_hostname() -> None:
    from runtime.engine.outputs import ALERT_HOSTNAME, new_alert

    built = new_alert((7, "r", "Notice", "o", {"a": 1}, ("t",), "syscall", ALERT_HOSTNAME))
    assert type(built) is Alert
    assert built == Alert(7, "r", "Notice", "o", {"a": 1}, ("t",))
    assert built.json_line() == Alert(7, "r", "Notice", "o", {"a": 1}, ("t",)).json_line()


@pytest.mark.parametrize("template", [
    "%evt.type", "x %evt.type", "%evt.type x", " x %evt.type y ", "x %evt.cpu", "%evt.cpu",
    "{braces} %evt.type {x}", "tail\n",
])
@pytest.mark.parametrize("value", ["  padded  ", "", "text", None, 3, True])
def test_output_line_is_the_joined_parts_stripped(template: str, value: object) -> None:
    """The generated formatter builds the line as one f-string and strips only a side a
    field value (or blank template text) ends on: the same line as joining the rendered
    parts and stripping both sides."""
    from types import SimpleNamespace

    from runtime.engine.fields import render_value
    from runtime.engine.rules.output import compile_output

    fmt = compile_output(template)
    ev = SimpleNamespace(type=value, cpu=value)
    line, fields = fmt(ev, None)  # type: ignore[arg-type]
    rendered = render_value(value)
    expected = template.replace("%evt.type", rendered).replace("%evt.cpu", rendered).strip()
    assert line == expected
    assert all(v is value for v in fields.values())
