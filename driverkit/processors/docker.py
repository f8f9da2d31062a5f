"""Docker processor: the build script runs in the builder image, network disabled.

Sources and the script are copied in (not mounted) so the container sees a snapshot;
headers are bind-mounted read-only at the same path as on the host; outputs are
copied out of /dk/out. The engine's context manager removes the container whatever
happens. The image is the one the plan names (see images.ensure_plan_image).
"""

from __future__ import annotations

import time
from pathlib import Path

from driverkit.containers import ContainerEngine, Mount
from driverkit.errors import BuildFailedError
from driverkit.images import ensure_plan_image
from driverkit.plan import BuildPlan
from driverkit.processors.base import BuildJob, ProcessorResult, failure_message
from driverkit.targets.base import Mirrors

CONTAINER_ROOT = "/dk"


class DockerProcessor:
    name = "docker"

    def __init__(
        self,
        engine: ContainerEngine,
        driver_dir: Path,
        *,
        mirrors: Mirrors,
        cache_dir: Path,
        make_jobs: int = 1,
    ):
        self.engine = engine
        self.driver_dir = driver_dir
        self.mirrors = mirrors
        self.cache_dir = cache_dir
        self.make_jobs = make_jobs

    def cancel_all(self) -> int:
        return self.engine.remove_all_live()

    def environment_ref(self, plan: BuildPlan) -> str:
        return f"docker:{plan.builder_image}"

    def run(self, job: BuildJob) -> ProcessorResult:
        image = ensure_plan_image(self.engine, job.plan, self.mirrors, self.cache_dir)
        image_id = self.engine.image_id(image)
        env = {"DK_ROOT": CONTAINER_ROOT, "DK_JOBS": str(self.make_jobs)}
        mounts = []
        if job.headers is not None:
            env["DK_KERNELDIR"] = str(job.headers.kernel_dir)
            mounts.append(Mount(job.headers.root, str(job.headers.root), read_only=True))
        started = time.monotonic()
        with self.engine.container(
            image, ["/bin/sh", f"{CONTAINER_ROOT}/build.sh"], mounts=mounts, env=env, network=False
        ) as container:
            container.copy_in({"dk/build.sh": job.script.encode(), "dk/driver": self.driver_dir})
            result = container.run(job.timeout_s)
            if result.exit_code != 0:
                raise BuildFailedError(failure_message(job.plan, result.exit_code, result.logs))
            container.copy_out(f"{CONTAINER_ROOT}/out", job.work_dir)
        return ProcessorResult(
            job.work_dir / "out", result.logs, image, image_id, time.monotonic() - started
        )
