"""`driverkit repo site`: a static compatibility page for an artifact repository.

The page is one self-contained `index.html` (inline CSS, a small inline filter script, no
external assets) so it can be served from the repository's own static host, attached to a
release or opened from disk. Everything on it comes from indexes `RepoReader` verified
against the pinned public key: a page generated from an unverified index would vouch for
artifacts nobody signed, so any verification failure stops the command before a byte is
written.

`render_site` is pure (indexes in, HTML out) so the layout and the escaping are tested
offline; `write_site` does the reading and the atomic write.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from drivercore.durable import write_bytes
from drivercore.errors import ToolError, UsageError
from drivercore.naming import ArtifactKind
from drivercore.repoclient import RepoReader
from drivercore.repoindex import (
    PUBLIC_KEY_PREFIX,
    ArchIndex,
    IndexEntry,
    key_id,
    parse_public_key,
)
from driverkit.valuerules import PUBLIC_KEY, REPOSITORY, shown

SITE_FILE = "index.html"
# A .pub file is one line; reading more than this means it is the wrong file.
_MAX_PUBLIC_KEY_FILE = 4096
SHA_SHOWN = 12  # hex digits shown in the table; the full digest is in the title attribute
_KERNEL_KINDS = (ArtifactKind.KMOD, ArtifactKind.PROBE)
_KIND_LABEL = {
    ArtifactKind.KMOD: "Kernel module (.ko)",
    ArtifactKind.PROBE: "eBPF probe (.o)",
    ArtifactKind.CORE: "CO-RE eBPF probe",
}


def _e(value: object) -> str:
    """Every value from an index goes through here: index fields are free text a publisher
    wrote, and the page must not run or render markup from them."""
    return html.escape(str(value), quote=True)


# --- the page ---------------------------------------------------------------------------

_CSS = """
:root { --fg:#1d2430; --muted:#6b7685; --line:#dde2e8; --bg:#fff; --head:#f4f6f9;
  --ok:#17803d; --okbg:#e6f4ea; --no:#b42318; --nobg:#fdecea; --warn:#9a6700; --accent:#2457c5; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { position: sticky; top: 0; z-index: 2; background: var(--bg);
  border-bottom: 1px solid var(--line); padding: 12px 24px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
.meta { color: var(--muted); font-size: 12px; word-break: break-all; }
.tools { display: flex; gap: 16px; align-items: center; margin-top: 8px; flex-wrap: wrap; }
#q { width: 420px; max-width: 100%; padding: 6px 10px; font: inherit;
  border: 1px solid #b8c1cc; border-radius: 6px; }
#q:focus { outline: 2px solid var(--accent); outline-offset: 1px; }
nav a { margin-right: 12px; color: var(--accent); text-decoration: none; }
main { padding: 8px 24px 40px; }
section { margin-top: 20px; }
h2 { font-size: 17px; margin: 0 0 8px; }
h2 .count { font-weight: normal; color: var(--muted); font-size: 13px; margin-left: 8px; }
.core { border: 1px solid var(--line); border-left: 4px solid var(--accent); border-radius: 6px;
  padding: 8px 12px; margin-bottom: 10px; background: #f7f9fd; }
.core.missing { border-left-color: var(--no); background: var(--nobg); }
.core .art { display: flex; flex-wrap: wrap; gap: 4px 16px; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th, td { text-align: left; vertical-align: top; padding: 6px 10px;
  border-bottom: 1px solid var(--line); }
thead th { background: var(--head); font-weight: 600; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.k { overflow-wrap: anywhere; font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
  font-size: 13px; }
td.art { font-size: 12.5px; overflow-wrap: anywhere; }
td.art > div, .core .art > div { margin: 1px 0; }
td.missing { background: var(--nobg); }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px;
  font-weight: 600; }
.yes { color: var(--ok); background: var(--okbg); }
.no { color: var(--no); background: var(--nobg); }
.size { color: var(--muted); margin-left: 6px; }
code.sha { font-size: 12px; color: #39424e; }
.label { color: var(--muted); }
.pass { color: var(--ok); }
.fail { color: var(--no); }
.skip, .none { color: var(--muted); }
.empty { color: var(--muted); font-style: italic; }
"""

# The filter: every term typed must occur in a row's text (its section's version and arch
# count as part of the row). `?q=` or `#q=` pre-fills the box, so a filtered view is a link.
_JS = r"""
(function () {
  "use strict";
  var box = document.getElementById("q");
  var shown = document.getElementById("shown");
  // Text nodes joined by spaces: adjacent cells must not run together ("amd64" + "1").
  function textOf(node) {
    var walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
    var parts = [];
    while (walker.nextNode()) { parts.push(walker.currentNode.nodeValue); }
    return parts.join(" ");
  }
  var groups = Array.prototype.map.call(document.querySelectorAll("section.arch"),
    function (section) {
      var label = section.getAttribute("data-label") || "";
      var rows = Array.prototype.map.call(section.querySelectorAll("tbody tr.kernel"),
        function (row) {
          return { row: row, text: (label + " " + textOf(row)).toLowerCase() };
        });
      return { section: section, rows: rows };
    });
  function apply() {
    var terms = box.value.toLowerCase().split(/\s+/).filter(Boolean);
    var total = 0;
    groups.forEach(function (group) {
      var visible = 0;
      group.rows.forEach(function (item) {
        var match = terms.every(function (t) { return item.text.indexOf(t) !== -1; });
        item.row.hidden = !match;
        if (match) { visible += 1; }
      });
      total += visible;
      group.section.querySelector(".visible").textContent = String(visible);
      var none = group.section.querySelector(".nomatch");
      if (none) { none.hidden = visible !== 0; }
    });
    shown.textContent = String(total);
  }
  box.addEventListener("input", apply);
  var q = new URLSearchParams(location.search).get("q");
  if (q === null) { q = new URLSearchParams(location.hash.slice(1)).get("q"); }
  if (q !== null) {
    box.value = q;
    box.dispatchEvent(new Event("input"));
  } else {
    apply();
  }
})();
"""


@dataclass(frozen=True)
class _Kernel:
    target: str
    release: str
    version: str


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders 6.1.10 after 6.1.9 and 5.15 before 6.1."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", text)
        if part
    )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def _verdict_class(verdict: str) -> str:
    if not verdict:
        return "none"
    lowered = verdict.lower()
    if lowered.startswith("passed"):
        return "pass"
    if lowered.startswith("skipped"):
        return "skip"
    return "fail"


def _details(entry: IndexEntry) -> list[str]:
    """The lines shown for one present artifact, escaped."""
    lines = [
        '<div><span class="badge yes">present</span>'
        f'<span class="size" title="{_e(entry.size)} bytes">{_e(_size(entry.size))}</span>'
        f' <span class="label">sha256</span> <code class="sha" title="{_e(entry.sha256)}">'
        f"{_e(entry.sha256[:SHA_SHOWN])}…</code></div>",
        f'<div class="compiler"><span class="label">compiler</span> '
        f"{_e(entry.compiler) if entry.compiler else '—'}</div>",
    ]
    # The host's BPF verifier only ever sees probes; a module's empty verdict is not news.
    if entry.host_verifier or entry.kind is not ArtifactKind.KMOD:
        lines.append(
            f'<div class="verifier {_verdict_class(entry.host_verifier)}">'
            f'<span class="label">host verifier</span> '
            f"{_e(entry.host_verifier) if entry.host_verifier else '—'}</div>"
        )
    if entry.boot_verified:
        boots = ", ".join(_e(k) for k in entry.boot_verified)
        lines.append(
            f'<div class="boot pass"><span class="label">boot-verified</span> {boots}</div>'
        )
    else:
        lines.append('<div class="boot none"><span class="label">boot-verified</span> no</div>')
    lines.append(
        f'<div class="built"><span class="label">built</span> '
        f"{_e(entry.built_at) if entry.built_at else '—'}</div>"
    )
    return lines


def _cell(kind: ArtifactKind, entry: IndexEntry | None) -> str:
    if entry is None:
        return (
            f'<td class="art missing" data-kind="{_e(kind)}">'
            '<span class="badge no">missing</span></td>'
        )
    return (
        f'<td class="art present" data-kind="{_e(kind)}" data-file="{_e(entry.file)}">'
        + "".join(_details(entry))
        + "</td>"
    )


def _core_banner(cores: Sequence[IndexEntry]) -> str:
    if not cores:
        return (
            '<div class="core missing"><strong>CO-RE eBPF probe</strong> '
            '<span class="badge no">missing</span> '
            "<span>hosts without a per-kernel artifact have nothing to load</span></div>"
        )
    parts = []
    for entry in cores:
        parts.append(
            f'<div class="core" data-kind="core" data-file="{_e(entry.file)}">'
            f"<strong>CO-RE eBPF probe</strong> <code>{_e(entry.file)}</code> "
            '<span class="label">— loads on any kernel with BTF (5.8 or newer)</span>'
            '<div class="art">' + "".join(_details(entry)) + "</div></div>"
        )
    return "".join(parts)


def _section(number: int, index: ArchIndex) -> tuple[str, int]:
    """One driver version and arch: the CO-RE banner and the per-kernel table."""
    kernels: dict[_Kernel, dict[ArtifactKind, IndexEntry]] = {}
    cores: list[IndexEntry] = []
    for entry in index.entries.values():
        if entry.kind is ArtifactKind.CORE:
            cores.append(entry)
        else:
            kernel = _Kernel(entry.target, entry.kernelrelease, entry.kernelversion)
            kernels.setdefault(kernel, {})[entry.kind] = entry
    cores.sort(key=lambda e: e.file)
    order = sorted(kernels, key=lambda k: (k.target, _natural(k.release), _natural(k.version)))
    label = f"{index.driver_version} {index.arch}"
    rows = []
    for kernel in order:
        cells = "".join(_cell(kind, kernels[kernel].get(kind)) for kind in _KERNEL_KINDS)
        rows.append(
            '<tr class="kernel">'
            f'<td class="k target">{_e(kernel.target)}</td>'
            f'<td class="k release">{_e(kernel.release)}</td>'
            f'<td class="k version">{_e(kernel.version)}</td>'
            f"{cells}</tr>"
        )
    if rows:
        head = "".join(f"<th>{_e(_KIND_LABEL[kind])}</th>" for kind in _KERNEL_KINDS)
        # Fixed column widths: every section's table lines up with the others.
        cols = (
            '<colgroup><col style="width:12%"><col style="width:18%"><col style="width:9%">'
            '<col style="width:30.5%"><col style="width:30.5%"></colgroup>'
        )
        table = (
            f"<table>{cols}<thead><tr><th>Target</th><th>Kernel release</th><th>Kernel version</th>"
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            '<p class="empty nomatch" hidden>No kernel of this section matches the filter.</p>'
        )
    else:
        table = '<p class="empty">No per-kernel artifacts for this driver version and arch.</p>'
    html_text = (
        f'<section class="arch" id="s{number}" data-label="{_e(label)}" '
        f'data-version="{_e(index.driver_version)}" data-arch="{_e(index.arch)}">'
        f"<h2>Driver {_e(index.driver_version)} · {_e(index.arch)}"
        f'<span class="count"><span class="visible">{len(rows)}</span> of {len(rows)} kernels'
        f" · index serial {_e(index.serial)}</span></h2>"
        f"{_core_banner(cores)}{table}</section>"
    )
    return html_text, len(rows)


def _ordered(indexes: Iterable[ArchIndex]) -> list[ArchIndex]:
    # Newest driver version first: that is the one people look up.
    by_arch = sorted(indexes, key=lambda i: i.arch)
    return sorted(by_arch, key=lambda i: _natural(i.driver_version), reverse=True)


def render_site(
    indexes: Iterable[ArchIndex],
    *,
    repository: str = "",
    signer: str = "",
    generated: str = "",
) -> str:
    """The whole page for these (already verified) arch indexes. `repository`, `signer` (the
    pinned key's id) and `generated` only label the header."""
    sections = []
    total = 0
    ordered = _ordered(indexes)
    for number, index in enumerate(ordered):
        text, count = _section(number, index)
        sections.append(text)
        total += count
    nav = "".join(
        f'<a href="#s{n}">{_e(i.driver_version)} · {_e(i.arch)}</a>' for n, i in enumerate(ordered)
    )
    meta = []
    if repository:
        meta.append(f"repository {_e(repository)}")
    if signer:
        meta.append(f"index signed by key {_e(signer)}")
    if generated:
        meta.append(f"generated {_e(generated)}")
    body = "".join(sections) or (
        '<p class="empty">This repository holds no driver versions yet.</p>'
    )
    # Defence in depth behind the escaping: only the one script whose hash is pinned here
    # may run, and nothing may be fetched, so a value that slipped through could neither
    # execute nor call home.
    script_hash = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>rtcap driver compatibility</title>"
        f"<style>{_CSS}</style></head><body>"
        "<header><h1>rtcap driver compatibility</h1>"
        f'<div class="meta">{" · ".join(meta)}</div>'
        '<div class="tools"><input id="q" type="search" autocomplete="off" '
        'placeholder="Filter kernels: target, release, compiler, verdict…" '
        'aria-label="Filter kernels">'
        f'<span><output id="shown">{total}</output> of <span id="total">{total}</span>'
        " kernels shown</span>"
        f"<nav>{nav}</nav></div></header>"
        f"<main>{body}</main>"
        f"<script>{_JS}</script></body></html>\n"
    )


# --- reading a repository and writing the page ------------------------------------------


def public_key_from_option(value: str) -> Ed25519PublicKey:
    """`--public-key`: the `ed25519:...` line itself, or the path of the .pub file holding it."""
    text = value.strip()
    if not text.startswith(PUBLIC_KEY_PREFIX):
        try:
            with Path(text).open("rb") as fh:
                text = fh.read(_MAX_PUBLIC_KEY_FILE).decode(errors="replace")
        except OSError as exc:
            raise UsageError(
                f"--public-key {value[:80]}: neither `{PUBLIC_KEY_PREFIX}...` nor a readable "
                f".pub file ({exc.strerror})"
            ) from None
    return parse_public_key(text)


def read_indexes(reader: RepoReader) -> list[ArchIndex]:
    """Every arch index the root index lists, each verified; the first failure raises, so a
    page is never made from part of a repository."""
    root = reader.root_index()
    return [
        reader.arch_index(version, arch)
        for version, arches in root.versions.items()
        for arch in arches
    ]


def _display_url(url: str) -> str:
    """The repository as the page shows it: credentials or a signed query in the URL given
    on the command line must not end up on a public page."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "s3"):
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def write_site(reader: RepoReader, out_dir: Path) -> tuple[Path, int]:
    """Read and verify the whole repository, then write `out_dir/index.html` atomically.
    Returns the page's path and how many arch indexes it shows."""
    indexes = read_indexes(reader)
    page = render_site(
        indexes,
        repository=_display_url(reader.url),
        signer=key_id(reader.public_key),
        generated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    )
    path = out_dir / SITE_FILE
    _write_atomic(path, page.encode())
    return path, len(indexes)


def _write_atomic(path: Path, data: bytes) -> None:
    """Whole or not at all: a web server never serves half a page, and a failed run
    leaves the previous page in place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolError(f"--out {path.parent}: cannot write there ({exc.strerror})") from None
    try:
        write_bytes(path, data)
    except OSError as exc:
        raise ToolError(f"{path}: cannot write the page ({exc.strerror})") from None


@click.command("site")
@click.argument("repo")
@click.option(
    "--public-key",
    "public_key",
    required=True,
    help="The key the index must be signed by: `ed25519:<base64>` or the path of a .pub file.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for index.html (created if missing).",
)
def site_command(repo: str, public_key: str, out_dir: Path) -> None:
    """Write a static compatibility page (index.html) for the repository REPO
    (a directory, file:// or http(s):// URL)."""
    # Not options of the table (this command takes an argument), held to the same forms.
    for spelled, value, rule in (("REPO", repo, REPOSITORY), ("--public-key", public_key,
                                                               PUBLIC_KEY)):
        if not rule.allows(value):
            raise UsageError(f"{spelled}: {shown(value)} is not accepted; use {rule.form}")
    reader = RepoReader(repo, public_key_from_option(public_key))
    path, sections = write_site(reader, out_dir)
    click.echo(f"wrote {path} ({sections} driver version/arch sections)")
