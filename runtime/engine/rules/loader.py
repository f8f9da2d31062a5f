"""Falco rule YAML: lists, macros, rules, overrides, exceptions; compiled into a Ruleset.

Files are read in order and their items applied in order, as Falco does: a later item with
`override:` (or the legacy `append: true`) changes an item defined before it, in the same
file or an earlier one; redefining a name replaces it. Everything is compiled once all files
are read, so macros and lists may be defined after the rules that use them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from drivercore import yamlsafe
from runtime.engine.fields import UnknownFieldError
from runtime.engine.rules.ast import (
    And,
    Check,
    Expr,
    FieldRef,
    ListValue,
    MacroRef,
    Not,
    Or,
    Value,
)
from runtime.engine.rules.compiler import (
    CompileError,
    Expander,
    MacroDef,
    compile_condition,
    event_types,
    validate_condition,
)
from runtime.engine.rules.errors import RuleLoadError, RuleLoadErrors
from runtime.engine.rules.lexer import (
    ALL_OPS,
    FIELD_NAME,
    LIST_OPS,
    ConditionSyntaxError,
    Scanner,
)
from runtime.engine.rules.limits import (
    MAX_LIST_ITEMS,
    MAX_MACRO_DEPTH,
    ExpandedSize,
    LimitExceeded,
)
from runtime.engine.rules.output import OutputError, compile_output
from runtime.engine.rules.parser import parse_condition
from runtime.engine.rules.priority import Priority
from runtime.engine.rules.ruleset import CompiledRule, Ruleset

# The Falco engine version whose rule-file language we implement (semver, as Falco >= 0.35;
# the old integer versions N mean 0.N.0). 0.57.0 is what the vendored falcosecurity/rules
# files require; the language features it covers and we implement: list/macro/rule items
# with `append` and `override` (append/replace per key), rule `exceptions` (fields/comps/
# values, tuple and single-field forms), `enabled`-only overrides, `skip-if-unknown-filter`,
# `warn_evttypes`, `required_plugin_versions` with `alternatives`, semver versions and the
# condition operators listed in lexer.ALL_OPS. Fields are the engine's own (fields.py).
ENGINE_VERSION = "0.57.0"
# Plugins whose fields this engine provides built in, with the plugin version whose field
# set we implement. Falco with the syscall source plus the container plugin is the model:
# `container.*`/`k8s.*` fields come from runtime/engine/fields_container.py.
BUILTIN_PLUGIN_VERSIONS: dict[str, tuple[int, int, int]] = {"container": (0, 4, 0)}
SUPPORTED_SOURCES = frozenset({"syscall"})

_RULE_APPEND_KEYS = frozenset({"condition", "output", "desc", "tags", "exceptions"})
_RULE_REPLACE_KEYS = frozenset({
    "condition", "output", "desc", "priority", "tags", "exceptions", "enabled",
    "warn_evttypes", "skip-if-unknown-filter",
})
_RULE_KEYS = frozenset({
    "rule", "condition", "output", "desc", "priority", "tags", "exceptions", "enabled",
    "source", "append", "override", "warn_evttypes", "skip-if-unknown-filter", "capture",
    "capture_duration",
})
_VERSION_RE = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?$")
_FIELD_WITH_ARG = re.compile(r"^(" + FIELD_NAME.pattern + r")(?:\[([^\]]+)\])?$")


class _RulesYamlLoader(yaml.SafeLoader):
    """SafeLoader where a bare `=` is the string "=" (YAML 1.1 reserves it as the "value"
    tag, but Falco exception `comps: [=, ...]` rely on it being a plain string)."""


def _construct_equals(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(node.value)


_RulesYamlLoader.add_constructor("tag:yaml.org,2002:value", _construct_equals)


# ---- positions ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Pos:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class _Scalar:
    """A YAML scalar's text with what is needed to map an offset back to line:col."""

    text: str
    pos: _Pos
    style: str | None
    end_line: int  # 1-based
    source_lines: tuple[str, ...]

    def locate(self, offset: int) -> _Pos:
        start_line = self.pos.line - 1
        segments: list[tuple[int, int, str]] = []  # (0-based line, 0-based col, content)
        if self.style in ("|", ">"):
            # A block scalar's end mark sits on the line after its last content line.
            body = self.source_lines[start_line + 1:self.end_line - 1]
            indents = [len(s) - len(s.lstrip(" ")) for s in body if s.strip()]
            indent = min(indents) if indents else 0
            for i, line in enumerate(body, start=start_line + 1):
                segments.append((i, indent, line[indent:]))
        else:
            first_col = self.pos.col - 1 + (1 if self.style in ("'", '"') else 0)
            last = min(self.end_line, len(self.source_lines))
            for i in range(start_line, last):
                line = self.source_lines[i]
                if i == start_line:
                    segments.append((i, first_col, line[first_col:]))
                else:
                    stripped = line.lstrip()
                    segments.append((i, len(line) - len(stripped), stripped))
        remaining = offset
        for line_no, col, content in segments:
            if remaining <= len(content):
                return _Pos(self.pos.file, line_no + 1, col + remaining + 1)
            remaining -= len(content) + 1
        return self.pos


@dataclass(slots=True)
class _CondText:
    """A condition possibly built from several appended pieces (joined by a space)."""

    parts: list[_Scalar]

    @property
    def text(self) -> str:
        return " ".join(p.text for p in self.parts)

    def append(self, piece: _Scalar) -> None:
        self.parts.append(piece)

    def locate(self, offset: int) -> tuple[_Pos, int]:
        start = 0
        for part in self.parts:
            if offset <= start + len(part.text):
                return part.locate(offset - start), offset - start
            start += len(part.text) + 1
        last = self.parts[-1]
        return last.pos, offset - start


def _snippet(text: str, offset: int) -> str:
    piece = " ".join(text[offset:offset + 40].split())
    return piece or "end of condition"


# ---- items --------------------------------------------------------------------------------

@dataclass(slots=True)
class _ListItem:
    name: str
    items: list[str]
    pos: _Pos


@dataclass(slots=True)
class _MacroItem:
    name: str
    cond: _CondText
    pos: _Pos


@dataclass(slots=True)
class _ExceptionItem:
    name: str
    fields: list[str] | str | None
    comps: list[str] | str | None
    values: list[object]
    pos: _Pos


@dataclass(slots=True)
class _RuleItem:
    name: str
    pos: _Pos
    cond: _CondText
    output: _Scalar
    desc: str
    priority: Priority
    tags: list[str] = field(default_factory=list)
    enabled: bool = True
    source: str = "syscall"
    exceptions: list[_ExceptionItem] = field(default_factory=list)
    skip_unknown: bool = False
    warn_evttypes: bool = True


class _ItemView:
    """One YAML mapping item: typed access to its keys with positions for errors."""

    def __init__(self, node: yaml.MappingNode, file: str, lines: tuple[str, ...],
                 constructor: yaml.SafeLoader) -> None:
        self.file = file
        self.lines = lines
        self.nodes: dict[str, yaml.Node] = {}
        self.values: dict[str, object] = {}
        self.pos = _Pos(file, node.start_mark.line + 1, node.start_mark.column + 1)
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise RuleLoadError(
                    f"{self._pos_of(key_node)}: item keys must be strings, got {key!r}",
                    file=file)
            self.nodes[key] = value_node
            if key in _TYPED_KEYS:
                self.values[key] = constructor.construct_object(value_node, deep=True)
            else:
                self.values[key] = _raw(value_node)
        self.kind = ""
        self.name = ""

    def _pos_of(self, node: yaml.Node) -> _Pos:
        return _Pos(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def where(self, key: str | None = None) -> _Pos:
        node = self.nodes.get(key) if key else None
        return self._pos_of(node) if node is not None else self.pos

    def error(self, message: str, key: str | None = None) -> RuleLoadError:
        pos = self.where(key)
        what = f"{self.kind} '{self.name}'" if self.name else self.kind
        return RuleLoadError(f"{pos}: {what}: {message}", file=pos.file, item=self.name,
                             line=pos.line, col=pos.col)

    def has(self, key: str) -> bool:
        return key in self.values

    def string(self, key: str, *, required: bool = False, default: str = "") -> str:
        if key not in self.values:
            if required:
                raise self.error(f"missing required key '{key}'")
            return default
        value = self.values[key]
        if not isinstance(value, str):
            raise self.error(f"'{key}' must be a string, got {_type_name(value)}", key)
        return value

    def scalar(self, key: str) -> _Scalar:
        text = self.string(key, required=True)
        node = self.nodes[key]
        assert isinstance(node, yaml.ScalarNode)
        return _Scalar(text, self._pos_of(node), node.style, node.end_mark.line + 1, self.lines)

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.values:
            return default
        value = self.values[key]
        if not isinstance(value, bool):
            raise self.error(f"'{key}' must be true or false, got {value!r}", key)
        return value

    def string_list(self, key: str) -> list[str]:
        value = self.values.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(f"'{key}' must be a list, got {_type_name(value)}", key)
        out: list[str] = []
        for item in value:
            if isinstance(item, (dict, list)) or item is None:
                raise self.error(f"'{key}' items must be strings, got {_type_name(item)}", key)
            out.append(_scalar_text(item))
        return out


# Keys whose YAML types matter; every other value keeps its scalars as written, so a rule
# named `Off` or a list item `yes` stay strings (YAML 1.1 would make them booleans).
_TYPED_KEYS = frozenset({
    "enabled", "append", "warn_evttypes", "skip-if-unknown-filter",
    "required_engine_version", "capture", "capture_duration",
})


def _raw(node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode):
        if node.tag.endswith(":null") and node.style is None:
            return None
        return str(node.value)
    if isinstance(node, yaml.SequenceNode):
        return [_raw(child) for child in node.value]
    if isinstance(node, yaml.MappingNode):
        return {str(_raw(k)): _raw(v) for k, v in node.value}
    return None


def _type_name(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    return type(value).__name__


def _scalar_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_version(text: object) -> tuple[int, int, int] | None:
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return (0, text, 0)
    if not isinstance(text, (str, float)):
        return None
    m = _VERSION_RE.match(str(text).strip())
    if m is None:
        return None
    major, minor, patch = (int(g) if g else 0 for g in m.groups())
    if m.group(2) is None:  # a bare integer is the old engine version N -> 0.N.0
        return (0, major, 0)
    return (major, minor, patch)


def list_item_value(item: str) -> str:
    """The value a list item stands for. Falco pastes list items into the condition's
    `(...)` list, quoting an item only if it is not already a quoted string; so an item
    written '"10.0.0.0/8"' or "\\"sh -c\\"" is a quoted literal whose value has no quotes
    (escapes decoded as in any condition string)."""
    if len(item) < 2 or item[0] not in "'\"" or item[-1] != item[0]:
        return item
    scanner = Scanner(item)
    try:
        value = scanner.quoted()
    except ConditionSyntaxError:
        return item
    if value is None or scanner.pos != len(item):
        return item  # e.g. '"a" "b"': not one literal, kept verbatim
    return value


# ---- the loader ---------------------------------------------------------------------------

class _Loader:
    def __init__(self) -> None:
        self.lists: dict[str, _ListItem] = {}
        self.macros: dict[str, _MacroItem] = {}
        self.rules: dict[str, _RuleItem] = {}
        self.warnings: list[str] = []
        self.errors: list[RuleLoadError] = []
        self._sizer = ExpandedSize({}, {})

    # -- reading --

    def read(self, display: str, text: str) -> None:
        lines = tuple(text.splitlines())
        try:
            # Several `---` documents in one file are read in order, like one long list.
            # Through yamlsafe: alias bombs, over-deep nesting and duplicate keys inside one
            # mapping are refused with a position before anything is built from the file.
            roots = yamlsafe.compose_all(text, loader=_RulesYamlLoader)
        except yamlsafe.UnsafeYamlError as err:
            where = f":{err.where}" if err.where else ""
            raise RuleLoadError(f"{display}{where}: unsafe YAML: {err}", file=display,
                                line=err.line, col=err.col) from None
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
            problem = err.problem or err.context or "invalid YAML"
            if err.context and err.context_mark is not None and err.problem:
                cm = err.context_mark
                problem = f"{problem} ({err.context} at {cm.line + 1}:{cm.column + 1})"
            raise RuleLoadError(f"{display}:{line}:{col}: YAML syntax error: {problem}",
                                file=display, line=line, col=col) from None
        except yaml.YAMLError as err:
            raise RuleLoadError(f"{display}: YAML error: {err}", file=display) from None
        for root in roots:
            if root is not None:
                self._read_root(display, lines, root)

    def _read_root(self, display: str, lines: tuple[str, ...], root: yaml.Node) -> None:
        if not isinstance(root, yaml.SequenceNode):
            raise RuleLoadError(
                f"{display}:{root.start_mark.line + 1}:{root.start_mark.column + 1}: "
                "a rules file must be a YAML list of items (- rule: ..., - macro: ...,"
                " - list: ...)", file=display)
        constructor = _RulesYamlLoader("")
        for node in root.value:
            pos = _Pos(display, node.start_mark.line + 1, node.start_mark.column + 1)
            if not isinstance(node, yaml.MappingNode):
                raise RuleLoadError(
                    f"{pos}: each item must be a mapping (- rule: ..., - macro: ...,"
                    " - list: ...)", file=display, line=pos.line, col=pos.col)
            # Each item is applied on its own so one bad item does not hide the others.
            try:
                item = _ItemView(node, display, lines, constructor)
                self.apply(item)
            except RuleLoadError as err:
                self.errors.append(err)

    def apply(self, item: _ItemView) -> None:
        if item.has("required_engine_version"):
            item.kind = "required_engine_version"
            self.check_engine_version(item)
        elif item.has("required_plugin_versions"):
            item.kind = "required_plugin_versions"
            self.check_plugin_versions(item)
        elif item.has("rule"):
            self.apply_rule(item)
        elif item.has("macro"):
            self.apply_macro(item)
        elif item.has("list"):
            self.apply_list(item)
        else:
            keys = ", ".join(sorted(item.values)) or "nothing"
            raise RuleLoadError(
                f"{item.pos}: unknown item with keys {keys}; expected rule, macro, list or"
                " required_engine_version", file=item.file, line=item.pos.line,
                col=item.pos.col)

    def check_engine_version(self, item: _ItemView) -> None:
        wanted = item.values["required_engine_version"]
        parsed = _parse_version(wanted)
        if parsed is None:
            raise item.error(f"'{wanted}' is not a version (use e.g. 0.31.0)",
                             "required_engine_version")
        ours = _parse_version(ENGINE_VERSION)
        assert ours is not None
        if parsed > ours:
            raise item.error(
                f"the rules require engine version {wanted}, this engine is {ENGINE_VERSION}",
                "required_engine_version")

    def check_plugin_versions(self, item: _ItemView) -> None:
        """As Falco: each entry names a plugin (or one of its `alternatives`) that must be
        loaded with a version compatible with (same major, not older than) the one asked."""
        entries = item.values["required_plugin_versions"]
        if not isinstance(entries, list):
            raise item.error("required_plugin_versions must be a list of {name, version}",
                             "required_plugin_versions")
        for entry in entries:
            if not isinstance(entry, dict) or "name" not in entry or "version" not in entry:
                raise item.error("each required_plugin_versions entry needs 'name' and"
                                 " 'version'", "required_plugin_versions")
            choices = [entry]
            alternatives = entry.get("alternatives") or []
            if not isinstance(alternatives, list):
                raise item.error("'alternatives' must be a list of {name, version}",
                                 "required_plugin_versions")
            choices.extend(a for a in alternatives if isinstance(a, dict))
            if not any(self._plugin_satisfied(c) for c in choices):
                names = " or ".join(f"{c.get('name')} {c.get('version')}" for c in choices)
                raise item.error(
                    f"plugin requirement not satisfied: {names} (built-in plugins: "
                    + ", ".join(f"{n} {'.'.join(map(str, v))}"
                                for n, v in BUILTIN_PLUGIN_VERSIONS.items())
                    + ")", "required_plugin_versions")

    @staticmethod
    def _plugin_satisfied(entry: dict[object, object]) -> bool:
        have = BUILTIN_PLUGIN_VERSIONS.get(str(entry.get("name")))
        wanted = _parse_version(entry.get("version"))
        if have is None or wanted is None:
            return False
        # Falco's plugin version check is semver compatibility: same major, >= requested.
        return have[0] == wanted[0] and have >= wanted

    def _name(self, item: _ItemView, kind: str) -> str:
        item.kind = kind
        value = item.values[kind]
        if not isinstance(value, str) or not value.strip():
            raise item.error(f"the {kind} name must be a non-empty string", kind)
        item.name = value
        return value

    def _override(self, item: _ItemView, append_keys: frozenset[str],
                  replace_keys: frozenset[str]) -> dict[str, str] | None:
        """The validated `override:` mapping, or None when the item has none."""
        if not item.has("override"):
            return None
        if item.has("append"):
            raise item.error("'override' and 'append' cannot be used together", "override")
        spec = item.values["override"]
        if not isinstance(spec, dict) or not spec:
            raise item.error("'override' must map keys to append or replace", "override")
        out: dict[str, str] = {}
        for key, how in spec.items():
            if how not in ("append", "replace"):
                raise item.error(f"override of '{key}' must be 'append' or 'replace', got"
                                 f" {how!r}", "override")
            allowed = append_keys if how == "append" else replace_keys
            if key not in allowed:
                raise item.error(f"key '{key}' cannot be overridden with {how}; allowed:"
                                 f" {', '.join(sorted(allowed))}", "override")
            if not item.has(key):
                raise item.error(f"'override' names '{key}' but the item has no '{key}'",
                                 "override")
            out[str(key)] = str(how)
        for key in item.values:
            if key not in out and key not in (item.kind, "override"):
                raise item.error(f"key '{key}' is not listed in 'override'", key)
        return out

    # -- lists --

    def apply_list(self, item: _ItemView) -> None:
        name = self._name(item, "list")
        override = self._override(item, frozenset({"items"}), frozenset({"items"}))
        if "items" not in item.values:
            raise item.error("missing required key 'items'")
        if item.values["items"] is None:
            # As Falco: `items` is required to be a sequence; `items:`/null is not one (an
            # empty list is written `items: []`).
            raise item.error("'items' must be a list, got nothing (null); write items: []",
                             "items")
        items = item.string_list("items")
        append = item.boolean("append", False) or (override or {}).get("items") == "append"
        existing = self.lists.get(name)
        if append or override is not None:
            if existing is None:
                raise item.error("has override/append but no list with this name is defined"
                                 " before it")
            if append:
                existing.items.extend(items)
            else:
                existing.items = items
            return
        self.lists[name] = _ListItem(name, items, item.pos)

    # -- macros --

    def apply_macro(self, item: _ItemView) -> None:
        name = self._name(item, "macro")
        override = self._override(item, frozenset({"condition"}), frozenset({"condition"}))
        cond = item.scalar("condition")
        append = item.boolean("append", False) or (override or {}).get("condition") == "append"
        existing = self.macros.get(name)
        if append or override is not None:
            if existing is None:
                raise item.error("has override/append but no macro with this name is defined"
                                 " before it")
            if append:
                existing.cond.append(cond)
            else:
                existing.cond = _CondText([cond])
            return
        if not re.fullmatch(r"[a-zA-Z]+[a-zA-Z0-9_]*", name):
            raise item.error("macro names must be identifiers ([a-zA-Z][a-zA-Z0-9_]*)",
                             "macro")
        self.macros[name] = _MacroItem(name, _CondText([cond]), item.pos)

    # -- rules --

    def _exceptions(self, item: _ItemView) -> list[_ExceptionItem]:
        raw = item.values.get("exceptions")
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise item.error(f"'exceptions' must be a list, got {_type_name(raw)}",
                             "exceptions")
        seq = item.nodes["exceptions"]
        assert isinstance(seq, yaml.SequenceNode)
        out: list[_ExceptionItem] = []
        for entry, node in zip(raw, seq.value, strict=True):
            pos = _Pos(item.file, node.start_mark.line + 1, node.start_mark.column + 1)

            def bad(msg: str, pos: _Pos = pos) -> RuleLoadError:
                return RuleLoadError(f"{pos}: rule '{item.name}': {msg}", file=pos.file,
                                     item=item.name, line=pos.line, col=pos.col)

            if not isinstance(entry, dict):
                raise bad(f"each exception must be a mapping, got {_type_name(entry)}")
            ename = entry.get("name")
            if not isinstance(ename, str) or not ename:
                raise bad("exception without a 'name'")
            fields = entry.get("fields")
            if fields is not None and not (isinstance(fields, str) or (
                    isinstance(fields, list) and all(isinstance(f, str) for f in fields))):
                raise bad(f"exception '{ename}': 'fields' must be a field name or a list of"
                          " field names")
            comps = entry.get("comps")
            if comps is not None and not (isinstance(comps, str) or (
                    isinstance(comps, list) and all(isinstance(c, str) for c in comps))):
                raise bad(f"exception '{ename}': 'comps' must be an operator or a list of"
                          " operators")
            values = entry.get("values", [])
            if values is None:
                values = []
            if not isinstance(values, list):
                raise bad(f"exception '{ename}': 'values' must be a list")
            unknown = set(entry) - {"name", "fields", "comps", "values"}
            if unknown:
                raise bad(f"exception '{ename}': unknown key(s) {', '.join(sorted(unknown))}")
            out.append(_ExceptionItem(ename, fields, comps, values, pos))
        return out

    def apply_rule(self, item: _ItemView) -> None:
        name = self._name(item, "rule")
        for key in item.values:
            if key not in _RULE_KEYS:
                self.warnings.append(f"{item.where(key)}: rule '{name}': unknown key '{key}'"
                                     " ignored")
        override = self._override(item, _RULE_APPEND_KEYS, _RULE_REPLACE_KEYS)
        existing = self.rules.get(name)
        legacy_append = item.boolean("append", False)
        if override is not None or legacy_append:
            if existing is None:
                raise item.error("has override/append but no rule with this name is defined"
                                 " before it")
            if override is None:
                override = {k: "append" for k in ("condition", "exceptions") if item.has(k)}
                if not override:
                    raise item.error("an appended rule needs 'condition' or 'exceptions'")
            self._override_rule(item, existing, override)
            return
        if existing is not None and set(item.values) <= {"rule", "enabled"} \
                and item.has("enabled"):
            # Falco's (deprecated) shorthand: `- rule: X` + `enabled: false` toggles X.
            existing.enabled = item.boolean("enabled", True)
            return
        for key in ("condition", "output", "desc", "priority"):
            if not item.has(key):
                raise item.error(f"missing required key '{key}'")
        priority_text = item.string("priority", required=True)
        try:
            priority = Priority.parse(priority_text)
        except ValueError as err:
            raise item.error(str(err), "priority") from None
        source = item.string("source", default="syscall")
        rule = _RuleItem(
            name=name,
            pos=item.pos,
            cond=_CondText([item.scalar("condition")]),
            output=item.scalar("output"),
            desc=item.string("desc", required=True),
            priority=priority,
            tags=item.string_list("tags"),
            enabled=item.boolean("enabled", True),
            source=source,
            exceptions=self._exceptions(item),
            skip_unknown=item.boolean("skip-if-unknown-filter", False),
            warn_evttypes=item.boolean("warn_evttypes", True),
        )
        previous = self.rules.get(name)
        if previous is not None:
            # As Falco: a same-named rule without append/override replaces the earlier one;
            # say so, since it is usually a copy-paste slip rather than intended.
            self.warnings.append(f"{item.pos}: rule '{name}': redefines the rule at"
                                 f" {previous.pos} (use override: to change it)")
        self.rules[name] = rule  # a redefinition replaces, keeping the first position

    def _override_rule(self, item: _ItemView, rule: _RuleItem, spec: dict[str, str]) -> None:
        for key, how in spec.items():
            if key == "condition":
                piece = item.scalar("condition")
                if how == "append":
                    rule.cond.append(piece)
                else:
                    rule.cond = _CondText([piece])
            elif key == "output":
                piece = item.scalar("output")
                if how == "append":
                    rule.output = _Scalar(rule.output.text.rstrip() + " " + piece.text, piece.pos,
                                          piece.style, piece.end_line, piece.source_lines)
                else:
                    rule.output = piece
            elif key == "desc":
                text = item.string("desc", required=True)
                rule.desc = f"{rule.desc} {text}" if how == "append" else text
            elif key == "tags":
                tags = item.string_list("tags")
                rule.tags = rule.tags + [t for t in tags if t not in rule.tags] \
                    if how == "append" else tags
            elif key == "priority":
                try:
                    rule.priority = Priority.parse(item.string("priority", required=True))
                except ValueError as err:
                    raise item.error(str(err), "priority") from None
            elif key == "enabled":
                rule.enabled = item.boolean("enabled", True)
            elif key == "warn_evttypes":
                rule.warn_evttypes = item.boolean("warn_evttypes", True)
            elif key == "skip-if-unknown-filter":
                rule.skip_unknown = item.boolean("skip-if-unknown-filter", False)
            elif key == "exceptions":
                new = self._exceptions(item)
                if how == "replace":
                    rule.exceptions = new
                    continue
                by_name = {e.name: e for e in rule.exceptions}
                for exc in new:
                    old = by_name.get(exc.name)
                    if old is None:
                        rule.exceptions.append(exc)
                        by_name[exc.name] = exc
                        continue
                    if exc.fields is not None and exc.fields != old.fields:
                        raise item.error(f"appended exception '{exc.name}' has fields"
                                         f" {exc.fields} but the rule's has {old.fields}",
                                         "exceptions")
                    old.values.extend(exc.values)

    # -- compiling --

    def resolved_lists(self) -> dict[str, tuple[str, ...]]:
        """Lists with items naming other lists expanded (as Falco does)."""
        out: dict[str, tuple[str, ...]] = {}

        def expand(name: str, seen: tuple[str, ...]) -> tuple[str, ...]:
            if name in out:
                return out[name]
            lst = self.lists[name]
            if len(seen) >= MAX_MACRO_DEPTH:
                raise RuleLoadError(
                    f"{lst.pos}: list '{name}': lists nest deeper than {MAX_MACRO_DEPTH}"
                    " levels (limit MAX_MACRO_DEPTH)", file=lst.pos.file, item=name,
                    line=lst.pos.line, col=lst.pos.col)
            items: list[str] = []
            for item in lst.items:
                if item in self.lists and item not in seen and item != name:
                    items.extend(expand(item, (*seen, name)))
                else:
                    items.append(list_item_value(item))
                if len(items) > MAX_LIST_ITEMS:
                    raise RuleLoadError(
                        f"{lst.pos}: list '{name}': more than {MAX_LIST_ITEMS} items after"
                        " expanding the lists it names (limit MAX_LIST_ITEMS)",
                        file=lst.pos.file, item=name, line=lst.pos.line, col=lst.pos.col)
            out[name] = tuple(items)
            return out[name]

        for name in self.lists:
            expand(name, ())
        return out

    def _cond_error(self, kind: str, name: str, cond: _CondText, message: str,
                    offset: int) -> RuleLoadError:
        pos, _ = cond.locate(offset)
        snippet = _snippet(cond.text, offset)
        return RuleLoadError(
            f"{pos}: {kind} '{name}': {message} (condition offset {offset}, near"
            f" \"{snippet}\")", file=pos.file, item=name, line=pos.line, col=pos.col,
            offset=offset)

    def compile(self) -> Ruleset:
        lists = self.resolved_lists()
        macro_defs: dict[str, MacroDef] = {}
        parsed: dict[str, Expr] = {}
        for macro in self.macros.values():
            try:
                parsed[macro.name] = parse_condition(macro.cond.text)
            except ConditionSyntaxError as err:
                self.errors.append(self._cond_error("macro", macro.name, macro.cond,
                                                    err.message, err.offset))
                continue
            macro_defs[macro.name] = MacroDef(macro.name, parsed[macro.name])
        checker = Expander(macro_defs, lists)
        # As Falco: a macro whose condition is wrong (unknown field, macro or list) is only
        # an error if an enabled rule uses it; otherwise a warning.
        bad_macros: dict[str, RuleLoadError] = {}
        for name, expr in parsed.items():
            try:
                validate_condition(expr, checker, expand_macros=False)
            except CompileError as err:
                macro = self.macros[name]
                bad_macros[name] = self._cond_error("macro", name, macro.cond, err.message,
                                                    err.offset)
        try:
            self._check_cycles(parsed)
        except RuleLoadError as err:
            self.errors.append(err)
            raise RuleLoadErrors(self.errors, self.warnings) from None

        expander = Expander(macro_defs, lists)
        self._sizer = ExpandedSize(parsed, lists)
        compiled: list[CompiledRule] = []
        for rule in self.rules.values():
            if rule.source not in SUPPORTED_SOURCES:
                self.warnings.append(f"{rule.pos}: rule '{rule.name}': source '{rule.source}'"
                                     " is not loaded here; rule skipped")
                continue
            try:
                built = self._compile_rule(rule, expander)
            except RuleLoadError as rule_err:
                # Disabled rules are still checked (they may be enabled at run time). A rule
                # that only fails because a macro it uses failed to parse is not a second
                # error: that macro's error already says it.
                if not any(f"unknown macro '{name}'" in str(rule_err)
                           for name in self.macros if name not in parsed):
                    self.errors.append(rule_err)
                continue
            if built is not None and rule.enabled:
                compiled.append(built)
        for name, macro_err in bad_macros.items():
            if name in expander.used_macros:  # used by a rule (hence not only a warning)
                self.errors.append(macro_err)
            else:
                self.warnings.append(f"{macro_err} (macro not used by any rule)")
        for name, macro in self.macros.items():
            if name not in expander.used_macros:
                self.warnings.append(f"{macro.pos}: macro '{name}' is not used by any rule")
        for name, lst in self.lists.items():
            if name not in expander.used_lists and not self._list_nested_in_used(
                    name, expander.used_lists):
                self.warnings.append(f"{lst.pos}: list '{name}' is not used by any rule")
        if self.errors:
            raise RuleLoadErrors(self.errors, self.warnings)
        return Ruleset(compiled, self.warnings, expander)

    def _list_nested_in_used(self, name: str, used: set[str]) -> bool:
        return any(name in self.lists[u].items for u in used if u in self.lists)

    def _check_cycles(self, parsed: dict[str, Expr]) -> None:
        refs: dict[str, list[MacroRef]] = {name: _macro_refs(expr)
                                           for name, expr in parsed.items()}
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done

        def visit(name: str, path: list[str]) -> None:
            if len(path) > MAX_MACRO_DEPTH:
                macro = self.macros[name]
                raise self._cond_error("macro", name, macro.cond,
                                       f"macros nest deeper than {MAX_MACRO_DEPTH} levels"
                                       " (limit MAX_MACRO_DEPTH)", 0)
            state[name] = 1
            for ref in refs.get(name, []):
                if ref.name not in refs:
                    continue
                if state.get(ref.name) == 1:
                    cycle = " -> ".join([*path[path.index(ref.name):], ref.name])
                    macro = self.macros[name]
                    raise self._cond_error("macro", name, macro.cond,
                                           f"macros reference each other in a cycle: {cycle}",
                                           ref.pos)
                if state.get(ref.name) is None:
                    visit(ref.name, [*path, ref.name])
            state[name] = 2

        for name in parsed:
            if state.get(name) is None:
                visit(name, [name])

    def _exception_expr(self, rule: _RuleItem, exc: _ExceptionItem) -> Expr | None:
        def bad(msg: str) -> RuleLoadError:
            return RuleLoadError(f"{exc.pos}: rule '{rule.name}': exception '{exc.name}': {msg}",
                                 file=exc.pos.file, item=rule.name, line=exc.pos.line,
                                 col=exc.pos.col)

        if exc.fields is None:
            raise bad("missing 'fields'")
        if not exc.values:
            return None
        single = isinstance(exc.fields, str)
        fields = [exc.fields] if isinstance(exc.fields, str) else list(exc.fields)
        if single:
            comps = [exc.comps if isinstance(exc.comps, str) else "in"]
        elif exc.comps is None:
            comps = ["="] * len(fields)
        elif isinstance(exc.comps, str):
            comps = [exc.comps] * len(fields)
        else:
            comps = list(exc.comps)
        if len(comps) != len(fields):
            raise bad(f"{len(fields)} fields but {len(comps)} comps")
        refs: list[FieldRef] = []
        for fname in fields:
            m = _FIELD_WITH_ARG.match(fname.strip())
            if m is None:
                raise bad(f"'{fname}' is not a field name")
            refs.append(FieldRef(m.group(1), m.group(2), 0))
        for comp in comps:
            if comp not in ALL_OPS or comp == "exists":
                raise bad(f"unknown comparison operator '{comp}'")

        def check(ref: FieldRef, comp: str, value: object) -> Check:
            if comp in LIST_OPS:
                if isinstance(value, list):
                    items = tuple(Value(_scalar_text(v), 0) for v in value)
                else:
                    items = (Value(_scalar_text(value), 0),)
                return Check(ref, comp, ListValue(items, 0), 0, 0)
            if isinstance(value, (list, dict)):
                raise bad(f"operator '{comp}' on {ref.text} takes one value, got a list")
            return Check(ref, comp, Value(_scalar_text(value), 0, quoted=True), 0, 0)

        if single:
            comp = comps[0]
            if comp in LIST_OPS:
                return check(refs[0], comp, exc.values)
            return Or(tuple(check(refs[0], comp, v) for v in exc.values), 0)
        alternatives: list[Expr] = []
        for tup in exc.values:
            if not isinstance(tup, list) or len(tup) != len(fields):
                raise bad(f"each value must be a list of {len(fields)} items (one per field),"
                          f" got {tup!r}")
            checks = tuple(check(r, c, v) for r, c, v in zip(refs, comps, tup, strict=True))
            alternatives.append(checks[0] if len(checks) == 1 else And(checks, 0))
        return alternatives[0] if len(alternatives) == 1 else Or(tuple(alternatives), 0)

    def _compile_rule(self, rule: _RuleItem, expander: Expander) -> CompiledRule | None:
        try:
            expr = parse_condition(rule.cond.text)
        except ConditionSyntaxError as err:
            raise self._cond_error("rule", rule.name, rule.cond, err.message,
                                   err.offset) from None
        try:
            self._sizer.of(expr)
        except LimitExceeded as err:
            raise self._cond_error("rule", rule.name, rule.cond, err.message,
                                   err.pos) from None
        try:
            expanded = expander.expand(expr)
            validate_condition(expanded, expander, expand_macros=False)
        except CompileError as err:
            if rule.skip_unknown and "unknown field" in err.message:
                self.warnings.append(f"{rule.pos}: rule '{rule.name}' skipped: {err.message}")
                return None
            raise self._cond_error("rule", rule.name, rule.cond, err.message,
                                   err.offset) from None
        exception_exprs: list[Expr] = []
        for exc in rule.exceptions:
            exc_expr = self._exception_expr(rule, exc)
            if exc_expr is None:
                continue
            try:
                validate_condition(exc_expr, expander, expand_macros=False)
            except CompileError as err:
                raise RuleLoadError(
                    f"{exc.pos}: rule '{rule.name}': exception '{exc.name}': {err.message}",
                    file=exc.pos.file, item=rule.name, line=exc.pos.line,
                    col=exc.pos.col) from None
            exception_exprs.append(exc_expr)
        full: Expr = expanded
        if exception_exprs:
            excluded = exception_exprs[0] if len(exception_exprs) == 1 \
                else Or(tuple(exception_exprs), 0)
            full = And((expanded, Not(excluded, 0)), 0)
        try:
            fmt = compile_output(rule.output.text)
        except OutputError as err:
            pos = rule.output.locate(err.offset)
            raise RuleLoadError(f"{pos}: rule '{rule.name}': output: {err.message}",
                                file=pos.file, item=rule.name, line=pos.line,
                                col=pos.col) from None
        types = event_types(expanded, expander)
        unknown = sorted(types - _known_event_types()) if types else []
        if unknown:
            self.warnings.append(f"{rule.pos}: rule '{rule.name}': evt.type {', '.join(unknown)}"
                                 " is not a syscall or event this engine knows; it never matches")
        if types is None and rule.warn_evttypes and rule.enabled:
            self.warnings.append(f"{rule.pos}: rule '{rule.name}' has no evt.type constraint:"
                                 " it is evaluated for every event")
        match = compile_condition(full, expander, rule.name)
        return CompiledRule(
            name=rule.name,
            priority=rule.priority,
            tags=tuple(rule.tags),
            source=rule.source,
            desc=rule.desc.strip(),
            output=rule.output.text.strip(),
            condition=" ".join(rule.cond.text.split()),
            event_types=types,
            match=match,
            format_output=fmt,
            expr=full,
        )


@functools.cache
def _known_event_types() -> frozenset[str]:
    """Every syscall name (any arch the driver supports) and the non-syscall events."""
    from runtime.driver._syscalls import SYSCALLS
    from runtime.driver.schema import NON_SYSCALL_EVENTS

    names = {name for table in SYSCALLS.values() for name in table}
    return frozenset(names | set(NON_SYSCALL_EVENTS))


def _macro_refs(expr: Expr) -> list[MacroRef]:
    if isinstance(expr, MacroRef):
        return [expr]
    if isinstance(expr, (And, Or)):
        return [r for c in expr.children for r in _macro_refs(c)]
    if isinstance(expr, Not):
        return _macro_refs(expr.child)
    return []


def load_rules(
    paths: Sequence[Path | str],
    *,
    extra_texts: Sequence[tuple[str, str]] = (),
) -> Ruleset:
    """Load rule files in order (then `extra_texts`, (display name, YAML) pairs)."""
    loader = _Loader()
    for path in paths:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RuleLoadError(f"{p}: rules file not found; check the --rules path",
                                file=str(p)) from None
        except (OSError, UnicodeDecodeError) as err:
            raise RuleLoadError(f"{p}: cannot read rules file: {err}", file=str(p)) from None
        try:
            loader.read(str(p), text)
        except RuleLoadError as err:  # the file's YAML is broken: report it, go on
            loader.errors.append(err)
    for display, text in extra_texts:
        try:
            loader.read(display, text)
        except RuleLoadError as err:
            loader.errors.append(err)
    return loader.compile()


__all__ = ["ENGINE_VERSION", "SUPPORTED_SOURCES", "UnknownFieldError", "load_rules"]
