"""Shared helpers for the build-service tests: a real HTTP mirror on loopback."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    hits: Counter[str]

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self.hits[self.path] += 1
        super().do_GET()


@contextmanager
def serve_dir(
    root: Path, handler_class: type[http.server.SimpleHTTPRequestHandler] = _Handler
) -> Iterator[tuple[str, Counter[str]]]:
    """Serve `root` over HTTP on 127.0.0.1; yields (base URL, per-path GET counter). The
    counter counts with the default `handler_class`; pass another to make paths misbehave."""
    hits: Counter[str] = Counter()
    handler = type("Handler", (handler_class,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


class ArchiveKey:
    """A throwaway OpenPGP key that signs a loopback mirror's Release files the way
    Debian's archive key signs the real ones (clearsigned InRelease, detached Release.gpg),
    and the public keyring that trusts it."""

    def __init__(self, home: Path, name: str = "driverkit test archive") -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._gpg("--quick-gen-key", f"{name} <archive@test.invalid>", "ed25519", "sign",
                  "never")  # fmt: skip
        self.keyring = home / "archive-keyring.gpg"
        self.keyring.write_bytes(self._gpg("--export"))

    def _gpg(self, *args: str) -> bytes:
        done = subprocess.run(
            ["gpg", "--batch", "--yes", "--quiet", "--homedir", str(self.home),
             "--pinentry-mode", "loopback", "--passphrase", "", *args],
            capture_output=True, check=True,
        )  # fmt: skip
        return done.stdout

    def clearsign(self, text: str, dest: Path) -> None:
        plain = dest.with_name(dest.name + ".plain")
        plain.write_text(text)
        self._gpg("--clearsign", "--output", str(dest), str(plain))
        plain.unlink()

    def detach_sign(self, path: Path, dest: Path) -> None:
        self._gpg("--detach-sign", "--output", str(dest), str(path))

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
                       capture_output=True, check=False)  # fmt: skip
