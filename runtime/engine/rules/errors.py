"""The typed error every rule-loading failure raises."""

from __future__ import annotations

from drivercore.errors import ExitCode, ToolError


class RuleLoadError(ToolError):
    """A rules file that cannot be loaded: YAML, item, condition or field error.

    The message is one line: `FILE:LINE:COL: <item kind> '<name>': <what>`; condition errors
    add `(condition offset N)` so the author can find the token inside a folded scalar.
    """

    exit_code = ExitCode.RULE_LOAD

    def __init__(self, message: str, *, file: str = "", item: str = "", line: int = 0,
                 col: int = 0, offset: int | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.item = item
        self.line = line
        self.col = col
        self.offset = offset
