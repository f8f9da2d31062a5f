"""`--allow-build`: when no repository has a driver for this kernel, the loader runs the build
side's `driverkit build --processor local` as a subprocess, then checks what it wrote.

Real: the loader CLI as a subprocess, a signed repository on 127.0.0.1 (publishing none of
the candidates), the PATH lookup. Stood in: the host root (a temp dir, with or without
`lib/modules/<rel>/build`), and `driverkit` itself, a small script on PATH: a real local
build needs the host's compilers and headers for the overridden kernel, which is the build
side's own tests' business; here what matters is the lookup, the prerequisite lines, the
command line the loader passes and the check of the manifest the build writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from drivercore.errors import ExitCode, UsageError
from drivercore.kernelrelease import normalize_arch
from drivercore.naming import repo_arch
from drivercore.repoindex import generate_private_key, public_key_text
from runtime.loader.config import ENV_PREFIX, LoaderConfig, loader_from_environment
from tests.loader_helpers import repo_server, write_host_root, write_repo

VERSION = "0.1.0+test"
ARCH = repo_arch(normalize_arch(os.uname().machine))
RELEASE, UNAME_V = "6.1.0-13-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1 (2023-09-29)"
PROBE = "rtcap_debian_6.1.55-1-amd64_1.o"
REPO_ROOT = Path(__file__).resolve().parent.parent
BUILT = b"\x7fELF built here" * 100

# A stand-in driverkit: records its arguments, then writes what `driverkit build` writes
# (`<output>/<version>/<arch>/` with the artifact and a manifest listing its sha256).
FAKE_DRIVERKIT = """#!{python}
import hashlib, json, sys
from pathlib import Path
args = sys.argv[1:]
Path({calls!r}).write_text(json.dumps(args))
out = Path(args[args.index("--output") + 1]) / args[args.index("--driver-version") + 1] / "amd64"
out.mkdir(parents=True, exist_ok=True)
data = {data!r}
(out / {file!r}).write_bytes(data[:{written}])
manifest = {{"artifacts": {{{file!r}: {{"sha256": hashlib.sha256(data).hexdigest(),
                                        "size": len(data)}}}}}}
(out / "stem.json").write_text(json.dumps(manifest))
"""


def _fake_driverkit(bin_dir: Path, calls: Path, *, truncate: bool = False) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "driverkit"
    script.write_text(FAKE_DRIVERKIT.format(
        python=sys.executable, calls=str(calls), data=BUILT, file=PROBE,
        written=len(BUILT) - 10 if truncate else len(BUILT)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def _install(tmp_path: Path, *, headers: bool, bin_dir: Path, command: str = "install",
             ) -> subprocess.CompletedProcess[str]:
    key = generate_private_key()
    files: dict[str, str | bytes | None] = {"etc/os-release": "ID=debian\n",
                                           "proc/modules": None}  # BTF, no modules
    if headers:
        files[f"lib/modules/{RELEASE}/build/Makefile"] = "# headers\n"
    host = write_host_root(tmp_path / "host", files)
    config = tmp_path / "engine.yaml"
    with repo_server(tmp_path / "served") as served:
        write_repo(served.root, {}, key, VERSION, ARCH)  # signed, and lists nothing
        config.write_text(
            f"loader:\n  repos: [{served.url}]\n  driver_version: '{VERSION}'\n"
            f"  host_root: {host}\n  state_dir: {tmp_path / 'state'}\n"
            f"  kernel_release: {RELEASE}\n  kernel_version: '{UNAME_V}'\n  retries: 0\n"
            f"  timeout: 5\n  public_key: '{public_key_text(key.public_key())}'\n"
        )
        args = (["driver", "install", "--allow-build"] if command == "install"
                else ["run", "--driver", "auto", "--duration", "1"])
        env = {**os.environ, "PATH": str(bin_dir), f"{ENV_PREFIX}ALLOW_BUILD": "true"}
        return subprocess.run(
            [sys.executable, "-m", "runtime.engine.cli", *args, "--config", str(config)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False, env=env,
        )


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("rt-engine: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    return errors[0]


@pytest.mark.parametrize("command", ["install", "run"])
def test_without_driverkit_one_line_says_so(tmp_path: Path, command: str) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    done = _install(tmp_path, headers=True, bin_dir=empty_bin, command=command)
    assert done.returncode == ExitCode.DRIVER, done.stderr
    assert "--allow-build: driverkit is not installed (pip install '.[build]' on this host)" \
        in _one_error_line(done)


@pytest.mark.parametrize("command", ["install", "run"])
def test_without_headers_one_line_names_the_folder_and_nothing_runs(
    tmp_path: Path, command: str
) -> None:
    calls = tmp_path / "calls.json"
    _fake_driverkit(tmp_path / "bin", calls)
    done = _install(tmp_path, headers=False, bin_dir=tmp_path / "bin", command=command)
    assert done.returncode == ExitCode.DRIVER, done.stderr
    line = _one_error_line(done)
    assert f"--allow-build: no kernel headers at {tmp_path}/host/lib/modules/{RELEASE}/build" \
        in line
    assert not calls.exists()  # driverkit never ran


def test_the_build_is_checked_against_its_manifest(tmp_path: Path) -> None:
    calls = tmp_path / "calls.json"
    _fake_driverkit(tmp_path / "bin", calls)
    done = _install(tmp_path, headers=True, bin_dir=tmp_path / "bin")
    assert done.returncode == 0, done.stderr
    args = json.loads(calls.read_text())
    assert args[:3] == ["build", "--processor", "local"]
    pairs = dict(zip(args[1::2], args[2::2], strict=False))
    assert pairs["--kernel"] == RELEASE and pairs["--kernel-version"] == UNAME_V
    assert pairs["--target"] == "debian" and pairs["--driver-version"] == VERSION
    assert "--probe" in args and "--no-kmod" in args  # auto builds the per-kernel probe
    sha = hashlib.sha256(BUILT).hexdigest()
    assert f"loader: build: no repository has a driver for {RELEASE}; building probe " \
        f"{PROBE} with driverkit (--allow-build)" in done.stderr
    assert f"sha256 {sha[:16]}... matches driverkit's manifest" in done.stderr
    assert done.stdout.startswith(f"probe {PROBE} sha256 {sha} from local build: ")


def test_a_build_that_does_not_match_its_manifest_is_refused(tmp_path: Path) -> None:
    _fake_driverkit(tmp_path / "bin", tmp_path / "calls.json", truncate=True)
    done = _install(tmp_path, headers=True, bin_dir=tmp_path / "bin")
    assert done.returncode == ExitCode.DRIVER
    assert "does not match the sha256 and size in its manifest; nothing loaded" \
        in _one_error_line(done)


def test_allow_build_from_the_environment() -> None:
    base = LoaderConfig()
    assert loader_from_environment(base, {f"{ENV_PREFIX}ALLOW_BUILD": "1"}).allow_build
    assert not loader_from_environment(base, {f"{ENV_PREFIX}ALLOW_BUILD": "no"}).allow_build
    with pytest.raises(UsageError, match="expected true or false"):
        loader_from_environment(base, {f"{ENV_PREFIX}ALLOW_BUILD": "maybe"})
