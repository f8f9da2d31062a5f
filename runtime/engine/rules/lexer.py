"""Scanner for condition text.

Falco's grammar is context sensitive (a bare string after `=` may contain `.`, `/`, `<`
and other characters that are operators elsewhere), so instead of a token stream the
parser asks the scanner for the token kind it expects at the cursor, as libsinsp does.
"""

from __future__ import annotations

import re

IDENTIFIER = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
FIELD_NAME = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*(?:\.[a-zA-Z]+[a-zA-Z0-9_]*)+")
FIELD_ARG_BARE = re.compile(r"[^\]\[\"'\s]+")
HEX_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+")
NUMBER = re.compile(r"[+\-]?[0-9]+\.?[0-9]*(?:[eE][+\-][0-9]+)?")
BARE_STRING = re.compile(r"[^()\"'\s=,]+")
BLANK = re.compile(r"[ \t\b\r\n]+")
WORD = re.compile(r"\S+")

UNARY_OPS = ("exists",)
NUM_OPS = ("<=", "<", ">=", ">")
# Symbolic ones first (longest first); word operators need a blank after them.
STR_OPS_SYMBOLIC = ("==", "=", "!=")
STR_OPS_WORD = (
    "glob", "iglob", "contains", "icontains", "bcontains", "startswith", "bstartswith",
    "endswith", "regex",
)
LIST_OPS = ("intersects", "in", "pmatch")
ALL_OPS = (*UNARY_OPS, *NUM_OPS, *STR_OPS_SYMBOLIC, *STR_OPS_WORD, *LIST_OPS)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


class ConditionSyntaxError(ValueError):
    """A condition that does not parse; `offset` is the character index in the condition."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def blank(self) -> bool:
        m = BLANK.match(self.text, self.pos)
        if m is None:
            return False
        self.pos = m.end()
        return True

    def regex(self, pattern: re.Pattern[str]) -> str | None:
        m = pattern.match(self.text, self.pos)
        if m is None or m.end() == self.pos:
            return None
        self.pos = m.end()
        return m.group(0)

    def literal(self, token: str) -> bool:
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def keyword(self, word: str) -> bool:
        """`word` followed by a non-identifier character (or the end)."""
        if not self.text.startswith(word, self.pos):
            return False
        end = self.pos + len(word)
        if end < len(self.text) and (self.text[end].isalnum() or self.text[end] in "_."):
            return False
        self.pos = end
        return True

    def next_word(self) -> str:
        m = WORD.match(self.text, self.pos)
        return m.group(0) if m else ""

    def quoted(self) -> str | None:
        """A '...' or "..." string with backslash escapes; None if not at a quote."""
        quote = self.peek()
        if quote not in ("'", '"'):
            return None
        start = self.pos
        out: list[str] = []
        i = self.pos + 1
        text = self.text
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                out.append(_ESCAPES.get(nxt, nxt))
                i += 2
                continue
            if ch == quote:
                self.pos = i + 1
                return "".join(out)
            out.append(ch)
            i += 1
        raise ConditionSyntaxError("unterminated quoted string", start)

    def operator(self) -> str | None:
        for op in UNARY_OPS:
            if self.keyword(op):
                return op
        for op in (*NUM_OPS, *STR_OPS_SYMBOLIC):
            if self.literal(op):
                return op
        for op in STR_OPS_WORD:
            if self.keyword(op):
                return op
        for op in LIST_OPS:
            if self.keyword(op):
                return op
        return None
