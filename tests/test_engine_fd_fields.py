"""fd.* fields for Falco's public rules, evt.buffer, and chmod mode rendering.

Events are built in the decoder's shape (a SocketTuple for `tuple`, bytes for `data`) and
run through the real SystemState and the real rule compiler, as the engine does.
"""

from __future__ import annotations

import errno
import itertools
import json
import re
from pathlib import Path

import yaml

from drivercore import yamlsafe
from runtime.engine.fields import render_chmod_mode, render_value, resolve_field
from runtime.engine.rules import load_rules
from runtime.engine.state import SystemState
from runtime.events import Event, SocketTuple
from tests.test_engine_process_fields import _apply, _matches

AF_INET = 2
PID = 4242
RULES_DIR = Path(__file__).resolve().parent / "fixtures" / "falco_rules"

_clock = itertools.count(1)


def _ev(evt_type: str, res: int = 0, **params: object) -> Event:
    return Event(ts=next(_clock), cpu=0, type=evt_type, syscall_nr=0, res=res, pid=PID, tid=PID,
                 ppid=1, uid=0, gid=0, comm="client", cgroup_id=0, params=dict(params))


def _field(name: str, ev: Event, st: SystemState) -> object:
    return resolve_field(name).extract(ev, st)


def _udp_socket(st: SystemState, fd: int = 5) -> None:
    _apply(st, _ev("socket", res=fd, domain=AF_INET, type=2, proto=0))


def _tcp_socket(st: SystemState, fd: int = 5) -> None:
    _apply(st, _ev("socket", res=fd, domain=AF_INET, type=1, proto=0))


# ---- fd.connected ---------------------------------------------------------------------------

def _connect(st: SystemState, res: int, fd: int = 5) -> Event:
    return _apply(st, _ev("connect", res=res, fd=fd,
                          tuple=SocketTuple(AF_INET, "10.0.0.2", 40000, "10.1.2.3", 443)))


def test_connected_after_successful_connect() -> None:
    st = SystemState()
    _tcp_socket(st)
    ev = _connect(st, 0)
    assert _field("fd.connected", ev, st) is True
    later = _apply(st, _ev("sendto", res=3, fd=5, size=3, data=b"abc",
                           tuple=SocketTuple(AF_INET, "10.0.0.2", 40000, "10.1.2.3", 443)))
    assert _field("fd.connected", later, st) is True
    assert _matches("fd.connected=true", later, st)


def test_connected_while_nonblocking_connect_in_progress() -> None:
    st = SystemState()
    _tcp_socket(st)
    ev = _connect(st, -errno.EINPROGRESS)
    assert _field("fd.connected", ev, st) is True


def test_not_connected_after_failed_connect() -> None:
    st = SystemState()
    _tcp_socket(st)
    ev = _connect(st, -errno.ECONNREFUSED)
    assert _field("fd.connected", ev, st) is False
    assert _matches("fd.connected=false", ev, st)


def test_fresh_socket_and_files_are_not_connected() -> None:
    st = SystemState()
    ev = _apply(st, _ev("socket", res=5, domain=AF_INET, type=2, proto=0))
    assert _field("fd.connected", ev, st) is False
    opened = _apply(st, _ev("openat", res=6, dirfd=-100, name="/etc/hosts", flags=0, mode=0))
    assert _field("fd.connected", opened, st) is False


def test_accepted_socket_is_connected() -> None:
    st = SystemState()
    ev = _apply(st, _ev("accept4", res=7, flags=0,
                        tuple=SocketTuple(AF_INET, "10.9.9.9", 5555, "10.0.0.2", 80)))
    assert _field("fd.connected", ev, st) is True
    assert _field("fd.is_server", ev, st) is True


def test_no_fd_means_no_value() -> None:
    st = SystemState()
    ev = _apply(st, _ev("execve", res=0, filename="/bin/true"))
    for name in ("fd.connected", "fd.name_changed", "fd.nameraw", "fd.ip"):
        assert _field(name, ev, st) is None, name
    assert _field("fd.port", ev, st) == []
    assert not _matches("fd.connected=false", ev, st)


# ---- fd.name_changed ----------------------------------------------------------------------

def _sendto(st: SystemState, dst: str, dport: int, fd: int = 5) -> Event:
    return _apply(st, _ev("sendto", res=4, fd=fd, size=4, data=b"ping",
                          tuple=SocketTuple(AF_INET, "10.0.0.2", 5353, dst, dport)))


def test_name_changed_across_sendtos_to_different_peers() -> None:
    st = SystemState()
    _udp_socket(st)
    first = _sendto(st, "8.8.8.8", 53)
    assert _field("fd.name_changed", first, st) is True
    assert _field("fd.name", first, st) == "10.0.0.2:5353->8.8.8.8:53"
    again = _sendto(st, "8.8.8.8", 53)
    assert _field("fd.name_changed", again, st) is False
    other = _sendto(st, "1.1.1.1", 53)
    assert _field("fd.name_changed", other, st) is True
    assert _field("fd.name", other, st) == "10.0.0.2:5353->1.1.1.1:53"
    assert _field("fd.sip", other, st) == "1.1.1.1"
    assert _field("fd.connected", other, st) is False
    # The vendored rules' test, compiled.
    cond = "fd.l4proto != tcp and fd.connected=false and fd.name_changed=true"
    assert _matches(cond, other, st)
    assert not _matches(cond, _sendto(st, "1.1.1.1", 53), st)


def test_recvfrom_from_new_peer_makes_receiver_the_server() -> None:
    st = SystemState()
    _udp_socket(st)
    ev = _apply(st, _ev("recvfrom", res=2, fd=5, size=2, data=b"hi",
                        tuple=SocketTuple(AF_INET, "192.0.2.7", 999, "10.0.0.2", 53)))
    assert _field("fd.name_changed", ev, st) is True
    assert _field("fd.cip", ev, st) == "192.0.2.7"
    assert _field("fd.sip", ev, st) == "10.0.0.2"
    assert _field("fd.rip", ev, st) == "192.0.2.7"
    assert _field("fd.lport", ev, st) == 53


def test_connect_to_another_peer_changes_the_name() -> None:
    st = SystemState()
    _udp_socket(st)
    first = _connect(st, 0)
    assert _field("fd.name_changed", first, st) is True  # "" -> the tuple
    second = _apply(st, _ev("connect", res=0, fd=5,
                            tuple=SocketTuple(AF_INET, "10.0.0.2", 40000, "10.1.2.4", 443)))
    assert _field("fd.name_changed", second, st) is True
    same = _apply(st, _ev("connect", res=0, fd=5,
                          tuple=SocketTuple(AF_INET, "10.0.0.2", 40000, "10.1.2.4", 443)))
    assert _field("fd.name_changed", same, st) is False


# ---- fd.nameraw -----------------------------------------------------------------------------

def test_nameraw_is_the_path_as_given() -> None:
    st = SystemState()
    _apply(st, _ev("chdir", res=0, path="/srv/app"))
    ev = _apply(st, _ev("openat", res=6, dirfd=-100, name="../..//etc/./shadow", flags=0,
                        mode=0))
    assert _field("fd.name", ev, st) == "/etc/shadow"
    assert _field("fd.nameraw", ev, st) == "../../etc/./shadow"
    assert _matches("fd.nameraw contains '../' and fd.nameraw glob '*../*../*'", ev, st)
    failed = _apply(st, _ev("openat", res=-2, dirfd=-100, name="../../x", flags=0, mode=0))
    assert _field("fd.nameraw", failed, st) == "../../x"
    plain = _apply(st, _ev("openat", res=7, dirfd=-100, name="/etc/hosts", flags=0, mode=0))
    assert _field("fd.nameraw", plain, st) == "/etc/hosts"
    assert not _matches("fd.nameraw contains '../'", plain, st)


# ---- fd.ip / fd.port ------------------------------------------------------------------------

def test_ip_and_port_match_either_end() -> None:
    st = SystemState()
    _tcp_socket(st)
    ev = _connect(st, 0)
    ips = _field("fd.ip", ev, st)
    assert isinstance(ips, list) and sorted(ips) == ["10.0.0.2", "10.1.2.3"]
    assert _matches('fd.ip = "10.1.2.3"', ev, st)
    assert _matches('fd.ip = "10.0.0.2"', ev, st)
    assert not _matches('fd.ip = "10.0.0.9"', ev, st)
    # Falco's `!=`: true only when neither end is that address.
    assert _matches('fd.ip != "0.0.0.0"', ev, st)
    assert not _matches('fd.ip != "10.0.0.2"', ev, st)
    assert _matches("fd.ip in (10.1.2.3, 192.0.2.1)", ev, st)
    assert _matches("fd.port in (443, 8443)", ev, st)
    assert _matches("fd.port = 40000", ev, st)
    assert not _matches("fd.port in (53, 123)", ev, st)


def test_ip_of_a_file_is_not_available() -> None:
    st = SystemState()
    ev = _apply(st, _ev("openat", res=6, dirfd=-100, name="/etc/hosts", flags=0, mode=0))
    assert _field("fd.ip", ev, st) is None
    assert not _matches('fd.ip != "0.0.0.0"', ev, st)
    assert not _matches("fd.port in (443)", ev, st)


def _connect_to(st: SystemState, server: str, fd: int = 7) -> Event:
    _tcp_socket(st, fd)
    return _apply(st, _ev("connect", res=0, fd=fd,
                          tuple=SocketTuple(AF_INET, "10.0.0.2", 40000, server, 443)))


def test_ip_names_come_from_the_names_rules_compare_against() -> None:
    """Real: this host's resolver (/etc/hosts names `localhost` 127.0.0.1). As libsinsp's
    DNS manager, the table holds only names some condition compares fd.*ip.name with."""
    from runtime.engine.dns import DNS

    st = SystemState()
    ev = _connect(st, 0)
    for end in ("sip", "cip", "lip", "rip"):
        value = _field(f"fd.{end}.name", ev, st)
        assert value is None and render_value(value) == "<NA>"
    assert not _matches('fd.sip.name = "kubernetes.default.svc.cluster.local"', ev, st)
    assert not _matches("fd.sip.name in (pool.minexmr.com)", ev, st)
    DNS.watch(["localhost"])
    DNS.refresh()  # what `rt-engine run` does once its rules are loaded
    local = _connect_to(st, "127.0.0.1")
    assert _matches("fd.sip.name = localhost", local, st)
    assert _matches("fd.rip.name in (no-such-name.invalid, localhost)", local, st)
    assert not _matches("fd.cip.name = localhost", local, st)  # the client is 10.0.0.2
    assert not _matches("fd.sip.name = localhost", ev, st)  # 10.1.2.3 is not localhost
    assert _field("fd.sip.name", local, st) == ["localhost"]


def test_an_ip_name_renders_in_outputs_and_an_unanswered_name_is_bounded() -> None:
    import time

    from runtime.engine.dns import DNS, RESOLVE_TIMEOUT_S, DnsTable

    rules = [{"rule": "to localhost", "desc": "d", "priority": "NOTICE",
              "condition": "evt.type = connect and fd.sip.name = localhost",
              "output": "peer=%fd.sip.name other=%fd.cip.name"}]
    ruleset = load_rules([], extra_texts=[("dns.yaml", yaml.safe_dump(rules))])
    DNS.refresh()
    st = SystemState()
    ev = _connect_to(st, "127.0.0.1")
    (rule,) = ruleset.rules
    assert rule.match(ev, st)
    assert rule.format_output(ev, st)[0] == "peer=localhost other=<NA>"
    table = DnsTable()
    table.watch(["no-such-name.invalid", "not a name", 42, "localhost"])
    assert table.watched == 2  # only DNS names are watched
    started = time.monotonic()
    assert table.names_of("127.0.0.1") is None  # the event path never waits
    assert time.monotonic() - started < 0.1
    table.refresh()
    assert time.monotonic() - started < RESOLVE_TIMEOUT_S + 1
    assert table.names_of("127.0.0.1") == ["localhost"]


# ---- evt.buffer ---------------------------------------------------------------------------

def test_buffer_bcontains_hex_and_contains_text() -> None:
    st = SystemState()
    _tcp_socket(st)
    _connect(st, 0)
    class_file = bytes.fromhex("cafebabe0000003d") + b"java/lang/Object"
    ev = _apply(st, _ev("recvfrom", res=len(class_file), fd=5, size=len(class_file),
                        data=class_file,
                        tuple=SocketTuple(AF_INET, "10.1.2.3", 443, "10.0.0.2", 40000)))
    assert _field("evt.buffer", ev, st) == class_file
    assert _matches("evt.buffer bcontains cafebabe", ev, st)
    assert _matches("evt.buffer bstartswith cafe", ev, st)
    assert _matches("evt.buffer contains java/lang", ev, st)
    assert _matches("evt.buffer icontains JAVA/LANG", ev, st)
    assert not _matches("evt.buffer bcontains deadbeef", ev, st)
    # Output text, in the line and in JSON output_fields: non-printable bytes as `.`.
    assert render_value(_field("evt.buffer", ev, st)) == ".......=java/lang/Object"
    assert json.dumps(_field("evt.buffer", ev, st), default=str) == \
        '".......=java/lang/Object"'
    plain = _apply(st, _ev("sendto", res=3, fd=5, size=3, data=b"GET",
                           tuple=SocketTuple(AF_INET, "10.0.0.2", 40000, "10.1.2.3", 443)))
    assert not _matches("evt.buffer bcontains cafebabe", plain, st)
    assert render_value(_field("evt.buffer", plain, st)) == "GET"
    no_data = _apply(st, _ev("close", res=0, fd=5))
    assert _field("evt.buffer", no_data, st) is None


# ---- chmod mode rendering -----------------------------------------------------------------

def test_mode_renders_as_falco_names_the_bits() -> None:
    assert render_chmod_mode(0o4755) == \
        "S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR|S_ISUID"
    assert render_chmod_mode(0o600) == "S_IWUSR|S_IRUSR"
    assert render_chmod_mode(0o2000) == "S_ISGID"
    assert render_chmod_mode(0) == "0"
    st = SystemState()
    ev = _apply(st, _ev("chmod", res=0, filename="/tmp/x", mode=0o4000 | 0o600))
    assert _field("evt.arg.mode", ev, st) == "S_IWUSR|S_IRUSR|S_ISUID"
    assert _field("evt.rawarg.mode", ev, st) == str(0o4600)
    opened = _apply(st, _ev("openat", res=6, dirfd=-100, name="/tmp/y", flags=0o100,
                            mode=0o644))
    assert _field("evt.arg.mode", opened, st) == "0644"  # open's mode stays octal


def _vendored_rule_text(path: Path, rule_name: str) -> str:
    """The rule and the lists and macros it uses, unmodified, from a vendored file."""
    document = yamlsafe.load(path.read_text(encoding="utf-8"), scalars="typed")
    assert isinstance(document, list)
    items: list[dict[str, object]] = [i for i in document if isinstance(i, dict)]
    named = {str(i.get("macro") or i.get("list")): i for i in items if "macro" in i or "list" in i}
    rule = next(i for i in items if i.get("rule") == rule_name)
    needed: set[str] = set()
    todo = [str(rule["condition"])]
    while todo:
        for word in set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", todo.pop())):
            if word in named and word not in needed:
                needed.add(word)
                item = named[word]
                todo.append(str(item.get("condition", item.get("items"))))
    keep = [i for i in items if str(i.get("macro") or i.get("list")) in needed] + [rule]
    return yaml.safe_dump(keep, sort_keys=False)


def test_vendored_setuid_rule_fires_on_chmod_u_plus_s() -> None:
    text = _vendored_rule_text(RULES_DIR / "falco-incubating_rules.yaml",
                               "Set Setuid or Setgid bit")
    (rule,) = load_rules([], extra_texts=[("falco-incubating_rules.yaml", text)]).rules
    st = SystemState()
    setuid = _apply(st, _ev("fchmodat", res=0, dirfd=-100, filename="/tmp/tool",
                            mode=0o4755))
    assert rule.match(setuid, st)
    line, _fields = rule.format_output(setuid, st)
    assert "mode=S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR|S_ISUID" in line
    plain = _apply(st, _ev("chmod", res=0, filename="/tmp/tool", mode=0o755))
    assert not rule.match(plain, st)


def test_uid_params_render_as_user_names(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    group = tmp_path / "group"
    group.write_text("root:x:0:\nnogroup:x:65534:\n")
    st = SystemState(passwd_path=str(passwd), group_path=str(group))
    ev = _apply(st, _ev("setuid", res=0, uid=65534))
    assert _field("evt.arg.uid", ev, st) == "nobody"
    assert _field("evt.rawarg.uid", ev, st) == "65534"
    assert _matches("evt.arg.uid=nobody", ev, st)
    unnamed = _apply(st, _ev("setuid", res=0, uid=4321))
    assert _field("evt.arg.uid", unnamed, st) == "<NA>"
    unchanged = _apply(st, _ev("setresuid", res=0, ruid=-1, euid=0, suid=-1))
    assert _field("evt.arg.ruid", unchanged, st) == "<NONE>"
    assert _field("evt.arg.euid", unchanged, st) == "root"
    chown = _apply(st, _ev("chown", res=0, path="/tmp/x", uid=0, gid=65534))
    assert _field("evt.arg.gid", chown, st) == "nogroup"


def test_socket_domain_renders_as_its_family_name() -> None:
    # Falco's "Packet socket created in container" tests `evt.arg.domain contains
    # AF_PACKET`: a number there would never match.
    st = SystemState()
    packet = _apply(st, _ev("socket", res=7, domain=17, type=3, proto=768))
    assert _field("evt.arg.domain", packet, st) == "AF_PACKET"
    assert _matches("evt.arg.domain contains AF_PACKET", packet, st)
    assert _field("evt.rawarg.domain", packet, st) == "17"
    inet6 = _apply(st, _ev("socket", res=8, domain=10, type=1, proto=0))
    assert not _matches("evt.arg.domain contains AF_PACKET", inet6, st)
    assert _field("evt.arg.domain", inet6, st) == "AF_INET6"
    unknown = _apply(st, _ev("socket", res=9, domain=999, type=1, proto=0))
    assert _field("evt.arg.domain", unknown, st) == "999"
