"""driverkit.repometa: candidate header URLs -> exact package URLs, over real HTTP.

The distro mirrors (Amazon, CentOS, Fedora, openSUSE, Ubuntu, ...) are NOT reachable from
the CI machine, so these tests serve small fixtures that mimic the mirrors' shapes (a yum
`mirror.list`, `repodata/repomd.xml`, `primary.sqlite.bz2`, `primary.xml.gz`, package
files, redirects, HEAD-refusing servers, slow servers) from a real `http.server` on
127.0.0.1. The fixtures are either committed text (tests/fixtures/repometa/) or built here
from createrepo's real table and element layout, with checksums computed from the bytes
actually served, so a wrong URL, checksum or size makes a test fail.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import hashlib
import lzma
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from driverkit.config import load_config, resolve_plan
from driverkit.errors import HeadersNotFoundError, UsageError
from driverkit.plan import BuildPlan
from driverkit.repometa import (
    ExactPackage,
    MetadataError,
    decompress_metadata,
    find_header_urls,
    nearest_releases,
    parse_flatcar_kernel,
    parse_mirror_list,
    parse_primary_sqlite,
    parse_primary_xml,
    parse_repomd,
    repo_root_of,
)
from driverkit.targets.base import Mirrors

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "repometa"
AL2_HOST = "http://amazonlinux.us-east-1.amazonaws.com"

# ---------------------------------------------------------------------------------------
# A tiny mirror: real HTTP on loopback, with the behaviours real mirrors show.


@dataclass
class Site:
    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location
    head_refused: set[str] = field(default_factory=set)  # answer HEAD with 405
    slow: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    log: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, Range
    base: str = ""


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def _answer(self, with_body: bool) -> None:
            path = self.path
            site.log.append((self.command, path, self.headers.get("Range", "")))
            if path in site.slow:
                time.sleep(site.slow[path])
            if path in site.redirects:
                self.send_response(302)
                self.send_header("Location", site.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if not with_body and path in site.head_refused:
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = site.files.get(path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            ranged = self.headers.get("Range", "")
            if ranged == "bytes=0-0" and body:
                self.send_response(206)
                self.send_header("Content-Range", f"bytes 0-0/{len(body)}")
                self.send_header("Content-Length", "1")
                self.end_headers()
                if with_body:
                    self.wfile.write(body[:1])
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(with_body=True)

        def do_HEAD(self) -> None:
            self._answer(with_body=False)

    return Handler


@pytest.fixture
def site() -> Iterator[Site]:
    state = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------
# Fixture builders: createrepo's real layouts, filled with a few kernel packages.

# The columns of createrepo's `packages` table that the metadata readers rely on, in
# createrepo's order (the real table has more; sqlite does not care).
PACKAGES_DDL = (
    "CREATE TABLE packages (pkgKey INTEGER PRIMARY KEY, pkgId TEXT, name TEXT, arch TEXT, "
    "version TEXT, epoch TEXT, release TEXT, summary TEXT, size_package INTEGER, "
    "size_installed INTEGER, location_href TEXT, location_base TEXT, checksum_type TEXT)"
)


def primary_sqlite(rows: list[tuple[str, str, str, str, str, bytes]]) -> bytes:
    """(name, arch, version, release, href, rpm bytes) rows -> primary.sqlite bytes."""
    con = sqlite3.connect(":memory:")
    con.execute(PACKAGES_DDL)
    for name, arch, version, release, href, payload in rows:
        con.execute(
            "INSERT INTO packages (pkgId, name, arch, version, epoch, release, summary, "
            "size_package, size_installed, location_href, location_base, checksum_type) "
            "VALUES (?, ?, ?, ?, '0', ?, 'kernel', ?, ?, ?, NULL, 'sha256')",
            (hashlib.sha256(payload).hexdigest(), name, arch, version, release,
             len(payload), len(payload) * 2, href),
        )  # fmt: skip
    con.commit()
    data = con.serialize()
    con.close()
    return bytes(data)


def repomd(entries: dict[str, tuple[str, bytes]]) -> bytes:
    """repomd.xml listing `type -> (href, compressed bytes)` with their real checksums."""
    data = "".join(
        f'<data type="{kind}"><checksum type="sha256">{hashlib.sha256(blob).hexdigest()}'
        f'</checksum><open-checksum type="sha256">0</open-checksum>'
        f'<location href="{href}"/><timestamp>1700000000</timestamp>'
        f"<size>{len(blob)}</size></data>"
        for kind, (href, blob) in entries.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<repomd xmlns="http://linux.duke.edu/metadata/repo" '
        'xmlns:rpm="http://linux.duke.edu/metadata/rpm">'
        f"<revision>1700000000</revision>{data}</repomd>"
    ).encode()


def publish_repo(site: Site, root: str, kind: str, href: str, blob: bytes) -> None:
    site.files[f"{root}repodata/repomd.xml"] = repomd({kind: (href, blob)})
    site.files[f"{root}{href}"] = blob


def plan_for(release: str, target: str, urls: list[str], arch: str = "amd64") -> BuildPlan:
    cfg = load_config({"arch": arch})
    return resolve_plan(release, cfg, Mirrors(), target=target, kernel_urls=tuple(urls))


def rpm_bytes(label: str) -> bytes:
    # Stand-in rpm payloads: distinct bytes so a wrong pick has a wrong checksum.
    return (f"rpm payload of {label}\n" * 50).encode()


# ---------------------------------------------------------------------------------------
# Amazon Linux: mirror.list -> repomd.xml -> primary.sqlite.bz2 -> exact rpm + sha256

AL2_RELEASE = "4.14.171-136.231.amzn2.x86_64"
AL2_BLOB = "blobstore/1c3a2b9f0d/kernel-devel-4.14.171-136.231.amzn2.x86_64.rpm"


def _al2_site(site: Site) -> tuple[list[str], bytes]:
    # core/2.0 points at a repository without this kernel; extras/kernel-5.10 has it.
    core_list = (FIXTURES / "al2-core-mirror.list").read_text().replace(AL2_HOST, site.base)
    core_repo = core_list.strip().removeprefix(site.base) + "/"
    extras_repo = "/2/extras/kernel-5.10/latest/x86_64/9f8e7d6c5b4a/"
    site.files["/2/core/2.0/x86_64/mirror.list"] = core_list.encode()
    site.files["/2/extras/kernel-5.10/latest/x86_64/mirror.list"] = (
        f"{site.base}{extras_repo.rstrip('/')}\n".encode()
    )
    wanted = rpm_bytes("al2 4.14.171-136.231")
    other = rpm_bytes("al2 4.14.173-137.229")
    up = "../../../../../../"  # real AL2 hrefs climb from the repository to the blob store
    publish_repo(
        site, core_repo, "primary_db", "repodata/primary.sqlite.bz2",
        bz2.compress(primary_sqlite([
            ("kernel-devel", "x86_64", "4.14.173", "137.229.amzn2", up[3:] +
             "blobstore/aa/kernel-devel-4.14.173-137.229.amzn2.x86_64.rpm", other),
            ("kernel-headers", "x86_64", "4.14.171", "136.231.amzn2", up[3:] +
             "blobstore/bb/kernel-headers-4.14.171-136.231.amzn2.x86_64.rpm", other),
        ])),
    )  # fmt: skip
    publish_repo(
        site, extras_repo, "primary_db", "repodata/primary.sqlite.bz2",
        bz2.compress(primary_sqlite([
            ("kernel-devel", "x86_64", "4.14.171", "136.231.amzn2", up + AL2_BLOB, wanted),
            ("kernel-devel", "x86_64", "4.14.173", "137.229.amzn2", up + "blobstore/cc/x.rpm",
             other),
        ])),
    )  # fmt: skip
    site.files["/" + AL2_BLOB] = wanted
    candidates = [
        f"{site.base}/2/core/2.0/x86_64/mirror.list",
        f"{site.base}/2/core/latest/x86_64/mirror.list",  # 404 on this mirror
        f"{site.base}/2/extras/kernel-5.10/latest/x86_64/mirror.list",
    ]
    return candidates, wanted


def test_al2_mirror_list_to_sqlite_exact_url_and_sha256(site: Site) -> None:
    candidates, wanted = _al2_site(site)
    plan = plan_for(AL2_RELEASE, "amazonlinux2", candidates)
    found = find_header_urls(plan)
    assert found == [
        ExactPackage(f"{site.base}/{AL2_BLOB}", hashlib.sha256(wanted).hexdigest(), len(wanted))
    ]
    # The URL is real: what it serves hashes to the published sha256.
    served = requests.get(found[0].url, timeout=5).content
    assert hashlib.sha256(served).hexdigest() == found[0].sha256


def test_al2_release_absent_everywhere_names_every_url(site: Site) -> None:
    candidates, _ = _al2_site(site)
    plan = plan_for("4.14.999-1.1.amzn2.x86_64", "amazonlinux2", candidates)
    with pytest.raises(HeadersNotFoundError) as info:
        find_header_urls(plan)
    message = str(info.value)
    assert "\n" not in message
    for url in candidates:
        assert url in message
    assert f"{site.base}/2/core/latest/x86_64/mirror.list (HTTP 404)" in message
    assert "repodata/primary.sqlite.bz2 (lists no kernel-devel-4.14.999-1.1.amzn2.x86_64.rpm)" in (
        message
    )


def test_al_metadata_with_a_wrong_checksum_is_not_trusted(site: Site) -> None:
    candidates, _ = _al2_site(site)
    extras = "/2/extras/kernel-5.10/latest/x86_64/9f8e7d6c5b4a/repodata/primary.sqlite.bz2"
    site.files[extras] = bytes(reversed(site.files[extras]))  # same size, other content
    plan = plan_for(AL2_RELEASE, "amazonlinux2", candidates)
    with pytest.raises(HeadersNotFoundError, match=r"does not match repomd\.xml"):
        find_header_urls(plan)


def test_al2023_primary_xml_when_no_sqlite_is_published(site: Site) -> None:
    release = "6.1.21-1.45.amzn2023.x86_64"
    payload = rpm_bytes(release)
    repo = "/al2023/core/guids/0d1e2f/x86_64/"
    xml = (
        '<?xml version="1.0"?><metadata xmlns="http://linux.duke.edu/metadata/common" '
        'packages="1"><package type="rpm"><name>kernel-devel</name><arch>x86_64</arch>'
        '<version epoch="0" ver="6.1.21" rel="1.45.amzn2023"/>'
        f'<checksum type="sha256" pkgid="YES">{hashlib.sha256(payload).hexdigest()}</checksum>'
        f'<size package="{len(payload)}" installed="1" archive="1"/>'
        f'<location href="../../../../blobstore/dd/kernel-devel-{release}.rpm"/>'
        "</package></metadata>"
    ).encode()
    publish_repo(site, repo, "primary", "repodata/primary.xml.gz", gzip.compress(xml))
    site.files["/al2023/core/mirrors/latest/x86_64/mirror.list"] = f"{site.base}{repo}\n".encode()
    plan = plan_for(
        release, "amazonlinux2023", [f"{site.base}/al2023/core/mirrors/latest/x86_64/mirror.list"]
    )
    (package,) = find_header_urls(plan)
    assert package.url == f"{site.base}/al2023/blobstore/dd/kernel-devel-{release}.rpm"
    assert package.sha256 == hashlib.sha256(payload).hexdigest()
    assert package.size == len(payload)


def test_verified_primary_index_is_reused_from_the_cache(site: Site, tmp_path: Path) -> None:
    candidates, _ = _al2_site(site)
    plan = plan_for(AL2_RELEASE, "amazonlinux2", candidates)
    first = find_header_urls(plan, cache_dir=tmp_path)
    primaries = [p for p in site.files if p.endswith("primary.sqlite.bz2")]
    for path in primaries:
        del site.files[path]  # a second run must not need them
    site.log.clear()
    assert find_header_urls(plan, cache_dir=tmp_path) == first
    assert not any(path.endswith(".bz2") for _, path, _ in site.log)
    assert any(path.endswith("repomd.xml") for _, path, _ in site.log)  # still fresh


# ---------------------------------------------------------------------------------------
# CentOS-style: the exact URL moved; the repository's primary.xml.gz knows where


def _centos_repo(site: Site, root: str) -> bytes:
    payload = rpm_bytes("3.10.0-1160.el7")
    xml = (FIXTURES / "centos7-primary.xml").read_text()
    xml = xml.replace("@SHA_1160@", hashlib.sha256(payload).hexdigest())
    xml = xml.replace("@SIZE_1160@", str(len(payload)))
    publish_repo(site, root, "primary", "repodata/0a1b-primary.xml.gz", gzip.compress(xml.encode()))
    site.files[f"{root}Packages/k/kernel-devel-3.10.0-1160.el7.x86_64.rpm"] = payload
    return payload


def test_centos_exact_url_missing_found_through_primary_xml_gz(site: Site) -> None:
    root = "/centos/7.9.2009/os/x86_64/"
    payload = _centos_repo(site, root)
    candidates = [
        f"{site.base}{root}Packages/kernel-devel-3.10.0-1160.el7.x86_64.rpm",  # 404: moved
        f"{site.base}/centos/7/updates/x86_64/Packages/kernel-devel-3.10.0-1160.el7.x86_64.rpm",
    ]
    plan = plan_for("3.10.0-1160.el7.x86_64", "centos", candidates)
    found = find_header_urls(plan)
    assert found == [
        ExactPackage(
            f"{site.base}{root}Packages/k/kernel-devel-3.10.0-1160.el7.x86_64.rpm",
            hashlib.sha256(payload).hexdigest(),
            len(payload),
        )
    ]
    heads = [path for method, path, _ in site.log if method == "HEAD"]
    assert len(heads) == 2  # both exact candidates were HEAD-checked before the index


def test_centos_exact_url_found_by_head_without_reading_metadata(site: Site) -> None:
    root = "/centos/7/os/x86_64/"
    payload = _centos_repo(site, root)
    url = f"{site.base}{root}Packages/k/kernel-devel-3.10.0-1160.el7.x86_64.rpm"
    plan = plan_for("3.10.0-1160.el7.x86_64", "centos", [url])
    assert find_header_urls(plan) == [ExactPackage(url, "", len(payload))]
    assert not any("repodata" in path for _, path, _ in site.log)


# ---------------------------------------------------------------------------------------
# Exact URLs: HEAD, 404, HEAD refused -> ranged GET, redirects, timeouts


def test_head_check_skips_404_and_takes_the_first_existing(site: Site) -> None:
    release = "6.8.1-arch1-1"
    name = "linux-headers-6.8.1.arch1-1-x86_64.pkg.tar.{}"
    site.files[f"/arch/{name.format('xz')}"] = b"x" * 1234
    candidates = [f"{site.base}/arch/{name.format(c)}" for c in ("zst", "xz")]
    plan = plan_for(release, "arch", candidates)
    assert find_header_urls(plan) == [ExactPackage(candidates[1], "", 1234)]


def test_head_refused_falls_back_to_a_ranged_get(site: Site) -> None:
    path = "/fedora/updates/39/Everything/x86_64/Packages/k/kernel-devel-6.5.6-300.fc39.x86_64.rpm"
    site.files[path] = b"r" * 4321
    site.head_refused.add(path)
    plan = plan_for("6.5.6-300.fc39.x86_64", "fedora", [site.base + path])
    assert find_header_urls(plan) == [ExactPackage(site.base + path, "", 4321)]
    assert ("HEAD", path, "") in site.log
    assert ("GET", path, "bytes=0-0") in site.log


def test_redirects_are_followed_and_the_candidate_url_kept(site: Site) -> None:
    path = "/photon/4.0/photon_updates_4.0_x86_64/x86_64/linux-devel-5.10.175-1.ph4.x86_64.rpm"
    site.redirects[path] = f"{site.base}/cdn/abc/linux-devel-5.10.175-1.ph4.x86_64.rpm"
    site.files["/cdn/abc/linux-devel-5.10.175-1.ph4.x86_64.rpm"] = b"p" * 99
    plan = plan_for("5.10.175-1.ph4", "photon", [site.base + path])
    assert find_header_urls(plan) == [ExactPackage(site.base + path, "", 99)]


def test_redirected_mirror_list_and_repository(site: Site) -> None:
    candidates, wanted = _al2_site(site)
    moved = "/2/extras/kernel-5.10/latest/x86_64/mirror.list"
    site.files["/moved/mirror.list"] = site.files.pop(moved)
    site.redirects[moved] = f"{site.base}/moved/mirror.list"
    plan = plan_for(AL2_RELEASE, "amazonlinux2", candidates)
    (package,) = find_header_urls(plan)
    assert package.sha256 == hashlib.sha256(wanted).hexdigest()


def test_nothing_found_is_one_line_naming_every_url_tried(site: Site) -> None:
    candidates = [
        f"{site.base}/fedora/a/kernel-devel-6.5.6-300.fc39.x86_64.rpm",
        f"{site.base}/fedora/b/kernel-devel-6.5.6-300.fc39.x86_64.rpm",
    ]
    plan = plan_for("6.5.6-300.fc39.x86_64", "fedora", candidates)
    with pytest.raises(HeadersNotFoundError) as info:
        find_header_urls(plan)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("no kernel headers found for 6.5.6-300.fc39.x86_64 (target fedora)")
    for url in candidates:
        assert f"{url} (HTTP 404)" in message
    # The fallback read both repositories' indexes, and says so.
    assert f"{site.base}/fedora/a/repodata/repomd.xml (HTTP 404)" in message
    assert info.value.exit_code == HeadersNotFoundError.exit_code


def test_timeout_is_one_line_and_skips_the_rest_of_that_host(site: Site) -> None:
    slow = "/slow/linux-headers-6.8.1.arch1-1-x86_64.pkg.tar.zst"
    site.slow[slow] = 2.0
    candidates = [
        site.base + slow,
        f"{site.base}/slow/linux-headers-6.8.1.arch1-1-x86_64.pkg.tar.xz",
    ]
    plan = plan_for("6.8.1-arch1-1", "arch", candidates)
    started = time.monotonic()
    with pytest.raises(HeadersNotFoundError) as info:
        find_header_urls(plan, timeout=0.3)
    assert time.monotonic() - started < 1.9  # the second URL was not waited for
    message = str(info.value)
    assert "\n" not in message
    assert f"{site.base + slow} (no answer within 0.3s)" in message
    assert "not tried, host unreachable: 127.0.0.1" in message
    assert "1 more URLs" in message


def test_unreachable_host_is_reported_not_raised(site: Site) -> None:
    # A port nobody listens on: connection refused, like the real mirrors from here.
    dead = "http://127.0.0.1:9/centos/7/os/x86_64/Packages/kernel-devel-3.10.0-1160.el7.x86_64.rpm"
    plan = plan_for("3.10.0-1160.el7.x86_64", "centos", [dead])
    with pytest.raises(HeadersNotFoundError) as info:
        find_header_urls(plan, timeout=2)
    assert f"{dead} (connection failed)" in str(info.value)


# ---------------------------------------------------------------------------------------
# Targets needing two packages


def test_ubuntu_needs_arch_and_all_debs_from_one_pool_directory(site: Site) -> None:
    cfg = load_config({})
    mirrors = Mirrors(ubuntu=(f"{site.base}/ubuntu",))
    plan = resolve_plan("5.15.0-91-generic", cfg, mirrors, target="ubuntu", kernel_version="101")
    pool = "/ubuntu/pool/main/l/linux/"
    arch_deb = "linux-headers-5.15.0-91-generic_5.15.0-91.101_amd64.deb"
    all_deb = "linux-headers-5.15.0-91_5.15.0-91.101_all.deb"
    assert f"{site.base}{pool}{arch_deb}" in plan.headers
    assert f"{site.base}{pool}{all_deb}" in plan.headers
    site.files[pool + arch_deb] = b"a" * 10
    with pytest.raises(HeadersNotFoundError):
        find_header_urls(plan)  # the _all.deb is missing: not buildable
    site.files[pool + all_deb] = b"b" * 20
    found = find_header_urls(plan)
    assert sorted(found, key=lambda p: p.url) == [
        ExactPackage(f"{site.base}{pool}{arch_deb}", "", 10),
        ExactPackage(f"{site.base}{pool}{all_deb}", "", 20),
    ]


def test_suse_needs_flavored_devel_and_matching_noarch(site: Site) -> None:
    repo = "/distribution/leap/15.4/repo/oss/"
    version = "5.14.21-150400.24.46.1"
    devel = f"{repo}x86_64/kernel-default-devel-{version}.x86_64.rpm"
    common = f"{repo}noarch/kernel-devel-{version}.noarch.rpm"
    candidates = [site.base + devel, site.base + common]
    site.files[devel] = b"d" * 30
    plan = plan_for("5.14.21-150400.24.46-default", "opensuse", candidates)
    with pytest.raises(HeadersNotFoundError, match=r"noarch\.rpm \(HTTP 404\)"):
        find_header_urls(plan)
    site.files[common] = b"c" * 40
    assert find_header_urls(plan) == [
        ExactPackage(site.base + devel, "", 30),
        ExactPackage(site.base + common, "", 40),
    ]


def test_flatcar_release_number_resolves_through_the_package_list(site: Site) -> None:
    listing = "/stable/amd64-usr/3510.2.3/flatcar_production_image_packages.txt"
    site.files[listing] = (
        b"sys-apps/systemd-252.11::coreos-overlay\n"
        b"sys-kernel/coreos-firmware-20230404::coreos-overlay\n"
        b"sys-kernel/coreos-kernel-5.15.117::coreos-overlay\n"
    )
    plan = plan_for("3510.2.3", "flatcar", [site.base + listing])
    tarball = "https://cdn.kernel.org/pub/linux/kernel/v5.x/linux-5.15.117.tar.xz"
    # kernel.org is unreachable from CI (then the error names the tarball the package list
    # led to); with a network the tarball itself is found.
    try:
        found = find_header_urls(plan, timeout=3)
    except HeadersNotFoundError as exc:
        assert f"{tarball} (" in str(exc)
    else:
        assert [package.url for package in found] == [tarball]


def test_debian_is_left_to_the_archive_index() -> None:
    cfg = load_config({})
    plan = resolve_plan("6.1.0-56-amd64", cfg, Mirrors(debian="http://127.0.0.1:9/debian"))
    with pytest.raises(UsageError, match="archive index"):
        find_header_urls(plan)


def test_check_headers_returns_the_exact_urls(site: Site, tmp_path: Path) -> None:
    from driverkit.headers import check_headers

    candidates, _ = _al2_site(site)
    plan = plan_for(AL2_RELEASE, "amazonlinux2", candidates)
    assert check_headers(plan, Mirrors(), tmp_path) == [f"{site.base}/{AL2_BLOB}"]


# ---------------------------------------------------------------------------------------
# Pure parsers


def test_parse_mirror_list_fills_basearch_and_skips_comments() -> None:
    data = (FIXTURES / "al1-mirror.list").read_bytes()
    assert parse_mirror_list(data, "aarch64") == [
        "http://packages.us-east-1.amazonaws.com/2018.03/updates/e6cf2ea5d8b4/aarch64",
        "http://packages.us-west-2.amazonaws.com/2018.03/updates/e6cf2ea5d8b4/aarch64",
    ]
    assert parse_mirror_list(b"\n# nothing\nftp://x/y\n", "x86_64") == []


def test_parse_repomd_reads_every_data_entry() -> None:
    blob = b"abc"
    files = parse_repomd(
        repomd(
            {"primary": ("repodata/p.xml.gz", blob), "primary_db": ("repodata/p.sqlite.xz", b"")}
        )
    )
    assert set(files) == {"primary", "primary_db"}
    assert files["primary"].href == "repodata/p.xml.gz"
    assert files["primary"].checksum == hashlib.sha256(blob).hexdigest()
    assert files["primary"].checksum_type == "sha256"
    assert files["primary"].size == 3
    with pytest.raises(MetadataError, match="not XML"):
        parse_repomd(b"<html>oops")
    with pytest.raises(MetadataError, match="no metadata files"):
        parse_repomd(b'<repomd xmlns="http://linux.duke.edu/metadata/repo"/>')


def test_parse_primary_xml_from_the_recorded_shape() -> None:
    xml = (FIXTURES / "centos7-primary.xml").read_bytes()
    entries = parse_primary_xml(xml)
    assert [(e.name, e.version, e.release) for e in entries] == [
        ("kernel-devel", "3.10.0", "1160.el7"),
        ("kernel-devel", "3.10.0", "1160.2.1.el7"),
        ("kernel-headers", "3.10.0", "1160.el7"),
    ]
    (only,) = parse_primary_xml(xml, ["kernel-devel-3.10.0-1160.2.1.el7.x86_64.rpm"])
    assert only.size == 19224908
    assert only.sha256.startswith("0c6f0b5a")
    assert only.url("http://m/centos/7/os/x86_64") == (
        "http://m/centos/7/os/x86_64/Packages/k/kernel-devel-3.10.0-1160.2.1.el7.x86_64.rpm"
    )


def test_primary_xml_base_overrides_the_repository_root() -> None:
    xml = (
        b'<metadata xmlns="http://linux.duke.edu/metadata/common"><package type="rpm">'
        b"<name>kernel-devel</name><arch>x86_64</arch><version ver='1' rel='2'/>"
        b'<checksum type="sha">abc</checksum><size package="5"/>'
        b'<location xml:base="http://vault.example/7.1/" href="Packages/k.rpm"/>'
        b"</package></metadata>"
    )
    (entry,) = parse_primary_xml(xml)
    assert entry.url("http://mirror/7/os/x86_64/") == "http://vault.example/7.1/Packages/k.rpm"
    assert entry.sha256 == ""  # a sha1 checksum is not passed off as a sha256


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [(".bz2", bz2.compress), (".gz", gzip.compress), (".xz", lzma.compress), ("", bytes)],
)
def test_primary_sqlite_in_every_compression(suffix: str, compress: object) -> None:
    payload = rpm_bytes("x")
    db = primary_sqlite(
        [("kernel-devel", "x86_64", "5.10.1", "1.amzn2", "Packages/kernel-devel-a.rpm", payload),
         ("kernel-devel", "x86_64", "5.10.2", "1.amzn2", "Packages/kernel-devel-b.rpm", b"")]
    )  # fmt: skip
    assert callable(compress)
    raw = decompress_metadata(f"repodata/primary.sqlite{suffix}", compress(db))
    entries = parse_primary_sqlite(raw, ["kernel-devel-a.rpm"])
    assert [(e.version, e.sha256, e.size) for e in entries] == [
        ("5.10.1", hashlib.sha256(payload).hexdigest(), len(payload))
    ]
    assert len(parse_primary_sqlite(raw)) == 2


def test_corrupt_metadata_is_a_metadata_error() -> None:
    with pytest.raises(MetadataError, match="cannot decompress"):
        decompress_metadata("primary.sqlite.bz2", b"not bzip2")
    with pytest.raises(MetadataError, match="not a repository database"):
        parse_primary_sqlite(b"SQLite format 3\x00" + b"\x00" * 50)


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("http://m/centos/7/os/x86_64/Packages/kernel-devel-1.rpm", "http://m/centos/7/os/x86_64/"),
        ("https://d/pub/rocky/8/BaseOS/x86_64/os/Packages/k/k.rpm", "https://d/pub/rocky/8/BaseOS/x86_64/os/"),
        ("http://y/OL8/UEKR6/x86_64/getPackage/kernel-uek-devel-1.rpm", "http://y/OL8/UEKR6/x86_64/"),
        ("https://p/photon/4.0/photon_4.0_x86_64/x86_64/linux-devel-1.rpm", "https://p/photon/4.0/photon_4.0_x86_64/"),
        ("http://o/leap/15.4/repo/oss/noarch/kernel-devel-1.noarch.rpm", "http://o/leap/15.4/repo/oss/"),
    ],
)  # fmt: skip
def test_repo_root_of_known_layouts(url: str, root: str) -> None:
    assert repo_root_of(url) == root


def test_parse_flatcar_kernel() -> None:
    assert parse_flatcar_kernel(b"sys-kernel/coreos-sources-5.15.63::coreos\n") == "5.15.63"
    assert parse_flatcar_kernel(b"sys-apps/systemd-252\n") is None


def test_exact_package_is_frozen() -> None:
    package = ExactPackage("http://x/y.rpm")
    with pytest.raises(dataclasses.FrozenInstanceError):
        package.url = "http://z"  # type: ignore[misc]
    assert (package.sha256, package.size) == ("", 0)


def test_a_release_the_repositories_lack_is_told_the_nearest_they_list(site: Site) -> None:
    """The mission's own example: `5.10.0-amzn2` is not a build Amazon published; the
    indexes that answered say which kernel-devel builds exist, nearest first."""
    candidates, _ = _al2_site(site)
    plan = plan_for("4.14.0-amzn2", "amazonlinux2", candidates)
    with pytest.raises(HeadersNotFoundError) as info:
        find_header_urls(plan)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("no kernel-devel 4.14.0-amzn2 in amazonlinux2's repositories")
    assert "nearest: 4.14.171-136.231.amzn2.x86_64, 4.14.173-137.229.amzn2.x86_64;" in message
    # kernel-headers is another package: never offered as a kernel-devel build.
    assert "kernel-headers" not in message.split("; tried", maxsplit=1)[0]


def test_nearest_releases_prefer_the_series_then_the_sublevel() -> None:
    listed = ["5.10.230-223.885.amzn2.x86_64", "5.15.1-1.amzn2.x86_64",
              "5.10.226-214.880.amzn2.x86_64", "5.10.226-215.879.amzn2.x86_64",
              "4.14.1-1.amzn2"]  # fmt: skip
    assert nearest_releases("5.10.227-amzn2", listed) == [
        "5.10.226-215.879.amzn2.x86_64",
        "5.10.226-214.880.amzn2.x86_64",
        "5.10.230-223.885.amzn2.x86_64",
    ]


def test_repo_mirror_routes_the_targets_own_urls_and_the_mirror_lists_urls(
    site: Site, tmp_path: Path
) -> None:
    """`--repo-mirror` maps Amazon's real hosts onto a mirror: the plan keeps Amazon's own
    URLs (resolution is pure), and every fetch, including the repository the mirror.list
    names, goes to the mirror."""
    from driverkit.headers import check_headers

    _al2_site(site)
    # The site's mirror.list names repositories by the site's address; say Amazon's.
    for key, body in list(site.files.items()):
        if key.endswith("mirror.list"):
            site.files[key] = body.replace(site.base.encode(), AL2_HOST.encode())
    cfg = load_config({"repo_mirrors": (f"{AL2_HOST}/={site.base}/",)})
    plan = resolve_plan(AL2_RELEASE, cfg, cfg.mirrors, target="amazonlinux2")
    assert all(url.startswith(AL2_HOST) for url in plan.headers)
    assert check_headers(plan, cfg.mirrors, tmp_path) == [f"{AL2_HOST}/{AL2_BLOB}"]


@pytest.mark.parametrize("text", ["http://a/", "http://a/=", "=http://b/", "http://a/=file:///x",
                                  "http://a/=http://b/ x", "http://a/;=http://b/"])  # fmt: skip
def test_repo_mirror_takes_two_http_urls(text: str) -> None:
    with pytest.raises(UsageError, match="--repo-mirror"):
        load_config({"repo_mirrors": (text,)})
