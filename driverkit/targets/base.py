"""What a distro target is: one frozen row of data.

Resolution is pure: a target turns a parsed kernel release into header URLs, a GCC
version, a builder image spec and artifact names without touching the network. Checking
which candidate URL exists is a separate I/O step (driverkit.headers, driverkit.repometa),
chosen by the target's `header_lookup`.

A family member is its parent row with only what differs replaced (`derive`), so nothing
is inherited by accident and everything a target does is visible in its row. What is
target-specific (release pattern, header URLs, gcc pick, builder) is a function the row
names; naming comes from `drivercore.targets`, keyed by the target id, so the host-side
loader names artifacts with the same function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from drivercore.kernelrelease import KernelRelease
from drivercore.naming import ArtifactKernel
from drivercore.targets import artifact_kernel
from driverkit.errors import UsageError
from driverkit.gcc import (
    DEFAULT_GCC_RULE,
    debian_image,
    default_gcc,
    gcc_major,
    installable_gcc,
    shipped_gccs_text,
)


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
    # (prefix, replacement) pairs: a repository URL starting with a prefix is fetched from
    # the replacement instead (--repo-mirror). Resolution never reads them: plans name the
    # distro's own URLs, and only the fetch (driverkit.netroutes) goes elsewhere.
    repo_mirrors: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BuilderSpec:
    """Which builder image a kernel needs: a Debian suite's image and one gcc-N of it.

    Nothing in it depends on the target: headers are downloaded and unpacked on the host
    and mounted into the builder, so every target whose kernel wants a (suite, gcc) shares
    that one image.
    """

    base_image: str  # e.g. "debian:bookworm"
    distro_release: str  # e.g. "bookworm"
    gcc: str  # the gcc-N major the suite installs, e.g. "12"
    # The gcc the kernel wants (its target's rule, or --gcc-version), e.g. "4.8.5"; "" for
    # a builder made by hand (the CO-RE builder). Its major differs from `gcc` only when no
    # builder suite ships it (`substituted`). Not part of the image: the tag ignores it,
    # build manifests record it with the builder.
    wanted_gcc: str = ""

    @property
    def substituted(self) -> bool:
        """True when the kernel wants a gcc no builder ships and `gcc` stands in for it
        (the build may fail)."""
        return bool(self.wanted_gcc) and gcc_major(self.wanted_gcc) != self.gcc


class HeaderLookup(StrEnum):
    """How the network step turns a target's candidate URLs into exact packages."""

    DEBIAN_ARCHIVE = "debian-archive"  # the signed archive index (driverkit.debarchive)
    MIRROR_LISTS = "mirror-lists"  # mirror.list -> repodata -> kernel-devel (Amazon)
    SUSE_PAIR = "suse-pair"  # flavor devel rpm + noarch kernel-devel
    UBUNTU_PAIR = "ubuntu-pair"  # flavor headers + shared _all headers
    FLATCAR_RELEASE = "flatcar-release"  # a release's package list names the kernel
    FIRST_RPM = "first-rpm"  # the first kernel-devel rpm that exists
    FIRST_EXISTING = "first-existing"  # the first candidate that exists


class HeaderFormat(StrEnum):
    """Which header layout the host unpacks for the build (the builder image is the same
    for every layout). Each layout comes packaged one way, so a target states only its
    layout."""

    DEBIAN = "debian"
    UBUNTU = "ubuntu"
    RPM = "rpm"
    ARCH = "arch"
    VANILLA = "vanilla"

    @property
    def package_format(self) -> str:
        """How headers of this layout are packaged: deb, rpm or tar."""
        return _PACKAGE_FORMATS[self]


_PACKAGE_FORMATS = {
    HeaderFormat.DEBIAN: "deb",
    HeaderFormat.UBUNTU: "deb",
    HeaderFormat.RPM: "rpm",
    HeaderFormat.ARCH: "tar",
    HeaderFormat.VANILLA: "tar",
}


ReleasePattern = Callable[[KernelRelease], bool]
# (release, `uname -v` text or build number, mirrors, arch) -> candidate URLs, likeliest first.
HeaderUrlRule = Callable[[KernelRelease, str, Mirrors, str], tuple[str, ...]]
# (wanted gcc, release) -> builder spec; `Target.builder` records the wanted gcc in it.
BuilderRule = Callable[[str, KernelRelease], BuilderSpec]


def never_inferred(kr: KernelRelease) -> bool:
    """For targets only ever chosen with --target (their releases look like others')."""
    return False


def no_gcc_pick(kr: KernelRelease) -> str | None:
    return None


@dataclass(frozen=True)
class GccRule:
    """A target's gcc: `pick` answers for the kernels it knows, driverkit's default for the
    rest (`replaces_default` when `pick` always answers). `described` is the text of
    `driverkit targets`; `reason` says, for a kernel `pick` answers, why it wants that gcc
    (shown when no builder ships it)."""

    pick: Callable[[KernelRelease], str | None] = no_gcc_pick
    described: str = ""
    replaces_default: bool = False
    reason: Callable[[KernelRelease], str | None] = no_gcc_pick


DEFAULT_GCC = GccRule()


def nearest_suite_builder(gcc: str, kr: KernelRelease) -> BuilderSpec:
    """The Debian suite image that ships the gcc (or its nearest): the default builder."""
    suite, installable = installable_gcc(gcc)
    return BuilderSpec(debian_image(suite), suite, installable)


@dataclass(frozen=True)
class Target:
    """One distro target. `id` is its name everywhere: --target, listings, artifact names."""

    id: str
    family: str  # the distro family it belongs to, as `driverkit targets` lists it
    header_format: HeaderFormat  # which header layout the host unpacks; says the packaging
    header_source: str  # one line for `driverkit targets`
    candidate_urls: HeaderUrlRule
    release_pattern: ReleasePattern = never_inferred  # True: the release alone says it is ours
    gcc: GccRule = DEFAULT_GCC
    builder_rule: BuilderRule = nearest_suite_builder
    header_lookup: HeaderLookup = HeaderLookup.FIRST_EXISTING

    @property
    def name(self) -> str:
        return str(self.id)

    @property
    def package_format(self) -> str:
        return self.header_format.package_format

    def matches(self, kr: KernelRelease) -> bool:
        """True when the release string alone says it belongs to this target."""
        return self.release_pattern(kr)

    def gcc_version(self, kr: KernelRelease) -> str:
        return self.gcc.pick(kr) or default_gcc(kr)

    def gcc_rule(self) -> str:
        """Human description of how gcc is chosen, for `driverkit targets`."""
        if self.gcc.replaces_default:
            return self.gcc.described
        if self.gcc.described:
            return f"{self.gcc.described}; otherwise {DEFAULT_GCC_RULE}"
        return DEFAULT_GCC_RULE

    def gcc_reason(self, kr: KernelRelease) -> str:
        """Why the kernel wants `gcc_version(kr)`, in a few words."""
        if self.gcc.pick(kr) is not None:
            return self.gcc.reason(kr) or f"{self.name}'s rule: {self.gcc.described}"
        return f"driverkit's default for {kr.version}.{kr.patch_level}"

    def builder(self, kr: KernelRelease, forced_gcc: str | None = None) -> BuilderSpec:
        """The builder for `kr`: with the gcc its rule wants, or `forced_gcc` (the user's
        --gcc-version), which some builder suite must ship. A wanted gcc no suite ships
        gets the nearest one (`BuilderSpec.substituted`); a forced one is refused."""
        wanted = forced_gcc or self.gcc_version(kr)
        spec = dataclasses.replace(self.builder_rule(wanted, kr), wanted_gcc=wanted)
        if forced_gcc and spec.substituted:
            raise UsageError(
                f"--gcc-version {forced_gcc}: no builder ships it; builders have gcc "
                f"{shipped_gccs_text()}"
            )
        return spec

    def gcc_note(self, kr: KernelRelease, spec: BuilderSpec) -> str:
        """One line for a builder standing in with another gcc; "" when it has the one
        the kernel wants."""
        if not spec.substituted:
            return ""
        return (
            f"wants gcc {spec.wanted_gcc} ({self.gcc_reason(kr)}); no builder ships it: "
            f"building with gcc {spec.gcc} ({spec.distro_release}), which may fail"
        )

    def header_urls(
        self, kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str = "amd64"
    ) -> tuple[str, ...]:
        """Candidate header package URLs, most likely first. Never touches the network.

        `arch` (amd64|arm64) picks the mirror tree; releases that name their architecture
        (`.x86_64`, `-arm64`) win over it.
        """
        return self.candidate_urls(kr, kernel_version, mirrors, arch)

    def artifact_kernel(self, kr: KernelRelease, kernel_version: str) -> ArtifactKernel:
        """Target id, release and version as they appear in artifact names (falcoctl fix-ups,
        shared with the host side through drivercore.targets)."""
        return artifact_kernel(self.id, kr, kernel_version)


def derive(parent: Target, **differences: Any) -> Target:
    """A family member: the parent's row with only `differences` replaced."""
    return dataclasses.replace(parent, **differences)
