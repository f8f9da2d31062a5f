"""What a processor does: run a rendered build script and leave its outputs in a dir."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from driverkit.headers import ResolvedHeaders
from driverkit.plan import BuildPlan

_ERROR_LINE = re.compile(
    r"(\berror:|\bError \d+|^ERROR:|undefined reference|No rule to make target|: not found$)"
)
MAX_ERROR_LINES = 25


@dataclass(frozen=True)
class ProcessorResult:
    out_dir: Path  # where the script's $OUT ended up on the host
    logs: str
    image: str  # builder image tag ("" for local)
    image_id: str  # builder image id ("" for local)
    duration_s: float


@dataclass(frozen=True)
class BuildJob:
    """One build script run, as the build hands it to a processor."""

    plan: BuildPlan
    script: str  # the rendered build.sh
    headers: ResolvedHeaders | None  # unpacked kernel headers; None for the CO-RE probe
    work_dir: Path  # an empty directory the processor may use, removed after the build
    timeout_s: float


class Processor(Protocol):
    name: str

    def environment_ref(self, plan: BuildPlan) -> str:
        """What the build runs in, for the manifest input hash (image tag, or host)."""
        ...

    def run(self, job: BuildJob) -> ProcessorResult: ...

    def cancel_all(self) -> int:
        """Kill every build still running (Ctrl-C); returns how many were stopped."""
        ...


def error_lines(logs: str) -> list[str]:
    """The compiler's error lines, or the log's tail when the failure printed none."""
    lines = logs.splitlines()
    picked = [line.rstrip() for line in lines if _ERROR_LINE.search(line)]
    if not picked:
        picked = [line.rstrip() for line in lines[-10:]]
    return picked[:MAX_ERROR_LINES]


def warning_lines(logs: str) -> list[str]:
    """The compiler's warnings in a successful build's log (the manifest keeps them: a
    new warning from a newer compiler is often the first sign of a miscompile)."""
    return [line.rstrip() for line in logs.splitlines() if re.search(r"\bwarning:", line)]


def failure_message(plan: BuildPlan, exit_code: int, logs: str) -> str:
    shown = "\n  ".join(error_lines(logs))
    return f"build of {plan.artifact_stem()} failed (exit {exit_code}):\n  {shown}"
