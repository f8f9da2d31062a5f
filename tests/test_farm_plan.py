"""The farm's pure parts, offline: shard plan, plan document, task index, report.

Real: plans resolved from the committed Debian catalog by the same code `matrix run`
uses, the option table's and the catalog's checks on the plan document. Stood in: the
repository's contents (the sets of missing jobs are made here) and the engine's task
states (records as the Swarm engine reports them).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from drivercore.errors import UsageError
from driverkit import KERNELS_DIR
from driverkit.catalog import load_catalog
from driverkit.clikit import catalog_plan
from driverkit.config import load_config
from driverkit.farm.plan import FarmPlan, farm_plan, load_plan
from driverkit.farm.run import farm_report
from driverkit.farm.swarm import Failure, ShardState
from driverkit.farm.task import shard_index
from driverkit.matrix import plan_missing
from driverkit.plan import BuildPlan
from driverkit.targets.base import Mirrors

MIRRORS = Mirrors(debian="http://deb.example/debian",
                  debian_security="http://deb.example/debian-security")
OPTIONS = {"repo": "https://repo.example/drivers", "public_key": "ed25519:AAAA",
           "driver_name": "rtcap", "build_kmod": True, "build_probe": True,
           "debian_mirror": MIRRORS.debian, "debian_security_mirror": MIRRORS.debian_security,
           "timeout": 900}


def _entries(count: int | None = None) -> list[tuple[object, BuildPlan]]:
    cfg = load_config({"base_from": "debootstrap"}, discovered_mirrors=MIRRORS)
    entries = load_catalog(KERNELS_DIR / "debian.json", MIRRORS)[:count]
    return [(e, catalog_plan(e, cfg)) for e in entries]


def _image(plan: BuildPlan) -> str:
    return "farm-" + plan.builder_image.split(":")[0].removeprefix("driverkit-builder-")


def _plan(count: int | None = None, present: frozenset[str] = frozenset(),
          per_task: int = 1) -> tuple[FarmPlan, list[tuple[object, BuildPlan]]]:
    pairs = _entries(count)
    missing = plan_missing([p for _, p in pairs], lambda v, a: present)
    entry_of = {p: e for e, p in pairs}
    return farm_plan(missing, entry_of, _image, OPTIONS, per_task), pairs  # type: ignore[arg-type]


def test_every_missing_kernel_is_in_exactly_one_shard_grouped_by_image() -> None:
    plan, pairs = _plan()
    assert len(pairs) > 20  # the committed catalog covers every Debian suite
    built = [k.kernelrelease for s in plan.shards for k in s.kernels]
    assert sorted(built) == sorted(str(p.kernel) for _, p in pairs)
    assert [s.index for s in plan.shards] == list(range(len(plan.shards)))
    groups = plan.groups()
    # An engine job runs one image: its shards are contiguous and cover the plan once.
    assert sum(g.count for g in groups) == len(plan.shards)
    assert len({g.image for g in groups}) == len(groups) > 1
    for group in groups:
        images = {plan.shards[i].image for i in range(group.offset, group.offset + group.count)}
        assert images == {group.image}
    # One shard per folder builds the CO-RE probe.
    assert [s.folder for s in plan.shards if s.core] == [plan.shards[0].folder]


def test_kernels_per_task_and_a_stable_order() -> None:
    one, _ = _plan(12)
    three, _ = _plan(12, per_task=3)
    assert len(one.shards) == 12
    assert all(len(s.kernels) <= 3 for s in three.shards) and len(three.shards) < 12
    again, _ = _plan(12, per_task=3)
    assert again.to_bytes() == three.to_bytes()
    with pytest.raises(UsageError, match="--kernels-per-task"):
        _plan(3, per_task=0)


def test_a_folder_missing_only_its_core_probe_gets_one_shard() -> None:
    pairs = _entries(4)
    listed = frozenset(n for _, p in pairs for n in p.artifact_names())
    plan, _ = _plan(4, present=listed)
    (shard,) = plan.shards
    assert shard.core and shard.names()[-1] == "CO-RE probe"
    # With no probes wanted, no folder wants a CO-RE probe either.
    no_probe = [dataclasses.replace(p, build_probe=False) for _, p in pairs]
    assert plan_missing(no_probe, lambda v, a: listed).empty


def test_the_plan_document_round_trips_and_refuses_what_is_not_a_plan() -> None:
    plan, _ = _plan(5)
    data = plan.to_bytes()
    assert load_plan(data, "plan.json") == plan
    doc = json.loads(data)
    bad_cases = {
        "not a farm plan": {**doc, "format": "x"},
        "not task options": {**doc, "options": {**doc["options"], "signing_key": "/k"}},
        "image": {**doc, "shards": [{**doc["shards"][0], "image": "Bad Image;rm -rf /"}]},
        "index must be 0": {**doc, "shards": [{**doc["shards"][0], "index": 3}]},
        "kernelrelease": {**doc, "shards": [{**doc["shards"][0], "kernels": [
            {"kernelrelease": "$(reboot)", "target": "debian"}]}]},
    }
    for expected, bad in bad_cases.items():
        with pytest.raises(UsageError, match=expected.split()[0]) as refused:
            load_plan(json.dumps(bad).encode(), "plan.json")
        assert "\n" not in str(refused.value)
    with pytest.raises(UsageError, match="larger than"):
        load_plan(b" " * (600 * 1024), "plan.json")
    with pytest.raises(UsageError, match="not in this plan"):
        plan.shard(len(plan.shards))


def test_a_task_finds_its_shard_in_either_engines_environment() -> None:
    node = "kmc9kgoxn6kouilacprqexe2q"
    assert shard_index({"DK_SHARD_OFFSET": "4", "JOB_COMPLETION_INDEX": "2"}) == 6
    assert shard_index({"DK_SHARD_OFFSET": "4", "DK_TASK_SLOT": "1", "DK_NODE_ID": node}) == 5
    # Swarm renders a job's slot 0 as the node id.
    assert shard_index({"DK_SHARD_OFFSET": "4", "DK_TASK_SLOT": node, "DK_NODE_ID": node}) == 4
    for env in ({"DK_TASK_SLOT": "x" * 25, "DK_NODE_ID": node}, {},
                {"DK_SHARD_OFFSET": "-1", "JOB_COMPLETION_INDEX": "0"}):
        with pytest.raises(UsageError):
            shard_index(env)


def test_the_report_comes_from_the_repository_and_names_a_failing_kernel_once() -> None:
    pairs = _entries(3)
    plans = [p for _, p in pairs]
    before = plan_missing(plans, lambda v, a: frozenset())
    plan = farm_plan(before, {p: e for e, p in pairs}, _image, OPTIONS)  # type: ignore[misc]
    broken = plans[1]
    left = frozenset(n for p in plans if p is not broken for n in p.artifact_names())
    after = plan_missing(plans, lambda v, a: left | {"rtcap_core.o"})
    shard_of = {k.kernelrelease: s.index for s in plan.shards for k in s.kernels}
    states = [ShardState(s.index, "complete", 1, 0, "") for s in plan.shards]
    bad = shard_of[str(broken.kernel)]
    states[bad] = ShardState(bad, "failed", 3, 1, "task: non-zero exit (1)")
    # Three attempts print three failure lines: the kernel is named once, last errors.
    failures = [Failure(bad, broken.artifact_stem(), (f"attempt {n}: error: x",))
                for n in range(3)]
    report = farm_report(plan, before, after, states, failures)
    assert report.built == 2 and not report.ok
    (line,) = report.failed
    assert line.startswith(broken.artifact_stem()) and "attempt 2: error: x" in line
    assert f"shard {bad}: failed after 3 attempts (task: non-zero exit (1))" in report.shards
    # A task that says it completed but whose kernel the repository lacks is a failure.
    quiet = farm_report(plan, before, after, [ShardState(s.index, "complete", 1, 0, "")
                                              for s in plan.shards], [])
    assert "not in the repository" in quiet.failed[0]


def test_farm_image_tags_follow_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    from driverkit.farm import images

    builder = "driverkit-builder-bookworm-gcc12:f921618b57c5"
    tag = images.farm_image_tag(builder, "amd64")
    assert tag.startswith("driverkit-farm-bookworm-gcc12:")
    dockerfile = images.render_farm_dockerfile(builder)
    assert f"FROM {builder}\n" in dockerfile and "FROM debian:trixie AS python" in dockerfile
    extra = tmp_path / "new.py"
    extra.write_text("x = 1\n")
    files = images._app_files()
    monkeypatch.setattr(images, "_app_files", lambda: {**files, "app/driverkit/new.py": extra})
    assert images.farm_image_tag(builder, "amd64") != tag
    with pytest.raises(UsageError):
        images.render_farm_dockerfile("builder; rm -rf /")


def test_swarm_runs_refuse_a_repository_other_nodes_cannot_reach(tmp_path: Path) -> None:
    from driverkit.publish.keys import generate_keys
    from tests.publish_helpers import driverkit

    keys = generate_keys(tmp_path / "k")
    done = driverkit("matrix", "run", "--engine", "swarm", "--catalog",
                     str(KERNELS_DIR / "debian.json"), "--repo", str(tmp_path / "repo"),
                     "--signing-key", str(keys.private_path))
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "farm tasks publish from their own nodes" in line and "WebDAV" in line


def test_progress_says_how_the_shards_stand() -> None:
    from driverkit.farm.run import progress_line

    states = [ShardState(0, "complete", 1, 0, ""), ShardState(1, "complete", 2, 0, ""),
              ShardState(2, "running", 1, None, ""), ShardState(3, "pending", 0, None, ""),
              ShardState(4, "failed", 3, 1, "task: non-zero exit (1)")]
    assert progress_line(states) == (
        "2 complete, 1 running, 1 waiting, 1 failed of 5 shards (2 retried)")
