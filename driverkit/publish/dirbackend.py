"""A repository in a local directory (a plain path or a `file://` URL).

Atomic write: a temp file in the object's own directory (same filesystem, so the rename is
atomic), fsynced, renamed over the object, then the directory fsynced so the rename itself
survives a crash. Readers see the old file or the new one, never a partial one.

Compare-and-swap: an exclusive `fcntl.flock` on `.<name>.lock` beside the object serialises
writers of that object; under the lock the current bytes' sha256 (the version token) is
compared with the expected one and a fsynced temp file is renamed into place. The kernel
drops a flock when its holder dies, kill -9 included, so a killed publisher never blocks
the next one, and since the rename is the only step that touches the object it is either
old or new. flock is advisory and local: on NFS it is only as good as the server's lock
support, which is why remote repositories use the WebDAV or S3 backends.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from drivercore.durable import replace_synced
from drivercore.errors import RepositoryError
from driverkit.publish.backend import Backend, ObjectInfo, Versioned, check_object_path

_CHUNK = 1 << 20
# How long `replace` waits for another writer's lock: a writer holds it for one small
# write, so a long wait means a hung writer on a hung filesystem.
DEFAULT_LOCK_WAIT = 60.0
# Objects below a prefix a listing walks at most (a bound, not an expected size).
MAX_LIST_ENTRIES = 1_000_000


class DirBackend(Backend):
    def __init__(self, root: Path, url: str | None = None, *, lock_wait: float = DEFAULT_LOCK_WAIT):
        if root.exists() and not root.is_dir():
            raise RepositoryError(f"{url or root}: exists and is not a directory")
        self.root = root
        self.url = url or str(root)
        self.lock_wait = lock_wait

    def _file(self, path: str) -> Path:
        return self.root / check_object_path(path)

    def _fail(self, path: str, what: str, exc: OSError) -> RepositoryError:
        return RepositoryError(f"{self.url}/{path}: cannot {what} ({exc.strerror or exc})")

    def read(self, path: str) -> Versioned | None:
        try:
            data = self._file(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._fail(path, "read it", exc) from None
        return Versioned(data, hashlib.sha256(data).hexdigest())

    def stat(self, path: str) -> ObjectInfo | None:
        # The sha256 is computed, not stored: a local read is cheap, and it lets the
        # publisher notice a damaged file and send it again.
        digest = hashlib.sha256()
        size = 0
        try:
            with self._file(path).open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise self._fail(path, "read it", exc) from None
        return ObjectInfo(size, digest.hexdigest())

    def write_atomic(self, path: str, source: Path, sha256: str) -> None:
        target = self._file(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with source.open("rb") as fh, self._temp(target) as (out, tmp):
                self._read_checked(fh, source, sha256, path, copy_to=out)
                replace_synced(out, tmp, target)
        except OSError as exc:
            raise self._fail(path, "write it", exc) from None

    def replace(self, path: str, data: bytes, expected_version: str | None) -> bool:
        target = self._file(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._locked(target, path):
                if self.commit_hook is not None:
                    self.commit_hook(path)
                current = self.read(path)
                version = current.version if current is not None else None
                if version != expected_version:
                    return False
                with self._temp(target) as (out, tmp):
                    out.write(data)
                    replace_synced(out, tmp, target)
                return True
        except OSError as exc:
            raise self._fail(path, "replace it", exc) from None

    def delete(self, path: str) -> None:
        target = self._file(path)
        try:
            target.unlink(missing_ok=True)
        except NotADirectoryError:
            return
        except OSError as exc:
            raise self._fail(path, "delete it", exc) from None
        # The lock file stays: removing it could let two writers lock different inodes.

    def list(self, prefix: str) -> list[str]:
        base = self.root / check_object_path(prefix.strip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            # Dot names are this backend's temp and lock files, never objects.
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith("."):
                    found.append((Path(dirpath) / name).relative_to(self.root).as_posix())
            if len(found) > MAX_LIST_ENTRIES:
                raise RepositoryError(f"{self.url}: more than {MAX_LIST_ENTRIES} objects")
        return sorted(found)

    @contextlib.contextmanager
    def _temp(self, target: Path) -> Iterator[tuple[BinaryIO, Path]]:
        """A temp file beside `target`; removed unless `replace_synced` renamed it."""
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp.", dir=target.parent)
        tmp = Path(name)
        try:
            # mkstemp makes 0600; a repository is read by others (a web server, clients).
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as out:
                yield out, tmp
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self, target: Path, path: str) -> Iterator[None]:
        lock_path = target.parent / f".{target.name}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + self.lock_wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RepositoryError(
                            f"{self.url}/{path}: another writer held {lock_path.name} "
                            f"for more than {self.lock_wait:.0f}s"
                        ) from None
                    time.sleep(0.01)
            yield
        finally:
            # Closing the descriptor drops the lock.
            os.close(fd)
