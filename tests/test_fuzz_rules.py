"""Generated and damaged rules files through `rt-engine validate` in a bounded child
process: whatever the file, no traceback, inside the fuzz time and memory bounds, and
either accepted (exit 0) or refused as a rule-load/usage error."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from drivercore.errors import ExitCode
from tests.fuzz_helpers import FUZZ_CHILD, Outcome, python_module, run_bounded

FALCO_RULES = (Path(__file__).parent / "fixtures" / "falco_rules" / "falco_rules.yaml")
_CLEAN_CODES = {0, int(ExitCode.RULE_LOAD), int(ExitCode.USAGE)}


def _validate(tmp: Path, text: str) -> Outcome:
    path = tmp / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return run_bounded(python_module("runtime.engine.cli", "validate", "--rules", str(path)))


def _assert_clean(outcome: Outcome) -> None:
    assert outcome.returncode in _CLEAN_CODES, outcome.describe()
    assert "Traceback" not in outcome.stderr, outcome.describe()
    assert "MemoryError" not in outcome.stderr, outcome.describe()
    if outcome.returncode != 0:
        assert "rt-engine: error:" in outcome.stderr, outcome.describe()


def _bomb(levels: int) -> str:
    items: list[dict[str, object]] = [{"macro": "m0", "condition": "proc.name=sh"}]
    items += [{"macro": f"m{i}", "condition": f"(m{i-1} and m{i-1})"}
              for i in range(1, levels)]
    items.append({"rule": "r", "desc": "d", "output": "o", "priority": "WARNING",
                  "condition": f"evt.type=execve and m{levels - 1}"})
    return yaml.safe_dump(items, sort_keys=False)


def _chain(n: int) -> str:
    items: list[dict[str, object]] = [{"macro": "m0", "condition": "proc.name=sh"}]
    items += [{"macro": f"m{i}", "condition": f"m{i-1}"} for i in range(1, n)]
    items.append({"rule": "r", "desc": "d", "output": "o", "priority": "WARNING",
                  "condition": f"evt.type=execve and m{n - 1}"})
    return yaml.safe_dump(items, sort_keys=False)


def _list_bomb(levels: int) -> str:
    items: list[dict[str, object]] = [{"list": "l0", "items": ["a", "b"]}]
    items += [{"list": f"l{i}", "items": [f"l{i-1}", f"l{i-1}"]} for i in range(1, levels)]
    items.append({"rule": "r", "desc": "d", "output": "o", "priority": "WARNING",
                  "condition": f"evt.type=execve and proc.name in (l{levels - 1})"})
    return yaml.safe_dump(items, sort_keys=False)


_ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)},"
    f" *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))

_TOKENS = st.sampled_from([
    "evt.type", "=", "execve", "and", "or", "not", "(", ")", "proc.name", "in", "pmatch",
    "fd.name", "startswith", "'/etc'", '"sh -c"', "m", "lst", "exists", "evt.arg[999999]",
    "proc.aname[3]", "contains", ",", "glob", "fd.snet", "'10.0.0.0/8'", "\\", "\"", "'",
])


@st.composite
def _structured(draw: st.DrawFn) -> str:
    cond = " ".join(draw(st.lists(_TOKENS, min_size=0, max_size=25)))
    items: list[dict[str, object]] = [
        {"list": "lst", "items": draw(st.one_of(st.none(), st.lists(
            st.sampled_from(["sh", '"sh -c"', "'x'", '"10.0.0.0/8"', "lst"]), max_size=4)))},
        {"macro": "m", "condition": draw(st.sampled_from(["proc.name=sh", cond, "m", ""]))},
        {"rule": "r", "desc": "d", "output": "%proc.name", "priority": "WARNING",
         "condition": cond,
         "skip-if-unknown-filter": draw(st.booleans())},
    ]
    if draw(st.booleans()):
        items.append({"rule": "r", "desc": "dup", "output": "o", "priority": "INFO",
                      "condition": "evt.type=execve"})
    return yaml.safe_dump(items, sort_keys=False)


_VENDORED = FALCO_RULES.read_text(encoding="utf-8")


@FUZZ_CHILD
@given(st.one_of(
    _structured(),
    st.text(max_size=400),
    st.tuples(st.integers(0, len(_VENDORED)), st.integers(0, 200), st.text(max_size=40)).map(
        lambda t: _VENDORED[:t[0]] + t[2] + _VENDORED[t[0] + t[1]:]),
))
@example(_bomb(30))
@example(_chain(3000))
@example(_list_bomb(40))
@example(_ALIAS_BOMB)
@example("- list: a\n  items: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"- list: b{i}\n  items: &b{i} [" + ", ".join([f"*{'a' if i == 0 else f'b{i - 1}'}"] * 9)
    + "]\n" for i in range(12)))
@example("- list: l\n  items: null\n")
@example("- rule: r\n  rule: r\n  desc: d\n  condition: evt.type=execve\n  output: o\n"
         "  priority: INFO\n")
@example("- rule: r\n  desc: d\n  condition: evt.type=execve and evt.arg[999999] = 1\n"
         "  output: o\n  priority: INFO\n")
@example("- required_engine_version: 99.0.0\n")
@example("- required_plugin_versions:\n  - name: k8saudit\n    version: 0.1.0\n")
@example(_VENDORED)
def test_validate_never_crashes(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _assert_clean(_validate(Path(tmp), text))
