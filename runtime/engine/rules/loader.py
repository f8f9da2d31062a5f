"""Falco rule YAML: lists, macros, rules, overrides, exceptions; compiled into a Ruleset."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runtime.engine.rules.ruleset import Ruleset

# The Falco engine version whose rule-file features we implement (semver, as Falco >= 0.35).
ENGINE_VERSION = "0.43.0"


def load_rules(
    paths: Sequence[Path | str],
    *,
    extra_texts: Sequence[tuple[str, str]] = (),
) -> Ruleset:
    raise NotImplementedError
