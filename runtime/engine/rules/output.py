"""Rule output templates: `%field` and `%field[arg]` substitution, Falco style."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from runtime.engine.fields import (
    EVENT_FD,
    EVENT_THREAD,
    BoundField,
    FieldType,
    UnknownFieldError,
    render_value,
    resolve_field,
)

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
    return _generate(literals, fields, tail, template)


def _fstring_literal(text: str) -> str:
    """`text` as an f-string literal that renders it unchanged (braces doubled)."""
    return "f" + repr(text.replace("{", "{{").replace("}", "}}"))


def _strip_call(head: str, tail: str) -> str:
    """The line is stripped of surrounding whitespace; a side that is template text ending
    in anything else cannot have any, so only the other side is stripped, or neither."""
    left = not head or head[0].isspace()
    right = not tail or tail[-1].isspace()
    return ".strip()" if left and right else ".lstrip()" if left else ".rstrip()" if right \
        else ""


def _rendered(var: str, bound: BoundField) -> str:
    """An expression that renders `var` as render_value would, for an f-string's braces
    (no backslash, no double quote): text as is, a missing value as <NA>, anything else
    through _render. An f-string writes an int (exactly int: not a bool) as str() does,
    so `{var}` of an int needs no call. The class tested first is the one the field's
    type says the value usually has: one test instead of three for an int field."""
    if bound.type is FieldType.INT:
        return (f"{var} if {var}.__class__ is int else {var} if {var}.__class__ is str"
                f" else '<NA>' if {var} is None else _render({var})")
    return (f"{var} if {var}.__class__ is str else '<NA>' if {var} is None"
            f" else {var} if {var}.__class__ is int else _render({var})")


def _generate(literals: list[str], fields: list[BoundField], tail: str,
              template: str) -> FormatFn:
    """One generated function per template: each distinct field read once (inline code
    where the field has it, sharing the event's thread and fd lookups), then the line and
    the fields dict built in one expression each. Values as before: a list joined with
    `,` (and kept so in output_fields), text as is, anything else as render_value says."""
    ns: dict[str, object] = {"_render": render_value}
    needs: set[str] = set()
    var_of: dict[str, str] = {}
    reads: list[str] = []
    for n, bound in enumerate(fields):
        if bound.text in var_of:
            continue
        var = var_of[bound.text] = f"v{n}"
        if bound.inline is not None and not bound.is_list:
            needs |= bound.needs
            ns.update(bound.helpers)
            reads.append(f"    {var} = {bound.inline}\n")
        else:
            ns[f"x{n}"] = bound.extract
            reads.append(f"    {var} = x{n}(ev, st)\n"
                         f"    if {var}.__class__ is list:\n"
                         f"        {var} = ','.join([str(v) for v in {var}])\n")
    prologue = "".join(f"    {name} = {call}\n" for name, call in (
        ("_th", EVENT_THREAD), ("_f", EVENT_FD)) if name in needs)
    # The line is one f-string (BUILD_STRING: no tuple, no join call); adjacent f-string
    # literals compile into one. Every substituted part is already text, which an
    # f-string inserts as is, so the line is what ''.join of the parts made.
    parts: list[str] = []
    for literal, bound in zip(literals, fields, strict=True):
        var = var_of[bound.text]
        if literal:
            parts.append(_fstring_literal(literal))
        parts.append(f'f"{{{_rendered(var, bound)}}}"')
    if tail:
        parts.append(_fstring_literal(tail))
    line = f"({' '.join(parts)}){_strip_call(literals[0] if fields else tail, tail)}" \
        if parts else "''"
    values = "{" + ", ".join(f"{bound.text!r}: {var_of[bound.text]}" for bound in fields) + "}"
    source = (f"def format_output(ev, st):\n{prologue}{''.join(reads)}"
              f"    return {line}, {values}\n")
    exec(compile(source, f"<output of {template[:40]!r}>", "exec"), ns)
    fn = ns["format_output"]
    assert callable(fn)
    fn.__doc__ = source
    return fn


__all__ = ["OutputError", "compile_output"]
