"""The DNS table behind fd.sip.name, fd.cip.name, fd.lip.name and fd.rip.name.

As libsinsp's DNS manager does for Falco: the table holds only the names that rule
conditions compare those fields against (the compiler hands them over as it compiles),
resolved with the host's resolver, and an address extracts the names it resolved from.
An address no watched name resolves to extracts NULL, as in Falco (`<NA>` in outputs).

`rt-engine run` resolves the names once its rules are loaded, before any event (bounded:
a name that does not answer within RESOLVE_TIMEOUT_S resolves to nothing this round);
a daemon thread then re-resolves every REFRESH_S, since the addresses behind a name
move. The event path only reads a dict and never waits on the resolver: names first
seen later (a rule compiled on the fly) are resolved by that thread, woken at once.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterable
from typing import Final

REFRESH_S: Final = 10.0
RESOLVE_TIMEOUT_S: Final = 2.0
MAX_NAMES: Final = 4096
# A DNS name as rules write it: labels of letters, digits, `-` and `_`, dot-separated.
_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})"
                   r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?", re.ASCII)


def _addresses(name: str) -> set[str]:
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    return {str(info[4][0]) for info in infos}


class DnsTable:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self._by_address: dict[str, list[str]] = {}
        self._dirty = False
        self._refresher: threading.Thread | None = None
        self._wake = threading.Event()

    @property
    def watched(self) -> int:
        return len(self._names)

    def watch(self, names: Iterable[object]) -> None:
        """Names a condition compares an fd.*ip.name field against; others are ignored
        (a literal that is no DNS name can match no address)."""
        # Kept as written: the table answers with the rule's own spelling, which the
        # rule's comparison then finds equal.
        added = [n for n in names if isinstance(n, str) and _NAME.fullmatch(n)]
        with self._lock:
            fresh = [n for n in added if n not in self._names]
            if fresh and len(self._names) + len(fresh) <= MAX_NAMES:
                self._names.update(fresh)
                self._dirty = True

    def names_of(self, address: object) -> list[str] | None:
        if self._dirty:
            self.start_refresher()
            self._wake.set()
        if address is None:
            return None
        return self._by_address.get(str(address))

    def refresh(self) -> None:
        """Resolve every watched name now, each bounded by RESOLVE_TIMEOUT_S."""
        with self._lock:
            names = sorted(self._names)
            self._dirty = False
        found: dict[str, set[str]] = {}
        threads = []
        for name in names:
            def resolve(name: str = name) -> None:
                found[name] = _addresses(name)

            # Daemon threads: a resolver that never answers must not hold the exit.
            thread = threading.Thread(target=resolve, name=f"dns {name}", daemon=True)
            thread.start()
            threads.append(thread)
        deadline = time.monotonic() + RESOLVE_TIMEOUT_S
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        by_address: dict[str, list[str]] = {}
        for name in names:
            for address in sorted(found.get(name, ())):
                by_address.setdefault(address, []).append(name)
        self._by_address = by_address  # one assignment: readers see old or new, whole

    def start_refresher(self) -> None:
        """The daemon thread that keeps the table fresh (idempotent)."""
        with self._lock:
            if self._refresher is not None:
                return
            self._refresher = threading.Thread(target=self._refresh_forever,
                                               name="dns refresh", daemon=True)
        self._refresher.start()

    def _refresh_forever(self) -> None:
        while True:
            self._wake.wait(REFRESH_S)
            self._wake.clear()
            self.refresh()


# One per process, as libsinsp's: every ruleset's names resolve into it.
DNS: Final = DnsTable()

__all__ = ["DNS", "DnsTable"]
