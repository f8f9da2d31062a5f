"""Targets and Debian suites are data: one row (or one call) reaches every consumer.

A throwaway target registered with one `register_target` call is listed, inferred, resolved
and named; a throwaway Debian suite row is seen by the gcc builder choice, the Dockerfile
render, the debootstrap keyring check and the catalog crawl.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import cast

import pytest
from click.testing import CliRunner

from drivercore.kernelrelease import KernelRelease, parse_kernel_release
from drivercore.targets import (
    ARTIFACT_NAMING,
    TargetId,
    artifact_kernel,
    canonical_target_name,
    generic_artifact_kernel,
)
from driverkit import debarchive, images
from driverkit.config import load_config, resolve_plan
from driverkit.gcc import installable_gcc
from driverkit.render import dockerfile_context, render_dockerfile
from driverkit.repometa import strategy_for
from driverkit.targets import (
    TARGETS,
    all_targets,
    get_target,
    infer_target,
    register_target,
    unregister_target,
)
from driverkit.targets import debian as debian_targets
from driverkit.targets.base import BuilderSpec, HeaderFormat, HeaderLookup, Mirrors, Target
from driverkit.targets.redhat import CENTOS, ROCKY

ACME_RELEASE = "6.6.7-3.acme2.x86_64"


def _acme_urls(kr: KernelRelease, kernel_version: str, mirrors: Mirrors, arch: str) -> tuple[
    str, ...
]:
    return (f"https://pkgs.acme.example/kernel-devel-{kr.raw}.rpm",)


# Everything a new distro states: one row.
ACME = Target(
    id="acme",
    family="acme",
    header_format=HeaderFormat.RPM,
    header_source="kernel-devel rpm from pkgs.acme.example",
    candidate_urls=_acme_urls,
    release_pattern=lambda kr: ".acme" in kr.full_extra_version,
    header_lookup=HeaderLookup.FIRST_RPM,
)


@pytest.fixture
def acme() -> Iterator[Target]:
    register_target(ACME)
    try:
        yield ACME
    finally:
        unregister_target(ACME.name)


def test_a_registered_target_is_listed_inferred_resolved_and_named(acme: Target) -> None:
    from driverkit.cli import cli

    listing = CliRunner().invoke(cli, ["targets", "--json"])
    assert listing.exit_code == 0, listing.output
    row = next(row for row in json.loads(listing.output) if row["target"] == "acme")
    assert row["header_source"] == "kernel-devel rpm from pkgs.acme.example"
    assert (row["header_format"], row["builds_today"], row["e2e_test"]) == ("rpm", "4.0+", None)
    table = CliRunner().invoke(cli, ["targets"])
    assert table.exit_code == 0 and "acme" in table.output

    kr = parse_kernel_release(ACME_RELEASE)
    assert infer_target(kr) is acme
    assert get_target("ACME") is acme

    plan = resolve_plan(ACME_RELEASE, load_config({}), Mirrors())
    assert plan.target == "acme"
    assert plan.headers == (f"https://pkgs.acme.example/kernel-devel-{ACME_RELEASE}.rpm",)
    assert (plan.builder.distro_release, plan.gcc) == installable_gcc("13")  # 6.6 default
    assert plan.kmod_name == f"rtcap_acme_{ACME_RELEASE}_1.ko"
    assert plan.probe_name == f"rtcap_acme_{ACME_RELEASE}_1.o"
    # The host side names it with the same function, from the id alone.
    assert artifact_kernel("acme", kr, "#1 SMP") == plan.artifact
    # The network step dispatches on the row's header lookup, not on its name.
    assert strategy_for(plan).__name__ == "_first_rpm"


def test_unregistering_leaves_the_builtin_table() -> None:
    register_target(ACME)
    unregister_target(ACME.name)
    assert "acme" not in TARGETS
    assert {t.name for t in all_targets()} == {str(i) for i in TargetId}


@pytest.mark.parametrize("bad", ["Acme", "acme_2", "ubuntu-acme", "debian", ""])
def test_ids_must_be_new_and_file_name_safe(bad: str) -> None:
    with pytest.raises(ValueError, match="target id"):
        register_target(dataclasses.replace(ACME, id=bad))


def test_builtin_ids_are_the_shared_registry() -> None:
    """Every built-in row's id is a TargetId and every TargetId has a row: the host side's
    list of ids and the build side's table cannot drift apart."""
    assert list(TARGETS) == sorted(str(i) for i in TargetId)
    for target in all_targets():
        assert isinstance(target.id, TargetId)
        assert type(target.name) is str


def test_family_members_state_only_what_differs() -> None:
    """Rocky is CentOS's row with its own id, source, URLs, releases and no gcc pins."""
    differs = {
        f.name
        for f in dataclasses.fields(Target)
        if getattr(CENTOS, f.name) != getattr(ROCKY, f.name)
    }
    assert differs == {"id", "header_source", "candidate_urls", "release_pattern", "gcc"}
    assert (ROCKY.family, ROCKY.package_format, ROCKY.header_lookup) == (
        "redhat", "rpm", HeaderLookup.FIRST_RPM
    )


def test_naming_is_keyed_by_target_id() -> None:
    kr = parse_kernel_release("5.15.0-1051-aws")
    assert artifact_kernel(TargetId.UBUNTU, kr, "#26~22.04.1-Ubuntu SMP").target_id == "ubuntu-aws"
    assert canonical_target_name(" Ubuntu-AWS ") == "ubuntu"
    plain = parse_kernel_release("5.10.184")
    assert artifact_kernel("unknown-distro", plain, "1_1.2") == generic_artifact_kernel(
        "unknown-distro", plain, "1_1.2"
    )
    assert artifact_kernel(TargetId.BOTTLEROCKET, plain, "1_1.2").kernel_version == "1_1.2"
    assert set(ARTIFACT_NAMING) <= set(TargetId)


# --- the Debian suite table ------------------------------------------------------------

FORKY = debian_targets.DebianSuite(
    15, "forky", "17", (99, 0), gccs=("17",), has_updates=True,
    builder_packages=("bpftool", "forky-extra"), keyring_verifies=True, crawled=True,
    backports_crawled=True,
)  # fmt: skip


@pytest.fixture
def forky(monkeypatch: pytest.MonkeyPatch) -> debian_targets.DebianSuite:
    monkeypatch.setattr(
        debian_targets, "DEBIAN_SUITES", (*debian_targets.DEBIAN_SUITES, FORKY)
    )
    return FORKY


def test_a_suite_row_reaches_every_consumer(forky: debian_targets.DebianSuite) -> None:
    # gcc builder choice: gcc 17 exists only in the new suite.
    assert installable_gcc("17") == ("forky", "17")
    # Debian's own suite rule: a +deb15 kernel builds in it, with its gcc.
    spec = get_target("debian").builder(parse_kernel_release("7.9.1+deb15-amd64"))
    assert (spec.distro_release, spec.gcc) == ("forky", "17")
    # Render: its -updates and its extra builder packages.
    context = dockerfile_context(BuilderSpec("debian:forky", "forky", "17"))
    assert context["has_updates"] is True
    assert cast(tuple[str, ...], context["packages"])[-1] == "forky-extra"
    dockerfile = render_dockerfile(BuilderSpec("debian:forky", "forky", "17"))
    assert "$suite-updates" in dockerfile and "forky-extra" in dockerfile
    # images: the debootstrap keyring check.
    assert images._keyring_verifies("forky")
    # debarchive: the catalog crawls it, with its -updates, -backports and -security.
    mirrors = Mirrors(debian="http://m/debian", debian_security="http://m/sec")
    roots = [suite for suite, _ in debarchive.suite_roots(mirrors)]
    for suite in ("forky", "forky-updates", "forky-backports", "forky-security"):
        assert suite in roots


def test_suite_table_keeps_todays_answers() -> None:
    assert debian_targets.crawled_codenames() == ("bullseye", "bookworm", "trixie", "sid")
    assert [s.codename for s in debian_targets.builder_suites()] == [
        "buster", "bullseye", "bookworm", "trixie", "sid"
    ]
    assert [c for c in ("buster", "bullseye", "bookworm", "trixie", "sid")
            if images._keyring_verifies(c)] == ["bullseye", "bookworm", "trixie"]  # fmt: skip
    mirrors = Mirrors(debian="http://m/debian", debian_security="http://m/sec")
    roots = [suite for suite, _ in debarchive.suite_roots(mirrors)]
    assert "sid" in roots and "sid-updates" not in roots and "sid-security" not in roots
    assert [r for r in roots if r.endswith("-backports")] == ["bookworm-backports"]
    with pytest.raises(Exception, match="no package table"):
        dockerfile_context(BuilderSpec("debian:stretch", "stretch", "6"))
