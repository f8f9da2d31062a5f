"""container.* and k8s.* fields from the container runtime's metadata:
Docker's API; the CRI's pod labels.

Registered into `runtime.engine.fields.FIELDS` when `runtime.engine.fields` is imported.

The container id comes from the process's cgroup (runtime/engine/state/containers.py);
everything else from `SystemState.container_metadata`, which looks containers up in the
background. Values as libsinsp's container filter checks give them:
  on the host      container.id/name/type are `host`; every other field is NULL
  in a container   NULL until the runtime's answer arrives (and for a container the
                   runtime does not know), then the runtime's values; container.type is
                   known from the cgroup at once
  k8s.*            from the labels the CRI puts on a pod's containers
                   (io.kubernetes.pod.name / .namespace / .uid), as Falco's container
                   plugin reads them; NULL for a container started outside Kubernetes
Mount lookups take a number (`container.mount.dest[0]`) or a glob over the other end:
`container.mount.dest[/var/run/docker.sock]` is the destination of the mount whose SOURCE
matches, `container.mount.source[/etc]` the source of the mount whose DESTINATION does.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING

from runtime.engine.fields import (
    ArgKind,
    BoundField,
    FieldType,
    UnknownFieldError,
    _define,
    _define_arg,
)
from runtime.engine.state import HOST_CONTAINER_ID, SystemState
from runtime.engine.state.docker_api import (
    POD_NAME_LABEL,
    POD_NAMESPACE_LABEL,
    POD_UID_LABEL,
    ContainerMeta,
    MountInfo,
)

if TYPE_CHECKING:
    from runtime.events import Event

MetaGetter = Callable[[ContainerMeta], object]


def container_meta(ev: Event, st: SystemState) -> ContainerMeta | None:
    """The event's container's metadata; None on the host or while not known."""
    ref = st.thread_of(ev).container
    lookup = st.container_metadata
    if ref is None or lookup is None:
        return None
    return lookup.get(ref)


def _from_meta(get: MetaGetter, host_value: object = None, *, empty_is_na: bool = True
               ) -> Callable[[Event, SystemState], object]:
    """An extractor of one metadata value; libsinsp gives NULL for an empty name, image
    or label (`empty_is_na`), but the empty text for a container without mounts."""
    def extract(ev: Event, st: SystemState) -> object:
        if st.thread_of(ev).container is None:
            return host_value
        meta = container_meta(ev, st)
        if meta is None:
            return None
        value = get(meta)
        return None if empty_is_na and value == "" else value

    return extract


def _define_meta(name: str, ftype: FieldType, desc: str, get: MetaGetter,
                 host_value: object = None, *, empty_is_na: bool = True) -> None:
    """A metadata field; inline, a thread on the host answers without the lookup (most
    events, and Falco's rules test container.image.repository in ~90 places)."""
    extract = _from_meta(get, host_value, empty_is_na=empty_is_na)
    helper = "_meta_" + name.replace(".", "_")
    _define(name, ftype, desc, extract,
            inline=f"({host_value!r} if _th.container is None else {helper}(ev, st))",
            helpers=((helper, extract),))


def _container_type(ev: Event, st: SystemState) -> object:
    ref = st.thread_of(ev).container
    if ref is None:
        return "host"
    meta = container_meta(ev, st)
    return ref.runtime if meta is None else meta.runtime


def _mounts(meta: ContainerMeta) -> object:
    return ",".join(str(m) for m in meta.mounts)


def _find_mount(meta: ContainerMeta, arg: str, by_dest: bool) -> MountInfo | None:
    if arg.isdigit():
        index = int(arg)
        return meta.mounts[index] if index < len(meta.mounts) else None
    for mount in meta.mounts:
        if fnmatch.fnmatchcase(mount.dest if by_dest else mount.source, arg):
            return mount
    return None


def _build_mount(get: Callable[[MountInfo], str], by_dest: bool
                 ) -> Callable[[str, str | None], BoundField]:
    def build(text: str, arg: str | None) -> BoundField:
        if not arg:
            raise UnknownFieldError(
                f"field '{text}' needs an argument: a mount number or a path glob")
        key = arg

        def by_key(meta: ContainerMeta) -> object:
            mount = _find_mount(meta, key, by_dest)
            return None if mount is None else get(mount)

        return BoundField(text, FieldType.STRING, _from_meta(by_key))

    return build


def _label(key: str) -> MetaGetter:
    return lambda meta: meta.label(key)


_define_meta("container.name", FieldType.STRING, "container name; 'host' outside containers",
             lambda m: m.name, HOST_CONTAINER_ID)
_define("container.type", FieldType.STRING, "docker, containerd, cri-o, podman or host",
        _container_type, nullable=False,
        inline=f"({HOST_CONTAINER_ID!r} if _th.container is None else _container_type(ev, st))",
        helpers=(("_container_type", _container_type),))
_define_meta("container.image", FieldType.STRING, "image the container runs, as created from",
             lambda m: m.image)
_define_meta("container.image.repository", FieldType.STRING, "image repository",
             lambda m: m.image_repository)
_define_meta("container.image.tag", FieldType.STRING, "image tag ('latest' when not named)",
             lambda m: m.image_tag)
_define_meta("container.image.id", FieldType.STRING, "image id (sha256 hex)",
             lambda m: m.image_id)
_define_meta("container.privileged", FieldType.BOOL, "true for a privileged container",
             lambda m: m.privileged)
_define_meta("container.start_ts", FieldType.INT, "container start time, ns since the epoch",
             lambda m: m.start_ts)
_define_meta("container.mounts", FieldType.STRING,
             "mounts, comma-separated 'source:dest:mode:rdrw:propagation'",
             _mounts, empty_is_na=False)
_define_arg("container.mount", FieldType.STRING,
            "one mount 'source:dest:mode:rdrw:propagation', by number or source glob",
            ArgKind.REQUIRED, _build_mount(str, by_dest=False))
_define_arg("container.mount.source", FieldType.STRING,
            "a mount's source, by number or destination glob",
            ArgKind.REQUIRED, _build_mount(lambda m: m.source, by_dest=True))
_define_arg("container.mount.dest", FieldType.STRING,
            "a mount's destination, by number or source glob",
            ArgKind.REQUIRED, _build_mount(lambda m: m.dest, by_dest=False))
_define_arg("container.mount.mode", FieldType.STRING,
            "a mount's mode, by number or source glob",
            ArgKind.REQUIRED, _build_mount(lambda m: m.mode, by_dest=False))
_define_arg("container.mount.rdwr", FieldType.STRING,
            "'true' for a read-write mount, by number or source glob",
            ArgKind.REQUIRED, _build_mount(lambda m: "true" if m.rw else "false", by_dest=False))
_define_arg("container.mount.propagation", FieldType.STRING,
            "a mount's propagation, by number or source glob",
            ArgKind.REQUIRED, _build_mount(lambda m: m.propagation, by_dest=False))
_define_meta("k8s.ns.name", FieldType.STRING, "the pod's namespace (CRI label)",
             _label(POD_NAMESPACE_LABEL))
_define_meta("k8s.pod.name", FieldType.STRING, "the pod's name (CRI label)",
             _label(POD_NAME_LABEL))
_define_meta("k8s.pod.uid", FieldType.STRING, "the pod's uid (CRI label)",
             _label(POD_UID_LABEL))

__all__ = ["container_meta"]
