"""`rt-engine run --driver auto`: fetch, verify and load the candidates in order, falling to
the next when one fails to load, saying why.

Real: rt-engine run as a subprocess, the loader, drivercore's RepoReader against Python's
http.server on 127.0.0.1 serving a signed repository, libbpf opening the artifacts, and in
the `bpf` test the CO-RE probe built from driver/ and loaded into this kernel. Stood in:
the host's distro files (a host root in a temp dir; its kernel facts say "no modules", so
auto's candidates are core then probe), and the refused artifacts, which are signed bytes
that are not BPF objects (so libbpf refuses them, as it would a broken build).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivercore.errors import ExitCode
from drivercore.kernelrelease import normalize_arch
from drivercore.naming import repo_arch
from drivercore.repoindex import generate_private_key, public_key_text
from tests.loader_helpers import repo_server, write_host_root, write_repo
from tests.test_engine_live import core_probe  # noqa: F401 - the session fixture building it

VERSION = "0.1.0+test"
ARCH = repo_arch(normalize_arch(os.uname().machine))
RELEASE, UNAME_V = "6.1.0-13-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1 (2023-09-29)"
CORE = "rtcap_core.o"
PROBE = "rtcap_debian_6.1.55-1-amd64_1.o"
NOT_BPF = b"\x7fELF" + b"\0" * 4000
REPO_ROOT = Path(__file__).resolve().parent.parent


def _run_auto(tmp_path: Path, key: Ed25519PrivateKey,
              repo: str) -> subprocess.CompletedProcess[str]:
    # BTF but no module support: auto's candidates are core, then probe.
    host = write_host_root(tmp_path / "host", {"etc/os-release": "ID=debian\n",
                                               "proc/modules": None})
    config = tmp_path / "engine.yaml"
    config.write_text(
        f"loader:\n  repos: [{repo}]\n  driver_version: '{VERSION}'\n  host_root: {host}\n"
        f"  state_dir: {tmp_path / 'state'}\n  kernel_release: {RELEASE}\n"
        f"  kernel_version: '{UNAME_V}'\n  retries: 0\n  timeout: 2\n"
    )
    env = {**os.environ, "RT_ENGINE_LOADER_PUBLIC_KEY": public_key_text(key.public_key())}
    return subprocess.run(
        [sys.executable, "-m", "runtime.engine.cli", "run", "--driver", "auto", "--config",
         str(config), "--duration", "1", "--buffer-bytes", str(1 << 20)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False, env=env,
    )


def test_every_candidate_refused_is_one_line_naming_each_reason(tmp_path: Path) -> None:
    key = generate_private_key()
    with repo_server(tmp_path / "served") as served:
        write_repo(served.root, {CORE: NOT_BPF, PROBE: NOT_BPF}, key, VERSION, ARCH)
        done = _run_auto(tmp_path, key, served.url)
    assert done.returncode == ExitCode.DRIVER, done.stderr
    assert f"loader: load: core {CORE} failed" in done.stderr
    assert "trying probe" in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("rt-engine: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert f"no candidate driver loaded: core ({CORE}): " in errors[0]
    assert f"; probe ({PROBE}): " in errors[0]


@pytest.mark.bpf
def test_a_refused_core_probe_falls_to_the_next_candidate_which_loads(
    tmp_path: Path, core_probe: Path  # noqa: F811 - pytest injects the imported fixture
) -> None:
    """The CO-RE object also loads as the per-kernel probe, so publishing it under the
    probe's name gives a real second candidate on this kernel."""
    key = generate_private_key()
    with repo_server(tmp_path / "served") as served:
        write_repo(served.root, {CORE: NOT_BPF, PROBE: core_probe.read_bytes()}, key,
                   VERSION, ARCH)
        done = _run_auto(tmp_path, key, served.url)
    assert done.returncode == 0, done.stderr
    assert f"loader: load: core {CORE} failed" in done.stderr
    assert f"loader: load: probe {PROBE} loaded" in done.stderr
    assert "rt-engine: running (ebpf)" in done.stderr
