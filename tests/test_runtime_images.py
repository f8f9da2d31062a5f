"""The loader and engine images (`driverkit images runtime`): what they hold, and the
engine image loading the CO-RE probe on the host kernel from inside a container.

The render and tag checks run anywhere; the image tests need dockerd (marker `docker`),
and the live engine test also BPF on the host (marker `bpf`).
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from driverkit.errors import UsageError
from driverkit.runtime_images import (
    APP_DIR,
    DEBIAN_PACKAGE_OF,
    ENTRYPOINTS,
    RuntimeImageSpec,
    build_context,
    host_side_requirements,
    render_runtime_dockerfile,
    runtime_image_tag,
)
from tests.conftest import REPO_ROOT, require

SENSITIVE_RULE = "Sensitive file opened by untrusted program"
BUILD_TIMEOUT_S = 1500  # a cold build debootstraps a base first
STATE_DIR_IN_CONTAINER = "/state"


# ---------------------------------------------------------------- render and tags (offline)


@pytest.mark.parametrize("role", ["loader", "engine"])
def test_context_is_the_host_side_only(role: str) -> None:
    names = set(build_context(RuntimeImageSpec(role)))
    app = {name for name in names if name.startswith("app/")}
    assert {name.split("/")[1] for name in app} == {"drivercore", "runtime", "driver"}
    assert {name for name in app if name.startswith("app/driver/")} == {"app/driver/VERSION"}
    assert "app/runtime/engine/default_rules.yaml" in app  # package data travels too
    assert not any(name.endswith((".so", ".pyc")) or "__pycache__" in name for name in names)
    has_decoder_source = "fastdecode/runtime/driver/_fastdecode.c" in names
    assert has_decoder_source == (role == "engine")


def test_every_pyproject_dependency_has_its_debian_package_in_both_images() -> None:
    for role in ("loader", "engine"):
        dockerfile = render_runtime_dockerfile(RuntimeImageSpec(role))
        install_lines = [line for line in dockerfile.splitlines() if "apt-get install" in line]
        for name, minimum in host_side_requirements():
            assert DEBIAN_PACKAGE_OF[name] in install_lines[-1], (role, name)
            assert f"'{name}>={minimum}'" in dockerfile  # checked against the suite's version
        assert ("libbpf1" in install_lines[-1]) == (role == "engine")
        assert f'ENTRYPOINT {json.dumps(list(ENTRYPOINTS[role]))}' in dockerfile
        assert "driverkit" not in dockerfile.split("FROM", 1)[1].replace("80driverkit", "")


def test_bad_specs_are_refused_before_rendering() -> None:
    with pytest.raises(UsageError, match="role"):
        render_runtime_dockerfile(RuntimeImageSpec("builder"))
    with pytest.raises(UsageError, match="suite"):
        render_runtime_dockerfile(RuntimeImageSpec("loader", suite="hamm"))


def test_a_package_row_that_is_not_one_word_fails_the_render(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from driverkit import runtime_images

    monkeypatch.setattr(
        runtime_images, "DEBIAN_PACKAGE_OF", {**DEBIAN_PACKAGE_OF, "click": "python3-click; id"}
    )
    with pytest.raises(UsageError, match="not a Debian package name"):
        render_runtime_dockerfile(RuntimeImageSpec("loader"))


def test_tag_follows_the_content_of_the_host_side(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from driverkit import runtime_images

    spec = RuntimeImageSpec("loader")
    before = runtime_image_tag(spec)
    assert before == runtime_image_tag(spec)
    assert before.startswith("rtcap-loader:")
    extra = tmp_path / "new_module.py"
    extra.write_text("VALUE = 1\n")
    files = runtime_images._host_side_files()
    monkeypatch.setattr(
        runtime_images, "_host_side_files", lambda: {**files, "app/runtime/new.py": extra}
    )
    changed = runtime_image_tag(spec)
    assert changed != before
    extra.write_text("VALUE = 2\n")
    assert runtime_image_tag(spec) not in (before, changed)


def test_the_in_image_version_check_names_what_is_too_old() -> None:
    """templates/runtime_check_versions.py, run here against this Python's packages."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "runtime_check_versions", REPO_ROOT / "templates" / "runtime_check_versions.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["click>=1.0", "pyyaml"]) == 0
    assert script.main(["click>=999"]) == 1
    assert script.main(["no-such-distribution>=1"]) == 1


# ---------------------------------------------------------------- the images (docker)


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def runtime_images() -> dict[str, str]:
    """Role -> tag, through the real command (a no-op when both tags exist)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "driverkit.cli", "images", "runtime", "--base-from", "debootstrap"],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False, cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    tags = dict(line.split("\t") for line in done.stdout.splitlines())
    assert set(tags) == {"loader", "engine"}, done.stdout
    for role, tag in tags.items():
        size = _docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()
        print(f"{role} image {tag}: {int(size) / 1e6:.0f} MB")
    print(f"`driverkit images runtime`: {time.monotonic() - started:.1f} s")
    return tags


def _python_in(image: str, code: str) -> subprocess.CompletedProcess[str]:
    return _docker("run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", code)


@pytest.mark.docker
@pytest.mark.slow
def test_loader_image_runs_the_host_side_without_the_build_side(
    runtime_images: dict[str, str],
) -> None:
    loader = runtime_images["loader"]
    help_run = _docker("run", "--rm", "--network", "none", "--entrypoint", "rt-engine", loader,
                       "--help")
    assert help_run.returncode == 0, help_run.stderr
    assert "run" in help_run.stdout and "validate" in help_run.stdout
    imports = _python_in(loader, "import drivercore.repoclient, runtime.engine.cli, yaml, "
                                 "requests, prometheus_client, click, cryptography")
    assert imports.returncode == 0, imports.stderr
    for module in ("driverkit", "docker", "jinja2", "rich", "boto3", "elftools"):
        absent = _python_in(loader, f"import {module}")
        assert absent.returncode != 0 and "ModuleNotFoundError" in absent.stderr, module
    # Nothing to build or install with at run time.
    tools = _docker("run", "--rm", "--network", "none", "--entrypoint", "sh", loader, "-c",
                    "command -v gcc pip pip3 || true")
    assert tools.stdout.strip() == ""
    inspect = _docker("image", "inspect", "--format", "{{json .Config.Entrypoint}}", loader)
    assert json.loads(inspect.stdout) == ["rt-engine", "driver", "install"]


@pytest.mark.docker
@pytest.mark.slow
def test_engine_image_has_libbpf_and_the_compiled_decoder(runtime_images: dict[str, str]) -> None:
    engine = runtime_images["engine"]
    probe = _python_in(
        engine,
        "from drivercore import libbpf; libbpf.lib()\n"
        "from runtime.driver import schema\n"
        "assert schema.COMPILED_DECODER, schema.compiled_decoder_status()\n"
        f"import runtime; assert runtime.__file__.startswith({APP_DIR!r}), runtime.__file__",
    )
    assert probe.returncode == 0, probe.stderr
    inspect = _docker("image", "inspect", "--format", "{{json .Config.Entrypoint}}", engine)
    assert json.loads(inspect.stdout) == ["rt-engine", "run"]


# ---------------------------------------------------------------- the engine container, live


@pytest.fixture(scope="module")
def core_probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state directory the engine container mounts: the CO-RE probe from `make core`."""
    require(shutil.which("make") is not None and shutil.which("clang") is not None,
            "needs make and clang to build the CO-RE probe")
    out = tmp_path_factory.mktemp("state")
    build = subprocess.run(["make", "-C", str(REPO_ROOT / "driver"), "core", f"OUT={out}"],
                           check=False, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    assert (out / "rtcap_core.o").is_file()
    return out


def _host_grants_every_capability() -> bool:
    """Whether `docker run --privileged` can work here: runc hands a privileged container
    every capability the kernel knows and fails if our own bounding set lacks one."""
    last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16) == (1 << (last_cap + 1)) - 1
    return False


def _engine_privileges() -> list[str]:
    if _host_grants_every_capability():
        return ["--privileged"]
    # This CI host lacks CAP_SYS_RESOURCE, so --privileged cannot start at all. What the
    # engine uses of it instead: BPF and perf events (SYS_ADMIN covers both on docker
    # versions that do not know CAP_BPF), /proc of other users' processes (SYS_PTRACE),
    # and the bpf() syscall past docker's default seccomp profile.
    return ["--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"]


class EngineContainer:
    """`docker run` of the engine image in the foreground; stdout alerts, stderr lines."""

    def __init__(self, image: str, state_dir: Path, *engine_args: str) -> None:
        self.name = f"rtcap-engine-test-{uuid.uuid4().hex[:8]}"
        self.proc = subprocess.Popen(
            ["docker", "run", "--rm", "--name", self.name, *_engine_privileges(),
             # As Falco's chart mounts them: the host's processes, tracefs, BTF, /proc.
             "--pid", "host",
             "-v", "/sys/kernel/tracing:/sys/kernel/tracing",
             "-v", "/sys/kernel/btf:/sys/kernel/btf:ro",
             "-v", "/proc:/host/proc:ro",
             "-v", f"{state_dir}:{STATE_DIR_IN_CONTAINER}:ro",
             "-e", "PYTHONUNBUFFERED=1",
             image, *engine_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.alerts: queue.Queue[dict[str, object]] = queue.Queue()
        self.stderr: list[str] = []
        self.running = threading.Event()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.alerts.put(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            if "rt-engine: running" in line:
                self.running.set()

    def wait_running(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not self.running.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("engine container did not start:\n" + "".join(self.stderr))

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, timeout=60,
                       check=False)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


class StartEngine(Protocol):
    def __call__(self, *engine_args: str, state_dir: Path | None = None) -> EngineContainer: ...


@pytest.fixture
def engine_container(runtime_images: dict[str, str], core_probe_dir: Path
                     ) -> Iterator[StartEngine]:
    """Starts engine containers (state dir: the `make core` output unless given); every
    one is removed at the end, whatever the test did."""
    started: list[EngineContainer] = []

    def start(*engine_args: str, state_dir: Path | None = None) -> EngineContainer:
        container = EngineContainer(
            runtime_images["engine"], state_dir or core_probe_dir, *engine_args
        )
        started.append(container)
        return container

    yield start
    for container in started:
        container.remove()


def _is_cat_shadow(alert: dict[str, object]) -> bool:
    fields = alert.get("output_fields")
    return (alert.get("rule") == SENSITIVE_RULE and isinstance(fields, dict)
            and fields.get("proc.name") == "cat" and fields.get("fd.name") == "/etc/shadow")


def _wait_for_cat_shadow_alert(engine: EngineContainer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen: list[object] = []
    while time.monotonic() < deadline:
        try:
            alert = engine.alerts.get(timeout=0.5)
        except queue.Empty:
            continue
        if _is_cat_shadow(alert):
            fields = alert["output_fields"]
            assert isinstance(fields, dict)
            # A host process seen from the container: the host's view, not the container's.
            assert fields["proc.pid"] != 1 and fields["container.id"] == "host"
            return
        seen.append(alert.get("rule"))
    raise AssertionError(f"no alert for cat /etc/shadow; saw {seen[-20:]}\n"
                         + "".join(engine.stderr[-30:]))


@pytest.mark.docker
@pytest.mark.bpf
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_engine_container_loads_the_core_probe_and_alerts_on_host_cat_shadow(
    engine_container: StartEngine,
) -> None:
    duration_s = 15
    engine = engine_container(
        "--driver", "core", "--probe", f"{STATE_DIR_IN_CONTAINER}/rtcap_core.o", "--json",
        "--duration", str(duration_s),
    )
    engine.wait_running()
    cat = subprocess.run(["cat", "/etc/shadow"], capture_output=True, timeout=10, check=False)
    assert cat.returncode == 0
    _wait_for_cat_shadow_alert(engine, timeout=duration_s)
    assert engine.proc.wait(duration_s + 60) == 0, "".join(engine.stderr)
    assert any("syscall event drop monitoring" in line for line in engine.stderr)


# ---------------------------------------------------------------- the loader container


def _loader_cli_in(image: str) -> bool:
    done = _docker("run", "--rm", "--network", "none", "--entrypoint", "rt-engine", image,
                   "driver", "install", "--help", timeout=60)
    return done.returncode == 0 and "--download-only" in done.stdout


@pytest.mark.docker
@pytest.mark.bpf
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_loader_container_fetches_the_core_probe_then_the_engine_container_loads_it(
    runtime_images: dict[str, str], core_probe_dir: Path, tmp_path: Path,
    engine_container: StartEngine,
) -> None:
    """The init-container path: the loader image fetches and verifies the CO-RE probe from
    a repository on 127.0.0.1 (`--network host`) into a state dir, the engine image loads
    what the loader's hand-over file names."""
    require(_loader_cli_in(runtime_images["loader"]), "loader CLI not landed")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from drivercore.repoindex import public_key_text
    from tests.loader_helpers import repo_server, write_repo

    version = (REPO_ROOT / "driver" / "VERSION").read_text().strip()
    key = Ed25519PrivateKey.generate()
    probe_bytes = (core_probe_dir / "rtcap_core.o").read_bytes()
    write_repo(tmp_path / "repo", {"rtcap_core.o": probe_bytes}, key, version=version)
    state = tmp_path / "state"
    state.mkdir()
    with repo_server(tmp_path / "repo") as server:
        # As the DaemonSet's init container mounts the host (deploy/rtcap-daemonset.yaml).
        host_mounts = [f"{src}:/host{src}:ro" for src in ("/etc", "/proc", "/sys/kernel/btf")]
        loader = _docker(
            "run", "--rm", "--network", "host",
            *(arg for mount in host_mounts for arg in ("-v", mount)),
            "-v", f"{state}:/var/lib/rtcap",
            runtime_images["loader"],
            "--host-root", "/host", "--download-only", "--dest", "/var/lib/rtcap/driver",
            "--state-dir", "/var/lib/rtcap/cache", "--repo", server.url,
            "--public-key", public_key_text(key.public_key()), "--timeout", "10",
            timeout=300,
        )
    assert loader.returncode == 0, loader.stdout + loader.stderr
    handover = json.loads((state / "driver" / "rtcap-driver.json").read_text())
    assert handover["kind"] == "core" and handover["engine_driver"] == "core", handover
    assert (state / "driver" / handover["file"]).read_bytes() == probe_bytes
    assert handover["path"] == f"/var/lib/rtcap/driver/{handover['file']}"

    # The engine container gets the same state dir and reads the hand-over itself: it checks
    # the artifact's sha256 and loads the kind the file names.
    engine = engine_container(
        "--driver-file", f"{STATE_DIR_IN_CONTAINER}/rtcap-driver.json", "--json",
        "--duration", "20", state_dir=state / "driver",
    )
    engine.wait_running()
    assert any(line.startswith(f"loader: load: core {handover['file']} loaded")
               for line in engine.stderr), "".join(engine.stderr)
    subprocess.run(["cat", "/etc/shadow"], capture_output=True, timeout=10, check=True)
    _wait_for_cat_shadow_alert(engine, timeout=20)
