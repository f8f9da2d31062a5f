"""The text filter in front of a guard group's conjuncts, against each rule's condition.

A per-type matcher remembers, per fd.name, which of its rules' fd.name conjuncts held
(runtime/engine/rules/compiler.py, _Guards). On a name it has not seen, a cheap test of
the name comes first (_TextFilter): when it says no covered check can hold, the
conjuncts are tested with every such check taken as false. Its soundness rests on what
each check implies of fd.name, fd.directory and fd.filename, so here hypothesis writes
rules of such checks with literals of every shape ("/", "", a trailing "/", globs,
pmatch lists) and matches them against fds of every type whose names include the odd
ones the state never makes for files (no "/", "//", a trailing "/", empty), each fd
looked up by a close event, both ways.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runtime.engine.rules import load_rules
from runtime.engine.state import FdInfo, SystemState, ThreadInfo
from runtime.events import Event
from tests.engine_reference import nested_conditions

_LITERALS = ["/", "", "/etc", "/etc/", "etc", "/etc/shadow", "shadow", "a/b", "x.conf",
             ".conf", "/e", "ssh", "/.ssh/", "//"]
_GLOBS = ["*", "/etc/*", "*.conf", "/home/*/.ssh/*", "*ssh*", "/e?c/*", "[/]etc*", "shad*"]
_FIELDS = ["fd.name", "fd.directory", "fd.filename"]
_OPS = ["=", "!=", "startswith", "endswith", "contains", "icontains"]
_NAMES = ["", "/", "//", "/etc", "/etc/", "/etc/shadow", "/etc//shadow", "etc/shadow",
          "shadow", "/tmp/out.1", "/home/u/.ssh/id_rsa", "/a/b/x.conf", "x.conf",
          "10.0.0.2:40000->10.1.2.3:443", "/run/docker.sock", "/ETC/SSH", "a/b"]
_TYPECHARS = [("file", "f"), ("directory", "d"), ("ipv4", "4"), ("unix", "u")]
# Every name with every fd type, once per example: a rule's odd literal meets each.
_FDS = [(name, kind) for name in _NAMES for kind in _TYPECHARS]


def _quote(text: str) -> str:
    return json.dumps(text)


@st.composite
def _atom(draw: st.DrawFn) -> str:
    field = draw(st.sampled_from(_FIELDS))
    kind = draw(st.sampled_from(["op", "op", "in", "glob", "pmatch"]))
    if kind == "in":
        items = draw(st.lists(st.sampled_from(_LITERALS), min_size=1, max_size=3))
        return f"{field} in ({', '.join(map(_quote, items))})"
    if kind == "pmatch":
        items = draw(st.lists(st.sampled_from(_LITERALS).filter(bool), min_size=1,
                              max_size=3))
        return f"{field} pmatch ({', '.join(map(_quote, items))})"
    if kind == "glob":
        return f"{field} glob {_quote(draw(st.sampled_from(_GLOBS)))}"
    return f"{field} {draw(st.sampled_from(_OPS))} {_quote(draw(st.sampled_from(_LITERALS)))}"




@st.composite
def _ruleset(draw: st.DrawFn) -> str:
    items = []
    for i in range(draw(st.integers(2, 8))):
        cond = f"evt.type = close and {draw(nested_conditions(_atom, 2, ('or',)))}"
        if draw(st.booleans()):
            cond += " and fd.typechar = f"
        items.append({"rule": f"r{i}", "desc": "d", "condition": cond, "output": "o",
                      "priority": "WARNING"})
    return json.dumps(items)


def _rules(*conditions: str) -> str:
    return json.dumps([{"rule": f"r{i}", "desc": "d", "condition": f"evt.type = close and {c}",
                        "output": "o", "priority": "WARNING"} for i, c in enumerate(conditions)])


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_ruleset(), st.permutations(_FDS))
# What each derived field implies at its edges: the root directory, a name without "/".
@example(_rules('fd.directory = "/"', 'fd.name = "x.conf"'), _FDS)
@example(_rules('fd.filename in (shadow, "x.conf")', 'fd.name startswith "/tmp"'), _FDS)
@example(_rules('fd.directory pmatch ("/")', 'fd.filename glob "shad*"'), _FDS)
def test_guard_text_filter_answers_as_each_rule_does(
        rules: str, fds: list[tuple[str, tuple[str, str]]]) -> None:
    ruleset = load_rules([], extra_texts=[("generated.yaml", rules)])
    state = SystemState(passwd_path="/nonexistent", group_path="/nonexistent")
    state.threads[100] = ThreadInfo(tid=100, pid=100, ppid=1, comm="cat")
    for n, (name, (fd_type, typechar)) in enumerate(fds):
        # Rows as /proc seeding or a socket's connect would leave them, any name at all.
        state.fds.setdefault(100, {})[3] = FdInfo(3, fd_type, typechar, name)
        ev = Event(ts=1_000 + n, cpu=0, type="close", syscall_nr=0, res=0, pid=100, tid=100,
                   ppid=1, uid=0, gid=0, comm="cat", cgroup_id=0, params={"fd": 3})
        state.update(ev)
        expected = tuple(r for r in ruleset.rules_for("close") if r.match(ev, state))
        assert ruleset.match(ev, state) == expected, (name, typechar,
                                                      [r.condition for r in expected])
