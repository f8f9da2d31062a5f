"""Which driver to use on a host: an ordered list of candidates, each with its reason, so a
caller that fails to load the first can fall to the next and say why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from drivercore.naming import ArtifactKind
from runtime.loader.errors import DriverTypeRefusedError
from runtime.loader.identify import RING_BUFFER_SINCE, HostInfo
from runtime.loader.target import HostTarget


class DriverType(StrEnum):
    AUTO = "auto"
    CORE = "core"  # the CO-RE eBPF probe: one file for every BTF kernel
    KMOD = "kmod"
    PROBE = "probe"  # the per-kernel eBPF probe


DRIVER_TYPES = tuple(t.value for t in DriverType)
# auto's preference: no per-kernel file at all, then the module, then the per-kernel probe.
_AUTO_ORDER = (ArtifactKind.CORE, ArtifactKind.KMOD, ArtifactKind.PROBE)


@dataclass(frozen=True)
class Candidate:
    kind: ArtifactKind
    file: str
    reason: str


@dataclass(frozen=True)
class Choice:
    requested: DriverType
    candidates: tuple[Candidate, ...]  # best first; never empty
    ruled_out: tuple[tuple[ArtifactKind, str], ...]  # kinds auto passed over, and why


def _unusable(kind: ArtifactKind, host: HostInfo) -> str | None:
    """Why `kind` cannot work on this host, or None when it can."""
    if kind is ArtifactKind.CORE:
        if not host.btf:
            return f"no kernel BTF at {host.btf_path}"
        if not host.ring_buffer:
            since = ".".join(map(str, RING_BUFFER_SINCE))
            return f"kernel {host.kernel_release} predates the BPF ring buffer ({since})"
        return None
    if kind is ArtifactKind.KMOD:
        return None if host.modules.can_load else host.modules.reason
    return None  # the per-kernel probe only needs BPF, which every supported kernel has


def _why_usable(kind: ArtifactKind, host: HostInfo) -> str:
    if kind is ArtifactKind.CORE:
        return f"kernel BTF present and ring buffer supported ({host.kernel_release})"
    if kind is ArtifactKind.KMOD:
        return "modules can load"
    return "per-kernel eBPF probe, loads without BTF or module support"


def choose(host: HostInfo, target: HostTarget, requested: DriverType) -> Choice:
    """auto: every usable kind in preference order; an explicit type: that one, or
    DriverTypeRefusedError naming the reason it cannot work here."""
    if requested is not DriverType.AUTO:
        kind = ArtifactKind(requested.value)
        why_not = _unusable(kind, host)
        if why_not is not None:
            raise DriverTypeRefusedError(f"{requested.value}: {why_not}")
        why = f"requested; {_why_usable(kind, host)}"
        candidate = Candidate(kind, target.artifact_file(kind), why)
        return Choice(requested, (candidate,), ())
    candidates: list[Candidate] = []
    ruled_out: list[tuple[ArtifactKind, str]] = []
    for kind in _AUTO_ORDER:
        why_not = _unusable(kind, host)
        if why_not is None:
            candidates.append(Candidate(kind, target.artifact_file(kind), _why_usable(kind, host)))
        else:
            ruled_out.append((kind, why_not))
    return Choice(requested, tuple(candidates), tuple(ruled_out))
