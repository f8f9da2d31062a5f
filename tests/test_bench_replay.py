"""bench/bench_replay.py's comparison of Falco's rules with the default ruleset measures
each run in a child process (`--measure`, timed; `--count`, under callgrind): the child
must run the ruleset it is named, over the capture it is given, and report what that run
raised. The callgrind test needs valgrind (ci/setup.sh installs it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import require

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import bench_replay  # noqa: E402

EVENTS = 3000


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "mix.rtcap"
    bench_replay.build_capture(path, EVENTS, frame_bytes=32 * 1024)
    return path


@pytest.mark.parametrize("label", bench_replay.COMPARED)
def test_a_measuring_child_runs_the_named_ruleset(capture: Path, label: str,
                                                  tmp_path: Path) -> None:
    events, _, _, alerts = bench_replay.run_pipeline(
        capture, bench_replay.compared_rules(label, tmp_path))
    assert events >= EVENTS
    rate, child_alerts = bench_replay.measure_child(capture, label, outputs=True)
    assert rate > 0
    assert child_alerts == alerts
    # The mix trips rules of both rulesets (and Falco's raise more); no rules, none.
    assert (alerts == 0) == (label == "no rules")


def test_without_the_output_stage_a_child_counts_no_alerts(capture: Path) -> None:
    rate, alerts = bench_replay.measure_child(capture, "default", outputs=False)
    assert rate > 0 and alerts == -1


def test_a_failing_child_is_one_line_naming_the_ruleset(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"^bench_replay: measuring Falco failed: .+"):
        bench_replay.measure_child(tmp_path / "missing.rtcap", "Falco", outputs=True)


def test_a_counting_child_reports_its_run(capture: Path, tmp_path: Path) -> None:
    """`--count` (what callgrind runs) without callgrind: the events and alerts of an
    in-process run of the same ruleset; counting matches instead of formatting them
    changes no count."""
    _, _, _, alerts = bench_replay.run_pipeline(
        capture, bench_replay.compared_rules("Falco", tmp_path))
    for extra in ([], ["--no-alert-format"]):
        done = subprocess.run(
            [sys.executable, str(REPO / "bench/bench_replay.py"), "--count", "Falco",
             "--capture", str(capture), *extra],
            capture_output=True, text=True, check=True, timeout=120)
        events, child_alerts = (int(v) for v in done.stdout.split())
        assert events >= EVENTS and child_alerts == alerts


def test_callgrind_counts_formatting_alerts(capture: Path) -> None:
    """The instruction count (real callgrind) covers the loop: formatting alerts shows up
    in it, and the run saw every event."""
    require(shutil.which("valgrind") is not None, "valgrind not installed (ci/setup.sh)")
    with ThreadPoolExecutor(max_workers=2) as pool:
        formatted, counted = pool.map(
            lambda fmt: bench_replay.count_instructions(capture, "default", fmt),
            (True, False))
    assert formatted[1] == counted[1] >= EVENTS
    assert formatted[2] == counted[2] > 0
    assert counted[0] > 0
    # ~20k instructions per alert formatted (measured); at least a fifth of that.
    assert formatted[0] - counted[0] > 4000 * formatted[2]


def test_the_parity_bound_adds_falcos_formatting_to_the_default_matchers() -> None:
    """The bound is the default's total over (the default's loop without formatting +
    Falco's formatting): at parity when both format alike, below it when Falco's cost more,
    and never below the measured ratio when Falco's matchers cost more than the default's."""
    def counts(falco: tuple[float, float]) -> dict[tuple[str, bool], float]:
        return {("no rules", True): 100.0, ("default", True): 130.0,
                ("default", False): 120.0, ("Falco", True): falco[0],
                ("Falco", False): falco[1]}

    assert bench_replay.matcher_parity_bound(counts((170.0, 160.0))) == 1.0
    bound = bench_replay.matcher_parity_bound(counts((170.0, 140.0)))
    assert bound == 130.0 / 150.0
    assert bound > 130.0 / 170.0


def test_the_timed_verdict_refuses_a_host_slowed_run() -> None:
    """Falco's rules faster than the default ruleset with the output stage and slower
    without it cannot both be true (the stage only adds what alerts cost, and Falco's
    rules raise more): no verdict then, not a MET read off a slowed run."""
    def best(with_outputs: tuple[float, float], without: tuple[float, float]
             ) -> dict[bool, dict[str, float]]:
        return {True: {"no rules": 700.0, "default": with_outputs[0],
                       "Falco": with_outputs[1]},
                False: {"no rules": 710.0, "default": without[0], "Falco": without[1]}}

    assert bench_replay.falco_verdict(best((606.0, 492.0), (609.0, 493.0))) == "NOT MET"
    assert bench_replay.falco_verdict(best((500.0, 510.0), (520.0, 530.0))) == "MET"
    assert bench_replay.falco_verdict(best((367.0, 486.0), (593.0, 453.0))).startswith(
        "UNSETTLED")


def test_event_classes_fold_new_names_only() -> None:
    """The by-class breakdown: every /tmp/out.N one class (a path new to the matchers each
    time), a library's folder kept, an execve by its program, other types by type."""
    from runtime.events import Event

    def cls(evt_type: str, comm: str = "x", **params: object) -> str:
        return bench_replay.event_class(Event(
            ts=1, cpu=0, type=evt_type, syscall_nr=0, res=0, pid=1, tid=1, ppid=0, uid=0,
            gid=0, comm=comm, cgroup_id=0, params=params))

    assert cls("openat", name="/tmp/out.7") == cls("openat", name="/tmp/out.1234") \
        == "openat /tmp/out.#"
    assert cls("openat", name="/lib/x86_64-linux-gnu/libc.so.6") \
        == "openat /lib/x86_64-linux-gnu/libc.so.#"
    assert cls("execve", comm="grep") == "execve grep"
    assert cls("connect") == "connect"


def test_a_counting_child_counts_one_class_of_calls(capture: Path, tmp_path: Path) -> None:
    """`--count --class` (what --by-class runs under callgrind) without callgrind: the
    matcher ran once per event of the class in the capture, and the run raised what a
    whole run raises (only where the counting happens differs)."""
    classes = bench_replay.capture_classes(capture)
    assert sum(classes.values()) >= EVENTS and classes["openat /tmp/out.#"] > 1
    _, _, _, alerts = bench_replay.run_pipeline(
        capture, bench_replay.compared_rules("Falco", tmp_path))
    for name in ("openat /etc/shadow", "execve grep"):
        done = subprocess.run(
            [sys.executable, str(REPO / "bench/bench_replay.py"), "--count", "Falco",
             "--capture", str(capture), "--class", name],
            capture_output=True, text=True, check=True, timeout=120)
        calls, child_alerts = (int(v) for v in done.stdout.split())
        assert calls == classes[name] and child_alerts == alerts


def test_callgrind_counts_one_class_of_matcher_calls(capture: Path) -> None:
    """Real callgrind, one class: only that class's matcher calls are counted, so Falco's
    grep execve (exception lists with argument regexes) costs more per call than the
    default ruleset's."""
    require(shutil.which("valgrind") is not None, "valgrind not installed (ci/setup.sh)")
    classes = bench_replay.capture_classes(capture)
    with ThreadPoolExecutor(max_workers=2) as pool:
        falco, default = pool.map(
            lambda label: bench_replay.count_instructions(capture, label, True, "execve grep"),
            ("Falco", "default"))
    assert falco[1] == default[1] == classes["execve grep"]
    assert falco[0] > default[0] > 0
    # A whole loop over the capture costs far more than one class's matcher calls.
    assert falco[0] / falco[1] < 100_000
