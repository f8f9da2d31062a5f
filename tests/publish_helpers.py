"""Build-output trees for publish tests and benches.

`fake_build_output` writes what `driverkit build` writes (artifacts plus one manifest per
build, through the same manifest writer) with random bytes standing in for the compiled
files: publishing never looks inside an artifact, only at its name, size and sha256. Tests
that need real artifacts build them with Docker (tests/test_publish.py's real build test).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from driverkit.artifacts import write_manifest


def fake_build_output(
    out: Path,
    kernels: Iterable[tuple[str, str, str]],
    *,
    driver_version: str = "0.1.0",
    arch: str = "amd64",
    size: int = 4096,
    seed: str = "",
    core: bool = True,
) -> list[str]:
    """`out/<version>/<arch>/` with a .ko and .o per (target, kernelrelease, kernelversion)
    and the CO-RE probe; returns the artifact file names."""
    folder = out / driver_version / arch
    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    builds: list[tuple[str, dict[str, object], list[str]]] = []
    for target, release, version in kernels:
        stem = f"rtcap_{target}_{release}_{version}"
        naming = {"target_id": target, "kernel_release": release, "kernel_version": version}
        builds.append((stem, {"kind": "kernel", "artifact": naming}, [stem + ".ko", stem + ".o"]))
    if core:
        builds.append(("rtcap_core", {"kind": "core"}, ["rtcap_core.o"]))
    for stem, inputs, files in builds:
        artifacts: dict[str, dict[str, object]] = {}
        for name in files:
            data = _bytes(seed + name, size)
            (folder / name).write_bytes(data)
            artifacts[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            if name.endswith(".o"):
                artifacts[name]["host_verifier"] = "loaded: 3 programs"
        write_manifest(
            folder / f"{stem}.json",
            {
                "input_hash": hashlib.sha256(stem.encode()).hexdigest(),
                "inputs": {**inputs, "driver_version": driver_version, "arch": arch},
                "gcc": "12",
                "toolchain": ["gcc (Debian 12.2.0-14) 12.2.0", "Debian clang version 14.0.6"],
                "artifacts": artifacts,
                "built_at": "2026-12-03T07:00:00Z",
            },
        )
        names += files
    return names


def _bytes(label: str, size: int) -> bytes:
    """Deterministic per label, so a rerun produces the same build (same sha256)."""
    block = hashlib.sha256(label.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def driverkit(*args: str, env: dict[str, str] | None = None, timeout: float = 600
              ) -> subprocess.CompletedProcess[str]:
    """The real `driverkit` CLI in a child process, free of the caller's DRIVERKIT_* vars."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DRIVERKIT_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "driverkit.entry", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, check=False,
    )
