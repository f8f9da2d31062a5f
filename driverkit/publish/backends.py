"""Open a repository backend from the URL the user passed (`--to`).

Accepted: a directory path, `file:///abs/dir`, `http(s)://host[:port]/path` (WebDAV) and
`s3://bucket[/prefix]`. Credentials never go in the URL (they would end up in logs, shell
history and process lists): WebDAV reads ~/.netrc or an explicit `auth`, S3 boto3's
default chain. A URL holding `user:password@` is refused without being echoed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from drivercore.errors import UsageError
from driverkit.publish.backend import Backend

SCHEMES = "a directory, file://, http://, https:// (WebDAV) or s3://"
# S3's bucket naming rules (the virtual-host-safe subset).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_MAX_URL = 2048


def redact(url: str) -> str:
    """`url` safe to print: any userinfo replaced, the length bounded."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1***@", url)[:300]


def open_backend(
    url: str,
    *,
    lease: float | None = None,
    timeout: float | None = None,
    endpoint_url: str | None = None,
    auth: tuple[str, str] | None = None,
    s3_session: Any = None,
) -> Backend:
    """The backend for `url`. `lease` (WebDAV lock lease, seconds), `auth` (WebDAV),
    `endpoint_url` and `s3_session` (a boto3 Session, S3) only apply to their scheme."""
    if not url or len(url) > _MAX_URL or any(ord(c) < 0x20 for c in url):
        raise UsageError(f"repository {redact(url)!r}: not a directory or URL")
    scheme_match = _SCHEME.match(url)
    # A Windows-style or relative path has no "scheme://"; "C:" alone is not a scheme here.
    if scheme_match is None or "://" not in url:
        return _directory(Path(url), url)
    scheme = scheme_match.group(1).lower()
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise UsageError(
            f"repository {redact(url)}: credentials do not belong in the URL; use ~/.netrc "
            "(WebDAV) or the AWS environment/config (S3)"
        )
    if parts.query or parts.fragment:
        raise UsageError(f"repository {redact(url)}: a query or fragment is not allowed")
    options: dict[str, Any] = {}
    if timeout is not None:
        options["timeout"] = timeout
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"repository {redact(url)}: file:// URLs name a local path only")
        return _directory(Path(unquote(parts.path)), url)
    if scheme in ("http", "https"):
        from driverkit.publish.webdav import WebDavBackend

        if not parts.hostname:
            raise UsageError(f"repository {redact(url)}: no host")
        try:
            _ = parts.port
        except ValueError:
            raise UsageError(f"repository {redact(url)}: bad port") from None
        if lease is not None:
            options["lease"] = lease
        return WebDavBackend(url, auth=auth, **options)
    if scheme == "s3":
        from driverkit.publish.s3 import S3Backend

        if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
            raise UsageError(
                f"repository {redact(url)}: {parts.netloc[:80]!r} is not a bucket name"
            )
        if "//" in parts.path or any(seg in (".", "..") for seg in parts.path.split("/")):
            raise UsageError(f"repository {redact(url)}: the prefix has empty or dot segments")
        return S3Backend(url, endpoint_url=endpoint_url, session=s3_session, **options)
    raise UsageError(f"repository URL scheme {scheme!r} is not supported; use {SCHEMES}")


# Backends are imported when chosen: boto3 alone takes ~0.3 s to import.
def _directory(path: Path, url: str) -> Backend:
    from driverkit.publish.dirbackend import DirBackend

    if not path.is_absolute():
        path = path.resolve()
    if path.exists() and not path.is_dir():
        raise UsageError(f"repository {redact(url)}: exists and is not a directory")
    return DirBackend(path, url.rstrip("/") or url)
