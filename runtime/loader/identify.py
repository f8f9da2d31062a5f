"""What the loader needs to know about a host, read from files below a host root.

Pure functions over directories: a loader in an init container reads the host's files
through a bind mount (`--host-root /host`), and the tests write a fake host root in a temp
dir. Only `uname` comes from the running kernel, and every part of it can be overridden.

The distro facts come from `<host-root>/etc`. The kernel facts (`/proc`, `/sys`) come from
`<kernel-root>`, which is the host root when it holds a `proc` folder and `/` otherwise:
a container sees the same kernel as its host, so its own /proc and /sys tell the truth
when the host's are not mounted (Falco's chart mounts /proc but not /sys).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from drivercore.kernelrelease import parse_kernel_release

# The BPF ring buffer (BPF_MAP_TYPE_RINGBUF), which the CO-RE probe writes to, is in 5.8+.
RING_BUFFER_SINCE = (5, 8)
BTF_FILE = "sys/kernel/btf/vmlinux"
MODULES_FILE = "proc/modules"
MODULES_DISABLED_FILE = "proc/sys/kernel/modules_disabled"
LOCKDOWN_FILE = "sys/kernel/security/lockdown"
SIG_ENFORCE_FILE = "sys/module/module/parameters/sig_enforce"
CMDLINE_FILE = "proc/cmdline"
EFIVARS_DIR = "sys/firmware/efi/efivars"
EFI_DIR = "sys/firmware/efi"
OS_RELEASE_FILE = "etc/os-release"
# Files a host without os-release may still have, in the order they are tried: minikube's
# VERSION first (its ISO is Buildroot, whose os-release does not say minikube), CentOS's
# before Red Hat's (CentOS ships both).
MINIKUBE_VERSION_FILE = "etc/VERSION"
RELEASE_FILES: tuple[tuple[str, str], ...] = (
    ("etc/debian_version", "debian"),
    ("etc/centos-release", "centos"),
    ("etc/redhat-release", "rhel"),
)
_LOCKDOWN_MODE = re.compile(r"\[(\w+)\]")
_SIG_ENFORCE_ARG = re.compile(r"(?:^|\s)module\.sig_enforce=(1|y|Y)(?:\s|$)")
# A file can be huge or a FIFO on a hostile host root; nothing here needs more than this.
_MAX_READ = 64 << 10


@dataclass(frozen=True)
class OsRelease:
    """The os-release fields the naming rules read; `source` says which file gave them."""

    id: str = ""  # lower case, as falcoctl compares it
    version_id: str = ""
    variant_id: str = ""
    build_id: str = ""
    pretty_name: str = ""
    source: str = ""  # "etc/os-release", "etc/debian_version", ... or "" when none was found
    minikube_version: str = ""  # the text of etc/VERSION when the host is minikube
    has_version_id: bool = False  # VERSION_ID= present (even empty: amzn's old "" means v1)


@dataclass(frozen=True)
class ModuleSupport:
    """Whether this kernel will load our (unsigned) kernel module, and if not, why not."""

    can_load: bool
    reason: str


@dataclass(frozen=True)
class HostInfo:
    host_root: Path
    kernel_root: Path
    kernel_release: str
    kernel_version: str  # the whole `uname -v` text (or an override such as `1`)
    machine: str  # `uname -m`: x86_64, aarch64
    os_release: OsRelease
    btf: bool
    ring_buffer: bool
    modules: ModuleSupport
    lockdown: str  # none, integrity, confidentiality; "" when the kernel has no lockdown LSM
    secure_boot: bool | None  # None: not booted through EFI, or the variable is unreadable

    @property
    def btf_path(self) -> Path:
        return self.kernel_root / BTF_FILE


def _read(path: Path) -> str | None:
    try:
        with path.open("rb") as stream:
            return stream.read(_MAX_READ).decode("utf-8", "replace")
    except OSError:
        return None


def parse_os_release(text: str) -> dict[str, str]:
    """os-release's shell-like `KEY=value` lines; quotes removed, comments skipped."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote, value = value[0], value[1:-1]
            if quote == '"':  # shell rules: a backslash escapes only these inside "..."
                value = re.sub(r"\\([\\$\"`])", r"\1", value)
        values[key.strip()] = value
    return values


def read_os_release(host_root: Path) -> OsRelease:
    """os-release, else the first older release file found; minikube's etc/VERSION wins
    over both, as in falcoctl."""
    minikube = _read(host_root / MINIKUBE_VERSION_FILE)
    minikube_version = ""
    if minikube is not None and re.search(r"\d+\.\d+\.\d+", minikube):
        minikube_version = minikube.strip()
    text = _read(host_root / OS_RELEASE_FILE)
    if text is not None:
        fields = parse_os_release(text)
        return OsRelease(
            id=fields.get("ID", "").lower(),
            version_id=fields.get("VERSION_ID", ""),
            variant_id=fields.get("VARIANT_ID", ""),
            build_id=fields.get("BUILD_ID", ""),
            pretty_name=fields.get("PRETTY_NAME", ""),
            source=OS_RELEASE_FILE,
            minikube_version=minikube_version,
            has_version_id="VERSION_ID" in fields,
        )
    if minikube_version:
        return OsRelease(source=MINIKUBE_VERSION_FILE, minikube_version=minikube_version)
    for name, distro_id in RELEASE_FILES:
        content = _read(host_root / name)
        if content is not None:
            return OsRelease(id=distro_id, pretty_name=content.strip()[:120], source=name)
    return OsRelease()


def module_support(kernel_root: Path) -> ModuleSupport:
    """The first reason the kernel would refuse our module, in the order a kernel checks."""
    if not (kernel_root / MODULES_FILE).exists():
        return ModuleSupport(False, "this kernel cannot load modules (no /proc/modules)")
    if (_read(kernel_root / MODULES_DISABLED_FILE) or "").strip() == "1":
        return ModuleSupport(False, "module loading is switched off (kernel.modules_disabled=1)")
    mode = lockdown_mode(kernel_root)
    if mode in ("integrity", "confidentiality"):
        return ModuleSupport(
            False, f"kernel lockdown [{mode}] refuses unsigned modules (Secure Boot?)"
        )
    enforce = (_read(kernel_root / SIG_ENFORCE_FILE) or "").strip()
    cmdline = _read(kernel_root / CMDLINE_FILE) or ""
    if enforce == "Y" or _SIG_ENFORCE_ARG.search(cmdline):
        return ModuleSupport(False, "module.sig_enforce is on: only signed modules load")
    return ModuleSupport(True, "modules can load")


def lockdown_mode(kernel_root: Path) -> str:
    """The bracketed mode of `none [integrity] confidentiality`, or "" without lockdown."""
    match = _LOCKDOWN_MODE.search(_read(kernel_root / LOCKDOWN_FILE) or "")
    return match.group(1) if match else ""


def secure_boot(kernel_root: Path) -> bool | None:
    """The EFI SecureBoot variable: 4 bytes of attributes, then 1 when enabled."""
    if not (kernel_root / EFI_DIR).is_dir():
        return None
    try:
        variables = sorted((kernel_root / EFIVARS_DIR).glob("SecureBoot-*"))
    except OSError:
        return None
    if not variables:
        return None
    try:
        data = variables[0].read_bytes()[:_MAX_READ]
    except OSError:
        return None
    return len(data) >= 5 and data[4] == 1


def ring_buffer_supported(kernel_release: str) -> bool:
    return parse_kernel_release(kernel_release).series >= RING_BUFFER_SINCE


def default_kernel_root(host_root: Path) -> Path:
    return host_root if (host_root / "proc").is_dir() else Path("/")


def identify(
    host_root: Path,
    *,
    kernel_release: str | None = None,
    kernel_version: str | None = None,
    machine: str | None = None,
    kernel_root: Path | None = None,
) -> HostInfo:
    """Everything the choice and the names depend on; `uname` parts can be overridden (a
    loader preparing another kernel, or a test)."""
    uname = os.uname()
    release = kernel_release or uname.release
    kroot = kernel_root if kernel_root is not None else default_kernel_root(host_root)
    return HostInfo(
        host_root=host_root,
        kernel_root=kroot,
        kernel_release=release,
        kernel_version=kernel_version or uname.version,
        machine=machine or uname.machine,
        os_release=read_os_release(host_root),
        btf=(kroot / BTF_FILE).exists(),
        ring_buffer=ring_buffer_supported(release),
        modules=module_support(kroot),
        lockdown=lockdown_mode(kroot),
        secure_boot=secure_boot(kroot),
    )
