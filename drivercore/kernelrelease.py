"""Kernel release (`uname -r`) and kernel version (`uname -v`) parsing.

The release grammar follows driverkit's kernelrelease package so that both tools split a
release into the same parts: full version (`5.10.0`), numeric version/patch level/sublevel,
the first extraversion token and the full extraversion (everything after the full version).
`full_version + full_extra_version` always gives back the input.

Release strings end up inside shell scripts and file names, so they are validated against a
strict character set before any parsing; anything else is an InvalidKernelReleaseError.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from drivercore.errors import InvalidKernelReleaseError, UsageError

# The kernel stores `uname -r` and `uname -v` in 65-byte buffers (__NEW_UTS_LEN + NUL);
# anything longer cannot have come from a running kernel.
MAX_RELEASE_LEN = 64
MAX_KERNEL_VERSION_LEN = 128

RELEASE_EXAMPLE = "6.1.0-56-amd64"

# Only characters that appear in real releases and are inert in sh, file names and URLs.
_RELEASE_CHARS = re.compile(r"[0-9A-Za-z._+~-]+", re.ASCII)

# Same grammar as driverkit's kernelVersionPattern. Python's backtracking picks the same
# submatches as Go's leftmost-first RE2 for this pattern, so the parts agree with driverkit.
_RELEASE_PATTERN = re.compile(
    r"(?P<fullversion>(?P<version>0|[1-9]\d*)"
    r"(?:\.(?P<patchlevel>0|[1-9]\d*)[.+]?(?P<sublevel>0|[1-9]\d*)?)?)"
    r"(?P<fullextraversion>[-.+](?P<extraversion>\d+|\d*[a-zA-Z-][0-9a-zA-Z-]*)?"
    r"(?:[.+~](?:\d+|\d*[a-zA-Z-][0-9a-zA-Z-_]*))*)?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?",
    re.ASCII,
)

# `uname -v` text: words, dates and times, parentheses around Debian's build date, and the
# `@0` a reproducible build (KBUILD_BUILD_TIMESTAMP=@0) prints instead of a date. No shell
# metacharacters ($ ` ; | & < > quotes backslash) and no control characters.
_KERNEL_VERSION_CHARS = re.compile(r"[0-9A-Za-z #:.,_~+()@-]+", re.ASCII)
# What we keep from it (the build number, or Ubuntu's `26~22.04.1`) must be file-name safe.
_KERNEL_VERSION_TOKEN = re.compile(r"[0-9A-Za-z._~+-]+", re.ASCII)
# Falco and falcoctl take the digits right after the first `#` as the build number.
_BUILD_NUMBER = re.compile(r"#(\d+)", re.ASCII)
# Debian appends its package version: `#1 SMP PREEMPT_DYNAMIC Debian 6.1.153-1 (2025-09-20)`.
_DEBIAN_PACKAGE_VERSION = re.compile(r"\bDebian (\d[0-9A-Za-z.+~-]*)", re.ASCII)

_ARCH_ALIASES = {
    "amd64": "amd64",
    "x86_64": "amd64",
    "x86-64": "amd64",
    "arm64": "arm64",
    "aarch64": "arm64",
}
_NON_DEB_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
SUPPORTED_ARCHS = ("amd64", "arm64")


@dataclass(frozen=True)
class KernelRelease:
    full_version: str
    version: int
    patch_level: int
    sublevel: int
    extra_version: str
    full_extra_version: str
    raw: str

    def __str__(self) -> str:
        return self.full_version + self.full_extra_version

    @property
    def series(self) -> tuple[int, int]:
        """(version, patch level), the granularity distros branch their kernels at."""
        return (self.version, self.patch_level)

    def to_json(self) -> dict[str, str | int]:
        """driverkit's JSON field names, so the output can be compared with driverkit's."""
        return {
            "full_version": self.full_version,
            "version": self.version,
            "patch_level": self.patch_level,
            "sublevel": self.sublevel,
            "extra_version": self.extra_version,
            "full_extra_version": self.full_extra_version,
        }


def _shown(value: str, limit: int = 80) -> str:
    """The input quoted for a one-line error, newlines and control characters escaped."""
    clipped = value if len(value) <= limit else value[:limit] + "..."
    return repr(clipped)


def _check_size_and_chars(
    value: str,
    max_len: int,
    allowed: re.Pattern[str],
    error: Callable[[str, str], InvalidKernelReleaseError],
) -> None:
    """`error(value, why)` when `value` is longer than `max_len` or has a character outside
    `allowed` (named in the message)."""
    if len(value) > max_len:
        raise error(value, f"it is {len(value)} characters long")
    if not allowed.fullmatch(value):
        bad = sorted({c for c in value if not allowed.fullmatch(c)})
        raise error(value, f"it contains {''.join(bad)!r}")


def _release_error(value: str, why: str) -> InvalidKernelReleaseError:
    return InvalidKernelReleaseError(
        f"invalid kernel release {_shown(value)}: {why}; expected a `uname -r` string "
        f"such as {RELEASE_EXAMPLE} (digits, letters and . - + ~ _ only, at most "
        f"{MAX_RELEASE_LEN} characters)"
    )


def validate_kernel_release(value: str) -> str:
    """Return `value` unchanged if it is safe to render into scripts and file names."""
    if not value:
        raise _release_error(value, "it is empty")
    _check_size_and_chars(value, MAX_RELEASE_LEN, _RELEASE_CHARS, _release_error)
    if ".." in value:
        raise _release_error(value, "it contains '..'")
    if not value[0].isdigit():
        raise _release_error(value, "it does not start with a version number")
    return value


def parse_kernel_release(value: str) -> KernelRelease:
    """Split a `uname -r` string into driverkit's parts; InvalidKernelReleaseError if unsafe."""
    validate_kernel_release(value)
    match = _RELEASE_PATTERN.fullmatch(value)
    if match is None:
        raise _release_error(value, "it does not parse as a kernel release")
    full_version = match.group("fullversion")
    full_extra = match.group("fullextraversion") or ""
    if full_version + full_extra != value:
        # driverkit's pattern has a trailing `+build` group outside the extraversion; a
        # release only that group could match would not round-trip, so refuse it.
        raise _release_error(value, "its suffix is not a kernel extraversion")
    return KernelRelease(
        full_version=full_version,
        version=int(match.group("version")),
        patch_level=int(match.group("patchlevel") or 0),
        sublevel=int(match.group("sublevel") or 0),
        extra_version=match.group("extraversion") or "",
        full_extra_version=full_extra,
        raw=value,
    )


def _kernel_version_error(value: str, why: str) -> InvalidKernelReleaseError:
    return InvalidKernelReleaseError(
        f"invalid kernel version {_shown(value)}: {why}; expected a build number such as 1 "
        f"or the `uname -v` text such as '#1 SMP Debian 5.10.179-1 (2023-05-12)'"
    )


def validate_kernel_version(value: str) -> str:
    """Return the `uname -v` text (or bare build number) unchanged if it is safe to read."""
    if not value.strip():
        raise _kernel_version_error(value, "it is empty")
    _check_size_and_chars(
        value, MAX_KERNEL_VERSION_LEN, _KERNEL_VERSION_CHARS, _kernel_version_error
    )
    return value


def _safe_token(original: str, token: str) -> str:
    if not _KERNEL_VERSION_TOKEN.fullmatch(token) or ".." in token:
        raise _kernel_version_error(original, "no build number can be read from it")
    return token


def parse_kernel_version(uname_v: str) -> str:
    """The build number Falco puts in driver names: `#1 SMP Debian ...` -> `1`.

    A bare number is returned as is. Text without a `#N` is kept whole when it is a single
    safe token, as falcoctl does (it never guesses a number).
    """
    validate_kernel_version(uname_v)
    stripped = uname_v.strip()
    match = _BUILD_NUMBER.search(stripped)
    if match:
        return match.group(1)
    return _safe_token(uname_v, stripped)


def ubuntu_kernel_version(uname_v: str) -> str:
    """Ubuntu keeps its whole upload number: `#26~22.04.1-Ubuntu SMP ...` -> `26~22.04.1`."""
    validate_kernel_version(uname_v)
    first_word = uname_v.strip().lstrip("#").split(" ")[0]
    first_word = first_word.removesuffix("-Ubuntu")
    return _safe_token(uname_v, first_word)


def debian_package_version(uname_v: str) -> str | None:
    """The Debian package version in `uname -v` (`6.1.153-1`), or None when absent."""
    validate_kernel_version(uname_v)
    match = _DEBIAN_PACKAGE_VERSION.search(uname_v)
    if match is None:
        return None
    version = match.group(1)
    if ".." in version:
        return None
    return version


def normalize_arch(arch: str) -> str:
    """Debian-style architecture name (amd64, arm64) for any spelling users pass."""
    normalized = _ARCH_ALIASES.get(arch.strip().lower())
    if normalized is None:
        raise UsageError(
            f"unsupported architecture {_shown(arch)}: use one of {', '.join(SUPPORTED_ARCHS)}"
        )
    return normalized


def non_deb_arch(arch: str) -> str:
    """The rpm/kernel spelling (x86_64, aarch64) that most non-Debian mirrors use."""
    return _NON_DEB_ARCH[normalize_arch(arch)]
