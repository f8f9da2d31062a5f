"""Container metadata from Docker's Engine API: `GET /containers/<id>/json` over the
daemon's unix socket, as plain HTTP/1.1 with the standard library.

The runtime side must not depend on the build side's docker SDK (tests/test_core_shape.py),
and it needs one request only. The answer becomes a frozen ContainerMeta: what Falco's
container.* and k8s.* fields show for that container.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import datetime

from drivercore.errors import ToolError

DOCKER_SOCKET = "/var/run/docker.sock"
# A lookup waits this long at most for the daemon (connect, and each read).
LOOKUP_TIMEOUT_S = 2.0
_MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # a container's JSON is a few KiB; bound the read

# The labels the CRI (kubelet) puts on every container of a pod.
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"


class ContainerLookupError(ToolError):
    """The container runtime's API did not answer, or answered something unusable.

    Never ends the engine (ContainerMetadata counts it and asks again later), so it keeps
    ToolError's generic exit code rather than claiming one of the registry's."""


@dataclass(frozen=True, slots=True)
class MountInfo:
    source: str
    dest: str
    mode: str
    rw: bool
    propagation: str

    def __str__(self) -> str:
        # Falco's text of one mount: source:dest:mode:rdrw:propagation
        return f"{self.source}:{self.dest}:{self.mode}:{'true' if self.rw else 'false'}:" \
               f"{self.propagation}"


@dataclass(frozen=True, slots=True)
class ContainerMeta:
    full_id: str
    name: str
    image: str  # as the container was created from: "repo[:tag][@digest]"
    image_repository: str
    image_tag: str
    image_id: str
    runtime: str  # Falco's container.type
    privileged: bool
    start_ts: int | None  # ns since the epoch; None when the runtime does not say
    mounts: tuple[MountInfo, ...]
    labels: tuple[tuple[str, str], ...]

    def label(self, key: str) -> str | None:
        for name, value in self.labels:
            if name == key:
                return value
        return None


def split_image(image: str) -> tuple[str, str]:
    """`registry:5000/team/app:1.2@sha256:..` -> ("registry:5000/team/app", "1.2").

    The tag is the text after the last `:` that follows the last `/` (a registry's port is
    not a tag); an image named without a tag is Docker's `latest`, as Falco reports it.
    """
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, "latest"


def parse_rfc3339_ns(text: str) -> int | None:
    """Docker's `2026-12-03T10:00:00.123456789Z` -> ns since the epoch; None for its
    zero time (`0001-01-01T00:00:00Z`, a container never started) or unparsable text."""
    if not text or text.startswith("0001-"):
        return None
    main, _, rest = text.partition(".")
    frac = ""
    zone = "Z"
    if rest:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, zone = rest[:digits], rest[digits:] or "Z"
    elif main.endswith("Z"):
        main = main[:-1]
    else:
        for sign in ("+", "-"):
            pos = main.rfind(sign)
            if pos > 10:
                main, zone = main[:pos], main[pos:]
                break
    try:
        base = datetime.fromisoformat(main + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    nanos = int((frac + "000000000")[:9]) if frac else 0
    return int(base.timestamp()) * 1_000_000_000 + nanos


def meta_from_inspect(doc: dict[str, object], runtime: str = "docker") -> ContainerMeta:
    """A ContainerMeta from the JSON of `GET /containers/<id>/json`."""
    config = doc.get("Config") if isinstance(doc.get("Config"), dict) else {}
    host = doc.get("HostConfig") if isinstance(doc.get("HostConfig"), dict) else {}
    state = doc.get("State") if isinstance(doc.get("State"), dict) else {}
    assert isinstance(config, dict) and isinstance(host, dict) and isinstance(state, dict)
    image = str(config.get("Image") or "")
    repository, tag = split_image(image) if image else ("", "")
    raw_labels = config.get("Labels")
    labels = tuple(sorted((str(k), str(v)) for k, v in raw_labels.items())) \
        if isinstance(raw_labels, dict) else ()
    mounts: list[MountInfo] = []
    raw_mounts = doc.get("Mounts")
    for item in raw_mounts if isinstance(raw_mounts, list) else ():
        if isinstance(item, dict):
            mounts.append(MountInfo(
                source=str(item.get("Source") or ""),
                dest=str(item.get("Destination") or ""),
                mode=str(item.get("Mode") or ""),
                rw=bool(item.get("RW")),
                propagation=str(item.get("Propagation") or ""),
            ))
    return ContainerMeta(
        full_id=str(doc.get("Id") or ""),
        name=str(doc.get("Name") or "").lstrip("/"),
        image=image,
        image_repository=repository,
        image_tag=tag,
        image_id=str(doc.get("Image") or "").removeprefix("sha256:"),
        runtime=runtime,
        privileged=bool(host.get("Privileged")),
        start_ts=parse_rfc3339_ns(str(state.get("StartedAt") or "")),
        mounts=tuple(mounts),
        labels=labels,
    )


def _http_get(socket_path: str, path: str, timeout: float) -> tuple[int, bytes]:
    """One HTTP/1.0 GET over a unix socket: (status, body). HTTP/1.0 makes the daemon send
    a plain body and close, so no chunked decoding is needed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode("ascii"))
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            total += len(chunk)
            if total > _MAX_RESPONSE_BYTES:
                raise ContainerLookupError(
                    f"docker API at {socket_path}: response to {path} is over "
                    f"{_MAX_RESPONSE_BYTES} bytes; check the daemon")
            chunks.append(chunk)
    data = b"".join(chunks)
    head, sep, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status_line) < 2 or not status_line[1].isdigit():
        raise ContainerLookupError(
            f"docker API at {socket_path}: not an HTTP answer to {path}; is it Docker's socket?")
    return int(status_line[1]), body


def inspect_container(container_id: str, *, socket_path: str = DOCKER_SOCKET,
                      timeout: float = LOOKUP_TIMEOUT_S) -> ContainerMeta | None:
    """The container's metadata, or None when the daemon does not know the id (not a
    Docker container). Raises ContainerLookupError when the daemon cannot be asked."""
    if not container_id.isalnum():
        raise ContainerLookupError(f"container id {container_id!r} is not hex; pass the id "
                                   "from the cgroup path")
    try:
        status, body = _http_get(socket_path, f"/containers/{container_id}/json", timeout)
    except OSError as exc:
        raise ContainerLookupError(
            f"docker API at {socket_path}: {exc.strerror or exc}; start dockerd or check the "
            "socket's permissions") from None
    if status == 404:
        return None
    if status != 200:
        raise ContainerLookupError(
            f"docker API at {socket_path}: HTTP {status} for container {container_id}")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ContainerLookupError(
            f"docker API at {socket_path}: unreadable JSON for container {container_id}"
        ) from None
    if not isinstance(doc, dict):
        raise ContainerLookupError(
            f"docker API at {socket_path}: unexpected JSON for container {container_id}")
    return meta_from_inspect(doc)
