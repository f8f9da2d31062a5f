"""The loader's steps in order: identify the host, choose, then get and verify an artifact
(falling to the next candidate when a repository has no such file), and for an init
container, hand it over to the engine container with a small JSON file."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from drivercore.durable import write_bytes
from drivercore.errors import UsageError
from drivercore.kernelrelease import normalize_arch
from drivercore.naming import ArtifactKind, repo_arch
from drivercore.repoclient import NotFoundError
from runtime.loader.choose import Candidate, Choice, DriverType, choose
from runtime.loader.config import LoaderConfig
from runtime.loader.fetch import Fetched, FetchSettings, Log, get_artifact
from runtime.loader.identify import HostInfo, identify
from runtime.loader.target import HostTarget, host_target

# What an engine container reads from --dest to know what to load.
HANDOVER_FILE = "rtcap-driver.json"
HANDOVER_FORMAT = 1
# rt-engine's `--driver` value for each kind of artifact.
ENGINE_DRIVER = {ArtifactKind.CORE: "core", ArtifactKind.PROBE: "ebpf", ArtifactKind.KMOD: "kmod"}


@dataclass(frozen=True)
class Detection:
    host: HostInfo
    target: HostTarget
    choice: Choice


@dataclass(frozen=True)
class Installed:
    detection: Detection
    candidate: Candidate
    fetched: Fetched
    handed_over: Path | None  # the artifact's copy under --dest


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"


def detect(cfg: LoaderConfig, log: Log) -> Detection:
    started = time.monotonic()
    host = identify(
        cfg.host_root, kernel_release=cfg.kernel_release, kernel_version=cfg.kernel_version
    )
    target = host_target(host)
    osr = host.os_release
    log(
        f"loader: identify: {osr.id or 'unknown distro'} {osr.version_id} "
        f"({osr.source or 'no release file'}), kernel {host.kernel_release} {host.machine}, "
        f"BTF {'yes' if host.btf else 'no'}, modules "
        f"{'yes' if host.modules.can_load else 'no'}, target {target.kernel.target_id} "
        f"({_ms(started)})"
    )
    for warning in target.warnings:
        log(f"loader: warning: {warning}")
    started = time.monotonic()
    choice = choose(host, target, DriverType(cfg.type))
    order = ", then ".join(f"{c.kind} ({c.file})" for c in choice.candidates)
    passed = "".join(f"; not {kind}: {why}" for kind, why in choice.ruled_out)
    log(f"loader: choose: {cfg.type}: {order}{passed} ({_ms(started)})")
    return Detection(host, target, choice)


def fetch_settings(cfg: LoaderConfig, host: HostInfo) -> FetchSettings:
    return FetchSettings(
        repos=cfg.repos,
        public_key=cfg.resolved_public_key(),
        driver_version=cfg.resolved_driver_version(),
        arch=repo_arch(normalize_arch(host.machine)),
        state_dir=cfg.state_dir,
        timeout_s=cfg.timeout,
        retries=cfg.retries,
        headers=dict(cfg.http_headers),
    )


def install(cfg: LoaderConfig, log: Log, *, dest: Path | None = None) -> Installed:
    """Detect, then fetch the first candidate some repository has. Only a file missing
    everywhere moves on to the next candidate: a bad signature, a sha256 mismatch or an
    unreachable server is a fault, reported as such."""
    detection = detect(cfg, log)
    settings = fetch_settings(cfg, detection.host)
    missing: list[str] = []
    candidates = detection.choice.candidates
    for position, candidate in enumerate(candidates):
        try:
            fetched = get_artifact(settings, candidate.file, log)
        except NotFoundError as exc:
            if position + 1 == len(candidates):
                if cfg.allow_build:
                    fetched = build_fallback(cfg, detection, settings, log)
                    return _installed(detection, candidate, fetched, settings,
                                      dest=dest, log=log)
                if not missing:
                    raise
                raise NotFoundError(
                    "no candidate driver is published: " + "; ".join([*missing, str(exc)])
                ) from None
            missing.append(f"{candidate.kind}: {exc}")
            log(f"loader: choose: {candidate.kind} not published, trying "
                f"{candidates[position + 1].kind}")
            continue
        return _installed(detection, candidate, fetched, settings, dest=dest, log=log)
    raise AssertionError("choose() never returns an empty candidate list")


def _installed(detection: Detection, candidate: Candidate, fetched: Fetched,
               settings: FetchSettings, *, dest: Path | None, log: Log) -> Installed:
    handed = None
    if dest is not None:
        handed = _hand_over(detection, candidate, fetched, settings, dest=dest, log=log)
    return Installed(detection, candidate, fetched, handed)


def build_fallback(cfg: LoaderConfig, detection: Detection, settings: FetchSettings,
                   log: Log) -> Fetched:
    """--allow-build, once no repository has any candidate: build the last one on this host
    (auto's last is the per-kernel eBPF probe, which needs no module signing; an explicit
    type's only one is that type)."""
    from runtime.loader.build import build_locally  # runs driverkit only when asked to

    _, fetched = build_locally(
        cfg, detection.choice.candidates[-1:], kernel_release=detection.host.kernel_release,
        kernel_version=detection.host.kernel_version, target=detection.target.kernel.target_id,
        driver_version=settings.driver_version, log=log,
    )
    return fetched


def _hand_over(detection: Detection, candidate: Candidate, fetched: Fetched,
               settings: FetchSettings, *, dest: Path, log: Log) -> Path:
    """The artifact and, written last, the JSON naming it: an engine container that finds
    the JSON always finds the whole artifact beside it."""
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"--dest {dest}: not a directory")
    started = time.monotonic()
    dest.mkdir(parents=True, exist_ok=True)
    copied = dest / candidate.file
    write_bytes(copied, fetched.path.read_bytes())  # artifacts are a few MB at most
    handover = {
        "format": HANDOVER_FORMAT,
        "kind": str(candidate.kind),
        "engine_driver": ENGINE_DRIVER[candidate.kind],
        "file": candidate.file,
        "path": str(copied),
        "sha256": fetched.entry.sha256,
        "size": fetched.entry.size,
        "driver_version": settings.driver_version,
        "arch": settings.arch,
        "target": detection.target.kernel.target_id,
        "kernel_release": detection.host.kernel_release,
        "reason": candidate.reason,
    }
    text = json.dumps(handover, indent=1, sort_keys=True) + "\n"
    write_bytes(dest / HANDOVER_FILE, text.encode())
    log(f"loader: hand-over: {copied} and {dest / HANDOVER_FILE} ({_ms(started)})")
    return copied
