"""Metrics snapshots and the Prometheus endpoint, scraped over loopback."""

from __future__ import annotations

import json
import re

import requests

from runtime.engine.metrics import (
    DriverInfo,
    EngineCounters,
    Metrics,
    PrometheusEndpoint,
    process_uptime_s,
)


def _driver_stats() -> dict[int, dict[str, int]]:
    return {
        0: {"n_evts": 1000, "n_drops_buffer": 40, "n_drops_pf": 0, "n_drops_bug": 0},
        1: {"n_evts": 500, "n_drops_buffer": 10, "n_drops_pf": 0, "n_drops_bug": 0},
    }


def test_snapshot_figures() -> None:
    counters = EngineCounters()
    metrics = Metrics(counters, _driver_stats, lambda: 3)
    counters.events = 1450
    counters.matches["Sensitive file opened by untrusted program"] = 2
    snap = metrics.snapshot()
    json.dumps(snap)  # must be JSON-ready
    assert snap["events_total"] == 1450
    assert snap["events_per_s"] > 0
    assert snap["drops_total"] == 50
    assert snap["drop_pct_total"] == round(100 * 50 / 1500, 4)
    assert snap["per_cpu"]["1"]["n_drops_buffer"] == 10
    assert snap["rule_matches"] == {"Sensitive file opened by untrusted program": 2}
    assert snap["outputs_dropped"] == 3
    assert snap["rss_bytes"] > 1_000_000
    assert snap["peak_rss_bytes"] >= snap["rss_bytes"]
    assert snap["cpu_pct"] >= 0
    # The next snapshot's rates only cover what happened since this one.
    again = metrics.snapshot()
    assert again["events_per_s"] == 0
    assert again["drops_interval"] == 0


def test_prometheus_endpoint_over_loopback() -> None:
    counters = EngineCounters(events=77, matches={"Kernel module loaded": 4})
    metrics = Metrics(counters, _driver_stats, lambda: 5)
    endpoint = PrometheusEndpoint(metrics, port=0)
    try:
        text = requests.get(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=10).text
    finally:
        endpoint.close()
    assert re.search(r"^rtengine_events_total 77\.0$", text, re.M)
    assert re.search(
        r'^rtengine_rule_matches_total\{rule="Kernel module loaded"\} 4\.0$', text, re.M
    )
    assert re.search(r"^rtengine_outputs_dropped_total 5\.0$", text, re.M)
    assert re.search(
        r'^rtengine_driver_total\{counter="n_drops_buffer",cpu="0"\} 40\.0$', text, re.M
    )
    assert re.search(r"^rtengine_drop_ratio 0\.0333", text, re.M)
    assert re.search(r"^rtengine_rss_bytes \d", text, re.M)


def test_driver_choice_in_snapshots_and_prometheus_over_loopback() -> None:
    driver = DriverInfo("core", "rtcap_core.o", 'BTF "present"', "hand-over /x/rtcap-driver.json",
                        load_s=0.25)
    metrics = Metrics(EngineCounters(), _driver_stats, lambda: 0, driver=driver)
    snap = metrics.snapshot()
    assert snap["driver_choice"] == {"kind": "core", "artifact": "rtcap_core.o",
                                     "reason": 'BTF "present"',
                                     "source": "hand-over /x/rtcap-driver.json"}
    assert snap["driver_load_s"] == 0.25 and snap["engine_ready_s"] is None
    driver.ready_s = 0.5  # set once the engine is ready; a scrape after that shows it
    endpoint = PrometheusEndpoint(metrics, port=0)
    try:
        text = requests.get(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=10).text
    finally:
        endpoint.close()
    assert re.search(
        r'^rtengine_driver_info\{artifact="rtcap_core\.o",kind="core",'
        r'reason="BTF \\"present\\"",source="hand-over /x/rtcap-driver\.json"\} 1\.0$',
        text, re.M), text
    assert re.search(r"^rtengine_driver_load_seconds 0\.25$", text, re.M)
    assert re.search(r"^rtengine_ready_seconds 0\.5$", text, re.M)


def test_no_driver_info_without_a_driver() -> None:
    """A replay has no driver: no info metric, no choice in the snapshot."""
    metrics = Metrics(EngineCounters(), _driver_stats, lambda: 0)
    assert "driver_choice" not in metrics.snapshot()


def test_process_uptime_counts_from_the_process_start() -> None:
    # This test process started before this test ran (interpreter, imports, earlier tests).
    assert 0 < process_uptime_s() < 24 * 3600
