"""Malformed packets on the lab's wires with anabranchd running: counted, passed, never mis-marked.

The crafted-packet tests (test_datapath.py) prove the program with BPF_PROG_TEST_RUN;
here the same kinds of damage travel through a real gateway: raw frames leave the
client's up0, are forwarded by the gateway (whose wan0 egress runs the datapath) and
are caught on the server's eth0.  Each frame carries its own IP identification so
what arrives is matched to what was sent.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "ebpf"))
from packets import ACK, SYN, checksum, ethernet, ipv4, ipv6, mptcp_option, tcp, udp  # noqa: E402
from lab import CLIENT_V4, SERVER_V4  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.lab]

RAWFRAMES = REPO / "tests" / "lab" / "rawframes.py"
CLI, SRV = CLIENT_V4[0], SERVER_V4[0]
# Sent with DSCP 46 and ECN 01, so a rewrite is visible and ECN must survive it.
TOS = (46 << 2) | 1
# The default classes' DSCP (ARCHITECTURE.md): port 22 is file, 5060 voice, the rest interactive.
FILE, VOICE, INTERACTIVE = 10, 46, 0


def tagged(ip: bytes, ident: int) -> bytes:
    """`ip` with its identification set to `ident` and the header checksum redone."""
    ihl = (ip[0] & 0x0F) * 4
    header = ip[:4] + struct.pack("!H", ident) + ip[6:10] + b"\0\0" + ip[12:ihl]
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + ip[ihl:]


def up_frame(ident: int, proto: int, l4: bytes, frag: int = 0) -> bytes:
    return ethernet(tagged(ipv4(CLI, SRV, proto, l4, tos=TOS, frag=frag), ident), 0x0800)


def raw_tcp(dport: int, doff: int, options: bytes = b"", flags: int = ACK) -> bytes:
    """A TCP header whose data offset says `doff` words whatever it really carries."""
    return struct.pack("!HHIIBBHHH", 41000, dport, 1, 0, doff << 4, flags, 65535, 0, 0) + options


# (name, frame builder(ident), DSCP expected on arrival, errors counted)
UPLOAD = [
    ("tcp header cut to 10 bytes", lambda i: up_frame(i, 6, tcp(41000, 22)[:10]), INTERACTIVE,
     {"truncated": 1}),
    ("tcp data offset past the packet", lambda i: up_frame(i, 6, raw_tcp(22, 15)), FILE, {"truncated": 1}),
    ("tcp data offset below 5", lambda i: up_frame(i, 6, raw_tcp(22, 2)), FILE, {"malformed": 1}),
    ("tcp option length past the option area",
     lambda i: up_frame(i, 6, tcp(41000, 22, options=b"\x08\x30\x00\x00", payload=b"x")), FILE, {"malformed": 1}),
    ("tcp option length 0", lambda i: up_frame(i, 6, tcp(41000, 22, options=b"\x02\x00\x00\x00")), FILE,
     {"malformed": 1}),
    ("tcp option kind without its length", lambda i: up_frame(i, 6, tcp(41000, 22, options=b"\x01\x01\x01\x02")),
     FILE, {"malformed": 1}),
    ("mptcp option shorter than its subtype", lambda i: up_frame(i, 6, tcp(41001, 443, options=b"\x1e\x02")),
     INTERACTIVE, {}),
    ("mp_capable too short for its key",
     lambda i: up_frame(i, 6, tcp(41002, 443, options=mptcp_option(0, b"\x81\x01", low=1))), INTERACTIVE, {}),
    ("mp_join syn without its token",
     lambda i: up_frame(i, 6, tcp(41003, 443, SYN, options=mptcp_option(1, b"\x00"))), INTERACTIVE, {}),
    ("mptcp option length past the option area",
     lambda i: up_frame(i, 6, tcp(41004, 443, options=b"\x1e\x28\x20\x00")), INTERACTIVE, {"malformed": 1}),
    ("dss claiming a mapping it lacks",
     lambda i: up_frame(i, 6, tcp(41005, 443, options=mptcp_option(2, b"\x1f"))), INTERACTIVE, {}),
    ("add_addr with a cut address",
     lambda i: up_frame(i, 6, tcp(41006, 443, options=mptcp_option(3, b"\x0a\x47"))), INTERACTIVE, {}),
    ("ipv4 first fragment", lambda i: up_frame(i, 17, udp(41007, 5060, b"a" * 24), frag=0x2000), INTERACTIVE,
     {"fragment": 1}),
    ("ipv4 middle fragment", lambda i: up_frame(i, 17, b"b" * 32, frag=0x2000 | 4), INTERACTIVE,
     {"fragment": 1}),
    ("ipv4 last fragment", lambda i: up_frame(i, 17, b"c" * 16, frag=8), INTERACTIVE, {"fragment": 1}),
]

# Into the gateway's wan0 from the server: the datapath sees them first, then the
# kernel drops what is not IP it can route.  (name, frame, errors counted)
DOWNLOAD = [
    ("ipv4 header cut to 10 bytes", ethernet(ipv4(SRV, CLI, 17, udp(53, 41000))[:10], 0x0800), {"truncated": 1}),
    ("ipv4 header length 3 words",
     ethernet(bytes([0x43]) + ipv4(SRV, CLI, 17, udp(53, 41000))[1:], 0x0800), {"malformed": 1}),
    ("ipv6 header cut to 20 bytes", ethernet(ipv6("fd72:1::2", "fd71:1::2", 17, udp(53, 41000))[:20], 0x86DD),
     {"truncated": 1}),
]
# (A VLAN tag cut short never reaches tc on the wire: the kernel's receive path
# untags, and drops, it first.  test_datapath.py covers it with BPF_PROG_TEST_RUN.)
COUNTED = ("truncated", "malformed", "fragment")


def mac(lab, role: str, iface: str) -> str:
    return lab.run(role, "cat", f"/sys/class/net/{iface}/address").stdout.strip()


def errors(client) -> dict[str, int]:
    return client.call("status")["datapath"]["errors"]


def send(lab, role: str, iface: str, dst_mac: str, frames: list[bytes]) -> None:
    lab.run(role, sys.executable, str(RAWFRAMES), "send", iface, "--dst-mac", dst_mac,
            input=json.dumps([f.hex() for f in frames]), timeout=20)


def test_malformed_frames_through_the_gateway_are_counted_passed_and_never_mis_marked(lab, gateway_daemon):
    lab.run("cli", "ping", "-c", "1", "-W", "2", SRV)  # neighbours resolved on every hop
    marker = (socket.inet_aton(CLI) + socket.inet_aton(SRV)).hex()
    capture = lab.popen("srv", sys.executable, str(RAWFRAMES), "capture", "eth0", "--seconds", "4",
                        "--marker", marker, stdout=subprocess.PIPE, text=True)
    with gateway_daemon.client() as client:
        before = errors(client)
        try:
            assert capture.stdout.readline().strip() == "ready"
            frames = {0xAB00 + n: build(0xAB00 + n) for n, (_, build, _, _) in enumerate(UPLOAD)}
            send(lab, "cli", "up0", mac(lab, "gw", "lan0"), list(frames.values()))
            send(lab, "srv", "eth0", mac(lab, "gw", "wan0"), [frame for _, frame, _ in DOWNLOAD])
            arrived = {}
            for raw in json.loads(capture.stdout.readline()):
                frame = bytes.fromhex(raw)
                arrived[struct.unpack("!H", frame[18:20])[0]] = frame
        finally:
            capture.kill()
            capture.wait()
            capture.stdout.close()

        expected = {k: 0 for k in COUNTED}
        for _, _, _, counted in UPLOAD:
            for k, n in counted.items():
                expected[k] += n
        for _, _, counted in DOWNLOAD:
            for k, n in counted.items():
                expected[k] += n
        deadline = time.monotonic() + 5
        while True:  # the state is refreshed once per tick
            after = errors(client)
            delta = {k: after[k] - before[k] for k in COUNTED}
            if delta == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert delta == expected

        for n, (name, _, dscp, _) in enumerate(UPLOAD):
            ident = 0xAB00 + n
            assert ident in arrived, f"{name}: did not reach the server"
            sent, got = frames[ident], arrived[ident]
            assert got[15] == (dscp << 2) | (TOS & 3), f"{name}: arrived with TOS {got[15]:#x}"
            # Nothing but TOS, TTL and the header checksum changed on the way.
            assert got[34:len(sent)] == sent[34:], f"{name}: the payload changed"
            assert got[22] == sent[22] - 1

        # Still counting ordinary traffic afterwards, and answering.
        lab.run("cli", "ping", "-c", "1", "-W", "2", SRV)
        assert gateway_daemon.process.poll() is None
        assert client.call("status")["daemon"]["ticks"] > 0
