"""The target registry: one table of every supported distro target, lookup and inference.

driverkit requires `--target`; here it is optional. Each target says whether a release
string alone marks it as its own (`Target.matches`); inference succeeds only when exactly
one target claims the release, and otherwise asks for `--target` naming the candidates.
"""

from __future__ import annotations

import difflib

from drivercore.kernelrelease import KernelRelease
from driverkit.errors import TargetInferenceError, UnknownTargetError
from driverkit.targets.amazonlinux import (
    Amazonlinux2Target,
    Amazonlinux2022Target,
    Amazonlinux2023Target,
    AmazonlinuxTarget,
)
from driverkit.targets.arch import ArchTarget
from driverkit.targets.base import Target
from driverkit.targets.debian import DebianTarget
from driverkit.targets.photon import PhotonTarget
from driverkit.targets.redhat import (
    AlinuxTarget,
    AlmalinuxTarget,
    CentosTarget,
    FedoraTarget,
    OracleTarget,
    RedhatTarget,
    RockyTarget,
)
from driverkit.targets.suse import OpensuseTarget, SlesTarget
from driverkit.targets.ubuntu import UbuntuTarget
from driverkit.targets.vanilla import (
    BottlerocketTarget,
    FlatcarTarget,
    MinikubeTarget,
    TalosTarget,
    VanillaTarget,
)

# The one table. Order is the listing order of `driverkit targets` and of error messages.
TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        AlinuxTarget(),
        AlmalinuxTarget(),
        AmazonlinuxTarget(),
        Amazonlinux2Target(),
        Amazonlinux2022Target(),
        Amazonlinux2023Target(),
        ArchTarget(),
        BottlerocketTarget(),
        CentosTarget(),
        DebianTarget(),
        FedoraTarget(),
        FlatcarTarget(),
        MinikubeTarget(),
        OracleTarget(),
        OpensuseTarget(),
        PhotonTarget(),
        RedhatTarget(),
        RockyTarget(),
        SlesTarget(),
        TalosTarget(),
        UbuntuTarget(),
        VanillaTarget(),
    )
}


def all_targets() -> tuple[Target, ...]:
    return tuple(TARGETS.values())


def target_names() -> tuple[str, ...]:
    return tuple(TARGETS)


def get_target(name: str) -> Target:
    """The registered target called `name`. driverkit's `ubuntu-<flavor>` names (kept for
    compatibility) select the ubuntu target: the flavor always comes from the release."""
    key = name.strip().lower()
    if key.startswith("ubuntu-") and len(key) > len("ubuntu-"):
        key = "ubuntu"
    target = TARGETS.get(key)
    if target is not None:
        return target
    close = difflib.get_close_matches(key, TARGETS, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownTargetError(
        f"unknown target {name[:40]!r}{hint}; valid targets: {', '.join(TARGETS)}"
    )


def matching_targets(kr: KernelRelease) -> tuple[Target, ...]:
    """Every target whose release naming `kr` fits, in table order."""
    return tuple(target for target in TARGETS.values() if target.matches(kr))


def infer_target(kr: KernelRelease) -> Target:
    """The single target a release belongs to; TargetInferenceError when none or several."""
    found = matching_targets(kr)
    if len(found) == 1:
        return found[0]
    if not found:
        raise TargetInferenceError(
            f"cannot tell the distro of kernel release {kr.raw!r}; pass --target "
            f"(one of: {', '.join(TARGETS)})"
        )
    names = ", ".join(t.name for t in found)
    raise TargetInferenceError(
        f"kernel release {kr.raw!r} fits several targets ({names}); pass --target to choose"
    )
