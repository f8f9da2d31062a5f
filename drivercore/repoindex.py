"""The artifact repository's index: its format, its signature, and the checks a client makes
before it trusts a single sha256 in it.

Layout below a repository root (falcoctl's URLs for the artifacts themselves):

    index.json, index.json.sig                   driver versions and their arches
    <version %2B>/<x86_64|aarch64>/index.json    one entry per artifact in that folder
    <version %2B>/<x86_64|aarch64>/index.json.sig
    <version %2B>/<x86_64|aarch64>/<artifact>    rtcap_<target>_<release>_<version>.{ko,o}

Each `index.json.sig` is a detached Ed25519 signature file. It holds signatures for the
current index *and the few before it*, each keyed by the sha256 of the index bytes it signs:
a publisher writes the signature file first and the index second, so a reader that fetches
the index and then its signature always finds a signature for what it read, even while a
publisher is between the two writes or was killed there. The signed bytes name their own
driver version and arch, so an index cannot be replayed under another folder.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from drivercore.errors import ExitCode, ToolError
from drivercore.naming import ArtifactKind

INDEX_FORMAT = 1
INDEX_FILE = "index.json"
SIGNATURE_FILE = "index.json.sig"
PUBLIC_KEY_PREFIX = "ed25519:"
# Bounds on what a client reads before it has verified anything.
MAX_INDEX_BYTES = 32 << 20
MAX_SIGNATURE_BYTES = 64 << 10
# Signatures kept in a signature file: the newest first; older ones cover readers that
# fetched an index a moment before it was replaced.
KEPT_SIGNATURES = 32


def signature_path(index_path: str) -> str:
    """The signature file beside an index: `<folder>/index.json.sig` for `<folder>/index.json`."""
    return index_path.removesuffix(INDEX_FILE) + SIGNATURE_FILE


_SHA256 = re.compile(r"[0-9a-f]{64}")
# Artifact file names: what naming.py produces; never a path.
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,254}")


class RepositoryIndexError(ToolError):
    """An index or its signature is missing, malformed, or not signed by the pinned key."""

    exit_code = ExitCode.INDEX_INVALID


@dataclass(frozen=True)
class IndexEntry:
    """One artifact in a `<version>/<arch>/index.json`."""

    file: str
    kind: ArtifactKind
    sha256: str
    size: int
    target: str = ""  # empty for the CO-RE probe, which fits every target
    kernelrelease: str = ""
    kernelversion: str = ""
    inputs_sha256: str = ""  # the build-inputs hash: same inputs, same artifact
    compiler: str = ""
    host_verifier: str = ""  # the build host's verifier verdict (probes)
    boot_verified: tuple[str, ...] = ()  # kernel releases a QEMU guest loaded it on
    built_at: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = str(self.kind)
        data["boot_verified"] = list(self.boot_verified)
        return data


@dataclass(frozen=True)
class ArchIndex:
    """`<version>/<arch>/index.json`: the artifacts of one driver version and arch."""

    driver_version: str
    arch: str  # falcoctl's name: x86_64 | aarch64
    serial: int = 0  # +1 per publish; lets a client notice an older index served again
    entries: Mapping[str, IndexEntry] = field(default_factory=dict)

    def with_entries(self, entries: Iterable[IndexEntry]) -> ArchIndex:
        merged = dict(self.entries)
        merged.update((entry.file, entry) for entry in entries)
        return replace(self, serial=self.serial + 1, entries=merged)

    def to_bytes(self) -> bytes:
        return _canonical(
            {
                "format": INDEX_FORMAT,
                "driver_version": self.driver_version,
                "arch": self.arch,
                "serial": self.serial,
                "artifacts": {name: self.entries[name].to_json() for name in sorted(self.entries)},
            }
        )


@dataclass(frozen=True)
class RootIndex:
    """The top-level index.json: which driver versions exist, for which arches."""

    serial: int = 0
    versions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def with_arch(self, driver_version: str, arch: str) -> RootIndex:
        arches = set(self.versions.get(driver_version, ()))
        if arch in arches:
            return self
        versions = dict(self.versions)
        versions[driver_version] = tuple(sorted(arches | {arch}))
        return replace(self, serial=self.serial + 1, versions=versions)

    def to_bytes(self) -> bytes:
        return _canonical(
            {
                "format": INDEX_FORMAT,
                "serial": self.serial,
                "versions": {v: list(self.versions[v]) for v in sorted(self.versions)},
            }
        )


def _canonical(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode()


# --- keys -------------------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise RepositoryIndexError(f"{where}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise RepositoryIndexError(
            f"{where}: not an Ed25519 key; make one with `driverkit keys generate`"
        )
    return key


def public_key_text(key: Ed25519PublicKey) -> str:
    """The one-line form clients pin: `ed25519:<base64 of the 32 raw bytes>`."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    value = text.strip()
    if not value.startswith(PUBLIC_KEY_PREFIX):
        raise RepositoryIndexError(
            f"public key {value[:24]!r}...: expected `{PUBLIC_KEY_PREFIX}<base64>` "
            "(the .pub file `driverkit keys generate` writes)"
        )
    try:
        raw = base64.b64decode(value[len(PUBLIC_KEY_PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise RepositoryIndexError(
            "public key: not 32 base64-encoded bytes after `ed25519:`; "
            "copy the whole line of the .pub file"
        ) from None


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint for messages: which key signed, which key was expected."""
    return hashlib.sha256(public_key_text(key).encode()).hexdigest()[:16]


# --- signatures -------------------------------------------------------------------------


def sign_index(
    index_bytes: bytes,
    key: Ed25519PrivateKey,
    previous: bytes | None = None,
    keep_sha256: str | None = None,
) -> bytes:
    """A signature file for `index_bytes`, keeping the newest signatures of `previous`
    (those of the same key) and always the one for `keep_sha256`, the index being replaced."""
    public = key.public_key()
    kid = key_id(public)
    digest = hashlib.sha256(index_bytes).hexdigest()
    entries = [{"sha256": digest, "signature": base64.b64encode(key.sign(index_bytes)).decode()}]
    if previous is not None:
        try:
            old = _signature_entries(previous, "previous signature file")
        except RepositoryIndexError:
            old = []  # a damaged file is replaced; the new index gets a good signature
        kept = [e for e in old if e["key_id"] == kid and e["sha256"] != digest]
        newest = kept[: KEPT_SIGNATURES - 1]
        newest += [e for e in kept[KEPT_SIGNATURES - 1 :] if e["sha256"] == keep_sha256]
        entries += [{"sha256": e["sha256"], "signature": e["signature"]} for e in newest]
    return _canonical(
        {"format": INDEX_FORMAT, "algorithm": "ed25519", "key_id": kid, "signatures": entries}
    )


def _signature_entries(data: bytes, where: str) -> list[dict[str, str]]:
    if len(data) > MAX_SIGNATURE_BYTES:
        raise RepositoryIndexError(f"{where}: larger than {MAX_SIGNATURE_BYTES} bytes")
    try:
        document = json.loads(data)
        kid = document["key_id"]
        found = [
            {"key_id": str(kid), "sha256": str(e["sha256"]), "signature": str(e["signature"])}
            for e in document["signatures"]
        ]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise RepositoryIndexError(f"{where}: not a signature file") from None
    if document.get("algorithm") != "ed25519":
        algorithm = document.get("algorithm")
        raise RepositoryIndexError(f"{where}: algorithm {algorithm!r} is not ed25519")
    return found


def verify_index(
    index_bytes: bytes, signature_file: bytes, key: Ed25519PublicKey, where: str
) -> None:
    """RepositoryIndexError unless `signature_file` holds a good signature by `key` over exactly
    `index_bytes`. Call this before parsing the index."""
    if len(index_bytes) > MAX_INDEX_BYTES:
        raise RepositoryIndexError(f"{where}: larger than {MAX_INDEX_BYTES} bytes")
    entries = _signature_entries(signature_file, f"{where}.sig")
    expected = key_id(key)
    digest = hashlib.sha256(index_bytes).hexdigest()
    mine = [e for e in entries if e["sha256"] == digest]
    if not mine:
        raise RepositoryIndexError(f"{where}: no signature in {SIGNATURE_FILE} covers this index")
    for entry in mine:
        try:
            key.verify(base64.b64decode(entry["signature"], validate=True), index_bytes)
            return
        except (InvalidSignature, binascii.Error, ValueError):
            continue
    signer = entries[0]["key_id"] if entries else "nobody"
    raise RepositoryIndexError(
        f"{where}: signature does not verify with the pinned key {expected} "
        f"(signed by key {signer}); the index was altered or signed by another key"
    )


# --- parsing (only ever of verified bytes) ----------------------------------------------


def parse_arch_index(data: bytes, where: str, *, driver_version: str, arch: str) -> ArchIndex:
    document = _load(data, where)
    if document.get("driver_version") != driver_version or document.get("arch") != arch:
        raise RepositoryIndexError(
            f"{where}: signed for {document.get('driver_version')!r}/{document.get('arch')!r}, "
            f"served as {driver_version!r}/{arch!r}"
        )
    artifacts = document.get("artifacts")
    if not isinstance(artifacts, dict):
        raise RepositoryIndexError(f"{where}: no artifacts table")
    entries = {name: _entry(name, raw, where) for name, raw in artifacts.items()}
    return ArchIndex(driver_version, arch, _serial(document, where), entries)


def parse_root_index(data: bytes, where: str) -> RootIndex:
    document = _load(data, where)
    versions = document.get("versions")
    if not isinstance(versions, dict) or not all(
        isinstance(a, list) and all(isinstance(x, str) for x in a) for a in versions.values()
    ):
        raise RepositoryIndexError(f"{where}: no versions table")
    return RootIndex(_serial(document, where), {v: tuple(a) for v, a in versions.items()})


def _load(data: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RepositoryIndexError(f"{where}: not JSON") from None
    if not isinstance(document, dict) or document.get("format") != INDEX_FORMAT:
        raise RepositoryIndexError(f"{where}: not an index of format {INDEX_FORMAT}")
    return document


def _serial(document: Mapping[str, Any], where: str) -> int:
    serial = document.get("serial")
    if not isinstance(serial, int) or serial < 0:
        raise RepositoryIndexError(f"{where}: bad serial {serial!r}")
    return serial


def _entry(name: str, raw: object, where: str) -> IndexEntry:
    if not isinstance(raw, dict) or not _FILE_NAME.fullmatch(name) or raw.get("file") != name:
        raise RepositoryIndexError(f"{where}: bad entry {name[:80]!r}")
    try:
        entry = IndexEntry(
            file=name,
            kind=ArtifactKind(raw["kind"]),
            sha256=str(raw["sha256"]),
            size=int(raw["size"]),
            target=str(raw.get("target", "")),
            kernelrelease=str(raw.get("kernelrelease", "")),
            kernelversion=str(raw.get("kernelversion", "")),
            inputs_sha256=str(raw.get("inputs_sha256", "")),
            compiler=str(raw.get("compiler", "")),
            host_verifier=str(raw.get("host_verifier", "")),
            boot_verified=tuple(str(k) for k in raw.get("boot_verified", ())),
            built_at=str(raw.get("built_at", "")),
        )
    except (KeyError, ValueError, TypeError):
        raise RepositoryIndexError(f"{where}: bad entry {name!r}") from None
    if not _SHA256.fullmatch(entry.sha256) or entry.size < 0:
        raise RepositoryIndexError(f"{where}: entry {name!r} has a bad sha256 or size")
    return entry


def is_artifact_file_name(name: str) -> bool:
    return _FILE_NAME.fullmatch(name) is not None and ".." not in name
