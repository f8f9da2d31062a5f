"""Kernels built from kernel.org sources (vanilla, minikube, bottlerocket, talos, flatcar)
need the kernel's .config: how it is given (--kernel-config FILE, driverkit's base64
kernelconfigdata), carried by the plan, and rendered into the build script."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from driverkit.config import load_config, resolve_plan
from driverkit.errors import UsageError
from driverkit.plan import BuildPlan
from driverkit.render import render_build_script
from driverkit.targets.base import Mirrors

DEBIAN = Mirrors(debian="http://mirror.invalid/debian")
CONFIG = b"CONFIG_MODULES=y\nCONFIG_LOCALVERSION=\"\"\n# CONFIG_DEBUG_INFO is not set\n"


def _plan(tmp_path: Path, target: str = "vanilla", **values: object) -> BuildPlan:
    cfg = load_config(values)
    return resolve_plan("6.1.158", cfg, Mirrors(), target=target)


def test_the_config_file_is_read_once_into_the_plan(tmp_path: Path) -> None:
    config = tmp_path / "config-6.1.158"
    config.write_bytes(CONFIG)
    plan = _plan(tmp_path, kernel_config=config)
    assert plan.from_sources and base64.b64decode(plan.kernel_config) == CONFIG
    # The same as driverkit's kernelconfigdata.
    same = _plan(tmp_path, kernel_config_data=base64.b64encode(CONFIG).decode())
    assert same.kernel_config == plan.kernel_config


def test_a_headers_target_carries_no_config(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_bytes(CONFIG)
    cfg = load_config({"kernel_config": config})
    plan = resolve_plan("6.1.0-57-amd64", cfg, DEBIAN, target="debian")
    assert not plan.from_sources and plan.kernel_config == ""


def test_the_rendered_script_restores_the_exact_config(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_bytes(CONFIG * 200)  # several heredoc lines
    script = render_build_script(_plan(tmp_path, kernel_config=config))
    body = script.split("<<'DK-KERNEL-CONFIG-END'\n", 1)[1].split("\nDK-KERNEL-CONFIG-END\n")[0]
    assert all(len(line) <= 76 for line in body.splitlines())
    decoded = subprocess.run(["base64", "-d"], input=body.encode(), capture_output=True,
                             check=True).stdout  # fmt: skip
    assert decoded == CONFIG * 200
    assert "modules_prepare" in script and "KBUILD_MODPOST_WARN=1" in script


def test_a_headers_build_script_prepares_nothing(tmp_path: Path) -> None:
    plan = resolve_plan("6.1.0-57-amd64", load_config({}), DEBIAN, target="debian")
    script = render_build_script(plan)
    assert "modules_prepare" not in script and "DK-KERNEL-CONFIG-END" not in script


@pytest.mark.parametrize("text", ["bm90IGJhc2U2NA==\nDK-KERNEL-CONFIG-END", "a b", "$(id)", "=="])
def test_kernelconfigdata_is_base64_or_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(UsageError, match="kernelconfigdata"):
        load_config({"kernel_config_data": text})


def test_a_file_that_is_no_config_is_one_line(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    with pytest.raises(UsageError, match=r"--kernel-config .*notes.txt: no CONFIG_ lines"):
        load_config({"kernel_config": other})
    with pytest.raises(UsageError, match="cannot read it"):
        load_config({"kernel_config": tmp_path / "missing"})
    both = tmp_path / "config"
    both.write_bytes(CONFIG)
    with pytest.raises(UsageError, match="give one"):
        load_config({"kernel_config": both,
                     "kernel_config_data": base64.b64encode(CONFIG).decode()})  # fmt: skip


def test_a_source_kernel_without_config_fails_before_any_download(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    with pytest.raises(UsageError) as info:
        plan.require_kernel_config()
    assert str(info.value) == (
        "kernel 6.1.158 (vanilla) is built from kernel.org sources, which need the kernel's "
        ".config: pass --kernel-config /boot/config-6.1.158 (from that host) or "
        "kernelconfigdata in the config file"
    )
