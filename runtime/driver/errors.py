"""Typed errors of the driver host side (loader, decoder handshake).

They derive from driverkit's base so the CLIs print them as one line with their own
exit code. Exit codes 20-29 are reserved for the driver host side.
"""

from __future__ import annotations

from driverkit.errors import DriverkitError


class DriverError(DriverkitError):
    """The driver could not be loaded, attached or read."""

    exit_code = 20


class LibbpfError(DriverError):
    """libbpf is missing or one of its calls failed."""

    exit_code = 21


class SchemaMismatchError(DriverError):
    """The probe or module was built from another schema revision than this decoder."""

    exit_code = 22


class ProbeConfigError(DriverError):
    """Bad probe settings: unknown syscall name, ring size not a power of two, ..."""

    exit_code = 23
