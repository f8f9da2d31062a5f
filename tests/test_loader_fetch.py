"""Get and verify: repositories in order, the signed index, the cache, and every fault as
one line with nothing cached.

Real: the loader, drivercore's RepoReader (no mock of the client), Python's http.server on
127.0.0.1 serving a repository signed with drivercore.repoindex, real sockets and their
faults (404, 500, a body cut short, a server that accepts and stalls), and the
`rt-engine driver ...` CLI run as a subprocess. Stood in: the host (a root written in a
temp dir, uname overridden) and the artifacts (bytes, not built drivers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivercore.errors import DownloadError, ExitCode
from drivercore.kernelrelease import normalize_arch
from drivercore.naming import repo_arch
from drivercore.repoclient import ArtifactIntegrityError, NotFoundError
from drivercore.repoindex import RepositoryIndexError, generate_private_key, public_key_text
from runtime.loader.config import LoaderConfig
from runtime.loader.install import HANDOVER_FILE, install
from tests.loader_helpers import RepoServer, payload, repo_server, write_host_root, write_repo

VERSION = "0.1.0+test"
ARCH = repo_arch(normalize_arch(os.uname().machine))
RELEASE, UNAME_V = "6.1.0-13-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1 (2023-09-29)"
CORE = "rtcap_core.o"
PROBE = "rtcap_debian_6.1.55-1-amd64_1.o"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_private_key()


@pytest.fixture
def host(tmp_path: Path) -> Path:
    return write_host_root(tmp_path / "host", {"etc/os-release": "ID=debian\nVERSION_ID=12\n"})


@pytest.fixture
def server(tmp_path: Path, key: Ed25519PrivateKey) -> object:
    with repo_server(tmp_path / "served") as served:
        write_repo(served.root, {CORE: payload("core"), PROBE: payload("probe")}, key,
                   VERSION, ARCH)
        yield served


def _cfg(tmp_path: Path, host: Path, key: Ed25519PrivateKey, *repos: str,
         **extra: object) -> LoaderConfig:
    values: dict[str, object] = {
        "driver_version": VERSION, "repos": repos, "host_root": host,
        "public_key": public_key_text(key.public_key()), "state_dir": tmp_path / "state",
        "kernel_release": RELEASE, "kernel_version": UNAME_V, "timeout": 1.0, "retries": 0,
    }
    values.update(extra)
    return LoaderConfig(**values)  # type: ignore[arg-type]


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "state" / VERSION / ARCH


def _cached_artifacts(tmp_path: Path) -> list[str]:
    folder = _cache(tmp_path)
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("rtcap_")) \
        if folder.is_dir() else []


def test_fetch_verify_cache_and_reuse(tmp_path: Path, host: Path, key: Ed25519PrivateKey,
                                      server: RepoServer) -> None:
    lines: list[str] = []
    done = install(_cfg(tmp_path, host, key, server.url), lines.append)
    assert done.candidate.file == CORE and done.fetched.source == server.url
    assert done.fetched.path == _cache(tmp_path) / CORE
    assert done.fetched.path.read_bytes() == payload("core")
    assert [line.split(":")[1].strip() for line in lines] == [
        "identify", "choose", "verify", "cache", "fetch", "verify"]
    # The second run hashes the cached copy against the freshly verified index, and does
    # not download it again.
    server.requests.clear()
    lines.clear()
    again = install(_cfg(tmp_path, host, key, server.url), lines.append)
    assert again.fetched.source == "cache"
    assert not any(r.endswith(CORE) for r in server.requests)
    assert any("present, sha256" in line for line in lines)


def test_a_damaged_cached_file_is_fetched_again(tmp_path: Path, host: Path,
                                                key: Ed25519PrivateKey,
                                                server: RepoServer) -> None:
    cfg = _cfg(tmp_path, host, key, server.url)
    path = install(cfg, lambda _: None).fetched.path
    for damage in (payload("core")[:500], payload("other")):  # truncated, then same size
        path.write_bytes(damage)
        lines: list[str] = []
        done = install(cfg, lines.append)
        assert done.fetched.source == server.url
        assert path.read_bytes() == payload("core")
        assert any("damaged" in line for line in lines)


def test_repositories_are_tried_in_order(tmp_path: Path, host: Path, key: Ed25519PrivateKey,
                                         server: RepoServer) -> None:
    with repo_server(tmp_path / "empty") as empty:
        done = install(_cfg(tmp_path, host, key, empty.url, server.url), lambda _: None)
    assert done.fetched.source == server.url


def test_falls_to_the_next_candidate_when_one_is_not_published(tmp_path: Path, host: Path,
                                                               key: Ed25519PrivateKey) -> None:
    with repo_server(tmp_path / "served") as served:
        write_repo(served.root, {PROBE: payload("probe")}, key, VERSION, ARCH)
        lines: list[str] = []
        done = install(_cfg(tmp_path, host, key, served.url), lines.append)
    assert done.candidate.file == PROBE
    assert any("core not published, trying kmod" in line for line in lines)


def test_404_on_every_repository_lists_every_url(tmp_path: Path, host: Path,
                                                 key: Ed25519PrivateKey) -> None:
    with repo_server(tmp_path / "a") as first, repo_server(tmp_path / "b") as second:
        cfg = _cfg(tmp_path, host, key, first.url, second.url, type="core")
        with pytest.raises(NotFoundError) as missing:
            install(cfg, lambda _: None)
    message = str(missing.value)
    assert "\n" not in message
    for url in (first.url, second.url):
        assert f"{url}/0.1.0%2Btest/{ARCH}/index.json: not found (HTTP 404)" in message
    assert _cached_artifacts(tmp_path) == []


@pytest.mark.parametrize(
    ("fault", "error", "cause"),
    [
        ({CORE: "500"}, DownloadError, "HTTP 500"),
        ({"index.json": "500"}, DownloadError, "HTTP 500"),
        ({CORE: "short"}, ArtifactIntegrityError, "truncated: 32 of 20000 bytes"),
        ({CORE: "stall"}, DownloadError, "timed out"),
    ],
)
def test_server_faults_leave_nothing_cached_and_the_next_run_succeeds(  # noqa: PLR0917
    tmp_path: Path, host: Path, key: Ed25519PrivateKey, server: RepoServer,
    fault: dict[str, str], error: type[Exception], cause: str,
) -> None:
    server.faults.update(fault)
    cfg = _cfg(tmp_path, host, key, server.url, type="core")
    started = time.monotonic()
    with pytest.raises(error) as failed:
        install(cfg, lambda _: None)
    assert time.monotonic() - started < 3.5  # the stall is cut by the 1 s timeout
    assert cause in str(failed.value) and "\n" not in str(failed.value)
    assert _cached_artifacts(tmp_path) == []
    assert not any(p.name.endswith(".part") for p in (tmp_path / "state").rglob("*"))
    server.faults.clear()
    assert install(cfg, lambda _: None).fetched.path.read_bytes() == payload("core")


def test_retries_with_backoff_then_gives_up(tmp_path: Path, host: Path, key: Ed25519PrivateKey,
                                            server: RepoServer) -> None:
    server.faults[CORE] = "500"
    lines: list[str] = []
    with pytest.raises(DownloadError, match="HTTP 500"):
        install(_cfg(tmp_path, host, key, server.url, type="core", retries=2), lines.append)
    assert sum(r.endswith(CORE) for r in server.requests) == 3
    assert sum("retry" in line for line in lines) == 2


def test_a_tampered_artifact_is_refused(tmp_path: Path, host: Path, key: Ed25519PrivateKey,
                                        server: RepoServer) -> None:
    (server.root / VERSION / ARCH / CORE).write_bytes(payload("evil"))  # same size
    with pytest.raises(ArtifactIntegrityError, match=r"sha256 .* is not the"):
        install(_cfg(tmp_path, host, key, server.url), lambda _: None)
    assert _cached_artifacts(tmp_path) == []


def test_bad_or_missing_signatures_are_refused(tmp_path: Path, host: Path,
                                               key: Ed25519PrivateKey,
                                               server: RepoServer) -> None:
    other = generate_private_key()
    with pytest.raises(RepositoryIndexError, match="pinned key"):
        install(_cfg(tmp_path, host, other, server.url), lambda _: None)
    (server.root / VERSION / ARCH / "index.json.sig").unlink()
    with pytest.raises(RepositoryIndexError, match="unsigned"):
        install(_cfg(tmp_path, host, key, server.url), lambda _: None)
    assert _cached_artifacts(tmp_path) == []


def test_unreachable_repositories_fall_back_to_the_signed_cache(
    tmp_path: Path, host: Path, key: Ed25519PrivateKey, server: RepoServer
) -> None:
    install(_cfg(tmp_path, host, key, server.url), lambda _: None)
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens
    lines: list[str] = []
    done = install(_cfg(tmp_path, host, key, dead), lines.append)
    assert done.fetched.source == "cache"
    # The cached index is trusted only through the pinned key: another key finds no cache.
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1:9"):
        install(_cfg(tmp_path, host, generate_private_key(), dead), lambda _: None)


# --- the CLI, as an init container runs it -------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.engine.cli", "driver", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **(env or {})},
    )


def _cli_args(tmp_path: Path, host: Path, key: Ed25519PrivateKey, *repos: str) -> list[str]:
    args = ["--driver-version", VERSION, "--public-key", public_key_text(key.public_key()),
            "--host-root", str(host), "--state-dir", str(tmp_path / "state"),
            "--kernel-release", RELEASE, "--kernel-version", UNAME_V, "--timeout", "1",
            "--retries", "0"]
    for repo in repos:
        args += ["--repo", repo]
    return args


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("rt-engine: error:")]
    assert len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return errors[0]


def test_cli_download_only_hands_the_artifact_over(tmp_path: Path, host: Path,
                                                   key: Ed25519PrivateKey,
                                                   server: RepoServer) -> None:
    dest = tmp_path / "dest"
    done = _cli("install", *_cli_args(tmp_path, host, key, server.url), "--download-only",
                "--dest", str(dest))
    assert done.returncode == 0, done.stderr
    handover = json.loads((dest / HANDOVER_FILE).read_text())
    assert handover["engine_driver"] == "core" and handover["file"] == CORE
    assert Path(handover["path"]).read_bytes() == payload("core")
    assert f"from {server.url}" in done.stdout
    cleaned = _cli("cleanup", "--state-dir", str(tmp_path / "state"))
    assert cleaned.returncode == 0 and "removed 3 files" in cleaned.stdout  # core + index pair
    assert not (tmp_path / "state" / VERSION).exists()


def test_cli_options_from_the_environment_and_the_config_file(
    tmp_path: Path, host: Path, key: Ed25519PrivateKey, server: RepoServer
) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text(
        f"loader:\n  type: probe\n  repos: [{server.url}]\n  driver_version: '{VERSION}'\n"
        f"  host_root: {host}\n  state_dir: {tmp_path / 'state'}\n"
        f"  kernel_release: {RELEASE}\n  kernel_version: '{UNAME_V}'\n  retries: 0\n"
    )
    env = {"RT_ENGINE_LOADER_PUBLIC_KEY": public_key_text(key.public_key())}
    done = _cli("install", "--config", str(config), env=env)
    assert done.returncode == 0, done.stderr
    assert PROBE in done.stdout
    # A flag beats the file.
    done = _cli("install", "--config", str(config), "--type", "core", env=env)
    assert CORE in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("loader:\n  repo: [x]\n")
    assert "did you mean 'repos'" in _error_line(_cli("detect", "--config", str(bad)))


@pytest.mark.parametrize(
    ("case", "code", "cause"),
    [
        ("404", ExitCode.DOWNLOAD, "is in no repository; tried: "),
        ("500", ExitCode.DOWNLOAD, "HTTP 500"),
        ("tampered", ExitCode.INTEGRITY, "is not the"),
        ("unsigned", ExitCode.INDEX_INVALID, "unsigned"),
        ("kmod", ExitCode.DRIVER_TYPE_REFUSED,
         "kmod: this kernel cannot load modules (no /proc/modules)"),
    ],
)
def test_cli_faults_are_one_line_and_a_nonzero_exit(  # noqa: PLR0917
    tmp_path: Path, host: Path, key: Ed25519PrivateKey, server: RepoServer,
    case: str, code: ExitCode, cause: str,
) -> None:
    repo = server.url
    extra: list[str] = []
    if case == "404":
        repo = server.url + "/nowhere"
    elif case == "500":
        server.faults[CORE] = "500"
    elif case == "tampered":
        (server.root / VERSION / ARCH / CORE).write_bytes(payload("evil"))
    elif case == "unsigned":
        (server.root / VERSION / ARCH / "index.json.sig").unlink()
    else:
        (host / "proc/modules").unlink()
        extra = ["--type", "kmod"]
    done = _cli("install", *_cli_args(tmp_path, host, key, repo), *extra)
    assert done.returncode == code, done.stderr
    assert cause in _error_line(done)
    assert _cached_artifacts(tmp_path) == []


def test_cli_detect_and_printenv(tmp_path: Path, host: Path) -> None:
    (host / "proc/modules").unlink()
    args = ["--host-root", str(host), "--kernel-release", RELEASE, "--kernel-version", UNAME_V]
    detect = _cli("detect", *args)
    assert detect.returncode == 0, detect.stderr
    assert "choice:            core" in detect.stdout
    assert "kmod: this kernel cannot load modules (no /proc/modules)" in detect.stdout
    printenv = _cli("printenv", *args)
    values = dict(line.split("=", 1) for line in printenv.stdout.splitlines())
    assert values["RTCAP_CHOICE"] == "core"
    assert values["RTCAP_PROBE_FILE"] == PROBE
    assert values["RTCAP_CANDIDATES"] == "'core probe'"
