"""The contract every distro target implements.

Resolution is pure: a target turns a parsed kernel release into header URLs, a GCC
version, a builder image spec and an artifact target id without touching the network.
Checking which candidate URL exists is a separate I/O step (driverkit.headers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from drivercore.kernelrelease import KernelRelease
from drivercore.naming import ArtifactKernel


@dataclass(frozen=True)
class Mirrors:
    """Package mirror roots, injected so resolution stays pure and testable offline.

    Debian's root comes from the host's apt sources (see driverkit.mirrors) rather than
    being written into the code.
    """

    debian: str = ""
    debian_security: str = ""
    ubuntu: tuple[str, ...] = ()
    # GnuPG keyring(s), os.pathsep-separated, that a Debian suite's InRelease must carry a
    # good signature from: the trust anchor of every header package's checksum chain.
    debian_keyring: str = ""


@dataclass(frozen=True)
class BuilderSpec:
    """Which builder image a kernel needs: base distro image plus compiler."""

    family: str  # template family: debian, ubuntu, centos, amazonlinux, ...
    base_image: str  # e.g. "debian:bookworm"
    distro_release: str  # e.g. "bookworm"
    gcc: str  # e.g. "12"


class Target:
    """A distro target. Subclasses override only what differs from their family parent."""

    name: ClassVar[str]
    family: ClassVar[str]
    package_format: ClassVar[str]  # "deb", "rpm", "tar", "none"
    header_source: ClassVar[str] = ""  # one line for `driverkit targets`

    def matches(self, kr: KernelRelease) -> bool:
        """True when the release string alone says it belongs to this target."""
        raise NotImplementedError

    def gcc_version(self, kr: KernelRelease) -> str:
        raise NotImplementedError

    def gcc_rule(self) -> str:
        """Human description of how gcc is chosen, for `driverkit targets`."""
        raise NotImplementedError

    def builder(self, kr: KernelRelease) -> BuilderSpec:
        raise NotImplementedError

    def header_urls(
        self, kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str = "amd64"
    ) -> tuple[str, ...]:
        """Candidate header package URLs, most likely first. Never touches the network.

        `arch` (amd64|arm64) picks the mirror tree; releases that name their architecture
        (`.x86_64`, `-arm64`) win over it.
        """
        raise NotImplementedError

    def artifact_kernel(self, kr: KernelRelease, kernel_version: str) -> ArtifactKernel:
        """Target id, release and version as they appear in artifact names (falcoctl fix-ups)."""
        raise NotImplementedError
