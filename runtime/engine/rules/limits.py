"""Bounds on what a rules file may make the loader build, so hostile or broken files fail
fast with an error naming the limit instead of exhausting time, memory or the stack.

Macros and lists are shared by reference (the expander memoizes each macro's expansion),
so the limits are measured on the *expanded* condition a rule finally evaluates: a macro
used twice counts twice, which is what evaluation and event-type derivation pay for.
"""

from __future__ import annotations

from collections.abc import Mapping

from runtime.engine.rules.ast import And, Check, Expr, ListRef, ListValue, MacroRef, Not, Or

# Deepest chain of macros referring to macros. Falco's own files nest a handful of levels.
MAX_MACRO_DEPTH = 200
# Nodes (checks + list items) of one rule condition after macro and list expansion. The
# largest rule in the vendored Falco files is a few thousand.
MAX_EXPANDED_NODES = 200_000
# Items of one list after lists named inside it are expanded.
MAX_LIST_ITEMS = 100_000


class LimitExceeded(ValueError):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


class ExpandedSize:
    """Memoized size of macros' and conditions' expansions."""

    def __init__(self, macros: Mapping[str, Expr], lists: Mapping[str, tuple[str, ...]]
                 ) -> None:
        self._macros = macros
        self._lists = lists
        self._memo: dict[str, tuple[int, int]] = {}

    def of(self, expr: Expr) -> int:
        """Size of `expr` expanded; raises LimitExceeded past MAX_EXPANDED_NODES or
        MAX_MACRO_DEPTH. Unknown macros count as one node (reported elsewhere)."""
        size, _ = self._measure(expr, 0)
        if size > MAX_EXPANDED_NODES:
            raise LimitExceeded(
                f"condition expands to more than {MAX_EXPANDED_NODES} nodes after macro and"
                " list expansion (limit MAX_EXPANDED_NODES)", expr.pos)
        return size

    def _measure(self, expr: Expr, depth: int) -> tuple[int, int]:
        """(expanded size, macro nesting height below `expr`)."""
        if isinstance(expr, MacroRef):
            body = self._macros.get(expr.name)
            if body is None:
                return 1, 0
            cached = self._memo.get(expr.name)
            if cached is None:
                if depth >= MAX_MACRO_DEPTH:
                    raise self._too_deep(expr)
                size, height = self._measure(body, depth + 1)
                cached = (size, height + 1)
                self._memo[expr.name] = cached
            # The memo hides the chain below, so check the whole height from here.
            if depth + cached[1] > MAX_MACRO_DEPTH:
                raise self._too_deep(expr)
            return cached
        if isinstance(expr, (And, Or)):
            total = height = 0
            for child in expr.children:
                size, h = self._measure(child, depth)
                total += size
                height = max(height, h)
                if total > MAX_EXPANDED_NODES:  # stop early: the sum may be astronomical
                    break
            return total, height
        if isinstance(expr, Not):
            size, height = self._measure(expr.child, depth)
            return size + 1, height
        return 1 + _list_size(expr, self._lists), 0

    @staticmethod
    def _too_deep(ref: MacroRef) -> LimitExceeded:
        return LimitExceeded(
            f"macros nest deeper than {MAX_MACRO_DEPTH} levels at '{ref.name}' (limit"
            " MAX_MACRO_DEPTH)", ref.pos)


def _list_size(check: Check, lists: Mapping[str, tuple[str, ...]]) -> int:
    right = check.right
    if isinstance(right, ListRef):
        return len(lists.get(right.name, ()))
    if isinstance(right, ListValue):
        return sum(len(lists.get(v.text, (v.text,))) for v in right.items)
    return 0


__all__ = ["MAX_EXPANDED_NODES", "MAX_LIST_ITEMS", "MAX_MACRO_DEPTH", "ExpandedSize",
           "LimitExceeded"]
