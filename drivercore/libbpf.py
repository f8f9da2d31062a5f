"""Minimal ctypes binding to libbpf (libbpf.so.1): just what the probe loader uses.

libbpf >= 1.0 semantics: functions returning pointers give NULL and set errno on
failure; functions returning int give a negative errno.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import threading
from typing import Any, Final

from drivercore.errors import LibbpfError

_c_void_p = ctypes.c_void_p
_c_char_p = ctypes.c_char_p
_c_int = ctypes.c_int
_c_size_t = ctypes.c_size_t
_c_uint32 = ctypes.c_uint32

# libbpf_print_fn_t: int (*)(enum libbpf_print_level, const char *fmt, va_list ap)
PRINT_FN: Final = ctypes.CFUNCTYPE(_c_int, _c_int, _c_char_p, _c_void_p)
LIBBPF_WARN: Final = 0
LIBBPF_INFO: Final = 1
LIBBPF_DEBUG: Final = 2


class TestRunOpts(ctypes.Structure):
    """struct bpf_test_run_opts of libbpf's bpf.h (libbpf >= 0.7)."""

    _fields_ = [
        ("sz", _c_size_t),
        ("data_in", _c_void_p),
        ("data_out", _c_void_p),
        ("data_size_in", _c_uint32),
        ("data_size_out", _c_uint32),
        ("ctx_in", _c_void_p),
        ("ctx_out", _c_void_p),
        ("ctx_size_in", _c_uint32),
        ("ctx_size_out", _c_uint32),
        ("retval", _c_uint32),
        ("repeat", _c_int),
        ("duration", _c_uint32),
        ("flags", _c_uint32),
        ("cpu", _c_uint32),
        ("batch_size", _c_uint32),
    ]


BPF_F_TEST_RUN_ON_CPU: Final = 1


def _load() -> ctypes.CDLL:
    for name in ("libbpf.so.1", ctypes.util.find_library("bpf")):
        if not name:
            continue
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
    raise LibbpfError("libbpf.so.1 not found: install libbpf1 (Debian: apt-get install libbpf1)")


_cache: dict[str, ctypes.CDLL] = {}
_lib_lock = threading.Lock()


def lib() -> ctypes.CDLL:
    """The loaded library with argument/return types declared (loaded once)."""
    with _lib_lock:
        if "libbpf" not in _cache:
            _cache["libbpf"] = _declare(_load())
        return _cache["libbpf"]


def _declare(L: ctypes.CDLL) -> ctypes.CDLL:
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "bpf_object__open_file": (_c_void_p, [_c_char_p, _c_void_p]),
        "bpf_object__load": (_c_int, [_c_void_p]),
        "bpf_object__close": (None, [_c_void_p]),
        "bpf_object__find_map_by_name": (_c_void_p, [_c_void_p, _c_char_p]),
        "bpf_object__find_program_by_name": (_c_void_p, [_c_void_p, _c_char_p]),
        "bpf_map__set_max_entries": (_c_int, [_c_void_p, _c_uint32]),
        "bpf_map__max_entries": (_c_uint32, [_c_void_p]),
        "bpf_map__value_size": (_c_uint32, [_c_void_p]),
        "bpf_map__fd": (_c_int, [_c_void_p]),
        "bpf_map__initial_value": (_c_void_p, [_c_void_p, ctypes.POINTER(_c_size_t)]),
        "bpf_program__attach": (_c_void_p, [_c_void_p]),
        "bpf_program__fd": (_c_int, [_c_void_p]),
        "bpf_prog_test_run_opts": (_c_int, [_c_int, ctypes.POINTER(TestRunOpts)]),
        "bpf_program__set_autoload": (_c_int, [_c_void_p, ctypes.c_bool]),
        "bpf_link__destroy": (_c_int, [_c_void_p]),
        "bpf_map_lookup_elem": (_c_int, [_c_int, _c_void_p, _c_void_p]),
        "bpf_map_update_elem": (_c_int, [_c_int, _c_void_p, _c_void_p, ctypes.c_uint64]),
        "libbpf_num_possible_cpus": (_c_int, []),
        "libbpf_set_print": (_c_void_p, [_c_void_p]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(L, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return L


def errno_error(what: str, rc: int | None = None) -> LibbpfError:
    err = -rc if rc is not None and rc < 0 else ctypes.get_errno()
    return LibbpfError(f"{what}: {os.strerror(err) if err else 'failed'} (errno {err})")


class LogCapture:
    """Collects libbpf's messages (the verifier log on a failed load) while active, so a
    load error can say why instead of pointing at stderr."""

    _lock = threading.Lock()

    def __init__(self, max_lines: int = 60) -> None:
        self.lines: list[str] = []
        self.max_lines = max_lines
        self._cb = PRINT_FN(self._print)
        self._libc = ctypes.CDLL(None)
        self._vsnprintf = self._libc.vsnprintf
        self._vsnprintf.restype = _c_int
        self._vsnprintf.argtypes = [_c_char_p, _c_size_t, _c_char_p, _c_void_p]
        # va_list is a pointer-sized array on x86_64 only; elsewhere keep libbpf's default.
        self.enabled = platform.machine() in ("x86_64", "amd64")

    def _print(self, level: int, fmt: bytes | None, ap: int | None) -> int:
        if level == LIBBPF_DEBUG or fmt is None:
            return 0
        buf = ctypes.create_string_buffer(1 << 20)
        self._vsnprintf(buf, len(buf), fmt, ap)
        for line in buf.value.decode("utf-8", "replace").splitlines():
            self.lines.append(line)
        del self.lines[: -self.max_lines]
        return 0

    def __enter__(self) -> LogCapture:
        if self.enabled:
            self._lock.acquire()
            self._prev = lib().libbpf_set_print(ctypes.cast(self._cb, _c_void_p))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            lib().libbpf_set_print(self._prev)
            self._lock.release()

    def tail(self, n: int = 12) -> str:
        return "\n".join(self.lines[-n:])
