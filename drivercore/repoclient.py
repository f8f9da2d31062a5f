"""Read side of an artifact repository: fetch and verify the signed index, then download an
artifact so that nothing unverified ever sits under its final name.

Reads are plain GETs, as falcoctl's are, so any static web server, WebDAV share, S3 bucket
website or directory serves a repository. Standard library only: the host-side loader runs
this in a slim init container.

Order of trust: the index bytes are fetched, then the signature file; the signature is
checked against the pinned public key before the JSON is even parsed; an artifact is
accepted only if its size and sha256 are the ones the verified index lists.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from drivercore import repoindex
from drivercore.durable import fsync_dir
from drivercore.errors import DownloadError, ExitCode, ToolError
from drivercore.naming import repo_arch

_CHUNK = 1 << 16


class ArtifactIntegrityError(ToolError):
    """A downloaded artifact's size or sha256 is not what the verified index lists."""

    exit_code = ExitCode.INTEGRITY


class NotFoundError(DownloadError):
    """The repository answered that the object does not exist (HTTP 404, no such file)."""


@dataclass(frozen=True)
class RepoReader:
    """One repository: `https://host/path`, `file:///dir` or a plain directory."""

    url: str
    public_key: Ed25519PublicKey
    timeout_s: float = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)

    def _object_url(self, path: str) -> str:
        """`path` is the object's logical name (`0.1.0+x/x86_64/f.o`); over HTTP it is
        percent-encoded, so `+` travels as %2B exactly as in falcoctl's URLs."""
        if urllib.parse.urlsplit(self.url).scheme in ("http", "https"):
            path = urllib.parse.quote(path, safe="/")
        return self.url.rstrip("/") + "/" + path

    @staticmethod
    def _version_dir(driver_version: str, arch: str) -> str:
        return f"{driver_version}/{repo_arch(arch)}"

    def fetch(self, path: str, max_bytes: int) -> bytes:
        """The whole object, at most `max_bytes`, within one overall deadline."""
        chunks = []
        total = 0
        with self._open(path) as stream:
            deadline = time.monotonic() + self.timeout_s
            while chunk := stream.read(_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise DownloadError(f"{self._object_url(path)}: larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise DownloadError(
                        f"{self._object_url(path)}: not complete after {self.timeout_s:g} s"
                    )
                chunks.append(chunk)
        return b"".join(chunks)

    def _open(self, path: str) -> _Stream:
        url = self._object_url(path)
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme in ("http", "https"):
            request = urllib.request.Request(url, headers=dict(self.headers))
            try:
                # urllib's default opener honours http_proxy/https_proxy/no_proxy.
                response = urllib.request.urlopen(request, timeout=self.timeout_s)
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code == 404:
                    raise NotFoundError(f"{url}: not found (HTTP 404)") from None
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DownloadError(f"{url}: {reason}") from None
            return _Stream(response, url)
        local = Path(urllib.parse.unquote(parsed.path)) if parsed.scheme == "file" else Path(url)
        try:
            return _Stream(local.open("rb"), url)
        except FileNotFoundError:
            raise NotFoundError(f"{url}: not found") from None
        except OSError as exc:
            raise DownloadError(f"{url}: {exc.strerror}") from None

    def _verified(self, index_path: str) -> bytes:
        # Index first, signature second: publishers write them in the other order.
        data = self.fetch(index_path, repoindex.MAX_INDEX_BYTES)
        sig_path = repoindex.signature_path(index_path)
        try:
            signature = self.fetch(sig_path, repoindex.MAX_SIGNATURE_BYTES)
        except NotFoundError:
            raise repoindex.RepositoryIndexError(
                f"{self._object_url(index_path)}: unsigned "
                f"(no {repoindex.SIGNATURE_FILE} beside it)"
            ) from None
        repoindex.verify_index(data, signature, self.public_key, self._object_url(index_path))
        return data

    def root_index(self) -> repoindex.RootIndex:
        return repoindex.parse_root_index(
            self._verified(repoindex.INDEX_FILE), self._object_url(repoindex.INDEX_FILE)
        )

    def arch_index(self, driver_version: str, arch: str) -> repoindex.ArchIndex:
        path = f"{self._version_dir(driver_version, arch)}/{repoindex.INDEX_FILE}"
        return repoindex.parse_arch_index(
            self._verified(path),
            self._object_url(path),
            driver_version=driver_version,
            arch=repo_arch(arch),
        )

    def download(
        self, index: repoindex.ArchIndex, entry: repoindex.IndexEntry, dest_dir: Path
    ) -> Path:
        """`entry`'s artifact into `dest_dir/<file>`: streamed to a temp file there, checked
        for size and sha256, fsynced, then renamed. A mismatch leaves nothing behind."""
        if not repoindex.is_artifact_file_name(entry.file):
            raise repoindex.RepositoryIndexError(f"index names an unsafe file {entry.file[:80]!r}")
        path = f"{self._version_dir(index.driver_version, index.arch)}/{entry.file}"
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{entry.file}.", suffix=".part", dir=dest_dir)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out, self._open(path) as stream:
                deadline = time.monotonic() + self.timeout_s
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if size > entry.size:
                        raise ArtifactIntegrityError(
                            f"{self._object_url(path)}: longer than the {entry.size} bytes "
                            "the signed index lists"
                        )
                    if time.monotonic() > deadline:
                        raise DownloadError(
                            f"{self._object_url(path)}: not complete after {self.timeout_s:g} s"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if size != entry.size:
                raise ArtifactIntegrityError(
                    f"{self._object_url(path)}: truncated: {size} of {entry.size} bytes"
                )
            if digest.hexdigest() != entry.sha256:
                raise ArtifactIntegrityError(
                    f"{self._object_url(path)}: sha256 {digest.hexdigest()} is not the "
                    f"{entry.sha256} the signed index lists"
                )
            final = dest_dir / entry.file
            os.replace(tmp, final)
            fsync_dir(dest_dir)
            return final
        finally:
            Path(tmp).unlink(missing_ok=True)


class _Stream:
    """A readable that closes: HTTP responses and files behind one `with`."""

    def __init__(self, raw: object, url: str) -> None:
        self._raw = raw
        self._url = url

    def read(self, n: int) -> bytes:
        try:
            data: bytes = self._raw.read(n)  # type: ignore[attr-defined]
        except (OSError, http.client.HTTPException) as exc:
            # A server that closes early raises IncompleteRead; one that stalls, a timeout.
            raise DownloadError(f"{self._url}: read failed ({exc!r})") from None
        return data

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._raw.close()  # type: ignore[attr-defined]
