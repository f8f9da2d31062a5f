"""Compiled rules and the ruleset indexed by event type."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runtime.engine.rules.priority import Priority

if TYPE_CHECKING:
    from runtime.engine.state import SystemState
    from runtime.events import Event

MatchFn = Callable[["Event", "SystemState"], bool]
FormatFn = Callable[["Event", "SystemState"], tuple[str, dict[str, object]]]


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    name: str
    priority: Priority
    tags: tuple[str, ...]
    source: str
    desc: str
    output: str
    condition: str
    # None: the condition does not constrain evt.type, so every event type may match.
    event_types: frozenset[str] | None
    match: MatchFn = field(repr=False)
    format_output: FormatFn = field(repr=False)


_NO_RULES: tuple[CompiledRule, ...] = ()


class Ruleset:
    """Enabled rules in load order, with a per-event-type index built once."""

    def __init__(self, rules: Sequence[CompiledRule], warnings: Sequence[str] = ()) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self.warnings: tuple[str, ...] = tuple(warnings)
        self._untyped = tuple(r for r in self.rules if r.event_types is None)
        typed: dict[str, list[CompiledRule]] = {}
        for rule in self.rules:
            for evt_type in rule.event_types or ():
                typed.setdefault(evt_type, [])
        for evt_type, bucket in typed.items():
            # Keep load order across typed and untyped rules: Falco reports in rule order.
            bucket.extend(
                r for r in self.rules
                if r.event_types is None or evt_type in r.event_types
            )
        self._by_type: dict[str, tuple[CompiledRule, ...]] = {
            t: tuple(b) for t, b in typed.items()
        }

    def rules_for(self, evt_type: str) -> Sequence[CompiledRule]:
        found = self._by_type.get(evt_type)
        return self._untyped if found is None else found

    def required_syscalls(self) -> set[str]:
        """Event types the rules need; empty-typed rules need everything (see `needs_all`)."""
        needed: set[str] = set()
        for rule in self.rules:
            if rule.event_types is not None:
                needed |= rule.event_types
        return needed

    @property
    def needs_all_events(self) -> bool:
        """True when some enabled rule has no evt.type constraint (Falco warns about those)."""
        return bool(self._untyped)

    def __len__(self) -> int:
        return len(self.rules)
