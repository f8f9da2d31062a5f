"""The typed error every rule-loading failure raises."""

from __future__ import annotations

from driverkit.errors import DriverkitError


class RuleLoadError(DriverkitError):
    """A rules file that cannot be loaded: YAML, item, condition or field error.

    The message is one line: `FILE:LINE:COL: <item kind> '<name>': <what>`; condition errors
    add `(condition offset N)` so the author can find the token inside a folded scalar.
    """

    exit_code = 40  # distinct: 1-12 driverkit, 20-29 driver host side, 30 drop exit

    def __init__(self, message: str, *, file: str = "", item: str = "", line: int = 0,
                 col: int = 0, offset: int | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.item = item
        self.line = line
        self.col = col
        self.offset = offset
