"""The resolved build plan: everything a processor needs, computed without I/O."""

from __future__ import annotations

from dataclasses import dataclass

from driverkit.kernelrelease import KernelRelease
from driverkit.targets.base import ArtifactKernel, BuilderSpec

DRIVER_NAME = "rtcap"


@dataclass(frozen=True)
class BuildPlan:
    kernel: KernelRelease
    kernel_version: str  # as given: a build number ("1") or the whole `uname -v`
    arch: str  # "amd64" | "arm64"
    target: str  # registered target name, e.g. "debian"
    artifact: ArtifactKernel  # target id, release and version as they appear in file names
    gcc: str
    builder: BuilderSpec
    builder_image: str  # image tag the processor runs, content-hashed by driverkit.images
    headers: tuple[str, ...]  # candidate header package URLs, most likely first
    driver_name: str
    driver_version: str
    build_kmod: bool = True
    build_probe: bool = True

    def artifact_stem(self) -> str:
        a = self.artifact
        return f"{self.driver_name}_{a.target_id}_{a.kernel_release}_{a.kernel_version}"

    @property
    def kmod_name(self) -> str:
        return self.artifact_stem() + ".ko"

    @property
    def probe_name(self) -> str:
        return self.artifact_stem() + ".o"

    def artifact_names(self) -> tuple[str, ...]:
        names: list[str] = []
        if self.build_kmod:
            names.append(self.kmod_name)
        if self.build_probe:
            names.append(self.probe_name)
        return tuple(names)


def core_probe_name(driver_name: str = DRIVER_NAME) -> str:
    """The CO-RE probe is built once per driver version and loads on any BTF kernel."""
    return f"{driver_name}_core.o"
