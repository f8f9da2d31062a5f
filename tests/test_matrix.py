"""`driverkit matrix plan|run` and the GitHub workflow that uses the plan.

Real: the committed Debian catalog, plan resolution, the signed repository index (a
directory repository), the CLI, and for `matrix run` Docker builds against the real
Debian mirror. Stood in: in the plan tests, the published artifacts' bytes
(tests/publish_helpers.py); the workflow's GitHub runner (its plan step's script runs
here with bash, offline).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from driverkit import KERNELS_DIR
from driverkit.config import read_config_file
from driverkit.publish.keys import generate_keys
from tests.conftest import REPO_ROOT
from tests.publish_helpers import driverkit, fake_build_output

CATALOG = KERNELS_DIR / "debian.json"
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "drivers.yml"




def _catalog_size() -> int:
    return sum(len(v) for v in json.loads(CATALOG.read_text()).values())


def _fill_repo(plan_dir: Path, repo: Path, key: Path, tmp: Path) -> int:
    """Publish a stand-in build of every kernel the plan lists; returns how many."""
    kernels = []
    for config in sorted(plan_dir.glob("config/**/*.yaml")):
        doc = yaml.safe_load(config.read_text())
        stem = Path(next(iter(doc["output"].values()))).name.rsplit(".", 1)[0]
        _, target, release, version = stem.split("_")
        kernels.append((target, release, version))
    version_dirs = {c.parent.parent.name for c in plan_dir.glob("config/*/*/*.yaml")}
    for driver_version in sorted(version_dirs):
        out = tmp / f"out-{driver_version}"
        fake_build_output(out, kernels, driver_version=driver_version)
        done = driverkit("publish", "--from", str(out), "--repo", str(repo), "--signing-key",
                         str(key))
        assert done.returncode == 0, done.stderr
    return len(kernels)


def test_plan_lists_every_kernel_then_none(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path / "k")
    repo = tmp_path / "repo"
    plan = tmp_path / "plan"
    gh_output = tmp_path / "gh-output"
    args = ["matrix", "plan", "--catalog", str(CATALOG), "--repo", str(repo),
            "--public-key", keys.public_text, "--shards", "4", "--out", str(plan),
            "--github-output", str(gh_output)]
    first = driverkit(*args)
    assert first.returncode == 0, first.stderr
    size = _catalog_size()
    assert f"{size} kernel builds considered, {size} missing" in first.stdout
    matrix = json.loads((plan / "matrix.json").read_text())
    assert [s["shard"] for s in matrix["include"]] == [0, 1, 2, 3]
    listed = [c for s in matrix["include"] for c in s["configs"].split()]
    assert len(listed) == len(set(listed)) == size
    assert matrix["include"][0]["core"] is True
    assert max(s["kernels"] for s in matrix["include"]) - min(
        s["kernels"] for s in matrix["include"]) <= 1
    # Every config is a driverkit config our own `-c` reads.
    for config in listed:
        values = read_config_file(plan / config)
        assert values["target"] == "debian" and values["kernels"]
    lines = dict(line.split("=", 1) for line in gh_output.read_text().splitlines())
    assert json.loads(lines["matrix"]) == matrix and lines["empty"] == "false"
    # One sampled config resolves to the file names the plan promised.
    sample = plan / listed[0]
    dry = driverkit("build", "-c", str(sample), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    wanted = yaml.safe_load(sample.read_text())["output"]["module"].rsplit("/", 1)[1]
    assert wanted in dry.stdout
    assert _fill_repo(plan, repo, keys.private_path, tmp_path) == size
    gh_output.unlink()
    second = driverkit(*args)
    assert second.returncode == 0, second.stderr
    assert f"{size} kernel builds considered, 0 missing" in second.stdout
    assert json.loads((plan / "matrix.json").read_text()) == {"include": []}
    assert "empty=true" in gh_output.read_text()


def test_plan_covers_versions_and_arches_and_refuses_bad_ones(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path / "k")
    done = driverkit("matrix", "plan", "--catalog", str(CATALOG), "--repo",
                     str(tmp_path / "repo"), "--public-key", keys.public_text,
                     "--driver-version", "0.1.0", "--driver-version", "0.2.0+driver",
                     "--arch", "amd64", "--out", str(tmp_path / "plan"))
    assert done.returncode == 0, done.stderr
    size = _catalog_size()
    assert f"{2 * size} kernel builds considered, {2 * size} missing" in done.stdout
    assert "0.2.0+driver/x86_64" in done.stdout
    for bad in ("../../etc", "1.0/evil", ""):
        refused = driverkit("matrix", "plan", "--catalog", str(CATALOG), "--repo",
                            str(tmp_path / "repo"), "--public-key", keys.public_text,
                            "--driver-version", bad, "--out", str(tmp_path / "p2"))
        assert refused.returncode == 2, (bad, refused.stderr)
        assert refused.stderr.count("\n") == 1
    unsigned_by_us = generate_keys(tmp_path / "other").public_text
    fake_build_output(tmp_path / "out", [("debian", "6.1.1-1-amd64", "1")])
    assert driverkit("publish", "--from", str(tmp_path / "out"), "--repo",
                     str(tmp_path / "repo"), "--signing-key",
                     str(keys.private_path)).returncode == 0
    wrong_key = driverkit("matrix", "plan", "--catalog", str(CATALOG), "--repo",
                          str(tmp_path / "repo"), "--public-key", unsigned_by_us,
                          "--out", str(tmp_path / "p3"))
    assert wrong_key.returncode == 13 and "pinned key" in wrong_key.stderr


def test_workflow_plan_step_runs_offline(tmp_path: Path) -> None:
    """The shipped workflow's plan step, run as GitHub would run it, against a local
    repository: its outputs feed the build job's matrix keys."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    plan_job = workflow["jobs"]["plan"]
    step = next(s for s in plan_job["steps"] if s.get("id") == "plan")
    build_job = workflow["jobs"]["build"]
    assert build_job["needs"] == "plan"
    assert "fromJson(needs.plan.outputs.matrix)" in build_job["strategy"]["matrix"]
    keys = generate_keys(tmp_path / "k")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "driverkit"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m driverkit.entry \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    gh_output = tmp_path / "github_output"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIVERKIT_")}
    env.update(
        {k: str(v) for k, v in workflow["env"].items() if not str(v).startswith("${{")}
    )
    env.update(
        PATH=f"{bin_dir}:{env['PATH']}",
        DRIVERKIT_REPO=str(tmp_path / "repo"),
        DRIVERKIT_REPO_PUBLIC_KEY=keys.public_text,
        GITHUB_OUTPUT=str(gh_output),
        # The workflow's relative catalog path, from the checkout the step would run in.
        CATALOG=str(REPO_ROOT / workflow["env"]["CATALOG"]),
    )
    # A runner's checkout stands in for the step's working directory: the plan lands there.
    done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    outputs = dict(line.split("=", 1) for line in gh_output.read_text().splitlines())
    matrix = json.loads(outputs["matrix"])
    assert len(matrix["include"]) == int(workflow["env"]["SHARDS"])
    for entry in matrix["include"]:
        assert {"shard", "configs", "core"} <= set(entry)
        for config in entry["configs"].split():
            assert (tmp_path / "plan" / config).is_file()


@pytest.mark.docker
@pytest.mark.network
@pytest.mark.xdist_group("docker-build")
def test_matrix_run_builds_what_is_missing_once(tmp_path: Path, ci_cache: Path) -> None:
    """Real: Docker builds of the newest bookworm 6.1 kernel from the real mirror, the
    signed directory repository. A catalog kernel whose headers the mirror no longer
    serves fails alone, named on one line; the rest is published; a rerun does nothing."""
    from tests.build_helpers_real import bookworm_release, real_archive

    release = bookworm_release(ci_cache)
    headers = real_archive(ci_cache).find_headers(release)
    live = {"kernelrelease": release, "target": "debian",
            "kernelversion": f"#1 SMP PREEMPT_DYNAMIC Debian {headers.version}"}
    gone = {"kernelrelease": "6.1.0-9-amd64", "target": "debian",
            "kernelversion": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.27-1"}
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"Debian": [live, gone]}))
    keys = generate_keys(tmp_path / "k")
    repo = tmp_path / "repo"
    base = ["matrix", "run", "--repo", str(repo), "--signing-key", str(keys.private_path),
            "--output", str(tmp_path / "out"), "--base-from",
            os.environ.get("DK_BASE_FROM", "debootstrap"), "--cache-dir", str(ci_cache)]
    first = driverkit(*base, "--catalog", str(catalog), timeout=1200)
    assert first.returncode == 1, first.stderr
    failed = [line for line in first.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and "6.1.27-1-amd64" in failed[0], first.stderr
    assert "1 of 2 missing kernel builds failed" in first.stderr
    assert "published 3 artifacts" in first.stdout
    (folder,) = repo.glob("*/x86_64")
    index = json.loads((folder / "index.json").read_text())
    # falcoctl's Debian naming: the package version from `uname -v`, build number 1.
    stem = f"rtcap_debian_{headers.version}-amd64_1"
    assert sorted(index["artifacts"]) == sorted(
        [f"{stem}.ko", f"{stem}.o", "rtcap_core.o"]), sorted(index["artifacts"])
    catalog.write_text(json.dumps({"Debian": [live]}))
    second = driverkit(*base, "--catalog", str(catalog))
    assert second.returncode == 0, second.stderr
    assert "nothing to build" in second.stdout


@pytest.mark.qemu
@pytest.mark.docker
@pytest.mark.root
@pytest.mark.network
@pytest.mark.xdist_group("qemu-kernels")
def test_matrix_run_boot_verifies_before_publishing(tmp_path: Path, ci_cache: Path) -> None:
    """Real: build (Docker) -> boot verification of the module and probes in a QEMU guest
    of the same Debian kernel (ci.bootverify as the verify command) -> publish; the
    index records the kernel each artifact was proven on."""
    from ci.kernels import kernel_version, resolve

    release = resolve("6.1")
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"Debian": [
        {"kernelrelease": release, "target": "debian", "kernelversion": kernel_version(release)}
    ]}))
    keys = generate_keys(tmp_path / "k")
    repo = tmp_path / "repo"
    done = driverkit(
        "matrix", "run", "--catalog", str(catalog), "--repo", str(repo), "--signing-key",
        str(keys.private_path), "--output", str(tmp_path / "out"), "--base-from",
        os.environ.get("DK_BASE_FROM", "debootstrap"), "--cache-dir", str(ci_cache),
        "--verify-command", f"{sys.executable} -m ci.bootverify --sample --artifacts",
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (folder,) = repo.glob("*/x86_64")
    index = json.loads((folder / "index.json").read_text())["artifacts"]
    assert len(index) == 3
    for name, entry in index.items():
        assert entry["boot_verified"] == [release], name
