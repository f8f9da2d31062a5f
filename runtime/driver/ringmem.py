"""Ordered loads and stores on a BPF ring buffer's shared pages.

The kernel publishes a record with a release store of its header (clearing the busy bit)
and of producer_pos; the consumer must read both with acquire loads before it reads the
record, and return the space with a release store of consumer_pos (libbpf's ringbuf.c
does the same). The compiled module (runtime/driver/_fastdecode.c) provides them. Without
it, plain struct loads and stores stand in: x86 orders them that way already, and on
arm64 the consumer then relies on the interpreter's own barriers, so rt-engine says so.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable
from typing import Any, Final

Load = Callable[[Any, int], int]
Store = Callable[[Any, int, int], None]

_U32: Final = struct.Struct("=I")
_U64: Final = struct.Struct("=Q")


def _plain_load_u64(buf: Any, off: int) -> int:
    value: int = _U64.unpack_from(buf, off)[0]
    return value


def _plain_load_u32(buf: Any, off: int) -> int:
    value: int = _U32.unpack_from(buf, off)[0]
    return value


def _plain_store_u64(buf: Any, off: int, value: int) -> None:
    _U64.pack_into(buf, off, value)


def _ordered() -> tuple[Load, Load, Store, bool]:
    try:
        mod = importlib.import_module("runtime.driver._fastdecode")
    except ImportError:
        return _plain_load_u64, _plain_load_u32, _plain_store_u64, False
    return mod.load_acquire_u64, mod.load_acquire_u32, mod.store_release_u64, True


load_acquire_u64, load_acquire_u32, store_release_u64, ORDERED = _ordered()

__all__ = ["ORDERED", "load_acquire_u32", "load_acquire_u64", "store_release_u64"]
