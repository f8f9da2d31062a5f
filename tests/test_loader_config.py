"""Loader settings: the engine config file's `loader:` section, RT_ENGINE_LOADER_* variables
and flags, in that order of strength. Real: the parsers; nothing is stood in (the
environment is a plain dict handed to the function that reads os.environ in the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivercore.errors import UsageError
from drivercore.repoindex import generate_private_key, public_key_text
from runtime.engine.config import parse_config
from runtime.loader.config import LoaderConfig, loader_from_environment, loader_with_overrides


def test_section_environment_and_flags_in_order() -> None:
    cfg = parse_config({"loader": {"type": "kmod", "repos": "https://a", "timeout": 5}}, "cfg")
    assert (cfg.loader.type, cfg.loader.repos, cfg.loader.timeout) == ("kmod", ("https://a",), 5)
    env = {"RT_ENGINE_LOADER_TYPE": "probe", "RT_ENGINE_LOADER_REPOS": "https://b https://c",
           "RT_ENGINE_LOADER_RETRIES": "4", "RT_ENGINE_LOADER_STATE_DIR": "/s"}
    merged = loader_from_environment(cfg.loader, env)
    assert merged.type == "probe" and merged.repos == ("https://b", "https://c")
    assert (merged.retries, merged.state_dir, merged.timeout) == (4, Path("/s"), 5)
    flagged = loader_with_overrides(merged, type="core", repos=(), timeout=None)
    assert (flagged.type, flagged.repos) == ("core", ("https://b", "https://c"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"loader": {"tpye": "auto"}}, "did you mean 'type'"),
        ({"loader": {"type": "ebpf"}}, "unknown value 'ebpf'"),
        ({"loader": {"timeout": "fast"}}, "expected a number"),
        ({"loader": {"repos": []}}, "expected a repository URL"),
    ],
)
def test_bad_section_values_are_named(raw: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_config(raw, "cfg")


def test_bad_environment_values_are_named() -> None:
    with pytest.raises(UsageError, match="RT_ENGINE_LOADER_TIMEOUT: expected a number"):
        loader_from_environment(LoaderConfig(), {"RT_ENGINE_LOADER_TIMEOUT": "soon"})
    with pytest.raises(UsageError, match="RT_ENGINE_LOADER_TYPE: unknown value"):
        loader_from_environment(LoaderConfig(), {"RT_ENGINE_LOADER_TYPE": "kmd"})


def test_public_key_as_text_or_file(tmp_path: Path) -> None:
    key = generate_private_key().public_key()
    line = public_key_text(key)
    pub = tmp_path / "repo-signing.pub"
    pub.write_text(line + "\n")
    for given in (line, str(pub)):
        assert public_key_text(LoaderConfig(public_key=given).resolved_public_key()) == line
    with pytest.raises(UsageError, match=r"neither `ed25519:\.\.\.` nor a readable file"):
        LoaderConfig(public_key=str(tmp_path / "missing.pub")).resolved_public_key()
    with pytest.raises(UsageError, match="no repository public key"):
        LoaderConfig().resolved_public_key()
