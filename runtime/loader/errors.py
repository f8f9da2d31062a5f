"""Errors of the driver loader that no other part of the host side raises."""

from __future__ import annotations

from drivercore.errors import ExitCode
from runtime.driver.errors import DriverError


class DriverTypeRefusedError(DriverError):
    """An explicitly requested driver type cannot work on this host (no BTF, no modules)."""

    exit_code = ExitCode.DRIVER_TYPE_REFUSED
