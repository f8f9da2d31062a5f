"""Test policy for tests that need privileges or real components.

Locally, a test whose prerequisite is missing is skipped with the reason. Under CI
(CI=true) the same test fails instead: .ci/run installs and starts everything, so a
missing prerequisite there is a broken pipeline, not a reason to pass quietly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.build_helpers import ArchiveKey

IN_CI = os.environ.get("CI", "").lower() == "true"
REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def require(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI, when a prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


def _docker_up() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


def _bpf_ready() -> bool:
    return (
        os.geteuid() == 0
        and Path("/sys/kernel/btf/vmlinux").exists()
        and Path("/sys/kernel/tracing/events").is_dir()
    )


def _qemu_ready() -> bool:
    return shutil.which("qemu-system-x86_64") is not None


def _chromium_ready() -> bool:
    return shutil.which("chromium") is not None


def pytest_runtest_setup(item: pytest.Item) -> None:
    markers = {m.name for m in item.iter_markers()}
    if "root" in markers:
        require(os.geteuid() == 0, "needs root")
    if "bpf" in markers:
        require(_bpf_ready(), "needs root, BTF and tracefs at /sys/kernel/tracing")
    if "docker" in markers:
        require(_docker_up(), "needs a running dockerd (see .ci/run)")
    if "qemu" in markers:
        require(_qemu_ready(), "needs qemu-system-x86_64 (see .ci/run)")
    if "browser" in markers:
        require(_chromium_ready(), "needs headless Chromium: apt-get install chromium")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def ci_cache() -> Path:
    """Download cache shared by tests and .ci/run, outside the repo so reruns are fast."""
    from driverkit.cache import default_cache_dir

    path = default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(params=["python", "compiled"])
def decoder_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once per batch decoder: the generated Python one and the compiled one
    (runtime/driver/_fastdecode.c). Decoders built during the test use the chosen one."""
    from runtime.driver import schema

    compiled = request.param == "compiled"
    if compiled:
        require(schema.COMPILED_DECODER, f"compiled decoder: {schema.compiled_decoder_status()}")
    monkeypatch.setattr(schema, "COMPILED_DECODER", compiled)
    return str(request.param)


@pytest.fixture(scope="session")
def archive_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchiveKey]:
    """A signing key for loopback Debian mirrors (see tests/build_helpers.ArchiveKey)."""
    require(shutil.which("gpg") is not None and shutil.which("gpgv") is not None,
            "needs gpg and gpgv to sign and verify test archives")
    # gpg-agent's socket path must stay short: a directory of our own under /tmp.
    key = ArchiveKey(Path(tempfile.mkdtemp(prefix="dk-gpg-")) / "home")
    try:
        yield key
    finally:
        key.close()
        shutil.rmtree(key.home.parent, ignore_errors=True)


# Real repository servers (nginx WebDAV, SeaweedFS S3) for tests marked `repo`.
from tests.repo_servers import (  # noqa: E402, F401
    dir_repo,
    s3_repo,
    s3_server,
    webdav_repo,
    webdav_server,
)
