"""Alert delivery: text or Falco-shaped JSON lines to stdout, a file and an HTTP webhook.

The event loop must never wait on a slow sink (a webhook that takes a second per POST would
otherwise turn into dropped syscalls in the kernel ring). Alerts therefore go through a
bounded queue drained by one worker thread; when the queue is full the alert is dropped and
counted, and the count is reported in metrics and at exit, so loss is visible, never silent.
A replay has no kernel ring to overflow: there the queue is lossless (`block_when_full`),
so a slow reader slows the replay down instead of losing alerts.
"""

from __future__ import annotations

import functools
import json
import json.encoder
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, NamedTuple, Protocol, cast

SOURCE_SYSCALL = "syscall"

# Falco prints priorities capitalised, with "info" spelled out; Falcosidekick keys on these.
_DISPLAY_PRIORITY = {
    "emergency": "Emergency",
    "alert": "Alert",
    "critical": "Critical",
    "error": "Error",
    "warning": "Warning",
    "notice": "Notice",
    "informational": "Informational",
    "info": "Informational",
    "debug": "Debug",
}


def display_priority(name: str) -> str:
    return _DISPLAY_PRIORITY.get(name.lower(), name.capitalize())


def _utc_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


# "<seconds since the epoch, in decimal>" -> "YYYY-MM-DDTHH:MM:SS.", for rfc3339_ns: alerts
# come in bursts within the same second, so strftime runs once per second, not per alert
# (the one cache; rfc3339_ns's other path, times before 1970-01-01T00:00:01, is not hot).
_SECOND_TEXT: dict[str, str] = {}


def _second_text(seconds: str) -> str:
    if len(_SECOND_TEXT) >= 256:
        _SECOND_TEXT.clear()
    text = _SECOND_TEXT[seconds] = _utc_second(int(seconds)) + "."
    return text


def rfc3339_ns(ts_ns: int) -> str:
    """UTC RFC 3339 with all nine fraction digits, as Falco writes `time`."""
    if ts_ns.__class__ is int and ts_ns >= 1_000_000_000:
        # The decimal digits of the count are the seconds' then the nine of the fraction,
        # zero-padded already: one int-to-text conversion and a dict lookup instead of a
        # divmod, an lru_cache call and a `:09d` format (~5.5k instructions -> ~4.5k).
        digits = str(ts_ns)
        second = _SECOND_TEXT.get(digits[:-9])
        if second is None:
            second = _second_text(digits[:-9])
        return f"{second}{digits[-9:]}Z"
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return f"{_utc_second(seconds)}.{nanos:09d}Z"


# json.dumps with keyword arguments builds a new encoder on every call; reuse one.
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)
# What _JSON.encode does for a str, minus the Python-level call around it.
_encode_str = json.encoder.encode_basestring_ascii


def _fields_encoder() -> Callable[[dict[str, object]], str]:
    """What `_JSON.encode` does for a dict, without its per-call set-up: JSONEncoder
    builds a new C encoder (and a dict to detect cycles) on every call, ~1.5 µs of the
    ~4 µs a 14-field output_fields took. This one is built once, with _JSON's settings;
    output_fields hold field values (text, numbers, lists of those), which cannot form
    a cycle, so it skips the cycle check. Falls back to _JSON.encode where the C
    encoder is unavailable."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _JSON.encode
    encode = make(None, _JSON.default, _encode_str, None, ":", ",", False, False, True)

    def encode_fields(fields: dict[str, object]) -> str:
        return "".join(encode(fields, 0))

    return encode_fields


_encode_fields = _fields_encoder()

# Bytes that JSON's ASCII escaping rewrites (control characters, `"`, `\\`, DEL and above
# map to 0; the rest to 1): a text whose UTF-8 bytes translate to no 0 escapes to itself.
_UNESCAPED = bytes(int(32 <= b < 127 and b not in b'"\\') for b in range(256))


def _escaped_body(text: str) -> str:
    """`_encode_str(text)` without its opening quote. Most outputs need no escaping:
    that is tested with one C-level table pass over the bytes (~3k instructions for a
    200-character line, against ~8k for the escaping itself plus the slice)."""
    if text.isascii() and 0 not in text.encode().translate(_UNESCAPED):
        return text + '"'
    return _encode_str(text)[1:]


# output_fields' JSON per tuple of keys: "{" + '"key":%s,' ... + "}" (a `%` in a key
# doubled), None where a key is not text. Each template's fields come in the same order
# every time, so this holds one entry per template (bounded all the same).
_FIELDS_FORMATS: dict[tuple[object, ...], str | None] = {}
_FIELDS_FORMATS_MAX = 4096


def _fields_format(keys: tuple[object, ...]) -> str | None:
    if not all(key.__class__ is str for key in keys):
        return None  # the C encoder's conversions of other keys: see _encode_fields_fast
    if len(_FIELDS_FORMATS) >= _FIELDS_FORMATS_MAX:
        _FIELDS_FORMATS.clear()
    fmt = _FIELDS_FORMATS[keys] = "{" + ",".join(
        _encode_str(key).replace("%", "%%") + ":%s" for key in keys  # type: ignore[arg-type]
    ) + "}"
    return fmt


def _encode_fields_fast(fields: dict[str, object]) -> str:
    """`_encode_fields(fields)`, byte for byte, with each key's escaping done once per
    template instead of once per alert (~30k instructions for 13 fields against ~24k
    this way). Values as the C encoder writes them: text escaped, None as null, an int
    (not a bool, whose class is bool) as its decimal digits, which `%s` writes; any other
    value through the C encoder itself."""
    keys = tuple(fields)
    fmt = _FIELDS_FORMATS.get(keys, "")
    if fmt == "":
        fmt = _fields_format(keys)
    if fmt is None:
        return _encode_fields(fields)
    return fmt % tuple([
        _encode_str(v) if v.__class__ is str else "null" if v is None
        else v if v.__class__ is int else _encode_fields(v)  # type: ignore[arg-type]
        for v in fields.values()
    ])


@functools.lru_cache(maxsize=4096)
def _json_parts(hostname: str, priority: str, rule: str, source: str, tags: tuple[str, ...]
                ) -> tuple[str, str, str]:
    """What depends only on the rule (and host), encoded once, in one cached call rather
    than one per part: the line's head up to the time in `output`, what follows that
    time up to the rule's text (already escaped), and everything between output_fields
    and the time's value."""
    head = '{"hostname":' + _encode_str(hostname) + ',"output":"'
    after_time = ": " + _encode_str(priority)[1:-1] + " "
    rule_part = (
        ',"priority":' + _encode_str(priority)
        + ',"rule":' + _encode_str(rule)
        + ',"source":' + _encode_str(source)
        + ',"tags":' + _JSON.encode(sorted(tags))
        + ',"time":"'
    )  # fmt: skip
    return head, after_time, rule_part


_HOSTNAME = socket.gethostname()
# Shared by every alert created without fields: read-only, so no alert can alter another's.
_NO_FIELDS: Mapping[str, object] = MappingProxyType({})


class Alert(NamedTuple):
    """One alert, immutable once built.

    A NamedTuple rather than a frozen dataclass: the engine builds one per match, and a
    frozen dataclass's __init__ sets each field through object.__setattr__ (~1.2 µs per
    alert against ~0.45 µs here), while the fields stay read-only either way. Nothing
    compares or hashes alerts (a tuple would equal a plain tuple of the same values);
    output_fields is a dict, so, as before, an alert is not hashable.
    """

    time_ns: int
    rule: str
    priority: str  # display name, e.g. "Critical"
    output: str  # the rule's formatted output, without time/priority prefix
    output_fields: Mapping[str, object] = _NO_FIELDS
    tags: tuple[str, ...] = ()
    source: str = SOURCE_SYSCALL
    hostname: str = _HOSTNAME

    def text_line(self) -> str:
        return f"{rfc3339_ns(self.time_ns)}: {self.priority} {self.output}"

    def as_json(self) -> dict[str, object]:
        # Falco's `output` carries the time and priority prefix; consumers that show only
        # `output` (Falcosidekick's UI, Slack) rely on it.
        return {
            "hostname": self.hostname,
            "output": self.text_line(),
            "output_fields": dict(self.output_fields),
            "priority": self.priority,
            "rule": self.rule,
            "source": self.source,
            "tags": sorted(self.tags),
            "time": rfc3339_ns(self.time_ns),
        }

    def json_line(self) -> str:
        """`as_json()` serialised compactly; built from cached per-rule fragments because
        this runs once per alert on the output thread."""
        # One unpack instead of eight attribute loads; it fails loudly if a field is added.
        time_ns, rule, priority, output, fields, tags, source, hostname = self
        when = rfc3339_ns(time_ns)
        if type(fields) is not dict:
            fields = dict(fields)
        head, after_time, rule_part = _json_parts(hostname, priority, rule, source, tags)
        # JSON escaping works character by character, so `output` ("<time>: <priority>
        # <text>") is escaped in parts; the RFC 3339 time never needs escaping. One
        # f-string builds the line in a single allocation instead of one per `+`.
        return (
            f"{head}{when}{after_time}"
            f'{_escaped_body(output)},"output_fields":{_encode_fields_fast(fields)}'
            f'{rule_part}{when}"}}'
        )


# What Alert(...) builds, without NamedTuple's generated __new__, a Python frame (~1.5k of
# the ~3.5k instructions a call costs): the engine builds one alert per match through
# this, with all eight fields given in order, the last ALERT_HOSTNAME (Alert's default).
new_alert = cast(
    Callable[[tuple[int, str, str, str, Mapping[str, object], tuple[str, ...], str, str]],
             Alert],
    functools.partial(tuple.__new__, Alert),
)
ALERT_HOSTNAME = _HOSTNAME


class Sink(Protocol):
    name: str

    def emit(self, alert: Alert) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class StreamSink:
    """stdout (or any text stream): one line per alert, flushed so pipes see it at once."""

    def __init__(self, stream: IO[str], *, json_output: bool, name: str = "stdout") -> None:
        self.name = name
        self._stream = stream
        self._json = json_output

    def emit(self, alert: Alert) -> None:
        self._stream.write((alert.json_line() if self._json else alert.text_line()) + "\n")

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


class FileSink(StreamSink):
    """Appends lines; the file is opened once and kept open, like Falco's keep_alive."""

    def __init__(self, path: Path, *, json_output: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(
            path.open("a", encoding="utf-8"), json_output=json_output, name=f"file:{path}"
        )

    def close(self) -> None:
        # Unlike stdout, the file is ours to close.
        self._stream.close()


class WebhookSink:
    """POSTs each alert as Falco's JSON body; Falcosidekick accepts it on `/`."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.name = f"webhook:{url}"
        self._url = url
        self._timeout = timeout
        # Imported here: requests costs ~0.15 s at every rt-engine start, and most runs
        # have no webhook.
        import requests

        self._session = requests.Session()
        self._session.headers["User-Agent"] = "rt-engine"

    def emit(self, alert: Alert) -> None:
        response = self._session.post(
            self._url,
            data=alert.json_line().encode(),
            headers={"Content-Type": "application/json"},
            timeout=self._timeout,
        )
        response.raise_for_status()

    def flush(self) -> None:
        """Each POST is already delivered."""

    def close(self) -> None:
        self._session.close()


@dataclass
class OutputCounters:
    submitted: int = 0
    delivered: int = 0
    dropped_queue_full: int = 0  # the queue was full: the alert never reached any sink
    sink_errors: dict[str, int] = field(default_factory=dict)


FLUSH_EVERY = 256


class OutputQueue:
    """Bounded queue + one worker thread in front of every sink.

    `submit` is called from one thread: the engine's run loop, where the drop monitor's
    checks run too. The worker drains everything queued per wake-up, and is woken only
    when it has gone idle, not per alert: `queue.Queue` takes a lock and notifies a
    condition on every put and get, and on one CPU each notification invites a GIL
    hand-off to the worker: with it the output stage cost ~8 µs per alert in
    bench/bench_replay.py (pinned to one CPU), against ~2.5 µs this way.
    """

    def __init__(self, sinks: Sequence[Sink], *, maxsize: int = 10000,
                 block_when_full: bool = False) -> None:
        """`block_when_full`: `submit` waits for room instead of dropping (replay), and
        `close` waits for every queued alert."""
        if maxsize < 1:
            raise ValueError(f"output queue maxsize must be at least 1, got {maxsize}")
        self._sinks = list(sinks)
        self._maxsize = maxsize
        self.block_when_full = block_when_full
        # Set by the worker after it took alerts off a full queue while submit waits.
        self._room = threading.Event()
        self._submit_waiting = False
        # deque.append and popleft are atomic: the engine appends, only the worker pops.
        self._pending: deque[Alert] = deque()
        self._wake = threading.Event()
        self._worker_idle = False
        self._closing = False
        self.counters = OutputCounters()
        self._lock = threading.Lock()
        self._reported_errors: set[str] = set()
        self._worker = threading.Thread(target=self._run, name="rt-engine-outputs", daemon=True)
        self._worker.start()

    def submit(self, alert: Alert) -> bool:
        """Never blocks unless `block_when_full`; otherwise returns False (and counts the
        drop) when the queue is full."""
        counters = self.counters
        counters.submitted += 1
        pending = self._pending
        if len(pending) >= self._maxsize:
            if not self.block_when_full:
                counters.dropped_queue_full += 1
                return False
            self._wait_for_room()
        # Append first, then look at the idle flag (the worker sets it in the opposite
        # order; see _run). Clearing the flag here makes the rest of the burst skip
        # Event.set, which takes a lock.
        pending.append(alert)
        if self._worker_idle:
            self._worker_idle = False
            self._wake.set()
        return True

    def _wait_for_room(self) -> None:
        """Block until the worker has taken alerts off the full queue. The worker sets
        `_room` after each alert it takes while `_submit_waiting`; the timeout covers a
        set() that raced the clear() below, and a worker that has died (its sinks' errors
        are counted, so it only ends on close) no longer holds the engine up."""
        pending, room = self._pending, self._room
        self._submit_waiting = True
        try:
            while len(pending) >= self._maxsize and self._worker.is_alive():
                room.clear()
                if len(pending) < self._maxsize:
                    break
                if self._worker_idle:
                    self._worker_idle = False
                    self._wake.set()
                room.wait(0.05)
        finally:
            self._submit_waiting = False

    def _run(self) -> None:
        pending, wake = self._pending, self._wake
        while True:
            # close() sets _closing after its thread's last submit, so once it is seen
            # here, the drain below sees every alert close() must deliver.
            closing = self._closing
            self._deliver(pending)
            if closing:
                return
            # Going to sleep without losing a wake-up. The worker clears the event, then
            # publishes `idle`, then looks at the queue once more; submit appends, then
            # reads `idle`. Whichever order the two interleave in (the GIL makes each
            # step atomic and orders them all), either this re-check sees the alert, or
            # submit sees `idle` and sets the event after it was cleared, so wait()
            # returns. A set() left over from an earlier round only causes one extra
            # empty pass. close() sets the event unconditionally, after _closing.
            wake.clear()
            self._worker_idle = True
            if not pending and not self._closing:
                wake.wait()
            self._worker_idle = False

    def _deliver(self, pending: deque[Alert]) -> None:
        # Sinks are flushed when the queue runs dry (or every FLUSH_EVERY alerts under a
        # sustained burst), not per alert: one write per burst instead of one per line.
        # An alert counts as delivered once it has been flushed.
        sinks = self._sinks
        popleft = pending.popleft
        unflushed = 0
        while pending:
            alert = popleft()
            if self._submit_waiting:
                self._room.set()
            for sink in sinks:
                try:
                    sink.emit(alert)
                except Exception as exc:  # one broken sink must not stop the others
                    self._sink_failed(sink, exc)
            unflushed += 1
            if unflushed >= FLUSH_EVERY:
                self._flush(unflushed)
                unflushed = 0
        if unflushed:
            self._flush(unflushed)

    def _flush(self, alerts: int) -> None:
        for sink in self._sinks:
            try:
                sink.flush()
            except Exception as exc:
                self._sink_failed(sink, exc)
        with self._lock:
            self.counters.delivered += alerts

    def _sink_failed(self, sink: Sink, exc: Exception) -> None:
        with self._lock:
            errors = self.counters.sink_errors
            errors[sink.name] = errors.get(sink.name, 0) + 1
        # Log the first failure of each sink only: a dead webhook would flood stderr.
        if sink.name not in self._reported_errors:
            self._reported_errors.add(sink.name)
            print(f"rt-engine: output {sink.name} failed: {exc}", file=sys.stderr, flush=True)

    def close(self, timeout: float | None = 10.0) -> None:
        """Deliver what is queued (up to `timeout`; with `block_when_full`, all of it),
        then close every sink. Alerts submitted after close() are not delivered."""
        self._closing = True
        self._wake.set()
        if self.block_when_full or timeout is None:
            self._worker.join()
        else:
            self._worker.join(max(0.0, timeout))
        for sink in self._sinks:
            try:
                sink.close()
            except Exception as exc:
                self._sink_failed(sink, exc)


def build_sinks(
    *,
    stdout: bool,
    json_output: bool,
    file: Path | None,
    webhook_url: str | None,
    webhook_timeout: float = 5.0,
) -> list[Sink]:
    sinks: list[Sink] = []
    if stdout:
        # Only the output worker writes to stdout; logs and summaries go to stderr, so
        # `--json` output stays one alert per line for whatever reads it.
        sinks.append(StreamSink(sys.stdout, json_output=json_output))
    if file is not None:
        sinks.append(FileSink(file, json_output=json_output))
    if webhook_url is not None:
        sinks.append(WebhookSink(webhook_url, timeout=webhook_timeout))
    return sinks
