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


class RuleLoadErrors(RuleLoadError):
    """Every error found while loading (Falco reports them all, not only the first), plus
    the warnings gathered so far, so `validate` can list them all."""

    def __init__(self, errors: list[RuleLoadError], warnings: list[str]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        super().__init__(f"{first}{more}", file=first.file, item=first.item,
                         line=first.line, col=first.col, offset=first.offset)
        self.errors = tuple(errors)
        self.warnings = tuple(warnings)
