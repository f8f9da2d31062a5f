"""Rule files: items, overrides, exceptions, versions, indexing, outputs and load errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from runtime.engine.rules import (
    ENGINE_VERSION,
    CompiledRule,
    Priority,
    RuleLoadError,
    Ruleset,
    load_rules,
)
from runtime.engine.state import SystemState
from runtime.events import Event

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rules"


def make_event(evt_type: str = "openat", *, res: int = 3, pid: int = 100, ppid: int = 50,
               comm: str = "cat", uid: int = 0, **params: Any) -> Event:
    return Event(ts=1_700_000_000_123_456_789, cpu=0, type=evt_type, syscall_nr=0, res=res,
                 pid=pid, tid=pid, ppid=ppid, uid=uid, gid=0, comm=comm, cgroup_id=0,
                 params=dict(params))


def alerts(ruleset: Ruleset, events: list[Event], st: SystemState | None = None) -> list[str]:
    state = st or SystemState(passwd_path="/nonexistent", group_path="/nonexistent")
    out: list[str] = []
    for ev in events:
        state.update(ev)
        fast = [r.name for r in ruleset.match(ev, state)]
        slow = [r.name for r in ruleset.rules_for(ev.type) if r.match(ev, state)]
        assert fast == slow
        out.extend(fast)
    return out


def rules_text(text: str, *paths: Path) -> Ruleset:
    return load_rules(list(paths), extra_texts=[("inline.yaml", text)])


def load_error(*paths: Path, text: str | None = None) -> str:
    with pytest.raises(RuleLoadError) as info:
        load_rules(list(paths), extra_texts=[("inline.yaml", text)] if text else [])
    assert info.value.exit_code == 40
    return str(info.value)


def shadow_open(comm: str = "cat", name: str = "/etc/shadow") -> Event:
    return make_event("openat", comm=comm, name=name, flags=0, dirfd=-100)


# ---- loading and overriding -----------------------------------------------------------------

def test_base_rules_load_with_attributes() -> None:
    rs = load_rules([FIXTURES / "base.yaml"])
    names = [r.name for r in rs.rules]
    assert names == ["Read sensitive file", "Shell in container", "Module load"]
    read = rs.rules[0]
    assert read.priority is Priority.WARNING
    assert read.tags == ("filesystem", "mitre_credential_access")
    assert read.source == "syscall"
    assert read.desc == "A process read a file holding credentials."
    assert rs.rules[1].priority is Priority.NOTICE
    assert alerts(rs, [shadow_open(), shadow_open("sshd"), shadow_open(name="/etc/pam.conf")]) \
        == ["Read sensitive file", "Read sensitive file"]


def test_overrides_from_a_later_file() -> None:
    rs = load_rules([FIXTURES / "base.yaml", FIXTURES / "custom.yaml"])
    by_name = {r.name: r for r in rs.rules}
    assert "Shell in container" not in by_name  # `enabled: false` shorthand
    module = by_name["Module load"]
    assert module.priority is Priority.ERROR
    assert module.tags == ("kernel",)
    events = [
        shadow_open("backup-agent"),  # appended condition excludes it
        shadow_open("passwd-checker"),  # exception (passwd-checker, startswith /etc/shadow)
        shadow_open("passwd-checker", "/etc/sudoers"),  # exception does not cover this pair
        shadow_open("cat"),
    ]
    assert alerts(rs, events) == ["Read sensitive file", "Read sensitive file"]


def test_list_append_and_macro_append() -> None:
    extra = """
- rule: Shell in container
  enabled: true
  override:
    enabled: replace
"""
    rs = load_rules([FIXTURES / "base.yaml", FIXTURES / "custom.yaml"],
                    extra_texts=[("enable.yaml", extra)])
    fish = make_event("execve", res=0, comm="fish", filename="/usr/bin/fish", exe="fish")
    # `container` macro was appended with `or proc.name = inside-pretend`; fish is on the host.
    assert alerts(rs, [fish]) == []
    pretend = make_event("execve", res=0, comm="inside-pretend", filename="/x", exe="x")
    assert alerts(rs, [pretend]) == []  # not a shell
    rs2 = rules_text("""
- macro: container
  condition: or proc.name = fish
  override:
    condition: append
""", FIXTURES / "base.yaml", FIXTURES / "custom.yaml")
    assert alerts(rs2, [fish]) == []  # Shell in container is disabled by custom.yaml


def test_legacy_append() -> None:
    rs = load_rules([FIXTURES / "base.yaml", FIXTURES / "legacy_append.yaml"])
    read = rs.rules[0]
    assert read.condition.endswith("and not user.name = auditor")
    ksh = make_event("execve", res=0, comm="ksh", filename="/bin/ksh", exe="ksh")
    st = SystemState()
    st.update(ksh)
    shell_rule = next(r for r in rs.rules if r.name == "Shell in container")
    assert "ksh" in shell_rule.condition or shell_rule.match(ksh, st) is False


def test_redefinition_replaces() -> None:
    rs = rules_text("""
- rule: Module load
  desc: replaced
  condition: evt.type = init_module
  output: replaced
  priority: DEBUG
""", FIXTURES / "base.yaml")
    module = next(r for r in rs.rules if r.name == "Module load")
    assert module.desc == "replaced" and module.priority is Priority.DEBUG
    assert [r.name for r in rs.rules][-1] == "Module load"


def test_macros_and_lists_may_follow_their_users() -> None:
    rs = rules_text("""
- rule: Late
  desc: uses things defined below
  condition: later_macro and proc.name in (later_list)
  output: late
  priority: info
- macro: later_macro
  condition: evt.type = execve
- list: later_list
  items: [sh]
""")
    ev = make_event("execve", res=0, comm="sh", filename="/bin/sh", exe="sh")
    assert alerts(rs, [ev]) == ["Late"]


def test_enabled_false_rule_is_compiled_but_not_active() -> None:
    rs = rules_text("""
- rule: Off
  desc: disabled
  condition: evt.type = execve
  output: off
  priority: info
  enabled: false
""")
    assert rs.rules == ()
    text = load_error(text="""
- rule: Off but broken
  desc: disabled rules are still checked
  condition: evt.type = execve and proc.nope = 1
  output: off
  priority: info
  enabled: false
""")
    assert text.startswith("inline.yaml:4:36: rule 'Off but broken': unknown field 'proc.nope'")


@pytest.mark.parametrize(("version", "ok"), [
    ("0.31.0", True), (17, True), ("0.26", True), (ENGINE_VERSION, True),
    ("0.99.0", False), (999, False), ("1.0.0", False),
])
def test_required_engine_version(version: object, ok: bool) -> None:
    text = f"- required_engine_version: {version}\n"
    if ok:
        assert rules_text(text).rules == ()
    else:
        message = load_error(text=text)
        assert message.startswith("inline.yaml:1:28: required_engine_version: the rules require"
                                  f" engine version {version}, this engine is {ENGINE_VERSION}")


def test_priority_parse() -> None:
    assert Priority.parse("emergency") is Priority.EMERGENCY
    assert Priority.parse("Warning") is Priority.WARNING
    assert Priority.parse("INFO") is Priority.INFORMATIONAL
    assert Priority.parse("informational") is Priority.INFORMATIONAL
    assert Priority.EMERGENCY < Priority.ALERT < Priority.CRITICAL < Priority.ERROR \
        < Priority.WARNING < Priority.NOTICE < Priority.INFORMATIONAL < Priority.DEBUG
    assert Priority.WARNING.falco_name == "Warning"
    with pytest.raises(ValueError, match="unknown priority 'loud'"):
        Priority.parse("loud")


def test_source_other_than_syscall_is_skipped() -> None:
    rs = rules_text("""
- rule: Audit
  desc: k8s audit rule
  condition: ka.verb = create
  output: x
  priority: info
  source: k8s_audit
""")
    assert rs.rules == ()
    assert any("source 'k8s_audit'" in w for w in rs.warnings)


def test_skip_if_unknown_filter() -> None:
    rs = rules_text("""
- rule: Future field
  desc: needs a field we lack
  condition: evt.type = execve and proc.future_field = 1
  output: x
  priority: info
  skip-if-unknown-filter: true
""")
    assert rs.rules == ()
    assert any("skipped" in w for w in rs.warnings)


def test_unused_macro_and_list_warnings() -> None:
    rs = rules_text("""
- list: unused_list
  items: [a]
- macro: unused_macro
  condition: proc.name = a
- rule: R
  desc: d
  condition: evt.type = execve
  output: x
  priority: info
""")
    assert any("macro 'unused_macro' is not used" in w for w in rs.warnings)
    assert any("list 'unused_list' is not used" in w for w in rs.warnings)


# ---- exceptions -------------------------------------------------------------------------------

EXC_RULE = """
- list: allowed_writers
  items: [dpkg, rpm]
- rule: Write below bin
  desc: write below a binary dir
  condition: evt.type = openat and evt.is_open_write = true and fd.directory in (/bin, /usr/bin)
  output: write %fd.name by %proc.name
  priority: error
  exceptions:
    - name: by_proc
      fields: proc.name
      values: [apt, yum]
    - name: by_list
      fields: proc.name
      comps: in
      values: [allowed_writers]
    - name: by_pair
      fields: [proc.name, fd.name]
      comps: [=, startswith]
      values:
        - [installer, /usr/bin/tool]
    - name: by_tuple_list
      fields: [proc.name, fd.filename]
      comps: [in, =]
      values:
        - [[make, gcc], cc]
    - name: appended_later
      fields: [proc.pname]
      values: []
"""


def bin_write(comm: str, name: str, pcomm: str = "bash") -> Event:
    return make_event("openat", comm=comm, name=name, flags=0o1 | 0o100)


@pytest.mark.parametrize(("comm", "name", "alert"), [
    ("evil", "/bin/x", True),
    ("apt", "/bin/x", False),
    ("rpm", "/bin/x", False),
    ("installer", "/usr/bin/tool-v2", False),
    ("installer", "/bin/tool", True),
    ("gcc", "/usr/bin/cc", False),
    ("gcc", "/usr/bin/ld", True),
])
def test_exceptions(comm: str, name: str, alert: bool) -> None:
    rs = rules_text(EXC_RULE)
    assert alerts(rs, [bin_write(comm, name)]) == (["Write below bin"] if alert else [])


def test_exception_values_append() -> None:
    rs = rules_text(EXC_RULE + """
- rule: Write below bin
  exceptions:
    - name: by_proc
      values: [evil]
  override:
    exceptions: append
""")
    assert alerts(rs, [bin_write("evil", "/bin/x")]) == []


def test_exceptions_replace() -> None:
    rs = rules_text(EXC_RULE + """
- rule: Write below bin
  exceptions:
    - name: only
      fields: [proc.name]
      values: [[evil]]
  override:
    exceptions: replace
""")
    assert alerts(rs, [bin_write("apt", "/bin/x"), bin_write("evil", "/bin/x")]) \
        == ["Write below bin"]


@pytest.mark.parametrize(("exc", "fragment"), [
    ("{name: e, fields: [proc.name, fd.name], comps: [=], values: [[a, b]]}",
     "exception 'e': 2 fields but 1 comps"),
    ("{name: e, fields: [proc.name, fd.name], values: [[a]]}",
     "exception 'e': each value must be a list of 2 items"),
    ("{name: e, fields: [proc.nope], values: [[a]]}", "exception 'e': unknown field 'proc.nope'"),
    ("{name: e, fields: [proc.name], comps: [like], values: [[a]]}",
     "exception 'e': unknown comparison operator 'like'"),
    ("{fields: [proc.name], values: [[a]]}", "exception without a 'name'"),
])
def test_exception_errors(exc: str, fragment: str) -> None:
    message = load_error(text=f"""
- rule: R
  desc: d
  condition: evt.type = execve
  output: x
  priority: info
  exceptions:
    - {exc}
""")
    assert message.startswith("inline.yaml:8:7: rule 'R': ")
    assert fragment in message


# ---- indexing -------------------------------------------------------------------------------

INDEX_RULES = """
- macro: opens
  condition: evt.type in (open, openat)
- rule: Typed by macro
  desc: d
  condition: opens and proc.name = a
  output: x
  priority: info
- rule: Typed with or
  desc: d
  condition: (evt.type = connect and fd.sport = 1) or (evt.type = accept and fd.sport = 2)
  output: x
  priority: info
- rule: Untyped
  desc: d
  condition: proc.name = a
  output: x
  priority: info
- rule: Negated type
  desc: d
  condition: not evt.type = openat and proc.name = b
  output: x
  priority: info
- rule: Negated other field
  desc: d
  condition: evt.type = execve and not proc.name = a
  output: x
  priority: info
- rule: Excluded type by and
  desc: d
  condition: evt.type in (open, openat) and not evt.type = open
  output: x
  priority: info
"""


def test_rules_for_indexes_by_event_type() -> None:
    rs = rules_text(INDEX_RULES)
    by_name: dict[str, CompiledRule] = {r.name: r for r in rs.rules}
    assert by_name["Typed by macro"].event_types == frozenset({"open", "openat"})
    assert by_name["Typed with or"].event_types == frozenset({"connect", "accept"})
    assert by_name["Untyped"].event_types is None
    assert by_name["Negated type"].event_types is None
    assert by_name["Negated other field"].event_types == frozenset({"execve"})
    assert by_name["Excluded type by and"].event_types == frozenset({"openat"})
    assert [r.name for r in rs.rules_for("openat")] == [
        "Typed by macro", "Untyped", "Negated type", "Excluded type by and"]
    assert [r.name for r in rs.rules_for("open")] == ["Typed by macro", "Untyped", "Negated type"]
    assert [r.name for r in rs.rules_for("ptrace")] == ["Untyped", "Negated type"]
    assert rs.needs_all_events
    assert rs.required_syscalls() == {"open", "openat", "connect", "accept", "execve"}
    assert any("'Untyped' has no evt.type constraint" in w for w in rs.warnings)


def test_required_syscalls_of_fixture() -> None:
    rs = load_rules([FIXTURES / "base.yaml"])
    assert rs.required_syscalls() == {
        "open", "openat", "openat2", "execve", "execveat", "init_module", "finit_module"}
    assert not rs.needs_all_events
    assert rs.rules_for("close") == ()


# ---- output ---------------------------------------------------------------------------------

def test_format_output() -> None:
    rs = load_rules([FIXTURES / "base.yaml"])
    st = SystemState(passwd_path="/nonexistent", group_path="/nonexistent")
    st.update(make_event("execve", res=0, pid=50, ppid=1, comm="bash", filename="/bin/bash",
                         exe="bash", args=["-l"]))
    st.update(make_event("clone", res=100, pid=50, ppid=1, comm="bash"))
    st.update(make_event("execve", res=0, pid=100, ppid=50, comm="cat", filename="/bin/cat",
                         exe="cat", args=["/etc/shadow"]))
    ev = shadow_open()
    st.update(ev)
    (rule,) = rs.match(ev, st)
    line, fields = rule.format_output(ev, st)
    assert line == ("Sensitive file opened for reading (user=<NA> command=cat /etc/shadow"
                    " file=/etc/shadow parent=bash gparent=<NA>)")
    assert fields == {"user.name": None, "proc.cmdline": "cat /etc/shadow",
                      "fd.name": "/etc/shadow", "proc.pname": "bash", "proc.aname[2]": None}


def test_output_time_and_braces() -> None:
    rs = rules_text("""
- rule: T
  desc: d
  condition: evt.type = openat
  output: "%evt.time %{proc.name} %evt.time.s %evt.rawres %evt.arg.flags%%"
  priority: info
""")
    ev = shadow_open()
    st = SystemState()
    st.update(ev)
    line, fields = rs.rules[0].format_output(ev, st)
    clock = time.strftime("%H:%M:%S", time.localtime(1_700_000_000))
    assert line == f"{clock}.123456789 cat {clock} 3 O_RDONLY%%"
    assert fields["evt.rawres"] == 3


def test_output_unknown_field_is_a_load_error() -> None:
    message = load_error(text="""
- rule: Bad output
  desc: d
  condition: evt.type = openat
  output: "file %fd.nme opened"
  priority: info
""")
    assert message == "inline.yaml:5:17: rule 'Bad output': output: unknown field 'fd.nme'"


# ---- load errors: exact text ------------------------------------------------------------------

@pytest.mark.parametrize(("fixture", "expected"), [
    ("bad_yaml.yaml",
     "{f}:6:1: YAML syntax error: found unexpected end of stream (while scanning a quoted"
     " scalar at 4:11)"),
    ("bad_unknown_macro.yaml",
     "{f}:3:36: rule 'Uses a missing macro': unknown macro 'not_a_macro' (condition offset 22,"
     " near \"not_a_macro\")"),
    ("bad_unknown_field.yaml",
     "{f}:3:36: rule 'Typo in field': unknown field 'proc.nam' (condition offset 22, near"
     " \"proc.nam = bash\")"),
    ("bad_operator.yaml",
     "{f}:3:46: rule 'Bad operator': unknown operator 'equals' (expected one of: exists, <=, <,"
     " >=, >, ==, =, !=, glob, iglob, contains, icontains, bcontains, startswith, bstartswith,"
     " endswith, regex, intersects, in, pmatch) (condition offset 32, near \"equals bash\")"),
    ("bad_cycle.yaml",
     "{f}:8:14: macro 'third': macros reference each other in a cycle: first -> second ->"
     " third -> first (condition offset 0, near \"first\")"),
    ("bad_types.yaml", "{f}:6:9: rule 'Wrong types': 'tags' must be a list, got str"),
    ("bad_multiline.yaml",
     "{f}:9:9: rule 'Error on the third line of a folded condition': unknown field"
     " 'proc.bogus' (condition offset 37, near \"proc.bogus = 1\")"),
])
def test_bad_files(fixture: str, expected: str) -> None:
    path = FIXTURES / fixture
    with pytest.raises(RuleLoadError) as info:
        load_rules([FIXTURES / "base.yaml", path])
    assert str(info.value) == expected.format(f=path)
    assert info.value.file == str(path)
    assert info.value.exit_code == 40
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("rule: x", "inline.yaml:1:1: a rules file must be a YAML list of items"),
    ("- just a string", "inline.yaml:1:3: each item must be a mapping"),
    ("- wat: 1", "inline.yaml:1:3: unknown item with keys wat"),
    ("- rule: R\n  desc: d\n  condition: evt.type=open\n  priority: info",
     "inline.yaml:1:3: rule 'R': missing required key 'output'"),
    ("- rule: R\n  desc: d\n  condition: evt.type=open\n  output: x\n  priority: loud",
     "inline.yaml:5:13: rule 'R': unknown priority 'loud'"),
    ("- rule: R\n  desc: d\n  condition: [evt.type]\n  output: x\n  priority: info",
     "inline.yaml:3:14: rule 'R': 'condition' must be a string, got a list"),
    ("- rule: R\n  desc: d\n  condition: evt.type=open\n  output: x\n  priority: info\n"
     "  enabled: 'yes'", "inline.yaml:6:12: rule 'R': 'enabled' must be true or false"),
    ("- list: l\n  items: [a]\n  override:\n    items: append",
     "inline.yaml:1:3: list 'l': has override/append but no list with this name"),
    ("- macro: m\n  condition: a\n  append: true",
     "inline.yaml:1:3: macro 'm': has override/append but no macro with this name"),
    ("- rule: R\n  condition: and x\n  override:\n    condition: append",
     "inline.yaml:1:3: rule 'R': has override/append but no rule with this name"),
    ("- list: l\n  items: a", "inline.yaml:2:10: list 'l': 'items' must be a list, got str"),
    ("- macro: m\n  condition: proc.name = (", "inline.yaml:2:26: macro 'm': expected a value"),
])
def test_structural_errors(text: str, expected: str) -> None:
    assert load_error(text=text).startswith(expected)


def test_override_errors() -> None:
    base = FIXTURES / "base.yaml"
    msg = load_error(base, text="- rule: Module load\n  priority: info\n  override:\n"
                                "    priority: append")
    assert msg.startswith("inline.yaml:4:5: rule 'Module load': key 'priority' cannot be"
                          " overridden with append; allowed: condition, desc, exceptions,"
                          " output, tags")
    msg = load_error(base, text="- rule: Module load\n  priority: info\n  desc: x\n"
                                "  override:\n    priority: replace")
    assert msg == "inline.yaml:3:9: rule 'Module load': key 'desc' is not listed in 'override'"
    msg = load_error(base, text="- rule: Module load\n  condition: x\n  append: true\n"
                                "  override:\n    condition: append")
    assert "'override' and 'append' cannot be used together" in msg


def test_missing_file() -> None:
    with pytest.raises(RuleLoadError, match="rules file not found"):
        load_rules([FIXTURES / "does-not-exist.yaml"])


def test_empty_file_is_fine(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert load_rules([empty]).rules == ()


def test_replace_overrides_for_macro_list_output_desc() -> None:
    rs = rules_text("""
- list: shell_binaries
  items: [pwsh]
  override:
    items: replace
- macro: container
  condition: (container.id = host)
  override:
    condition: replace
- rule: Shell in container
  desc: replaced description
  output: "shell %proc.name"
  override:
    desc: replace
    output: replace
- rule: Read sensitive file
  output: "(extra=%proc.pid)"
  override:
    output: append
""", FIXTURES / "base.yaml")
    shell = next(r for r in rs.rules if r.name == "Shell in container")
    assert shell.desc == "replaced description"
    read = next(r for r in rs.rules if r.name == "Read sensitive file")
    assert read.output.endswith("gparent=%proc.aname[2]) (extra=%proc.pid)")
    pwsh = make_event("execve", res=0, comm="pwsh", filename="/usr/bin/pwsh", exe="pwsh")
    bash = make_event("execve", res=0, pid=101, comm="bash", filename="/bin/bash", exe="bash")
    # the replaced macro now means "on the host", the replaced list only holds pwsh
    assert alerts(rs, [pwsh, bash]) == ["Shell in container"]
    st = SystemState()
    st.update(pwsh)
    assert shell.format_output(pwsh, st)[0] == "shell pwsh"


def test_filtered_by_min_priority() -> None:
    rs = load_rules([FIXTURES / "base.yaml"])
    assert [r.name for r in rs.filtered(Priority.WARNING).rules] == [
        "Read sensitive file", "Module load"]
    assert rs.filtered(Priority.CRITICAL).rules_for("openat") == ()
    assert rs.filtered(Priority.DEBUG).required_syscalls() == rs.required_syscalls()


def test_yaml_1_1_words_stay_strings() -> None:
    rs = rules_text("""
- list: words
  items: [yes, no, on, off, 1]
- rule: Off
  desc: named like a boolean
  condition: evt.type = execve and proc.name in (words)
  output: x
  priority: info
""")
    assert rs.rules[0].name == "Off"
    ev = make_event("execve", res=0, comm="yes", filename="/usr/bin/yes", exe="yes")
    assert alerts(rs, [ev]) == ["Off"]


def test_unknown_event_type_is_warned() -> None:
    rs = rules_text("""
- rule: Typo
  desc: d
  condition: evt.type in (openat, opne) and proc.name = a
  output: x
  priority: info
""")
    assert any("evt.type opne is not a syscall or event this engine knows" in w
               for w in rs.warnings)
    assert not any("openat" in w for w in rs.warnings)


def test_several_yaml_documents_in_one_file() -> None:
    rs = rules_text("""
- list: l
  items: [sh]
---
- rule: Second document
  desc: d
  condition: evt.type = execve and proc.name in (l)
  output: x
  priority: info
""")
    assert [r.name for r in rs.rules] == ["Second document"]
