"""The build farm on Docker Swarm: `driverkit matrix run --engine swarm`, for real.

Real: dockerds of the test's own (ci/swarm.py: own data-root, exec-root, socket, pidfile,
bridge and address pool, so the CI's daemon and its docker0 are untouched) made a Swarm
of a manager and a worker; the farm image built from the real bookworm builder on the
CI's daemon and loaded into both nodes by `driverkit images distribute`; Swarm
replicated jobs with their restart policy; the newest Debian 6.1 kernels' real headers
(generic, cloud, rt) from the mirror, through the node's header cache; our driver
compiled by bookworm's gcc-12 inside the tasks; the signed repository on nginx WebDAV
that the tasks publish to concurrently.

Stood in: the kernel with broken headers is a catalog entry (6.1.0-99-amd64) whose header
list names sid's real packages, as a crawler mix-up would: those headers call gcc-16,
which the bookworm builder lacks, so it fails the same way on every attempt.

Two nodes, both on this host: the manager's dockerd on 127.0.0.1 and a worker's joined
from 127.0.0.2, each with its own daemon, images and address pool; tasks use the host
network, so both nodes' header caches are the same directory here (on a real cluster,
each node's own disk at the same path).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci.swarm import Swarm, host_routes_intact, own_swarm
from driverkit.publish.keys import generate_keys
from tests.publish_helpers import driverkit
from tests.repo_servers import WebDavServer

pytestmark = [
    pytest.mark.docker,
    pytest.mark.root,
    pytest.mark.network,
    pytest.mark.xdist_group("swarm"),
]

RUN_TIMEOUT_S = 1500


@pytest.fixture(scope="module")
def swarm() -> Iterator[Swarm]:
    with own_swarm(workers=1) as cluster:
        yield cluster
    # The node's networks never shadowed the CI daemon's bridge.
    assert host_routes_intact() == []


def _kernels(ci_cache: Path) -> tuple[list[dict[str, str]], dict[str, object]]:
    """The newest 6.1's three flavors, and the broken entry (sid's headers)."""
    from ci.kernels import kernel_version, resolve
    from tests.build_helpers_real import real_archive

    entries = []
    for selector in ("6.1", "6.1-cloud", "6.1-rt"):
        release = resolve(selector)
        entries.append({"kernelrelease": release, "target": "debian",
                        "kernelversion": kernel_version(release)})
    sid = real_archive(ci_cache).find_headers(resolve("7"))
    broken: dict[str, object] = {"kernelrelease": "6.1.0-99-amd64", "target": "debian",
              "kernelversion": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.999-1",
              "headers": [p.url for p in sid.packages]}
    return entries, broken


@pytest.fixture(scope="module")
def farm_images(swarm: Swarm, ci_cache: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Path:
    """The catalog's farm image built on the CI's daemon and loaded into the node."""
    entries, _ = _kernels(ci_cache)
    catalog = tmp_path_factory.mktemp("farm") / "catalog.json"
    catalog.write_text(json.dumps({"Debian": entries}))
    nodes = [arg for host in swarm.hosts for arg in ("--to", host)]
    done = driverkit("images", "distribute", "--catalog", str(catalog), *nodes,
                     "--base-from", os.environ.get("DK_BASE_FROM", "debootstrap"),
                     "--cache-dir", str(ci_cache), timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "loaded" in done.stdout or "present" in done.stdout, done.stdout
    again = driverkit("images", "distribute", "--catalog", str(catalog), *nodes,
                      "--base-from", os.environ.get("DK_BASE_FROM", "debootstrap"),
                      "--cache-dir", str(ci_cache))
    assert again.returncode == 0 and "present" in again.stdout, again.stdout + again.stderr
    return catalog


def _run(swarm: Swarm, catalog: Path, repo: str, key: Path, ci_cache: Path,
         *extra: str) -> subprocess.CompletedProcess[str]:
    return driverkit(
        "matrix", "run", "--engine", "swarm", "--catalog", str(catalog), "--repo", repo,
        "--signing-key", str(key), "--cache-dir", str(ci_cache),
        "--base-from", os.environ.get("DK_BASE_FROM", "debootstrap"), *extra,
        env={"DOCKER_HOST": swarm.manager}, timeout=RUN_TIMEOUT_S)


def _folder_check(data: Path) -> dict[str, dict[str, object]]:
    """The published folder: every file it holds is listed with its sha256, or is the
    index and its signature; returns the listed entries."""
    (folder,) = data.glob("*/x86_64")
    index = json.loads((folder / "index.json").read_text())["artifacts"]
    on_disk = {p.name for p in folder.iterdir()}
    assert on_disk - set(index) <= {"index.json", "index.json.sig"}, sorted(on_disk)
    for name, entry in index.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"], name
    return dict(index)


def _no_farm_objects_left(swarm: Swarm) -> None:
    import docker

    client = docker.DockerClient(base_url=swarm.manager, timeout=60)
    try:
        label = {"label": "io.driverkit.farm.run"}
        assert client.services.list(filters=label) == []
        assert client.configs.list(filters=label) == []
        assert client.secrets.list(filters=label) == []
    finally:
        client.close()


def test_swarm_builds_what_is_missing_and_names_the_broken_kernel_once(
    swarm: Swarm, farm_images: Path, webdav_server: WebDavServer, ci_cache: Path,
    tmp_path: Path,
) -> None:
    entries, broken = _kernels(ci_cache)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"Debian": [*entries, broken]}))
    keys = generate_keys(tmp_path / "k")
    repo = f"{webdav_server.url}/farm-{tmp_path.name}"
    first = _run(swarm, catalog, repo, keys.private_path, ci_cache,
                 "--retries", "1", "--max-concurrent", "2")
    out = first.stdout + first.stderr
    print(out)
    assert first.returncode == 1, out
    assert "4 shards in 1 swarm job " in first.stdout, out
    assert "built and published 3 of 4 missing kernels" in first.stdout, out
    assert "] 3 complete, 1 failed of 4 shards (1 retried)" in first.stdout, out  # progress
    failed = [line for line in first.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and "6.1.999-1" in failed[0], out
    assert "gcc-16: not found" in first.stderr, out  # the compiler error line itself
    # From the engine: the broken shard used its one retry; the others completed.
    states = [line for line in first.stdout.splitlines() if line.startswith("shard ")
              and " after " in line]
    assert sum("failed after 2 attempts" in s for s in states) == 1, states
    assert sum("complete after 1 attempt" in s for s in states) == 3, states
    # Two nodes, two tasks at once: the scheduler spreads them over both.
    assert len({s.rsplit("on node ", 1)[-1].split()[0] for s in states}) == 2, states
    _no_farm_objects_left(swarm)
    index = _folder_check(webdav_server.data / f"farm-{tmp_path.name}")
    # falcoctl's Debian naming: the package version and the flavor of each kernel.
    flavors = {str(v["kernelrelease"]).split("-", 2)[-1] for v in index.values()
               if v["kernelrelease"]}
    assert flavors == {"amd64", "cloud-amd64", "rt-amd64"}, index
    assert len(index) == 2 * len(entries) + 1  # module + probe per kernel, one CO-RE probe
    # Without the broken kernel, a rerun finds nothing to do and starts no job.
    catalog.write_text(json.dumps({"Debian": entries}))
    again = _run(swarm, catalog, repo, keys.private_path, ci_cache)
    assert again.returncode == 0 and "nothing to build" in again.stdout, again.stderr


def test_a_task_killed_mid_build_is_retried_and_leaves_nothing_partial(
    swarm: Swarm, farm_images: Path, webdav_server: WebDavServer, ci_cache: Path,
    tmp_path: Path,
) -> None:
    import docker

    entries, _ = _kernels(ci_cache)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"Debian": entries[:1]}))
    keys = generate_keys(tmp_path / "k")
    repo = f"{webdav_server.url}/kill-{tmp_path.name}"
    killed: list[str] = []
    clients = [docker.DockerClient(base_url=host, timeout=60) for host in swarm.hosts]

    def kill_first_task() -> None:
        """Kill the first task's container once a compiler runs in it: mid-build."""
        label = {"label": "io.driverkit.farm.run", "status": "running"}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not killed:
            running = [c for client in clients for c in client.containers.list(filters=label)]
            for container in running:
                try:
                    commands = [p[-1] for p in container.top().get("Processes") or []]
                    if any(" make " in f" {c} " or "clang" in c or "cc1" in c
                           for c in commands):
                        container.kill()
                        killed.append(container.id)
                        return
                except docker.errors.APIError:
                    continue  # it stopped between the listing and the look
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_task)
    killer.start()
    try:
        done = _run(swarm, catalog, repo, keys.private_path, ci_cache, "--retries", "2")
    finally:
        killer.join(700)
        for client in clients:
            client.close()
    out = done.stdout + done.stderr
    assert killed, "no running task was seen to kill: " + out
    assert done.returncode == 0, out
    assert "shard 0: complete after 2 attempts" in done.stdout, out
    index = _folder_check(webdav_server.data / f"kill-{tmp_path.name}")
    assert len(index) == 3, sorted(index)  # module, probe and the folder's CO-RE probe
    _no_farm_objects_left(swarm)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry (distribution 2.8) on 127.0.0.1: host:port."""
    from tests.conftest import require
    from tests.repo_servers import free_ports

    binary = shutil.which("docker-registry")
    require(binary is not None, "needs Debian's docker-registry (see ci/setup.sh)")
    assert binary is not None
    root = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_ports(1)[0]}"
    (root / "config.yml").write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: {address}\n"
    )
    with (root / "log").open("wb") as log:
        proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        import requests

        def up() -> bool:
            try:
                return requests.get(f"http://{address}/v2/", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        deadline = time.monotonic() + 30
        while not up():
            assert proc.poll() is None and time.monotonic() < deadline, (
                (root / "log").read_text()[-2000:])
            time.sleep(0.2)
        yield address
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.usefixtures("farm_images")
def test_with_a_registry_the_nodes_pull_the_farm_image(
    swarm: Swarm, registry: str, webdav_server: WebDavServer, ci_cache: Path, tmp_path: Path,
) -> None:
    """`images distribute --registry` pushes; `matrix run --registry` names the pushed image,
    which the node that runs the task pulls (it had only the loaded, unqualified tag)."""
    import docker

    entries, _ = _kernels(ci_cache)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"Debian": entries[:1]}))
    pushed = driverkit("images", "distribute", "--catalog", str(catalog), "--registry", registry,
                       "--base-from", os.environ.get("DK_BASE_FROM", "debootstrap"),
                       "--cache-dir", str(ci_cache), timeout=1800)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    (name,) = [line.split()[1] for line in pushed.stdout.splitlines()
               if line.startswith("pushed ")]
    assert name.startswith(f"{registry}/driverkit-farm-"), pushed.stdout
    keys = generate_keys(tmp_path / "k")
    done = _run(swarm, catalog, f"{webdav_server.url}/reg-{tmp_path.name}", keys.private_path,
                ci_cache, "--no-probe", "--registry", registry)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f", {name}): " in done.stdout, done.stdout  # the shard names the registry's image
    pulled = []
    for host in swarm.hosts:
        client = docker.DockerClient(base_url=host, timeout=60)
        try:
            pulled += [tag for image in client.images.list() for tag in image.tags
                       if tag == name]
        finally:
            client.close()
    assert pulled, f"no node holds {name}"
    index = _folder_check(webdav_server.data / f"reg-{tmp_path.name}")
    assert len(index) == 1
