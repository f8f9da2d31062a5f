"""The one event schema: generated outputs are current, and C and Python agree on it.

A small C program including the generated header prints the size and offset of every
header field and the value of every constant; the Python decoder's own tables must
give the same numbers. Round trips through encode/decode cover every event type.
"""

from __future__ import annotations

import copy
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.driver import _schema
from runtime.driver._syscalls import SYSCALLS
from runtime.driver.schema import (
    EVENT_IDS,
    HDR,
    SPECS,
    DecodeError,
    Decoder,
    decode_events,
    encode_fixed,
    encode_record,
    frame_records,
)
from runtime.events import SocketTuple
from tests.conftest import require

REPO = Path(__file__).resolve().parent.parent
HEADER_DIR = REPO / "driver" / "include"


def test_generated_outputs_are_current() -> None:
    r = subprocess.run(
        [sys.executable, str(REPO / "driver" / "schema" / "gen.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr


def _c_probe_source() -> str:
    """C source printing `name value` lines for everything the Python side relies on."""
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <linux/ioctl.h>",
        '#include "rtcap_schema.h"',
        "int main(void) {",
        '  printf("hdr_size %zu\\n", sizeof(struct rtcap_event_hdr));',
        '  printf("HDR_SIZE %d\\n", RTCAP_HDR_SIZE);',
        '  printf("stats_size %zu\\n", sizeof(struct rtcap_stats));',
        '  printf("filter_size %zu\\n", sizeof(struct rtcap_filter));',
        '  printf("SCHEMA_HASH %llu\\n", (unsigned long long)RTCAP_SCHEMA_HASH);',
        '  printf("API_VERSION %d\\n", RTCAP_API_VERSION);',
        '  printf("MAX_SYSCALLS %d\\n", RTCAP_MAX_SYSCALLS);',
    ]
    for f in _schema.HDR_FIELDS:
        lines.append(f'  printf("off.{f} %zu\\n", offsetof(struct rtcap_event_hdr, {f}));')
        lines.append(
            f'  printf("size.{f} %zu\\n", sizeof(((struct rtcap_event_hdr *)0)->{f}));'
        )
    for i, f in enumerate(_schema.STATS_FIELDS):
        lines.append(f'  printf("stat.{f} %zu\\n", offsetof(struct rtcap_stats, {f}) / 8);')
        del i
    for name, bit in _schema.HEADER_FLAGS.items():
        lines.append(f'  printf("flag.{name} %d\\n", RTCAP_F_{name});')
        del bit
    for name, t in _schema.PARAM_TYPES.items():
        n = name.upper()
        lines.append(f'  printf("pt.{name} %d %d\\n", RTCAP_PT_{n}, RTCAP_PT_{n}_SIZE);')
        del t
    for ev in _schema.EVENTS:
        n = ev["name"].upper()
        lines.append(
            f'  printf("evt.{ev["name"]} %d %d %d\\n", RTCAP_EVT_{n}, '
            f"RTCAP_EVT_{n}_NPARAMS, RTCAP_EVT_{n}_AT_ENTER);"
        )
        for i, (pname, _ptype) in enumerate(ev["params"]):
            lines.append(
                f'  printf("param.{ev["name"]}.{pname} %d\\n", RTCAP_{n}_P_{pname.upper()});'
            )
            del i
    for name in _schema.IOCTLS:
        lines.append(
            f'  printf("ioctl.{name} %lu %lu\\n", (unsigned long)RTCAP_IOCTL_{name}, '
            f"(unsigned long)RTCAP_IOCTL_{name}_VALUE);"
        )
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def c_values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[int]]:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    require(cc is not None, "needs a C compiler")
    assert cc is not None
    d = tmp_path_factory.mktemp("schema_c")
    src = d / "layout.c"
    src.write_text(_c_probe_source())
    exe = d / "layout"
    # -std=gnu89 too: the kernel module of old kernels compiles the header that way.
    for std in ("-std=gnu89", "-std=gnu11"):
        r = subprocess.run(
            [cc, std, "-Wall", "-Werror", "-I", str(HEADER_DIR), str(src), "-o", str(exe)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    values: dict[str, list[int]] = {}
    for line in out.splitlines():
        key, *nums = line.split()
        values[key] = [int(x) for x in nums]
    return values


def test_header_layout_matches_decoder(c_values: dict[str, list[int]]) -> None:
    assert c_values["hdr_size"] == [HDR.size] == [_schema.HDR_SIZE]
    assert c_values["HDR_SIZE"] == [HDR.size]
    for name in _schema.HDR_FIELDS:
        i = _schema.HDR_FIELDS.index(name)
        # offset of the field in the decoder's Struct = size of the format before it
        prefix = "=" + "".join(_struct_codes()[:i])
        assert c_values[f"off.{name}"] == [struct.calcsize(prefix)], name
        assert c_values[f"off.{name}"] == [_schema.HDR_OFFSETS[name]], name
        assert c_values[f"size.{name}"] == [struct.calcsize("=" + _struct_codes()[i])], name


def _struct_codes() -> list[str]:
    """The header format split per field ('16s' stays one item)."""
    fmt = _schema.HDR_FORMAT[1:]
    codes: list[str] = []
    num = ""
    for ch in fmt:
        if ch.isdigit():
            num += ch
            continue
        codes.append(num + ch)
        num = ""
    return codes


def test_constants_match_decoder(c_values: dict[str, list[int]]) -> None:
    assert c_values["SCHEMA_HASH"] == [_schema.SCHEMA_HASH]
    assert c_values["API_VERSION"] == [_schema.API_VERSION]
    assert c_values["MAX_SYSCALLS"] == [_schema.MAX_SYSCALLS]
    assert c_values["filter_size"] == [_schema.MAX_SYSCALLS]
    assert c_values["stats_size"] == [8 * len(_schema.STATS_FIELDS)]
    for i, f in enumerate(_schema.STATS_FIELDS):
        assert c_values[f"stat.{f}"] == [i]
    for name, bit in _schema.HEADER_FLAGS.items():
        assert c_values[f"flag.{name}"] == [bit]
    for name, t in _schema.PARAM_TYPES.items():
        assert c_values[f"pt.{name}"] == [t["id"], t["size"]]
    for ev in _schema.EVENTS:
        spec = SPECS[ev["id"]]
        assert c_values[f"evt.{ev['name']}"] == [
            spec.id,
            len(spec.names),
            int(ev["at_enter"]),
        ]
        for i, pname in enumerate(spec.names):
            assert c_values[f"param.{ev['name']}.{pname}"] == [i]
    for name, value in _schema.IOCTLS.items():
        # the _IO*() macro, its numeric twin and the Python table: all one number
        assert c_values[f"ioctl.{name}"] == [value, value], name


def _sample_params(spec: Any) -> tuple[list[bytes], dict[str, object]]:
    """Every param of `spec` encoded with a sample value, and the values by name."""
    encoded, expected = [], {}
    for i, (name, ptype) in enumerate(zip(spec.names, spec.types, strict=True)):
        raw, value = _sample_param(ptype, i)
        encoded.append(raw)
        expected[name] = value
    return encoded, expected


def _sample_param(ptype: str, i: int) -> tuple[bytes, object]:
    fixed = {"u32": 7 + i, "u64": 2**40 + i, "s32": -5 - i, "s64": -(2**33) - i,
             "fd": -100 if i == 0 else i, "uid": 1000 + i, "gid": 2000 + i,
             "mode": 0o644, "flags32": 0x80000 | i, "flags64": 2**36 | i}
    if ptype in fixed:
        return encode_fixed(ptype, fixed[ptype]), fixed[ptype]
    if ptype in ("path", "string"):
        text = f"/tmp/dir {i}/ünï"
        return text.encode() + b"\0", text
    if ptype == "argv":
        return b"/bin/prog\0-x\0arg two\0", ["/bin/prog", "-x", "arg two"]
    raise AssertionError(ptype)


# Events with network params are covered by test_connect_and_accept_network_params.
NETWORK_TYPES = {"tuple", "sockaddr", "bytes"}


@pytest.mark.parametrize(
    "event",
    [e["name"] for e in _schema.EVENTS if not NETWORK_TYPES & {t for _n, t in e["params"]}],
)
@pytest.mark.usefixtures("decoder_path")
def test_round_trip_every_event(event: str) -> None:
    spec = SPECS[EVENT_IDS[event]]
    encoded, expected = _sample_params(spec)
    nr = SYSCALLS["x86_64"].get(event, -1) if event != "generic" else 110
    rec = encode_record(event, encoded, ret=42, syscall_nr=nr, ts=5, pid=10, tid=11,
                        ppid=1, uid=3, gid=4, cpu=1, cgroup_id=99, comm="proc")
    ev = Decoder("x86_64", epoch_offset_ns=1000).decode(rec)
    assert (ev.ts, ev.pid, ev.tid, ev.ppid, ev.uid, ev.gid, ev.cpu, ev.cgroup_id, ev.comm) == (
        1005, 10, 11, 1, 3, 4, 1, 99, "proc")
    assert ev.res == 42
    assert ev.params[spec.ret] == 42
    if event == "generic":
        assert ev.type == "getppid"
        assert list(ev.raw_args) == [expected[f"arg{i}"] for i in range(6)]
        return
    assert ev.type == event
    if event in ("execve", "execveat"):
        argv = expected.pop("argv")
        assert isinstance(argv, list)
        expected["exe"], expected["args"] = argv[0], argv[1:]
    for k, v in expected.items():
        assert ev.params[k] == v, k


def test_falco_parameter_names() -> None:
    def names(ev: str) -> set[str]:
        spec = SPECS[EVENT_IDS[ev]]
        return set(spec.names) | {spec.ret}

    assert {"fd", "dirfd", "name", "flags", "mode"} <= names("openat")
    assert {"fd", "name", "flags", "mode"} <= names("open")
    assert {"fd", "tuple"} <= names("connect")
    assert {"fd", "tuple"} <= names("accept4")
    assert {"res", "cwd", "filename"} <= names("execve")
    assert {"res", "flags"} <= names("clone")


def _tuple4(family: int, src: str, sport: int, dst: str, dport: int) -> bytes:
    import socket

    fam = socket.AF_INET if family == 2 else socket.AF_INET6
    return (bytes([family]) + socket.inet_pton(fam, src) + struct.pack("=H", sport)
            + socket.inet_pton(fam, dst) + struct.pack("=H", dport))


@pytest.mark.usefixtures("decoder_path")
def test_connect_and_accept_network_params() -> None:
    import socket

    sa = struct.pack("=H", 2) + struct.pack("!H", 8080) + socket.inet_aton("10.0.0.9") + bytes(8)
    rec = encode_record(
        "connect",
        [encode_fixed("fd", 3), _tuple4(2, "10.0.0.1", 40000, "10.0.0.9", 8080), sa],
        syscall_nr=SYSCALLS["x86_64"]["connect"],
    )
    ev = Decoder("x86_64", 0).decode(rec)
    # The tuple arrives structured; its str() is Falco's text (fd.name, evt.arg.tuple).
    assert ev.params["tuple"] == SocketTuple(2, "10.0.0.1", 40000, "10.0.0.9", 8080)
    assert str(ev.params["tuple"]) == "10.0.0.1:40000->10.0.0.9:8080"
    assert (ev.params["family"], ev.params["addr"], ev.params["port"]) == (2, "10.0.0.9", 8080)
    assert ev.params["fd"] == 3
    # a refused connect has no tuple from the socket: the sockaddr supplies the remote
    rec = encode_record("connect", [encode_fixed("fd", 3), b"", sa], ret=-111,
                        syscall_nr=SYSCALLS["x86_64"]["connect"])
    ev = Decoder("x86_64", 0).decode(rec)
    assert (ev.params["addr"], ev.params["port"], ev.res) == ("10.0.0.9", 8080, -111)
    assert ev.params["tuple"] == SocketTuple(2, None, None, "10.0.0.9", 8080)
    assert str(ev.params["tuple"]) == "->10.0.0.9:8080"
    # accept: the peer is the tuple's source and the remote end
    rec = encode_record(
        "accept4", [_tuple4(10, "::1", 5555, "::1", 22), encode_fixed("flags32", 0)], ret=7,
        syscall_nr=SYSCALLS["x86_64"]["accept4"],
    )
    ev = Decoder("x86_64", 0).decode(rec)
    assert ev.params["tuple"] == SocketTuple(10, "::1", 5555, "::1", 22)
    assert str(ev.params["tuple"]) == "::1:5555->::1:22"
    assert (ev.params["fd"], ev.params["port"], ev.params["family"]) == (7, 5555, 10)


@pytest.mark.usefixtures("decoder_path")
def test_empty_param_decodes_as_none() -> None:
    rec = encode_record("openat", [encode_fixed("fd", -100), b"", encode_fixed("flags32", 0),
                                   encode_fixed("mode", 0)], ret=-14, flags=2,
                        syscall_nr=SYSCALLS["x86_64"]["openat"])
    ev = Decoder("x86_64", 0).decode(rec)
    assert ev.params["name"] is None and ev.params["dirfd"] == -100


@pytest.mark.usefixtures("decoder_path")
def test_stream_alignment_and_errors() -> None:
    recs = [
        encode_record("close", [encode_fixed("fd", i)], syscall_nr=3, pid=i) for i in range(5)
    ] + [encode_record("chdir", [b"/x\0"], syscall_nr=80)]
    stream = frame_records(recs)
    assert len(stream) == sum(len(r) + (-len(r) % 8) for r in recs)
    evs = decode_events(stream, arch="x86_64", epoch_offset_ns=0)
    assert [e.type for e in evs] == ["close"] * 5 + ["chdir"]
    assert [e.params.get("fd") for e in evs[:5]] == list(range(5))
    with pytest.raises(DecodeError):
        decode_events(stream[:-6], arch="x86_64", epoch_offset_ns=0)  # cuts into chdir
    bad = bytearray(recs[0])
    struct.pack_into("=H", bad, _schema.HDR_OFFSETS["type"], 250)
    with pytest.raises(DecodeError, match="unknown event type"):
        Decoder("x86_64", 0).decode(bytes(bad))


def _schema_gen() -> Any:
    """driver/schema/gen.py as a module (it is a script, not a package member)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rtcap_schema_gen",
                                                  REPO / "driver" / "schema" / "gen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_earlier_revisions_are_this_schema_without_their_optional_params() -> None:
    """Each listed earlier revision is rebuilt from events.yaml (its params and sources
    dropped) and hashes to the listed value, so its records are exactly this revision's
    records cut short; gen.py refuses a list that does not hold."""
    gen = _schema_gen()
    data = gen.load()
    revs = data["earlier_revisions"]
    assert [r["hash"] for r in revs] == list(_schema.EARLIER_SCHEMA_HASHES)
    assert 0x6AC4A0ED0C144BBE in _schema.EARLIER_SCHEMA_HASHES  # before trusted_exepath
    for i, rev in enumerate(revs):
        old = gen.earlier_schema(data, i)
        assert gen.schema_hash(old) == rev["hash"]
        assert not set(rev["lacks"]) & set(old["sources"])
    for ev in _schema.EVENTS:
        if ev["name"] in ("execve", "execveat"):
            assert ev["params"][-1] == ("trusted_exepath", "path")
            assert ev["min_params"] == len(ev["params"]) - 1
        else:
            assert ev["min_params"] == len(ev["params"])

    wrong = {**data, "earlier_revisions": [{"hash": revs[0]["hash"] ^ 1, "lacks": ["exe_path"]}]}
    with pytest.raises(gen.SchemaError, match="hashes to"):
        gen.validate(wrong)
    moved = copy.deepcopy(data)
    execve = next(e for e in moved["events"] if e["name"] == "execve")
    execve["params"].insert(0, execve["params"].pop())
    with pytest.raises(gen.SchemaError, match="optional params must come after"):
        gen.validate(moved)
    required = copy.deepcopy(data)
    for ev in required["events"]:
        for prm in ev["params"]:
            prm.pop("optional", None)
    with pytest.raises(gen.SchemaError, match="must all be optional"):
        gen.validate(required)


def _cut_params(record: bytes, keep: int) -> bytes:
    """The record as a producer of an earlier revision wrote it: only its first `keep`
    params (length table and data), the header's nparams and len to match."""
    fields = list(HDR.unpack_from(record))
    nparams = fields[_schema.HDR_FIELDS.index("nparams")]
    lens = struct.unpack_from(f"={nparams}H", record, HDR.size)
    data_at = HDR.size + 2 * nparams
    body = struct.pack(f"={keep}H", *lens[:keep]) + record[data_at : data_at + sum(lens[:keep])]
    fields[_schema.HDR_FIELDS.index("nparams")] = keep
    fields[_schema.HDR_FIELDS.index("len")] = HDR.size + len(body)
    return HDR.pack(*fields) + body


@pytest.mark.parametrize("event", ["execve", "execveat"])
@pytest.mark.usefixtures("decoder_path")
def test_earlier_revision_records_decode_without_their_optional_params(event: str) -> None:
    """A record of the revision before trusted_exepath (a capture recorded then) decodes
    with the param absent, alone and amid current records, on every decoder path; a
    record shorter than any revision wrote is still refused."""
    spec = SPECS[EVENT_IDS[event]]
    encoded, expected = _sample_params(spec)
    nr = SYSCALLS["x86_64"][event]
    current = encode_record(event, encoded, ret=0, syscall_nr=nr, pid=10, tid=10, comm="x")
    old = _cut_params(current, spec.min_params)
    assert spec.min_params == len(spec.names) - 1
    decoder = Decoder("x86_64", epoch_offset_ns=0)
    for ev in (decoder.decode(old), *decode_events(frame_records([current, old, current]),
                                                   arch="x86_64", epoch_offset_ns=0)[1:2]):
        assert ev.type == event and ev.pid == 10
        assert ev.params["trusted_exepath"] is None
        assert ev.params["filename"] == expected["filename"]
        assert ev.params["loginuid"] == expected["loginuid"]
    new = decoder.decode(current)
    assert new.params["trusted_exepath"] == expected["trusted_exepath"]
    with pytest.raises(DecodeError, match=f"expected {spec.min_params} to {len(spec.names)}"):
        decoder.decode(_cut_params(current, spec.min_params - 1))


def test_syscall_tables_cover_schema() -> None:
    for ev in _schema.EVENTS:
        for sc in ev["syscalls"] or []:
            assert any(sc in t for t in SYSCALLS.values()), sc
    assert SYSCALLS["x86_64"]["openat"] == 257
    assert SYSCALLS["arm64"]["openat"] == 56
