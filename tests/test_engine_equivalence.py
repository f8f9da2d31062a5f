"""The event path's fast paths must give the answers of the plain, careful paths.

The decoder has a generated fast decoder per event type and a general one (every check,
precise errors); the engine evaluates one generated matcher per event type instead of each
rule's own compiled condition. Both fast paths exist only for speed (bench/bench_replay.py),
so these tests replay the same records and captures through both and compare everything:
decoded events field by field, and alerts (rule, time, output line, output fields) in order.
"""

from __future__ import annotations

import gc
import struct
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.driver import _schema, schema
from runtime.engine.app import Engine, Runner
from runtime.engine.capture import (
    AF_INET,
    AF_INET6,
    CaptureHeader,
    CaptureWriter,
    encode_record,
    encode_tuple,
)
from runtime.engine.cli import default_rules_path
from runtime.engine.config import DropConfig
from runtime.engine.drops import DropMonitor
from runtime.engine.metrics import EngineCounters
from runtime.engine.outputs import Alert
from runtime.engine.rules import Ruleset, load_rules
from runtime.engine.sources import ReplaySource, schema_identity
from runtime.engine.state import SystemState
from runtime.events import Event
from tests.conftest import require
from tests.engine_reference import reference_matches

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import bench_replay  # noqa: E402

from tests import test_engine_replay  # noqa: E402

_SAMPLE: dict[str, list[bytes]] = {
    "path": [b"/etc/shadow\0", b"relative/x\0", b"no-terminator", b"\xff\xfebad\0", b""],
    "string": [b"debug=1\0", b"", b"a\0b\0"],
    "argv": [b"cat\0/etc/shadow\0", b"sh\0", b"", b"noterm"],
    "bytes": [b"\x01\x02", b""],
    "sockaddr": [struct.pack("=H", AF_INET) + struct.pack("!H", 443) + bytes([10, 1, 2, 3])
                 + bytes(8), b"\x01\x00/run/sock\0", b""],
    "tuple": [encode_tuple(AF_INET, "10.0.0.2", 40000, "10.1.2.3", 443),
              encode_tuple(AF_INET6, "::1", 5, "fe80::1", 6), bytes([AF_INET]), b""],
}


def _params_variants(spec: schema._EventSpec) -> list[list[bytes]]:
    """Every param at each sample value in turn, with the others at their first sample;
    a fixed param may also come back empty (the probe could not read it)."""
    def samples(ptype: str) -> list[bytes]:
        if ptype in schema._FIXED_CODE:
            size = struct.calcsize("=" + schema._FIXED_CODE[ptype])
            biggest = (1 << (8 * size - 1)) - 1
            return [schema.encode_fixed(ptype, 3), schema.encode_fixed(ptype, biggest), b""]
        return _SAMPLE[ptype]

    base = [samples(t)[0] for t in spec.types]
    variants = [base]
    for i, ptype in enumerate(spec.types):
        for value in samples(ptype)[1:]:
            variants.append([*base[:i], value, *base[i + 1:]])
    return variants


def _records() -> list[bytes]:
    out = []
    for spec in schema.SPECS.values():
        for n, params in enumerate(_params_variants(spec)):
            record = schema.encode_record(
                spec.name, params, ret=-2 if n % 3 == 1 else n,
                syscall_nr=-1 if n % 4 == 3 else n,
                ts=10**9 + n, pid=100 + n, tid=200 + n, ppid=1, uid=1000, gid=1000, cpu=n % 2,
                cgroup_id=n, comm=("cat", "x" * 15, "")[n % 3],
            )
            out.append(record + bytes(-len(record) % 8))
    return out


def _fields(ev: Event) -> tuple[object, ...]:
    return (ev.ts, ev.cpu, ev.type, ev.syscall_nr, ev.res, ev.pid, ev.tid, ev.ppid, ev.uid,
            ev.gid, ev.comm, ev.cgroup_id, list(ev.params.items()), ev.raw_args)


@pytest.mark.usefixtures("decoder_path")
def test_fast_decoder_matches_the_careful_decoder_on_every_event_type() -> None:
    records = _records()
    assert len(records) > 3 * len(schema.SPECS)
    decoder = schema.Decoder("x86_64", epoch_offset_ns=7)
    stream = b"".join(records)
    fast = decoder.decode_stream(stream)
    careful, off = [], 0
    for record in records:
        careful.append(decoder.decode_careful(stream, off))
        off += len(record)
    assert [_fields(e) for e in fast] == [_fields(e) for e in careful]
    # The single-record entry point takes the same fast path, and the live ring hands the
    # decoder views of its mapped pages rather than bytes.
    assert [_fields(decoder.decode(r)) for r in records] == [_fields(e) for e in careful]
    for view in (memoryview(stream), bytearray(stream)):
        assert [_fields(e) for e in decoder.decode_stream(view)] == [_fields(e) for e in careful]
    out: list[Event] = []
    assert decoder.decode_into(memoryview(stream), len(records[0]), len(stream), out) \
        == len(stream)
    assert [_fields(e) for e in out] == [_fields(e) for e in careful[1:]]


@pytest.mark.usefixtures("decoder_path")
def test_fast_decoder_refuses_what_the_careful_decoder_refuses() -> None:
    decoder = schema.Decoder("x86_64", epoch_offset_ns=0)
    good = _records()[0]
    with pytest.raises(schema.DecodeError, match="within"):
        decoder.decode_stream(good[:-8] + bytes(0))  # record longer than the buffer
    bad_type = bytearray(good)
    struct.pack_into("=H", bad_type, schema._TYPE_AT, 9999)
    with pytest.raises(schema.DecodeError, match="unknown event type 9999"):
        decoder.decode_stream(bytes(bad_type))
    short = bytearray(good)
    struct.pack_into("=I", short, schema._LEN_AT, 8)
    with pytest.raises(schema.DecodeError, match="below the header size"):
        decoder.decode_stream(bytes(short))


@pytest.mark.usefixtures("decoder_path")
def test_epoch_offset_set_after_construction_applies() -> None:
    decoder = schema.Decoder("x86_64", epoch_offset_ns=0)
    record = _records()[0]
    before = decoder.decode(record).ts
    decoder.epoch_offset_ns = 1000
    assert decoder.decode(record).ts == before + 1000
    assert decoder.decode_stream(record)[0].ts == before + 1000


def _reference_alerts(capture: Path, ruleset: Ruleset) -> list[tuple[object, ...]]:
    """Each rule's own compiled condition, in load order, over the careful decoder."""
    return [(rule.name, ev.ts, line, sorted(fields.items(), key=str))
            for ev, rule, line, fields in reference_matches(capture, ruleset, SystemState())]


def _engine_alerts(capture: Path, ruleset: Ruleset) -> list[tuple[object, ...]]:
    alerts: list[Alert] = []
    engine = Engine(ruleset, SystemState(), alerts.append, counters=EngineCounters())
    source = ReplaySource(capture)
    drops = DropMonitor(DropConfig(), emit_alert=alerts.append, log=lambda _: None)
    Runner(source, engine, None, drops).run()  # type: ignore[arg-type]
    source.close()
    return [(a.rule, a.time_ns, a.output, sorted(a.output_fields.items(), key=str))
            for a in alerts]


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("equiv")
    mix = tmp / "mix.rtcap"
    bench_replay.build_capture(mix, 6000, frame_bytes=16 * 1024)
    world = tmp / "world.rtcap"
    api, schema_hash = schema_identity()
    writer = CaptureWriter(world, CaptureHeader(api, schema_hash, 0, {}))
    writer.write_events(b"".join(test_engine_replay.WORLD))
    writer.close()
    return {"mix": mix, "world": world}


@pytest.mark.usefixtures("decoder_path")
@pytest.mark.parametrize("capture", ["mix", "world"])
@pytest.mark.parametrize("rules", ["default", "operators"])
def test_engine_alerts_equal_per_rule_evaluation(captures: dict[str, Path], capture: str,
                                                 rules: str, tmp_path: Path) -> None:
    if rules == "default":
        path = default_rules_path()
    else:
        path = tmp_path / "operators.yaml"
        path.write_text(test_engine_replay.OPERATOR_RULES)
    expected = _reference_alerts(captures[capture], load_rules([path]))
    assert expected, "the capture must trip some rules or this compares nothing"
    assert _engine_alerts(captures[capture], load_rules([path])) == expected


def test_thread_copy_keeps_every_field_but_the_ids() -> None:
    """copy_as builds the thread slot by slot for speed; a field added to ThreadInfo and
    forgotten there must fail here rather than go missing from forked processes."""
    import dataclasses

    from runtime.engine.state import ContainerRef, ThreadInfo

    special: dict[str, object] = {
        "args": ("a", "b"), "container": ContainerRef("c" * 12, "c" * 64, "docker"),
        "comm": "bash", "exe": "bash", "exepath": "/bin/bash", "cwd": "/root",
    }
    values = {f.name: special.get(f.name, 1000 + n)
              for n, f in enumerate(dataclasses.fields(ThreadInfo))}
    parent = ThreadInfo(**values)  # type: ignore[arg-type]
    # seen_ts alone is not inherited: it marks a row made from the thread's own event.
    child = parent.copy_as(7, 8, 9, "child")
    assert child == dataclasses.replace(parent, tid=7, pid=8, ppid=9, comm="child", seen_ts=0)
    assert parent.copy_as(7, 8, 9) == dataclasses.replace(parent, tid=7, pid=8, ppid=9,
                                                          seen_ts=0)


def test_open_paths_are_normalised_exactly_as_normpath_would() -> None:
    """The open fast path skips normpath() for dot-files; the stored name must be what the
    plain rule (normalise whenever "/." or "//" occurs) gives, for every path shape."""
    import itertools
    import posixpath

    from runtime.engine.state.machine import _is_normal_abs

    parts = ["", ".", "..", "a", ".a", "..a", "a.", "..."]
    checked = 0
    for k in range(1, 5):
        for combo in itertools.product(parts, repeat=k):
            for trail in ("", "/"):
                path = "/" + "/".join(combo) + trail
                plain = posixpath.normpath(path) if ("/." in path or "//" in path) else path
                fast = path if _is_normal_abs(path) else posixpath.normpath(path)
                assert fast == plain, path
                checked += 1
    assert checked > 1000
    state = SystemState()
    state.update(Event(1, 0, "openat", 257, 3, 9, 9, 1, 0, 0, "vim", 0,
                       {"dirfd": -100, "name": "/home/u/.config/x/../y", "flags": 0,
                        "mode": 0, "fd": 3}))
    info = state.fd(9, 3)
    assert info is not None and info.name == "/home/u/.config/y"


def test_open_fast_path_builds_the_same_fd_as_the_general_path() -> None:
    """The open handler fills FdInfo slot by slot; every field must match the constructor's
    defaults (a new FdInfo field forgotten there fails here)."""
    from runtime.engine.state import FdInfo

    for flags, kind, char in ((0o2, "file", "f"), (0o200000, "directory", "d")):
        state = SystemState()
        state.update(Event(1, 0, "openat", 257, 5, 9, 9, 1, 0, 0, "vim", 0,
                           {"dirfd": -100, "name": "/srv/data", "flags": flags, "mode": 0,
                            "fd": 5}))
        assert state.fd(9, 5) == FdInfo(5, kind, char, "/srv/data", flags)


def test_argv_decodes_as_if_each_argument_were_decoded_alone() -> None:
    """_argv decodes the whole block once; invalid UTF-8 next to a NUL must still give the
    replacement characters that decoding each argument separately gives."""
    import random

    def per_argument(b: bytes) -> list[str]:
        parts = b.split(b"\0")
        if parts and parts[-1] == b"":
            parts.pop()
        return [p.decode("utf-8", "replace") for p in parts]

    rng = random.Random(7)
    alphabet = [0, 0, 0x41, 0x80, 0xBF, 0xC2, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0xFF, 0xED]
    for _ in range(20000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert schema._argv(raw) == per_argument(raw), raw


def _state_snapshot(state: SystemState) -> tuple[object, ...]:
    return (state.event_count, sorted(state.threads.items()),
            sorted((pid, sorted(table.items())) for pid, table in state.fds.items()),
            list(state._pending_threads))


def _raw_stream() -> bytes:
    """Every event type and param shape, each record twice (the thread unknown, then
    known), once with the syscall number of its own type (the lite path's case) and once
    with another; plus the bench mix (open/close of the same fds interleaved)."""
    table = schema.syscall_table("x86_64")
    out: list[bytes] = []
    for record in _records():
        etype = struct.unpack_from("=H", record, schema._TYPE_AT)[0]
        syscalls = schema._syscalls_of(schema.SPECS[etype].name)
        own = bytearray(record)
        nr_at = _schema.HDR_OFFSETS["syscall_nr"]
        struct.pack_into("=i", own, nr_at, table.get(syscalls[0], -1) if syscalls else -1)
        # A known thread's ids change (setuid, reparenting): the state must follow.
        for field, value in (("ppid", 7), ("uid", 2000 + len(out)), ("gid", 3000)):
            struct.pack_into("=I", own, _schema.HDR_OFFSETS[field], value)
        out += [record, record, bytes(own)]
    for i in range(40):
        for record in bench_replay.process_records(i, 10**9 + i * 10**6):
            out.append(record + bytes(-len(record) % 8))
    return b"".join(out)


@pytest.mark.usefixtures("decoder_path")
@pytest.mark.parametrize("rules", ["default", "operators"])
def test_raw_processing_equals_decode_then_process(rules: str, tmp_path: Path) -> None:
    """Engine.process_raw (lite records for types no rule needs, used for every replay)
    against the plain path: same alerts in order, same state, same event count."""
    if rules == "default":
        path = default_rules_path()
    else:
        path = tmp_path / "operators.yaml"
        path.write_text(test_engine_replay.OPERATOR_RULES)
    stream = _raw_stream()
    decoder = schema.Decoder("x86_64", epoch_offset_ns=5)
    results = []
    for raw in (False, True):
        alerts: list[Alert] = []
        counters = EngineCounters()
        engine = Engine(load_rules([path]), SystemState(), alerts.append, counters=counters)
        # Frames cut at record boundaries, as a capture's are.
        cut = len(_records()) * 8 * 8 // 3
        off = 0
        while off < len(stream):
            end = off
            while end < len(stream) and end - off < cut:
                end += (struct.unpack_from("=I", stream, end + schema._LEN_AT)[0] + 7) & ~7
            frame = stream[off:end]
            if raw:
                engine.process_raw(frame, decoder)
            else:
                engine.process(decoder.decode_stream(frame))
            off = end
        results.append(([(a.rule, a.time_ns, a.output, sorted(a.output_fields.items(), key=str))
                          for a in alerts], _state_snapshot(engine.state), counters.events))
    assert results[0][0], "the stream must trip some rules or this compares nothing"
    assert results[1] == results[0]


def test_lite_records_cover_the_bench_mix_types() -> None:
    """close, exit, clone, socket and procexit need no Event under the default rules: the
    speed of bench_replay rests on it (a rule added for one of them turns it off)."""
    engine = Engine(load_rules([default_rules_path()]), SystemState(), lambda a: None)
    decoder = schema.Decoder("x86_64", epoch_offset_ns=0)
    lite = {schema.SPECS[type_id].name for type_id in engine.lite_specs(decoder)}
    assert {"close", "exit", "clone", "socket", "procexit"} <= lite
    assert not lite & {"openat", "execve", "connect", "generic", "fork"}


@pytest.mark.usefixtures("decoder_path")
def test_raw_processing_refuses_what_decode_stream_refuses() -> None:
    engine = Engine(load_rules([default_rules_path()]), SystemState(), lambda a: None)
    decoder = schema.Decoder("x86_64", epoch_offset_ns=0)
    good = _records()[0]
    bad_type = bytearray(good)
    struct.pack_into("=H", bad_type, schema._TYPE_AT, 9999)
    with pytest.raises(schema.DecodeError, match="unknown event type 9999"):
        engine.process_raw(bytes(bad_type), decoder)
    with pytest.raises(schema.DecodeError, match="trailing bytes"):
        engine.process_raw(good + b"\x01" * 8, decoder)


def _outcome(decoder: schema.Decoder, stream: bytes) -> object:
    try:
        return [_fields(e) for e in decoder.decode_stream(stream)]
    except (schema.DecodeError, struct.error) as exc:
        return (type(exc).__name__, str(exc))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_decoder_equals_the_python_decoder_on_damaged_streams(data: st.DataObject
                                                                      ) -> None:
    """Random damage (bytes overwritten, the stream cut short) anywhere in a stream of every
    event type: the compiled decoder must give the Python decoder's events, or its error."""
    require(schema.COMPILED_DECODER, f"compiled decoder: {schema.compiled_decoder_status()}")
    stream = bytearray(b"".join(_records()[:: data.draw(st.integers(1, 7))]))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(stream) - 1))
        chunk = data.draw(st.binary(min_size=1, max_size=4))
        stream[at:at + len(chunk)] = chunk
    cut = data.draw(st.integers(len(stream) // 2, len(stream)))
    damaged = bytes(stream[:cut])
    python = schema.Decoder("x86_64", epoch_offset_ns=3, compiled=False)
    compiled = schema.Decoder("x86_64", epoch_offset_ns=3, compiled=True)
    assert _outcome(compiled, damaged) == _outcome(python, damaged)


def test_compiled_decoders_value_caches_follow_every_change() -> None:
    """The compiled decoder hands out the int or str it made for a value again while the
    value repeats (ids, flags, paths): every change must still show, including a text
    of the same length, one too long to cache, the sign of an int and a thread's ids,
    and each value must be what the Python decoder makes."""
    require(schema.COMPILED_DECODER, f"compiled decoder: {schema.compiled_decoder_status()}")
    long_path = "/tmp/" + "d" * 300
    opens = [("/dev/null", 0o2000000, 3, 200), ("/dev/null", 0o2000000, 3, 200),
             ("/dev/nulm", 0o2000000, 3, 200), ("/dev/null", 0o2000001, 3, 201),
             (long_path, 0, -2, 201), (long_path + "e", 0, -2, 201),
             ("/dev/null", 0o2000000, 3, 200), ("", 0, -22, 4294967295)]
    records = []
    for n, (name, flags, ret, tid) in enumerate(opens):
        records.append(encode_record(
            "openat", ts_boot_ns=10**9 + n, ret=ret, pid=100 + n % 2, tid=tid,
            uid=1000 + n % 3, gid=1000, comm="cat", cgroup_id=n // 2, syscall_nr=257,
            params={"dirfd": -100 if n % 3 else 5 - n, "name": name, "flags": flags,
                    "mode": 0o644 * (n % 2)}))
    stream = b"".join(records)
    python = schema.Decoder("x86_64", epoch_offset_ns=3, compiled=False)
    compiled = schema.Decoder("x86_64", epoch_offset_ns=3, compiled=True)
    for _ in range(2):  # the second pass starts with every cache filled
        got = compiled.decode_stream(stream)
        assert [_fields(e) for e in got] == [_fields(e) for e in python.decode_stream(stream)]
    assert [e.params["name"] for e in got[:4]] == ["/dev/null", "/dev/null", "/dev/nulm",
                                                   "/dev/null"]
    assert got[0].params["name"] is got[1].params["name"]  # one str while it repeats
    assert got[0].tid is got[1].tid and got[2].tid == 200 and got[3].tid == 201


def test_compiled_decoder_keeps_its_events_out_of_the_cyclic_gc() -> None:
    """An Event can hold nothing that leads back to it, so the compiled decoder takes it
    off the cyclic GC's lists (every collection walked each one alive, ~5% of a storm's
    cost); its params dict stays tracked where it holds a container (execve's argv)."""
    require(schema.COMPILED_DECODER, f"compiled decoder: {schema.compiled_decoder_status()}")
    stream = b"".join(record + bytes(-len(record) % 8) for i in range(3)
                      for record in bench_replay.process_records(i, 10**9 + i * 10**6))
    events = schema.Decoder("x86_64", epoch_offset_ns=3, compiled=True).decode_stream(stream)
    assert {e.type for e in events} >= {"execve", "openat", "connect", "close"}
    assert not any(gc.is_tracked(e) for e in events)
    assert all(gc.is_tracked(e.params) for e in events if e.type == "execve")


def test_compiled_decoder_keeps_no_references() -> None:
    """Decoding and dropping the same stream many times must not grow memory: a missed
    reference decrement in the C code would keep every param and Event alive."""
    require(schema.COMPILED_DECODER, f"compiled decoder: {schema.compiled_decoder_status()}")
    # Common records only: the careful path's tuples would fill free lists for a while.
    stream = b"".join(record + bytes(-len(record) % 8) for i in range(40)
                      for record in bench_replay.process_records(i, 10**9 + i * 10**6))
    decoder = schema.Decoder("x86_64", epoch_offset_ns=3, compiled=True)
    engine = Engine(load_rules([default_rules_path()]), SystemState(), lambda a: None)
    frame = decoder.frame_decoder(engine.lite_specs(decoder))

    def churn() -> None:
        for _ in range(50):
            decoder.decode_stream(stream)
            frame(stream, 0, len(stream), [])

    tracemalloc.start()
    try:
        # The first pass fills caches (comms) and CPython's free lists, which tracemalloc
        # counts as allocated; after it, nothing more may stay.
        churn()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(4):
            churn()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes kept after decoding {len(stream) * 200} bytes"


def test_a_stale_compiled_decoder_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build from another schema (the C not rebuilt after an events.yaml change) must
    fall back to Python with the reason, never decode with the old layout."""
    require(schema.COMPILED_DECODER, f"compiled decoder: {schema.compiled_decoder_status()}")
    monkeypatch.setattr(schema, "SCHEMA_HASH", schema.SCHEMA_HASH ^ 1)
    assert "another event schema" in str(schema.compiled_decoder_status())
    with pytest.raises(RuntimeError, match="another event schema"):
        schema.Decoder("x86_64", epoch_offset_ns=0).frame_decoder()


@pytest.mark.usefixtures("decoder_path")
def test_raw_processing_follows_a_changed_epoch_offset() -> None:
    alerts: list[Alert] = []
    engine = Engine(load_rules([default_rules_path()]), SystemState(), alerts.append)
    decoder = schema.Decoder("x86_64", epoch_offset_ns=0)
    frame = _raw_stream()
    engine.process_raw(frame, decoder)
    before = [a.time_ns for a in alerts]
    assert before, "the stream must trip some rules or this compares nothing"
    alerts.clear()
    decoder.epoch_offset_ns = 10**9
    engine.process_raw(frame, decoder)
    assert [a.time_ns for a in alerts][: len(before)] == [t + 10**9 for t in before]


@pytest.mark.usefixtures("decoder_path")
def test_lite_clone_dates_the_child_by_its_own_time() -> None:
    """A clone decoded lite (no Event) gives the child the start time the full Event's
    update would: the clone's own timestamp, not the last full event's (proc.duration and
    proc.exe_ino.ctime_duration_proc_start read it)."""
    from runtime.engine.capture import encode_record

    frame = b"".join([
        encode_record("execve", ts_boot_ns=1_000, ret=0, pid=50, comm="sh",
                      params={"filename": "/bin/sh", "argv": ["sh"], "cwd": "/"}),
        encode_record("close", ts_boot_ns=2_000, ret=0, pid=50, comm="sh", params={"fd": 3}),
        encode_record("clone", ts_boot_ns=7_000, ret=51, pid=50, comm="sh",
                      params={"flags": 0x1200011}),
    ])
    results = []
    for raw in (False, True):
        engine = Engine(load_rules([default_rules_path()]), SystemState(), lambda a: None)
        decoder = schema.Decoder("x86_64", epoch_offset_ns=5 * 10**9)
        if raw:
            engine.process_raw(frame, decoder)
        else:
            engine.process(decoder.decode_stream(frame))
        child = engine.state.threads[51]
        results.append(child.start_ts)
    assert results == [5 * 10**9 + 7_000] * 2
