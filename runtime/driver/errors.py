"""Typed errors of the driver host side (loader, decoder handshake).

`DriverError` and `LibbpfError` live in the shared core (the libbpf bindings raise them);
the codes come from its one registry, `drivercore.errors.ExitCode`.
"""

from __future__ import annotations

from drivercore.errors import DriverError, ExitCode, LibbpfError

__all__ = ["DriverError", "LibbpfError", "ProbeConfigError", "SchemaMismatchError"]


class SchemaMismatchError(DriverError):
    """The probe or module was built from another schema revision than this decoder."""

    exit_code = ExitCode.SCHEMA_MISMATCH


class ProbeConfigError(DriverError):
    """Bad probe settings: unknown syscall name, ring size not a power of two, ..."""

    exit_code = ExitCode.PROBE_CONFIG
