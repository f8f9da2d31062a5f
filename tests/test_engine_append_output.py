"""falco.yaml's `append_output`: parsed from the engine config, applied to matching rules only.

Rules are loaded by the real loader and evaluated by the real compiler over events in the
decoder's shape; the JSON-only placement of `extra_fields` is checked on the Alert's JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drivercore.errors import UsageError
from runtime.engine.config import AppendOutput, ExtraField, load_config, parse_config
from runtime.engine.outputs import Alert
from runtime.engine.rules import load_rules
from runtime.engine.rules.append_output import apply_append_output
from runtime.engine.state import SystemState
from runtime.events import Event

RULES = """
- rule: Tagged open
  desc: an open with a tag the entry matches
  condition: evt.type = openat and fd.name startswith /etc
  output: opened %fd.name by %proc.name
  priority: WARNING
  tags: [filesystem, mitre_discovery]
- rule: Untagged open
  desc: the same event, no tags
  condition: evt.type = openat and fd.name startswith /etc
  output: plain open of %fd.name
  priority: NOTICE
"""


def _open_event() -> Event:
    return Event(ts=10**18, cpu=1, type="openat", syscall_nr=257, res=3, pid=4321, tid=4321,
                 ppid=1, uid=0, gid=0, comm="cat", cgroup_id=0,
                 params={"fd": 3, "dirfd": -100, "name": "/etc/hosts", "flags": 0,
                         "mode": 0, "dev": 0, "ino": 0})


def _alerts(entries: tuple[AppendOutput, ...]) -> dict[str, Alert]:
    ruleset = apply_append_output(load_rules([], extra_texts=[("t.yaml", RULES)]), entries)
    state = SystemState()
    ev = _open_event()
    state.update(ev)
    found = {}
    for rule in ruleset.match(ev, state):
        line, fields = rule.format_output(ev, state)
        found[rule.name] = Alert(ev.ts, rule.name, rule.priority.falco_name, line, fields,
                                 rule.tags, rule.source)
    assert set(found) == {"Tagged open", "Untagged open"}
    return found


def test_config_parses_falcos_example_with_env_expansion(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_TEST_HOME", "/home/tester")
    config = tmp_path / "engine.yaml"
    config.write_text("""
append_output:
  - match:
      source: syscall
    extra_output: "on CPU %evt.cpu"
    extra_fields:
      - home_directory: "${RT_TEST_HOME}"
      - evt.hostname
""")
    cfg = load_config(config)
    assert cfg.append_output == (AppendOutput(
        source="syscall", extra_output="on CPU %evt.cpu",
        extra_fields=(ExtraField("home_directory", "/home/tester"),
                      ExtraField("evt.hostname"))),)


@pytest.mark.parametrize(("document", "message"), [
    ({"append_output": [{"match": {"tag": ["x"]}}]}, "unknown key 'tag' (did you mean 'tags'?)"),
    ({"append_output": [{"extra_field": []}]}, "did you mean 'extra_fields'?"),
    ({"append_output": {"match": {}}}, "expected a list of entries"),
    ({"append_output": [{"extra_fields": [{"a": "1", "b": "2"}]}]},
     "extra_fields[0]: expected a field name or one `name: value` pair"),
    ({"append_output": [{"match": {"tags": "filesystem"}}]}, "match.tags: expected a list"),
    ({"append_output": [{"extra_output": ["x"]}]}, "extra_output: expected text"),
])
def test_config_refuses_malformed_entries(document: object, message: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_config(document, "config t.yaml")
    assert message in str(err.value)
    assert "append_output[0]" in str(err.value) or "append_output:" in str(err.value)


def test_extra_output_and_fields_reach_only_matching_rules() -> None:
    alerts = _alerts((
        AppendOutput(tags=("filesystem",), extra_output="on CPU %evt.cpu",
                     extra_fields=(ExtraField("proc.pid"), ExtraField("team", "blue"))),
        AppendOutput(rule="Untagged open", extra_output="(untagged)"),
        AppendOutput(source="k8s_audit", extra_output="never"),
    ))
    tagged, untagged = alerts["Tagged open"], alerts["Untagged open"]
    assert tagged.output == "opened /etc/hosts by cat on CPU 1"
    assert untagged.output == "plain open of /etc/hosts (untagged)"
    fields = json.loads(tagged.json_line())["output_fields"]
    # Falco: extra fields go to JSON's output_fields only, never into the text line.
    assert fields["proc.pid"] == 4321 and fields["team"] == "blue"
    assert "4321" not in tagged.output and "blue" not in tagged.output
    assert "proc.pid" not in json.loads(untagged.json_line())["output_fields"]


def test_tags_match_only_when_the_rule_has_all_of_them() -> None:
    alerts = _alerts((AppendOutput(tags=("filesystem", "mitre_persistence"),
                                   extra_output="both"),))
    assert not alerts["Tagged open"].output.endswith("both")


def test_no_entries_keep_the_ruleset() -> None:
    ruleset = load_rules([], extra_texts=[("t.yaml", RULES)])
    assert apply_append_output(ruleset, ()) is ruleset


@pytest.mark.parametrize(("entry", "message"), [
    (AppendOutput(extra_fields=(ExtraField("proc.nosuch"),)),
     "append_output[0].extra_fields[0]: "),
    (AppendOutput(extra_output="at %evt.nosuch"), "append_output[0].extra_output: "),
])
def test_unknown_fields_are_refused_even_when_no_rule_matches(entry: AppendOutput,
                                                              message: str) -> None:
    ruleset = load_rules([], extra_texts=[("t.yaml", RULES)])
    with pytest.raises(UsageError) as err:
        apply_append_output(ruleset, (entry,))
    assert str(err.value).startswith(message)
    assert "nosuch" in str(err.value)
