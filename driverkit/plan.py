"""The resolved build plan: everything a processor needs, computed without I/O.

The plan is the only carrier of per-kernel build facts: processors, the dry run and
`images build` read them from here rather than deriving them again.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivercore.kernelrelease import KernelRelease
from drivercore.naming import DRIVER_NAME, ArtifactKernel, artifact_stem, core_probe_file
from driverkit.errors import UsageError
from driverkit.targets.base import BuilderSpec
from driverkit.valuerules import (
    DRIVER_NAME as DRIVER_NAME_RULE,
)
from driverkit.valuerules import (
    DRIVER_VERSION,
    GCC_VERSION,
    IMAGE_REFERENCE,
    TextRule,
    shown,
)


@dataclass(frozen=True)
class BuildPlan:
    kernel: KernelRelease
    kernel_version: str  # as given: a build number ("1") or the whole `uname -v`
    arch: str  # "amd64" | "arm64"
    target: str  # registered target name, e.g. "debian"
    artifact: ArtifactKernel  # target id, release and version as they appear in file names
    gcc: str  # the builder's gcc-N; what the kernel wanted is `wanted_gcc`
    builder: BuilderSpec
    # The image the processor runs: hashed once at resolution (images.builder_image_tag)
    # from the builder and base_from, or the user's --builder-image; never re-derived.
    builder_image: str
    headers: tuple[str, ...]  # candidate header package URLs, most likely first
    driver_name: str
    driver_version: str
    build_kmod: bool = True
    build_probe: bool = True
    # A forced --builder-image is used as it is, never built from the template.
    builder_image_forced: bool = False
    # Where the builder's FROM image comes from, should the image have to be built.
    base_from: str = "registry"
    # Set when no builder ships the gcc the kernel wants and `gcc` stands in for it: one
    # line saying so (Target.gcc_note), for `resolve` and the build log.
    gcc_note: str = ""
    # The target's headers are kernel sources (kernel.org) that the build configures with
    # the kernel's .config and prepares; `kernel_config` is that .config, base64.
    from_sources: bool = False
    kernel_config: str = ""

    def __post_init__(self) -> None:
        # The option table checks what users give; a plan is also made by library callers
        # and by replacing fields, and its values become file names, paths and image tags.
        checks: tuple[tuple[str, str, TextRule], ...] = (
            ("driver name", self.driver_name, DRIVER_NAME_RULE),
            ("driver version", self.driver_version, DRIVER_VERSION),
            ("gcc version", self.gcc, GCC_VERSION),
            ("wanted gcc version", self.wanted_gcc, GCC_VERSION),
            ("builder image", self.builder_image, IMAGE_REFERENCE),
        )
        for what, value, rule in checks:
            if not rule.allows(value):
                raise UsageError(f"build plan: {what} {shown(value)} is not accepted; "
                                 f"use {rule.form}")

    @property
    def wanted_gcc(self) -> str:
        """The gcc the kernel wants (its target's rule or --gcc-version)."""
        return self.builder.wanted_gcc or self.gcc

    def require_kernel_config(self) -> None:
        """A kernel built from sources cannot be prepared without its .config."""
        if self.from_sources and not self.kernel_config:
            raise UsageError(
                f"kernel {self.kernel} ({self.target}) is built from kernel.org sources, "
                "which need the kernel's .config: pass --kernel-config /boot/config-"
                f"{self.kernel} (from that host) or kernelconfigdata in the config file"
            )

    def artifact_stem(self) -> str:
        return artifact_stem(self.driver_name, self.artifact)

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
    return core_probe_file(driver_name)
