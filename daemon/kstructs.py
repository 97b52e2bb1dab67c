"""The one Python view of the structs in ebpf/datapath.h: numpy dtypes and constants.

Sweeps copy the live slots of the mapped flow table into arrays of these dtypes
(no per-entry Python objects), and set_bases() computes where the kernel puts a
flow.  tests/daemon/test_kstructs.py checks, as root, that every size and
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
PORT_MARK = 0x02
PORT_INDEX_SIZE = 4096      # AB_PORT_INDEX_SIZE default: ifindexes below it are in the port_index array

FAMILY_V4 = 4
FAMILY_V6 = 6

# Class ids (AB_CLASS_* in datapath.h); the classes map has CLASS_MAX entries.
CLASS_UNCLASSIFIED = 0
CLASS_IDS = {"voice": 1, "video": 2, "interactive": 3, "file": 4, "background": 5}
CLASS_MAX = 16
CLASS_SET_DSCP = 0x01
CLASS_SET_PRIO = 0x02

# Why a flow has its class (AB_REASON_*), index -> name.
REASONS = ("none", "default", "port", "prefix", "token", "override")

# Index -> name of the per-CPU error counters (AB_ERR_* in datapath.h).
ERRORS = ("truncated", "fragment", "flow_insert", "not_ip", "event_lost", "malformed", "mark")

# MPTCP option subtypes (AB_MPTCP_*), index -> name; bit i of mptcp_subtypes.
MPTCP_SUBTYPES = ("MP_CAPABLE", "MP_JOIN", "DSS", "ADD_ADDR", "REMOVE_ADDR", "MP_PRIO",
                  "MP_FAIL", "MP_FASTCLOSE", "MP_TCPRST")
MPTCP_VERSION_NONE = 0xFF

EVENT_NEW_FLOW = 1
EVENT_FLOW_END = 2
EVENT_PAYLOAD = 3
EVENT_MPTCP = 4
END_FIN = 1
END_RST = 2

SNIPPET_SIZE = 512          # AB_SNIPPET_SIZE default
TCP_OPTIONS_MAX = 40
DSCP_MAX = 64


def _struct(fields: list[tuple[str, object, int]], itemsize: int) -> np.dtype:
    names, formats, offsets = zip(*fields)
    return np.dtype({"names": list(names), "formats": list(formats), "offsets": list(offsets),
                     "itemsize": itemsize})


FLOW_KEY = _struct([
    ("ifindex", "<u4", 0), ("family", "u1", 4), ("proto", "u1", 5), ("lan_port", "<u2", 6),
    ("remote_port", "<u2", 8), ("reserved", "<u2", 10), ("lan_addr", ("u1", 16), 12),
    ("remote_addr", ("u1", 16), 28),
], 44)

FLOW_DIR = _struct([
    ("packets", "<u8", 0), ("bytes", "<u8", 8), ("next_seq", "<u4", 16), ("retransmits", "<u4", 20),
    ("ts_sent", "<u4", 24), ("echo_tsval", "<u4", 28), ("echo_ns", "<u8", 32),
    ("rtt_last_ns", "<u4", 40), ("rtt_min_ns", "<u4", 44), ("rtt_srtt_ns", "<u4", 48),
    ("rtt_samples", "<u4", 52), ("seq_valid", "u1", 56), ("ts_state", "u1", 57),
    ("echo_armed", "u1", 58), ("tcp_flags", "u1", 59), ("snippets", "u1", 60),
    ("reserved", ("u1", 3), 61),
], 64)

FLOW = _struct([
    ("last_seen_ns", "<u8", 0), ("policy_generation", "<u4", 8), ("opened_by", "u1", 12),
    ("class_id", "u1", 13), ("class_reason", "u1", 14), ("mptcp_version", "u1", 15),
    ("first_seen_ns", "<u8", 16), ("join_token", "<u4", 24), ("mptcp_subtypes", "<u2", 28),
    ("reserved", "<u2", 30), ("reserved2", ("u1", 48), 32), ("dir", (FLOW_DIR, 2), 80),
], 208)

FLOW_SLOT = _struct([("key", FLOW_KEY, 0), ("state", "<u4", 44), ("flow", FLOW, 48)], 256)

# struct ab_flow_slot.state, and the slots of one set (AB_FLOW_WAYS).
SLOT_EMPTY = 0
SLOT_CLAIMED = 1
SLOT_LIVE = 2
FLOW_WAYS = 4
_HASH_MULTIPLIER = np.uint64(0xFF51AFD7ED558CCD)


def flow_slots(size: int) -> int:
    """Slots of a flow table asked to hold `size` flows: whole sets."""
    return -(-size // FLOW_WAYS) * FLOW_WAYS


def set_bases(keys: np.ndarray, seed: int, slots: int) -> np.ndarray:
    """[len(keys), 2]: the first slot of each key's two sets, as key_hash() and
    find_slot() in datapath.bpf.c compute them."""
    words = np.ascontiguousarray(keys, dtype=FLOW_KEY).view("<u4").reshape(len(keys), -1)
    hashed = np.full(len(keys), seed, dtype=np.uint64)
    sets = np.uint64(slots // FLOW_WAYS)
    with np.errstate(over="ignore"):
        for i in range(words.shape[1]):
            hashed = (hashed ^ words[:, i]) * _HASH_MULTIPLIER
        hashed ^= hashed >> np.uint64(32)
        hashed *= _HASH_MULTIPLIER
        hashed ^= hashed >> np.uint64(29)
    halves = np.stack([hashed >> np.uint64(32), hashed & np.uint64(0xFFFFFFFF)], axis=1)
    return ((halves * sets) >> np.uint64(32)).astype(np.int64) * FLOW_WAYS


PORT = _struct([("role", "u1", 0), ("flags", "u1", 1), ("reserved", "<u2", 2)], 4)

CONFIG = _struct([("policy_generation", "<u4", 0), ("default_class", "u1", 4),
                  ("reserved", ("u1", 3), 5), ("jiffy_ns", "<u8", 8), ("jiffies_base_ns", "<i8", 16)], 24)

CLOCK_SAMPLE = _struct([("jiffies", "<u8", 0), ("monotonic_ns", "<u8", 8)], 16)

CLASS = _struct([("priority", "<u4", 0), ("dscp", "u1", 4), ("flags", "u1", 5),
                 ("reserved", "<u2", 6)], 8)

PORT_CLASS = _struct([("tcp", "u1", 0), ("udp", "u1", 1), ("other", "u1", 2),
                      ("reserved", "u1", 3), ("tcp_rank", "<u2", 4), ("udp_rank", "<u2", 6),
                      ("other_rank", "<u2", 8), ("reserved2", "<u2", 10)], 12)

PREFIX_V4 = _struct([("prefixlen", "<u4", 0), ("addr", ("u1", 4), 4)], 8)
PREFIX_V6 = _struct([("prefixlen", "<u4", 0), ("addr", ("u1", 16), 4)], 20)

CLASS_RULE = _struct([("class_id", "u1", 0), ("reserved", "u1", 1), ("rank", "<u2", 2)], 4)
# Ranks of rules in the kernel maps are 16 bits; later rules share the last.
MAX_RANK = 0xFFFF

EVENT_HEADER = _struct([
    ("event_type", "u1", 0), ("direction", "u1", 1), ("reserved", ("u1", 6), 2),
    ("ts_ns", "<u8", 8), ("key", FLOW_KEY, 16), ("reserved2", "<u4", 60),
], 64)

EVENT_FLOW = _struct([
    ("header", EVENT_HEADER, 0), ("class_id", "u1", 64), ("class_reason", "u1", 65),
    ("end_reason", "u1", 66), ("reserved", ("u1", 5), 67),
], 72)


def event_payload_dtype(snippet_size: int = SNIPPET_SIZE) -> np.dtype:
    return _struct([
        ("header", EVENT_HEADER, 0), ("payload_len", "<u4", 64), ("captured", "<u2", 68),
        ("dns_answer", "u1", 70), ("reserved", "u1", 71), ("payload", ("u1", snippet_size), 72),
    ], 72 + snippet_size)


EVENT_PAYLOAD_T = event_payload_dtype()

EVENT_MPTCP_T = _struct([
    ("header", EVENT_HEADER, 0), ("subtype", "u1", 64), ("version", "u1", 65),
    ("option_len", "u1", 66), ("tcp_flags", "u1", 67), ("reserved", ("u1", 4), 68),
    ("option", ("u1", TCP_OPTIONS_MAX), 72),
], 112)

# The C struct each dtype mirrors, for the layout test and --dump-ebpf.
C_STRUCTS = {"ab_flow_key": FLOW_KEY, "ab_flow": FLOW, "ab_flow_slot": FLOW_SLOT, "ab_port": PORT,
             "ab_flow_dir": FLOW_DIR, "ab_config": CONFIG, "ab_clock_sample": CLOCK_SAMPLE,
             "ab_class": CLASS, "ab_port_class": PORT_CLASS, "ab_prefix_v4": PREFIX_V4,
             "ab_prefix_v6": PREFIX_V6, "ab_class_rule": CLASS_RULE,
             "ab_event_header": EVENT_HEADER, "ab_event_flow": EVENT_FLOW,
             "ab_event_payload": EVENT_PAYLOAD_T, "ab_event_mptcp": EVENT_MPTCP_T}

PROTO_NAMES = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp",
               socket.IPPROTO_ICMP: "icmp", socket.IPPROTO_ICMPV6: "icmpv6",
               socket.IPPROTO_IGMP: "igmp", socket.IPPROTO_GRE: "gre", socket.IPPROTO_ESP: "esp",
               socket.IPPROTO_SCTP: "sctp"}


def address(family: int, raw: np.ndarray | bytes) -> str:
    """Text form of a key's 16-byte address field."""
    raw = bytes(raw)
    if family == FAMILY_V4:
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw[:16]))


def proto_name(proto: int) -> str:
    return PROTO_NAMES.get(int(proto), str(int(proto)))
