"""The per-event-type matchers against each rule's own condition, on generated rules.

A ruleset's matcher for one event type (runtime/engine/rules/compiler.py,
compile_type_dispatch) tests its rules in an order of its own choosing, merges tests of
one field, and tests the guards several rules share once per distinct field value,
remembering the answer. None of that may change which rules match: here hypothesis
writes rules that share fields and values (so guard groups form and their remembered
answers are reused by later events with other values elsewhere), and every event of a
generated stream is matched both ways.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runtime.engine.capture import AF_INET
from runtime.engine.fields import resolve_field
from runtime.engine.rules import load_rules
from runtime.engine.state import SystemState
from runtime.events import Event, SocketTuple
from tests.engine_reference import nested_conditions

_NAMES = ["sh", "bash", "cat", "nginx", "python3", "sshd"]
_PATHS = ["/etc/shadow", "/etc/passwd", "/tmp/x", "/home/u/.ssh/id_rsa", "/dev/null",
          "/var/log/syslog", "/root/.bashrc", "/etc/cron.d/job"]
# Opened besides: a directory's name, the root, a relative path the state resolves.
_EVENT_PATHS = [*_PATHS, "/etc", "/", "../etc//shadow"]
_ATOMS = [
    "proc.name = {name}", "proc.name in ({name}, {name2})", "proc.name != {name}",
    "proc.pname = {name}", "proc.pname in ({name}, {name2})", "proc.aname[2] = {name}",
    "fd.name = {path}", "fd.name in ({path}, {path2})", "fd.name startswith /etc",
    "fd.name startswith {dir}", "fd.name endswith {file}", "fd.name contains ssh",
    "fd.name glob '/home/*/.ssh/*'", "fd.directory = {dir}", "fd.directory in ({dir}, /tmp)",
    "fd.filename in ({file}, passwd)", "fd.typechar = f", "fd.num >= 0", "evt.rawres >= 0",
    "evt.rawres = 0", "container.id != host", "container.id = host",
    "proc.cmdline contains {name}", "proc.cmdline startswith {name}", "user.uid = 0",
    "user.uid in (0, 1000)", "evt.is_open_read = true", "evt.is_open_write = true",
    "proc.pname exists", "fd.sip = 10.1.2.3", "fd.sport in (22, 443)", "fd.l4proto = tcp",
    "evt.num = 0", "proc.exe endswith {name}",
    # Fields read inline (ancestors, parent, network ends, container metadata on the host).
    "proc.aname[3] = {name}", "proc.aname[1] in ({name}, {name2})", "proc.pcmdline contains sh",
    "proc.pexe endswith {name}", "user.name = root", "fd.nameraw contains etc",
    "evt.res = SUCCESS", "fd.sockfamily = ip", "fd.snet in (10.0.0.0/8)",
    "fd.net in (10.1.0.0/16, 8.8.0.0/16)", "container.image.repository = nginx",
    "container.name = host", "proc.env contains HOME",
    # Read inline without the state's methods: the unrolled ancestor walk (and the method
    # past it), the process's arguments, a variable of its environment.
    "proc.aname[2] in ({name}, {name2})", "proc.aname[4] = {name}", "proc.aname[5] = {name}",
    "proc.args contains {name}", "proc.env[HOME] = /root", "proc.env icontains Path",
    # Several texts searched at once, and conjuncts `or` branches share (factored out).
    "(proc.cmdline contains {name} or proc.cmdline contains sh or proc.cmdline contains at"
    " or proc.cmdline contains x)",
    "(proc.cmdline icontains CAT or proc.cmdline icontains {name} or proc.cmdline icontains SH"
    " or proc.cmdline icontains Py)",
    "((proc.name = {name} and fd.name startswith /etc) or (proc.name = {name} and"
    " fd.name endswith {file}) or proc.name = {name2})",
]


@st.composite
def _atom(draw: st.DrawFn) -> str:
    template = draw(st.sampled_from(_ATOMS))
    path = draw(st.sampled_from(_PATHS))
    return template.format(
        name=draw(st.sampled_from(_NAMES)), name2=draw(st.sampled_from(_NAMES)),
        path=path, path2=draw(st.sampled_from(_PATHS)),
        dir=path.rsplit("/", 1)[0] or "/", file=path.rsplit("/", 1)[1])




_TYPES = st.sampled_from(["evt.type in (open, openat)", "evt.type = execve",
                          "evt.type = connect", "evt.type in (openat, execve, connect)"])


@st.composite
def _ruleset(draw: st.DrawFn) -> str:
    items = []
    for i in range(draw(st.integers(2, 9))):
        cond = f"{draw(_TYPES)} and {draw(nested_conditions(_atom, 2))}"
        items.append({"rule": f"r{i}", "desc": "d", "condition": cond,
                      "output": "o %proc.name", "priority": "WARNING"})
    return json.dumps(items)


@st.composite
def _events(draw: st.DrawFn) -> list[Event]:
    out = []
    for n in range(draw(st.integers(5, 30))):
        kind = draw(st.sampled_from(["openat", "openat", "execve", "connect", "clone"]))
        pid = draw(st.integers(100, 104))
        comm = draw(st.sampled_from(_NAMES))
        params: dict[str, object]
        res = draw(st.sampled_from([0, 3, 4, -2]))
        if kind == "openat":
            params = {"dirfd": -100, "name": draw(st.sampled_from(_EVENT_PATHS)),
                      "flags": draw(st.sampled_from([0, 1, 2, 0o101, 0o200000])), "mode": 0}
        elif kind == "execve":
            res = 0
            params = {"filename": f"/usr/bin/{comm}", "args": [draw(st.sampled_from(_NAMES))],
                      "cwd": "/root"}
            if draw(st.booleans()):
                params["env"] = ["HOME=/root", "PATH=/bin"]
        elif kind == "connect":
            params = {"fd": 3, "tuple": SocketTuple(
                AF_INET, "10.0.0.2", 40000, draw(st.sampled_from(["10.1.2.3", "8.8.8.8"])),
                draw(st.sampled_from([22, 443, 80])))}
        else:
            res = draw(st.integers(100, 104))
            params = {"flags": 0x1200011}
        out.append(Event(ts=1_000 + n, cpu=0, type=kind, syscall_nr=0, res=res, pid=pid,
                         tid=pid, ppid=draw(st.integers(99, 104)), uid=draw(
                             st.sampled_from([0, 1000])), gid=0, comm=comm, cgroup_id=0,
                         params=params))
    return out


def _every_open_and_exec() -> list[Event]:
    """An open of every path and an exec with every argument, by every process name."""
    out: list[Event] = []
    for comm in _NAMES:
        for path in _EVENT_PATHS:
            out.append(Event(ts=1_000 + len(out), cpu=0, type="openat", syscall_nr=0, res=3,
                             pid=100, tid=100, ppid=99, uid=0, gid=0, comm=comm, cgroup_id=0,
                             params={"dirfd": -100, "name": path, "flags": 0, "mode": 0}))
        for arg in _NAMES:
            out.append(Event(ts=1_000 + len(out), cpu=0, type="execve", syscall_nr=0, res=0,
                             pid=101, tid=101, ppid=99, uid=0, gid=0, comm=comm, cgroup_id=0,
                             params={"filename": f"/usr/bin/{comm}", "args": [arg],
                                     "cwd": "/root"}))
    return out


# Conjuncts shared by `or` branches (factored out), and several texts searched at once.
_SHARED_AND_MERGED = json.dumps([
    {"rule": f"r{i}", "desc": "d", "condition": f"evt.type in (openat, execve) and {cond}",
     "output": "o", "priority": "WARNING"} for i, cond in enumerate([
        "((proc.name = cat and fd.name startswith /etc) or (proc.name = cat and fd.name"
        " endswith x) or proc.name = sh)",
        "((proc.name in (cat, sh) and fd.name = /tmp/x) or (proc.name in (sh, cat) and"
        " fd.name = /dev/null) or (proc.name = nginx and fd.name = /tmp/x))",
        "not ((proc.name = bash and proc.cmdline contains sh) or (proc.name = bash and"
        " proc.cmdline contains at))",
        "(proc.cmdline contains bash or proc.cmdline contains ca or proc.cmdline contains ng"
        " or proc.cmdline contains pyth)",
        "(proc.cmdline icontains SSHD or proc.cmdline icontains Cat or proc.cmdline icontains"
        " X or proc.cmdline icontains nGiNx)",
    ])])


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_ruleset(), _events())
@example(_SHARED_AND_MERGED, _every_open_and_exec())
def test_type_matchers_answer_as_each_rule_does(rules: str, events: list[Event]) -> None:
    ruleset = load_rules([], extra_texts=[("generated.yaml", rules)])
    state = SystemState(passwd_path="/nonexistent", group_path="/nonexistent")
    for ev in events:
        state.update(ev)
        expected = tuple(r for r in ruleset.rules_for(ev.type) if r.match(ev, state))
        assert ruleset.match(ev, state) == expected, (ev, [r.condition for r in expected])


# Fields whose inline code (what the matchers run) re-implements a state method or helper
# (SystemState.parent_of / ancestor, the environment of the main thread, the argument and
# path texts): it must give what the field's extractor gives.
_INLINED = [("proc.pname", None), ("proc.pcmdline", None), ("proc.pexe", None),
            ("proc.aname", "0"), ("proc.aname", "1"), ("proc.aname", "2"), ("proc.aname", "3"),
            ("proc.aname", "4"), ("proc.aname", "5"), ("proc.apid", "2"),
            ("proc.env", None), ("proc.env", "HOME"), ("proc.env", "NONE"),
            ("proc.args", None), ("proc.cmdline", None), ("fd.nameraw", None)]


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_events())
def test_inline_field_code_reads_what_the_extractor_reads(events: list[Event]) -> None:
    readers = []
    for name, arg in _INLINED:
        bf = resolve_field(name, arg)
        assert bf.inline is not None
        ns: dict[str, object] = dict(bf.helpers)
        exec(f"def read(ev, st):\n    _th = st.thread_of(ev)\n    _f = st.fd_of(ev)\n"
             f"    return {bf.inline}\n", ns)
        readers.append((bf, ns["read"]))
    state = SystemState(passwd_path="/nonexistent", group_path="/nonexistent")
    for ev in events:
        state.update(ev)
        for bf, read in readers:
            assert read(ev, state) == bf.extract(ev, state), (bf.text, ev)  # type: ignore[operator]
