"""Checks of a resolved engine config that must fail before anything starts.

A live run loads a driver and seeds its state before it opens its outputs; a metrics port
already in use or a capture path nobody can write would otherwise surface as a traceback
after the driver is attached (or, for a replay, after events were analysed). Each check
here names the input and the fix in one line.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from drivercore.errors import UsageError
from runtime.engine.config import EngineConfig


def _writable_file(what: str, path: Path, fix: str) -> None:
    if path.is_dir():
        raise UsageError(f"{what} {path}: is a directory; {fix}")
    folder = path.parent
    # The writers create missing parents; the nearest existing one must accept that.
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{what} {path}: {existing} is not a directory; {fix}")
    try:
        # Really create a file: access() says yes to root even where nothing can be
        # written (/proc, /sys).
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UsageError(f"{what} {path}: {existing} not writable ({exc.strerror}); {fix}"
                         ) from None
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{what} {path}: not writable; {fix}")


def _port_free(addr: str, port: int) -> None:
    where = f"--metrics-port/metrics.prometheus_port {addr}:{port}"
    try:
        infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"{where}: {addr!r} is not an address of this host ({exc});"
                         " set metrics.prometheus_addr to one") from None
    family, kind, proto, _, sockaddr = infos[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(sockaddr)
    except OSError as exc:
        raise UsageError(f"{where}: cannot listen: {exc.strerror or exc}; pick a free port"
                         " or another prometheus_addr") from None


def check_before_start(cfg: EngineConfig) -> None:
    if cfg.record is not None and cfg.replay is not None:
        raise UsageError("--record with --replay: a replay records nothing new; drop --record"
                         " (copy the capture file instead)")
    if cfg.record is not None:
        _writable_file("--record", cfg.record, "pass --record a path in a writable directory")
    if cfg.outputs.file is not None:
        _writable_file("outputs.file", cfg.outputs.file,
                       "set outputs.file to a path in a writable directory")
    if cfg.metrics.enabled and cfg.metrics.output_file is not None:
        _writable_file("metrics.output_file", cfg.metrics.output_file,
                       "set metrics.output_file to a path in a writable directory")
    if cfg.metrics.prometheus_port is not None and cfg.metrics.prometheus_port != 0:
        _port_free(cfg.metrics.prometheus_addr, cfg.metrics.prometheus_port)
