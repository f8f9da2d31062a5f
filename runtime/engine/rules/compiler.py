"""Condition compiler: macros inlined, lists expanded, fields resolved, Python code generated.

Each rule condition becomes ONE generated Python function `match(ev, st)` whose body is a
single boolean expression: Python's own `and`/`or` give short-circuiting, literals are
pre-converted (frozensets for `in`, lower-cased text for `icontains`, compiled regexes for
`glob`), and fields read straight from the event (`ev.type`, `ev.comm`) are inlined. A
closure tree costs a call per node; this costs one call per rule.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from runtime.engine.fields import (
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


def _make_pmatch(prefixes: Iterable[str]) -> Callable[[str], bool]:
    """Falco's path-prefix match: equal to one of the paths or below it."""
    exact = set()
    dirs = []
    for p in prefixes:
        trimmed = p.rstrip("/") or "/"
        exact.add(trimmed)
        dirs.append("/" if trimmed == "/" else trimmed + "/")
    dir_tuple = tuple(dirs)

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


# ---- code generation -----------------------------------------------------------------------

class _CodeGen:
    def __init__(self, expander: Expander, *, macro_refs_ok: bool = False,
                 known_type: str | None = None) -> None:
        self.expander = expander
        # Validating a macro on its own: a reference to another (existing) macro is fine.
        self.macro_refs_ok = macro_refs_ok
        # Generating for one event type: evt.type checks fold to constants.
        self.known_type = known_type
        self.ns: dict[str, object] = {
            "_to_bytes": _to_bytes, "_to_number": _to_number,
            "_OPEN_TYPES": OPEN_TYPES,
        }
        self.counter = 0
        self.fields: list[BoundField] = []
        self.needs: set[str] = set()
        # Fields read more than once in the function: computed once, on first use.
        self.shared: set[str] = set()
        self.memo: dict[str, str] = {}  # field text -> local computed lazily on first use
        self.eager: dict[str, str] = {}  # local -> cheap expression computed up front
        self.eager_by_field: dict[str, str] = {}

    def share_repeated_fields(self, exprs: Iterable[Expr]) -> None:
        counts: dict[str, int] = {}
        for expr in exprs:
            for text in _field_texts(expr):
                counts[text] = counts.get(text, 0) + 1
        self.shared = {text for text, n in counts.items() if n > 1}

    def prologue(self) -> str:
        lines = []
        if "_th" in self.needs:
            lines.append("    _th = st.thread_of(ev)\n")
        if "_f" in self.needs:
            lines.append("    _f = st.fd_of(ev)\n")
        lines.extend(f"    {var} = {code}\n" for var, code in self.eager.items())
        lines.extend(f"    {var} = _U\n" for var in self.memo.values())
        return "".join(lines)

    def const(self, value: object) -> str:
        name = f"c{self.counter}"
        self.counter += 1
        self.ns[name] = value
        return name

    def temp(self) -> str:
        name = f"_t{self.counter}_"
        self.counter += 1
        return name

    def _gen_junction(self, children: Sequence[Expr], joiner: str, *, absorbing: str) -> str:
        """`and`/`or` of the children's code, folded: a child equal to `absorbing` decides
        the whole (False for and, True for or), the other constant drops out."""
        neutral = "True" if absorbing == "False" else "False"
        parts = []
        for child in children:
            code = self.gen(child)
            if code == absorbing:
                return absorbing
            if code != neutral:
                parts.append(code)
        if not parts:
            return neutral
        return parts[0] if len(parts) == 1 else "(" + f" {joiner} ".join(parts) + ")"

    def gen(self, expr: Expr) -> str:
        """Code for `expr`; exactly "True"/"False" when it folds to a constant."""
        if isinstance(expr, And):
            return self._gen_junction(expr.children, "and", absorbing="False")
        if isinstance(expr, Or):
            return self._gen_junction(expr.children, "or", absorbing="True")
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
        try:
            if isinstance(left, FieldRef):
                return resolve_field(left.name, left.arg)
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
            cheap = not bf.helpers and "st." not in code
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
            if var is None:
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


def compile_type_dispatch(
    evt_type: str, entries: Sequence[tuple[Expr, object]], expander: Expander,
) -> Callable[[Event, SystemState], tuple[object, ...]]:
    """One function for one event type testing every rule in turn: `evt.type` checks fold
    away and the thread/fd lookups happen once. Returns the matching entries' payloads."""
    gen = _CodeGen(expander, known_type=evt_type)
    gen.share_repeated_fields(expr for expr, _ in entries)
    tests = []
    for expr, payload in entries:
        code = gen.gen(expr)
        if code == "False":
            continue
        tests.append(f"    if {code}:\n        hits = hits + ({gen.const(payload)},)\n")
    source = (f"def dispatch(ev, st):\n{gen.prologue()}    hits = ()\n"
              + "".join(tests) + "    return hits\n")
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
