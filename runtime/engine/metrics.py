"""Engine metrics: periodic JSON-lines snapshots and a Prometheus endpoint.

The event loop only bumps plain integers (`events`, `matches[rule]`); every derived figure
(rates, drop %, RSS, CPU) is computed when a snapshot is taken or Prometheus scrapes, so
measuring costs nothing per event.
"""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from runtime.engine.drops import total_stats

if TYPE_CHECKING:
    from runtime.engine.reorder import ReorderCounters


def _status_kib(key: str) -> int:
    # VmRSS and VmHWM come from the same kernel counters, so peak >= current always holds
    # (getrusage's ru_maxrss is accounted differently and can read below VmRSS).
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes() -> int:
    return _status_kib("VmRSS:")


def peak_rss_bytes() -> int:
    return _status_kib("VmHWM:")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_IMPORTED_AT = time.monotonic()


def process_uptime_s() -> float:
    """Seconds since this process started (the kernel's start time, so the interpreter's
    own start-up counts, as a user waiting for the engine sees it); the time since this
    module was imported when /proc is unreadable."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            # Field 22 (starttime, clock ticks after boot) counted after the `(comm)` field,
            # which may itself hold spaces and parentheses.
            started_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        ticks = os.sysconf("SC_CLK_TCK")
        return max(time.clock_gettime(time.CLOCK_BOOTTIME) - started_ticks / ticks, 0.0)
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED_AT


@dataclass
class DriverInfo:
    """Which driver the engine runs on and why: a constant of the run, in every snapshot
    and as an info metric, so a fleet can be grouped by what its nodes chose."""

    kind: str  # core, kmod or probe
    artifact: str  # its file name
    reason: str
    source: str  # hand-over, loader (repository URL or cache), or flag
    load_s: float | None = None  # opening + attaching the driver
    ready_s: float | None = None  # process start -> engine ready

    def labels(self) -> dict[str, str]:
        return {"kind": self.kind, "artifact": self.artifact, "reason": self.reason,
                "source": self.source}


@dataclass
class EngineCounters:
    """Written by the event loop only; read (racily but harmlessly) by reporters."""

    events: int = 0
    matches: dict[str, int] = field(default_factory=dict)
    alerts_filtered_priority: int = 0


class Metrics:
    def __init__(
        self,
        counters: EngineCounters,
        driver_stats: Callable[[], Mapping[int, Mapping[str, int]]],
        outputs_dropped: Callable[[], int],
        driver: DriverInfo | None = None,
        reorder: ReorderCounters | None = None,
    ) -> None:
        self.counters = counters
        self.driver = driver
        self.reorder = reorder
        self._driver_stats = driver_stats
        self._outputs_dropped = outputs_dropped
        self._last_time = time.monotonic()
        self._last_events = 0
        self._last_cpu = cpu_seconds()
        self._last_drops = 0
        self._last_n_evts = 0
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        """One JSON-ready record; rates cover the time since the previous snapshot."""
        with self._lock:
            now = time.monotonic()
            elapsed = max(now - self._last_time, 1e-9)
            per_cpu = {cpu: dict(c) for cpu, c in self._driver_stats().items()}
            totals = total_stats(per_cpu)
            events = self.counters.events
            cpu = cpu_seconds()
            d_evts = totals["n_evts"] - self._last_n_evts
            d_drops = totals["n_drops"] - self._last_drops
            record: dict[str, Any] = {
                "time": time.time(),
                "interval_s": round(elapsed, 3),
                "events_total": events,
                "events_per_s": round((events - self._last_events) / elapsed, 1),
                "driver": totals,
                "drops_total": totals["n_drops"],
                "drops_interval": d_drops,
                "drop_pct_interval": round(100 * d_drops / d_evts, 4) if d_evts > 0 else 0.0,
                "drop_pct_total": (
                    round(100 * totals["n_drops"] / totals["n_evts"], 4)
                    if totals["n_evts"]
                    else 0.0
                ),
                "per_cpu": {str(k): v for k, v in sorted(per_cpu.items())},
                "rule_matches": dict(self.counters.matches),
                "outputs_dropped": self._outputs_dropped(),
                "rss_bytes": rss_bytes(),
                "peak_rss_bytes": peak_rss_bytes(),
                "cpu_pct": round(100 * (cpu - self._last_cpu) / elapsed, 1),
            }
            if self.reorder is not None:
                record["events_out_of_order"] = self.reorder.out_of_order
                record["reorder"] = {
                    "window_ms": self.reorder.window_ms,
                    "held_peak": self.reorder.held_peak,
                    "out_of_order_max_ns": self.reorder.out_of_order_max_ns,
                    "forced_by_capacity": self.reorder.forced_by_capacity,
                }
            if self.driver is not None:
                record["driver_choice"] = self.driver.labels()
                record["driver_load_s"] = self.driver.load_s
                record["engine_ready_s"] = self.driver.ready_s
            self._last_time, self._last_events, self._last_cpu = now, events, cpu
            self._last_drops, self._last_n_evts = totals["n_drops"], totals["n_evts"]
            return record

    def write_snapshot(self, stream: IO[str]) -> None:
        stream.write(json.dumps(self.snapshot(), separators=(",", ":")) + "\n")
        stream.flush()


class _Collector:
    """Reads the live counters at scrape time; registered on a private registry."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Any]:
        m = self._m
        events = CounterMetricFamily("rtengine_events", "Events evaluated by the engine")
        events.add_metric([], m.counters.events)
        yield events
        matches = CounterMetricFamily("rtengine_rule_matches", "Alerts per rule", labels=["rule"])
        for rule, count in sorted(m.counters.matches.items()):
            matches.add_metric([rule], count)
        yield matches
        dropped = CounterMetricFamily(
            "rtengine_outputs_dropped", "Alerts lost because the output queue was full"
        )
        dropped.add_metric([], m._outputs_dropped())
        yield dropped
        if m.reorder is not None:
            late = CounterMetricFamily(
                "rtengine_events_out_of_order",
                "Events processed after an event with a later timestamp (they arrived"
                " later than the reorder window allowed)",
            )
            late.add_metric([], m.reorder.out_of_order)
            yield late
        per_cpu = m._driver_stats()
        driver = CounterMetricFamily(
            "rtengine_driver", "Driver per-CPU counters", labels=["cpu", "counter"]
        )
        for cpu, counters in sorted(per_cpu.items()):
            for name, value in sorted(counters.items()):
                driver.add_metric([str(cpu), name], value)
        yield driver
        totals = total_stats(per_cpu)
        drop_ratio = GaugeMetricFamily(
            "rtengine_drop_ratio", "Dropped / attempted driver events since start"
        )
        drop_ratio.add_metric([], totals["n_drops"] / totals["n_evts"] if totals["n_evts"] else 0)
        yield drop_ratio
        rss = GaugeMetricFamily("rtengine_rss_bytes", "Resident set size")
        rss.add_metric([], rss_bytes())
        yield rss
        cpu_time = CounterMetricFamily("rtengine_cpu_seconds", "User + system CPU time")
        cpu_time.add_metric([], cpu_seconds())
        yield cpu_time
        chosen = m.driver
        if chosen is not None:
            info = InfoMetricFamily("rtengine_driver", "The driver loaded, why, and from where")
            info.add_metric([], chosen.labels())
            yield info
            timings: tuple[tuple[str, float | None, str], ...] = (
                ("rtengine_driver_load_seconds", chosen.load_s,
                 "Time to open and attach the driver"),
                ("rtengine_ready_seconds", chosen.ready_s,
                 "Process start to engine ready (loader steps included)"),
            )
            for name, seconds, text in timings:
                if seconds is not None:
                    gauge = GaugeMetricFamily(name, text)
                    gauge.add_metric([], seconds)
                    yield gauge


class PrometheusEndpoint:
    def __init__(self, metrics: Metrics, *, port: int, addr: str = "127.0.0.1") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(metrics))
        try:
            server, thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:  # in use, not an address of this host, no permission
            from drivercore.errors import UsageError

            raise UsageError(
                f"--metrics-port/metrics.prometheus_port {addr}:{port}: cannot listen:"
                f" {exc.strerror or exc}; pick a free port or another prometheus_addr"
            ) from None
        self._server = server
        self._thread = thread
        self.port: int = server.server_address[1]  # the real one when port=0

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
