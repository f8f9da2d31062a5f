"""Content-addressed download cache.

Blobs live under `<root>/blobs/sha256/<hex>`: two URLs serving the same bytes share one
file, and a hit needs no network at all. Every write goes to a temp file in the same
directory and is renamed into place only after its size and sha256 matched, so a crash
or Ctrl-C never leaves a blob that looks valid but is not.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import lzma
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from driverkit.errors import DownloadError

# The one cache default: the CLI's --cache-dir, library callers, the tests and ci/ all
# ask default_cache_dir(). DK_CACHE names the cache a CI run shares between its setup,
# tests and builds; root (CI, build hosts) shares one machine-wide cache, which
# ci/setup.sh fills; anyone else gets a per-user cache they can write.
CACHE_ENV = "DK_CACHE"
MACHINE_CACHE = Path("/var/cache/driverkit-ci")
USER_CACHE = Path("~/.cache/driverkit")
_CHUNK = 1 << 20
_TIMEOUT_S = 60


def default_cache_dir() -> Path:
    """$DK_CACHE, else /var/cache/driverkit-ci for root, else ~/.cache/driverkit."""
    shared = os.environ.get(CACHE_ENV)
    if shared:
        return Path(shared).expanduser()
    return MACHINE_CACHE if os.geteuid() == 0 else USER_CACHE.expanduser()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temp path next to `dest`; rename it onto `dest` only if the block succeeds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes 0600 files; artifacts and manifests are served to others.
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(dest: Path, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


class DownloadCache:
    """Downloads verified by size and sha256, stored once by content."""

    def __init__(self, root: Path | None = None, session: requests.Session | None = None):
        self.root = root if root is not None else default_cache_dir()
        self._session = session or requests.Session()

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / sha256

    def fetch(self, url: str, sha256: str | None = None, size: int | None = None) -> Path:
        """Return a local verified copy of `url`, downloading it only on a cache miss.

        With no published sha256 (non-Debian targets) the content is hashed on arrival
        and a small URL->sha index remembers it, so the second call is still a hit.
        """
        # What this URL served last time is only a hint: a file republished under the
        # same name is taken as it now is; a published sha256 must match.
        known = sha256 if sha256 is not None else self._indexed_sha(url)
        if known is not None:
            hit = self.blob_path(known)
            if hit.is_file() and (size is None or hit.stat().st_size == size):
                return hit
        return self._download(url, sha256, size)

    def fetch_fresh(self, url: str, max_age_s: float) -> Path:
        """Fetch a mutable URL (an archive index), reusing a copy younger than `max_age_s`."""
        key = hashlib.sha256(url.encode()).hexdigest()
        path = self.root / "indexes" / key
        if path.is_file() and time.time() - path.stat().st_mtime < max_age_s:
            return path
        try:
            with atomic_path(path) as tmp:
                self._stream(url, tmp)
        except DownloadError:
            if path.is_file():
                # A stale index beats no index when the mirror blips.
                return path
            raise
        return path

    def is_cached(self, url: str) -> bool:
        sha = self._indexed_sha(url)
        return sha is not None and self.blob_path(sha).is_file()

    def _indexed_sha(self, url: str) -> str | None:
        entry = self._url_index_path(url)
        if entry.is_file():
            return entry.read_text().strip() or None
        return None

    def _url_index_path(self, url: str) -> Path:
        return self.root / "urls" / hashlib.sha256(url.encode()).hexdigest()

    def _download(self, url: str, sha256: str | None, size: int | None) -> Path:
        staging = self.root / "blobs" / "sha256"
        staging.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".dl.", suffix=".part", dir=staging)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            got_sha, got_size = self._stream(url, tmp)
            if size is not None and got_size != size:
                raise DownloadError(f"{url}: got {got_size} bytes, the index says {size}")
            if sha256 is not None and got_sha != sha256:
                raise DownloadError(f"{url}: sha256 {got_sha} does not match the index {sha256}")
            dest = self.blob_path(got_sha)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write_bytes(self._url_index_path(url), got_sha.encode())
        return dest

    def _stream(self, url: str, dest: Path) -> tuple[str, int]:
        digest = hashlib.sha256()
        total = 0
        try:
            with self._session.get(url, stream=True, timeout=_TIMEOUT_S) as resp:
                if resp.status_code != 200:
                    raise DownloadError(f"{url}: HTTP {resp.status_code}")
                with dest.open("wb") as fh:
                    for chunk in resp.iter_content(_CHUNK):
                        digest.update(chunk)
                        total += len(chunk)
                        fh.write(chunk)
        except requests.RequestException as exc:
            raise DownloadError(f"{url}: {exc.__class__.__name__}: {exc}") from exc
        return digest.hexdigest(), total

    def exists(self, url: str) -> bool:
        """HEAD check used to pick among candidate URLs without downloading them."""
        try:
            resp = self._session.head(url, allow_redirects=True, timeout=_TIMEOUT_S)
        except requests.RequestException:
            return False
        return resp.status_code == 200


def fetch(url: str, sha256: str | None = None, size: int | None = None) -> Path:
    """Module-level convenience over the default cache (see default_cache_dir)."""
    return DownloadCache().fetch(url, sha256, size)


def decompress_by_suffix(name: str, blob: bytes) -> bytes:
    """Decompress by the file name's suffix (.gz, .bz2, .xz, .zst); other names are raw.

    Raises the codec's own error (OSError, EOFError, ValueError, lzma.LZMAError,
    zlib.error) or CalledProcessError from zstd; callers name the file in their message.
    """
    if name.endswith(".gz"):
        return gzip.decompress(blob)
    if name.endswith(".bz2"):
        return bz2.decompress(blob)
    if name.endswith(".xz"):
        return lzma.decompress(blob)
    if name.endswith(".zst"):
        # Python 3.11 has no zstd module; the `zstd` tool is a documented host prerequisite.
        return subprocess.run(["zstd", "-dc"], input=blob, capture_output=True, check=True).stdout
    return blob
