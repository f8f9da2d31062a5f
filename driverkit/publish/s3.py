"""A repository in an S3 bucket (`s3://bucket/prefix`), through boto3.

Credentials come from boto3's default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
AWS_PROFILE, ~/.aws, instance roles); the endpoint from AWS_ENDPOINT_URL_S3 /
AWS_ENDPOINT_URL (boto3 reads them) or the `endpoint_url` option, for S3-compatible servers.

Atomic write: one `PutObject` carrying `ChecksumSHA256`. S3 makes an object visible whole
or not at all, and the server recomputes the checksum and refuses the upload (BadDigest)
when the bytes it received differ, so a corrupted upload never replaces a good object.
`stat` returns that stored checksum (HeadObject with ChecksumMode=ENABLED).

Compare-and-swap: conditional PutObject, `IfNoneMatch="*"` (create only) or
`IfMatch=<ETag>` (replace only that version); the ETag is the version token. Measured on
the real SeaweedFS 4.48 S3 gateway (`weed server -s3`): If-None-Match * onto an existing
key -> 412 PreconditionFailed, onto a missing one -> 200; If-Match with a wrong or an
outdated ETag -> 412, with the current one -> 200; If-Match on a missing key -> 412 (AWS
answers 404 NoSuchKey; both mean "lost"); 6 threads racing If-None-Match on one key: one
winner in each of 10 rounds; 4 threads x 20 read-modify-write increments with If-Match: no
lost update. A server that ignored the conditions would lose updates silently, so the
tests run these races against the real server. A publisher killed with -9 has either sent
its single request or not: nothing to release.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from drivercore.errors import RepositoryError
from driverkit.publish.backend import Backend, ObjectInfo, Versioned, check_object_path

DEFAULT_TIMEOUT = 30.0
MAX_LIST_PAGES = 10_000  # 1000 keys a page
_LOST = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409", "404"}
_MISSING = {"NoSuchKey", "404", "NotFound"}
_T = TypeVar("_T")


class S3Backend(Backend):
    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        session: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise RepositoryError(f"{url}: not an s3://bucket/prefix URL")
        self.url = url.rstrip("/")
        self.bucket = parts.netloc
        prefix = parts.path.strip("/")
        self.prefix = prefix + "/" if prefix else ""
        config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            # A retried conditional write whose first attempt landed answers 412: the
            # caller then re-reads and finds its own update, so retries stay safe.
            retries={"max_attempts": 3, "mode": "standard"},
        )
        factory = session if session is not None else boto3.session.Session()
        try:
            self._s3 = factory.client("s3", endpoint_url=endpoint_url, config=config)
        except BotoCoreError as exc:
            raise RepositoryError(f"{self.url}: {_first_line(exc)}") from None

    def _key(self, path: str) -> str:
        return self.prefix + check_object_path(path)

    def _fail(self, op: str, path: str, exc: Exception) -> RepositoryError:
        where = f"{self.url}/{path}" if path else self.url
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            code = error.get("Code", "?")
            return RepositoryError(f"{op} {where}: HTTP {status} {code}")
        return RepositoryError(f"{op} {where}: {_first_line(exc)}")

    def _unless_missing(self, op: str, path: str, call: Callable[[], _T]) -> _T | None:
        """`call()`, or None when the object does not exist; any other failure of the
        request `op` as a RepositoryError."""
        try:
            return call()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._fail(op, path, exc) from None
        except BotoCoreError as exc:
            raise self._fail(op, path, exc) from None

    def read(self, path: str) -> Versioned | None:
        key = self._key(path)

        def get() -> Versioned:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
            return Versioned(response["Body"].read(), str(response["ETag"]))

        return self._unless_missing("GetObject", path, get)

    def stat(self, path: str) -> ObjectInfo | None:
        key = self._key(path)
        head = self._unless_missing(
            "HeadObject",
            path,
            lambda: self._s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"),
        )
        if head is None:
            return None
        checksum = head.get("ChecksumSHA256")
        sha256 = None
        # A multipart upload's checksum is "<b64>-<parts>", a checksum of checksums: not
        # the object's sha256, so it is not returned as one.
        if isinstance(checksum, str) and "-" not in checksum:
            try:
                sha256 = base64.b64decode(checksum, validate=True).hex()
            except (binascii.Error, ValueError):
                sha256 = None
        return ObjectInfo(int(head["ContentLength"]), sha256)

    def write_atomic(self, path: str, source: Path, sha256: str) -> None:
        key = self._key(path)
        try:
            with source.open("rb") as fh:
                digest = self._read_checked(fh, source, sha256, path)
                fh.seek(0)
                self._s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=fh,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_b64(digest),
                )
        except OSError as exc:
            raise RepositoryError(f"{source}: cannot read it ({exc.strerror})") from None
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("PutObject", path, exc) from None

    def replace(self, path: str, data: bytes, expected_version: str | None) -> bool:
        key = self._key(path)
        condition = (
            {"IfNoneMatch": "*"} if expected_version is None else {"IfMatch": expected_version}
        )
        if self.commit_hook is not None:
            self.commit_hook(path)
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_b64(hashlib.sha256(data).digest()),
                **condition,
            )
        except ClientError as exc:
            if _code(exc) in _LOST:
                return False
            raise self._fail("PutObject", path, exc) from None
        except BotoCoreError as exc:
            raise self._fail("PutObject", path, exc) from None
        return True

    def delete(self, path: str) -> None:
        key = self._key(path)
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise self._fail("DeleteObject", path, exc) from None
        except BotoCoreError as exc:
            raise self._fail("DeleteObject", path, exc) from None

    def list(self, prefix: str) -> builtins.list[str]:
        start = prefix.strip("/")
        key_prefix = self._key(start) + "/" if start else self.prefix
        found: builtins.list[str] = []
        token: str | None = None
        try:
            for _page in range(MAX_LIST_PAGES):
                extra = {"ContinuationToken": token} if token else {}
                response = self._s3.list_objects_v2(
                    Bucket=self.bucket, Prefix=key_prefix, **extra
                )
                for item in response.get("Contents", []):
                    relative = str(item["Key"])[len(self.prefix) :]
                    if relative and not relative.endswith("/"):
                        found.append(relative)
                if not response.get("IsTruncated"):
                    return sorted(found)
                token = response.get("NextContinuationToken")
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("ListObjectsV2", start, exc) from None
        raise RepositoryError(f"{self.url}: more than {MAX_LIST_PAGES} pages of objects")

    def close(self) -> None:
        self._s3.close()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
