"""A fixed, seeded syscall workload that trips Falco's public rules (and just misses them).

Used by tests/test_engine_falco_replay.py to pin the exact alerts the engine gives for
Falco's own rules files (tests/fixtures/falco_rules/), so a change made for speed (rule
ordering, caching, the per-type matchers) can be shown to change no alert.

The workload is made of process stories: a chain of one to three processes (clone +
execve, on the host or below a container's init process) whose names, command lines,
paths, addresses and ports are drawn from the literals the rules compare against, mixed
with ordinary values, then a dozen syscalls of the leaf process (opens with every access
mode, connects, sends, unlinks, renames, ptrace, setuid, ...). Everything is decided by
`random.Random(seed)` over sorted pools, so the same seed and rules give the same bytes
on every run and host (no set order or hash seed leaks in).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runtime.engine.capture import (
    AF_INET,
    AF_INET6,
    AF_UNIX,
    CaptureHeader,
    CaptureWriter,
    encode_record,
    encode_tuple,
)
from runtime.engine.rules import Ruleset
from runtime.engine.rules.ast import And, Check, Expr, FieldRef, ListRef, ListValue, Not, Or, Value
from runtime.engine.sources import schema_identity
from runtime.engine.state import SystemState
from runtime.engine.state.containers import ContainerRef
from runtime.engine.state.docker_api import ContainerMeta, MountInfo
from runtime.engine.state.tables import ThreadInfo

BOOT_OFFSET_NS = 1_760_000_000_000_000_000

# uid -> user name, and the passwd/group files the replay's state reads (not the host's).
USERS = ((0, "root"), (1, "daemon"), (2, "bin"), (3, "sys"), (5, "games"), (7, "lp"),
         (8, "mail"), (9, "news"), (33, "www-data"), (42, "_apt"), (1000, "dev"),
         (65534, "nobody"))
PASSWD = "".join(f"{name}:x:{uid}:{uid}::/home/{name}:/bin/sh\n" for uid, name in USERS)
GROUP = "".join(f"{name}:x:{uid}:\n" for uid, name in USERS)

# Containers below which some stories run (seeded into the state: a replay has no cgroups).
CONTAINER_INIT_PIDS = (9001, 9002, 9003)
_CONTAINER_IMAGES = (
    ("docker.io/library/nginx", False, ("/var/run/docker.sock",)),
    ("quay.io/falcosecurity/falco", True, ("/proc", "/etc")),
    ("registry.k8s.io/kube-proxy", True, ("/var/lib/kubelet", "/run/containerd/containerd.sock")),
)

_PLAIN_NAMES = ("app", "worker", "node", "java", "ls", "cat", "bash", "sh", "python3", "vim",
                "cron", "sshd", "systemd", "nginx", "curl", "tar", "cp", "runc")
_PLAIN_DIRS = ("/home/dev", "/tmp", "/var/tmp", "/srv/app", "/etc", "/usr/bin", "/root",
               "/dev", "/proc/self", "/var/log", "/dev/shm", "/run")
_PLAIN_FILES = ("notes.txt", "data.bin", "config.yaml", ".bashrc", "passwd", "shadow",
                "authorized_keys", "id_rsa", "syslog", "environ", "release_agent",
                "libc.so.6", "liblzma.so.5", "crontab", ".bash_history", "null")

O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND = 0o1, 0o2, 0o100, 0o1000, 0o2000
_OPEN_FLAGS = (0, 0o2000000, O_WRONLY | O_CREAT | O_TRUNC, O_RDWR, O_WRONLY | O_APPEND,
               O_WRONLY | O_CREAT, O_RDWR | O_CREAT | O_TRUNC, 0o10000000)


@dataclass
class Pools:
    """Literals of the rules, per field (sorted, deduplicated), plus derived values."""

    by_field: dict[str, list[str]] = field(default_factory=dict)

    def get(self, *fields: str) -> list[str]:
        out: set[str] = set()
        for name in fields:
            out.update(self.by_field.get(name, ()))
        return sorted(out)


def literal_pools(ruleset: Ruleset) -> Pools:
    """Every literal each field is compared against in the enabled rules (macros and lists
    expanded, exceptions included)."""
    expander = ruleset._expander
    assert expander is not None
    found: dict[str, set[str]] = {}

    def walk(expr: Expr) -> None:
        if isinstance(expr, (And, Or)):
            for child in expr.children:
                walk(child)
        elif isinstance(expr, Not):
            walk(expr.child)
        elif isinstance(expr, Check) and isinstance(expr.left, FieldRef):
            right = expr.right
            values: list[str] = []
            if isinstance(right, Value):
                values = [right.text]
            elif isinstance(right, (ListValue, ListRef)):
                values = [v.text for v in expander.list_items(right)]
            found.setdefault(expr.left.text, set()).update(v for v in values if v)

    for rule in ruleset.rules:
        if rule.expr is not None:
            walk(rule.expr)
    return Pools({name: sorted(values) for name, values in found.items()})


def _concrete(text: str, rnd: random.Random) -> str:
    """A value a glob or prefix literal describes: `*` filled in, a trailing `/` a file."""
    text = text.replace("*", rnd.choice(("x", "1", "abc", "")))
    if text.endswith("/"):
        text += rnd.choice(_PLAIN_FILES)
    return text


class Story:
    """Builds the records of one process chain and its leaf's syscalls."""

    def __init__(self, rnd: random.Random, pools: Pools, ts: int, pid_base: int) -> None:
        self.rnd = rnd
        self.pools = pools
        self.ts = ts
        self.next_pid = pid_base
        self.records: list[bytes] = []

    def pick(self, *fields: str, plain: Sequence[str] = (), p_plain: float = 0.3) -> str:
        pool = self.pools.get(*fields)
        if plain and (not pool or self.rnd.random() < p_plain):
            return self.rnd.choice(list(plain))
        if not pool:
            return ""
        return _concrete(self.rnd.choice(pool), self.rnd)

    def rec(self, evt: str, pid: int, ret: int, comm: str, ppid: int,  # noqa: PLR0917
            user: int, /, **params: object) -> None:
        self.ts += self.rnd.randrange(500, 5000)
        self.records.append(encode_record(evt, ts_boot_ns=self.ts, ret=ret, pid=pid, ppid=ppid,
                                          uid=user, gid=user, comm=comm[:15],
                                          cpu=pid & 1, params=params))

    def path(self) -> str:
        path = self._path()
        if self.rnd.random() < 0.06:  # as given, unnormalised: `..` and `//` segments
            head, _, tail = path.rpartition("/")
            path = f"{head}/../{head.rsplit('/', 1)[-1] or 'x'}//{tail}" if head else path
        return path

    def _path(self) -> str:
        rnd = self.rnd
        choice = rnd.random()
        if choice < 0.45:
            name = self.pick("fd.name", "evt.arg.path", "evt.arg.name", "evt.arg.oldpath",
                             "evt.arg.newpath", "evt.arg.target", "fd.nameraw")
            if name.startswith("/"):
                return name
        if choice < 0.75:
            directory = self.pick("fd.directory", plain=_PLAIN_DIRS, p_plain=0.4)
            filename = self.pick("fd.filename", plain=_PLAIN_FILES, p_plain=0.6)
            if directory.startswith("/"):
                return directory.rstrip("/") + "/" + filename.lstrip("/")
        return rnd.choice(_PLAIN_DIRS) + "/" + rnd.choice(_PLAIN_FILES)

    def address(self) -> str:
        rnd = self.rnd
        nets = [n for n in self.pools.get("fd.net", "fd.snet", "fd.rnet", "fd.ip", "fd.sip")
                if n]
        if nets and rnd.random() < 0.6:
            try:
                net = ipaddress.ip_network(rnd.choice(nets), strict=False)
            except ValueError:
                net = ipaddress.ip_network("10.0.0.0/8")
            if net.version == 4:
                span = max(1, net.num_addresses - 2)
                return str(net.network_address + rnd.randrange(span))
        return rnd.choice(("10.1.2.3", "192.168.1.20", "8.8.8.8", "169.254.169.254",
                           "100.64.0.1", "172.17.0.5"))

    def port(self) -> int:
        ports = [int(p) for p in self.pools.get("fd.sport", "fd.port") if p.isdigit()]
        if ports and self.rnd.random() < 0.6:
            return self.rnd.choice(ports)
        return self.rnd.choice((22, 53, 80, 443, 2222, 4444, 6443, 8080, 31337))

    def exec_chain(self, root_pid: int, root_comm: str, uid: int) -> tuple[int, str, list[int]]:
        """1-3 generations below `root_pid`; returns the leaf's pid, comm and the pids."""
        rnd = self.rnd
        parent, parent_comm = root_pid, root_comm
        pids: list[int] = []
        for depth in range(rnd.randint(1, 3)):
            child = self.next_pid
            self.next_pid += 1
            pids.append(child)
            self.rec("clone", parent, child, parent_comm, 1, uid, flags=0x1200011)
            self.rec("clone", child, 0, parent_comm, parent, uid, flags=0x1200011)
            leaf = depth == 0 or rnd.random() < 0.5
            fields = ("proc.name",) if leaf else ("proc.pname", "proc.aname[2]",
                                                  "proc.aname[3]", "proc.aname")
            comm = self.pick(*fields, plain=_PLAIN_NAMES) or "app"
            comm = comm.rsplit("/", 1)[-1] or "app"
            exe_dir = rnd.choice(("/usr/bin", "/bin", "/usr/sbin", "/tmp", "/dev/shm",
                                  "/usr/local/bin"))
            args = [self.pick("proc.args", "proc.cmdline", "proc.pcmdline",
                              plain=("-c", "--help", "/etc/shadow", "-la", "start"))
                    for _ in range(rnd.randint(0, 3))]
            args = [a.split(" ", 1)[-1] if " " in a and rnd.random() < 0.5 else a for a in args]
            env = [rnd.choice(("PATH=/usr/bin", "HTTP_PROXY=http://p:3128", "LD_PRELOAD=/x.so",
                               "HOME=/root", "TERM=xterm"))]
            exe_flags = rnd.choice((0, 0, 0, 1, 2, 4, 8))
            caps = rnd.choice((0, 0x1fffffffff, 1 << 21, 1 << 19 | 1 << 12))
            filename = f"{exe_dir}/{comm}"
            trusted = f"/memfd:{comm} (deleted)" if exe_flags & 4 else filename
            self.rec("execve", child, 0, comm, parent, uid, filename=filename,
                     argv=[comm, *args], cwd=rnd.choice(_PLAIN_DIRS), env=env,
                     flags=exe_flags, exe_ino=1000 + child, exe_ino_ctime=10**18,
                     exe_ino_mtime=10**18, cap_inheritable=0, cap_permitted=caps,
                     cap_effective=caps, vpid=child, vtid=child, vpgid=child, sid=child,
                     tty=rnd.choice((0, 0, 34816)), loginuid=rnd.choice((0xFFFFFFFF, 0, 1000)),
                     trusted_exepath=trusted)
            parent, parent_comm = child, comm
        return parent, parent_comm, pids

    def actions(self, pid: int, comm: str, ppid: int, uid: int) -> None:
        rnd = self.rnd
        fd = 3
        for _ in range(rnd.randint(4, 14)):
            kind = rnd.random()
            if kind < 0.45:
                flags = rnd.choice(_OPEN_FLAGS)
                ret = fd if rnd.random() < 0.9 else -rnd.choice((2, 13))
                self.rec(rnd.choice(("openat", "openat", "open", "openat2")), pid, ret, comm,
                         ppid, uid, dirfd=-100, name=self.path(), flags=flags,
                         mode=rnd.choice((0, 0o644, 0o755)))
                if ret >= 0:
                    self.rec("close", pid, 0, comm, ppid, uid, fd=fd)
            elif kind < 0.6:
                family = rnd.choice((AF_INET, AF_INET, AF_INET6, AF_UNIX))
                sock_type = rnd.choice((1, 1, 2))
                self.rec("socket", pid, fd, comm, ppid, uid, domain=family, type=sock_type,
                         proto=0)
                if family == AF_INET6:
                    tup = encode_tuple(AF_INET6, "fd00::2", 40000 + fd, "fd00::1", self.port())
                elif family == AF_UNIX:
                    tup = encode_tuple(AF_UNIX, "", 0, rnd.choice(("/var/run/docker.sock",
                                                                   "/run/app.sock")), 0)
                else:
                    tup = encode_tuple(AF_INET, "10.0.0.2", 40000 + fd, self.address(),
                                       self.port())
                which = rnd.random()
                if which < 0.6:
                    self.rec("connect", pid, rnd.choice((0, 0, -115, -111)), comm, ppid, uid,
                             fd=fd, tuple=tup)
                elif which < 0.8:
                    self.rec("sendto", pid, 64, comm, ppid, uid, fd=fd, size=64, tuple=tup,
                             data=b"GET / HTTP/1.1\r\n")
                elif which < 0.9:
                    self.rec("listen", pid, 0, comm, ppid, uid, fd=fd, backlog=16)
                else:
                    self.rec("accept", pid, fd + 1, comm, ppid, uid, tuple=tup)
                self.rec("close", pid, 0, comm, ppid, uid, fd=fd)
            elif kind < 0.7:
                evt = rnd.choice(("unlinkat", "unlink", "rmdir", "renameat2", "rename"))
                path = self.path()
                if evt == "unlinkat":
                    self.rec(evt, pid, 0, comm, ppid, uid, dirfd=-100, name=path, flags=0)
                elif evt in ("unlink", "rmdir"):
                    self.rec(evt, pid, 0, comm, ppid, uid, path=path)
                elif evt == "rename":
                    self.rec(evt, pid, 0, comm, ppid, uid, oldpath=path, newpath=self.path())
                else:
                    self.rec(evt, pid, 0, comm, ppid, uid, olddirfd=-100, oldpath=path,
                             newdirfd=-100, newpath=self.path(), flags=0)
            elif kind < 0.75:
                self.rec(rnd.choice(("symlinkat", "linkat")), pid, 0, comm, ppid, uid,
                         **({"target": self.path(), "linkdirfd": -100, "linkpath": self.path()}
                            if rnd.random() < 0.5 else
                            {"olddir": -100, "oldpath": self.path(), "newdir": -100,
                             "newpath": self.path(), "flags": 0}))
            elif kind < 0.8:
                self.rec("chmod", pid, 0, comm, ppid, uid, filename=self.path(),
                         mode=rnd.choice((0o4755, 0o2755, 0o644, 0o777)))
            elif kind < 0.84:
                self.rec("ptrace", pid, 0, comm, ppid, uid,
                         request=rnd.choice((16, 0x4206, 5, 4, 0)), pid=ppid, addr=0, data=0)
            elif kind < 0.87:
                self.rec("setuid", pid, rnd.choice((0, -1)), comm, ppid, uid,
                         uid=rnd.choice((0, 1000, 33)))
            elif kind < 0.9:
                self.rec(rnd.choice(("mkdir", "mkdirat")), pid, 0, comm, ppid, uid,
                         **({"path": self.path(), "mode": 0o755} if rnd.random() < 0.5 else
                            {"dirfd": -100, "path": self.path(), "mode": 0o755}))
            elif kind < 0.93:
                evt = rnd.choice(("setns", "unshare", "userfaultfd", "bpf", "init_module",
                                  "finit_module", "memfd_create"))
                by_event: dict[str, dict[str, object]] = {
                    "setns": {"fd": 5, "nstype": 0x20000},
                    "unshare": {"flags": rnd.choice((0x20000, 0x10000000))},
                    "userfaultfd": {"flags": 0},
                    "bpf": {"cmd": rnd.choice((0, 5))},
                    "init_module": {"length": 100, "uargs": ""},
                    "finit_module": {"fd": 3, "uargs": "", "flags": 0},
                    "memfd_create": {"name": "x", "flags": 0},
                }
                self.rec(evt, pid, 0, comm, ppid, uid, **by_event[evt])
            else:
                self.rec(rnd.choice(("dup2", "dup")), pid, fd + 5, comm, ppid, uid,
                         oldfd=fd, newfd=fd + 5)
            fd += 1


def build_records(ruleset: Ruleset, *, seed: int = 11, stories: int = 1500) -> list[bytes]:
    """The records of `stories` process stories, in time order."""
    rnd = random.Random(seed)
    pools = literal_pools(ruleset)
    ts = 1_000_000_000
    out: list[bytes] = []
    pid_base = 20_000
    for _ in range(stories):
        story = Story(rnd, pools, ts, pid_base)
        in_container = rnd.random() < 0.35
        root = rnd.choice(CONTAINER_INIT_PIDS) if in_container else rnd.choice((1, 300, 400))
        root_comm = {1: "systemd", 300: "sshd", 400: "containerd"}.get(root, "runc")
        uid = rnd.choice((0, 0, 1000, 1000, 33, 1, 2, 5, 42, 65534))
        leaf, comm, pids = story.exec_chain(root, root_comm, uid)
        parent = pids[-2] if len(pids) > 1 else root
        story.actions(leaf, comm, parent, uid)
        for pid in reversed(pids):
            story.rec("procexit", pid, 0, comm, 1, uid, status=0, sig=0, core=0)
        out += story.records
        ts = story.ts + 100_000
        pid_base = story.next_pid + 7
    return out


def write_capture(path: Path, records: Iterable[bytes], frame_bytes: int = 64 * 1024) -> Path:
    api, schema_hash = schema_identity()
    writer = CaptureWriter(path, CaptureHeader(api, schema_hash, BOOT_OFFSET_NS, {"falco": 1}))
    frame = bytearray()
    for record in records:
        frame += record
        if len(frame) >= frame_bytes:
            writer.write_events(bytes(frame))
            frame.clear()
    if frame:
        writer.write_events(bytes(frame))
    writer.close()
    return path


class FixedContainers:
    """Stands in for the runtime's metadata lookup: the seeded containers' answers."""

    def __init__(self) -> None:
        self.known: dict[str, ContainerMeta] = {}

    def get(self, ref: ContainerRef) -> ContainerMeta | None:
        return self.known.get(ref.full_id)


def seeded_state(tmp: Path) -> SystemState:
    """A state with fixed passwd/group files and the containers' init processes."""
    passwd, group = tmp / "passwd", tmp / "group"
    passwd.write_text(PASSWD)
    group.write_text(GROUP)
    state = SystemState(passwd_path=str(passwd), group_path=str(group))
    meta = FixedContainers()
    for i, pid in enumerate(CONTAINER_INIT_PIDS):
        full_id = f"{i + 1:x}" * 64
        ref = ContainerRef(id=full_id[:12], full_id=full_id, runtime="containerd")
        image, privileged, mounts = _CONTAINER_IMAGES[i]
        meta.known[full_id] = ContainerMeta(
            full_id=full_id, name=f"c{i}", image=image + ":1.0", image_repository=image,
            image_tag="1.0", image_id="sha256:" + "e" * 64, runtime="containerd",
            privileged=privileged, start_ts=BOOT_OFFSET_NS,
            mounts=tuple(MountInfo(m, m, "", True, "rprivate") for m in mounts),
            labels=(("io.kubernetes.pod.name", f"pod-{i}"),
                    ("io.kubernetes.pod.namespace", ("default", "kube-system", "shop")[i])))
        state.threads[pid] = ThreadInfo(tid=pid, pid=pid, ppid=400, comm="runc", exe="runc",
                                        container=ref)
    for pid, comm in ((1, "systemd"), (300, "sshd"), (400, "containerd")):
        state.threads[pid] = ThreadInfo(tid=pid, pid=pid, ppid=0 if pid == 1 else 1,
                                        comm=comm, exe=comm)
    state.container_metadata = meta  # type: ignore[assignment]
    return state
