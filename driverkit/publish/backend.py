"""The one small interface every artifact-repository backend implements.

A repository is a tree of objects addressed by '/'-separated relative paths (falcoctl's
layout, `<driver-version %2B-escaped>/<x86_64|aarch64>/<file>`). Publishing needs only:
read an object with a version token, write an artifact atomically, and replace an index by
compare-and-swap so two publishers running at once lose nothing. Backends are context
managers: whatever they start or hold (sessions, locks, temp objects) is released on exit.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from drivercore.errors import RepositoryError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Versioned:
    """An object's bytes and the token a compare-and-swap must present to replace it."""

    data: bytes
    version: str


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    sha256: str | None  # when the backend stores it (S3 checksum, sidecar); else None


class Backend(ABC):
    """A repository backend. Paths are relative, '/'-separated, validated by the caller."""

    url: str  # what the user passed, for messages (never holds credentials)
    # Tests only: called inside `replace` once the compare-and-swap holds its lock (or is
    # about to send its conditional write), so a test can kill a publisher right there.
    commit_hook: Callable[[str], None] | None = None

    @abstractmethod
    def read(self, path: str) -> Versioned | None:
        """The object and its version token, or None when it does not exist."""

    @abstractmethod
    def stat(self, path: str) -> ObjectInfo | None:
        """Size (and sha256 where stored) of an object, or None when it does not exist."""

    @abstractmethod
    def write_atomic(self, path: str, source: Path, sha256: str) -> None:
        """Store a file under `path` so that no reader ever sees a partial object there
        (temp name + rename/MOVE, or a single checksummed PUT). Overwrites."""

    @abstractmethod
    def replace(self, path: str, data: bytes, expected_version: str | None) -> bool:
        """Compare-and-swap: write `data` only if the object's current version is
        `expected_version` (None: only if it does not exist). False when another writer
        got there first; the caller re-reads and retries."""

    @abstractmethod
    def delete(self, path: str) -> None:
        """Remove an object; no error when it is already gone."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Relative paths of the objects below `prefix` (recursive), sorted."""

    def _read_checked(
        self, fh: BinaryIO, source: Path, sha256: str, path: str, copy_to: BinaryIO | None = None
    ) -> bytes:
        """Reads `fh` (the open `source`) to its end, into `copy_to` when given, and returns
        its raw sha256 digest. A source that no longer matches `sha256` (changed since its
        manifest was written) raises before anything is stored under `path`."""
        digest = hashlib.sha256()
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if copy_to is not None:
                copy_to.write(chunk)
        if digest.hexdigest() != sha256:
            raise RepositoryError(
                f"{source}: sha256 {digest.hexdigest()} is not the expected {sha256}; "
                f"{self.url}/{path} left unchanged"
            )
        return digest.digest()

    def close(self) -> None:  # noqa: B027 - optional: most backends hold nothing
        """Release sessions, locks and temp objects. Idempotent."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_object_path(path: str) -> str:
    """`path` when it is a safe relative object path; ValueError otherwise. Callers
    validate too; backends check again because a path becomes a file name or a URL.
    Names starting with "." are reserved for the backends' temp and lock objects."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p == "" or p.startswith(".") for p in parts):
        raise ValueError(f"unsafe repository object path {path[:120]!r}")
    if any(ord(c) < 0x20 or c == "\\" for c in path):
        raise ValueError(f"unsafe repository object path {path[:120]!r}")
    return path
