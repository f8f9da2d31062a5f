"""Alert outputs: Falco's JSON shape, file and webhook sinks, and counted queue drops."""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runtime.engine.outputs import (
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
