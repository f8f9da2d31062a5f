"""The build service end to end with real Docker, real Debian headers and real compilers.

Builder bases come from debootstrap unless DK_BASE_FROM=registry (CI has no registry).
Fault tests use the small fixture driver in tests/fixtures/build/driver to stay fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from driverkit import DRIVER_DIR
from driverkit.artifacts import RTCAP_PROBE, ProbeSpec, validate_kmod, validate_probe
from driverkit.build import BuildSummary, run_builds
from driverkit.config import load_config, resolve_plan
from driverkit.errors import ContainerEngineError, HeadersNotFoundError
from driverkit.headers import HeaderResolver
from driverkit.options import BuildConfig
from driverkit.plan import BuildPlan
from tests.build_helpers_real import bookworm_release, real_archive
from tests.conftest import FIXTURES

FIXTURE_DRIVER = FIXTURES / "build" / "driver"
FIXTURE_PROBE = ProbeSpec(programs=("dk_sys_enter",), maps=("dk_counts",))
BASE_FROM = os.environ.get("DK_BASE_FROM", "debootstrap")

# One worker runs these: builds are CPU-heavy and the machine is small.
pytestmark = [pytest.mark.network, pytest.mark.xdist_group("docker-build")]


def _plans(releases: Sequence[str], ci_cache: Path) -> list[BuildPlan]:
    archive = real_archive(ci_cache)
    cfg = load_config({"base_from": BASE_FROM})
    return [resolve_plan(r, cfg, archive.mirrors, target="debian") for r in releases]


def _opts(out: Path, ci_cache: Path, driver: Path, probe: ProbeSpec, **kw: object) -> BuildConfig:
    base = load_config(
        {
            "output": out,
            "processor": "docker",
            "jobs": 1,
            "timeout": 600,
            "base_from": BASE_FROM,
            "cache_dir": ci_cache,
        }
    )
    base = dataclasses.replace(base, driver_dir=driver, probe_spec=probe, show_progress=False)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _own_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tag this test's containers so parallel tests and benches do not count."""
    import uuid

    monkeypatch.setenv("DK_BUILD_OWNER", f"test-{uuid.uuid4().hex[:12]}")


def _slow_driver(tmp_path: Path) -> Path:
    """The fixture driver with a module build that sleeps 300 s: a build to interrupt."""
    driver = tmp_path / "slow-driver"
    shutil.copytree(FIXTURE_DRIVER, driver)
    makefile = driver / "Makefile"
    makefile.write_text(makefile.read_text().replace("kmod:\n", "kmod:\n\tsleep 300\n", 1))
    return driver


def _leftover_containers() -> list[str]:
    owner = os.environ["DK_BUILD_OWNER"]
    done = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=io.driverkit.owner={owner}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def _statuses(summary: BuildSummary) -> dict[str, str]:
    return {o.name: o.status for o in summary.outcomes}


@pytest.mark.docker
@pytest.mark.slow
def test_real_driver_for_a_bookworm_kernel_then_nothing_to_do(
    tmp_path: Path, ci_cache: Path
) -> None:
    if not (DRIVER_DIR / "Makefile").is_file():
        pytest.skip("driver/ has no Makefile yet")
    release = bookworm_release(ci_cache)
    plans = _plans([release], ci_cache)
    opts = _opts(tmp_path / "out", ci_cache, DRIVER_DIR, RTCAP_PROBE)
    first = run_builds(plans, opts)
    assert not first.failed, [o.error for o in first.failed]
    plan = plans[0]
    out_dir = tmp_path / "out" / plan.driver_version / "amd64"
    ko, probe = out_dir / plan.kmod_name, out_dir / plan.probe_name
    assert validate_kmod(ko, release, "amd64")["vermagic"].startswith(release + " ")
    validate_probe(probe, RTCAP_PROBE)
    validate_probe(out_dir / "rtcap_core.o", RTCAP_PROBE)
    manifest = json.loads((out_dir / f"{plan.artifact_stem()}.json").read_text())
    assert manifest["image_id"].startswith("sha256:")
    assert {h["url"].rsplit("/", 1)[1].split("_")[0] for h in manifest["headers"]} >= {
        f"linux-headers-{release}"
    }
    assert all(len(h["sha256"]) == 64 for h in manifest["headers"])
    assert manifest["artifacts"][plan.kmod_name]["sha256"] == _sha(ko)
    if os.geteuid() == 0:  # the host kernel's verifier saw both probes before publishing
        for probe_name in (plan.probe_name, "rtcap_core.o"):
            core_or_kernel = out_dir / (f"{plan.artifact_stem()}.json"
                                        if probe_name == plan.probe_name else "rtcap_core.json")
            verdict = json.loads(core_or_kernel.read_text())["artifacts"][probe_name]
            assert verdict["host_verifier"].startswith("passed on "), verdict
    mtimes = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}

    started = time.monotonic()
    second = run_builds(plans, opts)
    assert set(_statuses(second).values()) == {"skipped"}
    assert time.monotonic() - started < 10
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == mtimes
    assert _leftover_containers() == []


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.docker
def test_fixture_build_docker_and_local_agree(tmp_path: Path, ci_cache: Path) -> None:
    """Same file names and manifest shape from both processors (host = bookworm gcc-12)."""
    release = bookworm_release(ci_cache)
    plans = _plans([release], ci_cache)
    docker_sum = run_builds(plans, _opts(tmp_path / "d", ci_cache, FIXTURE_DRIVER, FIXTURE_PROBE))
    local_sum = run_builds(
        plans, _opts(tmp_path / "l", ci_cache, FIXTURE_DRIVER, FIXTURE_PROBE, processor="local")
    )
    assert not docker_sum.failed and not local_sum.failed, [
        o.error for o in docker_sum.failed + local_sum.failed
    ]
    d_files = sorted(p.name for p in (tmp_path / "d").rglob("*") if p.is_file())
    l_files = sorted(p.name for p in (tmp_path / "l").rglob("*") if p.is_file())
    assert d_files == l_files
    stem = plans[0].artifact_stem()
    d_manifest = json.loads(next((tmp_path / "d").rglob(f"{stem}.json")).read_text())
    l_manifest = json.loads(next((tmp_path / "l").rglob(f"{stem}.json")).read_text())
    assert d_manifest.keys() == l_manifest.keys()
    assert d_manifest["headers"] == l_manifest["headers"]
    assert d_manifest["processor"] == "docker" and l_manifest["processor"] == "local"
    for manifest in (d_manifest, l_manifest):
        ko_meta = manifest["artifacts"][plans[0].kmod_name]
        assert ko_meta["vermagic"].startswith(release + " ")


@pytest.mark.docker
def test_builds_run_without_network(ci_cache: Path) -> None:
    from driverkit.containers import docker_engine
    from driverkit.images import ensure_plan_image
    from driverkit.mirrors import host_mirrors

    plan = _plans([bookworm_release(ci_cache)], ci_cache)[0]
    with docker_engine() as engine:
        image = ensure_plan_image(engine, plan, host_mirrors(), ci_cache)
        with engine.container(image, ["sh", "-c", "ls /sys/class/net"], network=False) as box:
            result = box.run(60)
    assert result.exit_code == 0
    assert result.logs.split() == ["lo"]


def _broken_driver(tmp_path: Path) -> Path:
    driver = tmp_path / "broken-driver"
    shutil.copytree(FIXTURE_DRIVER, driver)
    source = driver / "kmod" / "dkfixture.c"
    source.write_text(source.read_text().replace("return 0;", "return undeclared_symbol;"))
    return driver


@pytest.mark.docker
def test_compiler_error_fails_with_the_compiler_lines(tmp_path: Path, ci_cache: Path) -> None:
    plans = _plans([bookworm_release(ci_cache)], ci_cache)
    opts = _opts(
        tmp_path / "out", ci_cache, _broken_driver(tmp_path), FIXTURE_PROBE, build_core=False
    )
    summary = run_builds(plans, opts)
    assert [o.status for o in summary.outcomes] == ["failed"]
    error = summary.failed[0].error
    assert "dkfixture.c" in error and "error:" in error and "undeclared_symbol" in error
    assert not any(p.suffix in (".ko", ".o") for p in (tmp_path / "out").rglob("*"))
    assert _leftover_containers() == []


@pytest.mark.docker
def test_timeout_kills_and_removes_the_container(tmp_path: Path, ci_cache: Path) -> None:
    driver = _slow_driver(tmp_path)
    plans = _plans([bookworm_release(ci_cache)], ci_cache)
    opts = _opts(tmp_path / "out", ci_cache, driver, FIXTURE_PROBE, timeout=8, build_core=False)
    started = time.monotonic()
    summary = run_builds(plans, opts)
    assert time.monotonic() - started < 120
    assert [o.status for o in summary.outcomes] == ["failed"]
    assert "timeout" in summary.failed[0].error
    assert _leftover_containers() == []
    leftovers = [
        p for p in (tmp_path / "out").rglob("*") if p.is_file() or p.name.startswith(".build-")
    ]
    assert leftovers == []


@pytest.mark.docker
def test_interrupt_path_removes_live_containers(ci_cache: Path) -> None:
    """What Ctrl-C does in run_builds: the main thread removes containers workers wait on."""
    from driverkit.containers import docker_engine
    from driverkit.images import ensure_plan_image
    from driverkit.mirrors import host_mirrors

    plan = _plans([bookworm_release(ci_cache)], ci_cache)[0]
    errors: list[BaseException] = []
    with docker_engine() as engine:
        image = ensure_plan_image(engine, plan, host_mirrors(), ci_cache)

        def worker() -> None:
            try:
                with engine.container(image, ["sleep", "300"]) as box:
                    box.run(300)
            except BaseException as exc:  # the removal surfaces as an engine error
                errors.append(exc)

        thread = threading.Thread(target=worker)
        thread.start()
        deadline = time.monotonic() + 30
        while not _leftover_containers() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _leftover_containers(), "container never started"
        assert engine.remove_all_live() == 1
        thread.join(60)
    assert not thread.is_alive()
    assert _leftover_containers() == []


def test_missing_headers_name_what_was_tried(ci_cache: Path) -> None:
    archive = real_archive(ci_cache)
    plan = _plans(["6.1.0-999-amd64"], ci_cache)[0]
    with pytest.raises(HeadersNotFoundError) as info:
        HeaderResolver(archive.cache, archive).resolve(plan)
    message = str(info.value)
    assert "linux-headers-6.1.0-999-amd64" in message
    assert "bookworm-security" in message
    assert plan.headers[0] in message


def test_missing_headers_for_url_targets_lists_each_url(tmp_path: Path) -> None:
    from driverkit.cache import DownloadCache
    from tests.build_helpers import serve_dir

    (tmp_path / "www").mkdir()
    cfg = load_config({})
    with serve_dir(tmp_path / "www") as (base, _):
        urls = (f"{base}/a/linux-5.15.1.tar.xz", f"{base}/b/linux-headers.deb")
        from driverkit.targets.base import Mirrors

        plan = resolve_plan("5.15.1", cfg, Mirrors(), target="vanilla", kernel_urls=urls)
        with pytest.raises(HeadersNotFoundError) as info:
            HeaderResolver(DownloadCache(tmp_path / "cache")).resolve(plan)
    assert all(u in str(info.value) for u in urls)


def test_docker_daemon_down_is_one_line_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from driverkit.containers import docker_engine

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ContainerEngineError) as info, docker_engine():
        pass
    message = str(info.value)
    assert "\n" not in message
    assert "dockerd" in message and "--processor local" in message


_INTERRUPTED_RUN = """
import sys
from pathlib import Path
from driverkit.artifacts import ProbeSpec
import dataclasses
from driverkit.build import run_builds
from driverkit.config import load_config, resolve_plan

release, out, cache, driver, base_from = sys.argv[1:6]
cfg = load_config({"base_from": base_from, "output": out, "cache_dir": cache, "timeout": 600})
cfg = dataclasses.replace(cfg, driver_dir=Path(driver), probe_spec=ProbeSpec(),
                          build_core=False, show_progress=False)
plan = resolve_plan(release, cfg, target="debian")
run_builds([plan], cfg)
"""


@pytest.mark.docker
def test_ctrl_c_removes_containers_and_leaves_no_artifacts(tmp_path: Path, ci_cache: Path) -> None:
    import signal
    import sys

    driver = _slow_driver(tmp_path)
    release = bookworm_release(ci_cache)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _INTERRUPTED_RUN,
            release,
            str(out),
            str(ci_cache),
            str(driver),
            BASE_FROM,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not _leftover_containers() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0].decode()
            time.sleep(0.3)
        assert _leftover_containers(), "the build container never appeared"
        time.sleep(2)  # let the probe step finish so only the sleeping kmod step runs
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert b"KeyboardInterrupt" in output
    assert _leftover_containers() == []
    assert [p for p in out.rglob("*") if p.is_file() or p.name.startswith(".build-")] == []


@pytest.mark.docker
def test_prune_removes_only_stale_builders(ci_cache: Path) -> None:
    from driverkit.containers import docker_engine
    from driverkit.images import ensure_plan_image, list_images, prune_images
    from driverkit.mirrors import host_mirrors

    plan = _plans([bookworm_release(ci_cache)], ci_cache)[0]
    stale = "driverkit-builder-bookworm-gcc12:000000000000"
    with docker_engine() as engine:
        current = ensure_plan_image(engine, plan, host_mirrors(), ci_cache)
        subprocess.run(["docker", "tag", current, stale], check=True)
        listed = [line.split("\t")[0] for line in list_images(engine)]
        assert current in listed and stale in listed
        removed = prune_images(engine)
        assert stale in removed and current not in removed
        assert engine.image_exists(current) and not engine.image_exists(stale)
