"""Builder images: content-hashed tags, build-if-missing, list, prune.

The tag is a pure function of the rendered Dockerfile and its inputs, so an unchanged
builder is never rebuilt and any template edit yields a new tag. With
`base_from="debootstrap"` the FROM image (`debian:<suite>`) is produced locally by
debootstrapping the suite into a cached rootfs tarball and `docker import`ing it under
that same name; the Dockerfile and the build that follows are the very same.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from driverkit.cache import default_cache_dir
from driverkit.containers import ContainerEngine
from driverkit.errors import ContainerEngineError, UsageError
from driverkit.plan import BuildPlan
from driverkit.render import render_dockerfile
from driverkit.targets.base import BuilderSpec, Mirrors

log = logging.getLogger(__name__)

# 2: BuilderSpec.family became header_format. 3: one builder per (suite, gcc): the header
# format left the spec and the name (headers are unpacked on the host, so rpm, ubuntu and
# arch targets were getting identical images under other names), and the hash covers
# only what makes the image (not the kernel's wanted gcc).
TAG_FORMAT = 3
IMAGE_PREFIX = "driverkit-builder"
KIND_LABEL = "io.driverkit.builder"
_build_lock = threading.Lock()  # one image build at a time: the CPU is shared


def builder_image_tag(spec: BuilderSpec, base_from: str = "registry") -> str:
    """`driverkit-builder-bookworm-gcc12:<hash12>`, from the render and its inputs."""
    dockerfile = render_dockerfile(spec, base_from)
    payload = json.dumps(
        {
            "format": TAG_FORMAT,
            "image": {
                "base_image": spec.base_image,
                "suite": spec.distro_release,
                "gcc": spec.gcc,
            },
            "base_from": base_from,
            "dockerfile": dockerfile,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
    gcc = spec.gcc.replace(".", "")
    return f"{IMAGE_PREFIX}-{spec.distro_release}-gcc{gcc}:{digest}"


def host_apt_buildargs() -> dict[str, str]:
    """Carry the host apt's Check-Valid-Until into the builder (see the template)."""
    if shutil.which("apt-config") is None:
        return {}
    done = subprocess.run(
        ["apt-config", "dump", "Acquire::Check-Valid-Until"],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("Acquire::Check-Valid-Until "):
            value = line.split(None, 1)[1].strip().strip(";").strip('"').lower()
            if value in ("false", "0", "no"):
                return {"APT_CHECK_VALID_UNTIL": "false"}
    return {}


def _debootstrap_rootfs(suite: str, mirror: str, cache_dir: Path) -> Path:
    """A minbase rootfs tarball of `suite`, built once and kept under the cache."""
    tarball = cache_dir / "rootfs" / f"debian-{suite}-minbase.tar"
    if tarball.is_file():
        return tarball
    if shutil.which("debootstrap") is None:
        raise ContainerEngineError(
            "--base-from debootstrap needs `debootstrap` (apt-get install debootstrap)"
        )
    tarball.parent.mkdir(parents=True, exist_ok=True)
    log.info("debootstrapping a %s base from %s into %s", suite, mirror, tarball)
    root = Path(tempfile.mkdtemp(prefix=f"debootstrap-{suite}-", dir=tarball.parent))
    try:
        # The host's keyring may predate the keys newer suites are signed with; the
        # suite is fetched from the mirror the host already trusts for apt.
        cmd = ["debootstrap", "--variant=minbase", suite, str(root), mirror]
        if not _keyring_verifies(suite):
            cmd.insert(1, "--no-check-gpg")
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.splitlines()[-5:] or done.stdout.splitlines()[-5:])
            raise ContainerEngineError(f"debootstrap {suite} from {mirror} failed:\n{tail}")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{tarball.name}.", dir=tarball.parent)
        os.close(fd)
        try:
            subprocess.run(
                ["tar", "-C", str(root), "--numeric-owner", "-cf", tmp_name, "."], check=True
            )
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, tarball)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tarball


def _keyring_verifies(suite: str) -> bool:
    # Which suites the host's debian-archive-keyring checks: a column of the suite table.
    from driverkit.targets.debian import keyring_verifies

    return keyring_verifies(suite)


def ensure_base(
    engine: ContainerEngine,
    spec: BuilderSpec,
    base_from: str,
    mirrors: Mirrors,
    cache_dir: Path | None = None,
) -> None:
    ensure_debian_base(
        engine, spec.base_image, spec.distro_release, base_from, mirrors, cache_dir=cache_dir
    )


def ensure_debian_base(
    engine: ContainerEngine,
    base_image: str,
    suite: str,
    base_from: str,
    mirrors: Mirrors,
    *,
    cache_dir: Path | None = None,
) -> None:
    """`base_image` (the name a FROM line uses) present locally: with debootstrap, a
    minbase of `suite` imported under that name. Builders and the runtime images share it."""
    if engine.image_exists(base_image):
        return
    if base_from == "registry":
        return  # docker build pulls FROM itself
    if not mirrors.debian:
        raise UsageError("--base-from debootstrap needs a Debian mirror (none found in /etc/apt)")
    tarball = _debootstrap_rootfs(suite, mirrors.debian, cache_dir or default_cache_dir())
    engine.import_image(tarball, base_image)


def ensure_plan_image(
    engine: ContainerEngine,
    plan: BuildPlan,
    mirrors: Mirrors | None = None,
    cache_dir: Path | None = None,
) -> str:
    """The plan's builder image, built from the template only if missing and not forced.

    The tag is the one the plan carries; it is not hashed again here.
    """
    if engine.image_exists(plan.builder_image):
        log.debug("builder image %s is present", plan.builder_image)
        return plan.builder_image
    if plan.builder_image_forced:
        # Only a forced name that happens to be the template's may be built from it.
        template = builder_image_tag(plan.builder, plan.base_from)
        if template != plan.builder_image:
            raise ContainerEngineError(
                f"builder image {plan.builder_image} does not exist (the template renders "
                f"{template})"
            )
    return ensure_image(
        engine, plan.builder, plan.base_from, mirrors, cache_dir, tag=plan.builder_image
    )


def ensure_image(
    engine: ContainerEngine,
    spec: BuilderSpec,
    base_from: str = "registry",
    mirrors: Mirrors | None = None,
    cache_dir: Path | None = None,
    *,
    tag: str | None = None,
) -> str:
    """The builder image's tag, building it (and its debootstrap base) only if missing.

    `tag` is the one a plan already carries; without it the template's tag is computed.
    """
    if tag is None:
        tag = builder_image_tag(spec, base_from)
    if engine.image_exists(tag):
        return tag
    if mirrors is None:
        from driverkit.mirrors import host_mirrors

        mirrors = host_mirrors()
    with _build_lock, _host_lock(cache_dir or default_cache_dir()):
        if engine.image_exists(tag):  # another thread or process built it while we waited
            return tag
        log.info("building builder image %s (base from %s)", tag, base_from)
        base_was_local = engine.image_exists(spec.base_image)
        ensure_base(engine, spec, base_from, mirrors, cache_dir)
        try:
            engine.build_image(
                render_dockerfile(spec, base_from),
                tag,
                buildargs={"DEBIAN_MIRROR": mirrors.debian, **host_apt_buildargs()},
                labels={
                    KIND_LABEL: "1",
                    "io.driverkit.base-from": base_from,
                    "io.driverkit.suite": spec.distro_release,
                    "io.driverkit.gcc": spec.gcc,
                },
            )
        except ContainerEngineError as exc:
            if base_from == "registry" and not base_was_local:
                raise ContainerEngineError(
                    f"building {tag} needs {spec.base_image} from a registry, which failed "
                    f"({str(exc).splitlines()[0][:160]}); "
                    "without registry access use --base-from debootstrap"
                ) from exc
            raise
    return tag


@contextlib.contextmanager
def _host_lock(cache_dir: Path) -> Iterator[None]:
    """One image build per host, across processes (pytest-xdist workers, parallel CLIs)."""
    lock_path = cache_dir / "locks" / "image-build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def list_images(engine: ContainerEngine) -> list[str]:
    """One line per builder image: tag, short id, size, creation time."""
    lines = []
    for info in engine.list_images(KIND_LABEL):
        lines.append(
            f"{info.tag}\t{info.image_id.removeprefix('sha256:')[:12]}\t"
            f"{info.size / 1e6:.0f} MB\t{info.created[:19]}"
        )
    return lines


def prune_images(engine: ContainerEngine, keep: Sequence[str] = ()) -> list[str]:
    """Remove builder images no current template renders to (or all but `keep`).

    Without `keep`, an image is kept when its tag equals what builder_image_tag
    gives today for its labels' suite and gcc, i.e. only stale builders go.
    """
    removed: list[str] = []
    for info in engine.list_images(KIND_LABEL):
        if info.tag in keep:
            continue
        if not keep and _is_current(info.tag, info.labels):
            continue
        engine.remove_image(info.tag)
        removed.append(info.tag)
    return removed


def _is_current(tag: str, labels: dict[str, str] | object) -> bool:
    if not isinstance(labels, dict):
        return False
    suite = labels.get("io.driverkit.suite")
    gcc = labels.get("io.driverkit.gcc")
    base_from = labels.get("io.driverkit.base-from", "registry")
    if not suite or not gcc:
        return False
    try:
        spec = BuilderSpec(f"debian:{suite}", suite, gcc)
        current = builder_image_tag(spec, base_from)
    except UsageError:
        return False
    return current == tag
