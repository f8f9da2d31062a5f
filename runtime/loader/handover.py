"""The engine's side of the init-container hand-over: read `rtcap-driver.json` (written by
`rt-engine driver install --download-only --dest DIR`, install.py) and check the artifact
it names before anything is loaded.

The artifact is taken from beside the JSON, not from its `path`: the engine container may
mount the state directory somewhere else than the loader container did. The sha256 check
catches a truncated or damaged copy (the JSON is not signed; whoever can write it can write
the artifact too, so the signed index was the trust step, in the loader)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from drivercore.naming import ArtifactKind
from runtime.driver.errors import DriverError
from runtime.loader.fetch import Log
from runtime.loader.install import ENGINE_DRIVER, HANDOVER_FILE, HANDOVER_FORMAT

_CHUNK = 1 << 16


class HandoverError(DriverError):
    """The hand-over file is unreadable, malformed, or its artifact does not match it."""


@dataclass(frozen=True)
class HandedOver:
    kind: ArtifactKind
    engine_driver: str  # rt-engine's --driver value for it
    artifact: Path
    sha256: str
    reason: str
    handover: Path


def handover_in(folder: Path) -> Path | None:
    """`folder`'s hand-over file, when there is one."""
    path = folder / HANDOVER_FILE
    return path if path.is_file() else None


def _field(where: Path, data: dict[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise HandoverError(f"hand-over {where}: no `{key}` (is it a {HANDOVER_FILE}?)")
    return value


def read_handover(path: Path, log: Log) -> HandedOver:
    """The artifact `path` names, its size and sha256 checked, or HandoverError."""
    started = time.monotonic()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HandoverError(f"hand-over {path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:  # JSON or UTF-8
        raise HandoverError(f"hand-over {path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != HANDOVER_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise HandoverError(
            f"hand-over {path}: format {found!r}, this engine reads format {HANDOVER_FORMAT}"
        )
    kind_text = _field(path, data, "kind")
    try:
        kind = ArtifactKind(kind_text)
    except ValueError:
        raise HandoverError(f"hand-over {path}: unknown driver kind {kind_text!r}") from None
    file = _field(path, data, "file")
    if "/" in file or file in (".", ".."):
        raise HandoverError(f"hand-over {path}: `file` {file!r} must be a plain file name")
    expected = _field(path, data, "sha256").lower()
    size = data.get("size")
    artifact = path.parent / file
    digest = hashlib.sha256()
    try:
        with artifact.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        actual_size = artifact.stat().st_size
    except OSError as exc:
        raise HandoverError(
            f"hand-over {path}: its artifact {artifact}: {exc.strerror}; rerun the loader"
        ) from None
    if isinstance(size, int) and actual_size != size:
        raise HandoverError(
            f"hand-over {path}: {artifact} is {actual_size} bytes, the hand-over says {size}; "
            "nothing loaded, rerun the loader"
        )
    if digest.hexdigest() != expected:
        raise HandoverError(
            f"hand-over {path}: {artifact} sha256 {digest.hexdigest()[:16]}... is not the "
            f"{expected[:16]}... it names; nothing loaded, rerun the loader"
        )
    reason = data.get("reason")
    handed = HandedOver(kind, ENGINE_DRIVER[kind], artifact, expected,
                        reason if isinstance(reason, str) else "handed over", path)
    log(f"loader: verify: hand-over {path}: {kind} {file} sha256 {expected[:16]}... matches "
        f"({(time.monotonic() - started) * 1000:.0f} ms)")
    return handed
