"""Farm images: each builder image with driverkit inside, and getting them onto every node.

A farm task builds in its suite's builder (the kernel's own compiler) and then signs and
publishes, so the image it runs is the builder plus driverkit on a Python of its own
(`templates/Dockerfile.farm.j2`). The tag hashes the builder's tag, the rendered
Dockerfile and every file copied in, so any edit to driverkit yields a new tag and the
farm never runs stale code under an old name.

Nodes get the images either from a registry the user has (`--registry`: pushed once,
pulled by each node's daemon) or, with none, by `distribute`: `docker save` from this
daemon streamed into `docker load` of each node's, skipped where the node already has the
same image id.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from driverkit import PROJECT_ROOT
from driverkit.cache import default_cache_dir
from driverkit.containers import ContainerEngine
from driverkit.errors import ContainerEngineError, UsageError
from driverkit.images import (
    _build_lock,
    _host_lock,
    ensure_debian_base,
    ensure_plan_image,
    host_apt_buildargs,
)
from driverkit.plan import BuildPlan
from driverkit.render import _environment
from driverkit.runtime_images import (
    DEBIAN_PACKAGE_OF,
    VERSION_CHECK_SCRIPT,
    host_side_requirements,
)
from driverkit.targets.base import Mirrors
from driverkit.targets.debian import suite_named
from driverkit.valuerules import IMAGE_REFERENCE

log = logging.getLogger(__name__)

TEMPLATE: Final = "Dockerfile.farm.j2"
IMAGE_PREFIX: Final = "driverkit-farm"
KIND_LABEL: Final = "io.driverkit.farm-image"
APP_DIR: Final = "/opt/driverkit/app"
PYTHON_ROOT: Final = "/opt/driverkit/python"
# Trixie's Python and packages meet pyproject's lower bounds (bookworm's do not: see
# runtime_images.DEFAULT_SUITE).
PYTHON_SUITE: Final = "trixie"
# The build side's extra packages a task imports (docker stays out: a task talks to no
# daemon), by their Debian names.
BUILD_PACKAGE_OF: Final[Mapping[str, str]] = {
    "jinja2": "python3-jinja2",
    "rich": "python3-rich",
    "pyelftools": "python3-pyelftools",
    "boto3": "python3-boto3",
}
TASK_EXTRAS: Final = ("jinja2>=3.1", "rich>=13", "pyelftools>=0.30", "boto3>=1.28")
# The host verifier loads probes through libbpf's shared library (drivercore.libbpf).
EXTRA_PACKAGES: Final = ("libbpf1",)
# What a task runs: everything `pip install .[build]` would install of these, plus the
# driver sources and templates the build renders, and the committed catalogs.
APP_TREES: Final = ("drivercore", "driverkit", "templates", "kernels", "driver")
APP_SUFFIXES: Final = frozenset({".py", ".j2", ".c", ".h", ".json", ".yaml"})
APP_NAMES: Final = frozenset({"Makefile", "Kbuild", "VERSION"})
# The Python's own loader and library directory, per architecture: the wrapper runs the
# interpreter through this loader so the builder's libc is never mixed in.
LOADERS: Final[Mapping[str, tuple[str, str]]] = {
    "amd64": ("x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
    "arm64": ("aarch64-linux-gnu", "ld-linux-aarch64.so.1"),
}


def _app_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for top in APP_TREES:
        for path in sorted((PROJECT_ROOT / top).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            if path.suffix in APP_SUFFIXES or path.name in APP_NAMES:
                files[f"app/{path.relative_to(PROJECT_ROOT).as_posix()}"] = path
    return files


def _wrapper(arch: str) -> bytes:
    triplet, loader = LOADERS[arch]
    lib = f"{PYTHON_ROOT}/usr/lib/{triplet}"
    # PYTHONHOME points the interpreter at its own tree; `driverkit matrix task` drops
    # both variables again before it starts a build, so the compiler never sees them.
    return (
        "#!/bin/sh\n"
        "# driverkit on the farm image's own Python (see Dockerfile.farm.j2).\n"
        f"export PYTHONHOME={PYTHON_ROOT}/usr PYTHONPATH={APP_DIR} PYTHONNOUSERSITE=1\n"
        f"exec {lib}/{loader} --library-path {lib} {PYTHON_ROOT}/usr/bin/python3 "
        "-c 'import sys; from driverkit.entry import main; sys.exit(main())' \"$@\"\n"
    ).encode()


def build_context(arch: str) -> dict[str, bytes | Path]:
    from driverkit.render import TEMPLATES_DIR

    if arch not in LOADERS:
        raise UsageError(f"farm images exist for {', '.join(LOADERS)}, not {arch!r}")
    return {
        VERSION_CHECK_SCRIPT: TEMPLATES_DIR / VERSION_CHECK_SCRIPT,
        "driverkit-farm": _wrapper(arch),
        **_app_files(),
    }


def _packages() -> tuple[str, ...]:
    host = [DEBIAN_PACKAGE_OF[name] for name, _ in host_side_requirements()]
    return ("python3", *host, *BUILD_PACKAGE_OF.values(), *EXTRA_PACKAGES)


def render_farm_dockerfile(builder_image: str) -> str:
    if not IMAGE_REFERENCE.allows(builder_image):
        raise UsageError(f"builder image {builder_image!r} is not an image reference")
    suite = suite_named(PYTHON_SUITE)
    assert suite is not None  # a fixed row of the suite table
    requirements = tuple(
        f"{name}>={minimum}" if minimum else name for name, minimum in host_side_requirements()
    ) + TASK_EXTRAS
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            builder_image=builder_image,
            python_base=f"debian:{PYTHON_SUITE}",
            python_suite=PYTHON_SUITE,
            suite=PYTHON_SUITE,
            has_updates=suite.has_updates,
            python_root=PYTHON_ROOT,
            packages=_packages(),
            requirements=requirements,
            app_dir=APP_DIR,
        )
    )


def farm_image_tag(builder_image: str, arch: str) -> str:
    """`driverkit-farm-<builder name>:<hash12>` of the builder tag, the rendered
    Dockerfile and every context file."""
    hasher = hashlib.sha256(builder_image.encode())
    hasher.update(render_farm_dockerfile(builder_image).encode())
    for name, content in sorted(build_context(arch).items()):
        hasher.update(f"\0{name}\0".encode())
        data = content.read_bytes() if isinstance(content, Path) else content
        hasher.update(hashlib.sha256(data).digest())
    name = builder_image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    name = name.removeprefix("driverkit-builder-")
    return f"{IMAGE_PREFIX}-{name}:{hasher.hexdigest()[:12]}"


def farm_image_ref(plan: BuildPlan, registry: str | None) -> str:
    """The name a task's engine runs: the farm tag, under the registry when there is one."""
    tag = farm_image_tag(plan.builder_image, plan.arch)
    return f"{registry}/{tag}" if registry else tag


def ensure_farm_image(
    engine: ContainerEngine, plan: BuildPlan, mirrors: Mirrors, cache_dir: Path | None = None
) -> str:
    """The plan's farm image on this daemon, building the builder under it if missing."""
    tag = farm_image_tag(plan.builder_image, plan.arch)
    if engine.image_exists(tag):
        return tag
    builder = ensure_plan_image(engine, plan, mirrors, cache_dir)
    cache = cache_dir or default_cache_dir()
    with _build_lock, _host_lock(cache):
        if engine.image_exists(tag):
            return tag
        log.info("building farm image %s on %s", tag, builder)
        ensure_debian_base(engine, f"debian:{PYTHON_SUITE}", PYTHON_SUITE, plan.base_from,
                           mirrors, cache_dir=cache)
        engine.build_image(
            render_farm_dockerfile(builder),
            tag,
            buildargs={"DEBIAN_MIRROR": mirrors.debian, **host_apt_buildargs()},
            labels={KIND_LABEL: builder},
            context=build_context(plan.arch),
        )
    return tag


def ensure_farm_images(
    engine: ContainerEngine, plans: Iterable[BuildPlan], mirrors: Mirrors,
    cache_dir: Path | None = None,
) -> list[str]:
    """One farm image per distinct builder among `plans`, in a stable order."""
    firsts: dict[tuple[str, str], BuildPlan] = {}
    for plan in plans:
        firsts.setdefault((plan.builder_image, plan.arch), plan)
    return [ensure_farm_image(engine, firsts[key], mirrors, cache_dir) for key in sorted(firsts)]


def _client(base_url: str) -> Any:
    import docker

    try:
        client = docker.DockerClient(base_url=base_url, timeout=600)
        client.ping()
    except Exception as exc:
        raise ContainerEngineError(
            f"node {base_url}: Docker daemon not reachable ({exc.__class__.__name__})"
        ) from None
    return client


def distribute(source: Any, tags: Sequence[str], nodes: Sequence[str],
               log_line: Callable[[str], None] = log.info) -> list[str]:
    """Load each image into each node's daemon (streamed `save` -> `load`); a node that
    already has the same image id is skipped. `source` is a docker SDK client."""
    done: list[str] = []
    for node in nodes:
        client = _client(node)
        try:
            for tag in tags:
                wanted = source.images.get(tag).id
                try:
                    have = client.images.get(tag).id
                except Exception:
                    have = None
                if have == wanted:
                    done.append(f"{node}: {tag} present")
                    continue
                client.api.load_image(source.api.get_image(tag, chunk_size=1 << 20))
                if client.images.get(tag).id != wanted:
                    raise ContainerEngineError(f"node {node}: loading {tag} gave another image")
                done.append(f"{node}: {tag} loaded")
                log_line(done[-1])
        finally:
            client.close()
    return done


def push(source: Any, tags: Sequence[str], registry: str,
         log_line: Callable[[str], None] = log.info) -> list[str]:
    """Tag each image under `registry` and push it; returns the registry names."""
    pushed = []
    for tag in tags:
        repository, _, version = tag.partition(":")
        image = source.images.get(tag)
        image.tag(f"{registry}/{repository}", version)
        errors = [
            str(line.get("error"))
            for line in source.images.push(f"{registry}/{repository}", version, stream=True,
                                           decode=True)
            if isinstance(line, dict) and line.get("error")
        ]
        if errors:
            raise ContainerEngineError(f"pushing {tag} to {registry} failed: {errors[-1]}")
        pushed.append(f"{registry}/{tag}")
        log_line(f"pushed {pushed[-1]}")
    return pushed
