"""The loader's module path (runtime/loader/kmodload.py) as far as this host can run it.

Real: the ELF/.modinfo reader on the modules driverkit built (the build cache), on ELF files
written here in both classes and byte orders, and the refusal on this host, whose kernel
has no module support. Stood in: /proc and /sys as files in a temp dir, and the two
syscalls (a fake that records calls and returns an errno), so every branch of "keep,
replace or load, and what each errno means" runs without a kernel that loads modules.
"""

from __future__ import annotations

import errno
import glob
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runtime.driver import _schema
from runtime.loader.kmodload import (
    SIGNATURE_HINT,
    ModuleFormatError,
    ModuleLoadError,
    load_hint,
    load_module,
    parse_modinfo,
    read_elf_section,
    read_modinfo,
)

RELEASE = "6.1.0-57-amd64"
VERMAGIC = f"{RELEASE} SMP preempt mod_unload modversions "
BUILT_KOS = sorted(glob.glob("/var/cache/driverkit-ci/ci-builds/*/amd64/*.ko"))


def elf(sections: dict[str, bytes], *, bits: int = 64, little: bool = True,
        machine: int = 62) -> bytes:
    """A relocatable ELF file holding `sections` (plus the null and .shstrtab ones)."""
    end = "<" if little else ">"
    names = b"\0" + b"".join(n.encode() + b"\0" for n in [*sections, ".shstrtab"])
    ehsize, shentsize = (64, 64) if bits == 64 else (52, 40)
    body = bytearray()
    placed: list[tuple[int, int, int]] = [(0, 0, 0)]  # (name offset, file offset, size)
    for name, data in [*sections.items(), (".shstrtab", names)]:
        placed.append((names.index(b"\0" + name.encode() + b"\0") + 1, ehsize + len(body),
                       len(data)))
        body += data
    shoff = ehsize + len(body)
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if little else 2, 1]) + bytes(9)
    if bits == 64:
        header = ident + struct.pack(end + "HHIQQQIHHHHHH", 1, machine, 1, 0, 0, shoff, 0,
                                     ehsize, 0, 0, shentsize, len(placed), len(placed) - 1)
        table = b"".join(struct.pack(end + "IIQQQQIIQQ", n, 1, 0, 0, o, s, 0, 0, 1, 0)
                         for n, o, s in placed)
    else:
        header = ident + struct.pack(end + "HHIIIIIHHHHHH", 1, machine, 1, 0, 0, shoff, 0,
                                     ehsize, 0, 0, shentsize, len(placed), len(placed) - 1)
        table = b"".join(struct.pack(end + "IIIIIIIIII", n, 1, 0, 0, o, s, 0, 0, 1, 0)
                         for n, o, s in placed)
    return header + bytes(body) + table


def modinfo_bytes(**fields: str) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in fields.items())


def write_ko(path: Path, **fields: str) -> Path:
    fields = {"license": "GPL v2", "name": "rtcap", "vermagic": VERMAGIC, **fields}
    path.write_bytes(elf({".text": b"\x90" * 16, ".modinfo": modinfo_bytes(**fields)}))
    return path


@dataclass
class FakeKernel:
    """finit_module / delete_module stand-ins: record calls, return the errnos given."""

    finit_errno: int = 0
    delete_errno: int = 0
    calls: list[tuple[str, str]] = field(default_factory=list)

    def finit_module(self, fd: int, params: str) -> int:
        self.calls.append(("finit", params))
        return self.finit_errno

    def delete_module(self, name: str) -> int:
        self.calls.append(("delete", name))
        return self.delete_errno


def kernel_root(tmp_path: Path, modules: str = "", **files: str) -> Path:
    root = tmp_path / "kroot"
    (root / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
    (root / "proc/modules").write_text(modules)
    for name, text in files.items():
        path = root / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _load(tmp_path: Path, root: Path, fake: FakeKernel, schema: int | None = None,
          ko: dict[str, str] | None = None) -> str:
    done = load_module(write_ko(tmp_path / "rtcap.ko", **(ko or {})), kernel_root=root,
                       release=RELEASE, machine="x86_64", syscalls=fake,  # type: ignore[arg-type]
                       schema_hash=lambda: schema, params="ring_kb=64")
    return done.action


# ------------------------------------------------------------------ the ELF reader


@pytest.mark.skipif(not BUILT_KOS, reason="no driverkit-built module in the build cache")
@pytest.mark.parametrize("path", BUILT_KOS)
def test_modinfo_of_the_modules_driverkit_built(path: str) -> None:
    info = read_modinfo(Path(path))
    assert info.name == "rtcap"
    assert info.machine == "x86_64"
    assert info.get("license") == "GPL v2"
    assert re.fullmatch(r"\d+\.\d+\.\d+[-+][\w.+~-]+", info.vermagic_release), info.vermagic
    assert "mod_unload" in info.vermagic


@pytest.mark.skipif(not BUILT_KOS, reason="no driverkit-built module in the build cache")
def test_a_built_module_for_another_kernel_is_refused_naming_both(tmp_path: Path) -> None:
    path = Path(BUILT_KOS[0])
    built_for = read_modinfo(path).vermagic_release
    fake = FakeKernel()
    with pytest.raises(ModuleLoadError) as caught:
        load_module(path, kernel_root=kernel_root(tmp_path), release="9.9.9-1-amd64",
                    machine="x86_64", syscalls=fake)  # type: ignore[arg-type]
    assert f"vermagic {built_for!r}" in str(caught.value)
    assert "running kernel '9.9.9-1-amd64'" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert fake.calls == []


@pytest.mark.parametrize(("bits", "little", "machine", "name"),
                         [(64, True, 62, "x86_64"), (64, False, 183, "aarch64"),
                          (32, True, 62, "x86_64"), (32, False, 3, "e_machine 3")])
def test_modinfo_in_either_elf_class_and_byte_order(bits: int, little: bool, machine: int,
                                                     name: str) -> None:
    data = elf({".data": b"x" * 9, ".modinfo": modinfo_bytes(name="rtcap", vermagic=VERMAGIC,
                                                              alias="a")},
               bits=bits, little=little, machine=machine)
    info = parse_modinfo(data)
    assert (info.name, info.vermagic_release, info.machine) == ("rtcap", RELEASE, name)
    assert read_elf_section(data, ".data") == b"x" * 9
    assert read_elf_section(data, ".nothing") is None


@pytest.mark.parametrize(("data", "cause"), [
    (b"MZ" + bytes(100), "not an ELF file"),
    (elf({".text": b"x"}), "no .modinfo section"),
    (elf({".modinfo": b"name=rtcap\0"})[:-20], "runs past the end"),
])
def test_damaged_or_foreign_files_are_one_line(tmp_path: Path, data: bytes, cause: str) -> None:
    path = tmp_path / "bad.ko"
    path.write_bytes(data)
    with pytest.raises(ModuleFormatError, match=cause):
        read_modinfo(path)


# ------------------------------------------------------------- refusals before loading


def test_this_host_without_module_support_is_refused(tmp_path: Path) -> None:
    if Path("/proc/modules").exists():
        pytest.skip("this host's kernel has module support")
    with pytest.raises(ModuleLoadError, match=r"cannot load modules \(no /proc/modules\)"):
        load_module(write_ko(tmp_path / "rtcap.ko"))


def test_modules_disabled_is_refused(tmp_path: Path) -> None:
    root = kernel_root(tmp_path, proc__sys__kernel__modules_disabled="1\n")
    fake = FakeKernel()
    with pytest.raises(ModuleLoadError, match="modules_disabled=1"):
        _load(tmp_path, root, fake)
    assert fake.calls == []


@pytest.mark.parametrize(("fields", "cause"), [
    ({"name": "ext4"}, "module name 'ext4' is not 'rtcap'"),
    ({"vermagic": "5.10.0-46-amd64 SMP mod_unload "},
     "vermagic '5.10.0-46-amd64' does not match the running kernel '6.1.0-57-amd64'"),
    ({"vermagic": ""}, "vermagic '(none)'"),
])
def test_not_ours_or_another_kernel_is_refused_before_the_kernel_sees_it(
        tmp_path: Path, fields: dict[str, str], cause: str) -> None:
    fake = FakeKernel()
    with pytest.raises(ModuleLoadError, match=re.escape(cause)):
        _load(tmp_path, kernel_root(tmp_path), fake, ko=fields)
    assert fake.calls == []


def test_another_arch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rtcap.ko"
    path.write_bytes(elf({".modinfo": modinfo_bytes(name="rtcap", vermagic=VERMAGIC)},
                         machine=183))
    with pytest.raises(ModuleLoadError, match="built for aarch64, this host is x86_64"):
        load_module(path, kernel_root=kernel_root(tmp_path), release=RELEASE,
                    machine="x86_64", syscalls=FakeKernel())  # type: ignore[arg-type]


# ---------------------------------------------------------- keep, replace or load


def test_a_fresh_load_passes_the_parameters(tmp_path: Path) -> None:
    fake = FakeKernel()
    root = kernel_root(tmp_path, "ext4 1 0 - Live 0x0\n")
    assert _load(tmp_path, root, fake) == "loaded"
    assert fake.calls == [("finit", "ring_kb=64")]


def test_the_same_build_already_loaded_is_kept(tmp_path: Path) -> None:
    fake = FakeKernel()
    root = kernel_root(tmp_path, "rtcap 40960 0 - Live 0x0\n")
    assert _load(tmp_path, root, fake, schema=_schema.SCHEMA_HASH) == "already loaded"
    assert fake.calls == []


def test_an_older_copy_of_ours_is_replaced_and_nothing_else_unloaded(tmp_path: Path) -> None:
    fake = FakeKernel()
    root = kernel_root(tmp_path, "ext4 1 0 - Live 0x0\nrtcap 40960 0 - Live 0x0\n")
    assert _load(tmp_path, root, fake, schema=_schema.SCHEMA_HASH ^ 1) == "replaced"
    assert fake.calls == [("delete", "rtcap"), ("finit", "ring_kb=64")]


def test_version_and_srcversion_decide_when_the_module_has_them(tmp_path: Path) -> None:
    root = kernel_root(tmp_path, "rtcap 40960 0 - Live 0x0\n",
                       sys__module__rtcap__version="0.1.0\n",
                       sys__module__rtcap__srcversion="ABC\n")
    fake = FakeKernel()
    same = {"version": "0.1.0", "srcversion": "ABC"}
    assert _load(tmp_path, root, fake, ko=same) == "already loaded"
    assert _load(tmp_path, root, fake, ko={"version": "0.2.0", "srcversion": "DEF"}) == "replaced"
    assert fake.calls == [("delete", "rtcap"), ("finit", "ring_kb=64")]


def test_an_older_copy_in_use_is_left_alone_with_the_reason(tmp_path: Path) -> None:
    fake = FakeKernel(delete_errno=errno.EWOULDBLOCK)
    root = kernel_root(tmp_path, "rtcap 40960 1 - Live 0x0\n")
    with pytest.raises(ModuleLoadError, match=r"in use \(refcount 1\): stop its consumer"):
        _load(tmp_path, root, fake, schema=None)
    assert fake.calls == [("delete", "rtcap")]


def test_eexist_from_a_racing_loader_counts_as_loaded(tmp_path: Path) -> None:
    fake = FakeKernel(finit_errno=errno.EEXIST)
    assert _load(tmp_path, kernel_root(tmp_path), fake) == "already loaded"


# ----------------------------------------------------------- what the kernel refused


@pytest.mark.parametrize(("err", "files", "hint"), [
    (errno.EKEYREJECTED, {}, SIGNATURE_HINT),
    (errno.EKEYREVOKED, {}, SIGNATURE_HINT),
    (errno.ENOKEY, {}, SIGNATURE_HINT),
    (errno.EPERM, {"sys__kernel__security__lockdown": "none [integrity] confidentiality\n"},
     SIGNATURE_HINT),
    (errno.EPERM, {"sys__module__module__parameters__sig_enforce": "Y\n"}, SIGNATURE_HINT),
    (errno.EPERM, {}, "needs CAP_SYS_MODULE"),
    (errno.ENOEXEC, {}, "Invalid module format: built for another kernel"),
    (errno.ENOENT, {}, "unknown symbol"),
    (errno.EIO, {}, "Input/output error"),
])
def test_each_refusal_is_one_line_with_a_hint(tmp_path: Path, err: int, files: dict[str, str],
                                              hint: str) -> None:
    fake = FakeKernel(finit_errno=err)
    with pytest.raises(ModuleLoadError) as caught:
        _load(tmp_path, kernel_root(tmp_path, **files), fake)
    message = str(caught.value)
    assert hint in message and errno.errorcode[err] in message and "\n" not in message
    assert message.startswith("finit_module rtcap.ko: ")


def test_the_signature_hint_names_the_way_out() -> None:
    hint = load_hint(errno.EKEYREJECTED, lockdown="", sig_enforce=False)
    assert "--type core|probe" in hint and "sign the module" in hint
    assert load_hint(errno.EEXIST, lockdown="", sig_enforce=False) == "already loaded"


# --------------------------------------------------- through `rt-engine driver install`


def test_install_fetches_then_refuses_a_module_for_another_kernel(tmp_path: Path) -> None:
    """`install --type kmod` loads the module it fetched; a vermagic naming another kernel
    is refused after the signed fetch with one line naming both, exit code DRIVER; with
    --download-only nothing is loaded, so the same file is handed over."""
    import os
    import subprocess
    import sys

    from drivercore.errors import ExitCode
    from drivercore.repoindex import generate_private_key, public_key_text
    from tests.loader_helpers import write_host_root, write_repo

    key = generate_private_key()
    module = "rtcap_debian_6.1.55-1-amd64_1.ko"
    other = "5.10.0-46-amd64" if os.uname().release != "5.10.0-46-amd64" else "6.1.0-1-amd64"
    data = elf({".modinfo": modinfo_bytes(name="rtcap", vermagic=f"{other} SMP mod_unload ")})
    write_repo(tmp_path / "repo", {module: data}, key, "0.1.0+test", "x86_64")
    host = write_host_root(tmp_path / "host", {"etc/os-release": "ID=debian\n"})
    args = ["driver", "install", "--type", "kmod", "--repo", str(tmp_path / "repo"),
            "--driver-version", "0.1.0+test", "--public-key", public_key_text(key.public_key()),
            "--host-root", str(host), "--state-dir", str(tmp_path / "state"),
            "--kernel-release", "6.1.0-13-amd64",
            "--kernel-version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1 (2023-09-29)"]
    root = Path(__file__).resolve().parent.parent

    def cli(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runtime.engine.cli", *args, *extra],
                              cwd=root, capture_output=True, text=True, timeout=60,
                              check=False)

    done = cli()
    assert done.returncode == ExitCode.DRIVER, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("rt-engine: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"vermagic {other!r} does not match the running kernel " \
           f"{os.uname().release!r}" in errors[0]
    assert f"loader: verify: {module} sha256" in done.stderr  # verified before the check
    done = cli("--download-only", "--dest", str(tmp_path / "dest"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "dest" / module).read_bytes() == data
