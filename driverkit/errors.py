"""Typed errors of the build side. Codes come from the shared registry
(`drivercore.errors.ExitCode`); the CLI catches `ToolError` once."""

from __future__ import annotations

from drivercore.errors import (
    DownloadError,
    ExitCode,
    InvalidKernelReleaseError,
    ToolError,
    UsageError,
)

__all__ = [
    "ArtifactValidationError",
    "BuildFailedError",
    "BuildTimeoutError",
    "ContainerEngineError",
    "DownloadError",
    "HeadersNotFoundError",
    "InvalidKernelReleaseError",
    "TargetInferenceError",
    "ToolError",
    "UnknownTargetError",
    "UsageError",
]


class UnknownTargetError(ToolError):
    """A --target that no registered target answers to."""

    exit_code = ExitCode.UNKNOWN_TARGET


class TargetInferenceError(ToolError):
    """No target, or several, fit a kernel release and --target was not given."""

    exit_code = ExitCode.TARGET_INFERENCE


class HeadersNotFoundError(ToolError):
    """None of a target's candidate header URLs exists."""

    exit_code = ExitCode.HEADERS_NOT_FOUND


class ContainerEngineError(ToolError):
    """The container engine is unreachable or failed outside the build itself."""

    exit_code = ExitCode.CONTAINER_ENGINE


class BuildFailedError(ToolError):
    """The compiler (or the build script) failed; the message carries its error lines."""

    exit_code = ExitCode.BUILD_FAILED


class BuildTimeoutError(ToolError):
    """A build ran past its timeout and was killed."""

    exit_code = ExitCode.BUILD_TIMEOUT


class ArtifactValidationError(ToolError):
    """A built artifact does not match the kernel, arch or driver it was built for."""

    exit_code = ExitCode.ARTIFACT_VALIDATION
