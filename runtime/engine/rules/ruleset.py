"""Compiled rules and the ruleset indexed by event type."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runtime.engine.rules.ast import Expr
from runtime.engine.rules.compiler import Expander, compile_type_dispatch
from runtime.engine.rules.priority import Priority

if TYPE_CHECKING:
    from runtime.engine.state import SystemState
    from runtime.events import Event

MatchFn = Callable[["Event", "SystemState"], bool]
FormatFn = Callable[["Event", "SystemState"], tuple[str, dict[str, object]]]
DispatchFn = Callable[["Event", "SystemState"], tuple["CompiledRule", ...]]


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
    # The macro-expanded condition with exceptions, for the per-event-type dispatchers.
    expr: Expr | None = field(default=None, repr=False)
    # priority.falco_name, as each of the rule's alerts carries it (an Enum's name is a
    # descriptor: ~0.2 µs per alert to read it).
    falco_priority: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "falco_priority", self.priority.falco_name)


_NO_RULES: tuple[CompiledRule, ...] = ()


def _no_rules(ev: Event, state: SystemState) -> tuple[CompiledRule, ...]:
    return _NO_RULES


class Ruleset:
    """Enabled rules in load order, with a per-event-type index built once."""

    def __init__(self, rules: Sequence[CompiledRule], warnings: Sequence[str] = (),
                 expander: Expander | None = None) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self._expander = expander
        self._dispatch: dict[str, DispatchFn] = {}
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

    def matches_type(self, evt_type: str) -> bool:
        """Whether some rule can match `evt_type`: `dispatcher(evt_type) is not None`,
        without generating the matcher."""
        return bool(self.rules_for(evt_type))

    def match(self, ev: Event, state: SystemState) -> tuple[CompiledRule, ...]:
        """Every rule matching `ev`, in load order: the fast path (one generated function per
        event type, evt.type checks folded away). Call `state.update(ev)` first."""
        fn = self._dispatch.get(ev.type)
        if fn is None:
            fn = self._build_dispatch(ev.type)
        if fn is _no_rules:
            return _NO_RULES
        return fn(ev, state)

    def dispatcher(self, evt_type: str) -> DispatchFn | None:
        """The generated matcher of one event type, None when no rule can match it: the
        engine caches these per type so an event costs one dict lookup and at most one call."""
        fn = self._dispatch.get(evt_type)
        if fn is None:
            fn = self._build_dispatch(evt_type)
        return None if fn is _no_rules else fn

    def dispatchers(self) -> dict[str, DispatchFn]:
        """The generated matcher of every event type some rule names (a type only rules
        without an evt.type constraint match gets its own when first asked for)."""
        out = {}
        for evt_type in self._by_type:
            fn = self.dispatcher(evt_type)
            if fn is not None:
                out[evt_type] = fn
        return out

    def _build_dispatch(self, evt_type: str) -> DispatchFn:
        rules = self.rules_for(evt_type)
        if not rules:
            self._dispatch[evt_type] = _no_rules
            return _no_rules
        if self._expander is None or any(r.expr is None for r in rules):
            def slow(ev: Event, state: SystemState) -> tuple[CompiledRule, ...]:
                return tuple(r for r in rules if r.match(ev, state))

            fn: DispatchFn = slow
        else:
            entries = [(r.expr, r) for r in rules if r.expr is not None]
            fn = compile_type_dispatch(evt_type, entries, self._expander)  # type: ignore[assignment]
        self._dispatch[evt_type] = fn
        return fn

    def with_rules(self, rules: Sequence[CompiledRule]) -> Ruleset:
        """The same warnings and macro expander over `rules` (e.g. with outputs changed)."""
        return Ruleset(rules, self.warnings, self._expander)

    def filtered(self, min_priority: Priority) -> Ruleset:
        """The rules at `min_priority` or more severe (`--min-priority`), same fast paths."""
        kept = [r for r in self.rules if r.priority <= min_priority]
        return Ruleset(kept, self.warnings, self._expander)

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
