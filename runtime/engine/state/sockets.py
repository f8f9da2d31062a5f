"""Socket fds: address families and types as Falco names them, Falco's text form of a
socket tuple, and the sockets already open at start (/proc/net tables).

Decoded connect/accept events carry their endpoints structured (runtime.events.SocketTuple);
`parse_tuple` reads the text form, which events built by hand (tests, other producers)
may carry instead.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from runtime.engine.state.procfs import read_text
from runtime.engine.state.tables import FdInfo

AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10

# Socket domain -> (fd.type, fd.typechar).
SOCKET_FAMILIES: dict[int, tuple[str, str]] = {
    AF_UNIX: ("unix", "u"), AF_INET: ("ipv4", "4"), AF_INET6: ("ipv6", "6"),
    16: ("netlink", "n"),
}
# socket(2) type -> fd.l4proto for IP sockets: STREAM, DGRAM, RAW, SEQPACKET.
SOCK_TYPE_L4 = {1: "tcp", 2: "udp", 3: "raw", 5: "tcp"}
SOCK_TYPE_MASK = 0xF  # SOCK_NONBLOCK/SOCK_CLOEXEC share the type argument
ICMP_PROTOS = (1, 58)  # IPPROTO_ICMP, IPPROTO_ICMPV6: a raw socket of these is "icmp"


def _parse_endpoint(text: str) -> tuple[str, int | None]:
    """`1.2.3.4:80`, `[::1]:80` or Falco's `::1:80` -> (address, port)."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
        if not host:
            return text, None
    return host, int(port) if port.isdigit() else None


def parse_tuple(text: str) -> tuple[str | None, int | None, str | None, int | None]:
    """Falco's socket tuple text `cip:cport->sip:sport` -> (cip, cport, sip, sport);
    `->sip:sport` when only the destination is known (unconnected UDP, failures)."""
    left, sep, right = text.partition("->")
    if not sep:
        raise ValueError(f"not a socket tuple: {text!r}")
    cip, cport = _parse_endpoint(left) if left else (None, None)
    sip, sport = _parse_endpoint(right) if right else (None, None)
    return cip, cport, sip, sport


def _hex_address(text: str, family: int) -> tuple[str, int]:
    """/proc/net/tcp's `0100007F:0016` (host-order 32-bit words) -> ("127.0.0.1", 22)."""
    addr_hex, _, port_hex = text.partition(":")
    raw = bytes.fromhex(addr_hex)
    # Each 32-bit word is printed in host (little-endian) order.
    fixed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.IPv4Address(fixed) if family == 4 else ipaddress.IPv6Address(fixed)
    return str(ip), int(port_hex, 16)


_TCP_LISTEN = "0A"


def read_socket_table(net_dir: Path) -> dict[int, FdInfo]:
    """Socket inode -> FdInfo template (fd -1) from /proc/net/{tcp,udp,raw}{,6} and unix.

    Which end is the server is decided as libsinsp does for sockets it finds at start:
    the local end is the server when its port is one this host listens on. A socket with
    a peer already is connected (fd.connected).
    """
    rows: list[tuple[int, str, int, str, int, str, int, bool]] = []
    listening: set[int] = set()
    for name, l4proto, family in (("tcp", "tcp", 4), ("tcp6", "tcp", 6), ("udp", "udp", 4),
                                  ("udp6", "udp", 6), ("raw", "raw", 4), ("raw6", "raw", 6)):
        for line in read_text(net_dir / name).splitlines()[1:]:
            parts = line.split()
            if len(parts) < 10 or not parts[9].isdigit() or parts[9] == "0":
                continue  # inode 0: TIME_WAIT and friends, owned by no fd
            try:
                lip, lport = _hex_address(parts[1], family)
                rip, rport = _hex_address(parts[2], family)
            except ValueError:
                continue
            is_listen = l4proto == "tcp" and parts[3] == _TCP_LISTEN
            if is_listen:
                listening.add(lport)
            rows.append((family, l4proto, int(parts[9]), lip, lport, rip, rport, is_listen))
    table: dict[int, FdInfo] = {}
    for family, l4proto, inode, lip, lport, rip, rport, is_listen in rows:
        kind, char = ("ipv4", "4") if family == 4 else ("ipv6", "6")
        if is_listen or (rport == 0 and l4proto != "tcp"):
            table[inode] = FdInfo(-1, kind, char, f"{lip}:{lport}", 0, l4proto, None, None,
                                  lip, lport, True)
        elif lport in listening:
            table[inode] = FdInfo(-1, kind, char, f"{rip}:{rport}->{lip}:{lport}", 0, l4proto,
                                  rip, rport, lip, lport, True, connected=True)
        else:
            table[inode] = FdInfo(-1, kind, char, f"{lip}:{lport}->{rip}:{rport}", 0, l4proto,
                                  lip, lport, rip, rport, False, connected=True)
    for line in read_text(net_dir / "unix").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 7 and parts[6].isdigit():
            path = parts[7] if len(parts) > 7 else ""
            table[int(parts[6])] = FdInfo(-1, "unix", "u", path)
    return table
