"""The whole `rt-engine` CLI on hostile input: random and hostile engine config YAML, and
hostile values for every flag of every subcommand (the loader's `driver ...` ones too).

Each run is a bounded child process; it may succeed or refuse, but never with a traceback,
a kill or a time-out, and a refusal is one `rt-engine: error:` line (or click's own usage
error for a value click rejects)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.fuzz_helpers import FUZZ, FUZZ_CHILD, FUZZ_EXAMPLES, Outcome, python_module, run_bounded
from tests.test_engine_replay import WORLD, write_capture

HOSTILE = [
    "", "-1", "0", "1e400", "nan", "inf", "-inf", "99999999999999999999999", "1" * 5000,
    "/", "/proc/self/mem", "/proc/rtcap/x", "../../../../etc/passwd", "x" * 5000,
    "\udcff\udcfe", "a\nb", "%s%n{0}", "http://[::1", "ed25519:!!!", "--help", "-",
    "auto", "core", "file:///etc/shadow",
]
# (command words, flags taking a value): what `rt-engine ... --help` lists.
RUN_FLAGS = ["--driver", "--probe", "--driver-file", "--rules", "--record", "--min-priority",
             "--config", "--buffer-bytes", "--duration", "--stats-interval", "--metrics-port"]
DRIVER_FLAGS = ["--config", "--type", "--driver-version", "--repo", "--public-key",
                "--host-root", "--state-dir", "--kernel-release", "--kernel-version",
                "--timeout", "--retries"]
SURFACES = [(("run",), f) for f in RUN_FLAGS] + [(("validate",), "--rules")] + [
    (("driver", cmd), f) for cmd in ("detect", "printenv") for f in DRIVER_FLAGS]

values = st.sampled_from(HOSTILE) | st.text(max_size=40).filter(lambda t: "\0" not in t)


def assert_handled(outcome: Outcome) -> None:
    assert outcome.returncode >= 0, outcome.describe()  # not killed, not timed out
    assert "Traceback" not in outcome.stderr, outcome.describe()
    if outcome.returncode > 0 and outcome.returncode != 130:
        ours = [ln for ln in outcome.stderr.splitlines() if ln.startswith("rt-engine: error:")]
        clicks = [ln for ln in outcome.stderr.splitlines() if ln.startswith("Error:")]
        assert len(ours) + len(clicks) == 1, outcome.describe()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    write_capture(folder / "c.rtcap", [WORLD])
    (folder / "state").mkdir()
    return folder


def _argv(work: Path, words: tuple[str, ...], flag: str, value: str) -> list[str]:
    if words == ("run",):
        # A replay: no driver is loaded whatever the other flags say.
        return ["run", "--replay", str(work / "c.rtcap"), flag, value]
    if words[0] == "driver":
        # No network: a repository that is a missing local folder, a private state dir.
        base = ["--repo", str(work / "no-repo"), "--state-dir", str(work / "state"),
                "--timeout", "0.1", "--retries", "0"]
        return [*words, *base, flag, value]
    return [*words, flag, value]


@pytest.mark.parametrize(("words", "flag"), SURFACES, ids=str)
@settings(FUZZ, max_examples=max(3, FUZZ_EXAMPLES // 8))
@given(value=values)
@example(value="/proc/rtcap/x")
@example(value="1" * 5000)
def test_hostile_flag_values(work: Path, words: tuple[str, ...], flag: str,
                             value: str) -> None:
    argv = _argv(work, words, flag, value)
    assert_handled(run_bounded(python_module("runtime.engine.cli", *argv)))


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["driver", "probe", "buffer_bytes", "rules_files", "priority",
                         "duration", "outputs", "webhook", "syscall_event_drops", "metrics",
                         "loader", "queue_size", "file", "threshold", "actions", "rate",
                         "prometheus_port", "url", "timeout", "record", "replay", "typo"])
        | st.text(max_size=6), inner, max_size=4),
    max_leaves=16)


def _yaml(doc: object) -> bytes:
    return yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogateescape")


@FUZZ_CHILD
@given(doc=yaml_values)
@example(doc={"duration": float("inf")})
@example(doc={"buffer_bytes": 10**30})
@example(doc={"metrics": {"prometheus_port": 70000}})
@example(doc={"outputs": {"file": "/proc/rtcap/alerts"}})
def test_random_engine_config(work: Path, doc: object) -> None:
    config = work / "random.yaml"
    config.write_bytes(_yaml(doc))
    argv = ["run", "--replay", str(work / "c.rtcap"), "--config", str(config)]
    assert_handled(run_bounded(python_module("runtime.engine.cli", *argv)))


HOSTILE_YAML = [
    b"a: &a [" + b"x," * 50 + b"]\nb: &b [" + b"*a," * 50 + b"]\nc: &c [" + b"*b," * 50
    + b"]\nd: [" + b"*c," * 50 + b"]\n",
    b"a: " + b"[" * 10000 + b"]" * 10000,
    b"a: &x [*x]\n",
    b"driver: core\ndriver: core\n",
    b"\xff\xfe\x00d\x00r",
    b"outputs: !!python/object/apply:os.system ['true']\n",
    b"driver: core\n---\ndriver: kmod\n",
    b"loader: {repos: [" + b"7," * 10000 + b"]}\n",
    b"? [a, b]\n: 1\n",
    b"duration: 0x" + b"f" * 5000 + b"\n",
]


@pytest.mark.parametrize("text", HOSTILE_YAML, ids=range(len(HOSTILE_YAML)))
@pytest.mark.parametrize("words", [("run",), ("driver", "detect")], ids=str)
def test_hostile_engine_config_yaml(work: Path, words: tuple[str, ...], text: bytes) -> None:
    config = work / "hostile.yaml"
    config.write_bytes(text)
    argv = (["run", "--replay", str(work / "c.rtcap")] if words == ("run",)
            else [*words, "--state-dir", str(work / "state")])
    outcome = run_bounded(python_module("runtime.engine.cli", *argv, "--config", str(config)))
    assert_handled(outcome)
    assert outcome.returncode != 0, outcome.describe()
