"""`driverkit repo site`: the static compatibility page.

The repository tree is written with the real index and signing code (as publishers write
it) and read back through RepoReader; the page is checked as HTML text and, in the tests
marked `browser`, as the DOM headless Chromium builds after the page's own script ran.
"""

from __future__ import annotations

import hashlib
import html
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from drivercore.naming import ArtifactKind
from drivercore.repoclient import RepoReader
from drivercore.repoindex import (
    ArchIndex,
    IndexEntry,
    RootIndex,
    generate_private_key,
    parse_public_key,
    public_key_text,
    sign_index,
)
from driverkit.cli import main as driverkit_main
from driverkit.publish.site import read_indexes, render_site

HOSTILE = "<script>alert(1)</script>"
# Breaks out of an attribute if a value were ever put into one unescaped; if it ran, it
# would mark the document, which the browser test looks for.
HOSTILE_ATTR = "\"><img src=x onerror=\"document.documentElement.setAttribute('data-pwned','1')\">"
NEW, OLD = "0.2.0+driver", "0.1.0"
CHROMIUM_TIMEOUT_S = 120


def _artifact(
    kind: ArtifactKind,
    target: str = "",
    release: str = "",
    version: str = "",
    *,
    compiler: str | None = None,
    host_verifier: str | None = None,
    boot_verified: tuple[str, ...] = (),
) -> tuple[IndexEntry, bytes]:
    if kind is ArtifactKind.CORE:
        name = "rtcap_core.o"
    else:
        name = f"rtcap_{target}_{release}_{version}.{'ko' if kind is ArtifactKind.KMOD else 'o'}"
    data = f"\x7fELF {name}".encode() * 300
    kmod = kind is ArtifactKind.KMOD
    return IndexEntry(
        file=name,
        kind=kind,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        target=target,
        kernelrelease=release,
        kernelversion=version,
        compiler=compiler if compiler is not None else (
            "gcc (Debian 12.2.0-14) 12.2.0" if kmod else "Debian clang version 14.0.6"),
        host_verifier=host_verifier if host_verifier is not None else (
            "" if kmod else "passed on 6.1.0-56-amd64"),
        boot_verified=boot_verified,
        built_at="2026-12-01T10:00:00Z",
    ), data


def _pair(target: str, release: str, version: str, *, host_verifier: str | None = None,
          boot_verified: tuple[str, ...] = ()) -> list[tuple[IndexEntry, bytes]]:
    return [
        _artifact(ArtifactKind.KMOD, target, release, version, boot_verified=boot_verified),
        _artifact(ArtifactKind.PROBE, target, release, version, host_verifier=host_verifier,
                  boot_verified=boot_verified),
    ]


# (driver version, arch) -> artifacts. 6 kernels in all.
REPO: dict[tuple[str, str], list[tuple[IndexEntry, bytes]]] = {
    (NEW, "x86_64"): [
        *_pair("debian", "6.1.0-56-amd64", "1", boot_verified=("6.1.0-56-amd64",)),
        *_pair("debian", "5.10.0-46-amd64", "1",
               host_verifier="skipped: loading BPF programs needs root"),
        _artifact(ArtifactKind.KMOD, "ubuntu-generic", "5.15.0-100-generic", "110",
                  compiler=HOSTILE),
        _artifact(ArtifactKind.PROBE, "ubuntu-generic", "5.15.0-100-generic", "110",
                  host_verifier=HOSTILE_ATTR),
        # A kernel with only a probe (its module failed to build).
        _artifact(ArtifactKind.PROBE, "amazonlinux2", "5.10.215-203.850.amzn2.x86_64", "1"),
        _artifact(ArtifactKind.CORE, boot_verified=("6.1.0-56-amd64", "6.12.118+deb13-amd64")),
    ],
    (NEW, "aarch64"): [
        *_pair("debian", "6.1.0-56-arm64", "1"),
        _artifact(ArtifactKind.CORE),
    ],
    # An old version without a CO-RE probe: the page says it is missing.
    (OLD, "x86_64"): [_artifact(ArtifactKind.KMOD, "debian", "6.1.0-20-amd64", "1")],
}
KERNELS = 6


def _write_repo(root: Path, key: object,
                folders: dict[tuple[str, str], list[tuple[IndexEntry, bytes]]]) -> None:
    """A repository tree as a publisher leaves it: artifacts, then each index's signature
    file and index, then the root index."""
    rootindex = RootIndex()
    for (version, arch), artifacts in folders.items():
        folder = root / version / arch
        folder.mkdir(parents=True)
        for entry, data in artifacts:
            (folder / entry.file).write_bytes(data)
        data = ArchIndex(version, arch).with_entries(e for e, _ in artifacts).to_bytes()
        (folder / "index.json.sig").write_bytes(sign_index(data, key))  # type: ignore[arg-type]
        (folder / "index.json").write_bytes(data)
        rootindex = rootindex.with_arch(version, arch)
    root_data = rootindex.to_bytes()
    (root / "index.json.sig").write_bytes(sign_index(root_data, key))  # type: ignore[arg-type]
    (root / "index.json").write_bytes(root_data)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    key = generate_private_key()
    root = tmp_path / "repo"
    _write_repo(root, key, REPO)
    return root, public_key_text(key.public_key())


# --- a tiny DOM, enough to read tables back ---------------------------------------------

_VOID = {"meta", "link", "input", "br", "img", "hr", "col", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # own text and descendants', in order

    def text(self) -> str:
        return " ".join("".join(self.texts).split())

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def find(self, tag: str, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if child.tag == tag and (cls is None or cls in child.classes()):
                found.append(child)
            found.extend(child.find(tag, cls))
        return found

    def by_id(self, ident: str) -> Node:
        for node in [self, *self.find_all()]:
            if node.attrs.get("id") == ident:
                return node
        raise AssertionError(f"no element #{ident}")

    def find_all(self) -> list[Node]:
        out = []
        for child in self.children:
            out.append(child)
            out.extend(child.find_all())
        return out


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        for node in self.stack:
            node.texts.append(data)


def parse(document: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(document)
    builder.close()
    return builder.root


def _rows(dom: Node) -> list[Node]:
    return dom.find("tr", "kernel")


def _cells(row: Node) -> dict[str, Node]:
    """The artifact cells of a row by kind (kmod, probe)."""
    return {cell.attrs["data-kind"]: cell for cell in row.find("td", "art")}


def _check_table(dom: Node) -> None:
    rows = _rows(dom)
    assert len(rows) == KERNELS
    assert dom.by_id("total").text() == str(KERNELS)
    sections = dom.find("section", "arch")
    # Newest driver version first; arches sorted within it.
    assert [(s.attrs["data-version"], s.attrs["data-arch"]) for s in sections] == [
        (NEW, "aarch64"), (NEW, "x86_64"), (OLD, "x86_64")]
    x86 = sections[1]
    by_release = {r.find("td", "release")[0].text(): r for r in x86.find("tr", "kernel")}
    assert list(by_release) == [
        "5.10.215-203.850.amzn2.x86_64", "5.10.0-46-amd64", "6.1.0-56-amd64",
        "5.15.0-100-generic"]  # by target, then release in numeric order
    for row in by_release.values():
        assert len(row.find("td")) == 5  # target, release, version, kmod, probe
    # kmod + probe pair with boot verification.
    pair = _cells(by_release["6.1.0-56-amd64"])
    assert "present" in pair["kmod"].classes() and "present" in pair["probe"].classes()
    probe_entry = next(e for e, _ in REPO[(NEW, "x86_64")]
                       if e.kind is ArtifactKind.PROBE and e.kernelrelease == "6.1.0-56-amd64")
    sha = pair["probe"].find("code", "sha")[0]
    assert sha.attrs["title"] == probe_entry.sha256
    assert sha.text() == probe_entry.sha256[:12] + "…"
    assert pair["probe"].find("span", "size")[0].attrs["title"] == f"{probe_entry.size} bytes"
    assert "passed on 6.1.0-56-amd64" in pair["probe"].text()
    assert "boot-verified 6.1.0-56-amd64" in pair["kmod"].text()
    assert "2026-12-01T10:00:00Z" in pair["kmod"].text()
    assert "skipped: loading BPF" in _cells(by_release["5.10.0-46-amd64"])["probe"].text()
    # The kernel with only a probe.
    only = _cells(by_release["5.10.215-203.850.amzn2.x86_64"])
    assert "missing" in only["kmod"].classes() and only["kmod"].text() == "missing"
    assert "present" in only["probe"].classes()
    # The hostile strings are text, shown as written.
    hostile = _cells(by_release["5.15.0-100-generic"])
    assert HOSTILE in hostile["kmod"].find("div", "compiler")[0].text()
    assert " ".join(HOSTILE_ATTR.split()) in hostile["probe"].find("div", "verifier")[0].text()
    # CO-RE banners: present with its boot kernels, and missing for the old version.
    core = x86.find("div", "core")[0]
    assert core.attrs["data-file"] == "rtcap_core.o"
    assert "6.12.118+deb13-amd64" in core.text()
    assert "missing" in sections[2].find("div", "core")[0].classes()


def test_render_site_builds_the_table_and_escapes(repo: tuple[Path, str]) -> None:
    root, pub = repo
    indexes = read_indexes(RepoReader(str(root), parse_public_key(pub)))
    page = render_site(indexes, repository="https://repo.example/rtcap", signer="abc")
    # Every hostile value is escaped: no markup from an index survives as markup.
    assert HOSTILE not in page and html.escape(HOSTILE) in page
    assert "<img" not in page and html.escape(HOSTILE_ATTR) in page
    assert page.count("<script") == 1
    _check_table(parse(page))
    # Nothing external: the page works offline and from a file.
    assert "http://" not in page
    assert page.count("https://") == 1  # the repository named in the header
    assert render_site([]).count('class="empty"') == 1


def _site(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = driverkit_main(["repo", "site", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_site_command_writes_the_page_atomically(
    repo: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, pub = repo
    pub_file = tmp_path / "repo-signing.pub"
    pub_file.write_text(pub + "\n")
    out = tmp_path / "site"
    code, stdout, err = _site([str(root), "--public-key", str(pub_file), "--out", str(out)],
                              capsys)
    assert code == 0, err
    assert stdout.strip() == f"wrote {out / 'index.html'} (3 driver version/arch sections)"
    assert [p.name for p in out.iterdir()] == ["index.html"]  # no temp file left
    assert (out / "index.html").stat().st_mode & 0o777 == 0o644
    _check_table(parse((out / "index.html").read_text()))
    # The key given as text works the same.
    code, _, err = _site([root.as_uri(), "--public-key", pub, "--out", str(out)], capsys)
    assert code == 0, err


def test_an_index_signed_by_another_key_writes_nothing(
    repo: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, pub = repo
    out = tmp_path / "site"
    other = public_key_text(generate_private_key().public_key())
    code, stdout, err = _site([str(root), "--public-key", other, "--out", str(out)], capsys)
    assert code == 13  # ExitCode.INDEX_INVALID
    assert stdout == "" and len(err.splitlines()) == 1 and "pinned key" in err
    assert not out.exists()
    # The root verifies but one arch index was re-signed by someone else: still nothing,
    # and a page written earlier stays as it was.
    code, _, err = _site([str(root), "--public-key", pub, "--out", str(out)], capsys)
    assert code == 0, err
    before = (out / "index.html").read_bytes()
    folder = root / OLD / "x86_64"
    data = (folder / "index.json").read_bytes()
    (folder / "index.json.sig").write_bytes(sign_index(data, generate_private_key()))
    code, stdout, err = _site([str(root), "--public-key", pub, "--out", str(out)], capsys)
    assert code == 13 and stdout == "" and len(err.splitlines()) == 1
    assert f"{OLD}/x86_64/index.json" in err
    assert (out / "index.html").read_bytes() == before
    assert [p.name for p in out.iterdir()] == ["index.html"]


# --- in a real browser ------------------------------------------------------------------


def _chromium(tmp_path: Path, url: str, *extra: str) -> str:
    profile = tmp_path / "chromium-profile"  # own profile: parallel runs do not share one
    argv = [
        "chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
        "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={profile}",
        *extra, url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.browser
def test_page_in_headless_chromium(
    repo: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, pub = repo
    out = tmp_path / "site"
    code, _, err = _site([str(root), "--public-key", pub, "--out", str(out)], capsys)
    assert code == 0, err
    page = (out / "index.html").as_uri()

    dom = parse(_chromium(tmp_path, page, "--dump-dom"))
    _check_table(dom)
    # The script ran (the count is its output) and nothing else did.
    assert dom.by_id("shown").text() == str(KERNELS)
    assert not [r for r in _rows(dom) if "hidden" in r.attrs]
    html_el = dom.find("html")[0]
    assert "data-pwned" not in html_el.attrs
    assert len(dom.find("script")) == 1 and not dom.find("img")

    # The filter, driven as a link would: `#q=` fills the box and fires its input event.
    # Terms are ANDed, case-insensitive, over the row's text; each chromium start costs a
    # second or two, so a few queries cover it.
    for query, expected in (("amazonlinux2", ["5.10.215-203.850.amzn2.x86_64"]),
                            ("DEBIAN%20arm64", ["6.1.0-56-arm64"]),
                            ("amd641", [])):  # release and version are two cells, not one
        dom = parse(_chromium(tmp_path, f"{page}#q={query}", "--dump-dom"))
        visible = [r for r in _rows(dom) if "hidden" not in r.attrs]
        assert [r.find("td", "release")[0].text() for r in visible] == expected, query
        assert dom.by_id("shown").text() == str(len(expected))
    # `?q=` works the same; the section's version counts as row text; sections count what
    # they show and say so when they show nothing.
    dom = parse(_chromium(tmp_path, f"{page}?q=0.1.0", "--dump-dom"))
    assert dom.by_id("shown").text() == "1"
    sections = dom.find("section", "arch")
    assert [s.find("span", "visible")[0].text() for s in sections] == ["0", "0", "1"]
    assert ["hidden" in s.find("p", "nomatch")[0].attrs for s in sections] == [
        False, False, True]

    shot = tmp_path / "site.png"
    _chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,900",
              "--hide-scrollbars")
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
