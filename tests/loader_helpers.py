"""Stand-ins for a host and a repository, shared by the tests/test_loader_*.py modules.

`write_host_root` writes the files a real host has (os-release, /proc and /sys entries) into
a temp dir: the loader reads them exactly as it reads a bind-mounted host root.
`RepoServer` is Python's real http.server on 127.0.0.1 serving a repository tree signed
with drivercore.repoindex, the same code publishers use; its faults (404, 500, a short body,
a server that accepts and stalls) are real socket behaviour.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivercore.naming import ArtifactKind
from drivercore.repoindex import ArchIndex, IndexEntry, RootIndex, sign_index

# A kernel with BTF, ring buffer and module support, unless a test says otherwise.
CAPABLE_KERNEL = {
    "proc/modules": "ext4 1 0 - Live 0x0\n",
    "proc/sys/kernel/modules_disabled": "0\n",
    "sys/kernel/btf/vmlinux": "BTF",
}


def write_host_root(root: Path, files: Mapping[str, str | bytes | None]) -> Path:
    """`files` by path below the root; None leaves a file out of CAPABLE_KERNEL."""
    merged: dict[str, str | bytes | None] = {**CAPABLE_KERNEL, **files}
    (root / "proc").mkdir(parents=True, exist_ok=True)
    for name, content in merged.items():
        if content is None:
            continue
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def payload(label: str, size: int = 20000) -> bytes:
    seed = hashlib.sha256(label.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def _kind(name: str) -> ArtifactKind:
    if name.endswith(".ko"):
        return ArtifactKind.KMOD
    return ArtifactKind.CORE if name.endswith("_core.o") else ArtifactKind.PROBE


def write_repo(root: Path, files: Mapping[str, bytes], key: Ed25519PrivateKey,
               version: str = "0.1.0+test", arch: str = "x86_64") -> Path:
    """A repository folder as `driverkit publish` lays it out, signed with `key`."""
    folder = root / version / arch
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        entries.append(IndexEntry(file=name, kind=_kind(name),
                                  sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
    index = ArchIndex(version, arch).with_entries(entries).to_bytes()
    (folder / "index.json").write_bytes(index)
    (folder / "index.json.sig").write_bytes(sign_index(index, key))
    root_index = RootIndex().with_arch(version, arch).to_bytes()
    (root / "index.json").write_bytes(root_index)
    (root / "index.json.sig").write_bytes(sign_index(root_index, key))
    return folder


@dataclass
class RepoServer:
    url: str
    root: Path
    # Request paths (suffix match) that misbehave: "500", "short" (a body cut off after a
    # Content-Length promising more), "stall" (headers, a few bytes, then silence).
    faults: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


def _handler(server: RepoServer) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(server.root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            server.requests.append(self.path)
            fault = next((f for p, f in server.faults.items() if self.path.endswith(p)), None)
            if fault == "500":
                self.send_error(500, "injected failure")
            elif fault in ("short", "stall"):
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.write(b"\x7fELF" * 8)
                self.wfile.flush()
                if fault == "stall":
                    time.sleep(4)
                self.close_connection = True
            else:
                super().do_GET()

    return Handler


@contextmanager
def repo_server(root: Path) -> Iterator[RepoServer]:
    root.mkdir(parents=True, exist_ok=True)
    state = RepoServer("", root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
