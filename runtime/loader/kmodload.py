"""Load the rtcap kernel module the loader fetched: checked first, then `finit_module`.

Before the kernel sees the file: its `.modinfo` (read here with a small ELF section reader;
the host side has no pyelftools) must name our module and a vermagic whose release is the
running kernel's, and the ELF machine must be this host's. A copy of our module that is
already loaded is kept when it is the same build (same version/srcversion, or, for a module
without them, the same event schema by the device's handshake) and unloaded otherwise; no
other module is ever touched. Then `finit_module(2)` through ctypes, and every errno a
kernel gives becomes one line saying what to do.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drivercore.naming import DRIVER_NAME
from runtime.driver.errors import DriverError
from runtime.loader.identify import MODULES_DISABLED_FILE, MODULES_FILE, lockdown_mode

MODINFO_SECTION = ".modinfo"
# A module is a few MB; a file claiming more sections or a bigger .modinfo is not one.
_MAX_SECTIONS = 1 << 16
_MAX_MODINFO = 1 << 20
# ELF e_machine values of the arches we build for.
ELF_MACHINES = {62: "x86_64", 183: "aarch64"}
# (finit_module, delete_module) syscall numbers per `uname -m`.
SYSCALLS = {"x86_64": (313, 176), "aarch64": (273, 106)}
SIGNATURE_HINT = ("module signature rejected: Secure Boot / module.sig_enforce / lockdown; "
                  "use the eBPF probe (--type core|probe) or sign the module")
_SIGNATURE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EKEYREJECTED", "EKEYREVOKED", "EKEYEXPIRED", "ENOKEY")
    if hasattr(errno, name)
)


class ModuleFormatError(DriverError):
    """The file is not a kernel module we can read (.modinfo missing or damaged)."""


class ModuleLoadError(DriverError):
    """The module does not fit this kernel, or the kernel refused to load it."""


@dataclass(frozen=True)
class ModInfo:
    """A module file's `.modinfo` strings (key=value; a key may repeat, e.g. alias)."""

    fields: tuple[tuple[str, str], ...]
    machine: str  # from the ELF header: x86_64, aarch64, or "e_machine N"

    def get(self, key: str) -> str:
        return next((value for k, value in self.fields if k == key), "")

    @property
    def name(self) -> str:
        return self.get("name")

    @property
    def vermagic(self) -> str:
        return self.get("vermagic")

    @property
    def vermagic_release(self) -> str:
        """The kernel release a vermagic names: its first word."""
        words = self.vermagic.split()
        return words[0] if words else ""


def read_elf_section(data: bytes, wanted: str) -> bytes | None:
    """One section's bytes from an ELF file (32/64-bit, either byte order), or None."""
    if len(data) < 0x34 or data[:4] != b"\x7fELF":
        raise ModuleFormatError("not an ELF file")
    ei_class, ei_data = data[4], data[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise ModuleFormatError(f"unknown ELF class {ei_class} / data encoding {ei_data}")
    end = "<" if ei_data == 1 else ">"
    if ei_class == 2:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
        section = struct.Struct(end + "IIQQQQIIQQ")  # name, type, flags, addr, offset, size..
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x2E)
        section = struct.Struct(end + "IIIIIIIIII")
    if shnum > _MAX_SECTIONS or shentsize < section.size or shstrndx >= max(shnum, 1):
        raise ModuleFormatError(f"implausible section table ({shnum} x {shentsize} bytes)")
    if shoff + shnum * shentsize > len(data):
        raise ModuleFormatError("section table runs past the end of the file (truncated?)")

    def header(index: int) -> tuple[int, int, int]:
        fields = section.unpack_from(data, shoff + index * shentsize)
        return fields[0], fields[4], fields[5]  # name offset, file offset, size

    _, names_at, names_size = header(shstrndx)
    names = data[names_at:names_at + names_size]
    for index in range(shnum):
        name_off, offset, size = header(index)
        name_end = names.find(b"\0", name_off)
        if name_end < 0 or names[name_off:name_end].decode("ascii", "replace") != wanted:
            continue
        if offset + size > len(data):
            raise ModuleFormatError(f"section {wanted} runs past the end of the file")
        return data[offset:offset + size]
    return None


def parse_modinfo(data: bytes) -> ModInfo:
    """The `.modinfo` strings and the ELF machine of a module file's bytes."""
    raw = read_elf_section(data, MODINFO_SECTION)
    if raw is None:
        raise ModuleFormatError(f"no {MODINFO_SECTION} section: not a kernel module")
    if len(raw) > _MAX_MODINFO:
        raise ModuleFormatError(f"{MODINFO_SECTION} of {len(raw)} bytes: not a kernel module")
    fields = []
    for item in raw.split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep:
            fields.append((key, value))
    end = "<" if data[5] == 1 else ">"
    e_machine, = struct.unpack_from(end + "H", data, 0x12)
    return ModInfo(tuple(fields), ELF_MACHINES.get(e_machine, f"e_machine {e_machine}"))


def read_modinfo(path: Path) -> ModInfo:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModuleFormatError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return parse_modinfo(data)
    except (ModuleFormatError, struct.error) as exc:
        raise ModuleFormatError(f"{path}: {exc}") from None


def check_fits(info: ModInfo, path: Path, *, release: str, machine: str) -> None:
    """Refuse a module that is not ours or not built for this kernel, naming both sides."""
    if info.name != DRIVER_NAME:
        raise ModuleLoadError(f"{path}: module name {info.name or '(none)'!r} is not "
                              f"{DRIVER_NAME!r}; refusing to load a module that is not ours")
    if info.vermagic_release != release:
        raise ModuleLoadError(
            f"{path}: vermagic {info.vermagic_release or '(none)'!r} does not match the "
            f"running kernel {release!r}: built for another kernel"
        )
    if machine in ELF_MACHINES.values() and info.machine != machine:
        raise ModuleLoadError(f"{path}: built for {info.machine}, this host is {machine}")


def load_hint(err: int, *, lockdown: str, sig_enforce: bool) -> str:
    """What a finit_module errno means for the user, in one line."""
    if err in _SIGNATURE_ERRNOS or (err == errno.EPERM and (lockdown in ("integrity",
                                                                          "confidentiality")
                                                             or sig_enforce)):
        return SIGNATURE_HINT
    hints = {
        errno.ENOEXEC: "Invalid module format: built for another kernel",
        errno.EEXIST: "already loaded",
        errno.EPERM: "operation not permitted: loading modules needs CAP_SYS_MODULE (root, "
                     "a privileged container) and kernel.modules_disabled=0",
        errno.ENOSYS: "this kernel has no module support",
        errno.ENOENT: "unknown symbol or missing dependency: built for another kernel "
                      "configuration (see dmesg)",
        errno.EINVAL: "invalid module or parameters (see dmesg)",
        errno.EBADMSG: "malformed module signature",
        errno.ENOMEM: "out of memory loading the module",
        errno.EBUSY: "the module is busy",
        errno.ETXTBSY: "the module file is being written",
    }
    return hints.get(err, os.strerror(err))


def _syscall_numbers(machine: str) -> tuple[int, int]:
    try:
        return SYSCALLS[machine]
    except KeyError:
        raise ModuleLoadError(f"no finit_module syscall number known for {machine}") from None


class Syscalls:
    """finit_module and delete_module through libc's syscall(2); tests pass fakes."""

    def __init__(self, machine: str) -> None:
        self._finit, self._delete = _syscall_numbers(machine)
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long

    def finit_module(self, fd: int, params: str) -> int:
        """0, or the errno."""
        rc = self._libc.syscall(ctypes.c_long(self._finit), ctypes.c_int(fd),
                                ctypes.c_char_p(params.encode()), ctypes.c_int(0))
        return 0 if rc == 0 else ctypes.get_errno()

    def delete_module(self, name: str) -> int:
        rc = self._libc.syscall(ctypes.c_long(self._delete), ctypes.c_char_p(name.encode()),
                                ctypes.c_int(os.O_NONBLOCK))
        return 0 if rc == 0 else ctypes.get_errno()


@dataclass(frozen=True)
class LoadedModule:
    name: str
    vermagic: str
    action: str  # "loaded", "already loaded", "replaced"
    millis: float


def loaded_modules(kernel_root: Path) -> dict[str, int]:
    """/proc/modules: name -> reference count."""
    text = (kernel_root / MODULES_FILE).read_text()
    found: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            found[parts[0]] = int(parts[2]) if parts[2].isdigit() else 0
    return found


def _sysfs(kernel_root: Path, name: str, attr: str) -> str:
    try:
        return (kernel_root / "sys/module" / name / attr).read_text().strip()
    except OSError:
        return ""


def _device_schema_hash() -> int | None:
    """The schema hash the loaded module reports, or None when its device cannot tell
    (missing, or busy with another consumer)."""
    from runtime.driver.kmod import KmodDevice, KmodSchemaMismatchError

    try:
        dev = KmodDevice()
    except DriverError:
        return None
    with dev:
        try:
            dev.handshake()
        except KmodSchemaMismatchError:
            pass  # the hash was read; it is another schema's
        except DriverError:
            return None
        return dev.schema_hash


def same_build(info: ModInfo, kernel_root: Path,
               schema_hash: Callable[[], int | None] = _device_schema_hash) -> bool:
    """Whether the loaded copy of our module is the build in `info`: by version and
    srcversion when the module has them, else by the event schema its device reports."""
    ours = (info.get("version"), info.get("srcversion"))
    if any(ours):
        return ours == (_sysfs(kernel_root, info.name, "version"),
                        _sysfs(kernel_root, info.name, "srcversion"))
    from runtime.driver import _schema

    return schema_hash() == _schema.SCHEMA_HASH


def load_module(path: Path, *, params: str = "", kernel_root: Path = Path("/"),
                release: str | None = None, machine: str | None = None,
                syscalls: Syscalls | None = None,
                schema_hash: Callable[[], int | None] = _device_schema_hash) -> LoadedModule:
    """Check `path` against the running kernel, replace an older copy of our module, load
    it. Raises ModuleFormatError / ModuleLoadError with one line naming the cause."""
    started = time.monotonic()
    if not (kernel_root / MODULES_FILE).exists():
        raise ModuleLoadError("this kernel cannot load modules (no /proc/modules)")
    try:
        disabled = (kernel_root / MODULES_DISABLED_FILE).read_text().strip() == "1"
    except OSError:
        disabled = False
    if disabled:
        raise ModuleLoadError("module loading is switched off (kernel.modules_disabled=1)")
    release = release or platform.release()
    machine = machine or platform.machine()
    info = read_modinfo(path)
    check_fits(info, path, release=release, machine=machine)
    calls = syscalls or Syscalls(machine)
    action = "loaded"
    refcounts = loaded_modules(kernel_root)
    if info.name in refcounts:
        if same_build(info, kernel_root, schema_hash):
            return LoadedModule(info.name, info.vermagic, "already loaded",
                                (time.monotonic() - started) * 1000)
        err = calls.delete_module(info.name)
        if err in (errno.EWOULDBLOCK, errno.EBUSY):
            raise ModuleLoadError(
                f"another build of {info.name} is loaded and in use (refcount "
                f"{refcounts[info.name]}): stop its consumer, then load again")
        if err:
            raise ModuleLoadError(f"cannot unload the older {info.name}: {os.strerror(err)}")
        action = "replaced"
    with path.open("rb") as stream:
        err = calls.finit_module(stream.fileno(), params)
    if err == errno.EEXIST:
        # Someone loaded it between our look and our load: the same name is ours.
        return LoadedModule(info.name, info.vermagic, "already loaded",
                            (time.monotonic() - started) * 1000)
    if err:
        enforce = _sysfs(kernel_root, "module", "parameters/sig_enforce") == "Y"
        hint = load_hint(err, lockdown=lockdown_mode(kernel_root), sig_enforce=enforce)
        raise ModuleLoadError(f"finit_module {path.name}: {errno.errorcode.get(err, err)}: "
                              f"{hint}")
    return LoadedModule(info.name, info.vermagic, action, (time.monotonic() - started) * 1000)
