"""The shape the two sides stand on: drivercore is shared, runtime needs no build side,
and every exit code comes from the one registry."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest

from drivercore.errors import ExitCode, ToolError

REPO = Path(__file__).resolve().parent.parent
# What only the build service needs; the host side must import none of it.
BUILD_ONLY = ("driverkit", "docker", "jinja2", "rich", "elftools", "boto3", "botocore")
# drivercore is the base of both sides: the standard library, plus signature checks.
CORE_THIRD_PARTY = ("cryptography", "yaml")


def _imported_roots(package: str) -> dict[str, set[str]]:
    """Top-level module names each file of `package` imports (at any depth in the file)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        roots: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = roots
    return found


@pytest.mark.parametrize("package", ["runtime", "drivercore"])
def test_host_side_imports_nothing_of_the_build_side(package: str) -> None:
    offenders = {
        file: sorted(roots & set(BUILD_ONLY))
        for file, roots in _imported_roots(package).items()
        if roots & set(BUILD_ONLY)
    }
    assert offenders == {}


def test_drivercore_stands_on_the_standard_library_only() -> None:
    allowed = set(sys.stdlib_module_names) | {"drivercore", *CORE_THIRD_PARTY}
    offenders = {
        file: sorted(roots - allowed)
        for file, roots in _imported_roots("drivercore").items()
        if roots - allowed
    }
    assert offenders == {}


def _without(modules: Iterable[str]) -> str:
    """Python source that makes `modules` unimportable in the interpreter running it, as on
    a host where they are not installed; it leaves `sys` imported."""
    return textwrap.dedent(
        f"""
        import importlib.abc, sys
        BLOCKED = {tuple(modules)!r}

        class Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Absent())
        """
    )


def test_runtime_runs_where_the_build_side_is_not_installed(tmp_path: Path) -> None:
    """Copy only drivercore/ and runtime/ into a fresh folder and run an isolated interpreter
    there, with the build side's third-party packages made unimportable: every runtime
    module imports and `rt-engine validate` loads the bundled and a fixture ruleset."""
    for package in ("drivercore", "runtime"):
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    script = _without(BUILD_ONLY) + textwrap.dedent(
        f"""
        import importlib, pkgutil
        sys.path.insert(0, {str(tmp_path)!r})
        import drivercore, runtime
        for package in (drivercore, runtime):
            assert package.__file__.startswith({str(tmp_path)!r}), package.__file__
            for mod in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                importlib.import_module(mod.name)
        from runtime.engine.cli import main
        sys.argv = ["rt-engine", "validate", *sys.argv[1:]]
        main()
        """
    )
    fixture = REPO / "tests" / "fixtures" / "rules" / "base.yaml"
    bundled = tmp_path / "runtime" / "engine" / "default_rules.yaml"
    for args in (["--rules", str(bundled)], ["--rules", str(fixture)]):
        done = subprocess.run(
            [sys.executable, "-I", "-c", script, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    # The same check is able to fail: a runtime module that reaches for the build side.
    (tmp_path / "runtime" / "reaches_build_side.py").write_text("import driverkit\n")
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert done.returncode != 0
    assert "No module named 'driverkit'" in done.stderr


def _all_error_classes() -> list[type[ToolError]]:
    for package in ("drivercore", "driverkit", "runtime"):
        root = importlib.import_module(package)
        for mod in pkgutil.walk_packages(root.__path__, package + "."):
            importlib.import_module(mod.name)
    seen: list[type[ToolError]] = []
    pending: list[type[ToolError]] = [ToolError]
    while pending:
        cls = pending.pop()
        seen.append(cls)
        pending.extend(cls.__subclasses__())
    return seen


def test_every_exit_code_comes_from_the_registry_and_has_one_owner() -> None:
    owners: dict[ExitCode, type[ToolError]] = {}
    for cls in _all_error_classes():
        assert isinstance(cls.exit_code, ExitCode), cls
        if "exit_code" not in vars(cls):
            continue
        code = cls.exit_code
        first = owners.setdefault(code, cls)
        # A class may restate its parent's code (a narrower kind of the same failure);
        # two unrelated classes may never share one.
        assert issubclass(cls, first) or issubclass(first, cls), (code, first, cls)
    assert set(owners) == set(ExitCode), set(ExitCode) - set(owners)


def test_no_exit_code_is_written_as_a_number() -> None:
    literal = re.compile(r"exit_code\s*(?::[^=]*)?=\s*\d")
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for package in ("drivercore", "driverkit", "runtime")
        for path in (REPO / package).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []


def test_driverkit_without_its_build_extra_says_how_to_install_it() -> None:
    """A host-side install lacks jinja2/docker: the driverkit script says so on one line."""
    script = _without(m for m in BUILD_ONLY if m != "driverkit") + textwrap.dedent(
        """
        from driverkit.entry import main
        sys.argv = ["driverkit", "build", "--kernel", "6.1.0-13-amd64", "--dry-run"]
        sys.exit(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "driverkit-py[build]" in done.stderr
