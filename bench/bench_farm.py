"""Build-farm figures: the same matrix locally at -j2 and through Docker Swarm on one node,
side by side in one run, the engine's overhead per task, and a model of the whole Debian
catalog's wall time against the number of nodes.

    python bench/bench_farm.py [--base-from debootstrap]

Measured here, in this order, all warm (headers and images cached, as a farm node's are
after its first run): one kernel alone (-j1: the per-kernel build time), the newest 6.1
kernel's three flavors at -j2 on this machine (the reference), the same three through a
Swarm job (`--max-concurrent 2`) on a node of our own (ci/swarm.py), and a job of empty
tasks in the farm image (what the engine itself costs per task). Every run publishes to
its own fresh nginx WebDAV repository. Needs dockerd, nginx and the Debian mirror.

The model: wall(nodes) = ceil(kernels / (nodes x concurrency)) x (per-kernel time +
per-task overhead), with this machine's concurrency (2 builds at once on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from ci.kernels import kernel_version, resolve  # noqa: E402
from ci.swarm import own_swarm  # noqa: E402
from driverkit import KERNELS_DIR  # noqa: E402
from driverkit.publish.keys import generate_keys  # noqa: E402
from tests.publish_helpers import driverkit  # noqa: E402
from tests.repo_servers import WebDavServer  # noqa: E402

CONCURRENCY = 2
NODES = (1, 2, 4, 8, 16, 32)


def _line(name: str, seconds: float, extra: str = "") -> None:
    print(f"{name:<58} {seconds:8.1f} s{('  ' + extra) if extra else ''}", flush=True)


def _catalog(path: Path, selectors: tuple[str, ...]) -> Path:
    entries = []
    for selector in selectors:
        release = resolve(selector)
        entries.append({"kernelrelease": release, "target": "debian",
                        "kernelversion": kernel_version(release)})
    path.write_text(json.dumps({"Debian": entries}))
    return path


def _timed(*args: str, env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    done = driverkit(*args, env=env, timeout=3600)
    if done.returncode != 0:
        sys.exit(f"driverkit {' '.join(args[:3])} failed:\n{done.stdout[-2000:]}"
                 f"{done.stderr[-2000:]}")
    return time.monotonic() - started


def _empty_tasks(host: str, image: str, tasks: int) -> float:
    """Wall time of a replicated job of `tasks` tasks that do nothing, CONCURRENCY at once:
    scheduling, container start and stop, state reporting."""
    import docker
    from docker.types import ServiceMode

    client = docker.DockerClient(base_url=host, timeout=120)
    started = time.monotonic()
    service = client.services.create(
        image, command=["/bin/true"], name=f"dk-bench-{os.getpid()}", networks=["host"],
        mode=ServiceMode("replicated-job", replicas=tasks, concurrency=CONCURRENCY))
    try:
        while sum(t["Status"]["State"] == "complete" for t in service.tasks()) < tasks:
            if time.monotonic() - started > 600:
                sys.exit("the empty-task job did not complete in 600 s")
            time.sleep(0.2)
        return time.monotonic() - started
    finally:
        service.remove()
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-from", default="debootstrap")
    parser.add_argument("--cache-dir", default=os.environ.get("DK_CACHE",
                                                              "/var/cache/driverkit-ci"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dk-bench-farm-"))
    work.chmod(0o755)
    keys = generate_keys(work / "k")
    three = _catalog(work / "three.json", ("6.1", "6.1-cloud", "6.1-rt"))
    one = _catalog(work / "one.json", ("6.1",))
    common = ("--signing-key", str(keys.private_path), "--cache-dir", args.cache_dir,
              "--base-from", args.base_from)
    server = WebDavServer(work / "dav")
    server.start()
    try:
        # Warm the headers and the builder image outside any timing.
        _timed("matrix", "run", "--catalog", str(three), "--repo", f"{server.url}/warm",
               "--output", str(work / "out-warm"), "-j", "2", *common)
        per_kernel = _timed("matrix", "run", "--catalog", str(one), "--repo",
                            f"{server.url}/one", "--output", str(work / "out-one"), "-j", "1",
                            *common)
        _line("one kernel alone, -j1 (per-kernel build time)", per_kernel)
        local = _timed("matrix", "run", "--catalog", str(three), "--repo",
                       f"{server.url}/local", "--output", str(work / "out-local"), "-j", "2",
                       *common)
        _line("3 kernels, local -j2 (reference)", local)
        with own_swarm() as swarm:
            images = _timed("images", "distribute", "--catalog", str(three), "--to",
                            swarm.manager, "--cache-dir", args.cache_dir, "--base-from",
                            args.base_from)
            _line("farm image built and loaded into the node (once)", images)
            farm = _timed("matrix", "run", "--engine", "swarm", "--catalog", str(three),
                          "--repo", f"{server.url}/swarm", "--max-concurrent",
                          str(CONCURRENCY), *common, env={"DOCKER_HOST": swarm.manager})
            _line("3 kernels, swarm job on 1 node, 2 at once", farm,
                  f"{farm / local:.2f}x the local run")
            from driverkit.config import load_config, resolve_plan
            from driverkit.farm.images import farm_image_ref  # the tag the run used

            cfg = load_config({"base_from": args.base_from})
            image = farm_image_ref(resolve_plan(resolve("6.1"), cfg, target="debian"), None)
            empty = _empty_tasks(swarm.manager, image, 4)
        per_task = empty / math.ceil(4 / CONCURRENCY)
        _line("4 empty tasks in the farm image, 2 at once", empty,
              f"{per_task:.1f} s per task (engine overhead)")
        kernels = sum(len(v) for v in json.loads((KERNELS_DIR / "debian.json").read_text())
                      .values())
        print(f"\nmodel: the Debian catalog ({kernels} kernels), {CONCURRENCY} builds per node, "
              f"{per_kernel:.1f} s per kernel + {per_task:.1f} s per task:")
        for nodes in NODES:
            waves = math.ceil(kernels / (nodes * CONCURRENCY))
            _line(f"  {nodes:>2} node{'s' if nodes != 1 else ' '}", waves * (per_kernel + per_task),
                  f"{waves} waves")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
