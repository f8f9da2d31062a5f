"""Falco's own semantics in the rules loader: engine/plugin versions, quoted list items,
every error reported (errors vs warnings as Falco), and bounds on expansion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from runtime.engine.cli import main
from runtime.engine.rules import Ruleset, load_rules
from runtime.engine.rules.errors import RuleLoadError, RuleLoadErrors
from runtime.engine.rules.limits import MAX_MACRO_DEPTH
from runtime.engine.rules.loader import list_item_value

FALCO = Path(__file__).parent / "fixtures" / "falco_rules"
VENDORED = sorted(FALCO.glob("*.yaml"))


def _rule(cond: str, name: str = "r") -> dict[str, object]:
    return {"rule": name, "desc": "d", "condition": cond, "output": "o",
            "priority": "WARNING"}


def _load(items: list[dict[str, object]]) -> Ruleset:
    return load_rules([], extra_texts=[("t.yaml", yaml.safe_dump(items, sort_keys=False))])


def _errors(items: list[dict[str, object]]) -> list[str]:
    with pytest.raises(RuleLoadError) as info:
        _load(items)
    err = info.value
    return [str(e) for e in err.errors] if isinstance(err, RuleLoadErrors) else [str(err)]


@pytest.mark.parametrize("path", VENDORED, ids=lambda p: p.name)
def test_vendored_falco_files_load_unmodified(path: Path) -> None:
    ruleset = load_rules([path])
    assert len(ruleset) > 0


def test_vendored_quoted_list_items_lose_their_quotes() -> None:
    text = (FALCO / "falco_rules.yaml").read_text()
    items = yaml.safe_load(text)
    lists = {i["list"]: i["items"] for i in items if "list" in i and "items" in i}
    rfc = [list_item_value(x) for x in lists["rfc_1918_addresses"]]
    assert rfc == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
    for name in ("known_shell_spawn_cmdlines", "login_binaries"):
        for raw in lists.get(name, []):
            value = list_item_value(raw)
            if raw.startswith('"') and raw.endswith('"'):
                assert value == raw[1:-1].replace('\\"', '"')


def test_list_item_value_only_unquotes_one_whole_literal() -> None:
    assert list_item_value('"sh -c"') == "sh -c"
    assert list_item_value("'a'") == "a"
    assert list_item_value('"a" "b"') == '"a" "b"'
    assert list_item_value("plain") == "plain"
    assert list_item_value('"') == '"'


def test_quoted_cidr_list_item_compiles_as_a_network() -> None:
    _load([{"list": "nets", "items": ['"10.0.0.0/8"']},
           _rule("evt.type=connect and fd.snet in (nets)")])


def test_required_plugin_container_is_built_in() -> None:
    _load([{"required_plugin_versions": [{"name": "container", "version": "0.4.0"}]},
           _rule("evt.type=execve")])
    _load([{"required_plugin_versions": [{"name": "k8saudit", "version": "0.1.0",
                                          "alternatives": [{"name": "container",
                                                            "version": "0.1.0"}]}]},
           _rule("evt.type=execve")])
    errs = _errors([{"required_plugin_versions": [{"name": "k8saudit", "version": "0.1.0"}]},
                    _rule("evt.type=execve")])
    assert "k8saudit 0.1.0" in errs[0]
    errs = _errors([{"required_plugin_versions": [{"name": "container", "version": "1.0.0"}]}])
    assert "container 1.0.0" in errs[0]


def test_every_error_is_reported() -> None:
    errs = _errors([_rule("evt.type=execve and proc.nope1 = 1", "a"),
                    _rule("evt.type=execve and (proc.name = sh", "b"),
                    {"macro": "m"},
                    _rule("evt.type=execve and proc.nope2 = 1", "c")])
    assert len(errs) == 4, errs
    joined = "\n".join(errs)
    for needle in ("proc.nope1", "rule 'b'", "macro 'm'", "proc.nope2"):
        assert needle in joined


def test_bad_macro_unused_is_a_warning_used_is_an_error() -> None:
    ruleset = _load([{"macro": "bad", "condition": "proc.nope = 1"}, _rule("evt.type=execve")])
    assert any("macro 'bad'" in w and "proc.nope" in w for w in ruleset.warnings)
    errs = _errors([{"macro": "bad", "condition": "proc.nope = 1"},
                    _rule("evt.type=execve and bad")])
    assert any("macro 'bad'" in e for e in errs)


def test_macro_bomb_fails_naming_the_limit() -> None:
    items: list[dict[str, object]] = [{"macro": "m0", "condition": "proc.name=sh"}]
    items += [{"macro": f"m{i}", "condition": f"(m{i-1} and m{i-1})"} for i in range(1, 31)]
    errs = _errors([*items, _rule("evt.type=execve and m30")])
    assert "MAX_EXPANDED_NODES" in errs[0]


@pytest.mark.parametrize("reverse", [False, True])
def test_macro_chain_fails_naming_the_limit(reverse: bool) -> None:
    items: list[dict[str, object]] = [{"macro": "m0", "condition": "proc.name=sh"}]
    items += [{"macro": f"m{i}", "condition": f"m{i-1}"} for i in range(1, 3000)]
    if reverse:
        items.reverse()
    errs = _errors([*items, _rule("evt.type=execve and m2999")])
    assert "MAX_MACRO_DEPTH" in errs[0] and str(MAX_MACRO_DEPTH) in errs[0]


def test_list_bomb_fails_naming_the_limit() -> None:
    items: list[dict[str, object]] = [{"list": "l0", "items": ["a", "b"]}]
    items += [{"list": f"l{i}", "items": [f"l{i-1}", f"l{i-1}"]} for i in range(1, 40)]
    errs = _errors([*items, _rule("evt.type=execve and proc.name in (l39)")])
    assert "MAX_LIST_ITEMS" in errs[0]


def test_validate_json_lists_every_error(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump([_rule("evt.type=execve and proc.nope1 = 1", "a"),
                                    _rule("evt.type=execve and proc.nope2 = 1", "b"),
                                    {"macro": "unused", "condition": "proc.name=sh"}],
                                   sort_keys=False))
    result = CliRunner().invoke(main, ["validate", "--output", "json", "--rules", str(path)])
    assert result.exit_code != 0
    doc = json.loads(result.stdout)
    (entry,) = doc["falco_load_results"]
    assert entry["name"] == str(path) and entry["successful"] is False
    names = [e["context"]["locations"][0]["item_name"] for e in entry["errors"]]
    assert names == ["a", "b"]
    pos = entry["errors"][0]["context"]["locations"][0]["position"]
    assert pos["name"] == str(path) and pos["line"] > 0 and pos["column"] > 0
    assert any("unused" in w["message"] for w in entry["warnings"])
    text = CliRunner().invoke(main, ["validate", "--rules", str(path)])
    assert text.exit_code != 0
    assert "proc.nope1" in text.stderr and "proc.nope2" in text.stderr


def test_alias_bomb_and_duplicate_keys_are_refused_with_a_position(tmp_path: Path) -> None:
    text = "- list: a\n  items: &a [x, x, x, x, x, x, x, x, x]\n"
    for i in range(12):
        prev = "a" if i == 0 else f"b{i - 1}"
        text += f"- list: b{i}\n  items: &b{i} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    errs = _errors_text(text)
    assert "unsafe YAML" in errs[0]
    errs = _errors_text("- rule: r\n  desc: d\n  desc: e\n  condition: evt.type=execve\n"
                        "  output: o\n  priority: INFO\n")
    assert "t.yaml:3:3" in errs[0] and "duplicate key 'desc'" in errs[0]


def test_same_named_rule_replaces_with_a_warning() -> None:
    ruleset = _load([_rule("evt.type=execve"), _rule("evt.type=open")])
    assert len(ruleset) == 1
    assert any("redefines the rule" in w for w in ruleset.warnings)


def _errors_text(text: str) -> list[str]:
    with pytest.raises(RuleLoadError) as info:
        load_rules([], extra_texts=[("t.yaml", text)])
    err = info.value
    return [str(e) for e in err.errors] if isinstance(err, RuleLoadErrors) else [str(err)]


def test_null_items_is_an_error_as_in_falco() -> None:
    errs = _errors_text("- list: l\n  items: null\n")
    assert "t.yaml:2:10" in errs[0] and "'items' must be a list" in errs[0]
    _load([{"list": "l", "items": []}, _rule("evt.type=execve and proc.name in (l)")])


def _vendored_list(name: str) -> list[str]:
    items = yaml.safe_load((FALCO / "falco_rules.yaml").read_text())
    (found,) = [i["items"] for i in items if i.get("list") == name and "items" in i]
    return [str(x) for x in found]


def test_quoted_items_of_real_lists_match_events(tmp_path: Path) -> None:
    from tests.test_rules_falco_style import ev, seeded_state

    ruleset = _load([
        {"list": "login_binaries", "items": _vendored_list("login_binaries")},
        {"list": "known_shell_spawn_cmdlines",
         "items": _vendored_list("known_shell_spawn_cmdlines")},
        _rule("evt.type=execve and proc.name in (login_binaries)", "login"),
        _rule("evt.type=execve and proc.cmdline in (known_shell_spawn_cmdlines)", "spawn"),
    ])
    state = seeded_state(tmp_path)

    def fired(event: object) -> list[str]:
        state.update(event)  # type: ignore[arg-type]
        return [r.name for r in ruleset.match(event, state)]  # type: ignore[arg-type]

    assert fired(ev("execve", 500, "(systemd)", ppid=300, filename="/lib/systemd",
                    exe="(systemd)", args=[])) == ["login"]
    assert fired(ev("execve", 501, "sh", ppid=300, filename="/bin/sh", exe="sh",
                    args=["-c", "uname -p 2> /dev/null"])) == ["spawn"]
    assert fired(ev("execve", 502, "sh", ppid=300, filename="/bin/sh", exe="sh",
                    args=["-c", "id"])) == []


def test_network_checks_remember_both_ends_of_a_connection() -> None:
    """fd.net gives [client, server]: answers are remembered per pair, and a pair that
    differs in either end is asked again."""
    import ipaddress

    from runtime.engine.rules.compiler import _network_matcher

    in_private = _network_matcher([ipaddress.ip_network("10.0.0.0/8"),
                                   ipaddress.ip_network("192.168.0.0/16")])
    for _ in range(2):  # the second round answers from what it remembered
        assert in_private(["8.8.8.8", "10.1.2.3"]) is True
        assert in_private(["8.8.8.8", "1.1.1.1"]) is False
        assert in_private(["192.168.1.1", "1.1.1.1"]) is True
        assert in_private("10.9.9.9") is True
        assert in_private(None) is False
        assert in_private([["10.0.0.1"]]) is False  # unhashable inside: asked every time
