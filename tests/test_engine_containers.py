"""container.* and k8s.* fields: Docker's inspect JSON parsed, the background lookup, and
(docker-marked) a real privileged container with a bind mount and CRI pod labels, looked
up through the real daemon's socket from the id its process's cgroup names.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.engine.fields import render_value, resolve_field
from runtime.engine.state import ContainerRef, SystemState, ThreadInfo, procfs
from runtime.engine.state.containers import (
    CgroupPaths,
    ContainerMetadata,
    container_from_proc_cgroup,
)
from runtime.engine.state.docker_api import (
    ContainerLookupError,
    ContainerMeta,
    inspect_container,
    meta_from_inspect,
    parse_rfc3339_ns,
    split_image,
)
from runtime.events import Event
from tests.conftest import require

FULL_ID = "a" * 64

INSPECT: dict[str, object] = {
    "Id": FULL_ID,
    "Name": "/web-0_shop",
    "Image": "sha256:" + "b" * 64,
    "Config": {
        "Image": "registry.example:5000/team/shop-web:1.4",
        "Labels": {"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop",
                   "io.kubernetes.pod.uid": "1234-5678", "other": "x"},
    },
    "HostConfig": {"Privileged": True},
    "State": {"StartedAt": "2026-12-03T10:00:00.123456789Z"},
    "Mounts": [
        {"Type": "bind", "Source": "/var/run/docker.sock", "Destination": "/var/run/docker.sock",
         "Mode": "", "RW": True, "Propagation": "rprivate"},
        {"Type": "bind", "Source": "/srv/data", "Destination": "/data", "Mode": "ro",
         "RW": False, "Propagation": "rprivate"},
    ],
}


def _event(pid: int = 77) -> Event:
    return Event(ts=1, cpu=0, type="openat", syscall_nr=0, res=3, pid=pid, tid=pid, ppid=1,
                 uid=0, gid=0, comm="nginx", cgroup_id=0,
                 params={"dirfd": -100, "name": "/etc/shadow", "flags": 0, "mode": 0})


def _state_with(ref: ContainerRef | None, metadata: ContainerMetadata | None,
                pid: int = 77) -> tuple[SystemState, Event]:
    st = SystemState()
    st.container_metadata = metadata
    st.threads[pid] = ThreadInfo(tid=pid, pid=pid, ppid=1, comm="nginx", container=ref)
    ev = _event(pid)
    st.update(ev)
    return st, ev


def _value(name: str, ev: Event, st: SystemState) -> object:
    if "[" in name:
        base, _, arg = name.partition("[")
        return resolve_field(base, arg.rstrip("]")).extract(ev, st)
    return resolve_field(name).extract(ev, st)


def test_inspect_json_becomes_falco_values() -> None:
    meta = meta_from_inspect(INSPECT)
    assert meta.name == "web-0_shop"
    assert (meta.image_repository, meta.image_tag) == ("registry.example:5000/team/shop-web",
                                                       "1.4")
    assert meta.privileged is True
    assert meta.start_ts == 1796292000_123456789
    assert str(meta.mounts[1]) == "/srv/data:/data:ro:false:rprivate"
    assert meta.image_id == "b" * 64


@pytest.mark.parametrize(("image", "expected"), [
    ("nginx", ("nginx", "latest")),
    ("nginx:1.25", ("nginx", "1.25")),
    ("localhost:5000/app", ("localhost:5000/app", "latest")),
    ("quay.io/a/b:v1@sha256:" + "c" * 64, ("quay.io/a/b", "v1")),
])
def test_split_image(image: str, expected: tuple[str, str]) -> None:
    assert split_image(image) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-03T10:00:00Z", 1796292000 * 10**9),
    ("2026-12-03T10:00:00.5Z", 1796292000 * 10**9 + 500_000_000),
    ("2026-12-03T11:00:00.000000001+01:00", 1796292000 * 10**9 + 1),
    ("0001-01-01T00:00:00Z", None),
    ("garbage", None),
])
def test_rfc3339(text: str, expected: int | None) -> None:
    assert parse_rfc3339_ns(text) == expected


def _known(meta: ContainerMeta | None) -> ContainerMetadata:
    metadata = ContainerMetadata(lambda full_id: meta)
    metadata.lookup_now(FULL_ID)
    return metadata


def test_fields_inside_a_known_container() -> None:
    ref = ContainerRef(id=FULL_ID[:12], full_id=FULL_ID, runtime="docker")
    st, ev = _state_with(ref, _known(meta_from_inspect(INSPECT)))
    expected = {
        "container.id": FULL_ID[:12],
        "container.name": "web-0_shop",
        "container.image": "registry.example:5000/team/shop-web:1.4",
        "container.image.repository": "registry.example:5000/team/shop-web",
        "container.image.tag": "1.4",
        "container.type": "docker",
        "container.privileged": True,
        "container.start_ts": 1796292000_123456789,
        "container.mounts": "/var/run/docker.sock:/var/run/docker.sock::true:rprivate,"
                            "/srv/data:/data:ro:false:rprivate",
        "container.mount.dest[/var/run/docker.sock]": "/var/run/docker.sock",
        "container.mount.dest[/srv/*]": "/data",
        "container.mount.dest[1]": "/data",
        "container.mount.source[/data]": "/srv/data",
        "container.mount[/srv/data]": "/srv/data:/data:ro:false:rprivate",
        "container.mount.rdwr[/srv/data]": "false",
        "container.mount.dest[/proc*]": None,
        "container.mount.dest[7]": None,
        "k8s.ns.name": "shop",
        "k8s.pod.name": "web-0",
        "k8s.pod.uid": "1234-5678",
    }
    assert {name: _value(name, ev, st) for name in expected} == expected


def test_host_process_fields() -> None:
    st, ev = _state_with(None, _known(meta_from_inspect(INSPECT)))
    assert _value("container.id", ev, st) == "host"
    assert _value("container.name", ev, st) == "host"
    assert _value("container.type", ev, st) == "host"
    for name in ("container.image", "container.image.repository", "container.privileged",
                 "container.mounts", "container.mount.dest[0]", "k8s.ns.name",
                 "k8s.pod.name", "container.start_ts"):
        assert _value(name, ev, st) is None, name


def test_container_outside_kubernetes_has_no_k8s_fields() -> None:
    doc = dict(INSPECT, Config={"Image": "debian"})
    ref = ContainerRef(id=FULL_ID[:12], full_id=FULL_ID, runtime="docker")
    st, ev = _state_with(ref, _known(meta_from_inspect(doc)))
    assert _value("k8s.pod.name", ev, st) is None
    assert _value("container.image.tag", ev, st) == "latest"
    no_mounts = ContainerMetadata(lambda full_id: meta_from_inspect(dict(INSPECT, Mounts=[])))
    no_mounts.lookup_now(FULL_ID)
    st, ev = _state_with(ref, no_mounts)
    assert _value("container.mounts", ev, st) == ""  # known, and empty: not <NA>


def test_lookup_runs_in_the_background_and_events_see_na_until_it_lands() -> None:
    release = threading.Event()
    calls: list[str] = []

    def slow_lookup(full_id: str) -> ContainerMeta | None:
        calls.append(full_id)
        release.wait()
        return meta_from_inspect(INSPECT)

    metadata = ContainerMetadata(slow_lookup)
    metadata.start()
    try:
        ref = ContainerRef(id=FULL_ID[:12], full_id=FULL_ID, runtime="docker")
        st, ev = _state_with(ref, metadata)
        # The lookup is blocked: the event is evaluated anyway, with what is known.
        assert _value("container.name", ev, st) is None
        assert render_value(_value("container.name", ev, st)) == "<NA>"
        assert _value("container.id", ev, st) == FULL_ID[:12]
        assert _value("container.type", ev, st) == "docker"
        release.set()
        while _value("container.name", ev, st) is None:
            time.sleep(0.01)
        assert _value("container.name", ev, st) == "web-0_shop"
        assert calls == [FULL_ID]  # one request, however many events asked
    finally:
        release.set()
        metadata.close()


def test_first_event_of_a_container_waits_briefly_for_a_prompt_answer() -> None:
    calls: list[str] = []

    def lookup(full_id: str) -> ContainerMeta | None:
        calls.append(full_id)
        return meta_from_inspect(INSPECT)

    # A generous bound: the answer comes at once, so the wait ends when it lands.
    metadata = ContainerMetadata(lookup, first_wait_s=60.0)
    metadata.start()
    try:
        ref = ContainerRef(id=FULL_ID[:12], full_id=FULL_ID, runtime="docker")
        st, ev = _state_with(ref, metadata)
        assert _value("container.name", ev, st) == "web-0_shop"
        assert _value("k8s.pod.name", ev, st) == "web-0"
        assert calls == [FULL_ID]
    finally:
        metadata.close()


def test_first_wait_is_bounded_when_the_daemon_stalls() -> None:
    release = threading.Event()

    def stalled(full_id: str) -> ContainerMeta | None:
        release.wait()
        return None

    metadata = ContainerMetadata(stalled, first_wait_s=0.01)
    metadata.start()
    try:
        ref = ContainerRef(id=FULL_ID[:12], full_id=FULL_ID, runtime="docker")
        st, ev = _state_with(ref, metadata)
        assert _value("container.name", ev, st) is None  # went on without the answer
    finally:
        release.set()
        metadata.close()


def test_prefetch_queues_containers_running_at_start() -> None:
    seen: list[str] = []

    def lookup(full_id: str) -> ContainerMeta | None:
        seen.append(full_id)
        return None

    metadata = ContainerMetadata(lookup)
    refs = [ContainerRef(id=c * 12, full_id=c * 64, runtime="docker") for c in "abc"]
    metadata.start()
    try:
        metadata.prefetch([*refs, refs[0]])
    finally:
        metadata.close()  # the queue is drained before the stop request is read
    assert seen == [r.full_id for r in refs]


def test_failed_lookup_is_retried_later_and_unknown_ids_are_remembered() -> None:
    answers: list[ContainerMeta | Exception | None] = [
        ContainerLookupError("daemon down"), None]

    def lookup(full_id: str) -> ContainerMeta | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    metadata = ContainerMetadata(lookup, retry_after_s=0.0)
    assert metadata.lookup_now(FULL_ID) is None
    assert metadata.errors == 1 and metadata.last_error == "daemon down"
    assert metadata.lookup_now(FULL_ID) is None  # asked again: 404, remembered
    assert metadata.errors == 1
    ref = ContainerRef(id=FULL_ID[:12], full_id=FULL_ID, runtime="docker")
    assert metadata.get(ref) is None
    assert answers == []


def test_unreachable_daemon_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ContainerLookupError, match="start dockerd"):
        inspect_container(FULL_ID, socket_path=str(tmp_path / "no.sock"))
    with pytest.raises(ContainerLookupError, match="not hex"):
        inspect_container("../../info")


# ---- the real daemon ------------------------------------------------------------------------

def _builder_image() -> str | None:
    out = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                         capture_output=True, text=True, timeout=60, check=False).stdout
    images = [line for line in out.split() if line.startswith("driverkit-builder-")]
    return images[0] if images else None


def _docker(*args: str) -> str:
    run = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120,
                         check=False)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


@pytest.fixture
def pod_containers(tmp_path: Path) -> Iterator[tuple[str, str, str, Path]]:
    """(running id, privileged id, image, bind-mounted host dir).

    The running container has the bind mount and the pod labels. Starting a privileged
    container fails in this sandbox (runc cannot apply the full capability set: EPERM),
    so privilege is checked on a second container, created --privileged and not started:
    the daemon reports it the same way.
    """
    image = _builder_image()
    require(image is not None, "needs a local driverkit-builder-* image")
    assert image is not None
    tag = uuid.uuid4().hex[:8]
    created: list[str] = []
    try:
        created.append(_docker(
            "run", "-d", "--name", f"rt-engine-meta-{tag}",
            "-v", f"{tmp_path}:/mnt/host-data",
            "--label", "io.kubernetes.pod.name=web-0",
            "--label", "io.kubernetes.pod.namespace=shop",
            "--entrypoint", "sleep", image, "300"))
        created.append(_docker(
            "create", "--name", f"rt-engine-meta-priv-{tag}", "--privileged",
            "--entrypoint", "sleep", image, "300"))
        yield created[0], created[1], image, tmp_path
    finally:
        for full_id in created:
            subprocess.run(["docker", "rm", "-f", full_id], capture_output=True, timeout=120,
                           check=False)


@pytest.mark.docker
def test_real_container_metadata_through_the_daemon(
        pod_containers: tuple[str, str, str, Path]) -> None:
    full_id, privileged_id, image, host_dir = pod_containers
    pid = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", full_id],
                             capture_output=True, text=True, timeout=60,
                             check=True).stdout.strip())
    # The id as the engine learns it: from the process's cgroup.
    ref = container_from_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
    assert ref is not None and ref.full_id == full_id
    thread = procfs.read_process(Path(f"/proc/{pid}"), pid)
    assert thread is not None and thread.container == ref

    metadata = ContainerMetadata(inspect_container)
    metadata.start()
    try:
        st = SystemState()
        st.container_metadata = metadata
        st.threads[pid] = thread
        ev = _event(pid)
        st.update(ev)
        assert _value("container.name", ev, st) is None  # lookup queued, not yet landed
        while _value("container.name", ev, st) is None and metadata.errors == 0:
            time.sleep(0.05)
        assert metadata.errors == 0, metadata.last_error
        repository = image.rsplit(":", 1)[0]
        assert _value("container.id", ev, st) == full_id[:12]
        assert _value("container.name", ev, st) == pod_container_name(full_id)
        assert _value("container.image", ev, st) == image
        assert _value("container.image.repository", ev, st) == repository
        assert _value("container.type", ev, st) == "docker"
        assert _value("container.privileged", ev, st) is False
        assert isinstance(_value("container.start_ts", ev, st), int)
        assert _value(f"container.mount.dest[{host_dir}]", ev, st) == "/mnt/host-data"
        assert _value("container.mount.source[/mnt/host-data]", ev, st) == str(host_dir)
        mounts = _value("container.mounts", ev, st)
        assert isinstance(mounts, str) and f"{host_dir}:/mnt/host-data:" in mounts
        assert _value("k8s.ns.name", ev, st) == "shop"
        assert _value("k8s.pod.name", ev, st) == "web-0"
        assert _value("k8s.pod.uid", ev, st) is None
    finally:
        metadata.close()
    privileged = inspect_container(privileged_id)
    assert privileged is not None and privileged.privileged is True
    assert privileged.labels == () or dict(privileged.labels).get(
        "io.kubernetes.pod.name") is None
    assert inspect_container("f" * 64) is None  # an id the daemon does not know


def pod_container_name(full_id: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.Name}}", full_id],
                          capture_output=True, text=True, timeout=60,
                          check=True).stdout.strip().lstrip("/")


def test_cgroup_ids_come_from_the_v2_tree_and_each_new_id_is_searched(tmp_path: Path) -> None:
    # A hybrid host: v1 controllers beside the v2 tree at unified/.
    (tmp_path / "memory" / "docker" / ("1" * 64)).mkdir(parents=True)
    unified = tmp_path / "unified"
    (unified / "docker").mkdir(parents=True)
    (unified / "cgroup.controllers").write_text("")
    paths = CgroupPaths(tmp_path)
    assert paths.get(987654321) is None  # unknown: a walk, then throttled for this id
    first = unified / "docker" / ("a" * 64)
    first.mkdir()
    # Made just after a miss for another id, yet found at once.
    assert paths.get(first.stat().st_ino) == "/docker/" + "a" * 64
    second = unified / "docker" / ("b" * 64)
    second.mkdir()
    assert paths.get(second.stat().st_ino) == "/docker/" + "b" * 64
    v1_only = (tmp_path / "memory" / "docker" / ("1" * 64)).stat().st_ino
    assert paths.get(v1_only) is None  # v1 hierarchies are not the id's namespace
