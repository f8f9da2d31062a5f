"""The cluster engine behind one small interface, and Docker Swarm implementing it.

`FarmEngine.submit` hands the plan to the engine and yields a `FarmRun`; whatever happens
in the block (error, timeout, Ctrl-C), leaving it removes every object the run created
(services, config, secret), so a failed run leaves no job behind that keeps building.

On Swarm, each image group is one service in `replicated-job` mode: `replicas` shards,
`max-concurrent` of them at once, restarted on failure at most `retries` times. The plan
is a Swarm config and the signing key a Swarm secret, so they reach a task on any node;
the node's header cache is a bind mount of the same path; tasks use the host's network
(Swarm refuses `none`, and the repository and mirrors are the node's to reach).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from driverkit.errors import ContainerEngineError, ToolError
from driverkit.farm.plan import FarmPlan, ImageGroup
from driverkit.farm.task import FAILURE_MARK, KEY_PATH, PLAN_PATH

RUN_LABEL: Final = "io.driverkit.farm.run"
# Task states after which Swarm never runs that task again (a restart is a new task).
TERMINAL: Final = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned"})
FAILED: Final = frozenset({"failed", "rejected", "orphaned"})
POLL_S: Final = 1.0
# Swarm's restart delay between attempts: short, a build failure is not a flaky network.
RESTART_DELAY_NS: Final = 1_000_000_000
MAX_LOG_BYTES: Final = 8 * 1024 * 1024


@dataclass(frozen=True)
class RunSpec:
    cache_dir: Path  # the header cache, at this path on every node
    signing_key: bytes  # PEM
    max_concurrent: int
    retries: int
    deadline_s: float  # the whole run's bound


@dataclass(frozen=True)
class ShardState:
    shard: int
    state: str  # complete | failed | rejected | ... (the last attempt's)
    attempts: int  # tasks Swarm started for this shard
    exit_code: int | None
    message: str  # the engine's error text of the last failed attempt
    node: str = ""  # the node the last attempt ran on


@dataclass(frozen=True)
class Failure:
    shard: int
    kernel: str
    errors: tuple[str, ...]


Progress = Callable[[Sequence["ShardState"]], None]


class FarmRun(Protocol):
    def wait(self, progress: Progress | None = None) -> list[ShardState]: ...

    def failures(self) -> list[Failure]: ...


class FarmEngine(Protocol):
    def submit(self, plan: FarmPlan, spec: RunSpec
               ) -> contextlib.AbstractContextManager[FarmRun]: ...


def run_id(plan_bytes: bytes) -> str:
    """Names of one run's objects: the plan's hash and the time, so two runs of one plan
    never share a service name."""
    stamp = f"{time.time_ns()}".encode()
    return hashlib.sha256(plan_bytes + stamp).hexdigest()[:10]


class SwarmRun:
    def __init__(self, client: Any, services: Sequence[tuple[ImageGroup, Any]],
                 spec: RunSpec):
        self._client = client
        self._services = services
        self._spec = spec

    def _states(self) -> tuple[list[ShardState], bool]:
        states: list[ShardState] = []
        done = True
        for group, service in self._services:
            by_slot: dict[int, list[dict[str, Any]]] = {}
            for task in service.tasks():
                by_slot.setdefault(int(task.get("Slot") or 0), []).append(task)
            for slot in range(group.count):
                tasks = sorted(by_slot.get(slot, []), key=lambda t: str(t.get("CreatedAt")))
                last = tasks[-1] if tasks else {}
                status = last.get("Status", {})
                state = str(status.get("State", "pending"))
                failures = sum(1 for t in tasks if t.get("Status", {}).get("State") in FAILED)
                finished = state == "complete" or (
                    state in TERMINAL and failures > self._spec.retries
                )
                done = done and finished
                container = status.get("ContainerStatus", {})
                code = container.get("ExitCode") if container else None
                states.append(ShardState(
                    group.offset + slot, state, len(tasks),
                    int(code) if isinstance(code, int) else None,
                    str(status.get("Err", "")),
                    str(last.get("NodeID", "")),
                ))
        return states, done

    def wait(self, progress: Progress | None = None) -> list[ShardState]:
        """Poll until every shard completed or used up its attempts; ToolError past the
        deadline (the services are removed on leaving `submit` either way). `progress`
        hears the states whenever one of them changed."""
        deadline = time.monotonic() + self._spec.deadline_s
        seen: list[tuple[str, int]] = []
        while True:
            states, done = self._states()
            now = [(s.state, s.attempts) for s in states]
            if progress is not None and now != seen:
                progress(states)
                seen = now
            if done:
                return states
            if time.monotonic() > deadline:
                running = [s.shard for s in states if s.state not in TERMINAL]
                raise ToolError(
                    f"the farm run passed its {self._spec.deadline_s:.0f} s deadline with "
                    f"shards {running} unfinished; its services were removed"
                )
            time.sleep(POLL_S)

    def logs(self) -> str:
        chunks: list[bytes] = []
        size = 0
        for _, service in self._services:
            for chunk in service.logs(stdout=True, stderr=True):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_LOG_BYTES:
                    break
        return b"".join(chunks).decode(errors="replace")

    def failures(self) -> list[Failure]:
        """Each failing kernel once, with the error lines of its last attempt."""
        import json

        found: dict[tuple[int, str], Failure] = {}
        for line in self.logs().splitlines():
            _, mark, rest = line.partition(FAILURE_MARK)
            if not mark:
                continue
            try:
                doc = json.loads(rest)
                failure = Failure(int(doc["shard"]), str(doc["kernel"]),
                                  tuple(str(e) for e in doc["errors"]))
            except (ValueError, KeyError, TypeError):
                continue
            found[(failure.shard, failure.kernel)] = failure
        return sorted(found.values(), key=lambda f: (f.shard, f.kernel))


class SwarmEngine:
    """FarmEngine over a Swarm manager's daemon (the docker SDK's DOCKER_HOST)."""

    def __init__(self, client: Any):
        self._client = client

    @classmethod
    @contextlib.contextmanager
    def connect(cls) -> Iterator[SwarmEngine]:
        import docker

        try:
            client = docker.from_env(timeout=120)
            info = client.info()
        except Exception as exc:
            raise ContainerEngineError(
                f"Docker daemon not reachable ({exc.__class__.__name__}): point DOCKER_HOST "
                "at a Swarm manager"
            ) from None
        swarm = info.get("Swarm") or {}
        if not swarm.get("ControlAvailable"):
            client.close()
            raise ContainerEngineError(
                "DOCKER_HOST's daemon is not a Swarm manager (`docker swarm init`, or point "
                "DOCKER_HOST at a manager)"
            )
        try:
            yield cls(client)
        finally:
            client.close()

    def require_images(self, images: Sequence[str]) -> None:
        """Without a registry, every node needs the images loaded; the manager is the one
        this can check before submitting (a worker without them rejects its tasks, which
        the report shows with the engine's message)."""
        import docker.errors

        missing = []
        for image in images:
            try:
                self._client.images.get(image)
            except docker.errors.ImageNotFound:
                missing.append(image)
        if missing:
            raise ContainerEngineError(
                f"the Swarm manager lacks {', '.join(missing)}: run `driverkit images "
                "distribute --to <each node's DOCKER_HOST>` with this run's options, or pass "
                "--registry"
            )

    @contextlib.contextmanager
    def submit(self, plan: FarmPlan, spec: RunSpec) -> Iterator[SwarmRun]:
        from docker.types import (
            ConfigReference,
            Mount,
            RestartPolicy,
            SecretReference,
            ServiceMode,
        )

        data = plan.to_bytes()
        rid = run_id(data)
        labels = {RUN_LABEL: rid}
        created: list[Any] = []
        services: list[tuple[ImageGroup, Any]] = []
        try:
            config = self._client.configs.create(
                name=f"driverkit-farm-{rid}-plan", data=data, labels=labels)
            created.append(config)
            secret = self._client.secrets.create(
                name=f"driverkit-farm-{rid}-key", data=spec.signing_key, labels=labels)
            created.append(secret)
            cache = str(spec.cache_dir)
            for n, group in enumerate(plan.groups()):
                service = self._client.services.create(
                    group.image,
                    command=["/usr/local/bin/driverkit-farm", "matrix", "task",
                             "--plan", str(PLAN_PATH), "--signing-key", str(KEY_PATH),
                             "--cache-dir", cache],
                    name=f"driverkit-farm-{rid}-{n}",
                    labels=labels,
                    container_labels=labels,
                    env=[f"DK_SHARD_OFFSET={group.offset}", "DK_TASK_SLOT={{.Task.Slot}}",
                         "DK_NODE_ID={{.Node.ID}}"],
                    mode=ServiceMode("replicated-job", replicas=group.count,
                                     concurrency=min(spec.max_concurrent, group.count)),
                    restart_policy=RestartPolicy("on-failure", delay=RESTART_DELAY_NS,
                                                 max_attempts=spec.retries),
                    networks=["host"],
                    mounts=[Mount(cache, cache, type="bind")],
                    configs=[ConfigReference(config.id, config.name,
                                             filename=str(PLAN_PATH), mode=0o444)],
                    secrets=[SecretReference(secret.id, secret.name,
                                             filename=str(KEY_PATH), mode=0o400)],
                )
                created.append(service)
                services.append((group, service))
            yield SwarmRun(self._client, services, spec)
        finally:
            # Services first: a config or secret in use cannot be removed.
            for obj in reversed(created):
                with contextlib.suppress(Exception):
                    obj.remove()
