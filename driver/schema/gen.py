#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Generate the C header and the Python decoder tables from events.yaml.

    python3 driver/schema/gen.py            # rewrite both outputs
    python3 driver/schema/gen.py --check    # exit 1 if an output is stale

Both outputs are committed so builders need neither Python nor PyYAML to compile the
driver; tests/test_schema.py runs --check so an edit of the YAML without regenerating
fails CI instead of shipping a module and a decoder that disagree.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DRIVER = HERE.parent
REPO = DRIVER.parent
SOURCE = HERE / "events.yaml"
C_OUT = DRIVER / "include" / "rtcap_schema.h"
PY_OUT = REPO / "runtime" / "driver" / "_schema.py"

SCALAR_C = {
    "u8": ("__u8", 1),
    "u16": ("__u16", 2),
    "u32": ("__u32", 4),
    "u64": ("__u64", 8),
    "s32": ("__s32", 4),
    "s64": ("__s64", 8),
}
# struct.Struct codes for the header fields, little- and big-endian alike ("=" prefix).
PY_CODE = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "s32": "i", "s64": "q"}

IOC_DIR = {"none": 0, "write": 1, "read": 2, "readwrite": 3}


class SchemaError(Exception):
    pass


# Sources that read syscall argument `arg`; those whose `sub` is another argument's
# index; those whose `sub` is a byte count (the snaplen of a data buffer).
ARG_SOURCES = frozenset({
    "arg", "exe_filename", "exe_argv", "user_u64", "sock_fd_arg", "io_buf", "io_msg",
    "sock_out", "sock_in", "sock_out_msg", "sock_in_msg",
})
SOCKADDR_SOURCES = frozenset({"sock_out", "sock_in", "sock_out_msg", "sock_in_msg"})
SNAPLEN_SOURCES = frozenset({"io_buf", "io_msg"})


def load(path: Path = SOURCE) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    validate(data)
    return data


def validate(data: dict[str, Any]) -> None:
    types = data["param_types"]
    seen_ids: set[int] = set()
    seen_names: set[str] = set()
    seen_syscalls: dict[str, str] = {}
    for ev in data["events"]:
        name, eid = ev["name"], ev["id"]
        if not 0 < eid < 256:
            raise SchemaError(f"event {name}: id {eid} must fit the u8 filter value (1..255)")
        if eid in seen_ids or name in seen_names:
            raise SchemaError(f"event {name}: duplicate name or id {eid}")
        seen_ids.add(eid)
        seen_names.add(name)
        for sc in ev.get("syscalls", []):
            if sc in seen_syscalls:
                raise SchemaError(f"syscall {sc} in both {seen_syscalls[sc]} and {name}")
            seen_syscalls[sc] = name
        pnames = [p["name"] for p in ev["params"]]
        if len(set(pnames)) != len(pnames):
            raise SchemaError(f"event {name}: duplicate param name")
        for p in ev["params"]:
            where = f"event {name}: param {p['name']}"
            if p["type"] not in types:
                raise SchemaError(f"{where}: unknown type {p['type']}")
            src = p.get("src", "arg")
            if src not in data["sources"]:
                raise SchemaError(f"{where}: unknown src {src}")
            if src in ARG_SOURCES and not 0 <= p.get("arg", -1) <= 5:
                raise SchemaError(f"{where}: src {src} needs arg: 0..5")
            if src in SOCKADDR_SOURCES and not 0 <= p.get("sub", -1) <= 5:
                raise SchemaError(f"{where}: src {src} needs sub: 0..5 (the sockaddr argument)")
            if src in SNAPLEN_SOURCES and p.get("sub") != data["snaplen"]:
                raise SchemaError(f"{where}: src {src} needs sub: {data['snaplen']} (snaplen)")
        flags = [bool(p.get("optional")) for p in ev["params"]]
        if flags != sorted(flags):
            raise SchemaError(f"event {name}: optional params must come after all others")
    if not 0 < data["snaplen"] <= types["bytes"]["max"]:
        raise SchemaError(f"snaplen {data['snaplen']} must be within bytes' max")
    validate_earlier(data)


def validate_earlier(data: dict[str, Any]) -> None:
    """Each earlier revision lacks known sources whose params are all optional, and is
    exactly this schema without them: rebuilt here, its hash must be the one listed."""
    optional_srcs = {p.get("src", "arg") for ev in data["events"] for p in ev["params"]
                     if p.get("optional")}
    for i, rev in enumerate(data.get("earlier_revisions", [])):
        lacks = set(rev["lacks"])
        if not lacks or not lacks <= set(data["sources"]):
            raise SchemaError(f"earlier revision {rev['hash']:#x}: lacks must name sources")
        required = {p.get("src", "arg") for ev in data["events"] for p in ev["params"]
                    if not p.get("optional")}
        if lacks & required or not lacks <= optional_srcs:
            raise SchemaError(f"earlier revision {rev['hash']:#x}: the params of "
                              f"{sorted(lacks)} must all be optional")
        got = schema_hash(earlier_schema(data, i))
        if got != rev["hash"]:
            raise SchemaError(f"earlier revision {rev['hash']:#x}: this schema without "
                              f"{sorted(lacks)} hashes to {got:#x}")


def earlier_schema(data: dict[str, Any], index: int) -> dict[str, Any]:
    """The schema of earlier revision `index` as it was written, rebuilt from this one:
    without the params and sources it lacks, with the revisions older than it (listed
    before it) minus those sources, and `optional` only on params some of those lack."""
    revs = data["earlier_revisions"]
    lacks = set(revs[index]["lacks"])
    old = copy.deepcopy(data)
    older = [{"hash": r["hash"], "lacks": [s for s in r["lacks"] if s not in lacks]}
             for r in revs[:index]]
    still_optional = {s for r in older for s in r["lacks"]}
    if older:
        old["earlier_revisions"] = older
    else:
        del old["earlier_revisions"]
    for src in lacks:
        del old["sources"][src]
    for ev in old["events"]:
        ev["params"] = [p for p in ev["params"] if p.get("src", "arg") not in lacks]
        for p in ev["params"]:
            if p.get("src", "arg") not in still_optional:
                p.pop("optional", None)
    return old


def min_params(ev: dict[str, Any]) -> int:
    """Params every revision's record of this event carries (the non-optional ones)."""
    return sum(1 for p in ev["params"] if not p.get("optional"))


def header_layout(data: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """(name, type, offset, size) of every header field; offsets follow natural alignment
    and the YAML orders fields so no padding is ever needed (checked here)."""
    out = []
    off = 0
    for f in data["header"]:
        t = f["type"]
        if t.startswith("char["):
            size, align = int(t[5:-1]), 1
        else:
            size = align = SCALAR_C[t][1]
        if off % align:
            raise SchemaError(f"header field {f['name']} would need padding at offset {off}")
        out.append((f["name"], t, off, size))
        off += size
    if off % 8:
        raise SchemaError(f"header size {off} is not a multiple of 8")
    return out


def schema_hash(data: dict[str, Any]) -> int:
    """Hash of the schema's meaning (YAML comments and key order do not count)."""
    canon = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.sha256(canon).digest()[:8], "little")


def ioctl_value(magic: int, cmd: dict[str, Any], sizes: dict[str, int]) -> int:
    size = sizes[cmd["arg"]] if cmd.get("arg") else 0
    nr: int = cmd["nr"]
    return (IOC_DIR[cmd["dir"]] << 30) | (size << 16) | (magic << 8) | nr


def struct_sizes(data: dict[str, Any]) -> dict[str, int]:
    nstats = len(data["stats"])
    return {
        "__u32": 4,
        "__u64": 8,
        "struct rtcap_filter": data["max_syscalls"],
        "struct rtcap_stats_query": 8 + 8 * nstats,
    }


def hdr_size(data: dict[str, Any]) -> int:
    layout = header_layout(data)
    return layout[-1][2] + layout[-1][3]


def is_variable(data: dict[str, Any], ev: dict[str, Any]) -> bool:
    return any(data["param_types"][p["type"]]["size"] == 0 for p in ev["params"])


def max_record_size(data: dict[str, Any], ev: dict[str, Any]) -> int:
    """Header + length table + every param at its fixed size or cap: exact for events
    without variable params, so producers can reserve that size up front."""
    types = data["param_types"]
    body: int = sum(types[p["type"]]["size"] or types[p["type"]]["max"] for p in ev["params"])
    return hdr_size(data) + 2 * len(ev["params"]) + body


def cname(s: str) -> str:
    return s.upper()


def render_c(data: dict[str, Any]) -> str:
    h = schema_hash(data)
    layout = header_layout(data)
    hdr_size = layout[-1][2] + layout[-1][3]
    lines: list[str] = []
    w = lines.append
    w("/* SPDX-License-Identifier: GPL-2.0 */")
    w("/*")
    w(" * GENERATED by driver/schema/gen.py from driver/schema/events.yaml. DO NOT EDIT.")
    w(" *")
    w(" * The one event schema shared by the rtcap kernel module, the per-kernel and CO-RE")
    w(" * eBPF probes and the Python decoder (runtime/driver).")
    w(" *")
    w(" * RECORD LAYOUT (the contract every producer follows)")
    w(" *   struct rtcap_event_hdr          fixed, RTCAP_HDR_SIZE bytes, host byte order")
    w(" *   __u16 len[hdr.nparams]          byte length of each param, in schema order")
    w(" *   param bytes, back to back       no padding between params")
    w(" * hdr.len = RTCAP_HDR_SIZE + 2 * nparams + sum(len[]); it excludes any trailing")
    w(" * padding. hdr.nparams must equal RTCAP_EVT_<X>_NPARAMS for hdr.type.")
    w(" * In a byte stream (module ring, capture file, decode_events()) each record starts")
    w(" * at an 8-byte aligned offset: the next record is at RTCAP_ALIGN8(hdr.len). A BPF")
    w(" * ring buffer sample is such a stream of one or more records (the probe batches).")
    w(" * Fixed-size params take exactly their type's size. Variable-size params (path,")
    w(" * string, argv, bytes, sockaddr, tuple) take their actual length, at most")
    w(" * RTCAP_PT_<TYPE>_MAX; strings keep their NUL and the length counts it. A param")
    w(" * that could not be read is present with length 0 and sets RTCAP_F_PARAM_FAULT;")
    w(" * a param cut at its cap sets RTCAP_F_TRUNCATED. Fields a producer cannot know")
    w(" * are 0. ts is CLOCK_BOOTTIME ns (ktime_get_boot_ns / bpf_ktime_get_boot_ns); the")
    w(" * decoder adds the boot-to-epoch offset.")
    w(" *")
    w(" * FILTER: struct rtcap_filter maps each native syscall number to the event type it")
    w(" * produces (0 = not captured). Userspace resolves names to numbers per arch, so")
    w(" * producers never need __NR_* tables: they dispatch on the event type id. Events")
    w(" * flagged RTCAP_EVT_<X>_AT_ENTER are emitted at sys_enter (the syscall never")
    w(" * returns); all others at sys_exit.")
    w(" *")
    w(" * STATS: per CPU; n_evts == delivered + n_drops_buffer + n_drops_pf + n_drops_bug.")
    w(" */")
    w("#ifndef RTCAP_SCHEMA_H")
    w("#define RTCAP_SCHEMA_H")
    w("")
    w("/* The CO-RE probe gets __u8..__u64 from vmlinux.h; everyone else from the uapi. */")
    w("#ifndef __VMLINUX_H__")
    w("#include <linux/types.h>")
    w("#endif")
    w("")
    w(f"#define RTCAP_API_VERSION {data['api_version']}")
    w(f"#define RTCAP_SCHEMA_HASH 0x{h:016x}ULL")
    w(f"#define RTCAP_MAX_SYSCALLS {data['max_syscalls']}")
    w(f"#define RTCAP_SNAPLEN {data['snaplen']}")
    w(f"#define RTCAP_HDR_SIZE {hdr_size}")
    w("#define RTCAP_ALIGN8(x) (((x) + 7) & ~7)")
    w("")
    w("struct rtcap_event_hdr {")
    for name, t, off, size in layout:
        doc = next(f.get("doc", "") for f in data["header"] if f["name"] == name)
        comment = f"/* {off:3d} {doc} */" if doc else f"/* {off:3d} */"
        if t.startswith("char["):
            w(f"\tchar {name}[{size}];{' ' * max(1, 12 - len(name) - len(str(size)))}{comment}")
        else:
            w(f"\t{SCALAR_C[t][0]} {name};{' ' * max(1, 16 - len(name))}{comment}")
    w("};")
    w("")
    for name, _t, off, _size in layout:
        w(f"#define RTCAP_HDR_OFF_{cname(name)} {off}")
    w("")
    for name, bit in data["header_flags"].items():
        w(f"#define RTCAP_F_{name} {bit}")
    w("")
    w("/* Param types: id, fixed size (0 = variable) and cap of variable ones. */")
    for name, t in data["param_types"].items():
        w(f"#define RTCAP_PT_{cname(name)} {t['id']}")
        w(f"#define RTCAP_PT_{cname(name)}_SIZE {t['size']}")
        if t["size"] == 0:
            w(f"#define RTCAP_PT_{cname(name)}_MAX {t['max']}")
    w("")
    w("/* Param sources: where a producer reads each param (see events.yaml). */")
    for name, src in data["sources"].items():
        w(f"#define RTCAP_SRC_{cname(name)} {src['id']}")
    w("")
    w("/* Event types. Per event: id, param count, index of each param, entry flag,")
    w(" * whether it has variable-size params, and its largest possible record. */")
    max_id = 0
    for ev in data["events"]:
        n = cname(ev["name"])
        max_id = max(max_id, ev["id"])
        syscalls = ", ".join(ev.get("syscalls", ["any in the filter"])) or "none (kernel hook)"
        w(f"/* {ev['name']}: syscalls {syscalls}; ret exposed as '{ev['ret']}' */")
        w(f"#define RTCAP_EVT_{n} {ev['id']}")
        w(f"#define RTCAP_EVT_{n}_NPARAMS {len(ev['params'])}")
        w(f"#define RTCAP_EVT_{n}_AT_ENTER {1 if ev.get('at') == 'enter' else 0}")
        w(f"#define RTCAP_EVT_{n}_VARIABLE {1 if is_variable(data, ev) else 0}")
        w(f"#define RTCAP_EVT_{n}_MAX_SIZE {max_record_size(data, ev)}")
        for i, p in enumerate(ev["params"]):
            w(f"#define RTCAP_{n}_P_{cname(p['name'])} {i} /* {p['type']} */")
    w(f"#define RTCAP_EVT_MAX {max_id + 1}")
    w(
        f"#define RTCAP_MAX_RECORD_SIZE "
        f"{max(max_record_size(data, ev) for ev in data['events'])}"
    )
    w(
        f"#define RTCAP_MAX_NPARAMS "
        f"{max(len(ev['params']) for ev in data['events'])}"
    )
    w("")
    w("/* X-macro of every event: X(NAME, id, nparams, at_enter). */")
    w("#define RTCAP_EVENT_LIST(X) \\")
    for ev in data["events"]:
        n = cname(ev["name"])
        w(
            f"\tX({n}, {ev['id']}, {len(ev['params'])}, "
            f"{1 if ev.get('at') == 'enter' else 0}) \\"
        )
    w("\t/* end */")
    w("")
    w("/* Per event, its params in record order as P(type, src, arg, sub) so a producer")
    w(" * can expand the whole fill code from the schema: RTCAP_PARAMS_<X>(P). */")
    for ev in data["events"]:
        n = cname(ev["name"])
        items = [
            f"P(RTCAP_PT_{cname(p['type'])}, RTCAP_SRC_{cname(p.get('src', 'arg'))}, "
            f"{p.get('arg', 0)}, {p.get('sub', 0)})"
            for p in ev["params"]
        ]
        w(f"#define RTCAP_PARAMS_{n}(P) {' '.join(items)}".rstrip())
    w("")
    w("/* Per-CPU counters; see the schema for what counts as a drop. */")
    w("struct rtcap_stats {")
    for s in data["stats"]:
        w(f"\t__u64 {s['name']}; /* {s['doc']} */")
    w("};")
    w(f"#define RTCAP_STATS_NFIELDS {len(data['stats'])}")
    w("")
    w("/* Syscall filter: evt_type[nr] is the event type to emit for syscall nr, 0 = off. */")
    w("struct rtcap_filter {")
    w("\t__u8 evt_type[RTCAP_MAX_SYSCALLS];")
    w("};")
    w("")
    w("struct rtcap_stats_query {")
    w("\t__u32 cpu;      /* in: which CPU */")
    w("\t__u32 reserved; /* must be 0 */")
    w("\tstruct rtcap_stats stats; /* out */")
    w("};")
    w("")
    io = data["ioctl"]
    sizes = struct_sizes(data)
    w("/* ioctls of the module's device. Numeric values are given too, so code that lacks")
    w(" * <linux/ioctl.h> (BPF, the Python decoder) agrees on them; the schema test checks")
    w(" * that _IO*() and the numbers match. */")
    w(f"#define RTCAP_IOCTL_MAGIC 0x{io['magic']:02x}")
    macro = {"none": "_IO", "read": "_IOR", "write": "_IOW", "readwrite": "_IOWR"}
    for cmd in io["commands"]:
        val = ioctl_value(io["magic"], cmd, sizes)
        n = cname(cmd["name"])
        doc = f" /* {cmd['doc']} */" if cmd.get("doc") else ""
        w(f"#define RTCAP_IOCTL_{n}_VALUE 0x{val:08x}U{doc}")
    w("#ifdef _IOWR")
    for cmd in io["commands"]:
        n = cname(cmd["name"])
        m = macro[cmd["dir"]]
        if cmd["dir"] == "none":
            w(f"#define RTCAP_IOCTL_{n} {m}(RTCAP_IOCTL_MAGIC, {cmd['nr']})")
        else:
            w(f"#define RTCAP_IOCTL_{n} {m}(RTCAP_IOCTL_MAGIC, {cmd['nr']}, {cmd['arg']})")
    w("#endif")
    w("")
    w("/* Compile-time proof that the compiler lays the structs out as documented. */")
    w("#define RTCAP_SCHEMA_ASSERT(c, m) _Static_assert(c, m)")
    w(
        f"RTCAP_SCHEMA_ASSERT(sizeof(struct rtcap_event_hdr) == {hdr_size}, "
        f'"rtcap_event_hdr size");'
    )
    for name, _t, off, _size in layout:
        w(
            f"RTCAP_SCHEMA_ASSERT(__builtin_offsetof(struct rtcap_event_hdr, {name}) == {off}, "
            f'"hdr.{name}");'
        )
    w(
        f"RTCAP_SCHEMA_ASSERT(sizeof(struct rtcap_stats) == {8 * len(data['stats'])}, "
        f'"rtcap_stats size");'
    )
    w(
        f"RTCAP_SCHEMA_ASSERT(sizeof(struct rtcap_stats_query) == "
        f'{sizes["struct rtcap_stats_query"]}, "rtcap_stats_query size");'
    )
    w("")
    w("#endif /* RTCAP_SCHEMA_H */")
    return "\n".join(lines) + "\n"


def render_py(data: dict[str, Any]) -> str:
    layout = header_layout(data)
    hdr_fmt = "=" + "".join(
        f"{size}s" if t.startswith("char[") else PY_CODE[t] for _n, t, _o, size in layout
    )
    sizes = struct_sizes(data)
    io = data["ioctl"]
    earlier = [f"0x{r['hash']:016x}" for r in data.get("earlier_revisions", [])]
    events = [
        {
            "name": ev["name"],
            "id": ev["id"],
            "ret": ev["ret"],
            "syscalls": ev.get("syscalls"),
            "at_enter": ev.get("at") == "enter",
            "params": [(p["name"], p["type"]) for p in ev["params"]],
            "min_params": min_params(ev),
            "sources": [
                (p.get("src", "arg"), p.get("arg", 0), p.get("sub", 0)) for p in ev["params"]
            ],
        }
        for ev in data["events"]
    ]
    out = [
        "# GENERATED by driver/schema/gen.py from driver/schema/events.yaml. DO NOT EDIT.",
        "# ruff: noqa: E501",
        '"""Schema tables for the decoder (see driver/include/rtcap_schema.h for the contract)."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any, Final",
        "",
        f"API_VERSION: Final = {data['api_version']}",
        f"SCHEMA_HASH: Final = 0x{schema_hash(data):016x}",
        "# Earlier revisions whose records this one decodes (captures of them replay).",
        f"EARLIER_SCHEMA_HASHES: Final = {py_tuple(earlier)}",
        f"MAX_SYSCALLS: Final = {data['max_syscalls']}",
        f"SNAPLEN: Final = {data['snaplen']}",
        "# The largest record any driver writes (a read(2) with this much room left was",
        "# not cut short by its buffer).",
        f"MAX_RECORD_SIZE: Final = {max(max_record_size(data, ev) for ev in data['events'])}",
        f"HDR_FORMAT: Final = {hdr_fmt!r}",
        f"HDR_SIZE: Final = {layout[-1][2] + layout[-1][3]}",
        f"HDR_FIELDS: Final = {[n for n, _t, _o, _s in layout]!r}",
        f"HDR_OFFSETS: Final = {dict((n, o) for n, _t, o, _s in layout)!r}",
        f"HEADER_FLAGS: Final = {dict(data['header_flags'])!r}",
        "PARAM_TYPES: Final[dict[str, dict[str, int]]] = "
        + repr({k: {kk: vv for kk, vv in v.items() if kk != "doc"}
                for k, v in data["param_types"].items()}),
        f"STATS_FIELDS: Final = {[s['name'] for s in data['stats']]!r}",
        f"IOCTL_MAGIC: Final = {io['magic']}",
        "IOCTLS: Final = "
        + repr({c["name"]: ioctl_value(io["magic"], c, sizes) for c in io["commands"]}),
        f"EVENTS: Final[list[dict[str, Any]]] = {events!r}",
        "",
    ]
    return "\n".join(out)


def py_tuple(items: list[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if an output is stale")
    args = ap.parse_args(argv)
    try:
        data = load()
    except (SchemaError, KeyError, yaml.YAMLError) as e:
        print(f"{SOURCE}: invalid schema: {e}", file=sys.stderr)
        return 2
    outputs = {C_OUT: render_c(data), PY_OUT: render_py(data)}
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"{p} is stale: run python3 driver/schema/gen.py", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        write_atomic(p, outputs[p])
        print(f"wrote {p.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
