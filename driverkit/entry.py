"""The `driverkit` console script: the build side's extra dependencies are optional (a host
that only runs the loader and rt-engine installs without them), so say which is missing and
how to add it instead of failing with an ImportError traceback."""

from __future__ import annotations

import sys

# Third-party packages only the build side needs (pyproject's `build` extra).
_BUILD_EXTRA = frozenset({"docker", "jinja2", "rich", "elftools", "boto3", "botocore"})


def main() -> int:
    # Commands import what they need when they run, so the check covers the whole call.
    try:
        from driverkit.cli import main as cli_main

        return cli_main()
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in _BUILD_EXTRA:
            raise
        print(
            f"driverkit: the build side needs the Python package {missing!r}; "
            "install the build extra: pip install 'driverkit-py[build]'",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
