"""Artifact naming, validation and the per-build manifest.

An artifact is only published after pyelftools agrees it is what the plan asked for:
the module's `.modinfo` vermagic starts with the target kernel release and its ELF
machine is the plan's arch; the probe is an eBPF ELF with a license and the expected
programs and maps. Files are written as temp + rename and the manifest goes last, so a
manifest on disk means a complete, validated build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from driverkit.cache import atomic_write_bytes, sha256_file
from driverkit.errors import ArtifactValidationError
from driverkit.plan import BuildPlan

MANIFEST_FORMAT = 1
_ELF_MACHINE = {"amd64": "EM_X86_64", "arm64": "EM_AARCH64"}
_EM_BPF = ("EM_BPF", 247)


@dataclass(frozen=True)
class ProbeSpec:
    """What a probe object must contain; empty tuples only require one program."""

    programs: tuple[str, ...] = ()
    maps: tuple[str, ...] = ()


# What driver/bpf/rtcap.bpf.c defines (per-kernel and CO-RE builds alike); the loader and
# the rt-engine attach these by name, so a probe without them is useless.
RTCAP_PROBE = ProbeSpec(
    programs=("rtcap_sched_process_exit", "rtcap_sys_enter", "rtcap_sys_exit"),
    maps=("rtcap_ringbuf", "rtcap_scratch_map", "rtcap_stats_map"),
)


def output_dir(root: Path, plan: BuildPlan) -> Path:
    """`<output>/<driver-version>/<arch>/`, the layout the artifact repository serves."""
    return root / plan.driver_version / plan.arch


def manifest_name(plan: BuildPlan) -> str:
    return plan.artifact_stem() + ".json"


def _open_elf(path: Path) -> tuple[Any, ELFFile]:
    fh = path.open("rb")
    try:
        return fh, ELFFile(fh)
    except ELFError as exc:
        fh.close()
        raise ArtifactValidationError(f"{path.name}: not an ELF file ({exc})") from exc


def read_modinfo(path: Path) -> dict[str, str]:
    fh, elf = _open_elf(path)
    with fh:
        section = elf.get_section_by_name(".modinfo")
        if section is None:
            raise ArtifactValidationError(f"{path.name}: no .modinfo section: not a kernel module")
        info: dict[str, str] = {}
        for entry in section.data().split(b"\0"):
            key, sep, value = entry.decode(errors="replace").partition("=")
            if sep and key not in info:
                info[key] = value
        return info


def validate_kmod(path: Path, kernel_release: str, arch: str) -> dict[str, str]:
    """Return the module's modinfo after checking vermagic and ELF machine."""
    fh, elf = _open_elf(path)
    with fh:
        machine = elf["e_machine"]
        if elf["e_type"] != "ET_REL":
            raise ArtifactValidationError(
                f"{path.name}: ELF type {elf['e_type']}, a module is ET_REL"
            )
    expected_machine = _ELF_MACHINE.get(arch)
    if expected_machine is None:
        raise ArtifactValidationError(f"{path.name}: unknown arch {arch!r}")
    if machine != expected_machine:
        raise ArtifactValidationError(
            f"{path.name}: ELF machine {machine}, expected {expected_machine} for {arch}"
        )
    info = read_modinfo(path)
    vermagic = info.get("vermagic", "")
    if not (vermagic == kernel_release or vermagic.startswith(kernel_release + " ")):
        raise ArtifactValidationError(
            f"{path.name}: vermagic {vermagic!r} does not start with "
            f"kernel release {kernel_release!r}"
        )
    return info


@dataclass(frozen=True)
class ProbeContents:
    license: str
    programs: tuple[str, ...]
    maps: tuple[str, ...]
    sections: tuple[str, ...] = field(default=())


def read_probe(path: Path) -> ProbeContents:
    fh, elf = _open_elf(path)
    with fh:
        if elf["e_machine"] not in _EM_BPF:
            raise ArtifactValidationError(
                f"{path.name}: ELF machine {elf['e_machine']}, expected EM_BPF"
            )
        license_section = elf.get_section_by_name("license")
        if license_section is None:
            raise ArtifactValidationError(
                f"{path.name}: no `license` section: the kernel would refuse GPL helpers"
            )
        license_text = license_section.data().split(b"\0")[0].decode(errors="replace")
        section_names = [s.name for s in elf.iter_sections()]
        exec_sections = {
            i
            for i, s in enumerate(elf.iter_sections())
            if s["sh_flags"] & 0x4 and s.name != ".text"  # SHF_EXECINSTR: program sections
        }
        map_sections = {i for i, s in enumerate(elf.iter_sections()) if s.name in (".maps", "maps")}
        programs: list[str] = []
        maps: list[str] = []
        for section in elf.iter_sections():
            if not isinstance(section, SymbolTableSection):
                continue
            for sym in section.iter_symbols():
                shndx = sym["st_shndx"]
                if not isinstance(shndx, int) or sym["st_info"]["bind"] != "STB_GLOBAL":
                    continue
                if shndx in exec_sections and sym["st_info"]["type"] == "STT_FUNC":
                    programs.append(sym.name)
                elif shndx in map_sections:
                    maps.append(sym.name)
        return ProbeContents(
            license_text, tuple(sorted(programs)), tuple(sorted(maps)), tuple(section_names)
        )


def validate_probe(path: Path, spec: ProbeSpec) -> ProbeContents:
    contents = read_probe(path)
    if not contents.license:
        raise ArtifactValidationError(f"{path.name}: empty license")
    if not contents.programs:
        raise ArtifactValidationError(f"{path.name}: no eBPF programs")
    missing_progs = sorted(set(spec.programs) - set(contents.programs))
    missing_maps = sorted(set(spec.maps) - set(contents.maps))
    if missing_progs or missing_maps:
        raise ArtifactValidationError(
            f"{path.name}: missing programs {missing_progs or '-'} and maps {missing_maps or '-'} "
            f"(found programs {list(contents.programs)}, maps {list(contents.maps)})"
        )
    return contents


# Build output dirs (driver/Makefile's default OUT is build/) are not sources.
_NOT_SOURCES = (".git", "__pycache__", "out", "build", ".tmp_versions")


def hash_tree(root: Path, ignore: Iterable[str] = _NOT_SOURCES) -> str:
    """Stable hash of a source tree (paths + contents), for the manifest input hash."""
    skip = set(ignore)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in skip for part in rel.parts) or not path.is_file():
            continue
        if path.suffix in (".o", ".ko", ".cmd", ".mod") or path.name.startswith("."):
            continue
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def input_hash(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def up_to_date(out_dir: Path, manifest: str, wanted_hash: str) -> bool:
    """True when a previous build with identical inputs left every artifact intact.

    Intact means the sha256 the manifest recorded: a file replaced by one of the same
    size (a truncated copy padded, another kernel's build) is rebuilt, not served.
    """
    data = read_manifest(out_dir / manifest)
    if not data or data.get("input_hash") != wanted_hash:
        return False
    artifacts = data.get("artifacts", {})
    if not isinstance(artifacts, dict) or not artifacts:
        return False
    for name, meta in artifacts.items():
        path = out_dir / name
        if not isinstance(meta, dict) or not path.is_file():
            return False
        # The size is a cheap first look; only a same-size file needs hashing.
        if path.stat().st_size != meta.get("size") or sha256_file(path) != meta.get("sha256"):
            return False
    return True


def publish(files: Mapping[str, Path], out_dir: Path) -> dict[str, dict[str, Any]]:
    """Move validated files into `out_dir` atomically; returns name -> {sha256, size}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    published: dict[str, dict[str, Any]] = {}
    for name, src in files.items():
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=out_dir)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp_name)
            os.chmod(tmp_name, 0o644)  # mkstemp's 0600 would hide artifacts from a web server
            os.replace(tmp_name, out_dir / name)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        published[name] = {
            "sha256": sha256_file(out_dir / name),
            "size": (out_dir / name).stat().st_size,
        }
    return published


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
