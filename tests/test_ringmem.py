"""The ring buffer's ordered loads and stores: the compiled ones (acquire/release) read and
write exactly what the plain struct fallback does, on the kind of memory the ring uses."""

from __future__ import annotations

import mmap

import pytest

from runtime.driver import ringmem
from tests.conftest import require


def test_the_compiled_atomics_are_in_use() -> None:
    require(ringmem.ORDERED, "runtime.driver._fastdecode is not built (pip install -e .)")
    assert ringmem.load_acquire_u64 is not ringmem._plain_load_u64


@pytest.mark.parametrize("value", [0, 1, 0x1234_5678_9ABC_DEF0, 2**64 - 1])
def test_ordered_and_plain_access_agree_on_shared_memory(value: int) -> None:
    page = mmap.mmap(-1, mmap.PAGESIZE)  # anonymous shared mapping, like the ring's pages
    try:
        ringmem.store_release_u64(page, 8, value)
        assert ringmem._plain_load_u64(page, 8) == value
        assert ringmem.load_acquire_u64(page, 8) == value
        assert ringmem.load_acquire_u32(page, 8) == ringmem._plain_load_u32(page, 8)
        assert ringmem.load_acquire_u32(memoryview(page), 12) == value >> 32
        ringmem._plain_store_u64(page, 16, value)
        assert ringmem.load_acquire_u64(memoryview(page)[8:], 8) == value
    finally:
        page.close()


def test_misaligned_or_read_only_access_is_refused() -> None:
    require(ringmem.ORDERED, "runtime.driver._fastdecode is not built (pip install -e .)")
    page = mmap.mmap(-1, mmap.PAGESIZE)
    try:
        with pytest.raises(ValueError, match="aligned"):
            ringmem.load_acquire_u64(page, 4)
        with pytest.raises(ValueError, match="aligned"):
            ringmem.load_acquire_u32(page, mmap.PAGESIZE - 2)
        with pytest.raises(ValueError, match="aligned"):
            ringmem.store_release_u64(page, mmap.PAGESIZE, 1)
    finally:
        page.close()
    with pytest.raises(BufferError):
        ringmem.store_release_u64(bytes(16), 0, 1)
