"""Condition compiler: macros inlined, lists expanded, fields resolved, Python code generated.

Each rule condition becomes ONE generated Python function `match(ev, st)` whose body is a
single boolean expression: Python's own `and`/`or` give short-circuiting, literals are
pre-converted (frozensets for `in`, lower-cased text for `icontains`, compiled regexes for
`glob`), and fields read straight from the event (`ev.type`, `ev.comm`) are inlined. A
closure tree costs a call per node; this costs one call per rule. That function tests the
condition exactly as written: it is the reference the engine's fast path must agree with.

The engine's fast path is one generated function per event type for all the rules that
can match it (`compile_type_dispatch`): evt.type checks fold to constants, fields read
several times are read once, each and/or tests its children cheapest-to-decide first
(see "evaluation order"), tests of one field merge (`startswith((a, b))`, one set, one
regular expression for several `contains`), a conjunct the branches of an `or` share is
tested once (_factor_or), and the conjuncts several rules share over a few fields
(`fd.name in (...)`, `proc.name in (...)`) are tested once per distinct value of those
fields, the answer remembered (see _Guards; a value not seen before, a new path, first
meets a text filter: _TextFilter): Falco's rules on openat cost a dict lookup or two for
most events instead of a test per rule. The rules those lookups leave are tested in a
block most events skip, reading their fields on first use (_guarded_block).
tests/test_engine_matchers.py, tests/test_engine_guard_filter.py and
tests/test_engine_falco_replay.py hold it to the reference.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import math
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from runtime.engine.fields import (
    EVENT_FD,
    EVENT_THREAD,
    OPEN_TYPES,
    BoundField,
    FieldType,
    UnknownFieldError,
    apply_transformer,
    resolve_field,
)
from runtime.engine.rules.ast import (
    And,
    Check,
    Expr,
    FieldRef,
    ListRef,
    ListValue,
    MacroRef,
    Not,
    Or,
    Transform,
    Value,
)

if TYPE_CHECKING:
    from runtime.engine.state import SystemState
    from runtime.events import Event

MatchFn = Callable[["Event", "SystemState"], bool]


class CompileError(ValueError):
    """A semantic error at `offset` of the condition being compiled."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class MacroDef:
    name: str
    expr: Expr


_NUMERIC_OPS = frozenset({"<", "<=", ">", ">="})
# Constants named once per value (see _CodeGen.const); anything else once per object.
_VALUE_CONSTS = frozenset({str, int, float, bytes, frozenset})
_OPS_BY_TYPE: dict[FieldType, frozenset[str]] = {
    FieldType.STRING: frozenset({
        "=", "==", "!=", "<", "<=", ">", ">=", "contains", "icontains", "bcontains",
        "startswith", "bstartswith", "endswith", "glob", "iglob", "pmatch", "in", "intersects",
        "exists", "regex",
    }),
    FieldType.INT: frozenset({"=", "==", "!=", "<", "<=", ">", ">=", "in", "intersects",
                              "exists"}),
    FieldType.BOOL: frozenset({"=", "==", "!=", "exists"}),
    FieldType.IPADDR: frozenset({"=", "==", "!=", "in", "intersects", "exists"}),
    FieldType.IPNET: frozenset({"=", "==", "!=", "in", "exists"}),
}
_PY_CMP = {"=": "==", "==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
# Substring operators as Python, over the code of the field's text and of the needle; for
# `icontains` the needle arrives lower-cased (a constant lowered once, at compile time).
_TEXT_OPS = {
    "contains": "{needle} in {text}",
    "icontains": "{needle} in {text}.lower()",
    "startswith": "{text}.startswith({needle})",
    "endswith": "{text}.endswith({needle})",
}


# ---- runtime helpers referenced by generated code -----------------------------------------

def _to_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def _to_number(value: object) -> int | float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


_IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
# Parsed addresses by text: a host talks to few peers, and ip_address() costs ~2 us.
_ADDR_CACHE: dict[str, _IpAddr | None] = {}
_ADDR_CACHE_MAX = 4096


def _parse_addr(text: str) -> _IpAddr | None:
    try:
        return _ADDR_CACHE[text]
    except KeyError:
        pass
    try:
        addr: _IpAddr | None = ipaddress.ip_address(text)
    except ValueError:
        addr = None
    if len(_ADDR_CACHE) >= _ADDR_CACHE_MAX:
        _ADDR_CACHE.clear()
    _ADDR_CACHE[text] = addr
    return addr


def _in_networks(values: object, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
                 ) -> bool:
    if not isinstance(values, (list, tuple)):
        values = [values]
    for text in values:
        addr = _parse_addr(str(text))
        if addr is None:
            continue
        for net in nets:
            if addr.version == net.version and addr in net:
                return True
    return False


def _network_matcher(literals: Sequence[object]) -> Callable[[object], bool]:
    """`_in_networks(value, nets)` for one check, remembering the answer per address text:
    a host talks to few peers, and `addr in net` costs ~0.5 us per network."""
    nets = cast(tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], tuple(literals))
    known: dict[object, bool] = {}

    def in_nets(values: object) -> bool:
        # fd.net and friends give both ends as a list: remembered as a tuple of texts.
        key = tuple(values) if values.__class__ is list else values
        try:
            found = known.get(key)
        except TypeError:  # an unhashable value: asked every time
            return _in_networks(values, nets)
        if found is None:
            found = _in_networks(values, nets)
            if len(known) >= _ADDR_CACHE_MAX:
                known.clear()
            known[key] = found
        return found

    return in_nets


def _pmatch_parts(prefixes: Iterable[str]) -> tuple[set[str], tuple[str, ...]]:
    """Falco's path-prefix match as (paths equal to which match, prefixes below which
    match)."""
    exact = set()
    dirs = []
    for p in prefixes:
        trimmed = p.rstrip("/") or "/"
        exact.add(trimmed)
        dirs.append("/" if trimmed == "/" else trimmed + "/")
    return exact, tuple(dirs)


def _make_pmatch(prefixes: Iterable[str]) -> Callable[[str], bool]:
    """Falco's path-prefix match: equal to one of the paths or below it."""
    exact, dir_tuple = _pmatch_parts(prefixes)

    def pmatch(value: str) -> bool:
        return value in exact or value.startswith(dir_tuple)

    return pmatch


def _glob_regex(pattern: str, ignore_case: bool) -> Callable[[str], re.Match[str] | None]:
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE if ignore_case else 0).match


# ---- macro / list expansion ----------------------------------------------------------------

class Expander:
    """Inlines macros and tracks which macros and lists got used (for unused warnings)."""

    def __init__(self, macros: Mapping[str, MacroDef], lists: Mapping[str, tuple[str, ...]]
                 ) -> None:
        self.macros = macros
        self.lists = lists
        self.used_macros: set[str] = set()
        self.used_lists: set[str] = set()
        self._expanded: dict[str, Expr] = {}

    def expand(self, expr: Expr, stack: tuple[str, ...] = ()) -> Expr:
        if isinstance(expr, MacroRef):
            macro = self.macros.get(expr.name)
            if macro is None:
                raise CompileError(f"unknown macro '{expr.name}'", expr.pos)
            if expr.name in stack:
                cycle = " -> ".join((*stack[stack.index(expr.name):], expr.name))
                raise CompileError(f"macros reference each other in a cycle: {cycle}", expr.pos)
            self.used_macros.add(expr.name)
            cached = self._expanded.get(expr.name)
            if cached is not None:
                return cached
            # Macros are validated on their own first, so an error here can only be a cycle
            # reached through this reference: report it where the rule refers to it.
            try:
                body = self.expand(macro.expr, (*stack, expr.name))
            except CompileError as err:
                raise CompileError(err.message, expr.pos) from None
            self._expanded[expr.name] = body
            return body
        if isinstance(expr, And):
            return And(tuple(self.expand(c, stack) for c in expr.children), expr.pos)
        if isinstance(expr, Or):
            return Or(tuple(self.expand(c, stack) for c in expr.children), expr.pos)
        if isinstance(expr, Not):
            return Not(self.expand(expr.child, stack), expr.pos)
        return expr

    def list_items(self, right: ListValue | ListRef) -> list[Value]:
        if isinstance(right, ListRef):
            items = self.lists.get(right.name)
            if items is None:
                raise CompileError(f"unknown list '{right.name}'", right.pos)
            self.used_lists.add(right.name)
            return [Value(item, right.pos) for item in items]
        out: list[Value] = []
        for value in right.items:
            items = self.lists.get(value.text)
            if items is None:
                out.append(value)
            else:
                self.used_lists.add(value.text)
                out.extend(Value(item, value.pos) for item in items)
        return out


# ---- event-type derivation -----------------------------------------------------------------

# (positive, types): positive=True -> exactly `types`; False -> every type except `types`.
_TypeSet = tuple[bool, frozenset[str]]
_ALL: _TypeSet = (False, frozenset())
_NONE: _TypeSet = (True, frozenset())


def _union(a: _TypeSet, b: _TypeSet) -> _TypeSet:
    if a[0] and b[0]:
        return (True, a[1] | b[1])
    if a[0]:
        return (False, b[1] - a[1])
    if b[0]:
        return (False, a[1] - b[1])
    return (False, a[1] & b[1])


def _intersect(a: _TypeSet, b: _TypeSet) -> _TypeSet:
    if a[0] and b[0]:
        return (True, a[1] & b[1])
    if a[0]:
        return (True, a[1] - b[1])
    if b[0]:
        return (True, b[1] - a[1])
    return (False, a[1] | b[1])


def event_types(expr: Expr, expander: Expander) -> frozenset[str] | None:
    """Event types a (macro-expanded) condition can be true for, or None for any type.

    Like Falco's evttype resolver, but sound under `not`: each node yields the types it may
    be true for AND the types it may be false for; `not` swaps them. Checks on other fields
    may go either way on every type.
    """
    (positive, types), _ = _types_of(expr, expander)
    return types if positive else None


def _types_of(expr: Expr, expander: Expander) -> tuple[_TypeSet, _TypeSet]:
    if isinstance(expr, And | Or):
        # `and` may be true only where every child may be, false where any may be; `or` is
        # its dual. Each accumulator starts at its operation's identity.
        every, any_ = (_intersect, _ALL), (_union, _NONE)
        (on_true, true_acc), (on_false, false_acc) = (
            (every, any_) if isinstance(expr, And) else (any_, every)
        )
        for child in expr.children:
            t, f = _types_of(child, expander)
            true_acc = on_true(true_acc, t)
            false_acc = on_false(false_acc, f)
        return true_acc, false_acc
    if isinstance(expr, Not):
        t, f = _types_of(expr.child, expander)
        return f, t
    if isinstance(expr, Check) and isinstance(expr.left, FieldRef) \
            and expr.left.name == "evt.type" and expr.left.arg is None:
        named: frozenset[str] | None = None
        if expr.op in ("=", "==", "!=") and isinstance(expr.right, Value):
            named = frozenset({expr.right.text})
        elif expr.op in ("in", "intersects") and isinstance(expr.right, (ListValue, ListRef)):
            named = frozenset(v.text for v in expander.list_items(expr.right))
        if named is not None:
            if expr.op == "!=":
                return (False, named), (True, named)
            return (True, named), (False, named)
    return _ALL, _ALL


_UNSET = object()
# A call of a state method (`st.thread_of(ev)`) or of a table's (`st.threads.get(...)`),
# a list built, or a text joined: not a cheap read.
_COSTLY_READ = re.compile(r"\bst\.[\w.]+\(|\[|\.join\(")


def _field_texts(expr: Expr) -> Iterable[str]:
    if isinstance(expr, (And, Or)):
        for child in expr.children:
            yield from _field_texts(child)
    elif isinstance(expr, Not):
        yield from _field_texts(expr.child)
    elif isinstance(expr, Check):
        for side in (expr.left, expr.right):
            if isinstance(side, FieldRef):
                yield side.text
            elif isinstance(side, Transform) and side.func == "val" \
                    and isinstance(side.inner, FieldRef):
                yield side.inner.text


# ---- evaluation order (per-type matchers) --------------------------------------------------
#
# Each check's generated code stands alone: it reads its field (an absent value is None,
# guarded by the check itself), compares it with constants and has no effect another check
# could see (fields computed once per event are memoised, whichever check asks first). So
# the children of an `and` (or an `or`) give the same answer in any order, and testing
# first what is cheap and likely to decide skips the rest. The per-type matchers order
# them by an estimate: a check's cost (how its field is read, what the operator does) and
# the chance it holds (a positive match on text, `=`/`in`/`startswith`/..., is assumed
# rarely true, `!=` and `not` of such a match usually true), and test an `and`'s children
# by cost / P(false) ascending, an `or`'s by cost / P(true): the order that minimises the
# expected cost for independent tests. Only the order changes, never what is tested.

_MATCH_OPS = frozenset({"=", "in", "intersects", "startswith", "endswith", "contains",
                        "icontains", "bcontains", "bstartswith", "glob", "iglob", "pmatch",
                        "regex"})
# Rough costs, in ns on CPython 3.11, of an operator's work on a value in hand.
_OP_COST = {"icontains": 100.0, "bcontains": 200.0, "bstartswith": 200.0, "glob": 300.0,
            "iglob": 300.0, "regex": 300.0, "pmatch": 150.0, "startswith": 50.0,
            "endswith": 50.0, "contains": 30.0}
# Fields whose value is one of a few kinds (the fd's type, a flag of the open): an equality
# on them is no more likely false than true.
_FEW_VALUES = frozenset({"fd.typechar", "fd.type", "fd.l4proto", "fd.sockfamily",
                         "fd.is_server", "fd.connected", "evt.dir", "evt.source",
                         "container.id", "evt.rawres", "evt.res", "evt.failed", "fd.num"})
# Fields answered by a lookup outside the event and the process table (the container
# runtime's metadata, DNS): dearest, so they are asked last.
_LOOKUP_PREFIXES = ("container.", "k8s.", "fd.sip.name", "fd.cip.name", "fd.lip.name",
                    "fd.rip.name")
Estimate = tuple[float, float]  # (cost, probability of being true)


def _order_key_and(est: Estimate) -> float:
    cost, p = est
    return cost / (1.0 - p) if p < 1.0 else float("inf")


def _order_key_or(est: Estimate) -> float:
    cost, p = est
    return cost / p if p > 0.0 else float("inf")


def _flatten(expr: And | Or) -> list[Expr]:
    """Children of nested `and`s (or `or`s) as one list: associativity."""
    out: list[Expr] = []
    for child in expr.children:
        if type(child) is type(expr):
            out.extend(_flatten(child))
        else:
            out.append(child)
    return out


_Node = Expr | FieldRef | Transform | Value | ListValue | ListRef | None


def _shape(node: _Node) -> object:
    """`node` as a hashable value without its offsets in the condition text: two nodes of
    one shape test the same thing (offsets only place error messages)."""
    if isinstance(node, And | Or):
        return (type(node).__name__, tuple(_shape(c) for c in node.children))
    if isinstance(node, Not):
        return ("not", _shape(node.child))
    if isinstance(node, Check):
        return ("check", _shape(node.left), node.op, _shape(node.right))
    if isinstance(node, FieldRef):
        return ("field", node.name, node.arg)
    if isinstance(node, Transform):
        return ("transform", node.func, _shape(node.inner))
    if isinstance(node, Value):
        return ("value", node.text, node.quoted)
    if isinstance(node, ListValue):
        return ("list", tuple(_shape(v) for v in node.items))
    if isinstance(node, ListRef):
        return ("listref", node.name)
    if isinstance(node, MacroRef):
        return ("macro", node.name)
    return None


def _factor_or(children: Sequence[Expr], pos: int) -> Expr | None:
    """The `or` of `children` with a conjunct several of them share pulled out once,
    distributivity backwards: `(a and x) or (a and y) or z` -> `(a and (x or y)) or z`
    (and `a or (a and y)` -> `a`), so `a` is tested once, not per child, and what is left
    of those children may merge (`x`, `y` on one field: one set). None when no two
    children share a conjunct. Falco's macros repeat conjuncts across the branches of an
    `or` (`(shell_procs and ...) or (shell_procs and ...)`)."""
    conjuncts = [_flatten(c) if isinstance(c, And) else [c] for c in children]
    shapes = [[_shape(c) for c in parts] for parts in conjuncts]
    counts: dict[object, int] = {}
    for row in shapes:
        for shape in set(row):
            counts[shape] = counts.get(shape, 0) + 1
    best = max(counts.values(), default=0)
    if best < 2:
        return None
    # The first shared conjunct shared most, in the order the condition wrote them.
    common = next(shape for row in shapes for shape in row if counts[shape] == best)
    members = [i for i, row in enumerate(shapes) if common in row]
    rests: list[Expr] = []
    absorbed = False  # a member that is the common conjunct alone: the whole is that
    for i in members:
        rest = [c for c, shape in zip(conjuncts[i], shapes[i], strict=True) if shape != common]
        if not rest:
            absorbed = True
            break
        rests.append(rest[0] if len(rest) == 1 else And(tuple(rest), pos))
    node = conjuncts[members[0]][shapes[members[0]].index(common)]
    factored = node if absorbed else And((node, Or(tuple(rests), pos)), pos)
    out = [factored if i == members[0] else c for i, c in enumerate(children)
           if i not in members[1:]]
    return out[0] if len(out) == 1 else Or(tuple(out), pos)


def _assume(expr: Expr, known: Callable[[Check], bool | None]) -> Expr | bool:
    """`expr` with each check `known` answers replaced by that answer, folded: True/False
    when that decides the whole; nested and/or flattened, one-child and/or unwrapped."""
    if isinstance(expr, And | Or):
        is_and = isinstance(expr, And)
        kids: list[Expr] = []
        for child in expr.children:
            found = _assume(child, known)
            if found is (not is_and):  # False in an and, True in an or: decides
                return found
            if found is is_and:  # the neutral constant drops out
                continue
            assert not isinstance(found, bool)
            if type(found) is type(expr):
                kids.extend(found.children)
            else:
                kids.append(found)
        if not kids:
            return is_and
        if len(kids) == 1:
            return kids[0]
        return And(tuple(kids), expr.pos) if is_and else Or(tuple(kids), expr.pos)
    if isinstance(expr, Not):
        found = _assume(expr.child, known)
        if isinstance(found, bool):
            return not found
        return found.child if isinstance(found, Not) else Not(found, expr.pos)
    if isinstance(expr, Check):
        answer = known(expr)
        if answer is not None:
            return answer
    return expr


# ---- code generation -----------------------------------------------------------------------

class _CodeGen:
    def __init__(self, expander: Expander, *, macro_refs_ok: bool = False,
                 known_type: str | None = None, reorder: bool = False) -> None:
        self.expander = expander
        # Test the children of and/or cheapest-to-decide first (see "evaluation order").
        self.reorder = reorder
        self._estimates: dict[int, tuple[Expr, Estimate]] = {}
        self._implied: dict[int, tuple[Expr, list[tuple[Expr, frozenset[str]]]]] = {}
        self._key_fields: dict[str, BoundField] = {}  # every field a guard is keyed by
        # Validating a macro on its own: a reference to another (existing) macro is fine.
        self.macro_refs_ok = macro_refs_ok
        # Generating for one event type: evt.type checks fold to constants.
        self.known_type = known_type
        self.ns: dict[str, object] = {
            "_to_bytes": _to_bytes, "_to_number": _to_number,
            "_OPEN_TYPES": OPEN_TYPES,
        }
        self.counter = 0
        self.const_names: dict[tuple[object, ...], str] = {}
        # Fields resolved once per generator: the same extractor each time it is read.
        self.bound: dict[object, BoundField] = {}
        self.fields: list[BoundField] = []
        self.needs: set[str] = set()
        # Fields read more than once in the function: computed once, on first use.
        self.shared: set[str] = set()
        self.memo: dict[str, str] = {}  # field text -> local computed lazily on first use
        self.eager: dict[str, str] = {}  # local -> cheap expression computed up front
        self.eager_by_field: dict[str, str] = {}
        # For code most events skip, and that reads few of its fields per event: fields
        # read more than once are computed on first use, not up front, and cheap ones
        # (an attribute or two) read again each time.
        self.lazy_shared = False

    def share_repeated_fields(self, exprs: Iterable[Expr]) -> None:
        counts: dict[str, int] = {}
        for expr in exprs:
            for text in _field_texts(expr):
                counts[text] = counts.get(text, 0) + 1
        self.shared = {text for text, n in counts.items() if n > 1}

    def _prologue_entries(self) -> list[tuple[str, str]]:
        entries = []
        if "_th" in self.needs:
            entries.append(("_th", EVENT_THREAD))
        if "_f" in self.needs:
            entries.append(("_f", EVENT_FD))
        entries.extend(self.eager.items())
        entries.extend((var, "_U") for var in self.memo.values())
        return entries

    def prologue(self) -> str:
        return "".join(f"    {var} = {code}\n" for var, code in self._prologue_entries())

    def split_prologue(self, top: str, elsewhere: Iterable[str] = ()) -> tuple[str, str]:
        """The prologue as two parts: what the code `top` reads (run first), and the rest,
        for the start of a block only some events reach (indented one more level); less
        the variables `elsewhere` (set where they are used)."""
        omitted = set(elsewhere)
        entries = [(var, code) for var, code in self._prologue_entries() if var not in omitted]
        top = "\n".join(line for line in top.splitlines() if not line.lstrip().startswith("#"))
        needed: set[str] = set()
        for var, code in reversed(entries):  # an entry's code reads only earlier entries
            if re.search(rf"(?<!\w){re.escape(var)}(?!\w)", top):
                needed.add(var)
                top += "\n" + code
        first = "".join(f"    {var} = {code}\n" for var, code in entries if var in needed)
        later = "".join(f"        {var} = {code}\n" for var, code in entries
                        if var not in needed)
        return first, later

    def const(self, value: object) -> str:
        """A name for `value` in the generated code's namespace; one name per value (the
        same object, or an equal text, number or set: equal ones behave the same in every
        operator), which keeps the generated source, and its compile time, small."""
        cls = value.__class__
        key: tuple[object, ...] = ((cls, value) if cls in _VALUE_CONSTS
                                   else ("id", id(value)))
        name = self.const_names.get(key)
        if name is None:
            name = self.const_names[key] = f"c{self.counter}"
            self.counter += 1
            self.ns[name] = value
        return name

    def temp(self) -> str:
        name = f"_t{self.counter}_"
        self.counter += 1
        return name

    def estimate(self, expr: Expr) -> Estimate:
        """(cost, P(true)) of testing `expr` with its children in their best order."""
        found = self._estimates.get(id(expr))
        if found is None:
            est = self._estimate(expr)
            self._estimates[id(expr)] = (expr, est)  # the node stays alive: its id stays its
            return est
        return found[1]

    def _estimate(self, expr: Expr) -> Estimate:
        if isinstance(expr, And | Or):
            is_and = isinstance(expr, And)
            ests = sorted((self.estimate(c) for c in _flatten(expr)),
                          key=_order_key_and if is_and else _order_key_or)
            cost, reach = 0.0, 1.0  # reach: the chance the next child is tested at all
            for c, p in ests:
                cost += reach * c
                reach *= p if is_and else 1.0 - p
            return cost, (reach if is_and else 1.0 - reach)
        if isinstance(expr, Not):
            cost, p = self.estimate(expr.child)
            return cost, 1.0 - p
        if not isinstance(expr, Check):
            return 15.0, 0.5
        folded = self.fold_type_check(expr)
        if folded is not None:
            return 0.0, 1.0 if folded == "True" else 0.0
        try:
            bf = self.bind(expr.left)
        except CompileError:
            return 15.0, 0.5  # reported when the check's code is generated
        cost = self._field_cost(bf)
        if isinstance(expr.right, Transform):
            try:
                inner = expr.right.inner if expr.right.func == "val" else expr.right
                cost += self._field_cost(self.bind(inner))
            except CompileError:
                pass
        op = "=" if expr.op == "==" else expr.op
        cost += _OP_COST.get(op, 15.0)
        if bf.type is FieldType.IPNET:
            cost += 300.0
        if op == "exists":
            p = 0.9
        elif op in _MATCH_OPS:
            few = bf.type is FieldType.BOOL or bf.text in _FEW_VALUES
            p = 0.5 if few else 0.1
        elif op == "!=":
            p = 0.5 if bf.type is FieldType.BOOL or bf.text in _FEW_VALUES else 0.9
        else:
            p = 0.5
        return cost, p

    def _field_cost(self, bf: BoundField) -> float:
        """Rough ns to read the field: a local or an attribute, a helper, an extractor."""
        if bf.inline is not None and not bf.is_list:
            cost = 10.0 if not bf.helpers and _COSTLY_READ.search(bf.inline) is None else 120.0
        elif bf.text.startswith(_LOOKUP_PREFIXES):
            return 1000.0
        elif "[" in bf.text and bf.text.startswith(("proc.a", "proc.p")):
            cost = 500.0  # walks the ancestors
        elif bf.text.startswith(("proc.p", "proc.a")):
            cost = 350.0  # the parent, or every ancestor
        else:
            cost = 250.0
        return cost + (150.0 if bf.is_list else 0.0)

    def key_field(self, side: object) -> BoundField | None:
        """The field a check's side reads when it can key a guard group: a single plain
        value (text, number, flag: hashable; not a list, nor a set of networks)."""
        if not isinstance(side, FieldRef | Transform):
            return None
        if isinstance(side, Transform):
            if side.func != "val":
                return None
            side = side.inner
            if not isinstance(side, FieldRef):
                return None
        try:
            bf = self.bind(side)
        except CompileError:
            return None
        if bf.is_list or bf.type is FieldType.IPNET or bf.text in _PER_EVENT \
                or bf.text in _BULKY or bf.text.startswith(_PER_EVENT_PREFIXES):
            return None
        return bf

    def guard_key(self, expr: Expr) -> tuple[BoundField, ...] | None:
        """The fields whose values decide a conjunct, when it can be a guard: each field it
        reads is a plain value (fd.directory and fd.filename stand for the fd's type and
        name they are computed from), at most _GUARD_MAX_FIELDS of them. Sorted by name."""
        found: dict[str, BoundField] = {}
        for chk in _checks(expr):
            for side in (chk.left, chk.right):
                if isinstance(side, FieldRef | Transform):
                    bf = self.key_field(side)
                    if bf is None:
                        return None
                    for text in _KEY_ROOTS.get(bf.text, (bf.text,)):
                        if text not in found:
                            root = bf if text == bf.text else self.key_field(
                                FieldRef(text, None, 0))
                            if root is None:
                                return None
                            found[text] = root
        if not 1 <= len(found) <= _GUARD_MAX_FIELDS:
            return None
        self._key_fields.update(found)
        return tuple(found[name] for name in sorted(found))

    def implied_guards(self, expr: Expr) -> list[tuple[Expr, frozenset[str]]]:
        """Guards `expr` implies, with the fields each is keyed by: `expr` itself when it
        can be one; for an `and`, also its children's; for an `or`, also the `or` of each
        child's narrowest guard when every child has one (`(proc.name = nc and ...) or
        (proc.name = ncat and ...)` implies `proc.name = nc or proc.name = ncat`)."""
        found = self._implied.get(id(expr))
        if found is not None:
            return found[1]
        out: list[tuple[Expr, frozenset[str]]] = []
        key = self.guard_key(expr)
        if key is not None:
            out.append((expr, frozenset(bf.text for bf in key)))
        if isinstance(expr, And):
            for child in expr.children:
                out.extend(g for g in self.implied_guards(child) if g not in out)
        elif isinstance(expr, Or):
            parts: list[Expr] = []
            names: set[str] = set()
            for child in expr.children:
                options = self.implied_guards(child)
                if not options:
                    break
                best = min(options, key=lambda g: (len(g[1]), self._key_cost(g[1]),
                                                   self.estimate(g[0])[1]))
                parts.append(best[0])
                names |= best[1]
            else:
                if len(names) <= _GUARD_MAX_FIELDS and (not out or names != out[0][1]):
                    out.append((Or(tuple(parts), expr.pos), frozenset(names)))
        self._implied[id(expr)] = (expr, out)
        return out

    def _key_cost(self, names: Iterable[str]) -> float:
        return sum(self._field_cost(self._key_fields[n]) for n in names)

    def plan_guards(self, conjuncts: Sequence[Sequence[Expr]]) -> list[_Guards]:
        """Groups of guards shared by at least two rules (one rule alone gains nothing from
        a lookup: its conjunct is simply tested first). A guard is a conjunct itself or a
        weaker test it implies (then the conjunct still runs after it).

        Groups form first from likely-false guards (P(true) <= _GUARD_STRONG_P); rules
        none of those groups guard then group by guards no likelier true than
        _GUARD_MAX_P (`container.id != host`). A group is keyed by one set of fields and
        takes every guard over a subset of them (so keys are never combinations no guard
        asked for), but for fields of a few values (fd.typechar) it may grow by."""
        found: list[tuple[int, Expr, frozenset[str], float]] = []
        # Conjuncts a group's key decides, however likely true (`not fd.name in (...)`):
        # free to test along with the group's guards, once per key value.
        riders: list[tuple[int, Expr, frozenset[str], float]] = []
        for i, parts in enumerate(conjuncts):
            for part in parts:
                for guard, names in self.implied_guards(part):
                    p = self.estimate(guard)[1]
                    if p <= _GUARD_MAX_P:
                        found.append((i, guard, names, p))
                    elif guard is part:
                        riders.append((i, guard, names, p))
        fields = self._key_fields

        def few_values(names: frozenset[str] | set[str]) -> bool:
            return all(fields[n].type is FieldType.BOOL or n in _FEW_VALUES for n in names)

        def joins(names: frozenset[str], key: set[str]) -> bool:
            return names <= key or (key <= names and few_values(names - key))

        kept: list[set[str]] = []
        covered: set[int] = set()
        for strong in (True, False):
            rules_by_key: dict[frozenset[str], set[int]] = {}
            for i, _, names, p in found:
                if (p <= _GUARD_STRONG_P) == strong and (strong or i not in covered):
                    rules_by_key.setdefault(names, set()).add(i)
            fresh: list[tuple[set[str], set[int]]] = []
            # Keys guarding most rules first: each joins the first key that covers it (or
            # that it covers but for fields of a few values).
            for names in sorted(rules_by_key, key=lambda k: (-len(rules_by_key[k]), len(k),
                                                             sorted(k))):
                target = next((k for k in kept if joins(names, k)), None)
                if target is not None:
                    target |= names
                    covered |= rules_by_key[names]
                    continue
                entry = next((e for e in fresh if joins(names, e[0])), None)
                if entry is None:
                    fresh.append((set(names), set(rules_by_key[names])))
                else:
                    entry[0].update(names)
                    entry[1].update(rules_by_key[names])
            for key, rules in fresh:
                if len(rules) >= 2:
                    kept.append(key)
                    covered |= rules
        keys = kept
        groups = [_Guards(tuple(fields[name] for name in sorted(k))) for k in keys]
        for i, guard, names, _ in found:  # every guard a kept key covers filters its rule
            for group, k in zip(groups, keys, strict=True):
                if names <= k:
                    group.members.setdefault(i, []).append(guard)
                    break
        useful = [g for g in groups if len(g.members) >= 2 and self._saves(g)]
        for i, guard, names, _ in riders:
            for group in useful:
                if i in group.members and names <= {bf.text for bf in group.fields}:
                    group.members[i].append(guard)
                    break
        # A later group's key is not even read once the mask is 0, which only a group
        # guarding every guarded rule can make it on its own (the others leave the bits
        # of the rules they do not guard): those first, then the cheapest keys first.
        every = {i for g in useful for i in g.members}
        return sorted(useful, key=lambda g: (set(g.members) != every,
                                             sum(self._field_cost(bf) for bf in g.fields)))

    def _saves(self, group: _Guards) -> bool:
        """Whether the group's lookup costs less than testing its guards in their rules.
        Not for guards on fields of a few values as cheap as the lookup (`container.id !=
        host`, `fd.l4proto = tcp`: an attribute and a comparison, false about half the
        time): those are simply tested in their rules, cheapest first."""
        if not all(bf.type is FieldType.BOOL or bf.text in _FEW_VALUES for bf in group.fields):
            return True
        return sum(self.estimate(g)[0] for guards in group.members.values()
                   for g in guards) > _GUARD_LOOKUP_COST

    def guard_function(self, name: str, cache: str, group: _Guards, bit: Mapping[int, int],
                       other: int) -> tuple[str, str]:
        """`name(key, ev, st, _th, _f)`: the group's mask for the event's key (bit set: that
        rule's guards held, or the rule has none here), remembered in `cache` per key. Its
        own code generator: the fields it reads are its own locals. Returns the source and
        the arguments a call passes for `_th, _f` (None for those it does not read)."""
        sub = _CodeGen(self.expander, known_type=self.known_type, reorder=True)
        sub.ns, sub.const_names, sub.bound = self.ns, self.const_names, self.bound
        sub.counter = self.counter
        sub.share_repeated_fields(c for parts in group.members.values() for c in parts)
        conditions = {i: parts[0] if len(parts) == 1 else And(tuple(parts), 0)
                      for i, parts in group.members.items()}

        def tests(known: Callable[[Check], bool | None], indent: str) -> str:
            bits_by_code: dict[str, int] = {}  # rules guarded by the same test share it
            for i, cond in conditions.items():
                found = _assume(cond, known)
                code = found if isinstance(found, Expr) else And((), 0) if found else None
                text = "False" if code is None else sub.gen(code)
                if text != "False":
                    bits_by_code[text] = bits_by_code.get(text, 0) | bit[i]
            return "".join(f"{indent}mask |= {bits}\n" if code == "True" else
                           f"{indent}if {code}:\n{indent}    mask |= {bits}\n"
                           for code, bits in bits_by_code.items())

        text_filter = self._text_filter(group, conditions.values())
        if text_filter is None:
            body = tests(lambda chk: None, "    ")
        else:
            # A value no covered check can hold (most new paths): those checks are false.
            bf = self.bind(FieldRef(text_filter.field, None, 0))
            value = sub.value_code(bf)
            assign = ""
            if not value.isidentifier():
                assign, value = f"    _v_ = {value}\n", "_v_"
            covered = text_filter.covered
            rest = tests(lambda chk: False if id(chk) in covered else None, "        ")
            body = (f"{assign}    if {text_filter.code(value, bf.nullable, sub.const)}:\n"
                    + (tests(lambda chk: None, "        ") or "        pass\n")
                    + (f"    else:\n{rest}" if rest else ""))
        self.counter = sub.counter
        self.needs |= sub.needs
        # The key holds the group's field values, read by the caller: the locals the
        # function would compute them into (read up front, or remembered on first use)
        # start from the key instead of reading them again.
        from_key = [sub.eager_by_field.get(bf.text) or sub.memo.get(bf.text) or "_"
                    for bf in group.fields]
        prologue = "".join(line for line in sub.prologue().splitlines(keepends=True)
                           if not line.startswith(("    _th = ", "    _f = "))
                           and line.split(" = ", 1)[0].strip() not in from_key)
        if any(var != "_" for var in from_key):
            prologue = f"    {', '.join(from_key)} = key\n" + prologue if len(from_key) > 1 \
                else f"    {from_key[0]} = key\n" + prologue
        context = ", ".join(v if v in sub.needs else "None" for v in ("_th", "_f"))
        return (f"def {name}(key, ev, st, _th, _f):\n{prologue}    mask = {other}\n"
                + body
                + f"    if len({cache}) >= {GUARD_CACHE_MAX}:\n        {cache}.clear()\n"
                  f"    {cache}[key] = mask\n    return mask\n"), context

    def _text_filter(self, group: _Guards, conditions: Iterable[Expr]) -> _TextFilter | None:
        """The _TextFilter for the group's text key field that covers the most of the
        conditions' checks, when it covers at least _TEXT_FILTER_MIN of them."""
        candidates = {bf.text: _TextFilter(bf.text) for bf in group.fields
                      if bf.type is FieldType.STRING and bf.text not in _FEW_VALUES}
        if not candidates:
            return None
        for cond in conditions:
            for chk in _checks(cond):
                if not isinstance(chk.left, FieldRef) or chk.left.arg is not None:
                    continue
                field = chk.left.name
                found = candidates.get(_DERIVED_TEXT.get(field, field))
                right = chk.right
                if found is None or self.bind(chk.left).type is not FieldType.STRING:
                    continue
                if isinstance(right, Value):
                    found.cover(chk, field, [right.text])
                elif isinstance(right, ListValue | ListRef):
                    found.cover(chk, field, [v.text for v in self.expander.list_items(right)])
        best = max(candidates.values(), key=lambda f: len(f.covered))
        return best if len(best.covered) >= _TEXT_FILTER_MIN else None

    def _ordered(self, children: Sequence[Expr], is_and: bool) -> Sequence[Expr]:
        if not self.reorder:
            return children
        # Stable: equal estimates keep the order the rule's author wrote.
        return sorted(children, key=lambda c: (_order_key_and if is_and else _order_key_or)(
            self.estimate(c)))

    def _gen_junction(self, children: Sequence[Expr | str], joiner: str, *,
                      absorbing: str) -> str:
        """`and`/`or` of the children's code (a str child is code already), folded: a
        child equal to `absorbing` decides the whole (False for and, True for or), the
        other constant drops out."""
        neutral = "True" if absorbing == "False" else "False"
        parts = []
        for child in children:
            code = child if isinstance(child, str) else self.gen(child)
            if code == absorbing:
                return absorbing
            if code != neutral and code not in parts:  # `x and x` is `x`: tested once
                parts.append(code)
        if not parts:
            return neutral
        return parts[0] if len(parts) == 1 else "(" + f" {joiner} ".join(parts) + ")"

    def _mergeable(self, expr: Expr) -> tuple[str, str] | None:
        """(field, kind) when `expr` is a test an `or` may merge with its likes: one
        text prefix/suffix, or equality/membership, on a plain single-valued field."""
        if not isinstance(expr, Check) or not isinstance(expr.left, FieldRef) \
                or expr.op not in ("=", "==", "in", "startswith", "endswith", "contains",
                                   "icontains") \
                or self.fold_type_check(expr) is not None:
            return None
        try:
            bf = self.bind(expr.left)
        except CompileError:
            return None
        if bf.is_list or bf.type not in (FieldType.STRING, FieldType.INT, FieldType.IPADDR) \
                or bf.text == "evt.buffer" or (bf.inline is not None and bf.inline[:1] == "'"):
            return None
        if expr.op in ("startswith", "endswith", "contains", "icontains"):
            if bf.type is not FieldType.STRING or not isinstance(expr.right, Value):
                return None
            return bf.text, expr.op
        if expr.op == "in" and not isinstance(expr.right, (ListValue, ListRef)):
            return None
        if expr.op != "in" and not isinstance(expr.right, Value):
            return None
        return bf.text, "in"

    def _merged(self, children: Sequence[Expr], *, negated: bool = False) -> list[Expr | str]:
        """The children of an `or`, those testing one field the same way merged into one
        test: `x.startswith((a, b))`, `x in {a, b, c}` (true exactly when one of the
        merged tests is); with `negated`, the children of an `and` that are `not` of such
        tests: `not x.startswith((a, b))` (De Morgan). Each merged test takes the place of
        its first member."""
        def kind_of(child: Expr) -> tuple[str, str] | None:
            if negated:
                return self._mergeable(child.child) if isinstance(child, Not) else None
            return self._mergeable(child)

        def check_of(child: Expr) -> Check:
            return cast(Check, child.child if negated and isinstance(child, Not) else child)

        groups: dict[tuple[str, str], list[Check]] = {}
        for child in children:
            kind = kind_of(child)
            if kind is not None:
                groups.setdefault(kind, []).append(check_of(child))
        out: list[Expr | str] = []
        done: set[tuple[str, str]] = set()
        for child in children:
            kind = kind_of(child)
            members = groups.get(kind) if kind is not None else None
            if kind is None or members is None or len(members) < _MERGE_MIN.get(kind[1], 2):
                out.append(child)
            elif kind not in done:
                done.add(kind)
                code = self._merged_check(members, kind[1])
                out.append(f"(not {code})" if negated else code)
        return out

    def _merged_check(self, checks: Sequence[Check], kind: str) -> str:
        bf = self.bind(checks[0].left)
        self.fields.append(bf)
        for chk in checks:
            allowed = _OPS_BY_TYPE[bf.type]
            op = "=" if chk.op == "==" else chk.op
            if op not in allowed:
                raise CompileError(f"operator '{chk.op}' cannot be used with "
                                   f"{bf.type.value} field '{bf.text}'", chk.op_pos)
        value = self.value_code(bf)
        if kind == "in":
            found: list[object] = []
            for chk in checks:
                found.extend(self.literal_set(chk, bf) if chk.op == "in"
                             else [self.single(chk, bf)])
            return f"({value} in {self.const(frozenset(found))})"
        texts = [str(self.single(chk, bf)) for chk in checks]
        if kind in ("contains", "icontains"):
            # One search for any of the needles: one C call instead of one test each.
            lower = kind == "icontains"
            search = re.compile("|".join(re.escape(t.lower() if lower else t) for t in texts))
            test = f"{self.const(search.search)}({{x}}{'.lower()' if lower else ''}) is not None"
        else:
            test = f"{{x}}.{kind}({self.const(tuple(texts))})"
        if not bf.nullable:
            return f"({test.format(x=value)})"
        if value.isidentifier():
            return f"({value} is not None and {test.format(x=value)})"
        t = self.temp()
        return f"(({t} := {value}) is not None and {test.format(x=t)})"

    def simplify(self, expr: Expr) -> Expr | bool:
        """`expr` with its evt.type checks folded for the known type (True/False when the
        whole folds), nested and/or flattened, one-child and/or unwrapped."""
        def folded(chk: Check) -> bool | None:
            code = self.fold_type_check(chk)
            return None if code is None else code == "True"

        return _assume(expr, folded)

    def gen(self, expr: Expr) -> str:
        """Code for `expr`; exactly "True"/"False" when it folds to a constant."""
        if isinstance(expr, And):
            if not self.reorder:
                return self._gen_junction(expr.children, "and", absorbing="False")
            return self._gen_junction(self._merged(self._ordered(_flatten(expr), True),
                                                   negated=True),
                                      "and", absorbing="False")
        if isinstance(expr, Or):
            if not self.reorder:
                return self._gen_junction(expr.children, "or", absorbing="True")
            children = _flatten(expr)
            factored = _factor_or(children, expr.pos)
            if factored is not None:
                return self.gen(factored)
            return self._gen_junction(self._merged(self._ordered(children, False)),
                                      "or", absorbing="True")
        if isinstance(expr, Not):
            code = self.gen(expr.child)
            if code in ("True", "False"):
                return "False" if code == "True" else "True"
            return f"(not {code})"
        if isinstance(expr, MacroRef):
            if self.macro_refs_ok and expr.name in self.expander.macros:
                return "True"
            raise CompileError(f"unknown macro '{expr.name}'", expr.pos)
        return self.check(expr)

    def bind(self, left: FieldRef | Transform) -> BoundField:
        if isinstance(left, FieldRef):
            key: object = (left.name, left.arg)
            found = self.bound.get(key)
            if found is not None:
                return found
        try:
            if isinstance(left, FieldRef):
                found = self.bound[key] = resolve_field(left.name, left.arg)
                return found
            if left.func == "val":
                raise CompileError("val() belongs on the right of an operator", left.pos)
            return apply_transformer(left.func, self.bind(left.inner))
        except UnknownFieldError as err:
            raise CompileError(str(err), left.pos) from None

    def value_code(self, bf: BoundField) -> str:
        if bf.inline is not None:
            self.needs |= bf.needs
            self.ns.update(bf.helpers)
            code = bf.inline
            cheap = not bf.helpers and _COSTLY_READ.search(code) is None
        else:
            code = f"{self.const(bf.extract)}(ev, st)"
            cheap = False
        # A list field is iterated by a generator, whose iterable may not assign a local.
        if bf.text not in self.shared or bf.is_list:
            return code
        if cheap:
            # Plain attribute reads off `ev`/`_th`/`_f`: one local read beats re-evaluating.
            if code.startswith("ev.") and code[3:].isidentifier():
                return code  # ev.comm and friends are already a single attribute load
            var = self.eager_by_field.get(bf.text)
            if var is not None:
                return var
            if self.lazy_shared:
                return code  # read again where needed: cheaper than remembering it
            var = self.eager_by_field[bf.text] = f"_e{len(self.eager)}_"
            self.eager[var] = code
            return var
        var = self.memo.get(bf.text)
        if var is None:
            var = self.memo[bf.text] = f"_m{len(self.memo)}_"
            self.ns["_U"] = _UNSET
        return f"({var} if {var} is not _U else ({var} := {code}))"

    def fold_type_check(self, chk: Check) -> str | None:
        if self.known_type is None or not isinstance(chk.left, FieldRef) \
                or chk.left.name != "evt.type" or chk.left.arg is not None:
            return None
        if chk.op in ("=", "==", "!=") and isinstance(chk.right, Value):
            equal = chk.right.text == self.known_type
            return "True" if equal == (chk.op != "!=") else "False"
        if chk.op in ("in", "intersects") and isinstance(chk.right, (ListValue, ListRef)):
            names = {v.text for v in self.expander.list_items(chk.right)}
            return "True" if self.known_type in names else "False"
        return None

    def check(self, chk: Check) -> str:
        folded = self.fold_type_check(chk)
        if folded is not None:
            return folded
        bf = self.bind(chk.left)
        self.fields.append(bf)
        op = "=" if chk.op == "==" else chk.op
        allowed = _OPS_BY_TYPE[bf.type]
        if op not in allowed:
            raise CompileError(
                f"operator '{chk.op}' cannot be used with {bf.type.value} field '{bf.text}'",
                chk.op_pos)
        value = self.value_code(bf)
        if op == "exists":
            if bf.is_list:
                return f"bool({value})"
            return "True" if not bf.nullable else f"({value} is not None)"
        if isinstance(chk.right, Transform):
            return self.field_compare(chk, bf, value, op)
        if bf.is_list:
            if op in ("in", "intersects"):
                c = self.const(frozenset(self.literal_set(chk, bf)))
                return f"(not {c}.isdisjoint({value}))"
            y = self.temp()
            pred = self.predicate(chk, bf, op, y, nullable=True)
            return f"any({pred} for {y} in {value})"
        if bf.type is FieldType.BOOL and op in ("=", "!=") and not bf.nullable:
            want = self.single(chk, bf) is True
            return value if want == (op == "=") else f"(not {value})"
        if bf.inline is not None and bf.inline.startswith("'") and op in ("=", "!=") \
                and isinstance(chk.right, Value):
            # A constant field (evt.dir, evt.source) compared with a literal.
            same = bf.extract(None, None) == self.literal(chk, bf, chk.right)  # type: ignore[arg-type]
            return "True" if same == (op == "=") else "False"
        t = self.temp()
        pred = self.predicate(chk, bf, op, t, nullable=bf.nullable)
        # `==` and set membership are already false for None, so those need no guard.
        none_safe = op in ("=", "in", "intersects") and bf.type is not FieldType.IPNET
        if value.isidentifier() or ((none_safe or not bf.nullable) and pred.count(t) == 1):
            if value.isidentifier() and bf.nullable and not none_safe:
                return f"({value} is not None and {pred.replace(t, value)})"
            return pred.replace(t, value)
        return f"(({t} := {value}) is not None and {pred})"

    def literal(self, chk: Check, bf: BoundField, val: Value) -> object:
        text = val.text
        ftype = bf.type
        if ftype is FieldType.INT:
            num = _to_number(text)
            if num is None:
                raise CompileError(
                    f"'{text}' is not a number (field '{bf.text}' is numeric)", val.pos)
            return num
        if ftype is FieldType.BOOL:
            lowered = text.lower()
            if lowered not in ("true", "false"):
                raise CompileError(
                    f"'{text}' is not true or false (field '{bf.text}' is boolean)", val.pos)
            return lowered == "true"
        if ftype is FieldType.IPADDR:
            try:
                return str(ipaddress.ip_address(text))
            except ValueError:
                raise CompileError(
                    f"'{text}' is not an IP address (field '{bf.text}')", val.pos) from None
        if ftype is FieldType.IPNET:
            try:
                return ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise CompileError(
                    f"'{text}' is not an IP network (field '{bf.text}')", val.pos) from None
        return text

    def literal_set(self, chk: Check, bf: BoundField) -> list[object]:
        right = chk.right
        if isinstance(right, Value):
            found = [self.literal(chk, bf, right)]
        elif isinstance(right, (ListValue, ListRef)):
            found = [self.literal(chk, bf, v) for v in self.expander.list_items(right)]
        else:
            raise CompileError(f"operator '{chk.op}' needs a value", chk.op_pos)
        if bf.on_literals is not None:
            bf.on_literals(found)
        return found

    def single(self, chk: Check, bf: BoundField) -> object:
        if isinstance(chk.right, Value):
            found = self.literal(chk, bf, chk.right)
            if bf.on_literals is not None:
                bf.on_literals([found])
            return found
        raise CompileError(f"operator '{chk.op}' takes one value, not a list", chk.op_pos)

    def predicate(self, chk: Check, bf: BoundField, op: str, x: str, *, nullable: bool) -> str:
        """Boolean code testing value `x` (known non-None unless `nullable` and the op needs it;
        the caller guards scalar None) against the check's literal(s)."""
        guard = f"{x} is not None and " if nullable and bf.is_list else ""
        ftype = bf.type
        if op in ("in", "intersects", "pmatch") and not isinstance(
                chk.right, (ListValue, ListRef)):
            raise CompileError(f"operator '{chk.op}' needs a list: (a, b, ...)", chk.op_pos)
        if op in ("in", "intersects"):
            if ftype is FieldType.IPNET:
                nets = tuple(self.literal_set(chk, bf))
                return f"{self.const(_network_matcher(nets))}({x})"
            c = self.const(frozenset(self.literal_set(chk, bf)))
            return f"({x} in {c})"
        if op == "pmatch":
            items = [str(v) for v in self.literal_set(chk, bf)]
            c = self.const(_make_pmatch(items))
            return f"({guard}{c}({x}))"
        lit = self.single(chk, bf)
        if ftype is FieldType.IPNET:
            inner = f"{self.const(_network_matcher((lit,)))}({x})"
            return inner if op == "=" else f"(not {inner})"
        if op in _PY_CMP:
            if ftype is FieldType.STRING and op in _NUMERIC_OPS:
                # Text fields (evt.arg.*) compare numerically with a number, as in Falco.
                c = self.const(_to_number(lit))
                n = self.temp()
                return f"(({n} := _to_number({x})) is not None and {n} {_PY_CMP[op]} {c})"
            c = self.const(lit)
            if op == "=":
                return f"({x} == {c})"
            return f"({guard}{x} {_PY_CMP[op]} {c})"
        text = str(lit)
        if op in _TEXT_OPS:
            c = self.const(text.lower() if op == "icontains" else text)
            return f"({guard}{_TEXT_OPS[op].format(needle=c, text=x)})"
        if op in ("bcontains", "bstartswith"):
            try:
                needle = bytes.fromhex(text)
            except ValueError:
                raise CompileError(
                    f"'{text}' is not a hex byte string (operator '{op}')",
                    chk.right.pos if isinstance(chk.right, Value) else chk.op_pos) from None
            c = self.const(needle)
            if op == "bcontains":
                return f"({guard}{c} in _to_bytes({x}))"
            return f"({guard}_to_bytes({x}).startswith({c}))"
        if op in ("glob", "iglob"):
            c = self.const(_glob_regex(text, op == "iglob"))
            return f"({guard}{c}({x}) is not None)"
        if op == "regex":
            try:
                rx = re.compile(text)
            except re.error as err:
                raise CompileError(f"bad regular expression '{text}': {err}",
                                   chk.op_pos) from None
            return f"({guard}{self.const(rx.search)}({x}) is not None)"
        raise CompileError(f"unsupported operator '{chk.op}'", chk.op_pos)

    def field_compare(self, chk: Check, bf: BoundField, value: str, op: str) -> str:
        right = chk.right
        assert isinstance(right, Transform)
        inner_bf = self.bind(right.inner if right.func == "val" else right)
        if bf.is_list or inner_bf.is_list:
            raise CompileError("field comparisons need single-valued fields", right.pos)
        rcode = self.value_code(inner_bf)
        x, r = self.temp(), self.temp()
        prefix = f"({x} := {value}) is not None and ({r} := {rcode}) is not None and "
        if op in _PY_CMP:
            return f"({prefix}{x} {_PY_CMP[op]} {r})"
        if op in _TEXT_OPS:
            needle = f"str({r}).lower()" if op == "icontains" else f"str({r})"
            return f"({prefix}{_TEXT_OPS[op].format(needle=needle, text=f'str({x})')})"
        raise CompileError(f"operator '{chk.op}' cannot compare two fields", chk.op_pos)


def compile_condition(expr: Expr, expander: Expander, label: str) -> MatchFn:
    """Generate and compile `match(ev, st) -> bool` for a macro-expanded condition."""
    gen = _CodeGen(expander)
    gen.share_repeated_fields([expr])
    body = gen.gen(expr)
    source = f"def match(ev, st):\n{gen.prologue()}    return bool({body})\n"
    code = compile(source, f"<condition of {label}>", "exec")
    namespace = dict(gen.ns)
    exec(code, namespace)
    fn = namespace["match"]
    assert callable(fn)
    fn.__doc__ = source
    return fn


# A guard group's remembered masks, per key value, before it starts over (a bound on memory
# for fields with many values, e.g. file names).
GUARD_CACHE_MAX = 4096
# A conjunct guards its rule when it is likely false (see _CodeGen.estimate); one that is
# false about half the time only when the rule has no likelier-false one ...
_GUARD_STRONG_P = 0.45
_GUARD_MAX_P = 0.5
# Tests of one field an `or` merges into one from this many on (see _CodeGen._merged):
# one regular expression searching for any of several texts beats a few `in` tests only.
_MERGE_MIN = {"contains": 4, "icontains": 4}
# Rough ns to look a group's mask up for the event's key and apply it (see _Guards).
_GUARD_LOOKUP_COST = 80.0
# A guard's key misses its memo with a new text (a path): a text filter (see _TextFilter)
# first, when it spares at least this many checks.
_TEXT_FILTER_MIN = 2
# ... and its result is decided by at most this many fields, each a plain value (see
# _CodeGen.guard_key).
_GUARD_MAX_FIELDS = 3
# Fields whose value is new with (nearly) every event: a poor key, never remembered.
_PER_EVENT = frozenset({"evt.num", "evt.rawtime", "evt.rawtime.s", "evt.args", "evt.buffer",
                        "proc.duration", "proc.ppid.duration"})
_PER_EVENT_PREFIXES = ("evt.time", "evt.datetime", "evt.arg.", "evt.rawarg.")
# Fields whose text is large and nearly unique per process (the whole environment, KBs):
# a key that rarely repeats, and each remembered one would be kept in memory.
_BULKY = frozenset({"proc.env"})
# Fields computed from others alone: a guard over them is keyed by those.
_KEY_ROOTS = {"fd.directory": ("fd.name", "fd.typechar"),
              "fd.filename": ("fd.name", "fd.typechar")}


# Operators whose truth on a text implies something cheap to test about that text (see
# _TextFilter).
_POSITIVE_TEXT_OPS = frozenset({"=", "==", "in", "intersects", "startswith", "endswith",
                                "contains", "glob", "pmatch"})
_GLOB_SPECIALS = "*?[]"
# Fields computed from another text field's value: fd.directory and fd.filename are what
# precedes and follows the last "/" of fd.name (see runtime/engine/fields.py).
_DERIVED_TEXT = {"fd.directory": "fd.name", "fd.filename": "fd.name"}


def _glob_literals(pattern: str) -> tuple[str, str, bool]:
    """(literal prefix, literal suffix, whether the pattern has no wildcard at all) of a
    glob: what any text it matches must start and end with."""
    specials = [i for i, ch in enumerate(pattern) if ch in _GLOB_SPECIALS]
    if not specials:
        return pattern, pattern, True
    return pattern[:specials[0]], pattern[specials[-1] + 1:], False


class _TextFilter:
    """A test of one text field's value that is false only when every check it covers is
    false: the positive checks (`=`, `in`, `startswith`, `contains`, `glob`, ...) on that
    field and on the fields computed from it (fd.directory, fd.filename from fd.name).

    A guard group keyed by fd.name misses its memo on every new path (/tmp/out.123, files
    under /proc/<pid>/): then its conjuncts, dozens of checks for Falco's rules, run for
    that one path. Most paths satisfy none of them; this test says so in a few C calls (a
    set, `startswith`/`endswith` with tuples, a few `in`), and the conjuncts are then
    tested with every covered check taken as false, which leaves the few checks it does
    not cover (`fd.typechar = f`, `!=`). Sound by construction: each check adds a
    condition its truth implies (fd.directory = /etc implies fd.name starts with /etc/,
    fd.filename = x that fd.name ends with /x; a glob, its literal prefix or suffix);
    those two derived fields follow the last "/", so a text without one takes the full
    tests, as does a missing value.
    """

    def __init__(self, field: str) -> None:
        self.field = field
        self.exact: set[str] = set()
        self.prefixes: set[str] = set()
        self.suffixes: set[str] = set()
        self.needles: set[str] = set()
        self.derived = False  # covers fd.directory/fd.filename checks: needs a "/"
        self.covered: set[int] = set()  # ids of the checks it covers

    def cover(self, chk: Check, field: str, literals: Sequence[str]) -> None:
        """Cover `chk` (on `field`, this filter's or one computed from it, against
        `literals`) when its truth implies something this filter tests."""
        op = "=" if chk.op in ("==", "in", "intersects") else chk.op
        if op not in _POSITIVE_TEXT_OPS or not literals:
            return
        if op == "pmatch":
            exact, below = _pmatch_parts(literals)
            found = [self._implied(field, "=", v) for v in exact]
            found += [self._implied(field, "startswith", v) for v in below]
        else:
            found = [self._implied(field, op, v) for v in literals]
        if any(f is None for f in found):
            return
        for implied in found:
            assert implied is not None
            for kind, text in implied:
                getattr(self, kind).add(text)
        self.covered.add(id(chk))
        self.derived |= field != self.field

    def _implied(self, field: str, op: str, value: str) -> list[tuple[str, str]] | None:
        """What `field <op> value` implies of this filter's text, as (kind, text) pairs of
        which one holds; None when nothing cheap is implied."""
        if op == "glob":
            prefix, suffix, plain = _glob_literals(value)
            if plain:
                return self._implied(field, "=", value)
            if prefix:
                return self._implied(field, "startswith", prefix)
            return self._implied(field, "endswith", suffix) if suffix else None
        if field == self.field:
            kind = {"=": "exact", "startswith": "prefixes", "endswith": "suffixes",
                    "contains": "needles"}[op]
            return [(kind, value)]
        if field == "fd.directory":
            # The directory is the text before the last "/" ("/" when that is the first
            # character), or the whole text for a directory's own fd.
            if op == "=":
                return [("exact", value), ("prefixes", "/" if value == "/" else value + "/")]
            return [("prefixes" if op == "startswith" else "needles", value)]
        # fd.filename: the text after the last "/".
        if op == "=":
            return [("suffixes", "/" + value)]
        if op == "startswith":
            return [("needles", "/" + value)]
        return [("suffixes" if op == "endswith" else "needles", value)]

    def code(self, value: str, nullable: bool, const: Callable[[object], str]) -> str:
        """Code that is false only when no covered check can hold for the text `value`
        (a local name).

        A text implied by another is dropped (a prefix that starts with a shorter one, an
        exact text that starts with a kept prefix...): the shorter test holds whenever the
        longer would. Prefixes and suffixes go in buckets by the character next to the
        leading one and by the last one, so a text that can meet none of them costs an
        index and a dict test, not a scan of every one. With Falco's rules, callgrind over
        2,000 new paths: `startswith` over 17 prefixes ~2,000 instructions a path and
        `endswith` over 35 suffixes ~2,800; bucketed, ~850 and ~530, and the guard call
        8,907 -> 5,553 (bench/bench_replay.py --by-class: the "openat /tmp/out.#" row).
        """
        exact, prefixes, suffixes, needles = _pruned(self.exact, self.prefixes,
                                                     self.suffixes, self.needles)
        parts = [f"{value} is None"] if nullable else []
        if self.derived:
            parts.append(f"'/' not in {value}")
        if exact:
            parts.append(f"{value} in {const(frozenset(exact))}")
        if prefixes and min(map(len, prefixes)) >= 2:
            # Every prefix has a second character, which a text it starts must share.
            by_second = const(_buckets(prefixes, lambda text: text[1]))
            parts.append(f"({value}[1:2] in {by_second} and "
                         f"{value}.startswith({by_second}[{value}[1:2]]))")
        elif prefixes:
            parts.append(f"{value}.startswith({const(tuple(sorted(prefixes)))})")
        if suffixes and min(map(len, suffixes)) >= 1:
            # `{value} and`: an empty text has no last character and ends with no suffix.
            by_last = const(_buckets(suffixes, lambda text: text[-1]))
            parts.append(f"({value} and {value}[-1] in {by_last} and "
                         f"{value}.endswith({by_last}[{value}[-1]]))")
        elif suffixes:
            parts.append(f"{value}.endswith({const(tuple(sorted(suffixes)))})")
        parts.extend(f"{const(needle)} in {value}" for needle in sorted(needles))
        return " or ".join(parts)


def _pruned(exact: set[str], prefixes: set[str], suffixes: set[str], needles: set[str]
            ) -> tuple[set[str], set[str], set[str], set[str]]:
    """The texts of a _TextFilter without those another one implies: a needle inside a
    longer needle, prefix or suffix, or an exact text, makes that one redundant (it is in
    any text they hold for), and so does a prefix for a longer prefix or an exact text
    that starts with it, and a suffix for those that end with it."""
    needles = {n for n in needles if not any(m != n and m in n for m in needles)}

    def needled(text: str) -> bool:
        return any(n in text for n in needles)

    prefixes = {p for p in prefixes if not needled(p)
                and not any(q != p and p.startswith(q) for q in prefixes)}
    suffixes = {s for s in suffixes if not needled(s)
                and not any(t != s and s.endswith(t) for t in suffixes)}
    exact = {e for e in exact if not needled(e) and not e.startswith(tuple(prefixes))
             and not e.endswith(tuple(suffixes))}
    return exact, prefixes, suffixes, needles


def _buckets(texts: set[str], char_of: Callable[[str], str]) -> dict[str, tuple[str, ...]]:
    """`texts` grouped by one character of each, for a dict test before the scan."""
    grouped: dict[str, list[str]] = {}
    for text in sorted(texts):
        grouped.setdefault(char_of(text), []).append(text)
    return {char: tuple(group) for char, group in grouped.items()}


def _checks(expr: Expr) -> Iterable[Check]:
    if isinstance(expr, And | Or):
        for child in expr.children:
            yield from _checks(child)
    elif isinstance(expr, Not):
        yield from _checks(expr.child)
    elif isinstance(expr, Check):
        yield expr


class _Guards:
    """Conjuncts of several rules over the same few fields, tested once per distinct value.

    Falco's rules mostly open with a test of a field or two against constants (`fd.name in
    (sensitive_file_names)`, `proc.name in (shell_binaries)`, `container.id != host`...)
    that is false for nearly every event. A group gathers, over the rules of one event
    type, the conjuncts that read the same fields: per event the fields' values are looked
    up in a dict remembering which of the group's conjuncts held for that value (computed
    on first sight: the conjuncts are pure functions of the value), so the group costs one
    lookup whatever its size, and a rule's remaining conjuncts run only when all its
    guards held. The answer is the same as testing every conjunct: an `and` holds only if
    each conjunct does, and a conjunct's result depends on nothing but those fields.
    """

    def __init__(self, fields: tuple[BoundField, ...]) -> None:
        self.fields = fields
        # rule index -> its conjuncts in this group
        self.members: dict[int, list[Expr]] = {}


# The guarded block tests its rules' bits per chunk from this many rules on, chunks of
# at least _CHUNK_MIN rules (see _guarded_block).
_CHUNKED_FROM = 10
_CHUNK_MIN = 4


@dataclass(frozen=True, slots=True)
class _GuardedTest:
    """One guarded rule's test in a per-type matcher: its bit in the guards' mask `_m_`,
    the comment naming it, its remaining condition (code, "True" when none) and what a
    hit does (code, one level indented)."""

    bit: int
    comment: str
    condition: str
    on_hit: str


def _guarded_block(tests: Sequence[_GuardedTest], memo_vars: Iterable[str], top: str
                   ) -> tuple[str, set[str]]:
    """The body of `if _m_:`, testing the guarded rules; with the memo variables only one
    rule reads (and not `top`, the code before the block) set to unknown inside that
    rule's branch, not at the block's start. Returns it and those variables.

    Few of a type's guarded rules remain for any one event (their guards held): with many
    of them, the block tests the bits of a chunk of them at once, then the chunk's own,
    about 2*sqrt(n) tests of `_m_` instead of n."""
    def uses(var: str, code: str) -> bool:
        return re.search(rf"(?<!\w){re.escape(var)}(?!\w)", code) is not None

    readers = {var: [i for i, t in enumerate(tests) if uses(var, t.condition)]
               for var in memo_vars if not uses(var, top)}
    local = {var for var, found in readers.items() if len(found) == 1}
    size = max(_CHUNK_MIN, math.isqrt(len(tests)) + 1) if len(tests) >= _CHUNKED_FROM \
        else len(tests)
    out: list[str] = []
    for start in range(0, len(tests), max(size, 1)):
        chunk = tests[start:start + size]
        indent = "        "
        if len(chunk) < len(tests):
            out.append(f"{indent}if _m_ & {sum(t.bit for t in chunk)}:\n")
            indent += "    "
        for n, test in enumerate(chunk, start):
            mine = sorted(v for v in local if readers[v] == [n])
            out.append(textwrap.indent(test.comment, indent))
            if mine:
                out.append(f"{indent}if _m_ & {test.bit}:\n{indent}    {' = '.join(mine)} = _U\n")
                if test.condition == "True":
                    out.append(textwrap.indent(test.on_hit, indent))
                else:
                    out.append(f"{indent}    if {test.condition}:\n"
                               + textwrap.indent(test.on_hit, indent + "    "))
            else:
                cond = f"_m_ & {test.bit}" + (
                    "" if test.condition == "True" else f" and {test.condition}")
                out.append(f"{indent}if {cond}:\n" + textwrap.indent(test.on_hit, indent))
    return "".join(out), local


def _assigned(prologue: str) -> set[str]:
    """The variables a prologue part (lines `var = code`) sets."""
    return {line.split(" = ", 1)[0].strip() for line in prologue.splitlines() if line.strip()}


def compile_type_dispatch(
    evt_type: str, entries: Sequence[tuple[Expr, object]], expander: Expander,
) -> Callable[[Event, SystemState], tuple[object, ...]]:
    """One function for one event type testing every rule: `evt.type` checks fold away,
    the thread/fd lookups happen once, each condition's and/or children are tested
    cheapest-to-decide first, and the guards several rules share are tested once per
    value (see _Guards). Returns the matching entries' payloads in `entries` order."""
    gen = _CodeGen(expander, known_type=evt_type, reorder=True)
    kept: list[tuple[Expr, object]] = []
    for expr, payload in entries:
        found = gen.simplify(expr)
        if found is True:
            found = And((), 0)  # always true: generates "True"
        if found is not False:
            kept.append((found, payload))
    gen.share_repeated_fields(expr for expr, _ in kept)
    conjuncts = [list(expr.children) if isinstance(expr, And) else [expr] for expr, _ in kept]
    groups = gen.plan_guards(conjuncts)
    guarded = {i for group in groups for i in group.members}
    bit = {i: 1 << n for n, i in enumerate(sorted(guarded))}
    all_bits = sum(bit.values())

    head: list[str] = []
    helpers: list[str] = []
    for g, group in enumerate(groups):
        key_codes = [gen.value_code(bf) for bf in group.fields]
        key = key_codes[0] if len(key_codes) == 1 else "(" + ", ".join(key_codes) + ")"
        cache, compute = gen.const({}), f"_guard{g}"
        helper, context = gen.guard_function(compute, cache, group, bit,
                                             all_bits & ~sum(bit[i] for i in group.members))
        helpers.append(helper)
        fetch = (f"_g{g}_ = {cache}.get(_k{g}_ := {key})\n"
                 f"if _g{g}_ is None:\n"
                 f"    _g{g}_ = {compute}(_k{g}_, ev, st, {context})\n")
        if g == 0:
            head.append(textwrap.indent(fetch + "_m_ = _g0_\n", "    "))
        else:  # no rule left to guard: the next keys need not be read
            head.append("    if _m_:\n" + textwrap.indent(fetch + f"_m_ &= _g{g}_\n", " " * 8))
    in_groups = {i: {id(c) for group in groups for c in group.members.get(i, ())}
                 for i in guarded}

    def comment(payload: object) -> str:
        name = " ".join(str(getattr(payload, "name", "")).split())
        # Which rule a test is, for whoever reads the generated source.
        return f"# {name}\n" if name else ""

    # The rules every event tests: the fields they share are read up front. Tested after
    # the guarded ones, so a hit here puts the (rare) several hits back in rule order.
    rank = {id(payload): n for n, (_, payload) in enumerate(kept)}
    reorder_hits = (f"        if len(hits) > 1:\n            hits = tuple(sorted(hits, key=lambda"
                    f" p: {gen.const(rank)}[id(p)]))\n") if guarded else ""
    tests_plain: list[str] = []
    for i, (expr, payload) in enumerate(kept):
        if i not in guarded:
            code = gen.gen(expr)
            if code != "False":
                tests_plain.append(textwrap.indent(comment(payload), "    ")
                                   + f"    if {code}:\n"
                                   f"        hits = hits + ({gen.const(payload)},)\n"
                                   + reorder_hits)
    # The guarded rules read theirs on first use: few of them run for any one event.
    gen.lazy_shared = True
    tests_guarded: list[_GuardedTest] = []
    for i, ((_, payload), parts) in enumerate(zip(kept, conjuncts, strict=True)):
        if i in guarded:
            rest = [c for c in parts if id(c) not in in_groups[i]]
            code = gen.gen(And(tuple(rest), 0)) if rest else "True"
            if code != "False":
                tests_guarded.append(_GuardedTest(
                    bit[i], comment(payload), code,
                    f"    hits = hits + ({gen.const(payload)},)\n"))
    top = "".join(head + tests_plain)
    block, local = _guarded_block(tests_guarded, gen.memo.values(), top)
    # What only the guarded rules read is computed inside their block, where few events go.
    # Likewise what only a later guard group reads (its key, and the memo variables that
    # key sets) is computed in that group's `if _m_:`, which most events skip: the block
    # runs only after every group ran, so whatever it reads of those is set by then.
    first, _ = gen.split_prologue(head[0] + "".join(tests_plain) if head else top, local)
    done = set(local) | _assigned(first)
    for g in range(1, len(head)):
        part, _ = gen.split_prologue(head[g], done)
        done |= _assigned(part)
        opening = "    if _m_:\n"
        head[g] = head[g].replace(opening, opening + textwrap.indent(part, "    "), 1)
    _, later = gen.split_prologue("", done)
    body = "".join(head) + "    hits = ()\n"
    if block:
        body += "    if _m_:\n" + later + block
    body += "".join(tests_plain)
    source = "".join(helpers) + f"def dispatch(ev, st):\n{first}" + body + "    return hits\n"
    namespace = dict(gen.ns)
    exec(compile(source, f"<rules for {evt_type}>", "exec"), namespace)
    fn = namespace["dispatch"]
    assert callable(fn)
    fn.__doc__ = source
    return fn


def validate_condition(expr: Expr, expander: Expander, *, expand_macros: bool = True) -> None:
    """Resolve every field, list and literal without running anything. With
    `expand_macros=False` macro references only need to exist (each macro is checked alone)."""
    if expand_macros:
        expr = expander.expand(expr)
    _CodeGen(expander, macro_refs_ok=not expand_macros).gen(expr)


__all__ = [
    "CompileError",
    "Expander",
    "MacroDef",
    "compile_condition",
    "compile_type_dispatch",
    "event_types",
    "validate_condition",
]
