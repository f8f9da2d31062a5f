"""The signed repository index and the read-side client (drivercore).

The HTTP server here is Python's real http.server on 127.0.0.1, serving a repository tree
written by the same code publishers use; the faults (404, 500, a truncated body, a server
that accepts and stalls) are real socket behaviour, not stubs.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivercore.errors import DownloadError
from drivercore.naming import ArtifactKind
from drivercore.repoclient import ArtifactIntegrityError, NotFoundError, RepoReader
from drivercore.repoindex import (
    KEPT_SIGNATURES,
    ArchIndex,
    IndexEntry,
    RepositoryIndexError,
    RootIndex,
    generate_private_key,
    load_private_key,
    parse_arch_index,
    parse_public_key,
    private_key_pem,
    public_key_text,
    sign_index,
    verify_index,
)
from tests.build_helpers import serve_dir

PAYLOAD = b"\x7fELF" + bytes(range(256)) * 64


def _entry(name: str, data: bytes) -> IndexEntry:
    return IndexEntry(
        file=name,
        kind=ArtifactKind.PROBE,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        target="debian",
        kernelrelease="6.1.140-1-amd64",
        kernelversion="1",
    )


def _write_repo(root: Path, files: dict[str, bytes], key: object, version: str = "0.1.0+x",
                arch: str = "x86_64") -> ArchIndex:
    folder = root / version / arch
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    index = ArchIndex(version, arch).with_entries(_entry(n, d) for n, d in files.items())
    data = index.to_bytes()
    (folder / "index.json").write_bytes(data)
    (folder / "index.json.sig").write_bytes(sign_index(data, key))  # type: ignore[arg-type]
    root_data = RootIndex().with_arch(version, arch).to_bytes()
    (root / "index.json").write_bytes(root_data)
    (root / "index.json.sig").write_bytes(sign_index(root_data, key))  # type: ignore[arg-type]
    return index


def test_keys_round_trip_through_their_text_forms() -> None:
    key = generate_private_key()
    again = load_private_key(private_key_pem(key), "test key")
    pub = parse_public_key(public_key_text(again.public_key()))
    data = ArchIndex("1.0", "x86_64").to_bytes()
    verify_index(data, sign_index(data, key), pub, "index")
    with pytest.raises(RepositoryIndexError, match=r"ed25519:<base64>"):
        parse_public_key("ssh-ed25519 AAAA")
    with pytest.raises(RepositoryIndexError, match="32 base64"):
        parse_public_key("ed25519:AAAA")


def test_a_tampered_index_or_another_key_is_rejected() -> None:
    key = generate_private_key()
    data = ArchIndex("1.0", "x86_64").with_entries([_entry("a.o", b"x")]).to_bytes()
    signature = sign_index(data, key)
    tampered = data.replace(b'"size": 1', b'"size": 2')
    assert tampered != data
    with pytest.raises(RepositoryIndexError, match=r"no signature .* covers this index"):
        verify_index(tampered, signature, key.public_key(), "index")
    other = generate_private_key()
    with pytest.raises(RepositoryIndexError, match="does not verify with the pinned key"):
        verify_index(data, signature, other.public_key(), "index")
    # A signature entry re-labelled with the tampered index's digest still fails.
    forged = json.loads(signature)
    forged["signatures"][0]["sha256"] = hashlib.sha256(tampered).hexdigest()
    with pytest.raises(RepositoryIndexError, match="does not verify"):
        verify_index(tampered, json.dumps(forged).encode(), key.public_key(), "index")


def test_signature_file_keeps_the_index_it_replaces() -> None:
    """A reader that fetched the old index just before a publish still verifies it."""
    key = generate_private_key()
    index = ArchIndex("1.0", "x86_64")
    old = index.to_bytes()
    signature = sign_index(old, key)
    for n in range(KEPT_SIGNATURES + 5):
        index = index.with_entries([_entry(f"f{n}.o", bytes([n]))])
        newer = index.to_bytes()
        signature = sign_index(newer, key, signature, keep_sha256=hashlib.sha256(old).hexdigest())
        verify_index(newer, signature, key.public_key(), "index")
        verify_index(old, signature, key.public_key(), "index")
    assert len(json.loads(signature)["signatures"]) <= KEPT_SIGNATURES + 1


def test_an_index_signed_for_another_folder_is_rejected() -> None:
    data = ArchIndex("1.0", "x86_64").to_bytes()
    with pytest.raises(RepositoryIndexError, match=r"served as '2.0'"):
        parse_arch_index(data, "index", driver_version="2.0", arch="x86_64")
    with pytest.raises(RepositoryIndexError, match=r"served as '1.0'/'aarch64'"):
        parse_arch_index(data, "index", driver_version="1.0", arch="aarch64")


def test_parse_refuses_path_names_and_bad_hashes() -> None:
    good = json.loads(ArchIndex("1.0", "x86_64").with_entries([_entry("a.o", b"x")]).to_bytes())
    cases: tuple[tuple[str, Callable[[dict[str, object]], None]], ...] = (
        ("../evil.o", lambda e: e.update(file="../evil.o")),
        ("a.o", lambda e: e.update(sha256="00")),
        ("a.o", lambda e: e.update(kind="rootkit")),
    )
    for name, mutate in cases:
        doc = json.loads(json.dumps(good))
        entry = doc["artifacts"].pop("a.o")
        mutate(entry)
        doc["artifacts"][name] = entry
        with pytest.raises(RepositoryIndexError):
            parse_arch_index(json.dumps(doc).encode(), "index", driver_version="1.0",
                             arch="x86_64")


def test_directory_repository_round_trip(tmp_path: Path) -> None:
    key = generate_private_key()
    _write_repo(tmp_path / "repo", {"rtcap_debian_6.1_1.o": PAYLOAD}, key)
    for url in (str(tmp_path / "repo"), (tmp_path / "repo").as_uri()):
        reader = RepoReader(url, key.public_key())
        assert reader.root_index().versions == {"0.1.0+x": ("x86_64",)}
        index = reader.arch_index("0.1.0+x", "amd64")  # Debian spelling maps to x86_64
        got = reader.download(index, index.entries["rtcap_debian_6.1_1.o"], tmp_path / "cache")
        assert got.read_bytes() == PAYLOAD


class _Faulty(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; some paths misbehave the way broken servers and proxies do."""

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        if self.path.endswith("/boom"):
            self.send_error(500, "boom")
            return
        if "truncated" in self.path:
            self._short_body(100)
            self.close_connection = True
            return
        if "stall" in self.path:
            self._short_body(10)
            time.sleep(5)
            return
        super().do_GET()

    def _short_body(self, sent: int) -> None:
        """Promise the whole payload, send only its first `sent` bytes."""
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD[:sent])
        self.wfile.flush()


@pytest.fixture
def http_repo(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    with serve_dir(root, _Faulty) as (url, _):
        yield url, root


def test_http_fetch_verifies_and_downloads(http_repo: tuple[str, Path], tmp_path: Path) -> None:
    url, root = http_repo
    key = generate_private_key()
    _write_repo(root, {"good.o": PAYLOAD, "bad.o": PAYLOAD}, key)
    folder = root / "0.1.0+x" / "x86_64"
    reader = RepoReader(url, key.public_key(), timeout_s=2)
    index = reader.arch_index("0.1.0+x", "x86_64")
    cache = tmp_path / "cache"
    assert reader.download(index, index.entries["good.o"], cache).read_bytes() == PAYLOAD
    # Same size, other bytes: the sha256 check refuses it and leaves nothing behind.
    (folder / "bad.o").write_bytes(PAYLOAD[::-1])
    with pytest.raises(ArtifactIntegrityError, match=r"sha256 .* is not the"):
        reader.download(index, index.entries["bad.o"], cache)
    assert sorted(p.name for p in cache.iterdir()) == ["good.o"]
    # Served longer than listed: stopped at the listed size.
    (folder / "bad.o").write_bytes(PAYLOAD + b"extra")
    with pytest.raises(ArtifactIntegrityError, match="longer than"):
        reader.download(index, index.entries["bad.o"], cache)
    # A pinned key that did not sign the index.
    with pytest.raises(RepositoryIndexError, match="pinned key"):
        RepoReader(url, generate_private_key().public_key()).arch_index("0.1.0+x", "x86_64")
    # A missing signature is refused, not skipped.
    (folder / "index.json.sig").unlink()
    with pytest.raises(RepositoryIndexError, match="unsigned"):
        reader.arch_index("0.1.0+x", "x86_64")


def test_http_faults_are_one_line_errors(http_repo: tuple[str, Path], tmp_path: Path) -> None:
    url, root = http_repo
    key = generate_private_key()
    index = _write_repo(root, {"truncated.o": PAYLOAD, "stall.o": PAYLOAD}, key)
    reader = RepoReader(url, key.public_key(), timeout_s=1.5)
    with pytest.raises(NotFoundError, match="HTTP 404"):
        reader.arch_index("9.9.9", "x86_64")
    with pytest.raises(DownloadError, match="HTTP 500"):
        reader.fetch("x/boom", 100)
    cache = tmp_path / "cache"
    with pytest.raises((DownloadError, ArtifactIntegrityError)) as truncated:
        reader.download(index, index.entries["truncated.o"], cache)
    assert "\n" not in str(truncated.value)
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"stall.o"):
        reader.download(index, index.entries["stall.o"], cache)
    assert time.monotonic() - started < 4.5
    assert not cache.exists() or list(cache.iterdir()) == []
    closed = RepoReader("http://127.0.0.1:9", key.public_key(), timeout_s=1)
    with pytest.raises(DownloadError, match=r"127.0.0.1:9"):
        closed.root_index()
