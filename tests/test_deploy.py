"""deploy/rtcap-daemonset.yaml, checked without a cluster.

No Kubernetes control plane can run on this machine (none is installable here; Debian has
only an old kubectl, etcd and containerd), so nothing is applied. Instead every object is
validated against the Kubernetes API models of the `kubernetes` Python client (pydantic
models that forbid unknown fields and require the required ones, so a misspelt or
misplaced field fails), and then checked for what this deployment must mean: the loader
image in the init container with the loader's real flags, a privileged engine, the host
mounts where Falco's chart puts them, every mount backed by a volume, and a ConfigMap the
engine's own config and rule loaders accept.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from driverkit.runtime_images import APP_DIR, ENTRYPOINTS, IMAGE_PREFIX
from runtime.engine.config import parse_config
from tests.conftest import REPO_ROOT

MANIFEST = REPO_ROOT / "deploy" / "rtcap-daemonset.yaml"
HOST_ROOT = "/host"
STATE_DIR = "/var/lib/rtcap"
# Host paths, mount points and read-only-ness as Falco's chart mounts them for its eBPF
# drivers, plus tracefs (our probes attach to tracepoints) and the state directory.
EXPECTED_HOST_PATHS = {
    "host-proc": "/proc",
    "host-etc": "/etc",
    "host-boot": "/boot",
    "host-lib-modules": "/lib/modules",
    "host-usr": "/usr",
    "host-dev": "/dev",
    "host-btf": "/sys/kernel/btf",
    "tracefs": "/sys/kernel/tracing",
    "debugfs": "/sys/kernel/debug",
    "state": STATE_DIR,
}
ENGINE_MOUNTS = {
    "/host/proc": ("host-proc", True),
    "/host/etc": ("host-etc", True),
    "/host/boot": ("host-boot", True),
    "/host/lib/modules": ("host-lib-modules", True),
    "/host/usr": ("host-usr", True),
    "/host/dev": ("host-dev", True),
    "/sys/kernel/tracing": ("tracefs", False),
    "/sys/kernel/debug": ("debugfs", False),
    STATE_DIR: ("state", True),
}
# Used when `rt-engine driver install` is not importable (the loader not landed).
# TODO(lead): drop once runtime/loader/ is always present.
FALLBACK_LOADER_FLAGS = {
    "--config", "--host-root", "--download-only", "--dest", "--state-dir", "--repo",
    "--public-key", "--type", "--driver-version",
}


def _documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc is not None]


def _model_for(kind: str) -> Any:
    from kubernetes import client

    models = {
        "Namespace": client.V1Namespace,
        "ServiceAccount": client.V1ServiceAccount,
        "ConfigMap": client.V1ConfigMap,
        "DaemonSet": client.V1DaemonSet,
    }
    assert kind in models, f"{kind}: not an object this deployment should need"
    return models[kind]


def _validated(doc: dict[str, Any]) -> Any:
    return _model_for(doc["kind"]).model_validate(doc)


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    pytest.importorskip("kubernetes", reason="pip install '.[dev]' (the kubernetes client)")
    return _documents()


@pytest.fixture(scope="module")
def daemonset(documents: list[dict[str, Any]]) -> Any:
    (doc,) = [d for d in documents if d["kind"] == "DaemonSet"]
    return _validated(doc)


def test_every_object_is_a_valid_kubernetes_object(documents: list[dict[str, Any]]) -> None:
    kinds = [doc["kind"] for doc in documents]
    assert sorted(kinds) == ["ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"]
    expected_api = {"DaemonSet": "apps/v1"}
    for doc in documents:
        model = _validated(doc)
        assert model.api_version == expected_api.get(doc["kind"], "v1")
        if doc["kind"] != "Namespace":
            assert model.metadata.namespace == "rtcap"


@pytest.mark.parametrize(
    ("path", "wrong_key"),
    [
        (("spec", "template", "spec", "initContainers", 0), "volumeMount"),  # misspelt
        (("spec", "template", "spec"), "privileged"),  # right name, wrong level
        (("spec", "template", "spec", "containers", 0, "securityContext"), "priviledged"),
    ],
)
def test_a_misspelt_or_misplaced_field_is_caught(
    documents: list[dict[str, Any]], path: tuple[str | int, ...], wrong_key: str
) -> None:
    """The models really are strict: what the real API server would reject fails here."""
    from pydantic import ValidationError

    (doc,) = [copy.deepcopy(d) for d in documents if d["kind"] == "DaemonSet"]
    node: Any = doc
    for step in path:
        node = node[step]
    node[wrong_key] = True
    with pytest.raises(ValidationError, match=wrong_key):
        _validated(doc)


def test_no_rbac_and_the_service_account_is_the_pods(
    documents: list[dict[str, Any]], daemonset: Any
) -> None:
    assert not any("Role" in doc["kind"] for doc in documents)
    (account,) = [d for d in documents if d["kind"] == "ServiceAccount"]
    pod = daemonset.spec.template.spec
    assert pod.service_account_name == account["metadata"]["name"]
    assert pod.automount_service_account_token is False  # nothing to talk to the API with


def test_selector_matches_the_pod_labels(daemonset: Any) -> None:
    labels = daemonset.spec.template.metadata.labels
    assert daemonset.spec.selector.match_labels.items() <= labels.items()


def test_runs_on_every_node_whatever_its_taints(daemonset: Any) -> None:
    pod = daemonset.spec.template.spec
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [(None, "Exists", None)]
    assert pod.host_pid is True  # the engine reads the host's /proc


def _image_name(image: str) -> str:
    return image.rsplit("/", 1)[-1].split(":", 1)[0]


def test_init_container_is_the_loader_and_the_engine_is_privileged(daemonset: Any) -> None:
    pod = daemonset.spec.template.spec
    (loader,) = pod.init_containers
    (engine,) = pod.containers
    assert _image_name(loader.image) == f"{IMAGE_PREFIX}-loader"
    assert _image_name(engine.image) == f"{IMAGE_PREFIX}-engine"
    assert tuple(loader.command) == ENTRYPOINTS["loader"]
    assert tuple(engine.command) == ENTRYPOINTS["engine"]
    assert engine.security_context.privileged is True
    assert not loader.security_context.privileged
    assert loader.security_context.capabilities.drop == ["ALL"]
    for container in (loader, engine):
        resources = container.resources
        assert {"cpu", "memory"} <= set(resources.requests) and {"cpu", "memory"} <= set(
            resources.limits
        ), container.name


def test_every_mount_has_a_volume_and_host_paths_are_the_intended_ones(daemonset: Any) -> None:
    pod = daemonset.spec.template.spec
    volumes = {volume.name: volume for volume in pod.volumes}
    used = set()
    for container in [*pod.init_containers, *pod.containers]:
        for mount in container.volume_mounts:
            assert mount.name in volumes, f"{container.name}: {mount.name} has no volume"
            used.add(mount.name)
    assert used == set(volumes), f"unused volumes: {set(volumes) - used}"
    host_paths = {name: v.host_path.path for name, v in volumes.items() if v.host_path}
    assert host_paths == EXPECTED_HOST_PATHS
    (engine,) = pod.containers
    mounts = {m.mount_path: (m.name, bool(m.read_only)) for m in engine.volume_mounts}
    assert ENGINE_MOUNTS.items() <= mounts.items()
    (loader,) = pod.init_containers
    loader_mounts = {m.mount_path: (m.name, bool(m.read_only)) for m in loader.volume_mounts}
    # The loader reads the host under --host-root and writes only the state directory.
    assert loader_mounts[STATE_DIR] == ("state", False)
    for path, (name, read_only) in loader_mounts.items():
        if path.startswith(HOST_ROOT + "/"):
            assert read_only and host_paths[name] == path.removeprefix(HOST_ROOT), path


def _click_command(*names: str) -> click.Command | None:
    from runtime.engine.cli import main

    command: click.Command = main
    for name in names:
        if not isinstance(command, click.Group) or name not in command.commands:
            return None
        command = command.commands[name]
    return command


def _option_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_container_args_are_the_real_flags(daemonset: Any) -> None:
    pod = daemonset.spec.template.spec
    (loader,) = pod.init_containers
    (engine,) = pod.containers
    install = _click_command("driver", "install")
    if install is None:
        given = {arg for arg in loader.args if arg.startswith("--")}
        assert given <= FALLBACK_LOADER_FLAGS
    else:
        # Parsed by the command itself (not run): an unknown flag or a missing value fails.
        install.make_context("install", list(loader.args))
    run = _click_command("run")
    assert run is not None
    run.make_context("run", list(engine.args))
    assert _option_value(loader.args, "--host-root") == HOST_ROOT
    assert "--download-only" in loader.args
    assert _option_value(loader.args, "--state-dir").startswith(STATE_DIR + "/")


def _config_map(documents: list[dict[str, Any]]) -> dict[str, str]:
    (doc,) = [d for d in documents if d["kind"] == "ConfigMap"]
    data = doc["data"]
    assert isinstance(data, dict)
    return data


def test_the_config_map_is_what_the_engine_and_the_loader_accept(
    documents: list[dict[str, Any]], daemonset: Any, tmp_path: Path
) -> None:
    data = _config_map(documents)
    config = parse_config(yaml.safe_load(data["engine.yaml"]), "ConfigMap engine.yaml")
    assert config.loader.repos and config.loader.public_key
    pod = daemonset.spec.template.spec
    (engine,) = pod.containers
    (config_volume,) = [v for v in pod.volumes if v.config_map is not None]
    assert config_volume.config_map.name == _config_map_name(documents)
    # Each file the config names is in the image or mounted from the ConfigMap.
    mounted = {m.mount_path: m.sub_path for m in engine.volume_mounts if m.sub_path}
    assert mounted[_option_value(engine.args, "--config")] == "engine.yaml"
    local_paths = []
    for rules in config.rules_files:
        if str(rules) in mounted:
            key = mounted[str(rules)]
            assert key in data
            local_paths.append(tmp_path / key)
            local_paths[-1].write_text(data[key])
        else:
            in_image = Path(str(rules).replace(f"{APP_DIR}/", f"{REPO_ROOT}/", 1))
            assert in_image.is_file(), rules
            local_paths.append(in_image)
    # The engine loads what the init container handed over: `driver: auto` finds
    # rtcap-driver.json in loader.dest, where `install --download-only` writes it (no
    # --dest flag overrides that folder), inside the state mount both containers share.
    (loader,) = pod.init_containers
    assert "--download-only" in loader.args and "--dest" not in loader.args
    assert config.driver == "auto" and config.probe is None and config.driver_file is None
    dest = config.loader.dest
    assert dest is not None and str(dest).startswith(STATE_DIR + "/")
    for container in (loader, engine):
        mounts = {m.mount_path: m.name for m in container.volume_mounts}
        assert mounts[STATE_DIR] == "state", container.name
    validate = subprocess.run(
        [sys.executable, "-m", "runtime.engine.cli", "validate",
         *(arg for path in local_paths for arg in ("--rules", str(path)))],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert validate.returncode == 0, validate.stderr


def _config_map_name(documents: list[dict[str, Any]]) -> str:
    (doc,) = [d for d in documents if d["kind"] == "ConfigMap"]
    return str(doc["metadata"]["name"])
