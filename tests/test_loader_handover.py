"""The init-container hand-over, engine side: `rt-engine run` reads the loader's
rtcap-driver.json (`--driver-file`, or `--driver auto` finding it in loader.dest), checks
the artifact's size and sha256 before loading, loads the kind it names, and reports the
choice in its log lines and metrics.

Real: `rt-engine driver install --download-only` against Python's http.server on 127.0.0.1
serving a signed repository writes the hand-over; `rt-engine run` is a subprocess; in the
`bpf` test the CO-RE probe built from driver/ loads into this kernel and the Prometheus
endpoint is scraped over loopback. Stood in: the host's distro files (a host root in a temp
dir), so the loader's choice does not depend on this machine's /etc.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from drivercore.errors import ExitCode
from drivercore.kernelrelease import normalize_arch
from drivercore.naming import repo_arch
from drivercore.repoindex import generate_private_key, public_key_text
from runtime.loader.handover import HandoverError, read_handover
from tests.loader_helpers import payload, repo_server, write_host_root, write_repo
from tests.test_engine_live import Engine, core_probe  # noqa: F401 - the session fixture

VERSION = "0.1.0+test"
ARCH = repo_arch(normalize_arch(os.uname().machine))
CORE = "rtcap_core.o"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _install(tmp_path: Path, artifact: bytes) -> tuple[Path, Path]:
    """The init container's step: fetch and verify into `dest` (named by the config's
    loader.dest, as in deploy/rtcap-daemonset.yaml). Returns (config, dest)."""
    key = generate_private_key()
    host = write_host_root(tmp_path / "host", {"etc/os-release": "ID=debian\n"})
    dest = tmp_path / "handed"
    config = tmp_path / "engine.yaml"
    with repo_server(tmp_path / "served") as served:
        write_repo(served.root, {CORE: artifact}, key, VERSION, ARCH)
        config.write_text(
            f"loader:\n  repos: [{served.url}]\n  driver_version: '{VERSION}'\n"
            f"  host_root: {host}\n  state_dir: {tmp_path / 'state'}\n  dest: {dest}\n"
            f"  public_key: '{public_key_text(key.public_key())}'\n  retries: 0\n"
            "  timeout: 5\n"
        )
        done = subprocess.run(
            [sys.executable, "-m", "runtime.engine.cli", "driver", "install", "--config",
             str(config), "--download-only"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
        )
    assert done.returncode == 0, done.stderr
    assert (dest / "rtcap-driver.json").is_file() and (dest / CORE).read_bytes() == artifact
    return config, dest


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.engine.cli", "run", *map(str, args)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("rt-engine: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    return errors[0]


def test_read_handover_checks_size_and_sha256(tmp_path: Path) -> None:
    _, dest = _install(tmp_path, payload("core"))
    lines: list[str] = []
    handed = read_handover(dest / "rtcap-driver.json", lines.append)
    assert (handed.kind, handed.engine_driver, handed.artifact) == ("core", "core", dest / CORE)
    assert "BTF" in handed.reason
    assert lines and lines[0].startswith(f"loader: verify: hand-over {dest}/rtcap-driver.json: "
                                         f"core {CORE} sha256 ")
    # Same size, one byte changed: only the sha256 can tell.
    data = bytearray((dest / CORE).read_bytes())
    data[100] ^= 0xFF
    (dest / CORE).write_bytes(bytes(data))
    with pytest.raises(HandoverError, match=r"sha256 .* is not the .* it names; nothing loaded"):
        read_handover(dest / "rtcap-driver.json", lines.append)
    (dest / CORE).write_bytes(bytes(data[:-10]))
    with pytest.raises(HandoverError, match="bytes, the hand-over says"):
        read_handover(dest / "rtcap-driver.json", lines.append)
    (dest / CORE).unlink()
    with pytest.raises(HandoverError, match="No such file"):
        read_handover(dest / "rtcap-driver.json", lines.append)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not JSON"),
        ('{"format": 9}', "format 9, this engine reads format 1"),
        ('{"format": 1, "kind": "core"}', "no `file`"),
        ('{"format": 1, "kind": "bogus", "file": "x"}', "unknown driver kind 'bogus'"),
        ('{"format": 1, "kind": "core", "file": "../x", "sha256": "00"}', "plain file name"),
    ],
)
def test_a_malformed_handover_is_one_named_error(tmp_path: Path, content: str,
                                                 message: str) -> None:
    path = tmp_path / "rtcap-driver.json"
    path.write_text(content)
    with pytest.raises(HandoverError, match=re.escape(message)):
        read_handover(path, lambda line: None)


def test_run_refuses_a_damaged_handover_in_one_line(tmp_path: Path) -> None:
    config, dest = _install(tmp_path, payload("core"))
    (dest / CORE).write_bytes(payload("other"))  # same size, other bytes
    for args in (("--driver-file", dest / "rtcap-driver.json"),
                 ("--driver", "auto", "--config", config)):
        done = _run(*args, "--duration", "1")
        assert done.returncode == ExitCode.DRIVER, done.stderr
        assert "is not the" in _one_error_line(done)
        assert "loader: load:" not in done.stderr  # nothing was loaded
    # --driver auto says where it found the hand-over, and fetched nothing.
    assert f"loader: hand-over: {dest}/rtcap-driver.json found" in done.stderr
    assert "loader: fetch:" not in done.stderr


def test_a_missing_driver_file_is_one_line(tmp_path: Path) -> None:
    done = _run("--driver-file", tmp_path / "absent.json", "--duration", "1")
    assert done.returncode == ExitCode.DRIVER
    assert "cannot read: No such file or directory" in _one_error_line(done)


@pytest.mark.bpf
def test_auto_loads_the_handed_over_core_probe_and_reports_it_in_metrics(
    tmp_path: Path, core_probe: Path  # noqa: F811 - pytest injects the imported fixture
) -> None:
    config, dest = _install(tmp_path, core_probe.read_bytes())
    engine = Engine("--driver", "auto", "--config", config, "--json", "--stats-interval", "0.3",
                    "--metrics-port", "0")
    try:
        engine.wait_running()
        stderr = "".join(engine.stderr)
        assert f"loader: hand-over: {dest}/rtcap-driver.json found" in stderr
        assert re.search(rf"^loader: verify: hand-over .*: core {CORE} sha256 \w+\.\.\. matches "
                         r"\(\d+ ms\)$", stderr, re.M), stderr
        assert re.search(rf"^loader: load: core {CORE} loaded \(\d+ ms, [\d.]+ s after process "
                         r"start\): kernel BTF present", stderr, re.M), stderr
        assert re.search(rf"^loader: engine ready: core {CORE}, [\d.]+ s after process start$",
                         stderr, re.M), stderr
        assert "loader: fetch:" not in stderr  # the init container fetched; the engine did not
        (port,) = [int(line.rsplit(":", 1)[1]) for line in list(engine.stderr)
                   if "prometheus metrics on 127.0.0.1:" in line]
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        info = re.search(r'^rtengine_driver_info\{artifact="rtcap_core\.o",kind="core",'
                         r'reason="([^"]+)",source="hand-over [^"]+"\} 1\.0$', text, re.M)
        assert info is not None and "BTF" in info.group(1), text
        load = re.search(r"^rtengine_driver_load_seconds (\S+)$", text, re.M)
        ready = re.search(r"^rtengine_ready_seconds (\S+)$", text, re.M)
        assert load is not None and ready is not None, text
        assert 0 < float(load.group(1)) < float(ready.group(1))
    finally:
        assert engine.stop() == 0, "".join(engine.stderr)
    snapshots = [json.loads(line) for line in engine.stderr if line.startswith("{")]
    assert snapshots and snapshots[-1]["driver_choice"]["kind"] == "core"
    assert snapshots[-1]["driver_choice"]["source"] == f"hand-over {dest}/rtcap-driver.json"
    assert snapshots[-1]["engine_ready_s"] > snapshots[-1]["driver_load_s"] > 0
