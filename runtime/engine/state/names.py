"""uid/gid -> user and group names (Falco's user.name, group.name) from passwd/group files."""

from __future__ import annotations

import time

# A miss re-reads the file (users get added while we run), but not more often than this:
# an id with no name at all must not cost a file read per event.
RELOAD_AFTER_S = 5.0


class NameDb:
    """id -> name from one passwd- or group-format file (`name:x:id:...`), cached; the
    first line wins when an id repeats, as getpwuid(3) does."""

    def __init__(self, path: str) -> None:
        self._path = path
        # id -> name as last read. Read-only for others, and always this one dict (a
        # reload refills it): a rule reads a known id's name straight from it, and calls
        # get() only for an id it lacks.
        self.names: dict[int, str] = {}
        self._loaded_at = -1e9

    def _load(self) -> None:
        self._loaded_at = time.monotonic()
        names: dict[int, str] = {}
        try:
            with open(self._path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    fields = line.split(":")
                    if len(fields) > 2 and fields[2].isdigit():
                        names.setdefault(int(fields[2]), fields[0])
        except OSError:
            pass
        self.names.clear()
        self.names.update(names)

    def get(self, ident: int) -> str | None:
        name = self.names.get(ident)
        if name is None and time.monotonic() - self._loaded_at > RELOAD_AFTER_S:
            self._load()
            name = self.names.get(ident)
        return name
