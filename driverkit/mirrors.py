"""Package mirror roots, discovered from the host's apt configuration.

The Debian mirror is whatever the host already uses: we read it from apt's sources
(deb822 `*.sources` and one-line `*.list`) so no mirror host is baked into the code, and a
host behind a local mirror or proxy builds through that mirror. `DRIVERKIT_DEBIAN_MIRROR`
and `DRIVERKIT_DEBIAN_SECURITY_MIRROR` override the discovery. A process discovers them
once (`host_mirrors`) and injects the result everywhere it builds or resolves.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from driverkit.errors import UsageError
from driverkit.targets.base import Mirrors

APT_ROOT = Path("/etc/apt")


def _apt_source_files(apt_root: Path) -> list[Path]:
    files: list[Path] = []
    main_list = apt_root / "sources.list"
    if main_list.is_file():
        files.append(main_list)
    parts = apt_root / "sources.list.d"
    if parts.is_dir():
        files.extend(sorted(p for p in parts.iterdir() if p.suffix in {".list", ".sources"}))
    return files


def _uris_in(path: Path) -> list[str]:
    uris: list[str] = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if path.suffix == ".sources":
            key, _, value = line.partition(":")
            if key.strip().lower() == "uris":
                uris.extend(value.split())
        else:
            # "deb [options] URI suite components": the URI is the first token after
            # the optional bracketed options.
            tokens = line.split()
            if tokens[0] not in {"deb", "deb-src"}:
                continue
            rest = tokens[1:]
            if rest and rest[0].startswith("["):
                while rest and not rest[0].endswith("]"):
                    rest = rest[1:]
                rest = rest[1:]
            if rest:
                uris.append(rest[0])
    return uris


def apt_uris(apt_root: Path = APT_ROOT) -> list[str]:
    """Every repository URI the host's apt knows, in file order, without duplicates."""
    seen: dict[str, None] = {}
    for path in _apt_source_files(apt_root):
        for uri in _uris_in(path):
            seen.setdefault(uri.rstrip("/"), None)
    return list(seen)


def _archive_root(env_var: str, suffix: str, apt_root: Path) -> str:
    """`env_var` when set, else the first apt URI ending in `suffix`, else ""."""
    override = os.environ.get(env_var)
    if override:
        return override.rstrip("/")
    for uri in apt_uris(apt_root):
        if uri.endswith(suffix):
            return uri
    return ""


def debian_mirror_from_apt(apt_root: Path = APT_ROOT) -> str:
    """The Debian archive root (…/debian) the host's apt uses, or "" if none."""
    return _archive_root("DRIVERKIT_DEBIAN_MIRROR", "/debian", apt_root)


def debian_security_mirror_from_apt(apt_root: Path = APT_ROOT) -> str:
    """The Debian security archive root (…/debian-security) the host's apt uses, or ""."""
    return _archive_root("DRIVERKIT_DEBIAN_SECURITY_MIRROR", "/debian-security", apt_root)


# What the host's apt trusts for Debian's own archive (package debian-archive-keyring).
DEBIAN_ARCHIVE_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def debian_keyring_default() -> str:
    """DRIVERKIT_DEBIAN_KEYRING, else the host's Debian archive keyring, else ""."""
    override = os.environ.get("DRIVERKIT_DEBIAN_KEYRING")
    if override:
        return override
    return str(DEBIAN_ARCHIVE_KEYRING) if DEBIAN_ARCHIVE_KEYRING.is_file() else ""


def default_mirrors(apt_root: Path = APT_ROOT) -> Mirrors:
    """Read the mirrors now (uncached); callers that build use `host_mirrors()`."""
    return Mirrors(
        debian=debian_mirror_from_apt(apt_root),
        debian_security=debian_security_mirror_from_apt(apt_root),
        debian_keyring=debian_keyring_default(),
    )


@functools.cache
def host_mirrors() -> Mirrors:
    """This host's mirrors, discovered once per process: apt sources do not change under
    a run, and every plan, image build and catalog of the run must agree on them."""
    return default_mirrors()


def resolve_mirrors(
    debian: str | None = None,
    debian_security: str | None = None,
    debian_keyring: str | None = None,
    discovered: Mirrors | None = None,
    repo_mirrors: tuple[str, ...] = (),
) -> Mirrors:
    """Mirrors a run uses: explicit options over what the host discovered.

    `repo_mirrors` are `FROM=TO` texts (validated by the option table); the longest
    prefix wins when two match a URL, so a narrower mirror may override a wider one."""
    found = host_mirrors() if discovered is None else discovered
    pairs = tuple(tuple(text.split("=", 1)) for text in repo_mirrors)
    return Mirrors(
        debian=(debian or found.debian).rstrip("/"),
        debian_security=(debian_security or found.debian_security).rstrip("/"),
        ubuntu=found.ubuntu,
        debian_keyring=debian_keyring or found.debian_keyring,
        repo_mirrors=tuple(
            sorted(((src, dst) for src, dst in pairs), key=lambda p: len(p[0]), reverse=True)
        )
        or found.repo_mirrors,
    )


def require_debian_mirror(mirrors: Mirrors) -> str:
    """The Debian root, or a one-line error saying how to provide one."""
    if not mirrors.debian:
        raise UsageError(
            "no Debian mirror found in /etc/apt sources; "
            "set DRIVERKIT_DEBIAN_MIRROR=http://<mirror>/debian or --debian-mirror"
        )
    return mirrors.debian
