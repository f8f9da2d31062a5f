"""Run inside a runtime image build: each `name>=version` argument (pyproject's
`dependencies`) must be met by the distro package installed for it.

Stands alone (standard library only): the image has nothing else when this runs.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys


def _release(text: str) -> tuple[int, ...]:
    # Debian's builds carry plain release numbers; leading digits are all that compare.
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+", maxsplit=1)[0])[:3])


def main(requirements: list[str]) -> int:
    failures = []
    for requirement in requirements:
        name, _, minimum = requirement.partition(">=")
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            failures.append(f"{name}: not installed")
            continue
        if minimum and _release(installed) < _release(minimum):
            failures.append(f"{name}: the suite has {installed}, pyproject needs >={minimum}")
        else:
            print(f"{name} {installed} (needs >={minimum or 'any'})")
    for failure in failures:
        print(f"runtime image: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
