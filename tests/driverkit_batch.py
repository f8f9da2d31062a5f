"""Run a batch of `driverkit` command lines in one process, for the fuzz suite.

A child process per input would spend the test budget on interpreter start-up; this runs
many inputs through `driverkit.cli.main` in one child (the parent bounds its memory and
time with tests.fuzz_helpers.run_bounded) and reports, per input, the exit code and what
went to stderr. An exception escaping `main` is reported with its traceback, as the
console script would have printed it.

stdin: a JSON list of cases `{"argv": [...], "env": {...}, "files": {name: base64}}`;
`{dir}` in an argument is the case's own temporary directory, which holds its files.
stdout: a JSON list of `{"code": int, "stderr": str}`.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    from driverkit.cli import main

    with tempfile.TemporaryDirectory(prefix="dk-fuzz-") as tmp:
        for name, encoded in case.get("files", {}).items():
            (Path(tmp) / name).write_bytes(base64.b64decode(encoded))
        argv = [arg.replace("{dir}", tmp) for arg in case["argv"]]
        env = {key: value.replace("{dir}", tmp) for key, value in case.get("env", {}).items()}
        saved = dict(os.environ)
        stdout, stderr = io.StringIO(), io.StringIO()
        os.environ.update(env)
        previous = os.getcwd()
        os.chdir(tmp)  # whatever a case writes stays in its directory
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = main(argv)
        except BaseException:  # the point is to see anything that escapes
            code = -1
            stderr.write(traceback.format_exc())
        finally:
            os.chdir(previous)
            os.environ.clear()
            os.environ.update(saved)
    return {"code": code, "stderr": stderr.getvalue()}


def main() -> int:
    cases = json.loads(sys.stdin.buffer.read().decode("utf-8", "surrogatepass"))
    results = [run_case(case) for case in cases]
    sys.stdout.buffer.write(json.dumps(results).encode("utf-8", "surrogatepass"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
