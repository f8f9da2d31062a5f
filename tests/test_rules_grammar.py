"""Condition grammar and operator semantics, evaluated on replayed events.

Each condition is loaded as a one-rule file and checked through both evaluation paths the
engine has (`CompiledRule.match` and the per-event-type `Ruleset.match`), which must agree.
"""

from __future__ import annotations

from typing import Any, TypedDict

import pytest

from runtime.engine.rules import RuleLoadError, load_rules
from runtime.engine.rules.ast import And, Check, FieldRef, ListRef, ListValue, MacroRef, Not, Or
from runtime.engine.rules.parser import ConditionSyntaxError, parse_condition
from runtime.engine.state import SystemState
from runtime.events import Event

PRELUDE = """
- list: shells
  items: [bash, sh]
- list: more_shells
  items: [shells, zsh]
- macro: is_open
  condition: evt.type in (open, openat)
- macro: is_exec
  condition: evt.type = execve
"""


def make_event(evt_type: str = "openat", *, res: int = 3, pid: int = 100, tid: int | None = None,
               ppid: int = 50, uid: int = 0, gid: int = 0, comm: str = "cat",
               **params: Any) -> Event:
    return Event(ts=1_700_000_000_123_456_789, cpu=1, type=evt_type, syscall_nr=257, res=res,
                 pid=pid, tid=tid if tid is not None else pid, ppid=ppid, uid=uid, gid=gid,
                 comm=comm, cgroup_id=0, params=dict(params))


def world() -> SystemState:
    """bash(50) -> cat(100) with the parent chain init(1) -> sshd(10) -> bash(50)."""
    st = SystemState(passwd_path="/nonexistent", group_path="/nonexistent")
    st.update(make_event("execve", res=0, pid=10, ppid=1, comm="sshd", filename="/usr/sbin/sshd",
                         exe="sshd", args=["-D"]))
    st.update(make_event("execve", res=0, pid=50, ppid=10, comm="bash", filename="/bin/bash",
                         exe="-bash", args=[], cwd="/root"))
    st.update(make_event("clone", res=100, pid=50, ppid=10, comm="bash"))
    st.update(make_event("execve", res=0, pid=100, ppid=50, comm="cat",
                         filename="/usr/bin/cat", exe="cat", args=["/etc/shadow", "-n"]))
    return st


def evaluate(condition: str, ev: Event, st: SystemState | None = None) -> bool:
    text = PRELUDE + f"""
- rule: probe
  desc: test rule
  condition: {condition!r}
  output: probe
  priority: INFO
"""
    ruleset = load_rules([], extra_texts=[("probe.yaml", text)])
    (rule,) = ruleset.rules
    state = st if st is not None else world()
    state.update(ev)
    direct = rule.match(ev, state)
    dispatched = rule in ruleset.match(ev, state)
    assert direct == dispatched, f"match paths disagree on {condition!r}"
    return direct


class OpenParams(TypedDict):
    name: str
    flags: int
    dirfd: int
    mode: int


OPEN_SHADOW: OpenParams = {"name": "/etc/shadow", "flags": 0, "dirfd": -100, "mode": 0}


# ---- parser ---------------------------------------------------------------------------------

def _tree(expr: object) -> str:
    """The tree of connectives over macro names, e.g. `Or(a, And(b, c))`."""
    if isinstance(expr, MacroRef):
        return expr.name
    if isinstance(expr, Not):
        return f"Not({_tree(expr.child)})"
    if isinstance(expr, And | Or):
        return f"{type(expr).__name__}({', '.join(_tree(c) for c in expr.children)})"
    return repr(expr)


@pytest.mark.parametrize(
    ("condition", "tree"),
    [
        pytest.param("a or b and c", "Or(a, And(b, c))", id="and-binds-tighter-than-or"),
        pytest.param("not a and b", "And(Not(a), b)", id="not-binds-tighter-than-and"),
        pytest.param("not not a", "a", id="double-not-cancels"),
        pytest.param("(a or b) and c", "And(Or(a, b), c)", id="parentheses-group"),
        pytest.param("not(a or b)", "Not(Or(a, b))", id="not-with-parenthesis-no-blank"),
    ],
)
def test_connective_structure(condition: str, tree: str) -> None:
    assert _tree(parse_condition(condition)) == tree


def test_field_argument_forms() -> None:
    expr = parse_condition("proc.aname[2] = bash and evt.arg[0] = 3 and evt.arg.name = x")
    assert isinstance(expr, And)
    first, second, third = expr.children
    assert isinstance(first, Check) and first.left == FieldRef("proc.aname", "2", 0)
    assert isinstance(second, Check) and isinstance(second.left, FieldRef)
    assert second.left.arg == "0"
    assert isinstance(third, Check) and isinstance(third.left, FieldRef)
    assert third.left.name == "evt.arg.name"


def test_list_forms() -> None:
    expr = parse_condition("proc.name in (a, 'b c', \"d\") and proc.name in shells")
    assert isinstance(expr, And)
    first, second = expr.children
    assert isinstance(first, Check) and isinstance(first.right, ListValue)
    assert [v.text for v in first.right.items] == ["a", "b c", "d"]
    assert isinstance(second, Check) and isinstance(second.right, ListRef)


def test_quoted_string_escapes() -> None:
    expr = parse_condition(r"proc.cmdline = 'it\'s \"x\"'")
    assert isinstance(expr, Check)
    assert expr.right is not None and getattr(expr.right, "text", None) == "it's \"x\""


def test_bare_values_keep_path_characters() -> None:
    expr = parse_condition("evt.dir=< and fd.name=/etc/ld.so.preload")
    assert isinstance(expr, And)
    values = [c.right.text for c in expr.children if isinstance(c, Check)  # type: ignore[union-attr]
              and c.right is not None]
    assert values == ["<", "/etc/ld.so.preload"]


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        ("proc.name equals bash", 10, "unknown operator 'equals'"),
        ("proc.name", 9, "expected an operator"),
        ("(proc.name = a", 14, "expected ')'"),
        ("proc.name = a)", 13, "unbalanced ')'"),
        ("proc.name = a b", 14, "unexpected 'b'"),
        ("proc.name = ", 12, "expected a value"),
        ("fd.sport > abc", 11, "expected a number"),
        ("proc.name in 'a'", 13, "expected '(' or a list name"),
        ("proc.name = 'open", 12, "unterminated quoted string"),
        ("", 0, "empty condition"),
        ("and", 0, "expected a field check"),
    ],
)
def test_syntax_errors_carry_offsets(text: str, offset: int, fragment: str) -> None:
    with pytest.raises(ConditionSyntaxError) as info:
        parse_condition(text)
    assert fragment in info.value.message
    assert info.value.offset == offset


# ---- operators: one true and one false case each ---------------------------------------------

OPERATOR_CASES = [
    # (condition, expected) on `cat /etc/shadow` opened read-only by pid 100 (uid 0)
    ("fd.name = /etc/shadow", True),
    ("fd.name = /etc/passwd", False),
    ("fd.name == /etc/shadow", True),
    ("fd.name != /etc/shadow", False),
    ("fd.name != /etc/passwd", True),
    ("proc.pid < 101", True),
    ("proc.pid < 100", False),
    ("proc.pid <= 100", True),
    ("proc.pid <= 99", False),
    ("proc.pid > 99", True),
    ("proc.pid > 100", False),
    ("proc.pid >= 100", True),
    ("proc.pid >= 0x65", False),
    ("proc.name in (ls, cat)", True),
    ("proc.name in (ls, dog)", False),
    ("proc.name in (shells)", False),
    ("proc.pname in (shells)", True),
    ("proc.pname in (more_shells)", True),
    ("proc.pname in shells", True),
    ("proc.name intersects (cat, dog)", True),
    ("proc.name intersects (dog)", False),
    ("proc.aname intersects (sshd, nginx)", True),
    ("proc.aname intersects (nginx)", False),
    ("fd.name contains shad", True),
    ("fd.name contains SHAD", False),
    ("fd.name icontains SHAD", True),
    ("fd.name icontains passwd", False),
    ("fd.name startswith /etc/", True),
    ("fd.name startswith /usr/", False),
    ("fd.name endswith dow", True),
    ("fd.name endswith passwd", False),
    ("fd.name glob '/etc/sha*'", True),
    ("fd.name glob '/etc/pa?swd'", False),
    ("fd.name iglob '/ETC/*'", True),
    ("fd.name pmatch (/etc, /usr/bin)", True),
    ("fd.name pmatch (/et, /usr/bin)", False),
    ("fd.name pmatch (/etc/shadow)", True),
    ("fd.name exists", True),
    ("proc.aname[9] exists", False),
    ("fd.name bcontains 736861646f77", True),
    ("fd.name bcontains 00ff", False),
    ("fd.name bstartswith 2f657463", True),
    ("fd.name regex 'sha[a-z]+$'", True),
    ("fd.name regex '^/usr'", False),
    ("proc.cmdline = 'cat /etc/shadow -n'", True),
    ("proc.args contains '-n'", True),
    ("tolower(proc.name) = cat and toupper(proc.name) = CAT", True),
    ("basename(fd.name) = shadow", True),
    ("proc.name = val(proc.pname)", False),
    ("proc.ppid = val(proc.apid[1])", True),
    ("evt.arg[0] = /etc/shadow and evt.arg.dirfd = -100", True),
    ("evt.arg[1] = O_WRONLY", False),
    ("evt.rawarg.dirfd < 0", True),
    ("evt.rawarg.dirfd > 0", False),
    ("evt.arg.nosuchparam exists", False),
    ("evt.type = openat and evt.num > 0 and evt.cpu = 1", True),
]


@pytest.mark.parametrize(("condition", "expected"), OPERATOR_CASES)
def test_operator(condition: str, expected: bool) -> None:
    ev = make_event("openat", res=3, **OPEN_SHADOW)
    assert evaluate(condition, ev) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("evt.type = openat and proc.name = cat or proc.name = nope", True),
        ("proc.name = nope and evt.type = openat or proc.name = cat", True),
        ("proc.name = nope and (evt.type = openat or proc.name = cat)", False),
        ("not proc.name = nope and evt.type = openat", True),
        ("not (proc.name = cat and evt.type = openat)", False),
        ("not proc.name = cat or evt.type = openat", True),
        ("is_open and not is_exec", True),
        ("is_exec or not is_open", False),
    ],
)
def test_boolean_logic(condition: str, expected: bool) -> None:
    assert evaluate(condition, make_event("openat", **OPEN_SHADOW)) is expected


def test_missing_values_compare_false_either_way() -> None:
    ev = make_event("openat", **OPEN_SHADOW)
    assert evaluate("proc.aname[7] = bash", ev) is False
    assert evaluate("proc.aname[7] != bash", ev) is False
    assert evaluate("not proc.aname[7] exists", ev) is True


def test_open_flag_fields_and_rendering() -> None:
    write = make_event("openat", name="/bin/evil", flags=0o1 | 0o100 | 0o1000, mode=0o755)
    assert evaluate("evt.is_open_write = true and evt.is_open_read = false", write)
    assert evaluate("evt.arg.flags contains O_WRONLY and evt.arg.flags contains O_CREAT", write)
    assert evaluate("evt.is_open_exec = true", write)
    assert evaluate("evt.rawarg.flags = 577", write)
    read = make_event("openat", **OPEN_SHADOW)
    assert evaluate("evt.is_open_read = true and evt.is_open_write = false", read)
    assert evaluate("evt.arg.flags = O_RDONLY", read)
    assert evaluate("evt.is_open_exec = false", read)
    rdwr = make_event("openat", name="/etc/passwd", flags=0o2)
    assert evaluate("evt.is_open_read = true and evt.is_open_write = true", rdwr)


def test_failed_open_still_has_its_path() -> None:
    ev = make_event("openat", res=-13, **OPEN_SHADOW)
    assert evaluate("fd.name = /etc/shadow and evt.failed = true and evt.res = EACCES", ev)
    assert evaluate("fd.num >= 0", ev) is False
    assert evaluate("evt.rawres = -13", ev)


def test_relative_open_resolves_against_cwd() -> None:
    st = world()
    st.update(make_event("chdir", res=0, path="/etc"))
    ev = make_event("openat", name="../etc/./shadow", flags=0, dirfd=-100)
    assert evaluate("fd.name = /etc/shadow and fd.directory = /etc and fd.filename = shadow",
                    ev, st)


def test_ancestor_fields() -> None:
    ev = make_event("openat", **OPEN_SHADOW)
    assert evaluate("proc.aname[0] = cat and proc.aname[1] = bash and proc.aname[2] = sshd", ev)
    assert evaluate("proc.aname = sshd", ev)
    assert evaluate("proc.aname = nginx", ev) is False
    assert evaluate("proc.apid[1] = 50 and proc.apid[2] = 10", ev)
    assert evaluate("proc.aname in (nginx, sshd)", ev)
    assert evaluate("proc.pname = bash and proc.pcmdline = bash", ev)


def test_network_fields() -> None:
    st = world()
    st.update(make_event("socket", res=5, domain=2, type=1, proto=0))
    ev = make_event("connect", res=0, fd=5, tuple="10.0.0.2:40000->93.184.216.34:443")
    assert evaluate("fd.sip = 93.184.216.34 and fd.sport = 443 and fd.l4proto = tcp", ev, st)
    assert evaluate("fd.cip = 10.0.0.2 and fd.cport = 40000 and fd.typechar = 4", ev, st)
    assert evaluate("fd.rip = 93.184.216.34 and fd.lport = 40000", ev, st)
    assert evaluate("fd.net = 10.0.0.0/8 and fd.snet in (93.184.0.0/16)", ev, st)
    assert evaluate("fd.snet = 10.0.0.0/8", ev, st) is False
    assert evaluate("fd.sport in (80, 443) and fd.sport != 80", ev, st)
    assert evaluate("fd.name = '10.0.0.2:40000->93.184.216.34:443'", ev, st)


def test_udp_socket_protocol_comes_from_socket_call() -> None:
    st = world()
    st.update(make_event("socket", res=6, domain=2, type=2 | 0o2000000, proto=0))
    ev = make_event("connect", res=0, fd=6, tuple="10.0.0.2:5353->8.8.8.8:53")
    assert evaluate("fd.l4proto = udp and fd.sport = 53", ev, st)


def test_exec_fields() -> None:
    st = world()
    ev = make_event("execve", res=0, pid=200, ppid=100, comm="sh", filename="/bin/sh",
                    exe="sh", args=["-c", "id"], cwd="/tmp")
    assert evaluate(
        "evt.type = execve and proc.name = sh and proc.exepath = /bin/sh and proc.exe = sh "
        "and proc.args = '-c id' and proc.cmdline = 'sh -c id' and proc.cwd = /tmp "
        "and evt.arg.filename = /bin/sh", ev, st)


def test_user_and_group_names(tmp_path: Any) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/a:/bin/sh\n")
    group = tmp_path / "group"
    group.write_text("root:x:0:\nstaff:x:1000:\n")
    st = SystemState(passwd_path=str(passwd), group_path=str(group))
    ev = make_event("openat", uid=1000, gid=1000, **OPEN_SHADOW)
    assert evaluate("user.name = alice and user.uid = 1000 and group.name = staff", ev, st)
    ev2 = make_event("openat", uid=4242, gid=0, **OPEN_SHADOW)
    assert evaluate("user.name exists", ev2, st) is False


def test_container_fields_default_to_host() -> None:
    ev = make_event("openat", **OPEN_SHADOW)
    assert evaluate("container.id = host and container.name = host", ev)


def test_bool_and_dir_fields() -> None:
    ev = make_event("openat", **OPEN_SHADOW)
    assert evaluate("evt.dir = <", ev)
    assert evaluate("evt.dir = >", ev) is False
    assert evaluate("evt.failed = false", ev)


# ---- semantic errors at load ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ("proc.pid contains 1", "operator 'contains' cannot be used with int field 'proc.pid'"),
        ("proc.pid = abc", "'abc' is not a number"),
        ("evt.failed = maybe", "'maybe' is not true or false"),
        ("fd.sip = not-an-ip", "'not-an-ip' is not an IP address"),
        ("fd.name bcontains xyz", "'xyz' is not a hex byte string"),
        ("proc.name in nosuchlist", "unknown list 'nosuchlist'"),
        ("proc.aname[x] = a", "the argument must be a number"),
        ("proc.name[1] = a", "takes no argument"),
        ("evt.arg = a", "needs an argument"),
        ("fd.name regex '('", "bad regular expression"),
    ],
)
def test_semantic_errors(condition: str, fragment: str) -> None:
    with pytest.raises(RuleLoadError) as info:
        evaluate(condition, make_event())
    assert fragment in str(info.value)
    assert "rule 'probe'" in str(info.value)


@pytest.mark.parametrize(("condition", "expected"), [
    ("proc.aname[7] != a or proc.aname[7] = b or not proc.aname[7] exists", True),
    ("proc.aname[7] = a or proc.aname[7] = b", False),
    ("fd.name startswith /etc and fd.name endswith dow and fd.name != x", True),
    ("fd.directory = /etc and fd.directory != /usr and fd.directory exists", True),
    ("proc.cmdline contains shadow and proc.cmdline contains -n", True),
    ("proc.name icontains CA and proc.name icontains AT", True),
])
def test_repeated_fields_are_read_once_but_judged_each_time(condition: str,
                                                           expected: bool) -> None:
    assert evaluate(condition, make_event("openat", **OPEN_SHADOW)) is expected


def test_shared_fields_across_rules_on_events_without_fd() -> None:
    rules = "".join(f"""
- rule: r{i}
  desc: d
  condition: fd.name startswith /tmp/{i} or fd.directory = /x{i} or proc.name = p{i}
  output: o
  priority: info
""" for i in range(4))
    ruleset = load_rules([], extra_texts=[("shared.yaml", rules)])
    st = world()
    ev = make_event("getpid", comm="p2")
    st.update(ev)
    assert [r.name for r in ruleset.match(ev, st)] == ["r2"]
    opened = make_event("openat", name="/tmp/3/file", flags=0)
    st.update(opened)
    assert [r.name for r in ruleset.match(opened, st)] == ["r3"]


def test_list_fields_used_twice_compile() -> None:
    ev = make_event("openat", **OPEN_SHADOW)
    assert evaluate("proc.aname = nginx or proc.aname contains ssh", ev)
    assert evaluate("proc.aname[2] = x or proc.aname[2] startswith ss", ev)
    assert evaluate("proc.apid > 40 and proc.apid < 60", ev)
