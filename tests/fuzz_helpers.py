"""Shared pieces of the fuzz suite (tests/test_fuzz_*.py): run a CLI on hostile input in a
child process under a memory and time limit, and check it failed the way every command
must fail: a non-zero exit, one line on stderr, no traceback.

Hypothesis runs derandomized (the same examples every run, so CI is reproducible); an
example it finds is kept as an `@example(...)` regression case in the test that found it.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings

REPO_ROOT = Path(__file__).resolve().parent.parent

# Examples per property; raise it for a long local run (FUZZ_EXAMPLES=2000).
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# For properties whose every example starts a child interpreter (~0.5-1 s each on this
# machine's 2 cores): a quarter of the examples keeps CI's test run within its budget,
# and FUZZ_EXAMPLES still scales them for a long local run.
FUZZ_CHILD = settings(FUZZ, max_examples=max(5, FUZZ_EXAMPLES // 4))

# The bound every surface must hold on hostile input.
MEMORY_LIMIT_MB = 768
TIME_LIMIT_S = 30.0


@dataclass(frozen=True)
class Outcome:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (f"{' '.join(self.argv)} -> exit {self.returncode}\n"
                f"--- stderr ---\n{self.stderr[-3000:]}\n--- stdout ---\n{self.stdout[-1000:]}")


def _limit_memory(mb: int) -> None:
    limit = mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_bounded(argv: Sequence[str], *, stdin: bytes | None = None,
                env: Mapping[str, str] | None = None, cwd: Path | None = None,
                timeout: float = TIME_LIMIT_S,
                memory_mb: int = MEMORY_LIMIT_MB) -> Outcome:
    """Run `argv` (a `python -m ...` list is typical) under RLIMIT_AS and a timeout.

    A timeout is a failed test, not an exception: the returned outcome says so."""
    full_env = dict(os.environ)
    full_env.pop("PYTHONWARNINGS", None)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(
            list(argv), input=stdin, capture_output=True, env=full_env,
            cwd=cwd or REPO_ROOT, timeout=timeout, check=False,
            preexec_fn=lambda: _limit_memory(memory_mb),
        )
    except subprocess.TimeoutExpired as exc:
        return Outcome(tuple(argv), -9, _text(exc.stdout), _text(exc.stderr)
                       + f"\n[fuzz] timed out after {timeout} s")
    return Outcome(tuple(argv), proc.returncode, _text(proc.stdout), _text(proc.stderr))


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", "replace")


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def assert_clean_failure(outcome: Outcome, *, codes: set[int] | None = None) -> str:
    """A refusal as every CLI here must give it; returns the one error line."""
    assert outcome.returncode > 0, f"expected a refusal\n{outcome.describe()}"
    if codes is not None:
        assert outcome.returncode in codes, outcome.describe()
    assert "Traceback" not in outcome.stderr, outcome.describe()
    assert "MemoryError" not in outcome.stderr, outcome.describe()
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line\n{outcome.describe()}"
    return lines[0]


def assert_no_crash(outcome: Outcome) -> None:
    """Accepted or refused cleanly: never a traceback, a kill or a time-out."""
    assert outcome.returncode >= 0, outcome.describe()
    assert "Traceback" not in outcome.stderr, outcome.describe()
    if outcome.returncode > 0:
        assert_clean_failure(outcome)
