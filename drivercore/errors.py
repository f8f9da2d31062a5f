"""Typed errors and the one exit-code registry of every command (`driverkit`, `rt-engine`).

Each error class names its code from `ExitCode`; no number is written anywhere else, so two
failures can never share a code by accident (tests/test_core.py checks the registry). Every
CLI catches `ToolError` once and prints it as one line.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    """Process exit codes. Ranges: 1-19 build side, 20-29 driver host side, 30-39 engine
    runtime, 40-49 rules."""

    FAILURE = 1
    USAGE = 2
    INVALID_KERNEL_RELEASE = 3
    UNKNOWN_TARGET = 4
    TARGET_INFERENCE = 5
    HEADERS_NOT_FOUND = 6
    CONTAINER_ENGINE = 7
    BUILD_FAILED = 8
    BUILD_TIMEOUT = 9
    ARTIFACT_VALIDATION = 10
    DOWNLOAD = 11
    REPOSITORY = 12
    INDEX_INVALID = 13
    INTEGRITY = 14
    PUBLISH_CONFLICT = 15
    DRIVER = 20
    LIBBPF = 21
    SCHEMA_MISMATCH = 22
    PROBE_CONFIG = 23
    DRIVER_TYPE_REFUSED = 24
    SYSCALL_DROP_EXIT = 30
    RULE_LOAD = 40


class ToolError(Exception):
    """Base of every expected failure: printed as one line, exits with `exit_code`."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILURE


class UsageError(ToolError):
    """Bad option, option value, config key or file argument."""

    exit_code = ExitCode.USAGE


class InvalidKernelReleaseError(ToolError):
    """The kernel release string is not a release, or is unsafe to render into a script."""

    exit_code = ExitCode.INVALID_KERNEL_RELEASE


class DownloadError(ToolError):
    """A download failed, or its size or checksum did not match."""

    exit_code = ExitCode.DOWNLOAD


class RepositoryError(ToolError):
    """An artifact repository (directory, WebDAV or S3) refused or failed a request."""

    exit_code = ExitCode.REPOSITORY


class DriverError(ToolError):
    """The driver could not be loaded, attached or read."""

    exit_code = ExitCode.DRIVER


class LibbpfError(DriverError):
    """libbpf is missing or one of its calls failed."""

    exit_code = ExitCode.LIBBPF
