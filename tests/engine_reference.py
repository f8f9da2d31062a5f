"""The engine's plain path, for tests that check its fast paths against it: every event
decoded by the careful decoder, the state updated, and each rule's own compiled condition
tried in load order."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from runtime.driver import schema
from runtime.engine.rules import Ruleset
from runtime.engine.rules.ruleset import CompiledRule
from runtime.engine.sources import ReplaySource
from runtime.engine.state import SystemState
from runtime.events import Event


def reference_matches(
    capture: Path, ruleset: Ruleset, state: SystemState
) -> Iterator[tuple[Event, CompiledRule, str, dict[str, Any]]]:
    """(event, rule, output line, output fields) for every rule an event of `capture`
    matches, in event then load order."""
    source = ReplaySource(capture)
    decoder = schema.Decoder(epoch_offset_ns=source.boot_offset_ns)
    try:
        for batch in iter(lambda: source.read(0), None):
            if not batch.raw:
                continue
            off, raw = 0, batch.raw
            while off + schema.HDR_SIZE <= len(raw):
                ev = decoder.decode_careful(raw, off)
                off += (struct.unpack_from("=I", raw, off + schema._LEN_AT)[0] + 7) & ~7
                state.update(ev)
                for rule in ruleset.rules_for(ev.type):
                    if rule.match(ev, state):
                        line, fields = rule.format_output(ev, state)
                        yield ev, rule, line, fields
    finally:
        source.close()


def _joined_by(j: str) -> Callable[[list[str]], str]:
    """`xs` joined by ` j `, in parentheses."""
    return lambda xs: "(" + f" {j} ".join(xs) + ")"


def nested_conditions(atom: Callable[[], st.SearchStrategy[str]], depth: int,
                      joins: tuple[str, ...] = ("and", "or")) -> st.SearchStrategy[str]:
    """Rule conditions `depth` levels deep over `atom()`: binary and/or, not, and longer
    runs joined by each of `joins` (where the compiler merges and factors children)."""
    if depth == 0:
        return atom()
    sub = nested_conditions(atom, depth - 1, joins)
    runs = [st.lists(sub, min_size=3, max_size=5).map(_joined_by(join)) for join in joins]
    return st.one_of(
        atom(),
        st.builds(lambda a, b: f"({a} and {b})", sub, sub),
        st.builds(lambda a, b: f"({a} or {b})", sub, sub),
        st.builds(lambda a: f"not ({a})", sub),
        *runs,
    )
