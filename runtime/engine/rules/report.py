"""Falco-style load results for `rt-engine validate`: every error and warning of the load,
as text lines or as Falco's `falco_load_results` JSON document (the shape `falco -V FILE
-o json_output=true` prints: name, successful, errors, warnings, each entry with code,
codedesc, message and context.locations[] of item_type/item_name/position)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from runtime.engine.rules.errors import RuleLoadError, RuleLoadErrors

_LOCATED = re.compile(r"^(?P<file>.*?):(?P<line>\d+):(?P<col>\d+): (?P<msg>.*)$", re.S)
_ITEM = re.compile(r"^(?P<kind>rule|macro|list|exception) '(?P<name>[^']*)'")


def _location(file: str, line: int, col: int, message: str, item: str) -> dict[str, object]:
    kind_match = _ITEM.match(message)
    return {
        "item_type": kind_match.group("kind") if kind_match else "",
        "item_name": kind_match.group("name") if kind_match else item,
        "position": {"name": file, "line": line, "column": col, "offset": 0},
    }


def _split(text: str) -> tuple[str, int, int, str]:
    m = _LOCATED.match(text)
    if m is None:
        return "", 0, 0, text
    return m.group("file"), int(m.group("line")), int(m.group("col")), m.group("msg")


def error_entry(err: RuleLoadError) -> dict[str, object]:
    file, line, col, message = _split(str(err))
    return {
        "code": "LOAD_ERR_COMPILE_CONDITION" if err.offset is not None else "LOAD_ERR_VALIDATE",
        "codedesc": "Error compiling condition" if err.offset is not None
        else "Error validating rule/macro/list/exception objects",
        "message": message,
        "context": {"locations": [_location(err.file or file, err.line or line,
                                            err.col or col, message, err.item)]},
    }


def warning_entry(text: str) -> dict[str, object]:
    file, line, col, message = _split(text)
    return {
        "code": "LOAD_UNKNOWN_ITEM" if "unknown" in message else "LOAD_UNUSED_ITEM"
        if "not used" in message else "LOAD_WARNING",
        "codedesc": "Warning while loading rules",
        "message": message,
        "context": {"locations": [_location(file, line, col, message, "")]},
    }


def load_results(files: Sequence[str], errors: Sequence[RuleLoadError],
                 warnings: Sequence[str]) -> dict[str, object]:
    """One `falco_load_results` entry per file, errors and warnings sorted to their file."""
    results: list[dict[str, object]] = []
    for name in files:
        errs = [error_entry(e) for e in errors if (e.file or _split(str(e))[0]) == name]
        warns = [warning_entry(w) for w in warnings if _split(w)[0] == name]
        results.append({"name": name, "successful": not errs, "errors": errs,
                        "warnings": warns})
    orphans = [error_entry(e) for e in errors
               if (e.file or _split(str(e))[0]) not in files]
    if orphans and results:
        errs_list = results[0]["errors"]
        assert isinstance(errs_list, list)
        errs_list.extend(orphans)
        results[0]["successful"] = False
    return {"falco_load_results": results}


def split_failure(err: RuleLoadError) -> tuple[list[RuleLoadError], list[str]]:
    if isinstance(err, RuleLoadErrors):
        return list(err.errors), list(err.warnings)
    return [err], []


__all__ = ["load_results", "split_failure"]
