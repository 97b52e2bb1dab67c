"""Address translation from conntrack: the netlink parser (bytes built here), the mapping of
flow tables (no root), and the kernel's events and dumps, overrun included (lab, root)."""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

import numpy as np
import pytest
from flowgen import table
from lab import CLIENT_V4, GATEWAY_WAN_V4, SERVER_V4

from anabranch.daemon.conntrack import (
    CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST, CTA_IP_V6_SRC, CTA_PROTO_DST_PORT, CTA_PROTO_NUM,
    CTA_PROTO_SRC_PORT, CTA_TUPLE_IP, CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_TUPLE_REPLY, IPCTNL_MSG_CT_DELETE,
    IPCTNL_MSG_CT_NEW, NFNL_SUBSYS_CTNETLINK, NLMSG_DONE, Connection, Conntrack, Event, Translator, Tuple,
    parse, wire_key, wire_mappings)
from anabranch.daemon.records import FlowRecords

NESTED = 0x8000


def attr(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)


def tuple_attr(kind: int, src: str, dst: str, proto: int, sport: int, dport: int,
               nested: int = NESTED, extra: bytes = b"") -> bytes:
    v6 = ":" in src
    ip = attr(CTA_IP_V6_SRC if v6 else CTA_IP_V4_SRC, ipaddress.ip_address(src).packed) + \
        attr(CTA_IP_V6_DST if v6 else CTA_IP_V4_DST, ipaddress.ip_address(dst).packed)
    ports = attr(CTA_PROTO_NUM, bytes([proto])) + attr(CTA_PROTO_SRC_PORT, struct.pack(">H", sport)) + \
        attr(CTA_PROTO_DST_PORT, struct.pack(">H", dport))
    return attr(kind | nested, attr(CTA_TUPLE_IP | nested, ip) + attr(CTA_TUPLE_PROTO | nested, ports) + extra)


STATUS = attr(3, b"\0\0\0\x08")     # CTA_STATUS


def message(msg: int, orig: tuple, reply: tuple, proto: int = socket.IPPROTO_TCP, nested: int = NESTED,
            extra: bytes = b"", first: bytes = b"") -> bytes:
    """A ctnetlink message as the kernel writes it; `nested` the flag of nests, `extra` an
    attribute appended to each tuple, `first` attributes before the tuples."""
    family = socket.AF_INET6 if ":" in orig[0] else socket.AF_INET
    body = struct.pack("=BBH", family, 0, 0) + first + \
        tuple_attr(CTA_TUPLE_ORIG, *orig[:2], proto, *orig[2:], nested, extra) + \
        tuple_attr(CTA_TUPLE_REPLY, *reply[:2], proto, *reply[2:], nested, extra) + STATUS
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_CTNETLINK << 8) | msg, 0, 0, 0) + body


LAN, WAN, REMOTE = "192.168.1.10", "203.0.113.7", "198.51.100.20"
MASQUERADED = ((LAN, REMOTE, 51000, 443), (REMOTE, WAN, 443, 40112))
FORWARDED = ((REMOTE, WAN, 61000, 8443), (LAN, REMOTE, 443, 61000))


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def test_new_and_destroyed_connections_are_parsed_with_both_tuples():
    done = struct.pack("=IHHII", 20, NLMSG_DONE, 0, 0, 0) + b"\0" * 4
    events, finished = parse(message(IPCTNL_MSG_CT_NEW, *MASQUERADED)
                             + message(IPCTNL_MSG_CT_DELETE, *MASQUERADED, proto=socket.IPPROTO_UDP) + done)
    assert finished
    assert events == [
        Event("new", Connection(4, 6, Tuple(ip(LAN), ip(REMOTE), 51000, 443), Tuple(ip(REMOTE), ip(WAN), 443, 40112))),
        Event("destroy", Connection(4, 17, Tuple(ip(LAN), ip(REMOTE), 51000, 443),
                                    Tuple(ip(REMOTE), ip(WAN), 443, 40112))),
    ]
    v6 = message(IPCTNL_MSG_CT_NEW, ("fd00::10", "2001:db8::1", 5000, 53), ("2001:db8::1", "2001:db8:1::1", 53, 5000),
                 proto=socket.IPPROTO_UDP)
    assert parse(v6)[0][0].connection.family == 6


@pytest.mark.parametrize("v6", [False, True])
def test_every_layout_of_the_tuples_parses_the_same(v6):
    """The usual layout is read in place; nests without NLA_F_NESTED (older kernels)
    too; a zone inside the tuples or another attribute before them takes the walk."""
    tuples = ((("fd00::10", "2001:db8::1", 5000, 53), ("2001:db8::1", "2001:db8:1::1", 53, 5000)) if v6
              else MASQUERADED)
    usual = parse(message(IPCTNL_MSG_CT_NEW, *tuples))[0]
    assert len(usual) == 1 and usual[0].connection.orig.sport in (5000, 51000)
    zone = attr(3, struct.pack(">H", 7) + b"\0\0")      # CTA_TUPLE_ZONE
    for variant in (message(IPCTNL_MSG_CT_NEW, *tuples, nested=0), message(IPCTNL_MSG_CT_NEW, *tuples, extra=zone),
                    message(IPCTNL_MSG_CT_NEW, *tuples, first=STATUS)):
        assert parse(variant)[0] == usual


def test_connections_without_ports_other_messages_and_truncated_buffers_are_skipped():
    icmp = message(IPCTNL_MSG_CT_NEW, *MASQUERADED, proto=socket.IPPROTO_ICMP)
    other = bytearray(message(IPCTNL_MSG_CT_NEW, *MASQUERADED))
    other[4:6] = struct.pack("=H", (2 << 8) | IPCTNL_MSG_CT_NEW)     # another nfnetlink subsystem
    whole = message(IPCTNL_MSG_CT_NEW, *MASQUERADED)
    assert parse(icmp + bytes(other))[0] == []
    assert parse(whole[:40]) == ([], False)
    assert parse(whole[:-8])[0] == []          # the message claims more than the buffer holds


def test_source_and_destination_translation_map_the_wire_tuple_to_the_lan_host():
    masq = parse(message(IPCTNL_MSG_CT_NEW, *MASQUERADED))[0][0].connection
    assert wire_mappings(masq) == [(wire_key(4, 6, ip(WAN), 40112, ip(REMOTE), 443), ip(LAN), 51000)]
    fwd = parse(message(IPCTNL_MSG_CT_NEW, *FORWARDED))[0][0].connection
    assert wire_mappings(fwd) == [(wire_key(4, 6, ip(WAN), 8443, ip(REMOTE), 61000), ip(LAN), 443)]
    plain = parse(message(IPCTNL_MSG_CT_NEW, (LAN, REMOTE, 51000, 443), (REMOTE, LAN, 443, 51000)))[0][0]
    assert wire_mappings(plain.connection) == []


def test_translated_flows_take_their_lan_host_and_keep_their_wire_key():
    specs = [{"lan": WAN, "lport": 40112, "remote": REMOTE, "rport": 443},      # masqueraded
             {"lan": WAN, "lport": 22, "remote": REMOTE, "rport": 50000},       # the gateway's own
             {"lan": "10.0.0.5", "lport": 40000, "remote": REMOTE, "rport": 443}]
    t = table(specs)
    nat = Translator()
    nat.learn(parse(message(IPCTNL_MSG_CT_NEW, *MASQUERADED))[0])
    out = nat.apply(t)
    assert out.wire_keys is t.keys and out.kernel_keys() is t.keys
    lan = {int(i): (ipaddress.ip_address(bytes(k["lan_addr"][:4])).exploded, int(k["lan_port"]))
           for i, k in zip(out.ids, out.keys)}
    by_spec = [lan[int(t.ids[np.flatnonzero(t.keys["lan_port"] == s["lport"])[0]])] for s in specs]
    assert by_spec == [(LAN, 51000), (WAN, 22), ("10.0.0.5", 40000)]
    assert (out.keys["remote_addr"] == t.keys["remote_addr"]).all()

    # Looked up once: the mapping holds after conntrack forgets the connection, while the flow lives.
    nat.learn(parse(message(IPCTNL_MSG_CT_DELETE, *MASQUERADED))[0])
    assert nat.hosts == {}
    again = nat.apply(t)
    assert (again.keys == out.keys).all()
    # NAT gives that port to another LAN host, under the same wire key: the flow follows it.
    other = (("192.168.1.11", REMOTE, 51000, 443), MASQUERADED[1])
    nat.learn(parse(message(IPCTNL_MSG_CT_NEW, *other))[0])
    records = FlowRecords()
    row = int(np.flatnonzero(t.keys["lan_port"] == 40112)[0])
    assert records.build(out, np.array([row]), {}, 0.0)[0]["src"] == LAN
    moved = nat.apply(t)
    assert bytes(moved.keys["lan_addr"][row][:4]) == ip("192.168.1.11")
    assert (np.delete(moved.keys, row) == np.delete(out.keys, row)).all()
    assert nat.relooked.tolist() == [int(t.ids[row])]      # its record is built again
    records.forget(nat.relooked)
    assert records.build(moved, np.array([row]), {}, 0.0)[0]["src"] == "192.168.1.11"
    assert len(nat.apply(t).keys) and not len(nat.relooked)
    # A table with no translated flow is passed through as it is.
    rest = table(specs[1:])
    assert nat.apply(rest) is rest and rest.kernel_keys() is rest.keys



def udp_from_client(lab, ports: range, dports: tuple[int, ...]) -> str:
    """Python for the gateway's test script: one UDP datagram (a conntrack "connection")
    from the client for each source port and destination port, sent from the client's namespace."""
    send = (f"import socket\nfor port in {ports!r}:\n    for i, dport in enumerate({dports!r}):\n"
            "        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"        s.bind(('', port + 1000 * i)); s.sendto(b'x', ('{SERVER_V4[0]}', dport)); s.close()\n")
    client = lab.ns("cli")
    return f'subprocess.run(["ip", "netns", "exec", "{client}", sys.executable, "-c", {send!r}], check=True)'


def run_on_masquerading_gateway(lab, match: str, script: str) -> list[str]:
    """Run `script` with Python in the gateway's namespace (conntrack lives there) while
    nftables masquerades what `match` selects out of wan0; the words it printed."""
    lab.run("gw", "nft", 'add table ip ab_ct; add chain ip ab_ct post { type nat hook postrouting priority srcnat; }; '
            f'add rule ip ab_ct post oifname "wan0" {match} masquerade')
    try:
        return lab.run("gw", sys.executable, "-c", "import socket, subprocess, sys, time\n" + script,
                       timeout=60).stdout.split()
    finally:
        lab.run("gw", "nft", "delete table ip ab_ct")


@pytest.mark.root
@pytest.mark.lab
def test_the_kernels_events_and_dumps_and_a_resync_after_an_overrun(lab):
    resyncs, mapped, first = run_on_masquerading_gateway(lab, "ip protocol udp", f"""
from anabranch.daemon.conntrack import Conntrack, Translator
nat = Translator(Conntrack(receive_buffer=1))                   # the kernel's minimum: overrun at once
nat.refresh()                                                    # the start: a dump
{udp_from_client(lab, range(20000, 20300), (9999,))}
time.sleep(0.5)
nat.refresh()                                                    # overrun: the whole table again
wan = socket.inet_aton("{GATEWAY_WAN_V4[0]}")
mapped = {{(socket.inet_ntoa(a[:4]), p) for k, (a, p) in nat.hosts.items() if k[8:12] == wan}}
print(nat.resyncs, len(mapped), ("{CLIENT_V4[0]}", 20000) in mapped)
""")
    assert resyncs == "2"
    assert int(mapped) == 300 and first == "True"


@pytest.mark.root
@pytest.mark.lab
def test_the_kernel_passes_only_events_of_translated_connections(lab):
    # 20 UDP "connections" the gateway masquerades (to port 9999) and 20 it routes as they are.
    filtered, passed, all_translated, seen = run_on_masquerading_gateway(lab, "udp dport 9999", f"""
from anabranch.daemon.conntrack import Conntrack, wire_mappings
nat_only, every = Conntrack(), Conntrack(nat_only=False)
{udp_from_client(lab, range(21000, 21020), (9999, 9998))}
time.sleep(0.5)
a, b = nat_only.read(), every.read()
new = [e for e in a if e.kind == "new"]
print(nat_only.filtered, len(new), all(wire_mappings(e.connection) for e in new),
      len([e for e in b if e.kind == "new" and e.connection.orig.dport in (9998, 9999)]))
""")
    assert filtered == "True"
    assert seen == "40"                            # the unfiltered socket sees every connection
    assert passed == "20" and all_translated == "True"
