"""Kernel catalogs in kernel-crawler's JSON shape, and the Debian crawler.

    {"Debian": [{"kernelrelease": "6.1.0-47-amd64",
                 "kernelversion": "#1 SMP Debian 6.1.170-3",
                 "target": "debian",
                 "headers": ["{debian}/pool/main/l/linux/linux-headers-…", "…-common…",
                             "…linux-kbuild-…"]}]}

Header URLs under the host's Debian mirror are stored as `{debian}/pool/...` (and
`{debian_security}/...`): the committed catalog names no mirror host, and loading it
expands the tokens with the mirrors read from the host's apt sources.

`kernelrelease` is what `uname -r` prints (the ABI name the header packages carry);
`kernelversion` carries the Debian package version the way `uname -v` does, so the
debian target's falcoctl fix-up names the artifacts exactly as a loader on that host
would. Regenerate the committed catalog with `python -m driverkit.catalog crawl-debian`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driverkit import KERNELS_DIR
from driverkit.cache import DownloadCache, atomic_write_bytes
from driverkit.debarchive import DebianArchive, KernelEntry
from driverkit.errors import HeadersNotFoundError, ToolError, UsageError
from driverkit.targets.base import Mirrors
from driverkit.valuerules import (
    KERNEL_RELEASE,
    KERNEL_VERSION,
    MIRROR_URL,
    TARGET,
    TextRule,
    shown,
)

DEBIAN_KEY = "Debian"


@dataclass(frozen=True)
class CatalogEntry:
    kernelrelease: str
    kernelversion: str
    target: str
    headers: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kernelrelease": self.kernelrelease,
            "kernelversion": self.kernelversion,
            "target": self.target,
            "headers": list(self.headers),
        }


Catalog = dict[str, list[CatalogEntry]]


# A catalog is a crawler's output: bounded far above Debian's full list (a few MB).
CATALOG_MAX_BYTES = 64 * 1024 * 1024
MAX_HEADERS_PER_KERNEL = 16
# A header URL as committed: under a mirror token, expanded with the host's mirrors.
_TOKEN_URL = re.compile(r"\{(?:debian|debian_security)\}/[A-Za-z0-9._~:/@%+=-]+", re.ASCII)


def _checked(value: Any, rule: TextRule, where: str) -> str:
    """A catalog field held to the same rule as the option it stands in for."""
    if not isinstance(value, str) or not rule.allows(value):
        raise UsageError(f"{where}: {shown(value)} is not accepted; use {rule.form}")
    return value


def _header_url(value: Any, where: str) -> str:
    if isinstance(value, str) and len(value) <= MIRROR_URL.max_len and _TOKEN_URL.fullmatch(
        value
    ):
        return value
    return _checked(value, MIRROR_URL, where)


def _entry(raw: Any, where: str) -> CatalogEntry:
    if not isinstance(raw, Mapping):
        raise UsageError(
            f"{where}: expected an object with kernelrelease/kernelversion/target/headers"
        )
    missing = [k for k in ("kernelrelease", "target") if not isinstance(raw.get(k), str)]
    if missing:
        raise UsageError(f"{where}: missing or non-string {', '.join(missing)}")
    headers = raw.get("headers", [])
    if not isinstance(headers, list) or len(headers) > MAX_HEADERS_PER_KERNEL:
        raise UsageError(
            f"{where}: headers must be a list of at most {MAX_HEADERS_PER_KERNEL} URLs"
        )
    version = raw.get("kernelversion", "1")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)  # kernel-crawler writes a bare build number as a number
    return CatalogEntry(
        _checked(raw["kernelrelease"], KERNEL_RELEASE, f"{where}: kernelrelease"),
        _checked(version, KERNEL_VERSION, f"{where}: kernelversion"),
        _checked(raw["target"], TARGET, f"{where}: target"),
        tuple(_header_url(h, f"{where}: headers[{i}]") for i, h in enumerate(headers)),
    )


def entry_from_json(raw: Any, where: str) -> CatalogEntry:
    """One kernel-crawler entry, checked as a catalog's are (for documents that carry
    entries, such as the farm plan)."""
    return _entry(raw, where)


def _mirror_tokens(mirrors: Mirrors) -> list[tuple[str, str]]:
    # Longest root first: a security root may share a prefix with the main one.
    pairs = [("{debian_security}", mirrors.debian_security), ("{debian}", mirrors.debian)]
    return sorted(((t, r.rstrip("/")) for t, r in pairs if r), key=lambda p: -len(p[1]))


def neutral_url(url: str, mirrors: Mirrors) -> str:
    for token, root in _mirror_tokens(mirrors):
        if url.startswith(root + "/"):
            return token + url[len(root) :]
    return url


def expand_url(url: str, mirrors: Mirrors) -> str:
    for token, root in _mirror_tokens(mirrors):
        if url.startswith(token):
            return root + url[len(token) :]
    if url.startswith("{"):
        raise UsageError(
            f"catalog URL {url}: no mirror for {url.split('}', maxsplit=1)[0]}}} in /etc/apt; "
            "set DRIVERKIT_DEBIAN_MIRROR / DRIVERKIT_DEBIAN_SECURITY_MIRROR"
        )
    return url


def load_catalog_doc(path: Path, mirrors: Mirrors | None = None) -> Catalog:
    """Parse a catalog; `{debian}`-style URL tokens are expanded with `mirrors`
    (default: the host's apt mirrors)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(CATALOG_MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"catalog {path}: cannot read it ({exc.strerror})") from None
    if len(data) > CATALOG_MAX_BYTES:
        raise UsageError(f"catalog {path}: larger than {CATALOG_MAX_BYTES} bytes (limit)")
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"catalog {path}: not UTF-8 (invalid byte at offset {exc.start})"
                         ) from None
    except ValueError as exc:
        raise UsageError(f"catalog {path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise UsageError(f"catalog {path}: nested too deeply to be a kernel catalog") from None
    if not isinstance(doc, dict):
        raise UsageError(
            f"catalog {path}: expected {{distro: [entries]}}, got {type(doc).__name__}"
        )
    catalog: Catalog = {}
    for distro, entries in doc.items():
        if not isinstance(entries, list):
            raise UsageError(f"catalog {path}: {shown(distro)} must map to a list of kernels")
        catalog[distro] = [
            _entry(e, f"catalog {path}: {shown(distro)}[{i}]") for i, e in enumerate(entries)
        ]
    if any(h.startswith("{") for entries in catalog.values() for e in entries for h in e.headers):
        if mirrors is None:
            from driverkit.mirrors import host_mirrors

            mirrors = host_mirrors()
        resolved = mirrors
        catalog = {
            distro: [
                dataclasses.replace(e, headers=tuple(expand_url(h, resolved) for h in e.headers))
                for e in entries
            ]
            for distro, entries in catalog.items()
        }
    return catalog


def load_catalog(path: Path, mirrors: Mirrors | None = None) -> list[CatalogEntry]:
    """Every entry of every distro, in file order, URLs expanded."""
    return [entry for entries in load_catalog_doc(path, mirrors).values() for entry in entries]


def save_catalog(catalog: Catalog, path: Path, mirrors: Mirrors | None = None) -> None:
    """Write atomically; URLs under `mirrors` are stored as mirror tokens."""
    neutral = mirrors or Mirrors()
    doc = {
        distro: [
            {**e.to_json(), "headers": [neutral_url(h, neutral) for h in e.headers]}
            for e in entries
        ]
        for distro, entries in catalog.items()
    }
    atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode())


def debian_kernel_version(package_version: str) -> str:
    """A `uname -v`-shaped string carrying the Debian version (build number is always 1)."""
    return f"#1 SMP Debian {package_version}"


def crawl_debian(archive: DebianArchive, check_reachable: bool = True) -> Catalog:
    """Every Debian kernel whose header packages the mirrors actually serve.

    A kernel present in several suites (trixie and trixie-security) is listed once; an
    index entry whose pool files are gone (seen on the security mirror) is dropped.
    """
    seen: dict[tuple[str, str], KernelEntry] = {}
    for suite, _ in archive.suites:
        for entry in archive.kernel_releases(suite):
            seen.setdefault((entry.release, entry.version), entry)
    candidates: list[CatalogEntry] = []
    for release, version in sorted(seen):
        try:
            headers = archive.find_headers(release, version=version)
        except HeadersNotFoundError:
            continue
        candidates.append(
            CatalogEntry(
                release,
                debian_kernel_version(version),
                "debian",
                tuple(p.url for p in headers.packages),
            )
        )
    if check_reachable:
        with ThreadPoolExecutor(max_workers=8) as pool:
            ok = list(
                pool.map(lambda e: all(archive.cache.exists(u) for u in e.headers), candidates)
            )
        candidates = [e for e, good in zip(candidates, ok, strict=True) if good]
    return {DEBIAN_KEY: candidates}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driverkit.catalog")
    sub = parser.add_subparsers(dest="command", required=True)
    crawl = sub.add_parser("crawl-debian", help="list every reachable Debian kernel")
    crawl.add_argument("--output", type=Path, default=KERNELS_DIR / "debian.json")
    crawl.add_argument("--arch", default="amd64")
    crawl.add_argument("--no-check", action="store_true", help="skip HEAD checks of pool URLs")
    args = parser.parse_args(argv)
    from driverkit.mirrors import host_mirrors, require_debian_mirror

    try:
        mirrors = host_mirrors()
        require_debian_mirror(mirrors)
        archive = DebianArchive(mirrors, DownloadCache(), arch=args.arch)
        catalog = crawl_debian(archive, check_reachable=not args.no_check)
    except ToolError as exc:
        print(f"driverkit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    save_catalog(catalog, args.output, mirrors)
    for suite, reason in sorted(archive.unreachable.items()):
        print(f"skipped suite {suite}: {reason}", file=sys.stderr)
    print(f"{len(catalog[DEBIAN_KEY])} Debian kernels -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
