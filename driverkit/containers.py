"""The container engine behind one small interface.

`ContainerEngine` is what images.py and the docker processor use; `DockerEngine`
implements it with the `docker` Python SDK. Containers are only handed out through the
`container()` context manager, which removes them on every exit path (error, timeout,
KeyboardInterrupt), and the engine also remembers every live container so a Ctrl-C in
the main thread can remove the ones worker threads are still waiting on.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from driverkit.errors import BuildTimeoutError, ContainerEngineError

DAEMON_HINT = (
    "start the Docker daemon (`dockerd > /var/log/dockerd.log 2>&1 &` or "
    "`systemctl start docker`), or build on this host with --processor local"
)


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    logs: str
    duration_s: float


@dataclass(frozen=True)
class ImageInfo:
    tag: str
    image_id: str
    created: str
    size: int
    labels: Mapping[str, str] = field(default_factory=dict)


class Container(Protocol):
    id: str

    def copy_in(self, files: Mapping[str, bytes | Path], dest: str = "/") -> None: ...

    def copy_out(self, path: str, dest: Path) -> None: ...

    def run(self, timeout_s: float) -> RunResult: ...


class ContainerEngine(Protocol):
    def ping(self) -> None: ...

    def image_exists(self, tag: str) -> bool: ...

    def image_id(self, tag: str) -> str: ...

    def build_image(
        self,
        dockerfile: str,
        tag: str,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        *,
        context: Mapping[str, bytes | Path] | None = None,
    ) -> str: ...

    def import_image(self, rootfs_tar: Path, name: str) -> str: ...

    def list_images(self, label: str) -> list[ImageInfo]: ...

    def remove_image(self, tag: str) -> None: ...

    def container(
        self,
        image: str,
        command: Sequence[str],
        *,
        mounts: Sequence[Mount] = (),
        env: Mapping[str, str] | None = None,
        network: bool = False,
    ) -> contextlib.AbstractContextManager[Container]: ...

    def remove_all_live(self) -> int: ...


def tar_bytes(files: Mapping[str, bytes | Path]) -> bytes:
    """A tar stream of in-memory files and host paths (dirs recursively), for put_archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            if isinstance(content, Path):
                tar.add(str(content), arcname=name)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(content)
                info.mode = 0o755 if name.endswith(".sh") else 0o644
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def owner_tag() -> str:
    """Who started a container: lets a caller (or a test) find exactly its own ones
    among builds that other processes run on the same daemon."""
    return os.environ.get("DK_BUILD_OWNER") or f"pid-{os.getpid()}"


class DockerContainer:
    def __init__(self, engine: DockerEngine, raw: Any):
        self._engine = engine
        self._raw = raw
        self.id: str = raw.id

    def copy_in(self, files: Mapping[str, bytes | Path], dest: str = "/") -> None:
        if not self._raw.put_archive(dest, tar_bytes(files)):
            raise ContainerEngineError(f"copying files into container {self.id[:12]} failed")

    def copy_out(self, path: str, dest: Path) -> None:
        """Extract `path` from the container into `dest` (a host directory)."""
        import docker.errors

        try:
            stream, _ = self._raw.get_archive(path)
        except docker.errors.NotFound as exc:
            raise ContainerEngineError(
                f"{path} does not exist in container {self.id[:12]}"
            ) from exc
        data = b"".join(stream)
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest, filter="data")

    def run(self, timeout_s: float) -> RunResult:
        import time

        import requests

        started = time.monotonic()
        self._raw.start()
        try:
            status = self._raw.wait(timeout=timeout_s)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
            self._kill()
            logs = self._logs()
            tail = "\n".join(logs.splitlines()[-5:])
            raise BuildTimeoutError(
                f"build ran past its {timeout_s:g} s timeout; container killed and removed"
                + (f"; last output:\n{tail}" if tail else "")
            ) from exc
        return RunResult(
            int(status.get("StatusCode", -1)), self._logs(), time.monotonic() - started
        )

    def _logs(self) -> str:
        try:
            return bytes(self._raw.logs(stdout=True, stderr=True)).decode(errors="replace")
        except Exception:  # logs are best effort once the container is gone
            return ""

    def _kill(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.kill()

    def remove(self) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self._raw.remove(force=True)


class DockerEngine:
    """ContainerEngine over the docker SDK. Create with `docker_engine()`."""

    LABEL = "io.driverkit.managed"
    OWNER_LABEL = "io.driverkit.owner"

    def __init__(self, client: Any):
        self._client = client
        self._live: dict[str, DockerContainer] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The docker SDK client, for what this interface does not cover (image save and
        load between daemons, pushes)."""
        return self._client

    def ping(self) -> None:
        try:
            self._client.ping()
        except Exception as exc:
            raise ContainerEngineError(
                f"Docker daemon not reachable ({exc.__class__.__name__}): {DAEMON_HINT}"
            ) from exc

    def image_exists(self, tag: str) -> bool:
        import docker.errors

        try:
            self._client.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
        return True

    def image_id(self, tag: str) -> str:
        return str(self._client.images.get(tag).id)

    def build_image(
        self,
        dockerfile: str,
        tag: str,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        *,
        context: Mapping[str, bytes | Path] | None = None,
    ) -> str:
        """`context`: files the Dockerfile COPYs (name in the context -> content or host
        path); builders need none, the runtime images carry our packages."""
        import docker.errors

        archive = tar_bytes({**(context or {}), "Dockerfile": dockerfile.encode()})
        try:
            image, _log = self._client.images.build(
                fileobj=io.BytesIO(archive),
                custom_context=True,
                tag=tag,
                buildargs=dict(buildargs),
                labels={**labels, self.LABEL: "builder"},
                rm=True,
                forcerm=True,
                pull=False,
            )
        except docker.errors.BuildError as exc:
            lines = [
                str(chunk.get("stream", chunk.get("error", ""))).rstrip() for chunk in exc.build_log
            ]
            tail = "\n".join(line for line in lines if line)[-2000:]
            raise ContainerEngineError(f"building image {tag} failed: {exc.msg}\n{tail}") from exc
        except docker.errors.APIError as exc:
            raise ContainerEngineError(f"building image {tag} failed: {exc.explanation}") from exc
        return str(image.id)

    def import_image(self, rootfs_tar: Path, name: str) -> str:
        repository, _, tag = name.partition(":")
        try:
            self._client.api.import_image_from_file(
                str(rootfs_tar), repository=repository, tag=tag or "latest"
            )
        except Exception as exc:
            raise ContainerEngineError(
                f"docker import of {rootfs_tar} as {name} failed: {exc}"
            ) from exc
        return self.image_id(name)

    def list_images(self, label: str) -> list[ImageInfo]:
        found: list[ImageInfo] = []
        for image in self._client.images.list(filters={"label": label}):
            attrs = image.attrs
            for tag in image.tags or [f"<untagged>@{image.short_id}"]:
                found.append(
                    ImageInfo(
                        tag,
                        str(image.id),
                        str(attrs.get("Created", "")),
                        int(attrs.get("Size", 0)),
                        dict(image.labels or {}),
                    )
                )
        return sorted(found, key=lambda i: i.tag)

    def remove_image(self, tag: str) -> None:
        self._client.images.remove(tag, force=True)

    @contextlib.contextmanager
    def container(
        self,
        image: str,
        command: Sequence[str],
        *,
        mounts: Sequence[Mount] = (),
        env: Mapping[str, str] | None = None,
        network: bool = False,
    ) -> Iterator[DockerContainer]:
        import docker.errors
        from docker.types import Mount as DockerMount

        try:
            raw = self._client.containers.create(
                image,
                command=list(command),
                mounts=[
                    DockerMount(m.target, str(m.source), type="bind", read_only=m.read_only)
                    for m in mounts
                ],
                environment=dict(env or {}),
                network_disabled=not network,
                labels={self.LABEL: "build", self.OWNER_LABEL: owner_tag()},
                detach=True,
            )
        except docker.errors.ImageNotFound as exc:
            raise ContainerEngineError(
                f"image {image} not found: run `driverkit images build`"
            ) from exc
        except docker.errors.APIError as exc:
            raise ContainerEngineError(
                f"creating a container from {image} failed: {exc.explanation}"
            ) from exc
        handle = DockerContainer(self, raw)
        with self._lock:
            self._live[handle.id] = handle
        try:
            yield handle
        finally:
            handle.remove()
            with self._lock:
                self._live.pop(handle.id, None)

    def remove_all_live(self) -> int:
        """Force-remove every container still in flight (Ctrl-C path); returns how many."""
        with self._lock:
            live = list(self._live.values())
        for handle in live:
            handle.remove()
        return len(live)

    def close(self) -> None:
        self.remove_all_live()
        with contextlib.suppress(Exception):
            self._client.close()


@contextlib.contextmanager
def docker_engine(timeout_s: int = 600) -> Iterator[DockerEngine]:
    """A pinged DockerEngine; every container it made is gone when the block exits."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a declared dependency
        raise ContainerEngineError(
            "the `docker` Python package is missing: pip install docker"
        ) from exc
    try:
        client = docker.from_env(timeout=timeout_s)
    except docker.errors.DockerException as exc:
        raise ContainerEngineError(f"Docker daemon not reachable: {DAEMON_HINT}") from exc
    engine = DockerEngine(client)
    try:
        engine.ping()
        yield engine
    finally:
        engine.close()
