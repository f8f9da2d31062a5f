"""Shared helpers for the build-service tests: a real HTTP mirror on loopback."""

from __future__ import annotations

import functools
import http.server
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
def serve_dir(root: Path) -> Iterator[tuple[str, Counter[str]]]:
    """Serve `root` over HTTP on 127.0.0.1; yields (base URL, per-path GET counter)."""
    hits: Counter[str] = Counter()
    handler = type("Handler", (_Handler,), {"hits": hits})
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
