"""Rule priorities in Falco's order (smaller = more severe)."""

from __future__ import annotations

from enum import IntEnum


class Priority(IntEnum):
    EMERGENCY = 0
    ALERT = 1
    CRITICAL = 2
    ERROR = 3
    WARNING = 4
    NOTICE = 5
    INFORMATIONAL = 6
    DEBUG = 7

    @classmethod
    def parse(cls, text: str) -> Priority:
        """Case-insensitive, as Falco; `info` is Falco's alias of informational."""
        key = text.strip().upper()
        if key == "INFO":
            key = "INFORMATIONAL"
        try:
            return cls[key]
        except KeyError:
            names = ", ".join(p.name.lower() for p in cls)
            raise ValueError(f"unknown priority {text!r}; use one of: {names}") from None

    @property
    def falco_name(self) -> str:
        return self.name.capitalize()
