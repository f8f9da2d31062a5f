"""Replay a small attack scenario through rules written the way Falco's public rules are."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.engine.rules import Ruleset, load_rules
from runtime.engine.rules.parser import ConditionSyntaxError, parse_condition
from runtime.engine.state import SystemState
from runtime.events import Event

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rules"
CID = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"
O_WRONLY, O_CREAT, O_TRUNC = 0o1, 0o100, 0o1000


def ev(evt_type: str, tgid: int, comm: str, *, res: int = 0, ppid: int = 1,
       **params: Any) -> Event:
    return Event(ts=1_700_000_000_000_000_000, cpu=0, type=evt_type, syscall_nr=0, res=res,
                 pid=tgid, tid=tgid, ppid=ppid, uid=0, gid=0, comm=comm, cgroup_id=0,
                 params=dict(params))


def seeded_state(tmp_path: Path) -> SystemState:
    """/proc with a host bash (pid 300) and a container bash on a terminal (pid 400)."""
    for pid, name, cgroup, tty in ((300, "bash", "0::/user.slice/session-1.scope", 0),
                                   (400, "bash", f"0::/system.slice/docker-{CID}.scope",
                                    34816)):
        pdir = tmp_path / str(pid)
        (pdir / "task" / str(pid)).mkdir(parents=True)
        (pdir / "status").write_text(f"Name:\t{name}\nPPid:\t1\nUid:\t0\t0\t0\t0\n"
                                     "Gid:\t0\t0\t0\t0\n")
        (pdir / "cmdline").write_bytes(b"bash\0")
        (pdir / "stat").write_text(f"{pid} ({name}) S 1 {pid} {pid} {tty} 0\n")
        (pdir / "cgroup").write_text(cgroup + "\n")
        os.symlink("/bin/bash", pdir / "exe")
        os.symlink("/", pdir / "cwd")
    state = SystemState(passwd_path="/nonexistent", group_path="/nonexistent")
    assert state.seed_from_proc(str(tmp_path)) == 2
    return state


def replay(ruleset: Ruleset, state: SystemState, events: list[Event]) -> list[tuple[str, str]]:
    fired: list[tuple[str, str]] = []
    for event in events:
        state.update(event)
        for rule in ruleset.match(event, state):
            line, _ = rule.format_output(event, state)
            fired.append((rule.name, line))
    return fired


def test_scenario(tmp_path: Path) -> None:
    ruleset = load_rules([FIXTURES / "falco_style.yaml"])
    state = seeded_state(tmp_path)
    events = [
        # host: a write below /usr/bin by bash (alert), by dpkg and by the excepted installer
        ev("openat", 300, "bash", res=3, name="/usr/bin/evil", flags=O_WRONLY | O_CREAT),
        ev("openat", 301, "dpkg", res=3, name="/usr/bin/ok", flags=O_WRONLY, ppid=300),
        ev("openat", 302, "my-installer", res=3, name="/usr/bin/tool", flags=O_WRONLY),
        ev("openat", 302, "my-installer", res=4, name="/sbin/tool", flags=O_WRONLY),
        # container: bash on a tty forks and execs sh (alert twice: both terminal rules)
        ev("clone", 400, "bash", res=401),
        ev("execve", 401, "sh", ppid=400, filename="/bin/sh", exe="sh", args=["-i"]),
        # the host bash (no tty, no container) execs sh: nothing
        ev("clone", 300, "bash", res=303),
        ev("execve", 303, "sh", ppid=300, filename="/bin/sh", exe="sh", args=[]),
        # ptrace
        ev("ptrace", 304, "gdb", request=16, pid=401),
        ev("ptrace", 305, "injector", request=16, pid=401),
        ev("ptrace", 305, "injector", request=0, pid=0),
        # log truncation
        ev("openat", 306, "shred", res=3, name="/var/log/auth.log", flags=O_WRONLY | O_TRUNC),
        ev("openat", 306, "shred", res=4, name="/var/log/auth.log", flags=O_WRONLY),
        # outbound connections
        ev("connect", 307, "xmrig", fd=5, tuple="172.17.0.2:40000->45.9.148.1:4444"),
        ev("connect", 307, "xmrig", fd=6, tuple="172.17.0.2:40002->10.0.0.9:4444"),
        ev("connect", 307, "curl", fd=7, tuple="172.17.0.2:40004->45.9.148.1:443"),
    ]
    fired = replay(ruleset, state, events)
    assert [name for name, _ in fired] == [
        "Write below binary dir",
        "Write below binary dir",
        "Terminal shell in container",
        "Terminal shell in container (ours)",
        "PTRACE attached to process",
        "Clear log activities",
        "Outbound to suspicious port",
    ]
    lines = dict(fired)
    assert lines["Write below binary dir"].startswith(
        "File below a known binary directory opened for writing (user=<NA> command=")
    assert "file=/usr/bin/evil parent=" in fired[0][1]
    assert "file=/sbin/tool" in fired[1][1]
    assert lines["Terminal shell in container (ours)"] == (
        f"Shell in container (shell=sh tty=34816 container={CID[:12]})")
    assert f"container_id={CID[:12]} container_name=<NA>" in lines["Terminal shell in container"]
    assert lines["PTRACE attached to process"] == (
        "Detected ptrace PTRACE_ATTACH (proc=injector target=401)")
    assert lines["Outbound to suspicious port"] == (
        "Outbound connection (proc=xmrig connection=172.17.0.2:40000->45.9.148.1:4444"
        " proto=tcp)")


# ---- robustness: the parser only ever fails with its own error -------------------------------

TOKENS = ["proc.name", "fd.name", "evt.type", "=", "!=", "in", "and", "or", "not", "(", ")",
          ",", "'a b'", "\"x\"", "bash", "/etc", "exists", "<", "5", "contains", "[", "]",
          "proc.aname[2]", "macro_x", " ", "pmatch", "glob", "val(", "tolower("]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=14).map(" ".join) | st.text(max_size=40))
def test_parser_never_crashes(text: str) -> None:
    try:
        parse_condition(text)
    except ConditionSyntaxError as err:
        assert 0 <= err.offset <= len(text)


@pytest.mark.parametrize("depth", [10, 60])
def test_deep_nesting(depth: int) -> None:
    text = "(" * depth + "proc.name = a" + ")" * depth
    parse_condition(text)


def test_too_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConditionSyntaxError, match="deeper than"):
        parse_condition("(" * 500 + "proc.name = a" + ")" * 500)


# ---- robustness: random well-typed conditions compile and both match paths agree -----------

_STR_FIELDS = ["proc.name", "fd.name", "fd.directory", "proc.pname", "proc.aname",
               "proc.aname[1]", "evt.arg.name", "proc.cmdline", "container.id"]
_INT_FIELDS = ["proc.pid", "fd.num", "fd.sport", "proc.apid", "user.uid", "evt.rawres"]
_STR_OPS = ["=", "!=", "contains", "icontains", "startswith", "endswith", "glob", "in",
            "pmatch", "exists", "intersects"]
_INT_OPS = ["=", "!=", "<", "<=", ">", ">=", "in", "exists"]
_WORDS = ["bash", "cat", "/etc", "/etc/shadow", "sh*", "host", "ssh"]


@st.composite
def _checks(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        field, op = draw(st.sampled_from(_STR_FIELDS)), draw(st.sampled_from(_STR_OPS))
        values = draw(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=3))
    else:
        field, op = draw(st.sampled_from(_INT_FIELDS)), draw(st.sampled_from(_INT_OPS))
        values = [str(v) for v in draw(st.lists(st.integers(-5, 200), min_size=1,
                                                 max_size=3))]
    if op == "exists":
        return f"{field} exists"
    if op in ("in", "pmatch", "intersects"):
        return f"{field} {op} ({', '.join(values)})"
    return f"{field} {op} '{values[0]}'" if not values[0].lstrip("-").isdigit() \
        else f"{field} {op} {values[0]}"


@st.composite
def _conditions(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 2 or draw(st.booleans()):
        return draw(_checks())
    left = draw(_conditions(depth + 1))
    right = draw(_conditions(depth + 1))
    joiner = draw(st.sampled_from(["and", "or", "and not", "or not"]))
    return f"({left} {joiner} {right})"


@settings(max_examples=150, deadline=None)
@given(_conditions(), st.sampled_from(["openat", "execve", "getpid"]))
def test_random_conditions(condition: str, evt_type: str) -> None:
    from tests.test_rules_grammar import evaluate, make_event  # shared helpers

    event = make_event(evt_type, name="/etc/shadow", flags=0, filename="/bin/cat", exe="cat",
                       args=["/etc/shadow"])
    for wrapped in (condition, f"evt.type = {evt_type} and {condition}",
                    f"{condition} and {condition}"):
        evaluate(wrapped, event)  # raises if the two match paths disagree
