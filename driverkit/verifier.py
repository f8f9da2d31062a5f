"""eBPF artifacts checked by the host kernel's own verifier before they are published.

A probe can build, carry every program and map (artifacts.validate_probe) and still be
refused at load: clang 21 in the sid builder once dropped a bound the verifier needed, and
only a QEMU boot of that kernel noticed. Where this host can load BPF (root, libbpf, the
artifact's arch), each probe is loaded into the verifier and freed again, never attached,
and the verdict goes into the manifest. A per-kernel probe meets the host's verifier, not
its target kernel's: a check of the programs' memory safety that the boot tests complete.
"""

from __future__ import annotations

import errno
import os
import platform
from pathlib import Path

from driverkit.errors import ArtifactValidationError

_HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def verify_on_host(path: Path, arch: str) -> str:
    """"passed on <kernel release>" or "skipped: <why>"; raises ArtifactValidationError
    with the verifier's last lines when the host kernel refuses the object."""
    host_arch = _HOST_ARCH.get(platform.machine(), platform.machine())
    if arch != host_arch:
        return f"skipped: built for {arch}, this host is {host_arch}"
    if os.geteuid() != 0:
        return "skipped: loading BPF programs needs root"
    from drivercore import libbpf
    from drivercore.errors import DriverError

    try:
        lib = libbpf.lib()
    except DriverError as exc:
        return f"skipped: {exc}"
    with libbpf.LogCapture() as log:
        obj = lib.bpf_object__open_file(os.fsencode(path), None)
        if not obj:
            raise ArtifactValidationError(f"{path.name}: libbpf cannot open it: {log.tail(3)}")
        try:
            rc = lib.bpf_object__load(obj)
        finally:
            lib.bpf_object__close(obj)
    if rc == -errno.EPERM:
        # Root without CAP_BPF, as in a container (a farm task): nothing was verified.
        return "skipped: loading BPF programs is not permitted here (no CAP_BPF)"
    if rc:
        raise ArtifactValidationError(
            f"{path.name}: the verifier of this host's kernel ({platform.release()}) refused "
            f"it ({os.strerror(-rc)}): " + " | ".join(log.tail(6).splitlines())
        )
    return f"passed on {platform.release()}"
