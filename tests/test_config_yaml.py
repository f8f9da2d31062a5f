"""A driverkit config YAML is read as text and converted per option (issue #12).

YAML 1.1 would turn `driverversion: 0.10` into 0.1 (another output folder), `010` into 8,
`1:30` into 90; duplicate keys would silently keep the last one; a 480-byte alias bomb
would take seconds and gigabytes. The config reader composes through drivercore.yamlsafe
with text scalars and bounds, so each of these is the text as written or one error line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from driverkit.config import CONFIG_MAX_BYTES, load_config, read_config_file
from driverkit.errors import InvalidKernelReleaseError, UsageError
from driverkit.targets.base import Mirrors
from tests.fuzz_helpers import assert_clean_failure, python_module, run_bounded

MIRRORS = Mirrors(debian="http://mirror.invalid/debian")


def _read(tmp_path: Path, text: str | bytes) -> dict[str, object]:
    path = tmp_path / "dk.yaml"
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return read_config_file(path)


def _refused(tmp_path: Path, text: str | bytes, match: str) -> str:
    with pytest.raises(UsageError, match=match) as refused:
        _read(tmp_path, text)
    message = str(refused.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def test_string_options_take_the_text_as_written(tmp_path: Path) -> None:
    values = _read(
        tmp_path,
        "driverversion: 0.10\ngccversion: 4.10\nkernelversion: 010\ndrivername: 0x1F\n"
        "kernelrelease: 6.1.0-13-amd64\n",
    )
    assert values["driver_version"] == "0.10"
    assert values["gcc_version"] == "4.10"
    assert values["kernel_version"] == "010"
    assert values["driver_name"] == "0x1F"
    assert values["kernels"] == ("6.1.0-13-amd64",)


def test_a_sexagesimal_kernel_version_is_refused_not_turned_into_90(tmp_path: Path) -> None:
    with pytest.raises(InvalidKernelReleaseError, match=r"kernelversion: '1:30' is not"):
        _read(tmp_path, "kernelversion: 1:30\n")


@pytest.mark.parametrize("jobs", ["1.9", ".inf", "-1", "0", "1e3", "010", "0x10", "257", "9" * 5000,
                                  "true", "'2 '"])
def test_int_options_take_plain_decimal_digits_in_range(tmp_path: Path, jobs: str) -> None:
    message = _refused(tmp_path, f"jobs: {jobs}\n", r"jobs: .* is not accepted")
    assert "use a whole number from 1 to 256 (decimal digits)" in message


def test_int_and_bool_options_convert_their_text(tmp_path: Path) -> None:
    values = _read(tmp_path, "jobs: 12\ntimeout: 600\ndryrun: yes\nkmod: off\nprobe: True\n")
    assert values == {"jobs": 12, "timeout": 600, "dry_run": True, "build_kmod": False,
                      "build_probe": True}
    _refused(tmp_path, "dryrun: maybe\n", r"dryrun: 'maybe' is not accepted; use true or false")


def test_lists_stay_lists_and_sections_nest(tmp_path: Path) -> None:
    values = _read(
        tmp_path,
        "kernelrelease: [6.1.0-13-amd64, 5.10.0-30-amd64]\n"
        "kernelurls:\n  - http://mirror.invalid/debian/pool/a_1+b2_amd64.deb\n"
        "output:\n  module: out/x.ko\n  probe: out/x.o\n",
    )
    assert values["kernels"] == ("6.1.0-13-amd64", "5.10.0-30-amd64")
    assert values["kernel_urls"] == ("http://mirror.invalid/debian/pool/a_1+b2_amd64.deb",)
    assert values["output_module"] == Path("out/x.ko")
    _refused(tmp_path, "drivername: [a, b]\n", r"drivername: a list is not accepted")
    _refused(tmp_path, "kernelurls: [[x]]\n", r"kernelurls: a list is not accepted")


def test_a_key_without_a_value_is_unset(tmp_path: Path) -> None:
    assert _read(tmp_path, "drivername:\ntarget: ~\n") == {}
    cfg = load_config({}, tmp_path / "dk.yaml", {}, discovered_mirrors=MIRRORS)
    assert cfg.driver_name == "rtcap"


def test_duplicate_keys_are_an_error_naming_both_lines(tmp_path: Path) -> None:
    _refused(tmp_path, "jobs: 1\ntarget: debian\njobs: 2\n",
             r"refused at line 3, column 1: duplicate key 'jobs' \(first at 1:1\)")


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb = "\n".join([*lines, "drivername: *a8"]) + "\n"
    assert len(bomb) < 500
    message = _refused(tmp_path, bomb, r"aliases expand to more than \d+ nodes")
    assert "lol" not in message  # the value is never printed
    # Through the command line, under the fuzz suite's memory and time bound.
    config = tmp_path / "bomb.yaml"
    config.write_text(bomb)
    outcome = run_bounded(python_module("driverkit.entry", "build", "--dry-run", "--kernel",
                                        "6.1.0-13-amd64", "-c", str(config)), stdin=b"")
    line = assert_clean_failure(outcome, codes={UsageError.exit_code})
    assert "aliases expand" in line


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"drivername: \xff\xfe\n", r"refused: not UTF-8 \(invalid byte at offset 12\)"),
        ("a: [" * 100 + "]" * 100 + "\n", r"nested deeper than"),
        ("a: &x [*x]\n", r"recursive alias|not valid YAML"),
        ("---\njobs: 1\n---\njobs: 2\n", r"more than one YAML document"),
        ("- jobs\n", r"a config file must be a mapping"),
        ("jobs: [1\n", r"not valid YAML at line 2"),
        ("? [a]\n: b\n", r"not valid YAML|unknown key"),
        ("drivername: !!python/object:os.system x\n", r"not valid YAML"),
        ("x" * (CONFIG_MAX_BYTES + 1), r"larger than"),
    ],
)
def test_hostile_documents_are_one_line_errors(tmp_path: Path, text: str | bytes,
                                               match: str) -> None:
    _refused(tmp_path, text, match)


def test_matrix_configs_read_back_as_written(tmp_path: Path) -> None:
    # `matrix plan` writes driverkit configs with yaml.safe_dump; a version such as 0.10
    # must come back as "0.10", not as the float it looks like.
    written = {"driverversion": "0.10", "kernelversion": "010", "drivername": "rtcap",
               "kernelrelease": "6.1.0-13-amd64", "target": "debian"}
    values = _read(tmp_path, yaml.safe_dump(written))
    assert (values["driver_version"], values["kernel_version"]) == ("0.10", "010")


def test_environment_values_are_held_to_the_same_forms() -> None:
    with pytest.raises(UsageError, match=r"environment: DRIVERKIT_JOBS: ' 2' is not accepted"):
        load_config({}, None, {"DRIVERKIT_JOBS": " 2"}, discovered_mirrors=MIRRORS)
    with pytest.raises(UsageError, match=r"environment: DRIVERKIT_DRIVERVERSION: '/etc'"):
        load_config({}, None, {"DRIVERKIT_DRIVERVERSION": "/etc"}, discovered_mirrors=MIRRORS)
    # An empty variable is an unset one.
    cfg = load_config({}, None, {"DRIVERKIT_TARGET": ""}, discovered_mirrors=MIRRORS)
    assert cfg.target is None
