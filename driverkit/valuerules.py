"""The accepted form of every text value a user hands the build side.

A value reaches a shell script, a Dockerfile, an image tag, a file name or a URL, so each
option row of `driverkit.options` names one of these rules and every source (flag, config
YAML, `DRIVERKIT_*` variable, catalog entry) is held to it in the one place that converts
it. The rules are allow-lists: what a real driver name, version, compiler, image reference
or URL looks like. Nothing is escaped or cleaned up here; a value either is what the rule
describes or it is refused with the rule's description.

Paths are the exception: any path is a path, so a path rule only refuses what no path a
person types contains (control and line-separator characters) and bounds the length.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from drivercore.errors import InvalidKernelReleaseError, ToolError, UsageError
from drivercore.kernelrelease import (
    MAX_KERNEL_VERSION_LEN,
    MAX_RELEASE_LEN,
    RELEASE_EXAMPLE,
    parse_kernel_version,
)
from drivercore.naming import is_valid_driver_version

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, zero-width and
# bidirectional formatting characters: none belongs in any value here, and each can end a
# line (or hide text) in a script, a Dockerfile, a log or a terminal. Lone surrogates are
# bytes that were not UTF-8 (Python's surrogateescape for argv and the environment): no
# file, script or URL can be written with them.
UNSAFE_CHARACTERS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff"
    "\ud800-\udfff]"
)

MAX_SHOWN = 40


def shown(value: object) -> str:
    """`value` for a one-line error: clipped, with line breaks and controls escaped."""
    if isinstance(value, str):
        clipped = value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "..."
        return ascii(clipped)
    if isinstance(value, list | tuple | dict):
        return f"a {'list' if not isinstance(value, dict) else 'mapping'}"
    return ascii(value)[:MAX_SHOWN]


@dataclass(frozen=True)
class TextRule:
    """A value's accepted form: a full-match pattern and/or a parser that must accept it."""

    form: str  # what users read in the error: the accepted form, with an example
    max_len: int
    pattern: re.Pattern[str] | None = None
    accepts: Callable[[str], bool] | None = None
    # The error a refusal raises: its exit code tells scripts what kind of input was bad.
    error: type[ToolError] = UsageError

    def allows(self, text: str) -> bool:
        if not text or len(text) > self.max_len or UNSAFE_CHARACTERS.search(text):
            return False
        if self.pattern is not None and not self.pattern.fullmatch(text):
            return False
        return self.accepts is None or self.accepts(text)


def _ascii(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


# URL characters that are inert in sh (even unquoted) and in Docker build arguments: no
# quotes, no `$`, `;`, `&`, `|`, backslash, spaces or brackets. A mirror root or a package
# URL needs none of them (a `+` in a Debian version is sent as is or as %2B).
_URL_CHARS = r"[A-Za-z0-9._~:/@%+=-]"


def _url(schemes: tuple[str, ...]) -> re.Pattern[str]:
    return _ascii(rf"(?:{'|'.join(schemes)})://{_URL_CHARS}+")


HTTP_URL = _url(("https?", "file"))
REPOSITORY_URL = _url(("https?", "file", "s3"))


def _looks_like_url(text: str) -> bool:
    return "://" in text


def _kernel_version_parses(text: str) -> bool:
    try:
        parse_kernel_version(text)
    except ToolError:
        return False
    return True


def _shell_words(text: str) -> bool:
    try:
        return bool(shlex.split(text))
    except ValueError:
        return False


PATH = TextRule("any path without control characters (at most 4096 characters)", 4096)
KERNEL_RELEASE = TextRule(
    f"a `uname -r` string such as {RELEASE_EXAMPLE}: letters, digits and . _ + ~ - "
    f"(at most {MAX_RELEASE_LEN})",
    MAX_RELEASE_LEN,
    _ascii(r"[0-9][0-9A-Za-z._+~-]*"),
    lambda text: ".." not in text,
    InvalidKernelReleaseError,
)
KERNEL_VERSION = TextRule(
    "a build number such as 1 or the `uname -v` text such as '#1 SMP Debian 6.1.55-1': "
    "letters, digits, spaces and # : . , _ ~ + ( ) @ -, starting with # or a letter or "
    f"digit (at most {MAX_KERNEL_VERSION_LEN})",
    MAX_KERNEL_VERSION_LEN,
    _ascii(r"[0-9A-Za-z#][0-9A-Za-z #:.,_~+()@-]*"),
    _kernel_version_parses,
    InvalidKernelReleaseError,
)
TARGET = TextRule(
    "a target name such as debian (lower-case letters, digits, _ and -; `driverkit targets`)",
    32,
    _ascii(r"[a-z0-9][a-z0-9_-]*"),
)
DRIVER_NAME = TextRule(
    "letters, digits, _ and - (at most 64, starting with a letter or digit), e.g. rtcap",
    64,
    _ascii(r"[A-Za-z0-9][A-Za-z0-9_-]*"),
)
DRIVER_VERSION = TextRule(
    "letters, digits and . + _ ~ - (at most 64, starting with a letter or digit, no '..'), "
    "e.g. 0.1.0 or 8.0.0+driver",
    64,
    accepts=is_valid_driver_version,
)
GCC_VERSION = TextRule(
    "a GCC version such as 12 or 8.3.0 (one to three dot-separated numbers)",
    8,
    _ascii(r"[0-9]{1,2}(?:\.[0-9]{1,2}){0,2}"),
)
IMAGE_REFERENCE = TextRule(
    "an image reference such as registry.example:5000/builders/debian:12 (lower-case "
    "name with . _ - / separators, optional :tag, optional @sha256:digest; at most 255)",
    255,
    _ascii(
        r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?/)?"
        r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
        r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
    ),
)
MIRROR_URL = TextRule(
    "an http://, https:// or file:// URL of letters, digits and . _ ~ : / @ % + = - "
    "(no spaces, quotes or shell characters; at most 2048), e.g. http://deb.debian.org/debian",
    2048,
    HTTP_URL,
)
def _is_repo_mirror(text: str) -> bool:
    source, sep, replacement = text.partition("=")
    return bool(sep) and all(
        HTTP_URL.fullmatch(part) is not None and not part.startswith("file:")
        for part in (source, replacement)
    )


REPO_MIRROR = TextRule(
    "FROM=TO: two http(s):// URLs (letters, digits and . _ ~ : / @ % + - ; at most 2048), "
    "e.g. https://cdn.amazonlinux.com/=http://mirror.internal/amazonlinux/",
    2048,
    accepts=_is_repo_mirror,
)
KERNEL_CONFIG_DATA = TextRule(
    "a kernel .config, base64-encoded (letters, digits, + / and = padding; at most 4 MiB), "
    "as driverkit's kernelconfigdata; or pass the file with --kernel-config",
    4 << 20,
    _ascii(r"[A-Za-z0-9+/]+={0,2}"),
)
REPOSITORY = TextRule(
    "a directory, or a file://, http(s):// or s3://bucket/prefix URL of letters, digits "
    "and . _ ~ : / @ % + = - (at most 4096)",
    4096,
    accepts=lambda text: (
        REPOSITORY_URL.fullmatch(text) is not None if _looks_like_url(text) else True
    ),
)
PUBLIC_KEY = TextRule(
    "`ed25519:<base64>` or the path of a .pub file (at most 4096)",
    4096,
    accepts=lambda text: (
        re.fullmatch(r"ed25519:[A-Za-z0-9+/=]{1,128}", text, re.ASCII) is not None
        if text.startswith("ed25519:")
        else True
    ),
)
# Where farm images are pushed and pulled: host[:port] and an optional path, as the
# first part of an image reference (Debian's docker-registry on 127.0.0.1:5000, ...).
REGISTRY = TextRule(
    "a registry host[:port] with an optional /path, e.g. 127.0.0.1:5000/driverkit "
    "(letters, digits, . - and lower-case path parts; at most 200)",
    200,
    _ascii(
        r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?"
        r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    ),
)
# A Docker daemon to reach: a unix socket path or tcp://host:port (no credentials).
DOCKER_HOST = TextRule(
    "a Docker daemon as unix:///path/docker.sock or tcp://host:port (at most 1024)",
    1024,
    _ascii(r"unix:///[A-Za-z0-9._/-]+|tcp://[A-Za-z0-9.-]+:[0-9]{1,5}"),
)
# A Kubernetes object name (RFC 1123 label), as a namespace is.
K8S_NAME = TextRule(
    "a Kubernetes name: lower-case letters, digits and -, starting and ending with a "
    "letter or digit (at most 63)",
    63,
    _ascii(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"),
)
COMMAND = TextRule(
    "a command line in sh word syntax, run without a shell (at most 4096 characters)",
    4096,
    accepts=_shell_words,
)

# An int option's text: plain decimal digits, bounded so no parse is ever expensive, and
# no leading zero (YAML 1.1 reads `010` as octal 8; refusing it leaves no doubt).
INT_TEXT = _ascii(r"0|[1-9][0-9]{0,8}")
