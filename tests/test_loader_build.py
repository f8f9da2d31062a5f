"""`--allow-build`: when no repository has a driver for this kernel, the loader runs the build
side's `driverkit build --processor local` as a subprocess, then checks what it wrote.

Real, all of it: `rt-engine driver install` as a subprocess, a signed repository on
127.0.0.1 (Python's http.server) that publishes nothing, the PATH lookup, the installed
`driverkit` with its local processor on this host's toolchain (bookworm gcc-12, clang-14,
make, libelf), the newest bookworm 6.1 kernel's headers from the real Debian mirror (through
the shared cache, DRIVERKIT_CACHE_DIR), driverkit's manifest, the loader's check against it
and the JSON hand-over an engine container reads.

Stood in: the host root (a temp dir with Debian 12's os-release and an empty
`lib/modules/<rel>/build` as the headers marker; driverkit fetches its own headers) and
the kernel, which is not the running one: so nothing is loaded (--download-only).
A real driverkit never hands over a file that differs from its manifest (it rebuilds it),
so the loader's own check is tried on a real build's output with one byte changed.
The offline tests need no stand-in either: PATH without driverkit, or a host root without
the headers folder (driverkit never starts: it writes nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivercore.errors import ExitCode, UsageError
from drivercore.kernelrelease import normalize_arch
from drivercore.naming import repo_arch
from drivercore.repoindex import generate_private_key, public_key_text
from runtime.loader.build import BuildFallbackError, checked_build
from runtime.loader.config import (
    ENV_PREFIX,
    LoaderConfig,
    loader_from_environment,
    source_driver_version,
)
from runtime.loader.handover import read_handover
from runtime.loader.install import HANDOVER_FILE
from tests.build_helpers_real import bookworm_release, real_archive
from tests.loader_helpers import repo_server, write_host_root, write_repo

VERSION = "0.1.0+test"
ARCH = repo_arch(normalize_arch(os.uname().machine))
RELEASE, UNAME_V = "6.1.0-13-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1 (2023-09-29)"
REPO_ROOT = Path(__file__).resolve().parent.parent
# The installed console scripts of this interpreter (pip install -e '.[build,dev]').
BIN = Path(sys.executable).parent
DEBIAN_12 = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
    'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
    'HOME_URL="https://www.debian.org/"\n'
)
EXTENSION = {"probe": ".o", "kmod": ".ko"}
ENGINE_DRIVER = {"probe": "ebpf", "kmod": "kmod"}


def _clean_env(path: str, **extra: str) -> dict[str, str]:
    """This environment without loader or driverkit settings a developer may have set."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith((ENV_PREFIX, "DRIVERKIT_"))}
    return {**env, "PATH": path, **extra}


def _install(tmp_path: Path, *, headers: bool, path: str, command: str = "install",
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
        env = _clean_env(path, **{f"{ENV_PREFIX}ALLOW_BUILD": "true"})
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
    done = _install(tmp_path, headers=True, path=str(empty_bin), command=command)
    assert done.returncode == ExitCode.DRIVER, done.stderr
    assert "--allow-build: driverkit is not installed (pip install '.[build]' on this host)" \
        in _one_error_line(done)


@pytest.mark.parametrize("command", ["install", "run"])
def test_without_headers_one_line_names_the_folder_and_nothing_runs(
    tmp_path: Path, command: str
) -> None:
    assert (BIN / "driverkit").is_file(), f"driverkit is not installed in {BIN}"
    done = _install(tmp_path, headers=False, path=str(BIN), command=command)
    assert done.returncode == ExitCode.DRIVER, done.stderr
    line = _one_error_line(done)
    assert f"--allow-build: no kernel headers at {tmp_path}/host/lib/modules/{RELEASE}/build" \
        in line
    assert not (tmp_path / "state" / "build").exists()  # driverkit never ran


def test_allow_build_from_the_environment() -> None:
    base = LoaderConfig()
    assert loader_from_environment(base, {f"{ENV_PREFIX}ALLOW_BUILD": "1"}).allow_build
    assert not loader_from_environment(base, {f"{ENV_PREFIX}ALLOW_BUILD": "no"}).allow_build
    with pytest.raises(UsageError, match="expected true or false"):
        loader_from_environment(base, {f"{ENV_PREFIX}ALLOW_BUILD": "maybe"})


# --- Real local builds: the mirror's headers, this host's compilers. Marked network and
# slow, and in the docker-build xdist group so they never run beside the heavy builds.

@dataclass(frozen=True)
class RealInstall:
    kind: str
    release: str
    package_version: str
    driver_version: str
    dest: Path
    state: Path
    done: subprocess.CompletedProcess[str]
    seconds: float


@pytest.fixture(scope="module")
def bookworm(ci_cache: Path) -> tuple[str, str]:
    """The newest bookworm 6.1 release on the mirror and its Debian package version."""
    release = bookworm_release(ci_cache)
    return release, real_archive(ci_cache).find_headers(release).version


def _real_install(root: Path, ci_cache: Path, kind: str, release: str, package_version: str,
                  ) -> RealInstall:
    """`rt-engine driver install --allow-build --download-only` against a signed repository
    that has nothing, for a Debian 12 host running `release`."""
    driver_version = source_driver_version()
    assert driver_version is not None, "driver/VERSION is missing"
    assert (BIN / "rt-engine").is_file() and (BIN / "driverkit").is_file(), \
        f"rt-engine and driverkit are not installed in {BIN}"
    key = generate_private_key()
    host = write_host_root(root / "host", {
        "etc/os-release": DEBIAN_12,
        f"lib/modules/{release}/build/.marker": "",  # what a headers package leaves
    })
    dest, state = root / "dest", root / "state"
    with repo_server(root / "served") as served:
        write_repo(served.root, {}, key, driver_version, ARCH)  # signed, and lists nothing
        cmd = [str(BIN / "rt-engine"), "driver", "install", "--allow-build", "--download-only",
               "--dest", str(dest), "--type", kind, "--kernel-release", release,
               "--kernel-version", f"#1 SMP PREEMPT_DYNAMIC Debian {package_version}",
               "--host-root", str(host), "--repo", served.url,
               "--public-key", public_key_text(key.public_key()), "--state-dir", str(state),
               "--retries", "0", "--timeout", "10"]
        env = _clean_env(f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                         DRIVERKIT_CACHE_DIR=str(ci_cache))
        started = time.monotonic()
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900,
                              check=False, env=env)
        seconds = time.monotonic() - started
        assert any(r.endswith("/index.json") for r in served.requests), served.requests
    return RealInstall(kind, release, package_version, driver_version, dest, state, done,
                       seconds)


@pytest.fixture(scope="module", params=["probe", "kmod"])
def real_install(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 ci_cache: Path, bookworm: tuple[str, str]) -> RealInstall:
    kind = str(request.param)
    release, package_version = bookworm
    return _real_install(tmp_path_factory.mktemp(f"real-{kind}"), ci_cache, kind, release,
                         package_version)


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.xdist_group("docker-build")
def test_a_real_local_build_is_verified_and_handed_over(real_install: RealInstall) -> None:
    r = real_install
    done = r.done
    assert done.returncode == 0, done.stderr
    file = f"rtcap_debian_{r.package_version}-amd64_1{EXTENSION[r.kind]}"
    assert f"loader: build: no repository has a driver for {r.release}; building {r.kind} " \
        f"{file} with driverkit (--allow-build)" in done.stderr

    # driverkit's own output: built here, by the local processor, from the mirror's headers.
    out = r.state / "build" / r.driver_version / "amd64"
    manifest = json.loads((out / f"{Path(file).stem}.json").read_text())
    assert manifest["processor"] == "local"
    assert manifest["inputs"]["kernel_release"] == r.release
    assert manifest["inputs"]["kernel_version"].endswith(r.package_version)
    assert manifest["headers"], manifest  # the packages it unpacked
    assert all(p["url"].startswith(("http://", "https://")) for p in manifest["headers"])
    meta = manifest["artifacts"][file]
    built = out / file
    sha = hashlib.sha256(built.read_bytes()).hexdigest()
    assert meta["sha256"] == sha and meta["size"] == built.stat().st_size
    if r.kind == "kmod":
        assert meta["vermagic"].startswith(f"{r.release} SMP ") and meta["modinfo_name"] == "rtcap"
    else:
        assert meta["license"] == "GPL" and "rtcap_sys_enter" in meta["programs"]
    assert f"loader: build: {built}, sha256 {sha[:16]}... matches driverkit's manifest" \
        in done.stderr

    # The hand-over: the JSON names the artifact, whose sha256 matches the file beside it.
    handover = json.loads((r.dest / HANDOVER_FILE).read_text())
    assert handover["file"] == file and handover["kind"] == r.kind
    assert handover["kernel_release"] == r.release and handover["target"] == "debian"
    assert handover["driver_version"] == r.driver_version
    copied = r.dest / file
    assert handover["sha256"] == sha == hashlib.sha256(copied.read_bytes()).hexdigest()
    assert handover["size"] == copied.stat().st_size
    assert done.stdout.startswith(f"{r.kind} {file} sha256 {sha} from local build: {copied}")
    # ...and the engine's side of it accepts it.
    taken = read_handover(r.dest / HANDOVER_FILE, lambda _: None)
    assert taken.artifact == copied and taken.engine_driver == ENGINE_DRIVER[r.kind]
    print(f"{r.kind}: real install with a local build in {r.seconds:.1f} s")


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.xdist_group("docker-build")
def test_a_build_that_no_longer_matches_its_manifest_is_refused(
    real_install: RealInstall, tmp_path: Path
) -> None:
    """The loader's own check on driverkit's real output: one byte changed, same size."""
    assert real_install.done.returncode == 0, real_install.done.stderr
    out = tmp_path / "build"
    shutil.copytree(real_install.state / "build", out)
    file = f"rtcap_debian_{real_install.package_version}-amd64_1{EXTENSION[real_install.kind]}"
    artifact, entry = checked_build(out, real_install.driver_version, file)
    assert entry.sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest()
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(BuildFallbackError,
                       match="does not match the sha256 and size in its manifest; nothing loaded"):
        checked_build(out, real_install.driver_version, file)


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.xdist_group("docker-build")
def test_a_kernel_the_mirror_does_not_have_fails_with_driverkits_reason(
    tmp_path: Path, ci_cache: Path
) -> None:
    """driverkit's reason, not its closing `1 of 1 kernel builds failed`, is the one line."""
    r = _real_install(tmp_path, ci_cache, "probe", "6.1.0-999-amd64", "6.1.999-1")
    assert r.done.returncode == ExitCode.DRIVER, r.done.stderr
    line = _one_error_line(r.done)
    assert "--allow-build: driverkit build failed: rtcap_debian_6.1.999-1-amd64_1: " \
        "no package linux-headers-6.1.0-999-amd64 in Debian suites" in line, line
    assert len(line) < 500
    assert not (r.dest / HANDOVER_FILE).exists()
