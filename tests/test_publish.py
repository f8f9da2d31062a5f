"""Publishing to the three repository backends, through the real `driverkit` CLI.

Real: the servers (nginx WebDAV, SeaweedFS S3, a directory), the Ed25519 signing, the
compare-and-swap index updates, concurrent publisher processes and SIGKILL. Stood in: the
artifacts' bytes in most tests (tests/publish_helpers.py writes build outputs with the
manifest format `driverkit build` writes); `test_real_build_published_everywhere` publishes
a real Docker build of the newest bookworm 6.1 kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from drivercore.repoclient import RepoReader
from drivercore.repoindex import (
    INDEX_FILE,
    SIGNATURE_FILE,
    RepositoryIndexError,
    parse_arch_index,
    parse_public_key,
    parse_root_index,
    verify_index,
)
from driverkit.publish.backend import Backend
from driverkit.publish.keys import generate_keys
from tests.publish_helpers import driverkit, fake_build_output

pytestmark = [pytest.mark.repo]

KERNELS = [("debian", f"6.1.{n}-1-amd64", "1") for n in range(100, 104)]
OTHER_KERNELS = [("ubuntu-generic", f"5.15.0-{n}-generic", "99") for n in range(10, 14)]


@dataclass
class Repo:
    kind: str
    backend: Backend
    url: str
    env: dict[str, str]

    def read_verified(self, path: str, public: object) -> bytes:
        index = self.backend.read(path)
        signature = self.backend.read(path.removesuffix(INDEX_FILE) + SIGNATURE_FILE)
        assert index is not None and signature is not None, path
        verify_index(index.data, signature.data, public, path)  # type: ignore[arg-type]
        return index.data


@pytest.fixture(params=["dir", "webdav", "s3"])
def repo(request: pytest.FixtureRequest) -> Iterator[Repo]:
    if request.param == "dir":
        backend = request.getfixturevalue("dir_repo")
        yield Repo("dir", backend, backend.url, {})
    elif request.param == "webdav":
        backend = request.getfixturevalue("webdav_repo")
        yield Repo("webdav", backend, backend.url, {})
    else:
        server = request.getfixturevalue("s3_server")
        backend = request.getfixturevalue("s3_repo")
        yield Repo("s3", backend, backend.url, server.env)


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, str]:
    pair = generate_keys(tmp_path / "keys")
    return pair.private_path, pair.public_text




def _publish(repo: Repo, out: Path, key: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return driverkit("publish", "--from", str(out), "--repo", repo.url, "--signing-key",
                     str(key), *extra, env=repo.env)


def _entries(repo: Repo, public_text: str, version: str = "0.1.0") -> dict[str, dict[str, object]]:
    data = repo.read_verified(f"{version}/x86_64/{INDEX_FILE}", parse_public_key(public_text))
    index = parse_arch_index(data, "index", driver_version=version, arch="x86_64")
    return {name: e.to_json() for name, e in index.entries.items()}


def test_publish_is_signed_complete_and_idempotent(
    repo: Repo, keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key, public_text = keypair
    out = tmp_path / "out"
    names = fake_build_output(out, KERNELS, driver_version="0.1.0+rc1")
    first = _publish(repo, out, key)
    assert first.returncode == 0, first.stderr
    assert f"published {len(names)} artifacts, 0 unchanged" in first.stdout
    public = parse_public_key(public_text)
    # falcoctl's layout: amd64 builds land under x86_64; '+' is part of the object's name.
    entries = _entries(repo, public_text, "0.1.0+rc1")
    assert sorted(entries) == sorted(names)
    for name, entry in entries.items():
        local = (out / "0.1.0+rc1" / "amd64" / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(local).hexdigest()
        stored = repo.backend.read(f"0.1.0+rc1/x86_64/{name}")
        assert stored is not None and stored.data == local
    kinds = {e["kind"] for e in entries.values()}
    assert kinds == {"kmod", "probe", "core"}
    root = parse_root_index(repo.read_verified(INDEX_FILE, public), "root")
    assert root.versions == {"0.1.0+rc1": ("x86_64",)}
    # Nothing new: nothing sent, no index rewritten.
    before = repo.backend.read(f"0.1.0+rc1/x86_64/{INDEX_FILE}")
    again = _publish(repo, out, key)
    assert again.returncode == 0, again.stderr
    assert f"published 0 artifacts, {len(names)} unchanged, 0 indexes updated" in again.stdout
    assert repo.backend.read(f"0.1.0+rc1/x86_64/{INDEX_FILE}") == before


def test_other_build_under_same_name_is_refused_unless_forced(
    repo: Repo, keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key, public_text = keypair
    fake_build_output(tmp_path / "a", KERNELS[:1], seed="a")
    fake_build_output(tmp_path / "b", KERNELS[:1], seed="b")
    assert _publish(repo, tmp_path / "a", key).returncode == 0
    before = _entries(repo, public_text)
    refused = _publish(repo, tmp_path / "b", key)
    assert refused.returncode == 15, refused.stderr
    assert refused.stderr.count("\n") == 1  # one line
    name = next(n for n in before if n.endswith(".ko"))
    new_sha = hashlib.sha256((tmp_path / "b/0.1.0/amd64" / name).read_bytes()).hexdigest()
    assert str(before[name]["sha256"]) in refused.stderr and new_sha in refused.stderr
    assert _entries(repo, public_text) == before
    stored = repo.backend.read(f"0.1.0/x86_64/{name}")
    assert stored is not None and hashlib.sha256(stored.data).hexdigest() == before[name]["sha256"]
    forced = _publish(repo, tmp_path / "b", key, "--force")
    assert forced.returncode == 0, forced.stderr
    assert _entries(repo, public_text)[name]["sha256"] == new_sha


def test_damaged_object_is_sent_again_not_counted_as_present(
    dir_repo: Backend, keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key, _ = keypair
    repo = Repo("dir", dir_repo, dir_repo.url, {})
    out = tmp_path / "out"
    names = fake_build_output(out, KERNELS[:1])
    assert _publish(repo, out, key).returncode == 0
    victim = Path(dir_repo.url) / "0.1.0" / "x86_64" / names[0]
    victim.write_bytes(victim.read_bytes()[:100])  # a truncated upload or a bad disk
    again = _publish(repo, out, key)
    assert again.returncode == 0, again.stderr
    assert "published 1 artifacts" in again.stdout
    assert victim.read_bytes() == (out / "0.1.0" / "amd64" / names[0]).read_bytes()


def test_tampered_index_stops_the_publisher(
    dir_repo: Backend, keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key, _ = keypair
    repo = Repo("dir", dir_repo, dir_repo.url, {})
    fake_build_output(tmp_path / "a", KERNELS[:1])
    assert _publish(repo, tmp_path / "a", key).returncode == 0
    index = Path(dir_repo.url) / "0.1.0" / "x86_64" / INDEX_FILE
    index.write_text(index.read_text().replace('"size": 4096', '"size": 4097', 1))
    fake_build_output(tmp_path / "b", KERNELS[1:2])
    refused = _publish(repo, tmp_path / "b", key)
    assert refused.returncode == 13, refused.stderr
    assert "signature" in refused.stderr or "covers this index" in refused.stderr


def test_two_publishers_at_once_lose_nothing(
    repo: Repo, keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key, public_text = keypair
    a = fake_build_output(tmp_path / "a", KERNELS, core=False)
    b = fake_build_output(tmp_path / "b", OTHER_KERNELS, core=True)
    env = {**os.environ, **repo.env}
    env = {k: v for k, v in env.items() if not k.startswith("DRIVERKIT_")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "driverkit.entry", "publish", "--from", str(tmp_path / x),
             "--repo", repo.url, "--signing-key", str(key)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for x in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert sorted(_entries(repo, public_text)) == sorted(a + b)


def _consistent(repo: Repo, public_text: str) -> int:
    """Every file the (verified) index lists is there with its sha256; returns how many."""
    path = f"0.1.0/x86_64/{INDEX_FILE}"
    if repo.backend.read(path) is None:
        return 0
    for name, entry in _entries(repo, public_text).items():
        stored = repo.backend.read(f"0.1.0/x86_64/{name}")
        assert stored is not None, name
        assert hashlib.sha256(stored.data).hexdigest() == entry["sha256"], name
    return len(_entries(repo, public_text))


def test_kill_9_at_any_moment_leaves_a_consistent_index(
    repo: Repo, keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key, public_text = keypair
    kernels = [("debian", f"6.1.{n}-1-amd64", "1") for n in range(40)]
    names = fake_build_output(tmp_path / "out", kernels, size=64 << 10)
    env = {k: v for k, v in {**os.environ, **repo.env}.items()
           if not k.startswith("DRIVERKIT_")}
    # Kill one publisher after each of these delays; each later run resumes the work.
    for delay in (0.3, 0.6, 0.9, 1.2, 1.6, 2.0, 2.5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "driverkit.entry", "publish", "--from",
             str(tmp_path / "out"), "--repo", repo.url, "--signing-key", str(key)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _consistent(repo, public_text)
    done = _publish(repo, tmp_path / "out", key)
    assert done.returncode == 0, done.stderr
    assert _consistent(repo, public_text) == len(names)


def test_reader_rejects_what_the_publisher_did_not_sign(
    dir_repo: Backend, keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key, public_text = keypair
    repo = Repo("dir", dir_repo, dir_repo.url, {})
    names = fake_build_output(tmp_path / "out", KERNELS[:1])
    assert _publish(repo, tmp_path / "out", key).returncode == 0
    reader = RepoReader(dir_repo.url, parse_public_key(public_text))
    index = reader.arch_index("0.1.0", "amd64")
    artifact = Path(dir_repo.url) / "0.1.0" / "x86_64" / names[0]
    artifact.write_bytes(artifact.read_bytes()[::-1])
    with pytest.raises(Exception, match="sha256"):
        reader.download(index, index.entries[names[0]], tmp_path / "cache")
    other = generate_keys(tmp_path / "other").public_text
    with pytest.raises(RepositoryIndexError, match="pinned key"):
        RepoReader(dir_repo.url, parse_public_key(other)).arch_index("0.1.0", "amd64")


def test_keys_generate_and_publish_errors_are_one_line(tmp_path: Path) -> None:
    made = driverkit("keys", "generate", "--out", str(tmp_path / "k"))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().splitlines()[-1].startswith("ed25519:")
    assert oct((tmp_path / "k" / "repo-signing.key").stat().st_mode & 0o777) == "0o600"
    again = driverkit("keys", "generate", "--out", str(tmp_path / "k"))
    assert again.returncode == 2 and "--force" in again.stderr
    fake_build_output(tmp_path / "out", KERNELS[:1])
    for args, code, words in (
        (["--repo", str(tmp_path / "r")], 2, "--signing-key"),
        (["--signing-key", str(tmp_path / "k/repo-signing.key")], 2, "--repo is required"),
        (["--repo", "ftp://x/y", "--signing-key", str(tmp_path / "k/repo-signing.key")], 2,
         "ftp"),
        (["--repo", str(tmp_path / "r"), "--signing-key", str(tmp_path / "k/repo-signing.pub")],
         13, "PEM"),
    ):
        done = driverkit("publish", "--from", str(tmp_path / "out"), *args)
        assert done.returncode == code, (args, done.stderr)
        assert words in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("index.json"))


def test_index_entries_carry_the_build_facts(
    dir_repo: Backend, keypair: tuple[Path, str], tmp_path: Path
) -> None:
    key, public_text = keypair
    repo = Repo("dir", dir_repo, dir_repo.url, {})
    out = tmp_path / "out"
    fake_build_output(out, KERNELS[:1])
    (out / "0.1.0" / "amd64" / "bootverify.json").write_text(
        json.dumps({"rtcap_debian_6.1.100-1-amd64_1.ko": ["6.1.100-1-amd64"]})
    )
    assert _publish(repo, out, key).returncode == 0
    entries = _entries(repo, public_text)
    kmod = entries["rtcap_debian_6.1.100-1-amd64_1.ko"]
    assert kmod["kind"] == "kmod" and kmod["target"] == "debian"
    assert kmod["kernelrelease"] == "6.1.100-1-amd64" and kmod["kernelversion"] == "1"
    assert cast(str, kmod["compiler"]).startswith("gcc") and kmod["boot_verified"] == [
        "6.1.100-1-amd64"]
    probe = entries["rtcap_debian_6.1.100-1-amd64_1.o"]
    assert cast(str, probe["compiler"]).startswith("Debian clang") and probe["host_verifier"]
    assert entries["rtcap_core.o"]["kind"] == "core" and entries["rtcap_core.o"]["target"] == ""


@pytest.mark.docker
@pytest.mark.network
@pytest.mark.xdist_group("docker-build")
def test_real_build_published_everywhere(  # noqa: PLR0917 - one parameter per fixture
    tmp_path: Path, ci_cache: Path, keypair: tuple[Path, str], dir_repo: Backend,
    webdav_repo: Backend, s3_repo: Backend, s3_server: object,
) -> None:
    """Real end to end: `driverkit build --publish` of the newest bookworm 6.1 kernel in
    Docker (headers from the real mirror) into a directory repository, then the same
    output to WebDAV (nginx) and S3 (SeaweedFS); each is fetched back and verified, and a
    tampered index or artifact is rejected."""
    import hashlib as _hashlib

    from drivercore.repoclient import ArtifactIntegrityError
    from tests.build_helpers_real import bookworm_release, real_archive

    key, public_text = keypair
    public = parse_public_key(public_text)
    release = bookworm_release(ci_cache)
    headers = real_archive(ci_cache).find_headers(release)
    out = tmp_path / "out"
    built = driverkit(
        "build", "--kernel", release, "--kernel-version",
        f"#1 SMP PREEMPT_DYNAMIC Debian {headers.version}", "--target", "debian",
        "--base-from", os.environ.get("DK_BASE_FROM", "debootstrap"), "--cache-dir",
        str(ci_cache), "--output", str(out), "--publish", dir_repo.url, "--signing-key",
        str(key), timeout=1200,
    )
    assert built.returncode == 0, built.stderr
    assert "published 3 artifacts" in built.stdout, built.stdout
    (version_dir,) = out.iterdir()
    version = version_dir.name
    stem = f"rtcap_debian_{headers.version}-amd64_1"
    local = {n: (version_dir / "amd64" / n).read_bytes()
             for n in (f"{stem}.ko", f"{stem}.o", "rtcap_core.o")}
    s3_env = s3_server.env  # type: ignore[attr-defined]
    for backend, env in ((webdav_repo, {}), (s3_repo, s3_env)):
        done = driverkit("publish", "--from", str(out), "--repo", backend.url,
                         "--signing-key", str(key), env=env)
        assert done.returncode == 0, done.stderr
    # Directory and WebDAV: the read-side client, plain reads as falcoctl makes them.
    webdav_url = webdav_repo.url
    for n, url in enumerate((dir_repo.url, webdav_url)):
        reader = RepoReader(url, public, timeout_s=10)
        index = reader.arch_index(version, "amd64")
        assert sorted(index.entries) == sorted(local)
        for name, data in local.items():
            got = reader.download(index, index.entries[name], tmp_path / f"fetched-{n}")
            assert got.read_bytes() == data
    # S3: objects are private; read them through the signed boto3 session and verify.
    repo = Repo("s3", s3_repo, s3_repo.url, s3_env)
    index_bytes = repo.read_verified(f"{version}/x86_64/{INDEX_FILE}", public)
    s3_index = parse_arch_index(index_bytes, "s3", driver_version=version, arch="x86_64")
    for name, data in local.items():
        stored = s3_repo.read(f"{version}/x86_64/{name}")
        assert stored is not None
        assert _hashlib.sha256(stored.data).hexdigest() == s3_index.entries[name].sha256
        assert stored.data == data
    # Tampering, through each server's own write path.
    tampered = index_bytes.replace(b'"kind": "kmod"', b'"kind": "probe"', 1)
    source = tmp_path / "tampered.json"
    source.write_bytes(tampered)
    for backend in (webdav_repo, s3_repo):
        backend.write_atomic(f"{version}/x86_64/{INDEX_FILE}", source,
                             _hashlib.sha256(tampered).hexdigest())
    with pytest.raises(RepositoryIndexError):
        RepoReader(webdav_url, public).arch_index(version, "amd64")
    with pytest.raises(RepositoryIndexError):
        repo.read_verified(f"{version}/x86_64/{INDEX_FILE}", public)
    evil = tmp_path / "evil.ko"
    evil.write_bytes(local[f"{stem}.ko"][::-1])
    dir_reader = RepoReader(dir_repo.url, public)
    dir_index = dir_reader.arch_index(version, "amd64")
    dir_repo.write_atomic(f"{version}/x86_64/{stem}.ko", evil,
                          _hashlib.sha256(evil.read_bytes()).hexdigest())
    with pytest.raises(ArtifactIntegrityError):
        dir_reader.download(dir_index, dir_index.entries[f"{stem}.ko"], tmp_path / "evil")
