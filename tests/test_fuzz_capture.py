"""Damaged capture files through `rt-engine run --replay`, in a bounded child process.

A small real capture is recorded with the engine's own writer, then damaged (bits flipped,
cut short, frames spliced, length fields rewritten, the /proc snapshot's JSON broken).
Every run must end with no traceback, inside the fuzz memory and time bounds, and a
damaged frame must be reported (one `rt-engine: error:` line naming the frame) rather than
analysed: the alerts printed before it are a prefix of the undamaged run's alerts.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runtime.engine.capture import CaptureHeader, CaptureWriter, ProcSnapshot
from runtime.engine.sources import schema_identity
from tests.fuzz_helpers import FUZZ_CHILD, Outcome, python_module, run_bounded
from tests.test_engine_replay import BOOT_OFFSET, WORLD

STATS = (BOOT_OFFSET + 10**9, {0: {"n_evts": 100, "n_drops_buffer": 0}})
_HEADER_SIZE = 8 + 2 + 2 + 4 + 8 + 8 + 4  # up to the metadata length field
_FRAME_HEAD = 9  # kind, length, crc


def _snapshot_doc() -> dict[str, object]:
    return {"procs": {"4242": {"files": {"status": "Name:\tinit\nPPid:\t0\nUid:\t0\t0\t0\t0\n"},
                               "links": {"exe": "/sbin/init"}, "fds": {"0": "/dev/null"},
                               "tasks": {"4242": "init\n"}}},
            "net": {"tcp": ""}}


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("cap") / "world.rtcap"
    api, schema_hash = schema_identity()
    writer = CaptureWriter(path, CaptureHeader(api, schema_hash, BOOT_OFFSET, {"t": 1}))
    writer.write_procs(ProcSnapshot(_snapshot_doc()))
    writer.write_events(b"".join(WORLD[:6]))
    writer.write_stats(STATS[0], STATS[1])
    writer.write_events(b"".join(WORLD[6:]))
    writer.close()
    return path.read_bytes()


def frame_offsets(data: bytes) -> list[int]:
    """Offsets of every frame header (and the end of the file)."""
    (meta_len,) = struct.unpack_from("<I", data, _HEADER_SIZE - 4)
    offset = _HEADER_SIZE + meta_len + 4
    offsets = []
    while offset < len(data):
        offsets.append(offset)
        (size,) = struct.unpack_from("<I", data, offset + 1)
        offset += _FRAME_HEAD + size
    return [*offsets, len(data)]


def replay(tmp: Path, data: bytes) -> Outcome:
    path = tmp / "fuzzed.rtcap"
    path.write_bytes(data)
    return run_bounded(python_module("runtime.engine.cli", "run", "--replay", str(path),
                                     "--json"))


def assert_reported(outcome: Outcome, clean: Outcome) -> str:
    assert outcome.returncode > 0, outcome.describe()
    assert "Traceback" not in outcome.stderr, outcome.describe()
    errors = [ln for ln in outcome.stderr.splitlines() if ln.startswith("rt-engine: error:")]
    assert len(errors) == 1, outcome.describe()
    # What was analysed before the damage came from undamaged frames only.
    assert clean.stdout.startswith(outcome.stdout), outcome.describe()
    return errors[0]


@pytest.fixture(scope="module")
def clean(capture: bytes, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    outcome = replay(tmp_path_factory.mktemp("clean"), capture)
    assert outcome.returncode == 0, outcome.describe()
    assert outcome.stdout.count("\n") >= 3  # the world raises alerts to compare against
    return outcome


@FUZZ_CHILD
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
@example(position=_HEADER_SIZE - 1, bit=7)  # metadata length 0x80...: bounded, not read
def test_any_flipped_bit_is_reported(capture: bytes, clean: Outcome, work: Path,
                                     position: int, bit: int) -> None:
    damaged = bytearray(capture)
    damaged[position % len(capture)] ^= 1 << bit
    assert_reported(replay(work, bytes(damaged)), clean)


@FUZZ_CHILD
@given(cut=st.integers(min_value=0))
def test_cut_short_is_reported_or_a_clean_prefix(capture: bytes, clean: Outcome,
                                                 work: Path, cut: int) -> None:
    cut %= len(capture)
    outcome = replay(work, capture[:cut])
    if cut in frame_offsets(capture):
        # A cut exactly between frames leaves a complete, shorter capture (the format has
        # no trailer, so a recording stopped by a crash stays readable).
        assert outcome.returncode == 0, outcome.describe()
        assert clean.stdout.startswith(outcome.stdout)
    else:
        assert_reported(outcome, clean)


@FUZZ_CHILD
@given(field=st.integers(min_value=0, max_value=10), value=st.sampled_from(
    [0, 1, 7, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 256 * 1024 * 1024 + 1]))
def test_rewritten_length_fields_are_bounded(capture: bytes, clean: Outcome, work: Path,
                                             field: int, value: int) -> None:
    damaged = bytearray(capture)
    offsets = [_HEADER_SIZE - 4] + [o + 1 for o in frame_offsets(capture)[:-1]]
    at = offsets[field % len(offsets)]
    if struct.unpack_from("<I", damaged, at)[0] == value:
        value ^= 1
    struct.pack_into("<I", damaged, at, value)
    assert_reported(replay(work, bytes(damaged)), clean)


@FUZZ_CHILD
@given(first=st.integers(min_value=0), second=st.integers(min_value=0),
       junk=st.binary(max_size=64))
def test_spliced_files_are_reported(  # noqa: PLR0917 - fixtures + drawn values
        capture: bytes, clean: Outcome, work: Path,
                                    first: int, second: int, junk: bytes) -> None:
    """Part of the file, junk, then a part from elsewhere: as when blocks are mixed up."""
    a, b = sorted((first % len(capture), second % len(capture)))
    spliced = capture[:a] + junk + capture[b:]
    boundaries = frame_offsets(capture)
    if not junk and a in boundaries and b in boundaries:
        # Whole frames dropped from between frames: still a valid capture.
        outcome = replay(work, spliced)
        assert outcome.returncode == 0 and "Traceback" not in outcome.stderr
        return
    if spliced == capture:
        return
    assert_reported(replay(work, spliced), clean)


@FUZZ_CHILD
@given(doc=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=12))
@example(doc={"procs": {"1": {"tasks": {"1": "\udcff"}}}})  # a name that was not UTF-8
@example(doc={"ts": "x", "per_cpu": {}})
@example(doc={"procs": {"1": {"fds": {"3": "a\x00b"}}}})
@example(doc=[1])
def test_hostile_snapshot_and_stats_json(work: Path, doc: object) -> None:
    """Well-checksummed frames whose JSON is the wrong shape (a buggy or hostile writer)."""
    api, schema_hash = schema_identity()
    for kind in ("procs", "stats"):
        path = work / f"{kind}.rtcap"
        writer = CaptureWriter(path, CaptureHeader(api, schema_hash, BOOT_OFFSET, {}))
        if kind == "procs":
            writer.write_procs(ProcSnapshot(doc))  # type: ignore[arg-type]
        else:
            payload = json.dumps(doc).encode()
            writer._write_frame(2, payload)  # a stats frame of any shape
        writer.write_events(b"".join(WORLD))
        writer.close()
        outcome = run_bounded(python_module("runtime.engine.cli", "run", "--replay",
                                            str(path)))
        assert "Traceback" not in outcome.stderr, outcome.describe()
        assert outcome.returncode >= 0, outcome.describe()


def test_world_capture_is_what_the_fuzzer_damages(capture: bytes) -> None:
    """The damage tests above rely on this layout: header, then four frames."""
    assert len(frame_offsets(capture)) == 5


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every drawn example: each run overwrites the file it replays."""
    return tmp_path_factory.mktemp("fuzz")
