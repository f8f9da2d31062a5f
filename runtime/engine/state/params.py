"""Event params as the state reads them.

The decoder gives ints for numeric params; events built by hand (tests, other producers)
may give text (`"0x10"`, `"AF_INET"`), so numeric params go through these.
"""

from __future__ import annotations

_FAMILY_NAMES = {"AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}


def as_int(value: object, default: int = 0) -> int:
    """An event param as an int: the decoder gives ints, hand-built events may give text."""
    if value.__class__ is int:  # the decoder's case: skip the isinstance chain
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            return default
    return default


def socket_family(value: object) -> int:
    """A family param as its number; hand-built events may name it (`AF_INET`)."""
    if value.__class__ is int:
        return value
    if isinstance(value, str):
        return _FAMILY_NAMES.get(value.upper(), as_int(value))
    return as_int(value)
