"""The target registry: every supported distro target, lookup and inference.

A target is one row of data (`driverkit.targets.base.Target`); each family module ends with
the tuple of its rows, `TARGETS`, and this registry takes them in. Adding a distro to a
family is one row in that module; `register_target` adds one from anywhere (a plugin, a
test). Its id is the name everywhere: `driverkit targets`, --target, inference and
artifact names (drivercore.targets names it generically unless it has a fix-up there).

driverkit requires `--target`; here it is optional. Each target says whether a release
string alone marks it as its own (`Target.matches`); inference succeeds only when exactly
one target claims the release, and otherwise asks for `--target` naming the candidates.
"""

from __future__ import annotations

import difflib
import re

from drivercore.kernelrelease import KernelRelease
from drivercore.targets import canonical_target_name
from driverkit.errors import TargetInferenceError, UnknownTargetError
from driverkit.targets import amazonlinux, arch, debian, photon, redhat, suse, ubuntu, vanilla
from driverkit.targets.base import Target

# Ids go into artifact file names and URLs: lower-case words joined by dashes. `ubuntu-`
# is taken by Ubuntu's per-flavor artifact ids.
_TARGET_ID = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*", re.ASCII)

# Every registered target by id, in listing order (by id) for `driverkit targets` and errors.
TARGETS: dict[str, Target] = {}


def _sort_in_place() -> None:
    ordered = sorted(TARGETS.items())
    TARGETS.clear()
    TARGETS.update(ordered)


def register_target(target: Target) -> Target:
    """Add a target to the registry; its id must be new and file-name safe."""
    name = target.name
    if not _TARGET_ID.fullmatch(name) or canonical_target_name(name) != name:
        raise ValueError(f"target id {name!r}: use lower-case words joined by '-'")
    if name in TARGETS:
        raise ValueError(f"target id {name!r} is already registered")
    TARGETS[name] = target
    _sort_in_place()
    return target


def unregister_target(name: str) -> None:
    """Remove a target added with register_target (a test's throwaway target)."""
    TARGETS.pop(name, None)


for _family in (amazonlinux, arch, debian, photon, redhat, suse, ubuntu, vanilla):
    for _target in _family.TARGETS:
        register_target(_target)


def all_targets() -> tuple[Target, ...]:
    return tuple(TARGETS.values())


def target_names() -> tuple[str, ...]:
    return tuple(TARGETS)


def get_target(name: str) -> Target:
    """The registered target called `name`. driverkit's `ubuntu-<flavor>` names (kept for
    compatibility) select the ubuntu target: the flavor always comes from the release."""
    key = canonical_target_name(name)
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
