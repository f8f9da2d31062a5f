"""Recursive-descent parser for Falco conditions (libsinsp's grammar).

    Expr      ::= OrExpr
    OrExpr    ::= AndExpr ('or' AndExpr)*
    AndExpr   ::= NotExpr ('and' NotExpr)*
    NotExpr   ::= ('not')* Check
    Check     ::= Field Condition | Transformer Condition | Identifier (macro) | '(' Expr ')'
    Condition ::= 'exists' | NumOp (Number | val(Field)) | StrOp (String | val(Field))
                | ListOp ('(' String (',' String)* ')' | Identifier | val(Field))
"""

from __future__ import annotations

from collections.abc import Callable

from runtime.engine.fields import TRANSFORMERS
from runtime.engine.rules import ast
from runtime.engine.rules.lexer import (
    ALL_OPS,
    BARE_STRING,
    FIELD_ARG_BARE,
    FIELD_NAME,
    HEX_NUMBER,
    IDENTIFIER,
    LIST_OPS,
    NUM_OPS,
    NUMBER,
    UNARY_OPS,
    ConditionSyntaxError,
    Scanner,
)

MAX_DEPTH = 100


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = Scanner(text)
        self.depth = 0

    def error(self, message: str, offset: int | None = None) -> ConditionSyntaxError:
        return ConditionSyntaxError(message, self.s.pos if offset is None else offset)

    def enter(self) -> None:
        """One more level of parentheses (or `val(`/transformer nesting)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"condition nests deeper than {MAX_DEPTH} levels")

    def parse(self) -> ast.Expr:
        self.s.blank()
        if self.s.at_end():
            raise self.error("empty condition")
        expr = self.parse_or()
        self.s.blank()
        if not self.s.at_end():
            word = self.s.next_word()
            if self.s.peek() == ")":
                raise self.error("unbalanced ')'")
            raise self.error(f"unexpected '{word}', expecting 'and', 'or' or the end")
        return expr

    def _connective(self, word: str) -> bool:
        start = self.s.pos
        if not self.s.literal(word):
            return False
        nxt = self.s.peek()
        if nxt == "(" or nxt.isspace():
            return True
        self.s.pos = start
        return False

    def _joined(
        self,
        connective: str,
        operand: Callable[[], ast.Expr],
        node: Callable[[tuple[ast.Expr, ...], int], ast.Expr],
    ) -> ast.Expr:
        """`operand (connective operand)*`: the lone operand, or `node` over all of them."""
        pos = self.s.pos
        children = [operand()]
        self.s.blank()
        while self._connective(connective):
            children.append(operand())
            self.s.blank()
        return children[0] if len(children) == 1 else node(tuple(children), pos)

    def parse_or(self) -> ast.Expr:
        return self._joined("or", self.parse_and, ast.Or)

    def parse_and(self) -> ast.Expr:
        self.s.blank()
        return self._joined("and", self.parse_not, ast.And)

    def parse_not(self) -> ast.Expr:
        self.s.blank()
        pos = self.s.pos
        negate = False
        while self._connective("not"):
            negate = not negate
            self.s.blank()
        child = self.parse_check()
        return ast.Not(child, pos) if negate else child

    def parse_check(self) -> ast.Expr:
        s = self.s
        s.blank()
        pos = s.pos
        if s.literal("("):
            self.enter()
            inner = self.parse_or()
            s.blank()
            if not s.literal(")"):
                raise self.error("expected ')' to close the '(' at offset " + str(pos))
            self.depth -= 1
            return inner
        if s.at_end():
            raise self.error("expected a field check, a macro name or '(' but found the end")
        left: ast.FieldRef | ast.Transform | None = self.try_transformer(allow_val=False)
        if left is None:
            name = s.regex(FIELD_NAME)
            if name is not None:
                left = self.field_remainder(name, pos)
        if left is not None:
            return self.parse_condition(left, pos)
        ident = s.regex(IDENTIFIER)
        if ident is not None and ident not in ("and", "or", "not"):
            return ast.MacroRef(ident, pos)
        s.pos = pos
        raise self.error(
            f"expected a field check, a macro name or '(' but found '{s.next_word()}'")

    def field_remainder(self, name: str, pos: int) -> ast.FieldRef:
        s = self.s
        if s.literal("["):
            arg = s.quoted()
            if arg is None:
                arg = s.regex(FIELD_ARG_BARE)
            if arg is None:
                raise self.error(f"expected an argument for field '{name}' after '['")
            if not s.literal("]"):
                raise self.error(f"expected ']' after the argument of field '{name}'")
            return ast.FieldRef(name, arg, pos)
        return ast.FieldRef(name, None, pos)

    def try_transformer(self, *, allow_val: bool) -> ast.Transform | None:
        s = self.s
        start = s.pos
        ident = s.regex(IDENTIFIER)
        if ident is None:
            return None
        if not s.literal("(") or not (ident in TRANSFORMERS or (allow_val and ident == "val")):
            s.pos = start
            return None
        s.blank()
        arg_pos = s.pos
        inner: ast.FieldRef | ast.Transform | None = None
        self.enter()
        if ident != "val":
            inner = self.try_transformer(allow_val=False)
        if inner is None:
            name = s.regex(FIELD_NAME)
            if name is None:
                raise self.error(f"expected a field inside '{ident}('")
            inner = self.field_remainder(name, arg_pos)
        s.blank()
        if not s.literal(")"):
            raise self.error(f"expected ')' to close '{ident}('")
        self.depth -= 1
        return ast.Transform(ident, inner, start)

    def parse_condition(self, left: ast.FieldRef | ast.Transform, pos: int) -> ast.Check:
        s = self.s
        s.blank()
        op_pos = s.pos
        op = s.operator()
        if op is None:
            word = s.next_word()
            if not word:
                raise self.error("expected an operator after the field but found the end")
            if word.startswith(("and", "or", ")")) or s.peek() == ")":
                raise self.error(
                    f"expected an operator after '{_left_text(left)}' (a field alone is not a"
                    " condition)")
            ops = ", ".join(ALL_OPS)
            raise self.error(f"unknown operator '{word}' (expected one of: {ops})")
        if op in UNARY_OPS:
            return ast.Check(left, op, None, pos, op_pos)
        s.blank()
        val = self.try_transformer(allow_val=True)
        if val is not None:
            return ast.Check(left, op, val, pos, op_pos)
        vpos = s.pos
        if op in NUM_OPS:
            num = s.regex(HEX_NUMBER) or s.regex(NUMBER)
            if num is None:
                raise self.error(f"expected a number after '{op}'")
            return ast.Check(left, op, ast.Value(num, vpos), pos, op_pos)
        if op in LIST_OPS:
            return ast.Check(left, op, self.parse_list(op), pos, op_pos)
        return ast.Check(left, op, self.parse_string(op), pos, op_pos)

    def parse_string(self, op: str) -> ast.Value:
        s = self.s
        vpos = s.pos
        quoted = s.quoted()
        if quoted is not None:
            return ast.Value(quoted, vpos, quoted=True)
        bare = s.regex(BARE_STRING)
        if bare is None:
            found = s.peek() or "the end"
            raise self.error(f"expected a value after '{op}' but found '{found}'")
        return ast.Value(bare, vpos)

    def parse_list(self, op: str) -> ast.ListValue | ast.ListRef:
        s = self.s
        pos = s.pos
        if s.literal("("):
            items: list[ast.Value] = []
            s.blank()
            if s.literal(")"):
                return ast.ListValue((), pos)
            while True:
                s.blank()
                items.append(self.parse_string(op))
                s.blank()
                if s.literal(","):
                    continue
                if s.literal(")"):
                    return ast.ListValue(tuple(items), pos)
                raise self.error("expected ',' or ')' in the list")
        ident = s.regex(IDENTIFIER)
        if ident is not None:
            return ast.ListRef(ident, pos)
        raise self.error(f"expected '(' or a list name after '{op}'")


def _left_text(left: ast.FieldRef | ast.Transform) -> str:
    if isinstance(left, ast.FieldRef):
        return left.text
    return f"{left.func}({_left_text(left.inner)})"


def parse_condition(text: str) -> ast.Expr:
    """Parse a condition or raise ConditionSyntaxError with the offset of the problem."""
    return _Parser(text).parse()


__all__ = ["LIST_OPS", "ConditionSyntaxError", "parse_condition"]
