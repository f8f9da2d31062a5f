"""The option table drives flags, YAML keys and env vars; unknown keys fail helpfully."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from driverkit.config import load_config
from driverkit.errors import UsageError
from driverkit.options import (
    BY_ENV,
    BY_NAME,
    BY_YAML_KEY,
    OPTIONS,
    BuildConfig,
    values_from_env,
    values_from_yaml,
)
from driverkit.targets.base import Mirrors


def test_every_option_has_unique_flag_key_and_env() -> None:
    # A flag names one option per command (`--driver-version` is one version for `build`,
    # a repeatable list for `matrix`); YAML keys and env vars are global, so unique.
    commands = {command for opt in OPTIONS for command in opt.commands}
    for command in commands:
        flags = [flag for opt in OPTIONS if command in opt.commands for flag in opt.flags]
        assert len(flags) == len(set(flags)), command
    assert len(BY_YAML_KEY) == len(OPTIONS)
    assert len(BY_ENV) == len(OPTIONS)


def test_driverkit_config_keys_are_understood() -> None:
    document = {
        "kernelrelease": "5.10.0-amzn2",
        "kernelversion": "1",
        "target": "amazonlinux2",
        "architecture": "amd64",
        "driverversion": "2.0.0",
        "output": {"module": "/tmp/x.ko", "probe": "/tmp/x.o"},
        "timeout": "60",
        "dryrun": True,
    }
    values = values_from_yaml(document, "cfg.yaml")
    assert values["kernels"] == ("5.10.0-amzn2",)
    assert values["kernel_version"] == "1"
    assert values["output_module"] == Path("/tmp/x.ko")
    assert values["output_probe"] == Path("/tmp/x.o")
    assert values["timeout"] == 60
    assert values["dry_run"] is True


def test_unknown_yaml_key_suggests_the_right_one() -> None:
    with pytest.raises(
        UsageError, match=r"unknown key 'kernelrelaese' \(did you mean 'kernelrelease'\?\)"
    ):
        values_from_yaml({"kernelrelaese": "5.10.0"}, "cfg.yaml")


def test_unknown_nested_key_is_reported_with_its_section() -> None:
    with pytest.raises(
        UsageError, match=r"unknown key 'output.modul' \(did you mean 'output.module'\?\)"
    ):
        values_from_yaml({"output": {"modul": "x"}}, "cfg.yaml")


def test_wrong_types_name_the_key() -> None:
    with pytest.raises(
        UsageError, match=r"cfg\.yaml: timeout: 'soon' is not accepted; use a whole number"
    ):
        values_from_yaml({"timeout": "soon"}, "cfg.yaml")
    with pytest.raises(
        UsageError, match=r"architecture: 'sparc' is not accepted; use one of amd64, arm64"
    ):
        values_from_yaml({"architecture": "sparc"}, "cfg.yaml")
    # A string option takes text only: a number or a list from a program is refused
    # rather than turned into text some other way than the file wrote it.
    with pytest.raises(UsageError, match=r"cfg\.yaml: drivername: 1 is not accepted"):
        values_from_yaml({"drivername": 1}, "cfg.yaml")


def test_env_vars_follow_the_table() -> None:
    values = values_from_env(
        {
            "DRIVERKIT_KERNELRELEASE": "6.1.0-56-amd64,5.10.0-30-amd64",
            "DRIVERKIT_JOBS": "2",
            "DRIVERKIT_DEBIAN_MIRROR": "http://mirror.invalid/debian",
            "PATH": "/bin",
        }
    )
    assert values == {
        "kernels": ("6.1.0-56-amd64", "5.10.0-30-amd64"),
        "jobs": 2,
        "debian_mirror": "http://mirror.invalid/debian",
    }


def test_unknown_env_var_suggests() -> None:
    with pytest.raises(
        UsageError, match=r"DRIVERKIT_KERNELRELASE.*did you mean 'DRIVERKIT_KERNELRELEASE'"
    ):
        values_from_env({"DRIVERKIT_KERNELRELASE": "5.10.0"})


def test_the_table_is_read_off_the_config_fields() -> None:
    """No second list: every option is a BuildConfig field, in field order, with the
    field's own default."""
    option_fields = [f.name for f in dataclasses.fields(BuildConfig) if f.name in BY_NAME]
    assert [opt.name for opt in OPTIONS] == option_fields
    assert {"jobs", "cache_dir", "base_from", "kernels", "loglevel"} <= set(option_fields)
    assert not {"mirrors", "driver_dir", "probe_spec"} & set(BY_NAME)  # resolved, not spelled
    plain = BuildConfig()
    for opt in OPTIONS:
        assert getattr(plain, opt.name) == opt.default, opt.name


def test_images_build_takes_the_same_builder_options_as_build() -> None:
    for_images = {opt.flags[0] for opt in OPTIONS if "images" in opt.commands}
    assert {
        "--kernel",
        "--target",
        "--builder-image",
        "--base-from",
        "--debian-mirror",
        "--cache-dir",
        "--catalog",
        "--loglevel",
    } <= for_images
    assert all("build" in opt.commands for opt in OPTIONS if "images" in opt.commands)


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    config = tmp_path / "dk.yaml"
    config.write_text("jobs: 3\ntimeout: 30\nbasefrom: debootstrap\n")
    found = Mirrors(debian="http://apt.invalid/debian")
    cfg = load_config(
        {"jobs": 4},
        config,
        {"DRIVERKIT_JOBS": "2", "DRIVERKIT_TIMEOUT": "20"},
        discovered_mirrors=found,
    )
    assert (cfg.jobs, cfg.timeout, cfg.base_from, cfg.arch) == (4, 20, "debootstrap", "amd64")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.jobs = 5  # type: ignore[misc]
