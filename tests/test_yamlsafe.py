"""drivercore.yamlsafe: every hostile YAML shape refused with one UnsafeYamlError naming the
place and the limit, in bounded time and memory; ordinary documents load as PyYAML would
(typed) or as written (text)."""

from __future__ import annotations

import sys

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from drivercore import yamlsafe
from tests.fuzz_helpers import FUZZ, run_bounded

# The 480-byte document: nine levels of ten aliases, 10^9 leaves once expanded.
BILLION_LAUGHS = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
)


def test_alias_bomb_is_refused_by_size_before_expansion() -> None:
    # In a child under a 1 GiB address-space limit: a regression would die of MemoryError
    # or the timeout instead of printing the refusal.
    code = ("import sys\nfrom drivercore import yamlsafe\n"
            "try:\n    yamlsafe.load(sys.stdin.read())\n"
            "except yamlsafe.UnsafeYamlError as e:\n    print('refused:', e)\n")
    result = run_bounded([sys.executable, "-c", code], stdin=BILLION_LAUGHS.encode(), timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused:") and "limit" in result.stdout


@pytest.mark.parametrize(("document", "words"), [
    ("a: &x [*x]\n", "recursive alias"),
    ("v: " + "[" * 300 + "]" * 300 + "\n", "levels"),
    ("a: 1\nb: 2\na: 3\n", "duplicate key 'a'"),
    ("jobs: " + "9" * 5000 + "\n", "integer of 5000 characters"),
    ("--- 1\n--- 2\n", "more than one YAML document"),
])
def test_hostile_shapes_are_refused_with_the_reason(document: str, words: str) -> None:
    with pytest.raises(yamlsafe.UnsafeYamlError) as err:
        yamlsafe.load(document)
    assert words in str(err.value)


def test_duplicate_key_names_its_line() -> None:
    with pytest.raises(yamlsafe.UnsafeYamlError) as err:
        yamlsafe.load("x:\n  a: 1\n  b: 2\n  a: 3\n")
    assert err.value.line == 4


def test_invalid_utf8_and_oversize_are_refused() -> None:
    with pytest.raises(yamlsafe.UnsafeYamlError, match="not UTF-8"):
        yamlsafe.load(b"a: \xff\xfe\n")
    with pytest.raises(yamlsafe.UnsafeYamlError, match="larger than 10 bytes"):
        yamlsafe.load(b"a: 1234567890\n", max_bytes=10)


def test_text_scalars_keep_what_was_written() -> None:
    doc = "v: 0.10\ng: 4.10\nk: 010\nt: 1:30\nh: 0x1F\nj: 1.9\nn: ~\ne:\nb: yes\n"
    assert yamlsafe.load(doc, scalars="text") == {
        "v": "0.10", "g": "4.10", "k": "010", "t": "1:30", "h": "0x1F", "j": "1.9",
        "n": None, "e": None, "b": "yes"}
    # The typed loader is PyYAML's YAML 1.1, coercions included: callers choose.
    assert yamlsafe.load(doc)["v"] == 0.1  # type: ignore[index]


def test_bare_equals_is_a_string() -> None:
    assert yamlsafe.load("comps: [=, in]\n") == {"comps": ["=", "in"]}


@FUZZ
@given(st.text(alphabet=st.sampled_from([*"ab:&*[]{},-#'\"\n =!?|>%@`\t0x.", "\u2028"]),
               max_size=200))
@example("&a [*a, *a]")
@example("? [a]\n: b\n")
def test_any_text_loads_or_fails_with_a_yaml_error(text: str) -> None:
    try:
        yamlsafe.load(text)
        yamlsafe.load(text, scalars="text")
    except (yamlsafe.UnsafeYamlError, yaml.YAMLError):
        pass
    except TypeError as exc:
        # An unhashable key (a list as a mapping key) is PyYAML's construct-time error.
        assert "unhashable" in str(exc)
