"""Condition syntax tree. Every node keeps its offset in the condition text for errors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldRef:
    name: str
    arg: str | None
    pos: int

    @property
    def text(self) -> str:
        return self.name if self.arg is None else f"{self.name}[{self.arg}]"


@dataclass(frozen=True, slots=True)
class Transform:
    """`tolower(field)` on the left, or `val(field)` on the right of a comparison."""

    func: str
    inner: FieldRef | Transform
    pos: int


@dataclass(frozen=True, slots=True)
class Value:
    text: str
    pos: int
    quoted: bool = False


@dataclass(frozen=True, slots=True)
class ListValue:
    """`(a, b, c)`; bare items naming a list are expanded by the compiler."""

    items: tuple[Value, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class ListRef:
    """`in some_list` without parentheses."""

    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Check:
    left: FieldRef | Transform
    op: str
    right: Value | ListValue | ListRef | FieldRef | Transform | None  # None for `exists`
    pos: int
    op_pos: int


@dataclass(frozen=True, slots=True)
class MacroRef:
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Not:
    child: Expr
    pos: int


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Expr, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Expr, ...]
    pos: int


Expr = And | Or | Not | Check | MacroRef
