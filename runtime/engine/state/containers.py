"""Which container a process runs in, read from its cgroup path.

Container runtimes name a container's cgroup after its 64-hex-digit id; the id, and which
runtime made it, is all Falco's `container.*` fields know without asking the runtime's
API. Two inputs lead here: the text of /proc/<pid>/cgroup (seeding, execve's `cgroups`
param) and, live, the cgroup v2 id an event carries (`CgroupPaths` maps it to a path).
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from drivercore.errors import ToolError
from runtime.engine.state.docker_api import DOCKER_SOCKET, ContainerMeta, inspect_container

# Falco's id for events outside any container.
HOST_CONTAINER_ID = "host"

_CONTAINER_ID_RE = re.compile(r"^[0-9a-f]{64}$")
# Prefixes runtimes give the cgroup leaf of a container (systemd scopes and plain dirs).
_RUNTIME_PREFIXES: tuple[tuple[str, str], ...] = (
    ("cri-containerd-", "containerd"),
    ("containerd-", "containerd"),
    ("nerdctl-", "containerd"),
    ("crio-", "cri-o"),
    ("docker-", "docker"),
    ("libpod-", "podman"),
)
# A parent directory that names the runtime of a bare-id cgroup leaf (cgroup v1 layouts).
_RUNTIME_PARENTS = {"docker": "docker", "libpod_parent": "podman", "crio": "cri-o"}


@dataclass(frozen=True, slots=True)
class ContainerRef:
    id: str  # Falco's short id: the first 12 hex digits
    full_id: str
    runtime: str  # docker, containerd, cri-o, podman


def container_from_cgroup_path(path: str) -> ContainerRef | None:
    """Container of one cgroup path, or None for a host cgroup.

    Handles cgroup v1 (`/docker/<id>`, `/kubepods/burstable/pod<uid>/<id>`,
    `/libpod_parent/libpod-<id>`) and v2 / systemd layouts (`docker-<id>.scope`,
    `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`); podman's
    `libpod-conmon-<id>.scope` is the monitor process, not the container.
    """
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts) - 1, -1, -1):
        leaf = parts[depth]
        if leaf.endswith(".scope"):
            leaf = leaf[: -len(".scope")]
        if leaf.startswith("libpod-conmon-"):
            return None
        runtime = ""
        for prefix, name in _RUNTIME_PREFIXES:
            if leaf.startswith(prefix):
                leaf = leaf[len(prefix):]
                runtime = name
                break
        if not _CONTAINER_ID_RE.match(leaf):
            continue
        if not runtime:
            parent = parts[depth - 1] if depth else ""
            if parent in _RUNTIME_PARENTS:
                runtime = _RUNTIME_PARENTS[parent]
            elif any(p.startswith("kubepods") for p in parts[:depth]):
                runtime = "containerd"
            else:
                runtime = "containerd" if depth else "docker"
        return ContainerRef(id=leaf[:12], full_id=leaf, runtime=runtime)
    return None


def container_from_proc_cgroup(text: str) -> ContainerRef | None:
    """Container from the text of /proc/<pid>/cgroup (v1 `N:ctrl:/path` or v2 `0::/path`)."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        ref = container_from_cgroup_path(path)
        if ref is not None:
            return ref
    return None


class CgroupPaths:
    """cgroup v2 id -> path below the mount, for the live case where a process changes
    cgroup after it was seen (`docker exec`: runc's child joins the container's cgroup
    between clone and execve), so only the event's cgroup id tells its container.

    A cgroup id is its directory's inode in the v2 hierarchy: `root` itself, or, on a
    hybrid host (v1 controllers at `root/<controller>`), `root/unified`. Only that tree
    is walked: v1 hierarchies number their inodes independently, so theirs would collide.
    The tree is walked again on a miss, at most once a second per missing id: a new
    container's first exec comes milliseconds after its cgroup is made, so one throttle
    for all ids would let one miss hide the next container; an id that stays unknown
    (a cgroup removed since) costs one walk a second, not one per event.
    """

    def __init__(self, root: Path) -> None:
        unified = root / "unified"
        is_hybrid = not (root / "cgroup.controllers").exists() \
            and (unified / "cgroup.controllers").exists()
        self._root = unified if is_hybrid else root
        self._paths: dict[int, str] = {}
        self._missed_at: dict[int, float] = {}

    def get(self, cgroup_id: int) -> str | None:
        path = self._paths.get(cgroup_id)
        if path is not None:
            return path
        now = time.monotonic()
        missed = self._missed_at.get(cgroup_id)
        if missed is not None and now - missed < 1.0:
            return None
        root = self._root
        paths: dict[int, str] = {}
        for dirpath, _dirnames, _files in os.walk(root):
            try:
                inode = os.stat(dirpath).st_ino
            except OSError:
                continue
            rel = "/" + os.path.relpath(dirpath, root).lstrip(".")
            paths[inode] = rel if rel != "/" else "/"
        self._paths = paths
        path = paths.get(cgroup_id)
        if path is None:
            if len(self._missed_at) >= 4096:
                self._missed_at.clear()
            self._missed_at[cgroup_id] = now
        else:
            self._missed_at.pop(cgroup_id, None)
        return path


MetaLookup = Callable[[str], ContainerMeta | None]


class ContainerMetadata:
    """Full container id -> ContainerMeta from the runtime's API, looked up off the event
    path, as Falco's container engines do.

    `get` waits `first_wait_s` at most, once per container: a container not looked up yet
    is queued for the background thread, the event that first names it waits that long
    for the answer (a local daemon answers in milliseconds, so a new container's first
    events usually see its name), and past it the event goes on, seeing the id (from the
    cgroup) and `<NA>` for everything the API tells (name, image, mounts, k8s.*); events
    after the answer lands see the values. With `first_wait_s` 0 nothing ever waits.
    A container the API does not know (404: another runtime) is remembered as unknown; a
    failed request (daemon down) is asked again after `retry_after_s`. Bounded: at most
    `max_entries` containers are remembered (oldest first out) and `max_pending` queued.
    """

    def __init__(self, lookup: MetaLookup, *, retry_after_s: float = 30.0,
                 max_entries: int = 4096, max_pending: int = 256,
                 first_wait_s: float = 0.0) -> None:
        self._lookup = lookup
        self._first_wait_s = first_wait_s
        self._retry_after_s = retry_after_s
        self._max_entries = max_entries
        self._known: dict[str, ContainerMeta | None] = {}
        self._failed_at: dict[str, float] = {}
        self._pending: dict[str, threading.Event] = {}
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self.errors = 0  # failed requests, for diagnostics
        self.last_error: str | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="container-metadata",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        # When the queue is full the thread (a daemon) dies with the process at worst.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        thread.join(timeout=5.0)

    def get(self, ref: ContainerRef) -> ContainerMeta | None:
        """Metadata if already known; else None, and the lookup is queued (see class doc)."""
        full_id = ref.full_id
        meta = self._known.get(full_id)
        if meta is not None or full_id in self._known:
            return meta
        if full_id in self._pending:
            return None
        failed = self._failed_at.get(full_id)
        if failed is not None and time.monotonic() - failed < self._retry_after_s:
            return None
        if self._thread is None:
            return None  # not started (replay, tests): nothing to ask
        done = threading.Event()
        self._pending[full_id] = done
        try:
            self._queue.put_nowait(full_id)
        except queue.Full:
            del self._pending[full_id]
            return None  # asked again by a later event
        if self._first_wait_s > 0 and done.wait(self._first_wait_s):
            return self._known.get(full_id)
        return None

    def prefetch(self, refs: Iterable[ContainerRef]) -> None:
        """Queue lookups (without waiting) for containers already running at start."""
        wait, self._first_wait_s = self._first_wait_s, 0.0
        try:
            for ref in refs:
                self.get(ref)
        finally:
            self._first_wait_s = wait

    def lookup_now(self, full_id: str) -> ContainerMeta | None:
        """Ask the runtime at once and remember the answer (the thread's step; tests)."""
        try:
            meta = self._lookup(full_id)
        except ToolError as exc:
            self.errors += 1
            self.last_error = str(exc)
            self._failed_at[full_id] = time.monotonic()
            return None
        known = self._known
        if full_id not in known and len(known) >= self._max_entries:
            del known[next(iter(known))]
        known[full_id] = meta
        self._failed_at.pop(full_id, None)
        return meta

    def _work(self) -> None:
        while True:
            full_id = self._queue.get()
            if full_id is None:
                return
            try:
                self.lookup_now(full_id)
            finally:
                done = self._pending.pop(full_id, None)
                if done is not None:
                    done.set()


# How long the event that first names a container may wait for its metadata: a local
# daemon answers in a few ms; the bound keeps a stalled daemon from stalling the engine.
FIRST_WAIT_S = 0.1


def start_docker_metadata(known: Iterable[ContainerRef] = (), *,
                          socket_path: str = DOCKER_SOCKET) -> ContainerMetadata | None:
    """A started ContainerMetadata asking the Docker daemon at `socket_path`, already
    looking up the `known` containers (those running at start), or None when no daemon
    socket exists (containers then show their id and runtime only)."""
    if not os.path.exists(socket_path):
        return None
    metadata = ContainerMetadata(functools.partial(inspect_container, socket_path=socket_path),
                                 first_wait_s=FIRST_WAIT_S)
    metadata.start()
    metadata.prefetch(known)
    return metadata
