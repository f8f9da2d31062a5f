"""Artifact validation on real ELF files: BPF objects compiled here with clang, and a
kernel module built against a real Debian headers tree (network, cached)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from driverkit.artifacts import (
    ProbeSpec,
    hash_tree,
    publish,
    read_probe,
    up_to_date,
    validate_kmod,
    validate_probe,
    write_manifest,
)
from driverkit.errors import ArtifactValidationError
from tests.conftest import FIXTURES, require

FIXTURE_DRIVER = FIXTURES / "build" / "driver"


def _clang_bpf(src: str, out: Path) -> Path:
    require(shutil.which("clang") is not None, "needs clang")
    c_file = out.with_suffix(".c")
    c_file.write_text(src)
    arch_inc = (
        f"/usr/include/{subprocess.check_output(['uname', '-m'], text=True).strip()}-linux-gnu"
    )
    subprocess.run(
        [
            "clang",
            "-O2",
            "-g",
            "-target",
            "bpf",
            f"-I{arch_inc}",
            "-c",
            str(c_file),
            "-o",
            str(out),
        ],
        check=True,
    )
    return out


@pytest.fixture(scope="module")
def probe_o(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bpf") / "probe.o"
    return _clang_bpf((FIXTURE_DRIVER / "bpf" / "probe.bpf.c").read_text(), out)


def test_probe_contents_are_read_from_the_elf(probe_o: Path) -> None:
    contents = read_probe(probe_o)
    assert contents.license == "GPL"
    assert contents.programs == ("dk_sys_enter",)
    assert contents.maps == ("dk_counts",)


def test_probe_with_expected_programs_and_maps_passes(probe_o: Path) -> None:
    validate_probe(probe_o, ProbeSpec(programs=("dk_sys_enter",), maps=("dk_counts",)))


def test_probe_missing_a_program_is_rejected(probe_o: Path) -> None:
    with pytest.raises(ArtifactValidationError, match=r"missing programs.*dk_other"):
        validate_probe(probe_o, ProbeSpec(programs=("dk_sys_enter", "dk_other")))


def test_probe_without_license_is_rejected(tmp_path: Path) -> None:
    src = (FIXTURE_DRIVER / "bpf" / "probe.bpf.c").read_text()
    src = src.replace('char LICENSE[] SEC("license") = "GPL";', "")
    obj = _clang_bpf(src, tmp_path / "nolicense.o")
    with pytest.raises(ArtifactValidationError, match="license"):
        validate_probe(obj, ProbeSpec())


def test_host_elf_is_not_a_probe_nor_a_module(tmp_path: Path) -> None:
    host_binary = Path(shutil.which("true") or "/bin/true")
    with pytest.raises(ArtifactValidationError, match="EM_BPF"):
        validate_probe(host_binary, ProbeSpec())
    with pytest.raises(ArtifactValidationError, match="ET_REL"):
        validate_kmod(host_binary, "6.1.0-47-amd64", "amd64")
    text = tmp_path / "notelf.ko"
    text.write_text("hello")
    with pytest.raises(ArtifactValidationError, match="not an ELF"):
        validate_kmod(text, "6.1.0-47-amd64", "amd64")


def test_bpf_object_is_not_a_module(probe_o: Path) -> None:
    with pytest.raises(ArtifactValidationError, match=r"EM_BPF|expected EM_X86_64"):
        validate_kmod(probe_o, "6.1.0-47-amd64", "amd64")


@pytest.fixture(scope="module")
def fixture_module(tmp_path_factory: pytest.TempPathFactory, ci_cache: Path) -> tuple[Path, str]:
    """dkfixture.ko built on the host against real bookworm headers (from the cache)."""
    from tests.build_helpers_real import host_buildable_release, resolve_real_headers

    require(shutil.which("make") is not None, "needs make")
    release = host_buildable_release(ci_cache)
    headers = resolve_real_headers(release, ci_cache)
    work = tmp_path_factory.mktemp("kmod")
    shutil.copytree(FIXTURE_DRIVER, work / "driver")
    subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(work / "driver"),
            "kmod",
            f"KERNELDIR={headers.kernel_dir}",
            f"OUT={work / 'out'}",
        ],
        check=True,
        capture_output=True,
    )
    return work / "out" / "dkfixture.ko", release


@pytest.mark.network
def test_module_vermagic_matches_its_kernel(fixture_module: tuple[Path, str]) -> None:
    ko, release = fixture_module
    info = validate_kmod(ko, release, "amd64")
    assert info["vermagic"].startswith(release + " ")
    assert info["name"] == "dkfixture"


@pytest.mark.network
def test_module_for_another_kernel_or_arch_is_rejected(fixture_module: tuple[Path, str]) -> None:
    ko, release = fixture_module
    # A prefix of the release (6.1.0-4 vs 6.1.0-47-amd64) must not pass either.
    for wrong in ("6.1.0-1-amd64", release[:-2], release + "x"):
        with pytest.raises(ArtifactValidationError, match="vermagic"):
            validate_kmod(ko, wrong, "amd64")
    with pytest.raises(ArtifactValidationError, match="EM_AARCH64"):
        validate_kmod(ko, release, "arm64")


def test_publish_and_manifest_round_trip(tmp_path: Path, probe_o: Path) -> None:
    out = tmp_path / "out"
    published = publish({"a.o": probe_o}, out)
    assert (out / "a.o").read_bytes() == probe_o.read_bytes()
    assert published["a.o"]["size"] == probe_o.stat().st_size
    write_manifest(out / "a.json", {"input_hash": "h1", "artifacts": published})
    assert up_to_date(out, "a.json", "h1")
    assert not up_to_date(out, "a.json", "h2")
    (out / "a.o").write_bytes(b"truncated")
    assert not up_to_date(out, "a.json", "h1")
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.o"]  # no temp files left


def test_a_same_size_artifact_with_other_bytes_is_not_up_to_date(tmp_path: Path) -> None:
    """The skip check compares the manifest's sha256, not only the size."""
    built = tmp_path / "built.ko"
    built.write_bytes(b"the module as validated")
    out = tmp_path / "out"
    published = publish({"m.ko": built}, out)
    write_manifest(out / "m.json", {"input_hash": "h1", "artifacts": published})
    assert up_to_date(out, "m.json", "h1")
    swapped = bytes(reversed(built.read_bytes()))
    assert len(swapped) == published["m.ko"]["size"] and swapped != built.read_bytes()
    (out / "m.ko").write_bytes(swapped)
    assert not up_to_date(out, "m.json", "h1")


def test_tree_hash_changes_with_the_sources(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE_DRIVER, tmp_path / "d")
    before = hash_tree(tmp_path / "d")
    assert hash_tree(tmp_path / "d") == before
    (tmp_path / "d" / "kmod" / "built.o").write_bytes(b"object files do not count")
    assert hash_tree(tmp_path / "d") == before
    (tmp_path / "d" / "kmod" / "dkfixture.c").write_text("/* changed */\n")
    assert hash_tree(tmp_path / "d") != before
