"""Regressions for issue #12 (runtime side): each reproducer the issue lists, through the
real `rt-engine` CLI, must end in one `rt-engine: error:` line naming the input and the fix
and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest

from runtime.engine.capture import (
    MAX_METADATA,
    CaptureHeader,
    CaptureWriter,
    ProcSnapshot,
)
from runtime.engine.sources import schema_identity
from tests.fuzz_helpers import Outcome, python_module, run_bounded
from tests.test_engine_replay import BOOT_OFFSET, WORLD, write_capture


def rt_engine(*args: str | Path) -> Outcome:
    return run_bounded(python_module("runtime.engine.cli", *map(str, args)))


def error_line(outcome: Outcome) -> str:
    assert outcome.returncode > 0, outcome.describe()
    assert "Traceback" not in outcome.stderr, outcome.describe()
    errors = [ln for ln in outcome.stderr.splitlines() if ln.startswith("rt-engine: error:")]
    assert len(errors) == 1, outcome.describe()
    return errors[0]


def capture_with_frame(path: Path, kind: int, payload: bytes) -> Path:
    """A capture whose one special frame is `payload`, correctly checksummed: the content
    itself is what is damaged (a buggy or hostile writer), so only validation can catch it."""
    api, schema_hash = schema_identity()
    writer = CaptureWriter(path, CaptureHeader(api, schema_hash, BOOT_OFFSET, {}))
    writer._write_frame(kind, payload)  # the raw frame, whatever its content
    writer.write_events(b"".join(WORLD))
    writer.close()
    return path


@pytest.mark.parametrize(("kind", "payload"), [
    (3, b'{"procs": {"1": '),  # JSONDecodeError
    (2, b'{"per_cpu": {}}'),  # KeyError: 'ts'
    (3, b'{"procs": [1, 2]}'),  # AssertionError
    (3, b'{"procs": {"1": "not a map"}}'),  # AttributeError
    (2, b'{"ts": 1, "per_cpu": {"\xff": {}}}'),  # UnicodeDecodeError
    (2, b'{"ts": 1, "per_cpu": {"0": {"n_evts": "many"}}}'),
    (3, b'{"procs": {"1": {"fds": {"3": "a\\u0000b"}}}}'),  # a NUL byte in a link target
    (3, b"[" * 100000),  # nesting deeper than the JSON parser's recursion
])
def test_damaged_snapshot_and_stats_content_is_one_error(tmp_path: Path, kind: int,
                                                         payload: bytes) -> None:
    capture = capture_with_frame(tmp_path / "c.rtcap", kind, payload)
    line = error_line(rt_engine("run", "--replay", capture))
    assert str(capture) in line and "frame 1 at offset" in line


def test_thread_name_that_is_not_utf8_replays(tmp_path: Path) -> None:
    api, schema_hash = schema_identity()
    path = tmp_path / "snap.rtcap"
    writer = CaptureWriter(path, CaptureHeader(api, schema_hash, BOOT_OFFSET, {}))
    status = "Name:\tx\nPPid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n"
    writer.write_procs(ProcSnapshot({"procs": {"77": {"files": {"status": status},
                                                      "tasks": {"77": "bad\udcffname"}}}}))
    writer.write_events(b"".join(WORLD))
    writer.close()
    outcome = rt_engine("run", "--replay", path, "--json")
    assert outcome.returncode == 0, outcome.describe()
    assert "seeded" in outcome.stderr


def test_metadata_length_is_bounded(tmp_path: Path) -> None:
    capture = bytearray(write_capture(tmp_path / "c.rtcap", [WORLD]).read_bytes())
    struct.pack_into("<I", capture, 32, 0xFFFFFFFF)
    (tmp_path / "c.rtcap").write_bytes(capture)
    line = error_line(rt_engine("run", "--replay", tmp_path / "c.rtcap"))
    assert str(0xFFFFFFFF) in line and str(MAX_METADATA) in line


def test_flipped_bit_in_an_event_is_reported_not_analysed(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "c.rtcap", [WORLD[:4], WORLD[4:]])
    clean = rt_engine("run", "--replay", path, "--json")
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x10  # inside the last EVENTS frame's payload
    path.write_bytes(data)
    outcome = rt_engine("run", "--replay", path, "--json")
    line = error_line(outcome)
    assert "frame 2 at offset" in line and "checksum" in line
    assert clean.stdout.startswith(outcome.stdout)  # only frame 1 was analysed


def test_capture_of_the_previous_format_is_refused_with_re_record(tmp_path: Path) -> None:
    data = bytearray(write_capture(tmp_path / "c.rtcap", [WORLD]).read_bytes())
    struct.pack_into("<H", data, 8, 1)
    (tmp_path / "c.rtcap").write_bytes(data)
    line = error_line(rt_engine("run", "--replay", tmp_path / "c.rtcap"))
    assert "older rt-engine" in line and "re-record" in line


def test_metrics_port_in_use(tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "c.rtcap", [WORLD])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = error_line(rt_engine("run", "--replay", capture, "--metrics-port", port))
    assert f"127.0.0.1:{port}" in line and "free port" in line


@pytest.mark.parametrize("where", ["/proc/rtcap-test/c.rtcap", "{file}/sub/c.rtcap", "{dir}"])
def test_record_into_an_unwritable_place(tmp_path: Path, where: str) -> None:
    capture = write_capture(tmp_path / "c.rtcap", [WORLD])
    target = where.format(file=capture, dir=tmp_path)
    line = error_line(rt_engine("run", "--driver", "core", "--record", target))
    assert "--record" in line and target in line


def test_record_with_replay_is_refused(tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "c.rtcap", [WORLD])
    line = error_line(rt_engine("run", "--replay", capture, "--record", tmp_path / "o"))
    assert "--record" in line and "--replay" in line
    assert not (tmp_path / "o").exists()


def test_outputs_file_in_an_impossible_directory(tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "c.rtcap", [WORLD])
    config = tmp_path / "engine.yaml"
    config.write_text(json.dumps({"outputs": {"file": f"{capture}/missing/alerts.log"}}))
    outcome = rt_engine("run", "--replay", capture, "--config", config)
    line = error_line(outcome)
    assert "outputs.file" in line and "loaded" not in outcome.stderr  # before anything ran


@pytest.mark.parametrize(("text", "expect"), [
    (b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
        b"%c: &%c [%s]\n" % (98 + i, 98 + i, b", ".join([b"*%c" % (97 + i)] * 10))
        for i in range(7)), b"aliases"),
    (b"driver: core\ndriver: kmod\n", b"duplicate key"),
    (b"priority: \xff\xfe\n", b"not UTF-8"),
    (b"duration: .inf\n", b"finite"),
    (b"webhook: {timeout: .nan}\n", b"finite"),
    (b"buffer_bytes: 1" + b"0" * 50 + b"\n", b"must be in"),
    (b"buffer_bytes: 1" + b"0" * 5000 + b"\n", b"realistic number"),
    (b"outputs: {queue_size: yes}\n", b"expected an integer"),
    (b"metrics: [1, 2]\n", b"expected a mapping"),
    (b"rules_files: {a: 1}\n", b"expected a list"),
    (b"record: \"a\\0b\"\n", b"NUL"),
    (b"[" * 5000, b"config"),
], ids=lambda value: value[:24].decode(errors="replace") if isinstance(value, bytes) else None)
def test_hostile_engine_config_is_one_line(tmp_path: Path, text: bytes, expect: bytes) -> None:
    config = tmp_path / "engine.yaml"
    config.write_bytes(text)
    line = error_line(rt_engine("run", "--config", config))
    assert expect.decode() in line and str(config) in line and len(line) < 400
