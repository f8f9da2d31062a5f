"""`rt-engine run --driver auto`: the loader's candidates, tried in order until one loads.

Identify and choose run when the source is created, so a refused type or an unidentifiable
host stops the engine before it starts anything. Fetching and loading happen at `start`,
where the engine hands over its event filter: each candidate is fetched (verified, cached)
and loaded with the engine's own live sources; a candidate that is not published or fails
to load (the verifier refuses the probe, insmod refuses the module) is logged with its
reason and the next one is tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from drivercore.errors import ToolError
from drivercore.naming import ArtifactKind
from drivercore.repoclient import NotFoundError
from runtime.driver.errors import DriverError
from runtime.driver.schema import boot_to_epoch_ns
from runtime.engine.metrics import DriverInfo, process_uptime_s
from runtime.engine.sources import Batch, EventSource, PerCpuStats, open_live_source
from runtime.loader.config import LoaderConfig
from runtime.loader.fetch import Log, get_artifact
from runtime.loader.install import ENGINE_DRIVER, build_fallback, detect, fetch_settings
from runtime.loader.kmodload import load_module

SourceOpener = Callable[..., EventSource]


class NoDriverLoadedError(DriverError):
    """Every candidate driver was missing from the repositories or failed to load."""


class AutoSource:
    kind = "auto"  # becomes the loaded driver's kind once started

    def __init__(self, cfg: LoaderConfig, *, buffer_bytes: int, log: Log,
                 open_source: SourceOpener = open_live_source) -> None:
        self.keep_raw = False
        self.boot_offset_ns = boot_to_epoch_ns()
        self._buffer_bytes = buffer_bytes
        self._log = log
        self._open_source = open_source
        self._cfg = cfg
        self._detection = detect(cfg, log)
        self._settings = fetch_settings(cfg, self._detection.host)
        self._inner: EventSource | None = None
        self.loaded: Path | None = None
        self.driver_info: DriverInfo | None = None  # once a candidate has loaded

    def start(self, event_types: frozenset[str] | None) -> None:
        failures: list[str] = []
        unpublished = 0
        candidates = self._detection.choice.candidates
        for position, candidate in enumerate(candidates):
            then = (f"trying {candidates[position + 1].kind}" if position + 1 < len(candidates)
                    else "no candidate left")
            try:
                fetched = get_artifact(self._settings, candidate.file, self._log)
            except NotFoundError as exc:
                unpublished += 1
                if not (self._cfg.allow_build and unpublished == len(candidates)):
                    failures.append(f"{candidate.kind}: {exc}")
                    self._log(f"loader: choose: {candidate.kind} not published; {then}")
                    continue
                # Published nowhere, any of them: build the last one here (a failed build
                # is its own one-line error).
                fetched = build_fallback(self._cfg, self._detection, self._settings, self._log)
            started = time.monotonic()
            source: EventSource | None = None
            try:
                if candidate.kind is ArtifactKind.KMOD:
                    self._load_module(fetched.path)
                source = self._open_source(ENGINE_DRIVER[candidate.kind], probe=fetched.path,
                                           buffer_bytes=self._buffer_bytes)
                source.keep_raw = self.keep_raw
                source.start(event_types)
            except (ToolError, OSError) as exc:
                if source is not None:
                    source.close()
                failures.append(f"{candidate.kind} ({candidate.file}): {exc}")
                self._log(f"loader: load: {candidate.kind} {candidate.file} failed "
                          f"({(time.monotonic() - started) * 1000:.0f} ms): {exc}; {then}")
                continue
            load_s = time.monotonic() - started
            self._log(f"loader: load: {candidate.kind} {candidate.file} loaded "
                      f"({load_s * 1000:.0f} ms, {process_uptime_s():.2f} s after process "
                      f"start): {candidate.reason}")
            self.driver_info = DriverInfo(str(candidate.kind), candidate.file, candidate.reason,
                                          f"loader ({fetched.source})", load_s=load_s)
            self._inner = source
            self.kind = source.kind
            self.loaded = fetched.path
            return
        raise NoDriverLoadedError("no candidate driver loaded: " + "; ".join(failures))

    def _load_module(self, path: Path) -> None:
        """Our checked load (vermagic, older copy, finit_module hints); the engine's module
        source then finds the device and loads nothing itself."""
        done = load_module(path, kernel_root=self._detection.host.kernel_root)
        self._log(f"loader: load: {path.name} {done.action} ({done.millis:.0f} ms), "
                  f"vermagic {done.vermagic.strip()}")

    def _started(self) -> EventSource:
        assert self._inner is not None, "start() first"
        return self._inner

    def read(self, timeout_s: float) -> Batch | None:
        return self._started().read(timeout_s)

    def read_rest(self) -> Batch:
        """What the loaded source still has after a stop (see BpfSource.read_rest)."""
        rest = getattr(self._inner, "read_rest", None)
        return rest() if rest is not None else Batch(events=[])

    def stats(self) -> PerCpuStats:
        return {} if self._inner is None else self._inner.stats()

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
            self._inner = None
