"""A repository on a WebDAV server (`http://` or `https://`), e.g. nginx with
`dav_methods PUT DELETE MKCOL COPY MOVE; dav_ext_methods PROPFIND OPTIONS;
create_full_put_path on;`. Readers (falcoctl, rt-engine) only need plain GETs.

Atomic write: PUT to `.<name>.tmp.<random>` in the object's collection, then
`MOVE` to the final name with `Overwrite: T` (nginx renames the file, so a reader gets the
old object or the new one); on failure the temp object is deleted.

Compare-and-swap. nginx 1.22 (Debian 12, with dav-ext 3.0) ignores every precondition on
writes; measured against the real server: PUT with `If-None-Match: *` onto an existing
object -> 204 (overwritten), PUT with `If-Match: "nope"` -> 204, PUT with
`If-Unmodified-Since: <1970>` -> 204, PUT with a WebDAV `If: (["nope"])` header -> 204, MOVE
with `If-Match: "nope"` -> 204. Its ETag is `"<mtime hex>-<size hex>"`, which two writes
of the same size within one second share, so it could not be a version token anyway. What
nginx does have is an atomic create-if-absent: MKCOL is mkdir(2); measured, 8 threads
sending MKCOL for one new collection at once got exactly one 201 and seven 405, in each of
19 rounds. DELETE of a collection is recursive (204 with a file inside). (MOVE with
`Overwrite: F` onto an existing target answers 412, but nothing shows that nginx's
exists-check and rename are one step, so it is not relied on.)

So each object has a lock collection `.<name>.lock/` beside it:

* acquire: MKCOL it (201: ours), then PUT `owner` inside it: a random token and the
  holder's lease (waiters use the holder's lease, so publishers configured differently
  still agree);
* under the lock: GET the object, compare the sha256 of its bytes (the version token) with
  the expected one, PUT a temp object and MOVE it over the object; release by DELETE;
* a lease bounds how long a lock counts: a holder commits only while less than
  `lease - margin` seconds have passed since it sent its MKCOL (measured on its own
  monotonic clock, which starts before the server's mtime does) and otherwise gives up
  with an error; a waiter breaks a lock only when the server says it is older than
  `lease + 2 s` (the lock's `Last-Modified` against the same response's `Date`: one clock,
  the server's, and 2 s for its one-second resolution), so no lock is broken while its
  holder may still commit. A publisher killed with -9 therefore blocks others for at most
  one lease.
* breaking is itself claimed with a MKCOL of `.<name>.lock/broken/`, so of several waiters
  that find the same stale lock exactly one deletes it; the winner re-reads the owner token
  first and, if the lock was meanwhile replaced by a fresh one, removes only its own claim.
  A claim older than a lease (its breaker died too) is broken by deleting the lock.
* every write of the object happens between a successful MKCOL and the DELETE of the same
  lock, and the version is re-read under the lock, so no update is lost.

What this relies on: the holder's requests finish within the lease (every request has a
timeout shorter than the lease it may run in); all writers of the repository use this
scheme (plain PUTs by other tools bypass it).

Listing uses PROPFIND Depth 1 per collection (Depth infinity is commonly refused), bounded
in depth and entries. Credentials come from `auth` or ~/.netrc (requests reads it), never
from the URL; errors are one line naming the URL (without credentials) and the status.
"""

from __future__ import annotations

import builtins
import contextlib
import email.utils
import hashlib
import json
import os
import random
import secrets
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests

from drivercore.errors import RepositoryError
from driverkit.publish.backend import Backend, ObjectInfo, Versioned, check_object_path

DEFAULT_TIMEOUT = 30.0  # seconds, per request (connect and each read)
DEFAULT_LEASE = 60.0  # seconds a lock counts before others may break it
MAX_LEASE = 3600.0  # a longer one in an owner record is not believed
# Clock resolution of the server's Last-Modified (1 s) plus one second of slack.
_SKEW = 2.0
MAX_LIST_DEPTH = 16
MAX_LIST_ENTRIES = 1_000_000
_DAV = "{DAV:}"
_OWNER = "owner"
_CLAIM = "broken/"


class _Status:
    """Named HTTP statuses this module branches on."""

    OK = 200
    CREATED = 201
    NO_CONTENT = 204
    MULTI_STATUS = 207
    NOT_FOUND = 404
    NOT_ALLOWED = 405  # MKCOL of something that exists
    CONFLICT = 409  # MKCOL whose parent collection is missing


class WebDavBackend(Backend):
    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        lease: float = DEFAULT_LEASE,
        lock_wait: float | None = None,
        verify: bool | str = True,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            # Not echoed: it may hold credentials.
            raise RepositoryError("WebDAV repository: not an http(s) URL without credentials")
        self.url = url.rstrip("/")
        self._base_path = parts.path.rstrip("/")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self.timeout = timeout
        self.lease = lease
        # Long enough to outlast one lease of a dead holder, and then some.
        self.lock_wait = lock_wait if lock_wait is not None else 2 * lease + 30.0
        if timeout >= lease / 2:
            # A request that may take longer than the lease could land after a waiter
            # broke the lock; keep the per-request bound well inside the lease.
            self.timeout = max(lease / 4, 0.5)
        self._session = requests.Session()
        self._session.verify = verify
        if auth is not None:
            self._session.auth = auth

    # -- HTTP plumbing --------------------------------------------------------------

    def _href(self, path: str, collection: bool = False) -> str:
        """URL path of an object: every segment percent-encoded (`+` travels as %2B)."""
        encoded = "/".join(quote(seg, safe="") for seg in path.split("/") if seg)
        return f"{self._base_path}/{encoded}" + ("/" if collection and encoded else "")

    def _request(
        self, method: str, path: str, *, collection: bool = False, **kwargs: Any
    ) -> requests.Response:
        href = self._href(path, collection)
        url = self._origin + href
        try:
            return self._session.request(
                method, url, timeout=self.timeout, allow_redirects=False, **kwargs
            )
        except requests.Timeout:
            raise RepositoryError(
                f"{method} {self._shown(href)}: no answer within {self.timeout:.0f}s"
            ) from None
        except requests.RequestException as exc:
            raise RepositoryError(f"{method} {self._shown(href)}: {_reason(exc)}") from None

    def _shown(self, href: str) -> str:
        """The URL for messages: the one the user passed (no credentials) plus the path."""
        return self.url + href[len(self._base_path) :]

    def _fail(self, response: requests.Response, method: str, path: str) -> RepositoryError:
        reason = response.reason or ""
        return RepositoryError(
            f"{method} {self._shown(self._href(path))}: HTTP {response.status_code} {reason}"
            .rstrip()
        )

    # -- the interface ----------------------------------------------------------------

    def _found(self, method: str, path: str) -> requests.Response | None:
        """The server's 200 answer to `method` on the object, or None when it is absent."""
        check_object_path(path)
        response = self._request(method, path)
        if response.status_code == _Status.NOT_FOUND:
            return None
        if response.status_code != _Status.OK:
            raise self._fail(response, method, path)
        return response

    def read(self, path: str) -> Versioned | None:
        response = self._found("GET", path)
        if response is None:
            return None
        data = response.content
        return Versioned(data, hashlib.sha256(data).hexdigest())

    def stat(self, path: str) -> ObjectInfo | None:
        response = self._found("HEAD", path)
        if response is None:
            return None
        try:
            size = int(response.headers["Content-Length"])
        except (KeyError, ValueError):
            raise RepositoryError(
                f"HEAD {self._shown(self._href(path))}: no Content-Length in the answer"
            ) from None
        # A WebDAV server stores no checksum: the publisher compares sizes only.
        return ObjectInfo(size, None)

    def write_atomic(self, path: str, source: Path, sha256: str) -> None:
        check_object_path(path)
        try:
            with source.open("rb") as fh:
                # The server keeps no checksum, so the source is checked here, before
                # anything is sent.
                self._read_checked(fh, source, sha256, path)
                fh.seek(0)
                self._put_and_move(path, fh)
        except OSError as exc:
            raise RepositoryError(f"{source}: cannot read it ({exc.strerror})") from None

    def replace(self, path: str, data: bytes, expected_version: str | None) -> bool:
        check_object_path(path)
        folder, _, name = path.rpartition("/")
        lock = f"{folder}/.{name}.lock" if folder else f".{name}.lock"
        acquired = self._acquire(lock, folder)
        try:
            if self.commit_hook is not None:
                self.commit_hook(path)
            current = self.read(path)
            if (current.version if current is not None else None) != expected_version:
                return False
            self._put_and_move(path, data, before_move=lambda: self._check_lease(acquired, path))
            return True
        finally:
            self._release(lock, acquired)

    def delete(self, path: str) -> None:
        check_object_path(path)
        response = self._request("DELETE", path)
        if response.status_code not in (_Status.OK, _Status.NO_CONTENT, _Status.NOT_FOUND):
            raise self._fail(response, "DELETE", path)

    def list(self, prefix: str) -> list[str]:
        start = prefix.strip("/")
        if start:
            check_object_path(start)
        found: list[str] = []
        pending = [(start, 0)]
        while pending:
            folder, depth = pending.pop()
            if depth > MAX_LIST_DEPTH:
                raise RepositoryError(f"{self.url}/{folder}: deeper than {MAX_LIST_DEPTH} levels")
            for child, is_collection in self._children(folder):
                if is_collection:
                    pending.append((child, depth + 1))
                else:
                    found.append(child)
            if len(found) > MAX_LIST_ENTRIES:
                raise RepositoryError(f"{self.url}: more than {MAX_LIST_ENTRIES} objects")
        return sorted(found)

    def close(self) -> None:
        self._session.close()

    # -- atomic write -------------------------------------------------------------------

    def _put_and_move(
        self, path: str, body: Any, before_move: Callable[[], None] | None = None
    ) -> None:
        folder, _, name = path.rpartition("/")
        tmp_name = f".{name}.tmp.{secrets.token_hex(8)}"
        tmp = f"{folder}/{tmp_name}" if folder else tmp_name
        response = self._request("PUT", tmp, data=body)
        if response.status_code not in (_Status.CREATED, _Status.NO_CONTENT, _Status.OK):
            raise self._fail(response, "PUT", tmp)
        moved = False
        try:
            if before_move is not None:
                before_move()
            response = self._request(
                "MOVE",
                tmp,
                headers={"Destination": self._origin + self._href(path), "Overwrite": "T"},
            )
            if response.status_code not in (_Status.CREATED, _Status.NO_CONTENT):
                raise self._fail(response, "MOVE", tmp)
            moved = True
        finally:
            if not moved:
                # Best effort: a leftover temp object is only litter (dot names are never
                # listed or indexed).
                with contextlib.suppress(RepositoryError):
                    self._request("DELETE", tmp)

    # -- the lock ---------------------------------------------------------------------

    def _acquire(self, lock: str, folder: str) -> float:
        """MKCOL the lock collection; returns the monotonic time just before the MKCOL that
        won (the lease runs from there)."""
        token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        deadline = time.monotonic() + self.lock_wait
        pause = 0.01
        made = False
        while True:
            started = time.monotonic()
            response = self._request("MKCOL", lock, collection=True)
            status = response.status_code
            if status == _Status.CREATED:
                # The holder's lease travels with the lock, so waiters configured with
                # another lease still wait exactly as long as this holder may commit.
                owner = json.dumps({"owner": token, "lease": self.lease})
                self._request("PUT", f"{lock}/{_OWNER}", data=owner.encode())
                return started
            if status == _Status.CONFLICT and not made:
                # The object's collection does not exist yet (first publish).
                self._make_collections(folder)
                made = True
                continue
            if status != _Status.NOT_ALLOWED:
                raise self._fail(response, "MKCOL", lock)
            self._break_if_stale(lock)
            if time.monotonic() > deadline:
                raise RepositoryError(
                    f"{self._shown(self._href(lock))}: locked by another publisher for more "
                    f"than {self.lock_wait:.0f}s"
                )
            # Jitter so that waiters do not MKCOL in lockstep.
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 0.25)

    def _check_lease(self, acquired: float, path: str) -> None:
        if time.monotonic() - acquired > self.lease - _SKEW - self.timeout:
            raise RepositoryError(
                f"{self._shown(self._href(path))}: the update took longer than its "
                f"{self.lease:.0f}s lock lease; not committed, run again"
            )

    def _release(self, lock: str, acquired: float) -> None:
        try:
            if time.monotonic() - acquired < self.lease - _SKEW - self.timeout:
                self._request("DELETE", lock, collection=True)
                return
            # Past the lease a waiter may be breaking this lock: claim the right to delete
            # it like a waiter would, or leave it to whoever holds the claim.
            response = self._request("MKCOL", lock + "/" + _CLAIM, collection=True)
            if response.status_code == _Status.CREATED:
                self._request("DELETE", lock, collection=True)
        except RepositoryError:
            # The lock stays until its lease runs out; the object itself is consistent.
            pass

    def _lock_state(self, lock: str) -> tuple[str | None, float | None, float]:
        """The owner record, the lock's age by the server's clock (None: gone) and the
        holder's lease."""
        response = self._request("GET", f"{lock}/{_OWNER}")
        if response.status_code == _Status.OK:
            return response.text, _age(response), _lease_of(response.text, self.lease)
        # No owner file yet (its holder is between MKCOL and PUT, or died there): the
        # collection's own modification time tells its age.
        return None, self._collection_age(lock), self.lease

    def _collection_age(self, collection: str) -> float | None:
        response = self._request(
            "PROPFIND", collection, collection=True, headers={"Depth": "0"}
        )
        if response.status_code != _Status.MULTI_STATUS:
            return None
        try:
            root = ET.fromstring(response.content)
        except ET.ParseError:
            return None
        modified = root.findtext(f".//{_DAV}getlastmodified")
        return _age(response, modified)

    def _break_if_stale(self, lock: str) -> None:
        token, age, lease = self._lock_state(lock)
        if age is None or age <= lease + _SKEW:
            return
        claim = lock + "/" + _CLAIM
        response = self._request("MKCOL", claim, collection=True)
        if response.status_code == _Status.CREATED:
            if self._lock_state(lock)[0] == token:
                self._request("DELETE", lock, collection=True)
            else:
                # The stale lock was released and a fresh one taken meanwhile.
                self._request("DELETE", claim, collection=True)
            return
        if response.status_code == _Status.NOT_ALLOWED:
            claim_age = self._collection_age(claim)
            if claim_age is not None and claim_age > lease + _SKEW:
                # The breaker died between its claim and its DELETE.
                self._request("DELETE", lock, collection=True)

    def _make_collections(self, folder: str) -> None:
        """MKCOL every missing collection down to `folder`, the URL's own path included
        (a new repository): create_full_put_path covers PUTs only, not MKCOL."""
        segments = [seg for seg in self._base_path.split("/") if seg]
        segments += [quote(seg, safe="") for seg in folder.split("/") if seg]
        for i in range(1, len(segments) + 1):
            href = "/" + "/".join(segments[:i]) + "/"
            try:
                response = self._session.request(
                    "MKCOL", self._origin + href, timeout=self.timeout, allow_redirects=False
                )
            except requests.RequestException as exc:
                raise RepositoryError(f"MKCOL {self._origin}{href}: {_reason(exc)}") from None
            if response.status_code not in (_Status.CREATED, _Status.NOT_ALLOWED):
                raise RepositoryError(
                    f"MKCOL {self._origin}{href}: HTTP {response.status_code} {response.reason}"
                )

    # -- listing ----------------------------------------------------------------------

    def _children(self, folder: str) -> builtins.list[tuple[str, bool]]:
        response = self._request("PROPFIND", folder, collection=True, headers={"Depth": "1"})
        if response.status_code == _Status.NOT_FOUND:
            return []
        if response.status_code != _Status.MULTI_STATUS:
            raise self._fail(response, "PROPFIND", folder)
        try:
            root = ET.fromstring(response.content)
        except ET.ParseError:
            raise RepositoryError(
                f"PROPFIND {self._shown(self._href(folder))}: not a WebDAV multistatus answer"
            ) from None
        own = self._href(folder, collection=True).rstrip("/")
        children = []
        for item in root.iter(f"{_DAV}response"):
            href = item.findtext(f"{_DAV}href") or ""
            href_path = unquote(urlsplit(href).path).rstrip("/")
            if href_path == unquote(own):
                continue
            name = href_path.rsplit("/", 1)[-1]
            if not name or name.startswith("."):
                continue  # temp objects and lock collections
            is_collection = item.find(f".//{_DAV}resourcetype/{_DAV}collection") is not None
            children.append((f"{folder}/{name}" if folder else name, is_collection))
        return children


def _age(response: requests.Response, modified: str | None = None) -> float | None:
    """Seconds between a resource's Last-Modified and the response's Date: both from the
    server's clock, so the publisher's own clock does not matter."""
    modified = modified or response.headers.get("Last-Modified")
    date = response.headers.get("Date")
    if not modified or not date:
        return None
    try:
        then = email.utils.parsedate_to_datetime(modified)
        now = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    return (now - then).total_seconds()


def _lease_of(owner: str, default: float) -> float:
    """The lease an owner record declares; `default` for a record this code did not write."""
    try:
        lease = float(json.loads(owner)["lease"])
    except (ValueError, KeyError, TypeError):
        return default
    return lease if 0 < lease <= MAX_LEASE else default


def _reason(exc: requests.RequestException) -> str:
    """One short line for a transport failure (requests' own text is long and nested)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        for known in ("Connection refused", "Name or service not known", "No route to host",
                      "Connection reset by peer", "Network is unreachable"):
            if known in text:
                return f"cannot connect ({known.lower()})"
        return "cannot connect"
    return type(exc).__name__

