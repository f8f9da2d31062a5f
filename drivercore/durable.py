"""Files that are whole or absent, even after a crash: written to a temp file beside the
target, fsynced, renamed over it, and the rename itself made durable by fsyncing the
directory. Publishers (repository objects, the site page, keys) and the repository client
(downloads) write this way."""

from __future__ import annotations

import os
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
