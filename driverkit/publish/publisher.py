"""Publish what `driverkit build` wrote to an artifact repository.

Source: `<out>/<driver-version>/<amd64|arm64>/` with one JSON manifest per build (a manifest
on disk means a complete, validated build). Destination: falcoctl's layout,
`<driver-version %2B>/<x86_64|aarch64>/<file>`, plus a signed `index.json` per folder and
one at the root (drivercore.repoindex).

Order, so that `kill -9` at any moment leaves a consistent repository: every artifact is
written atomically first; then, per folder, the signature file (covering the new index and
the one it replaces) and the index, each by compare-and-swap, retried when another
publisher got there first; the root index last. An index therefore only ever lists files
that are already there with the listed sha256, and always has a signature that covers it.

Idempotent: an artifact the index already lists with the same sha256 is not sent again
(unless the object is missing or damaged); the same name with another sha256 is refused
before anything is written, naming both hashes, unless `force`.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from drivercore import repoindex
from drivercore.errors import ExitCode, UsageError
from drivercore.naming import ArtifactKind, repo_arch, validate_driver_version
from driverkit.errors import ToolError
from driverkit.publish.backend import Backend, Versioned

# Written by boot verification beside the manifests: {artifact file: [kernel releases]}.
BOOT_RESULTS_FILE = "bootverify.json"
# Compare-and-swap rounds before giving up: each lost round means another publisher's
# index landed, so this bounds the wait, not correctness.
CAS_ATTEMPTS = 60


class PublishConflictError(ToolError):
    """The repository holds another build under a name being published."""

    exit_code = ExitCode.PUBLISH_CONFLICT


@dataclass(frozen=True)
class LocalArtifact:
    path: Path
    driver_version: str
    arch: str  # repository spelling: x86_64 | aarch64
    entry: repoindex.IndexEntry


@dataclass
class PublishSummary:
    uploaded: list[str] = field(default_factory=list)  # repository paths written
    unchanged: list[str] = field(default_factory=list)  # already there, same sha256
    indexes: list[str] = field(default_factory=list)  # index paths replaced

    def line(self) -> str:
        return (
            f"published {len(self.uploaded)} artifacts, {len(self.unchanged)} unchanged, "
            f"{len(self.indexes)} indexes updated"
        )


def collect(out_root: Path) -> list[LocalArtifact]:
    """Every artifact a manifest under `out_root/<version>/<arch>/` vouches for."""
    if not out_root.is_dir():
        raise UsageError(f"--from {out_root}: no such directory; run `driverkit build` first")
    found: list[LocalArtifact] = []
    for manifest_path in sorted(out_root.glob("*/*/*.json")):
        if manifest_path.name == BOOT_RESULTS_FILE:
            continue
        found.extend(_from_manifest(manifest_path))
    if not found:
        raise UsageError(f"--from {out_root}: no build manifests under <version>/<arch>/")
    return found


def _from_manifest(manifest_path: Path) -> list[LocalArtifact]:
    try:
        manifest = json.loads(manifest_path.read_text())
        inputs = manifest["inputs"]
        artifacts: dict[str, dict[str, Any]] = manifest["artifacts"]
        kind_of_build = inputs["kind"]
        driver_version = validate_driver_version(str(inputs["driver_version"]))
        arch = repo_arch(str(inputs["arch"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{manifest_path}: not a driverkit build manifest") from None
    boot = _boot_results(manifest_path.parent)
    toolchain = [str(line) for line in manifest.get("toolchain", [])]
    result = []
    for name, meta in sorted(artifacts.items()):
        if not repoindex.is_artifact_file_name(name):
            raise UsageError(f"{manifest_path}: unsafe artifact name {name[:80]!r}")
        if kind_of_build == "core":
            kind = ArtifactKind.CORE
        else:
            kind = ArtifactKind.KMOD if name.endswith(".ko") else ArtifactKind.PROBE
        naming = inputs.get("artifact", {}) if kind is not ArtifactKind.CORE else {}
        entry = repoindex.IndexEntry(
            file=name,
            kind=kind,
            sha256=str(meta["sha256"]),
            size=int(meta["size"]),
            target=str(naming.get("target_id", "")),
            kernelrelease=str(naming.get("kernel_release", "")),
            kernelversion=str(naming.get("kernel_version", "")),
            inputs_sha256=str(manifest.get("input_hash", "")),
            compiler=_compiler(kind, toolchain, str(manifest.get("gcc", ""))),
            host_verifier=str(meta.get("host_verifier", "")),
            boot_verified=tuple(boot.get(name, ())),
            built_at=str(manifest.get("built_at", "")),
        )
        result.append(LocalArtifact(manifest_path.parent / name, driver_version, arch, entry))
    return result


def _compiler(kind: ArtifactKind, toolchain: list[str], gcc: str) -> str:
    # The module is built by the kernel's gcc; the probes by clang.
    wanted = "gcc" if kind is ArtifactKind.KMOD else "clang"
    for line in toolchain:
        if wanted in line.lower():
            return line
    return f"gcc-{gcc}" if kind is ArtifactKind.KMOD and gcc else ""


def _boot_results(folder: Path) -> dict[str, list[str]]:
    path = folder / BOOT_RESULTS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {str(k): [str(r) for r in v] for k, v in data.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        raise UsageError(f"{path}: not a boot-verification result file") from None


def publish(
    artifacts: Iterable[LocalArtifact],
    backend: Backend,
    key: Ed25519PrivateKey,
    *,
    force: bool = False,
    log: Callable[[str], None] = lambda _line: None,
) -> PublishSummary:
    summary = PublishSummary()
    folders: dict[tuple[str, str], list[LocalArtifact]] = {}
    for artifact in artifacts:
        folders.setdefault((artifact.driver_version, artifact.arch), []).append(artifact)
    # Conflicts are found in every folder before anything is written anywhere.
    current = {
        folder: _read_arch_index(backend, key, *folder)[0] for folder in sorted(folders)
    }
    conflicts = [
        line
        for folder, items in sorted(folders.items())
        for line in _conflicts(current[folder], items, backend, force)
    ]
    if conflicts:
        raise PublishConflictError(
            "refusing to replace published artifacts (pass --force to replace them): "
            + "; ".join(conflicts)
        )
    for folder, items in sorted(folders.items()):
        fresh: list[repoindex.IndexEntry] = []
        for artifact in items:
            path = _folder(*folder) + "/" + artifact.entry.file
            listed = current[folder].entries.get(artifact.entry.file)
            if listed == artifact.entry and _intact(backend, path, artifact.entry):
                summary.unchanged.append(path)
                continue
            _check_local(artifact)
            backend.write_atomic(path, artifact.path, artifact.entry.sha256)
            summary.uploaded.append(path)
            log(f"uploaded {path} ({artifact.entry.size} bytes)")
            fresh.append(artifact.entry)
        if fresh:
            index_path = _update_arch_index(backend, key, folder, fresh, force)
            summary.indexes.append(index_path)
            log(f"signed {index_path}")
        if _update_root_index(backend, key, *folder):
            summary.indexes.append(repoindex.INDEX_FILE)
    return summary


def _folder(driver_version: str, arch: str) -> str:
    """Logical object path of a version's arch folder; backends percent-encode it where
    they speak HTTP (so `+` travels as %2B, as in falcoctl's URLs)."""
    return f"{driver_version}/{arch}"


def _conflicts(
    index: repoindex.ArchIndex, items: list[LocalArtifact], backend: Backend, force: bool
) -> list[str]:
    if force:
        return []
    found = []
    for artifact in items:
        listed = index.entries.get(artifact.entry.file)
        if listed is not None and listed.sha256 != artifact.entry.sha256:
            found.append(
                f"{backend.url} {index.driver_version}/{index.arch}/{artifact.entry.file} "
                f"has sha256 {listed.sha256}, this build {artifact.entry.sha256}"
            )
    return found


def _intact(backend: Backend, path: str, entry: repoindex.IndexEntry) -> bool:
    """The listed object exists at its size (and sha256, where the backend stores one): a
    truncated or missing object is sent again instead of counted as present."""
    info = backend.stat(path)
    if info is None or info.size != entry.size:
        return False
    return info.sha256 is None or info.sha256 == entry.sha256


def _check_local(artifact: LocalArtifact) -> None:
    digest = hashlib.sha256()
    try:
        with artifact.path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise UsageError(f"{artifact.path}: cannot read it ({exc.strerror})") from None
    if digest.hexdigest() != artifact.entry.sha256:
        raise UsageError(
            f"{artifact.path}: sha256 {digest.hexdigest()} differs from its manifest's "
            f"{artifact.entry.sha256}; rebuild it"
        )


def _read_signed(
    backend: Backend, key: Ed25519PrivateKey, index_path: str
) -> tuple[Versioned | None, Versioned | None]:
    """The index and signature objects as stored; the index is verified with our own key,
    so a publisher never merges into an index somebody else altered."""
    index = backend.read(index_path)
    signature = backend.read(repoindex.signature_path(index_path))
    if index is not None:
        if signature is None:
            raise repoindex.RepositoryIndexError(
                f"{backend.url}/{index_path}: unsigned; "
                f"remove it or restore its {repoindex.SIGNATURE_FILE}"
            )
        repoindex.verify_index(
            index.data, signature.data, key.public_key(), f"{backend.url}/{index_path}"
        )
    return index, signature


def _read_arch_index(
    backend: Backend, key: Ed25519PrivateKey, driver_version: str, arch: str
) -> tuple[repoindex.ArchIndex, Versioned | None, Versioned | None]:
    path = f"{_folder(driver_version, arch)}/{repoindex.INDEX_FILE}"
    index, signature = _read_signed(backend, key, path)
    if index is None:
        return repoindex.ArchIndex(driver_version, arch), None, signature
    parsed = repoindex.parse_arch_index(
        index.data, f"{backend.url}/{path}", driver_version=driver_version, arch=arch
    )
    return parsed, index, signature


def _update_arch_index(
    backend: Backend,
    key: Ed25519PrivateKey,
    folder: tuple[str, str],
    fresh: list[repoindex.IndexEntry],
    force: bool,
) -> str:
    path = f"{_folder(*folder)}/{repoindex.INDEX_FILE}"

    def merged() -> tuple[bytes, Versioned | None, Versioned | None] | None:
        current, index, signature = _read_arch_index(backend, key, *folder)
        clash = [
            f"{e.file} now has sha256 {current.entries[e.file].sha256}, this build {e.sha256}"
            for e in fresh
            if e.file in current.entries and current.entries[e.file].sha256 != e.sha256
        ]
        if clash and not force:
            # Another publisher listed other builds under these names since we looked.
            raise PublishConflictError(f"{backend.url}/{path}: " + "; ".join(clash))
        if all(current.entries.get(e.file) == e for e in fresh):
            return None
        return current.with_entries(fresh).to_bytes(), index, signature

    _swap(backend, key, path, merged)
    return path


def _update_root_index(
    backend: Backend, key: Ed25519PrivateKey, driver_version: str, arch: str
) -> bool:
    changed = False

    def merged() -> tuple[bytes, Versioned | None, Versioned | None] | None:
        nonlocal changed
        index, signature = _read_signed(backend, key, repoindex.INDEX_FILE)
        root = (
            repoindex.parse_root_index(index.data, f"{backend.url}/{repoindex.INDEX_FILE}")
            if index is not None
            else repoindex.RootIndex()
        )
        updated = root.with_arch(driver_version, arch)
        if updated is root:
            return None
        changed = True
        return updated.to_bytes(), index, signature

    _swap(backend, key, repoindex.INDEX_FILE, merged)
    return changed


def _swap(
    backend: Backend,
    key: Ed25519PrivateKey,
    index_path: str,
    merged: Callable[[], tuple[bytes, Versioned | None, Versioned | None] | None],
) -> None:
    """Signature file, then index, each by compare-and-swap; a lost race re-reads both."""
    sig_path = repoindex.signature_path(index_path)
    for attempt in range(CAS_ATTEMPTS):
        step = merged()
        if step is None:
            return
        new_index, old_index, old_signature = step
        keep = hashlib.sha256(old_index.data).hexdigest() if old_index is not None else None
        new_signature = repoindex.sign_index(
            new_index, key, old_signature.data if old_signature is not None else None, keep
        )
        sig_version = old_signature.version if old_signature is not None else None
        index_version = old_index.version if old_index is not None else None
        if backend.replace(sig_path, new_signature, sig_version) and backend.replace(
            index_path, new_index, index_version
        ):
            return
        # Spread the retries of publishers that collided so they do not collide again.
        time.sleep(random.uniform(0.0, min(0.05 * (attempt + 1), 0.5)))
    raise repoindex.RepositoryIndexError(
        f"{backend.url}/{index_path}: still changing after {CAS_ATTEMPTS} attempts; "
        "too many publishers at once, run again"
    )


def listed_files(
    backend: Backend, public_key: Ed25519PublicKey, driver_version: str, arch: str
) -> frozenset[str]:
    """The file names a folder's index lists, once its signature verifies with
    `public_key`; empty when the folder has no index yet."""
    path = f"{_folder(driver_version, arch)}/{repoindex.INDEX_FILE}"
    index = backend.read(path)
    if index is None:
        return frozenset()
    signature = backend.read(repoindex.signature_path(path))
    if signature is None:
        raise repoindex.RepositoryIndexError(
            f"{backend.url}/{path}: unsigned (no {repoindex.SIGNATURE_FILE})"
        )
    repoindex.verify_index(index.data, signature.data, public_key, f"{backend.url}/{path}")
    parsed = repoindex.parse_arch_index(
        index.data, f"{backend.url}/{path}", driver_version=driver_version, arch=arch
    )
    return frozenset(parsed.entries)
