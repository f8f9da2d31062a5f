"""Which container a process runs in, read from its cgroup path.

Container runtimes name a container's cgroup after its 64-hex-digit id; the id, and which
runtime made it, is all Falco's `container.*` fields know without asking the runtime's
API. Two inputs lead here: the text of /proc/<pid>/cgroup (seeding, execve's `cgroups`
param) and, live, the cgroup v2 id an event carries (`CgroupPaths` maps it to a path).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

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

    A cgroup id is its directory's inode; the tree is walked again on a miss, at most
    once a second (a miss for a cgroup removed since would otherwise walk on every event).
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._paths: dict[int, str] = {}
        self._scanned_at = -1e9

    def get(self, cgroup_id: int) -> str | None:
        path = self._paths.get(cgroup_id)
        if path is not None:
            return path
        now = time.monotonic()
        if now - self._scanned_at < 1.0:
            return None
        self._scanned_at = now
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
        return paths.get(cgroup_id)
