"""System state the rules read: processes (threads), their open fds, users and containers.

One concern per module:

  machine     SystemState: the tables and the per-syscall handlers that keep them
  tables      the rows: ThreadInfo, FdInfo
  procfs      what /proc says about a process (seeding, processes first seen mid-run)
  process     per-process facts (namespace ids, session, env, exe inode and flags,
              capabilities, start time) from exec/clone params and /proc
  containers  cgroup path -> container id and runtime; the runtime's metadata, looked up
              in the background (ContainerMetadata)
  docker_api  Docker's Engine API over its unix socket: one container's metadata
  sockets     socket families and types, Falco's tuple text, /proc/net socket tables
  names       uid/gid -> user/group names
  params      numeric event params that may come as text

Import from here: `runtime.engine.state` is the public path.
"""

from __future__ import annotations

from runtime.engine.state.containers import (
    HOST_CONTAINER_ID,
    ContainerRef,
    container_from_cgroup_path,
    container_from_proc_cgroup,
)
from runtime.engine.state.machine import (
    CLONE_THREAD,
    MAX_ANCESTORS,
    REQUIRED_SYSCALLS,
    SystemState,
    lite_kind,
)
from runtime.engine.state.sockets import parse_tuple
from runtime.engine.state.tables import FdInfo, ThreadInfo

__all__ = [
    "CLONE_THREAD",
    "HOST_CONTAINER_ID",
    "MAX_ANCESTORS",
    "REQUIRED_SYSCALLS",
    "ContainerRef",
    "FdInfo",
    "SystemState",
    "ThreadInfo",
    "container_from_cgroup_path",
    "container_from_proc_cgroup",
    "lite_kind",
    "parse_tuple",
]
