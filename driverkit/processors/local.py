"""Local processor: the same rendered script, run on this host.

Used where no container engine exists; the host must have the kernel's gcc, make,
clang and libbpf headers. The script runs in its own process group so a timeout or
Ctrl-C kills make and every compiler it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from driverkit.errors import BuildFailedError, BuildTimeoutError
from driverkit.plan import BuildPlan
from driverkit.processors.base import BuildJob, ProcessorResult, failure_message


class LocalProcessor:
    name = "local"

    def __init__(self, driver_dir: Path, make_jobs: int = 1):
        self.driver_dir = driver_dir
        self.make_jobs = make_jobs
        # Builds run in their own sessions (so a timeout kills the whole tree), which
        # also keeps Ctrl-C's SIGINT from reaching them: run_builds kills them here.
        self._live: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def cancel_all(self) -> int:
        with self._lock:
            live = list(self._live.values())
        for proc in live:
            _kill_group(proc)
        return len(live)

    def environment_ref(self, plan: BuildPlan) -> str:
        return "local"

    def run(self, job: BuildJob) -> ProcessorResult:
        root = job.work_dir / "dk"
        shutil.copytree(self.driver_dir, root / "driver", symlinks=True)
        (root / "build.sh").write_text(job.script)
        env = {**os.environ, "DK_ROOT": str(root), "DK_JOBS": str(self.make_jobs)}
        if job.headers is not None:
            env["DK_KERNELDIR"] = str(job.headers.kernel_dir)
        started = time.monotonic()
        proc = subprocess.Popen(
            ["/bin/sh", str(root / "build.sh")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        with self._lock:
            self._live[proc.pid] = proc
        try:
            out, _ = proc.communicate(timeout=job.timeout_s)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            raise BuildTimeoutError(
                f"build of {job.plan.artifact_stem()} ran past its {job.timeout_s:g} s "
                "timeout; killed"
            ) from exc
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            with self._lock:
                self._live.pop(proc.pid, None)
        logs = out.decode(errors="replace")
        if proc.returncode != 0:
            raise BuildFailedError(failure_message(job.plan, proc.returncode, logs))
        return ProcessorResult(root / "out", logs, "", "", time.monotonic() - started)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
