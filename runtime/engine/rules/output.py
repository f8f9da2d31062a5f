"""Rule output templates: `%field` and `%field[arg]` substitution, Falco style."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from runtime.engine.fields import BoundField, UnknownFieldError, render_value, resolve_field

if TYPE_CHECKING:
    from runtime.engine.state import SystemState
    from runtime.events import Event

FormatFn = Callable[["Event", "SystemState"], tuple[str, dict[str, object]]]

# `%proc.name`, `%proc.aname[2]`, `%evt.arg.flags`, `%{fd.name}`; a trailing dot (end of a
# sentence) is not part of the field.
_TOKEN = re.compile(
    r"%(?:\{(?P<braced>[^}]*)\}"
    r"|(?P<name>[a-zA-Z][a-zA-Z0-9_]*(?:\.[a-zA-Z0-9_]+)+)(?:\[(?P<arg>[^\]]*)\])?)"
)


class OutputError(ValueError):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def _split_field(text: str) -> tuple[str, str | None]:
    if text.endswith("]") and "[" in text:
        name, _, arg = text[:-1].partition("[")
        return name, arg
    return text, None


# Falco replaces this placeholder with its container format when no -pc/-pk option is set.
CONTAINER_INFO = "%container.info"
CONTAINER_INFO_FORMAT = "container_id=%container.id container_name=%container.name"


def compile_output(template: str) -> FormatFn:
    """Resolve every field in `template` now (unknown field -> OutputError)."""
    if CONTAINER_INFO in template:
        template = template.replace(CONTAINER_INFO, CONTAINER_INFO_FORMAT)
    literals: list[str] = []
    fields: list[BoundField] = []
    last = 0
    for m in _TOKEN.finditer(template):
        braced = m.group("braced")
        if braced is not None:
            name, arg = _split_field(braced.strip())
        else:
            name, arg = m.group("name"), m.group("arg")
        try:
            bound = resolve_field(name, arg)
        except UnknownFieldError as err:
            raise OutputError(str(err), m.start()) from None
        literals.append(template[last:m.start()])
        fields.append(bound)
        last = m.end()
    tail = template[last:]
    steps = tuple((literal, bound.extract, bound.text)
                  for literal, bound in zip(literals, fields, strict=True))

    def format_output(ev: Event, st: SystemState) -> tuple[str, dict[str, object]]:
        parts: list[str] = []
        values: dict[str, object] = {}
        append = parts.append
        for literal, extract, text in steps:
            value = extract(ev, st)
            # Strings and ints (most fields) print as themselves: skip render_value's checks.
            cls = value.__class__
            if cls is list:
                value = ",".join(str(v) for v in value)  # type: ignore[attr-defined]
                cls = str
            values[text] = value
            append(literal)
            append(value if cls is str else str(value) if cls is int  # type: ignore[arg-type]
                   else render_value(value))
        append(tail)
        return "".join(parts).strip(), values

    return format_output


__all__ = ["OutputError", "compile_output"]
