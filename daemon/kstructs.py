"""The one Python view of the structs in ebpf/datapath.h: numpy dtypes and constants.

Sweeps read the flow map straight into arrays of these dtypes (no per-entry Python
objects).  tests/daemon/test_kstructs.py checks, as root, that every size and
offset here agrees with the ctypes types BCC generated from the compiled program.
Importing this module does not import BCC.
"""

from __future__ import annotations

import ipaddress
import socket

import numpy as np

DIR_UP = 0
DIR_DOWN = 1

ROLE_LAN = 1
ROLE_WAN = 2

PORT_COUNT = 0x01

FAMILY_V4 = 4
FAMILY_V6 = 6

# Index -> name of the per-CPU error counters (AB_ERR_* in datapath.h).
ERRORS = ("truncated", "fragment", "flow_insert", "not_ip")

FLOW_KEY = np.dtype({
    "names": ["ifindex", "family", "proto", "lan_port", "remote_port", "reserved",
              "lan_addr", "remote_addr"],
    "formats": ["<u4", "u1", "u1", "<u2", "<u2", "<u2", ("u1", 16), ("u1", 16)],
    "offsets": [0, 4, 5, 6, 8, 10, 12, 28],
    "itemsize": 44,
})

DIR_COUNTERS = np.dtype({
    "names": ["packets", "bytes"],
    "formats": ["<u8", "<u8"],
    "offsets": [0, 8],
    "itemsize": 16,
})

FLOW = np.dtype({
    "names": ["dir", "first_seen_ns", "last_seen_ns", "tcp_flags", "opened_by", "reserved"],
    "formats": [(DIR_COUNTERS, 2), "<u8", "<u8", ("u1", 2), "u1", ("u1", 5)],
    "offsets": [0, 32, 40, 48, 50, 51],
    "itemsize": 56,
})

PORT = np.dtype({
    "names": ["role", "flags", "reserved"],
    "formats": ["u1", "u1", "<u2"],
    "offsets": [0, 1, 2],
    "itemsize": 4,
})

# The C struct each dtype mirrors, for the layout test and --dump-ebpf.
C_STRUCTS = {"ab_flow_key": FLOW_KEY, "ab_flow": FLOW, "ab_port": PORT,
             "ab_dir_counters": DIR_COUNTERS}

PROTO_NAMES = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp",
               socket.IPPROTO_ICMP: "icmp", socket.IPPROTO_ICMPV6: "icmpv6"}


def address(family: int, raw: np.ndarray | bytes) -> str:
    """Text form of a key's 16-byte address field."""
    raw = bytes(raw)
    if family == FAMILY_V4:
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw[:16]))


def proto_name(proto: int) -> str:
    return PROTO_NAMES.get(int(proto), str(int(proto)))
