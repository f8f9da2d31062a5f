"""Files that are whole or absent, even after a crash: written to a temp file beside the
target, fsynced, renamed over it, and the rename itself made durable by fsyncing the
directory. Publishers (repository objects, the site page, keys) and the repository client
(downloads) write this way."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    """Make renames into directory `path` survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_synced(out: BinaryIO, tmp: Path | str, target: Path) -> None:
    """Flush and fsync `out`, the open temp file `tmp`, then rename it over `target`."""
    out.flush()
    os.fsync(out.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)


def write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """`data` under `path` whole or not at all, with permissions `mode` (mkstemp's 0600
    would hide a published page or a cached artifact from other readers)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            replace_synced(out, tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
