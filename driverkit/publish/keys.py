"""The repository signing key: `driverkit keys generate` writes it, publishers load it.

The private key is PKCS#8 PEM, mode 0600; the public key is one line,
`ed25519:<base64>`, the form clients pin (`rt-engine driver install --public-key ...`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivercore.durable import write_bytes
from drivercore.errors import UsageError
from drivercore.repoindex import (
    generate_private_key,
    key_id,
    load_private_key,
    private_key_pem,
    public_key_text,
)

# A key's file stem: it becomes a path, so no separators or dots at the start.
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_KEY_FILE_BYTES = 16 << 10


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    public_text: str
    key_id: str


def generate_keys(out_dir: Path, name: str = "repo-signing", *, force: bool = False) -> KeyPair:
    if not _KEY_NAME.fullmatch(name):
        raise UsageError(f"--name {name[:40]!r}: use letters, digits, '-' and '_' (max 64)")
    private_path = out_dir / f"{name}.key"
    public_path = out_dir / f"{name}.pub"
    if not force and (private_path.exists() or public_path.exists()):
        raise UsageError(
            f"{private_path} or {public_path} exists; pass --force to replace the key "
            "(clients pinning the old public key will then refuse new indexes)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    public = public_key_text(key.public_key())
    write_bytes(private_path, private_key_pem(key), 0o600)
    write_bytes(public_path, (public + "\n").encode(), 0o644)
    return KeyPair(private_path, public_path, public, key_id(key.public_key()))


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        with path.open("rb") as fh:
            pem = fh.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(
            f"--signing-key {path}: cannot read it ({exc.strerror}); "
            "make one with `driverkit keys generate`"
        ) from None
    if len(pem) > MAX_KEY_FILE_BYTES:
        raise UsageError(f"--signing-key {path}: larger than a key file can be")
    return load_private_key(pem, f"--signing-key {path}")


