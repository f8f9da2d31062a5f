"""Typed errors. Each class owns a distinct exit code; the CLI catches DriverkitError once."""

from __future__ import annotations


class DriverkitError(Exception):
    """Base of every expected failure: printed as one line, exits with `exit_code`."""

    exit_code = 1


class UsageError(DriverkitError):
    """Bad option, option value or config key."""

    exit_code = 2


class InvalidKernelReleaseError(DriverkitError):
    """The kernel release string is not a release, or is unsafe to render into a script."""

    exit_code = 3


class UnknownTargetError(DriverkitError):
    """A --target that no registered target answers to."""

    exit_code = 4


class TargetInferenceError(DriverkitError):
    """No target, or several, fit a kernel release and --target was not given."""

    exit_code = 5


class HeadersNotFoundError(DriverkitError):
    """None of a target's candidate header URLs exists."""

    exit_code = 6


class ContainerEngineError(DriverkitError):
    """The container engine is unreachable or failed outside the build itself."""

    exit_code = 7


class BuildFailedError(DriverkitError):
    """The compiler (or the build script) failed; the message carries its error lines."""

    exit_code = 8


class BuildTimeoutError(DriverkitError):
    """A build ran past its timeout and was killed."""

    exit_code = 9


class ArtifactValidationError(DriverkitError):
    """A built artifact does not match the kernel, arch or driver it was built for."""

    exit_code = 10


class DownloadError(DriverkitError):
    """A download failed, or its size or checksum did not match."""

    exit_code = 11


class PublishError(DriverkitError):
    """The artifact repository refused or corrupted a publish."""

    exit_code = 12
