"""YAML from untrusted files (driverkit configs, engine configs, rules files), with bounds.

PyYAML's composer keeps an alias as a reference to its anchored node, so a 480-byte
"billion laughs" document composes instantly and only explodes when it is constructed or
walked. Everything here composes first, then measures the node graph as it would be
expanded (memoized per node, so the check itself is linear in the document) and refuses
it above a limit, before anything walks it. Deep nesting, recursive anchors, duplicate
mapping keys, input that is not UTF-8 and oversized input are refused the same way: one
`UnsafeYamlError` naming the place and the limit.

Two ways to get values:
- `load(..., scalars="typed")`: PyYAML's safe types (YAML 1.1: `0.10` is a float).
- `load(..., scalars="text")`: every scalar is the text as written (`0.10` stays "0.10",
  `010` stays "010"); only an empty/`~`/`null` plain scalar is None. For option tables
  that convert per option and must never see a silently coerced value.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import yaml

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPANDED_NODES",
    "MAX_INPUT_BYTES",
    "UnsafeYamlError",
    "compose_all",
    "decode",
    "load",
]

# A generous ceiling for any real file here: Falco's three rules files together expand
# to about 60,000 nodes; a driverkit config to a few hundred.
MAX_EXPANDED_NODES = 2_000_000
MAX_DEPTH = 200
MAX_INPUT_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class _Where:
    line: int
    col: int


class UnsafeYamlError(ValueError):
    """The document is not valid, safe YAML; `line`/`col` are 1-based (0 if unknown)."""

    def __init__(self, message: str, line: int = 0, col: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.col = col

    @property
    def where(self) -> str:
        return f"{self.line}:{self.col}" if self.line else ""


def _mark(node: yaml.Node) -> _Where:
    m = node.start_mark
    return _Where(m.line + 1, m.column + 1)


def decode(data: bytes | str, *, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The text of a file's bytes: UTF-8 only, size-bounded (named in the error)."""
    if isinstance(data, str):
        if len(data) > max_bytes:
            raise UnsafeYamlError(f"larger than {max_bytes} bytes")
        return data
    if len(data) > max_bytes:
        raise UnsafeYamlError(f"larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeYamlError(f"not UTF-8 (invalid byte at offset {exc.start})") from None


def _check_graph(root: yaml.Node, max_nodes: int, max_depth: int) -> None:
    """Refuse recursive anchors, nesting deeper than `max_depth` and an expanded size
    above `max_nodes`. Iterative, so a hostile depth cannot exhaust the Python stack."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # (node, depth, children_pushed)
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        key = id(node)
        if expanded:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > max_nodes:
                where = _mark(node)
                raise UnsafeYamlError(
                    f"aliases expand to more than {max_nodes} nodes (limit); "
                    f"remove the repeated aliases", where.line, where.col)
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            where = _mark(node)
            raise UnsafeYamlError("recursive alias (an anchor refers to itself)",
                                  where.line, where.col)
        if depth > max_depth:
            where = _mark(node)
            raise UnsafeYamlError(f"nested deeper than {max_depth} levels (limit)",
                                  where.line, where.col)
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        on_path.add(key)
        stack.append((node, depth, True))
        for child in _children(node):
            if id(child) in on_path:
                where = _mark(child)
                raise UnsafeYamlError("recursive alias (an anchor refers to itself)",
                                      where.line, where.col)
            if id(child) not in sizes:
                stack.append((child, depth + 1, False))


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            yield k
            yield v


def _check_duplicate_keys(root: yaml.Node) -> None:
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, yaml.Node] = {}
            for k, _v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value in first and k.tag != "tag:yaml.org,2002:merge":
                        where, prev = _mark(k), _mark(first[k.value])
                        raise UnsafeYamlError(
                            f"duplicate key {k.value!r} (first at {prev.line}:{prev.col}); "
                            "keep one", where.line, where.col)
                    first[k.value] = k
        stack.extend(_children(node))


class _BoundedSafeLoader(yaml.SafeLoader):
    """SafeLoader where a bare `=` is the string "=" (YAML 1.1 reserves it as the value
    tag; Falco's exception `comps: [=, ...]` rely on it being a plain string)."""


def _construct_equals(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(node.value)


_BoundedSafeLoader.add_constructor("tag:yaml.org,2002:value", _construct_equals)

# Python refuses int() of more than 4300 digits with a bare ValueError; no setting anywhere
# needs more than a few dozen, so longer integers are refused here, with their position.
MAX_INT_CHARS = 100


def _construct_bounded_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(node.value)
    if len(text) > MAX_INT_CHARS:
        where = _mark(node)
        raise UnsafeYamlError(f"an integer of {len(text)} characters (limit {MAX_INT_CHARS});"
                              " write a realistic number", where.line, where.col)
    value: int = yaml.SafeLoader.construct_yaml_int(loader, node)  # type: ignore[arg-type]
    return value


_BoundedSafeLoader.add_constructor("tag:yaml.org,2002:int", _construct_bounded_int)


class _TextLoader(yaml.SafeLoader):
    """Every scalar constructs to its text as written; empty/~/null plain scalars to None."""


def _construct_text(loader: yaml.SafeLoader, node: yaml.Node) -> str | None:
    assert isinstance(node, yaml.ScalarNode)
    if node.style is None and node.value in ("", "~", "null", "Null", "NULL"):
        return None
    return str(node.value)


for _tag in ("bool", "int", "float", "null", "timestamp", "value", "str", "binary"):
    _TextLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _construct_text)


def compose_all(text: str, *, loader: type[yaml.SafeLoader] = _BoundedSafeLoader,
                max_nodes: int = MAX_EXPANDED_NODES,
                max_depth: int = MAX_DEPTH) -> list[yaml.Node]:
    """The documents of `text` as checked node graphs (see the module doc).

    PyYAML's own errors pass through as `yaml.YAMLError` (they carry marks the caller
    formats); the bounds raise `UnsafeYamlError`.
    """
    try:
        roots = [r for r in yaml.compose_all(text, Loader=loader) if r is not None]
    except RecursionError:
        raise UnsafeYamlError(f"nested deeper than the parser can follow "
                              f"(limit {max_depth} levels)") from None
    for root in roots:
        _check_graph(root, max_nodes, max_depth)
        _check_duplicate_keys(root)
    return roots


def load(data: bytes | str, *, scalars: Literal["typed", "text"] = "typed",
         max_nodes: int = MAX_EXPANDED_NODES, max_depth: int = MAX_DEPTH,
         max_bytes: int = MAX_INPUT_BYTES) -> object:
    """One YAML document's value, checked (see the module doc). An empty document is None.

    Raises `UnsafeYamlError` (bounds, duplicates, encoding) or `yaml.YAMLError` (syntax).
    """
    text = decode(data, max_bytes=max_bytes)
    loader_cls: type[yaml.SafeLoader] = _TextLoader if scalars == "text" else _BoundedSafeLoader
    roots = compose_all(text, loader=loader_cls, max_nodes=max_nodes, max_depth=max_depth)
    if not roots:
        return None
    if len(roots) > 1:
        raise UnsafeYamlError("more than one YAML document; keep one")
    constructor = loader_cls("")
    try:
        return constructor.construct_document(roots[0])
    finally:
        constructor.dispose()
