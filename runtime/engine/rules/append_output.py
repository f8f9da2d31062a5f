"""falco.yaml's `append_output`: extra text and fields added to the outputs of chosen rules.

Applied once, after the rules are loaded and before the engine starts, by wrapping each
matched rule's compiled formatter: the per-event cost is that of the extra fields only, and
a rule no entry matches keeps its formatter untouched. As in Falco, `extra_output` joins
the text line, while `extra_fields` appear only in JSON's `output_fields`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from drivercore.errors import UsageError
from runtime.engine.fields import UnknownFieldError, render_value, resolve_field
from runtime.engine.rules.output import OutputError, compile_output
from runtime.engine.rules.ruleset import CompiledRule, FormatFn, Ruleset

if TYPE_CHECKING:
    from runtime.engine.config import AppendOutput, ExtraField
    from runtime.engine.fields import Extractor
    from runtime.engine.state import SystemState
    from runtime.events import Event


def _applies(entry: AppendOutput, rule: CompiledRule) -> bool:
    if entry.source is not None and entry.source != rule.source:
        return False
    if entry.rule is not None and entry.rule != rule.name:
        return False
    return all(tag in rule.tags for tag in entry.tags)


def _field_name(text: str) -> tuple[str, str | None]:
    if text.endswith("]") and "[" in text:
        name, _, arg = text[:-1].partition("[")
        return name, arg
    return text, None


def _extra_extractors(where: str, fields: Sequence[ExtraField]
                      ) -> list[tuple[str, Extractor | None, str | None]]:
    """(output_fields key, extractor or None for a fixed value, fixed value)."""
    found: list[tuple[str, Extractor | None, str | None]] = []
    for index, extra in enumerate(fields):
        if extra.value is not None:
            found.append((extra.name, None, extra.value))
            continue
        try:
            bound = resolve_field(*_field_name(extra.name))
        except UnknownFieldError as err:
            raise UsageError(f"{where}.extra_fields[{index}]: {err}; name a field of the"
                             " rules language (e.g. proc.name) or write `name: value`") from None
        found.append((bound.text, bound.extract, None))
    return found


def _with_fields(base: FormatFn, extras: list[tuple[str, Extractor | None, str | None]]
                 ) -> FormatFn:
    def format_output(ev: Event, st: SystemState) -> tuple[str, dict[str, object]]:
        line, values = base(ev, st)
        for key, extract, fixed in extras:
            if extract is None:
                values[key] = fixed
                continue
            value = extract(ev, st)
            if isinstance(value, list):
                value = ",".join(render_value(v) for v in value)
            values[key] = value
        return line, values

    return format_output


def apply_append_output(ruleset: Ruleset, entries: Sequence[AppendOutput]) -> Ruleset:
    """`ruleset` with every entry applied, in config order; unknown fields are UsageErrors
    naming the entry, checked even when no loaded rule matches it."""
    if not entries:
        return ruleset
    plans: list[tuple[AppendOutput, list[tuple[str, Extractor | None, str | None]]]] = []
    for index, entry in enumerate(entries):
        where = f"append_output[{index}]"
        try:
            compile_output(entry.extra_output)
        except OutputError as err:
            raise UsageError(f"{where}.extra_output: {err.message}") from None
        plans.append((entry, _extra_extractors(where, entry.extra_fields)))
    rules: list[CompiledRule] = []
    for rule in ruleset.rules:
        chosen = [(entry, extras) for entry, extras in plans if _applies(entry, rule)]
        if not chosen:
            rules.append(rule)
            continue
        text = " ".join([rule.output, *(e.extra_output for e, _ in chosen if e.extra_output)])
        fmt = compile_output(text)
        extras = [item for _, entry_extras in chosen for item in entry_extras]
        if extras:
            fmt = _with_fields(fmt, extras)
        rules.append(replace(rule, output=text, format_output=fmt))
    return ruleset.with_rules(rules)


__all__ = ["apply_append_output"]
