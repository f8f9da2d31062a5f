"""A Docker Swarm on dockerds of our own, for the farm's tests and bench.

Each daemon has its own data-root, exec-root, socket, pidfile and bridge, and takes its
networks from address pools of its own: Swarm's docker_gwbridge otherwise takes docker0's
172.17.0.0/16 and its route cuts the host daemon's containers off the network (seen
here). So the CI's daemon, its docker0 and its containers are untouched.

    with own_swarm(workers=1) as swarm:   # swarm.manager, swarm.workers: DOCKER_HOSTs
        ...
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Bridges of daemon n (docker_gwbridge) come from 10.(213+n).0.0/16; overlays from here.
OVERLAY_POOL = "10.212.0.0/16"
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Swarm:
    manager: str  # DOCKER_HOST of the manager
    workers: tuple[str, ...]  # DOCKER_HOST of each worker

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.manager, *self.workers)


def _free_port(address: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _client(host: str, timeout: int = 120) -> Any:
    import docker

    return docker.DockerClient(base_url=host, timeout=timeout)


@contextlib.contextmanager
def _daemon(number: int) -> Iterator[str]:
    """A dockerd of our own; yields its DOCKER_HOST. Daemon n takes the n-th /24s of the
    pool, so two of them never hand out one subnet."""
    # Short path: the daemon's sockets live below it (a unix socket path has 108 bytes).
    root = Path(tempfile.mkdtemp(prefix=f"dkswarm{number}-", dir="/var/tmp"))
    bridge = f"dkf{os.getpid() % 100000}n{number}"
    subprocess.run(["ip", "link", "add", "name", bridge, "type", "bridge"], check=True)
    host = f"unix://{root}/docker.sock"
    log_path = root / "dockerd.log"
    pool = f"base=10.{213 + number}.0.0/16,size=24"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "-H", host, "--pidfile", str(root / "docker.pid"), f"--bridge={bridge}",
             "--iptables=false", "--ip-masq=false", "--default-address-pool", pool],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                _client(host, 5).ping()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dockerd did not start; see {log_path}") from None
                time.sleep(0.3)
        yield host
    finally:
        client = _client(host, 60)
        with contextlib.suppress(Exception):
            client.swarm.leave(force=True)
        with contextlib.suppress(Exception):
            client.networks.get("docker_gwbridge").remove()
        client.close()
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        subprocess.run(["ip", "link", "del", bridge], check=False, stderr=subprocess.DEVNULL)
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)


def _unmount_below(root: Path) -> None:
    # The daemon's network namespaces stay bind-mounted under its exec-root.
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{root}/")]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def own_swarm(workers: int = 0) -> Iterator[Swarm]:
    """A manager on 127.0.0.1 and `workers` nodes joined from 127.0.0.2, 127.0.0.3, ...:
    every daemon on this host, tasks on the host network (Swarm refuses `none`)."""
    with contextlib.ExitStack() as stack:
        manager = stack.enter_context(_daemon(0))
        client = _client(manager)
        stack.callback(client.close)
        client.swarm.init(advertise_addr="127.0.0.1",
                          listen_addr=f"127.0.0.1:{_free_port('127.0.0.1')}",
                          default_addr_pool=[OVERLAY_POOL], subnet_size=24)
        token = client.swarm.attrs["JoinTokens"]["Worker"]
        remote = client.info()["Swarm"]["RemoteManagers"][0]["Addr"]
        joined = []
        for n in range(1, workers + 1):
            host = stack.enter_context(_daemon(n))
            address = f"127.0.0.{n + 1}"
            worker = _client(host)
            worker.swarm.join(remote_addrs=[remote], join_token=token,
                              listen_addr=f"{address}:{_free_port(address)}",
                              advertise_addr=address)
            worker.close()
            joined.append(host)
        deadline = time.monotonic() + START_TIMEOUT_S
        while sum(n.attrs["Status"]["State"] == "ready" for n in client.nodes.list()) \
                < workers + 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the Swarm's workers did not become ready")
            time.sleep(0.3)
        yield Swarm(manager, tuple(joined))


def host_routes_intact() -> list[str]:
    """Routes of docker0's subnet through any other device (empty when intact)."""
    out = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False)
    docker0 = [line.split()[0] for line in out.stdout.splitlines() if " dev docker0 " in line]
    return [line for line in out.stdout.splitlines()
            if line.split()[0] in docker0 and " dev docker0 " not in line]
