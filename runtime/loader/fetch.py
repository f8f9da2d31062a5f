"""Get one artifact: from the cache when its sha256 still matches the signed index, else
from the repositories in order, with a per-try timeout and bounded retries.

The cache is a repository folder of its own: `<state>/<driver-version>/<arch>/` holds the
artifacts and the signed `index.json` + `index.json.sig` they were checked against. So a
host whose repositories are unreachable can still start from its cache, and even then
nothing is trusted without the pinned key: the cached index's signature is checked again
and each cached file is hashed against it before use. A file that does not match (a
truncated write, a damaged disk) is deleted and fetched again, never taken as present.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from drivercore.durable import write_bytes
from drivercore.errors import DownloadError, ToolError
from drivercore.naming import DRIVER_NAME, repo_arch, repo_path
from drivercore.repoclient import NotFoundError, RepoReader
from drivercore.repoindex import (
    INDEX_FILE,
    MAX_INDEX_BYTES,
    MAX_SIGNATURE_BYTES,
    SIGNATURE_FILE,
    ArchIndex,
    IndexEntry,
    RepositoryIndexError,
    parse_arch_index,
    verify_index,
)

Log = Callable[[str], None]
T = TypeVar("T")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class FetchSettings:
    repos: tuple[str, ...]
    public_key: Ed25519PublicKey
    driver_version: str
    arch: str  # any spelling; the repository's is x86_64 / aarch64
    state_dir: Path
    timeout_s: float = 30.0  # per try: connect, each read, and the whole body
    retries: int = 2  # extra tries of one repository after a transient failure
    backoff_s: float = 0.5  # before the first retry; doubled for each next one
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / self.driver_version / repo_arch(self.arch)


@dataclass(frozen=True)
class Fetched:
    path: Path
    entry: IndexEntry
    source: str  # the repository URL, or "cache"


def artifact_url(repo: str, driver_version: str, arch: str, file: str) -> str:
    """Where `file` lives in `repo`, as the user would paste it (for messages)."""
    return f"{repo.rstrip('/')}/{repo_path(driver_version, arch, file)}"


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()




class _Retrying:
    """Runs a fetch step against one repository, retrying only transient failures."""

    def __init__(self, settings: FetchSettings, log: Log) -> None:
        self._settings = settings
        self._log = log

    def __call__(self, step: Callable[[], T]) -> T:
        delay = self._settings.backoff_s
        for attempt in range(self._settings.retries + 1):
            try:
                return step()
            except NotFoundError:
                raise
            except DownloadError as exc:
                # Timeouts, resets, 5xx, short bodies: the next try may succeed.
                if attempt == self._settings.retries:
                    raise
                self._log(f"loader: fetch: {exc}; retry {attempt + 1} of "
                          f"{self._settings.retries} in {delay:g} s")
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")


def _verified_index(reader: RepoReader, settings: FetchSettings,
                    retry: _Retrying) -> tuple[ArchIndex, bytes, bytes]:
    """The folder's index, checked against the pinned key, with the exact bytes checked
    (kept in the cache so a later offline start can check them again)."""
    folder = f"{settings.driver_version}/{repo_arch(settings.arch)}"
    where = artifact_url(reader.url, settings.driver_version, settings.arch, INDEX_FILE)

    def fetch_both() -> tuple[bytes, bytes]:
        # Index first, signature second: publishers write them in the other order.
        data = reader.fetch(f"{folder}/{INDEX_FILE}", MAX_INDEX_BYTES)
        try:
            signature = reader.fetch(f"{folder}/{SIGNATURE_FILE}", MAX_SIGNATURE_BYTES)
        except NotFoundError:
            raise RepositoryIndexError(
                f"{where}: unsigned (no {SIGNATURE_FILE} beside it)"
            ) from None
        return data, signature

    data, signature = retry(fetch_both)
    verify_index(data, signature, settings.public_key, where)
    index = parse_arch_index(
        data, where, driver_version=settings.driver_version, arch=repo_arch(settings.arch)
    )
    return index, data, signature


def _cached(settings: FetchSettings, file: str, index: ArchIndex, log: Log) -> Fetched | None:
    """The cached copy if it is exactly what `index` lists; a damaged copy is removed."""
    started = time.monotonic()
    path = settings.cache_dir / file
    entry = index.entries.get(file)
    if not path.is_file():
        log(f"loader: cache: {file} absent in {settings.cache_dir} ({_ms(started)})")
        return None
    if entry is None:
        return None
    size = path.stat().st_size
    digest = _sha256(path) if size == entry.size else ""
    if digest != entry.sha256:
        detail = f"{size} of {entry.size} bytes" if size != entry.size else "sha256 differs"
        path.unlink(missing_ok=True)
        log(f"loader: cache: {file} damaged ({detail}), removed; fetching again "
            f"({_ms(started)})")
        return None
    log(f"loader: cache: {file} present, sha256 {entry.sha256[:16]}... matches the signed "
        f"index ({_ms(started)})")
    return Fetched(path, entry, "cache")


def _offline_index(settings: FetchSettings) -> ArchIndex | None:
    """The cached index, if its cached signature still verifies with the pinned key."""
    try:
        return RepoReader(str(settings.state_dir), settings.public_key).arch_index(
            settings.driver_version, settings.arch
        )
    except ToolError:
        return None


def get_artifact(settings: FetchSettings, file: str, log: Log) -> Fetched:
    """`file` verified and cached, from the first repository that lists it.

    Raises NotFoundError naming every URL tried when no repository has it; any other
    failure (bad signature, sha256 mismatch, 500, a stalled server) is raised as the first
    such error once every repository has been tried, so the message names its cause.
    """
    if not settings.repos:
        raise DownloadError("no repository given; pass --repo URL (or loader.repos in the config)")
    retry = _Retrying(settings, log)
    tried: list[str] = []
    failures: list[ToolError] = []
    for repo in settings.repos:
        reader = RepoReader(repo, settings.public_key, settings.timeout_s, settings.headers)
        url = artifact_url(repo, settings.driver_version, settings.arch, file)
        started = time.monotonic()
        try:
            index, data, signature = _verified_index(reader, settings, retry)
        except NotFoundError as exc:
            tried.append(f"{exc}")
            log(f"loader: fetch: {repo}: no index for {settings.driver_version}/"
                f"{repo_arch(settings.arch)} ({_ms(started)})")
            continue
        except ToolError as exc:
            failures.append(exc)
            log(f"loader: fetch: {exc} ({_ms(started)})")
            continue
        log(f"loader: verify: {repo} index signature ok, serial {index.serial}, "
            f"{len(index.entries)} artifacts ({_ms(started)})")
        entry = index.entries.get(file)
        if entry is None:
            tried.append(f"{url}: not listed in the signed index")
            continue
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        cached = _cached(settings, file, index, log)
        if cached is not None:
            _keep_index(settings, data, signature)
            return cached
        started = time.monotonic()
        try:
            path = retry(functools.partial(reader.download, index, entry, settings.cache_dir))
        except NotFoundError as exc:
            tried.append(str(exc))
            continue
        except ToolError as exc:
            failures.append(exc)
            log(f"loader: fetch: {exc} ({_ms(started)})")
            continue
        log(f"loader: fetch: {url} -> {path}, {entry.size} bytes ({_ms(started)})")
        log(f"loader: verify: {file} sha256 {entry.sha256[:16]}... and size match the signed "
            "index")
        _keep_index(settings, data, signature)
        return Fetched(path, entry, repo)
    if failures:
        # Only when no repository could be reached: a repository that answered with a bad
        # signature or a damaged artifact is a fault to report, not a reason to go offline.
        if all(type(f) is DownloadError for f in failures):
            offline = _offline_from_cache(settings, file, log)
            if offline is not None:
                return offline
        raise failures[0]
    raise NotFoundError(f"{file} is in no repository; tried: {'; '.join(tried)}")


def _offline_from_cache(settings: FetchSettings, file: str, log: Log) -> Fetched | None:
    """Every repository was unreachable: a cache the pinned key still vouches for."""
    index = _offline_index(settings)
    if index is None or file not in index.entries:
        return None
    log("loader: cache: repositories unreachable; using the cached signed index")
    return _cached(settings, file, index, log)


def _keep_index(settings: FetchSettings, data: bytes, signature: bytes) -> None:
    # Signature first, index second, as publishers write them: a crash in between leaves an
    # index the signature file does not cover, which is refused, never trusted.
    write_bytes(settings.cache_dir / SIGNATURE_FILE, signature)
    write_bytes(settings.cache_dir / INDEX_FILE, data)


def _ours(name: str) -> bool:
    """Files the loader writes: artifacts, the cached index pair, interrupted temp files."""
    return (
        name.startswith(f"{DRIVER_NAME}_")
        or name in (INDEX_FILE, SIGNATURE_FILE)
        or (name.startswith(".") and name.endswith(".part"))
    )


def cleanup(state_dir: Path, log: Log) -> int:
    """Remove this driver's cached files under `state_dir` (every driver version), and the
    folders they leave empty; anything else there is left alone. The count removed."""
    started = time.monotonic()
    removed = 0
    if not state_dir.is_dir():
        log(f"loader: cleanup: {state_dir} does not exist, nothing to remove")
        return 0
    for version_dir in sorted(p for p in state_dir.iterdir() if p.is_dir()):
        for arch_dir in sorted(p for p in version_dir.iterdir() if p.is_dir()):
            for item in sorted(arch_dir.iterdir()):
                if item.is_file() and _ours(item.name):
                    item.unlink()
                    removed += 1
            if not any(arch_dir.iterdir()):
                arch_dir.rmdir()
        if not any(version_dir.iterdir()):
            version_dir.rmdir()
    log(f"loader: cleanup: removed {removed} files from {state_dir} ({_ms(started)})")
    return removed
