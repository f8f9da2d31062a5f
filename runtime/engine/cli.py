"""`rt-engine`: run the rules engine on a live driver or a capture; validate rule files."""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from types import FrameType

import click

from drivercore.errors import ToolError, UsageError
from runtime.driver.schema import compiled_decoder_status
from runtime.engine.app import Engine, Runner, RunOptions
from runtime.engine.capture import CaptureHeader, CaptureWriter, materialise_proc, snapshot_proc
from runtime.engine.config import DRIVER_KINDS, EngineConfig, load_config, with_overrides
from runtime.engine.drops import DropMonitor
from runtime.engine.metrics import (
    DriverInfo,
    EngineCounters,
    Metrics,
    PrometheusEndpoint,
    process_uptime_s,
)
from runtime.engine.outputs import OutputQueue, build_sinks
from runtime.engine.preflight import check_before_start
from runtime.engine.reorder import DEFAULT_WINDOW_MS, OrderedSource, ReorderCounters
from runtime.engine.rules import Priority, Ruleset, load_rules
from runtime.engine.rules.append_output import apply_append_output
from runtime.engine.sources import (
    EventSource,
    ReplaySource,
    open_live_source,
    schema_identity,
)
from runtime.engine.state import REQUIRED_SYSCALLS, SystemState
from runtime.loader.cli import driver as driver_commands

DEFAULT_RULES_NAME = "default_rules.yaml"


def default_rules_path() -> Path:
    return Path(str(resources.files("runtime.engine").joinpath(DEFAULT_RULES_NAME)))


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _load_ruleset(paths: Sequence[Path]) -> Ruleset:
    files = list(paths) or [default_rules_path()]
    for path in files:
        if not path.is_file():
            raise UsageError(f"rules file {path}: not found; pass an existing --rules FILE")
    return load_rules(files)


def _priority(text: str) -> Priority:
    try:
        return Priority.parse(text)
    except ValueError as exc:
        raise UsageError(f"--min-priority/priority: {exc}") from None


def _handover_file(cfg: EngineConfig) -> Path | None:
    """The loader's hand-over to load: --driver-file, or with --driver auto one the init
    container left in loader.dest or the state directory (fetching nothing again)."""
    if cfg.driver_file is not None:
        return cfg.driver_file
    if cfg.driver != "auto":
        return None
    from runtime.loader.config import loader_from_environment
    from runtime.loader.handover import handover_in

    loader = loader_from_environment(cfg.loader, os.environ)
    for folder in (loader.dest, loader.state_dir):
        found = handover_in(folder) if folder is not None else None
        if found is not None:
            _log(f"loader: hand-over: {found} found; loading the driver it names")
            return found
    return None


def _open_source(cfg: EngineConfig) -> tuple[EventSource, DriverInfo | None]:
    """The source, and which driver it is and why (None until an auto source has loaded
    one; None for a replay)."""
    if cfg.replay is not None:
        return ReplaySource(cfg.replay), None
    handover = _handover_file(cfg)
    if handover is not None:
        from runtime.loader.handover import read_handover

        if cfg.probe is not None:
            raise UsageError("the hand-over file names the driver to load; drop --probe")
        handed = read_handover(handover, _log)
        source = open_live_source(handed.engine_driver, probe=handed.artifact,
                                  buffer_bytes=cfg.buffer_bytes)
        return source, DriverInfo(str(handed.kind), handed.artifact.name, handed.reason,
                                  f"hand-over {handover}")
    if cfg.driver == "auto":
        from runtime.loader.autosource import AutoSource
        from runtime.loader.config import loader_from_environment

        if cfg.probe is not None:
            raise UsageError("--driver auto fetches its own driver; drop --probe")
        loader = loader_from_environment(cfg.loader, os.environ)
        return AutoSource(loader, buffer_bytes=cfg.buffer_bytes, log=_log), None
    source = open_live_source(cfg.driver, probe=cfg.probe, buffer_bytes=cfg.buffer_bytes)
    kind = "probe" if cfg.driver == "ebpf" else cfg.driver  # the loader's names for kinds
    artifact = cfg.probe.name if cfg.probe is not None else "built-in default"
    return source, DriverInfo(kind, artifact, f"requested (--driver {cfg.driver})", "flag")


def _needed_event_types(ruleset: Ruleset) -> frozenset[str] | None:
    if ruleset.needs_all_events:
        # Some rule has no evt.type constraint (Falco warns about these too): it can only
        # be served by capturing everything.
        names = ", ".join(r.name for r in ruleset.rules if r.event_types is None)
        _log(f"rt-engine: rules without an evt.type filter need every event: {names}")
        return None
    return frozenset(ruleset.required_syscalls() | REQUIRED_SYSCALLS)


class _StopOnSignal:
    """SIGINT/SIGTERM set a flag the loop checks between reads; a second signal is fatal."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._stop.is_set():
            raise KeyboardInterrupt
        self._stop.set()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _loaded(source: EventSource, info: DriverInfo | None, load_s: float) -> DriverInfo:
    """The started live source's DriverInfo; its `load` line (an auto source logs its own,
    one per candidate tried)."""
    if info is None:
        from runtime.loader.autosource import AutoSource

        assert isinstance(source, AutoSource)
        found = source.driver_info
        assert found is not None, "an auto source that started has loaded a driver"
        return found
    info.load_s = load_s
    _log(f"loader: load: {info.kind} {info.artifact} loaded ({load_s * 1000:.0f} ms, "
         f"{process_uptime_s():.2f} s after process start): {info.reason}")
    return info


def run_engine(cfg: EngineConfig, *, reorder_window_ms: float = DEFAULT_WINDOW_MS) -> int:
    """Build everything from a resolved config, run, and always print the drop summary.
    Events reach the rules in ts order across CPUs (runtime/engine/reorder.py)."""
    min_priority = _priority(cfg.priority)
    ruleset = apply_append_output(_load_ruleset(cfg.rules_files), cfg.append_output)
    for warning in ruleset.warnings:
        _log(f"rt-engine: warning: {warning}")
    _log(f"rt-engine: loaded {len(ruleset)} rules")
    from runtime.engine.dns import DNS

    if DNS.watched:
        # fd.*ip.name: the names the rules compare against, resolved before any event.
        DNS.refresh()
        DNS.start_refresher()
        _log(f"rt-engine: resolved {DNS.watched} names for fd.*ip.name")
    slow_decoder = compiled_decoder_status()
    if slow_decoder is not None:
        # Still correct, only slower (about 0.7x in bench_replay): say so once.
        _log(f"rt-engine: decoding in Python: {slow_decoder}")

    sinks = build_sinks(
        stdout=cfg.outputs.stdout,
        json_output=cfg.json_output,
        file=cfg.outputs.file,
        webhook_url=cfg.webhook.url,
        webhook_timeout=cfg.webhook.timeout,
    )
    live = cfg.replay is None
    # A replay has no kernel ring to overflow: a slow reader slows it, losing no alert.
    outputs = OutputQueue(sinks, maxsize=cfg.outputs.queue_size, block_when_full=not live)
    counters = EngineCounters()
    reorder = ReorderCounters(window_ms=reorder_window_ms)
    # Live only: a process first seen mid-run is looked up in /proc, and cgroup ids are
    # mapped to containers through the cgroup v2 mount. A replay must not consult this
    # host, whose processes and containers are not the recorded ones.
    state = SystemState(
        proc_fallback_root="/proc" if live else None,
        cgroup_root="/sys/fs/cgroup" if live and Path("/sys/fs/cgroup").is_dir() else None,
    )
    source: EventSource | None = None
    recorder: CaptureWriter | None = None
    prometheus: PrometheusEndpoint | None = None
    drops = DropMonitor(
        cfg.syscall_event_drops,
        emit_alert=outputs.submit,
        log=_log,
        now_ns=time.time_ns(),
        extra_fields={"driver": cfg.driver if cfg.replay is None else "replay"},
    )
    try:
        source, driver_info = _open_source(cfg)
        if cfg.record is not None:
            api, schema_hash = schema_identity()
            recorder = CaptureWriter(
                cfg.record,
                CaptureHeader(
                    api_version=api,
                    schema_hash=schema_hash,
                    boot_offset_ns=source.boot_offset_ns,
                    metadata={
                        "driver": source.kind,
                        "hostname": socket.gethostname(),
                        "kernel": os.uname().release,
                        "created_ns": time.time_ns(),
                    },
                ),
            )
        if isinstance(source, ReplaySource):
            seeded = source.seed_state(state)
            if recorder is not None and source.proc_snapshot is not None:
                recorder.write_procs(source.proc_snapshot)
            _log(f"rt-engine: seeded {seeded} threads from the capture's /proc snapshot")
        elif recorder is not None:
            # Snapshot /proc once and seed from that very copy, so a replay of this
            # recording starts from exactly the process table this run started from.
            snapshot = snapshot_proc()
            with tempfile.TemporaryDirectory(prefix="rt-engine-proc-") as tmp:
                seeded = state.seed_from_proc(str(materialise_proc(snapshot, Path(tmp))))
            recorder.write_procs(snapshot)
            _log(f"rt-engine: seeded {seeded} threads from /proc (recorded in the capture)")
        else:
            seeded = state.seed_from_proc("/proc")
            _log(f"rt-engine: seeded {seeded} threads from /proc")
        source.keep_raw = cfg.record is not None
        load_started = time.monotonic()
        source.start(_needed_event_types(ruleset))
        if cfg.replay is None:
            driver_info = _loaded(source, driver_info, time.monotonic() - load_started)
        engine = Engine(
            ruleset, state, outputs.submit, min_priority=min_priority, counters=counters
        )
        metrics: Metrics | None = None
        if cfg.metrics.enabled or cfg.metrics.prometheus_port is not None:
            metrics = Metrics(counters, source.stats, lambda: outputs.counters.dropped_queue_full,
                              driver=driver_info, reorder=reorder)
        if metrics is not None and cfg.metrics.prometheus_port is not None:
            prometheus = PrometheusEndpoint(
                metrics, port=cfg.metrics.prometheus_port, addr=cfg.metrics.prometheus_addr
            )
            addr = cfg.metrics.prometheus_addr
            _log(f"rt-engine: prometheus metrics on {addr}:{prometheus.port}")
        metrics_stream = None
        if cfg.metrics.enabled and cfg.metrics.output_file is not None:
            metrics_stream = cfg.metrics.output_file.open("a", encoding="utf-8")
        stop = threading.Event()
        runner = Runner(
            OrderedSource(source, window_ms=reorder_window_ms, counters=reorder),
            engine,
            outputs,
            drops,
            metrics=metrics,
            recorder=recorder,
            options=RunOptions(
                duration_s=cfg.duration,
                metrics_interval_s=cfg.metrics.interval if cfg.metrics.enabled else None,
                metrics_stream=metrics_stream,
            ),
            stop=stop,
        )
        with _StopOnSignal(stop):
            # Logged once the handlers are in place: a SIGTERM sent as soon as this line
            # is seen must find them.
            if driver_info is not None:
                driver_info.ready_s = process_uptime_s()
                _log(f"loader: engine ready: {driver_info.kind} {driver_info.artifact}, "
                     f"{driver_info.ready_s:.2f} s after process start")
            _log(f"rt-engine: running ({source.kind})")
            runner.run()
        if metrics is not None and cfg.metrics.enabled:
            metrics.write_snapshot(metrics_stream or sys.stderr)
        if metrics_stream is not None:
            metrics_stream.close()
    finally:
        if source is not None:
            source.close()
        if recorder is not None:
            # Even after a failure what was captured so far is a complete, readable file.
            recorder.close()
            _log(f"rt-engine: capture written to {recorder.path}")
        outputs.close()
        if prometheus is not None:
            prometheus.close()
        # A source that never opened (a missing capture, no privileges) ran nothing: its
        # error alone is the output, without a summary of zeros around it.
        if source is not None:
            _log(
                f"rt-engine: events: {counters.events}, alerts: "
                f"{sum(counters.matches.values())}, output queue drops: "
                f"{outputs.counters.dropped_queue_full}, out of ts order: "
                f"{reorder.out_of_order} (by up to {reorder.out_of_order_max_ns / 1e6:g} ms;"
                f" reorder window {reorder_window_ms:g} ms, "
                f"held at most {reorder.held_peak}, released early when full: "
                f"{reorder.forced_by_capacity})"
            )
            _log(drops.summary.text())
    return 0


class _OneLineErrors(click.Group):
    """The one place every subcommand's (and the loader's `driver ...`) expected failure
    becomes one line and its exit code, whichever layer raised it."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ToolError as exc:
            click.echo(f"rt-engine: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            if exc.filename is None:
                raise  # not about a path the user gave: a bug, keep its traceback
            # A path from a flag or config the OS refused (too long, a loop, not a
            # directory) at a check that did not expect it: still the user's input.
            name = str(exc.filename)
            name = name if len(name) <= 80 else f"{name[:77]}..."
            click.echo(f"rt-engine: error: {name}: {exc.strerror}; pass a usable path",
                       err=True)
            ctx.exit(UsageError.exit_code)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """rt-engine: Falco-style rules over rtcap driver events."""


@main.command()
@click.option("--driver", type=click.Choice(DRIVER_KINDS), default=None, help="Live source.")
@click.option("--probe", type=click.Path(path_type=Path), default=None,
              help="Probe object (.o) or module for the driver.")
@click.option("--driver-file", type=click.Path(path_type=Path), default=None,
              help="The loader's rtcap-driver.json: load what it names, sha256 checked.")
@click.option("--rules", "rules", multiple=True, type=click.Path(path_type=Path),
              help="Rules file (repeatable); default: the bundled ruleset.")
@click.option("--json", "json_output", is_flag=True, default=None, help="Alerts as JSON lines.")
@click.option("--record", type=click.Path(path_type=Path), default=None,
              help="Write the captured driver records to FILE.")
@click.option("--replay", type=click.Path(path_type=Path), default=None,
              help="Read events from a capture FILE instead of a driver.")
@click.option("--min-priority", "priority", default=None, help="Drop alerts below this.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Engine config YAML.")
@click.option("--buffer-bytes", type=click.IntRange(min=4096), default=None,
              help="Driver ring buffer size per CPU (or total for the BPF ring).")
@click.option("--duration", type=click.FloatRange(min=0), default=None,
              help="Stop after S seconds.")
@click.option("--stats-interval", type=click.FloatRange(min=0.01), default=None,
              help="Print a metrics snapshot every S seconds (JSON lines on stderr).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics on 127.0.0.1:PORT.")
@click.option("--reorder-window-ms", type=click.FloatRange(min=0, max=10_000),
              default=DEFAULT_WINDOW_MS, show_default=True,
              help="Hold events up to MS of event time to process every CPU's events in"
                   " timestamp order (0: hold nothing back; each read is still sorted).")
def run(  # noqa: PLR0917 - one parameter per click option
    driver: str | None,
    probe: Path | None,
    driver_file: Path | None,
    rules: tuple[Path, ...],
    json_output: bool | None,
    record: Path | None,
    replay: Path | None,
    priority: str | None,
    config_path: Path | None,
    buffer_bytes: int | None,
    duration: float | None,
    stats_interval: float | None,
    metrics_port: int | None,
    reorder_window_ms: float,
) -> None:
    """Evaluate rules on live events (--driver) or a capture (--replay)."""
    try:
        cfg = with_overrides(
            load_config(config_path),
            driver=driver,
            probe=probe,
            driver_file=driver_file,
            rules_files=rules,
            json_output=json_output,
            record=record,
            replay=replay,
            priority=priority,
            buffer_bytes=buffer_bytes,
            duration=duration,
            stats_interval=stats_interval,
            metrics_port=metrics_port,
        )
        if cfg.replay is not None and (driver is not None or driver_file is not None):
            raise UsageError("--replay and --driver/--driver-file exclude each other; pass one")
        check_before_start(cfg)
        code = run_engine(cfg, reorder_window_ms=reorder_window_ms)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)


@main.command()
@click.option("--rules", "rules", multiple=True, required=True,
              type=click.Path(path_type=Path), help="Rules file (repeatable).")
@click.option("--output", "output_format", type=click.Choice(["text", "json"]),
              default="text", show_default=True,
              help="json: print Falco's `falco_load_results` document (as `falco -V FILE"
                   " -o json_output=true`) on stdout.")
def validate(rules: tuple[Path, ...], output_format: str) -> None:
    """Load rule files and report every error and warning (exit non-zero on any error)."""
    import json

    from runtime.engine.rules.errors import RuleLoadError
    from runtime.engine.rules.report import load_results, split_failure

    names = [str(p) for p in rules]
    try:
        ruleset = _load_ruleset(rules)
    except RuleLoadError as exc:
        errors, warnings = split_failure(exc)
        if output_format == "json":
            click.echo(json.dumps(load_results(names, errors, warnings), indent=2))
        else:
            for warning in warnings:
                click.echo(f"warning: {warning}", err=True)
            for error in errors:
                click.echo(f"rt-engine: error: {error}", err=True)
            if len(errors) > 1:  # one error stays one line
                click.echo(f"rt-engine: {len(errors)} errors, {len(warnings)} warnings",
                           err=True)
        sys.exit(exc.exit_code)
    except ToolError as exc:
        click.echo(f"rt-engine: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if output_format == "json":
        click.echo(json.dumps(load_results(names, [], ruleset.warnings), indent=2))
        return
    for warning in ruleset.warnings:
        click.echo(f"warning: {warning}", err=True)
    needed = _needed_event_types(ruleset)
    click.echo(
        f"{', '.join(str(p) for p in rules)}: ok, {len(ruleset)} enabled rules,"
        f" event types: {', '.join(sorted(needed)) if needed is not None else 'all'}"
    )


main.add_command(driver_commands)

if __name__ == "__main__":
    main()
