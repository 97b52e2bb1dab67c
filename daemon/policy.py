"""Write the datapath's policy maps from plain Python values: classes, rules, overrides.

The kernel classifies a flow at its first packet from these maps (override, MPTCP
token, then of the prefix and port rules that match the one of lowest rank, else
the default) and marks it with its class's DSCP and HTB classid.  After any
change the config map's policy generation is bumped, so live flows re-evaluate
their class on their next packet.

    policy = Policy.default()                      # ARCHITECTURE.md's class table
    write_policy(datapath, policy)
    set_override(datapath, flow_key, "file")       # one flow
    set_token_class(datapath, token, "voice")      # an MPTCP connection's joined subflows
"""

from __future__ import annotations

import ipaddress
import socket
from ctypes import byref as ct_byref
from ctypes import c_uint32 as ct_uint32
from ctypes import c_void_p as ct_void_p
from dataclasses import dataclass, field

import numpy as np

from . import kstructs

HTB_MAJOR = 1
PROTOS = ("tcp", "udp", "any")


def htb_classid(class_id: int) -> int:
    """The HTB class of a class id, as a tc handle: 1:(0x10 + id), e.g. voice 1:11."""
    return (HTB_MAJOR << 16) | (0x10 + class_id)


@dataclass(frozen=True)
class TrafficClass:
    name: str
    class_id: int                 # 1 .. CLASS_MAX-1 (0 is "unclassified")
    dscp: int | None              # None: leave DSCP alone
    classid: int | None = None    # HTB classid (tc handle); None: htb_classid(class_id)


@dataclass(frozen=True)
class PortRule:
    class_name: str
    ports: tuple[tuple[int, int], ...]   # inclusive ranges
    proto: str = "any"                    # "tcp", "udp" or "any"
    rank: int = 0                         # place in the rule list: of the rules that match, lowest wins


@dataclass(frozen=True)
class PrefixRule:
    class_name: str
    prefix: str                           # "10.0.0.0/8", "2001:db8::/32"
    rank: int = 0                         # as PortRule's; on a tie the prefix rule wins


@dataclass
class Policy:
    classes: list[TrafficClass]
    port_rules: list[PortRule] = field(default_factory=list)
    prefix_rules: list[PrefixRule] = field(default_factory=list)
    default_class: str = "interactive"
    mark_priority: bool = True            # set skb->priority (HTB steering)

    @classmethod
    def default(cls) -> Policy:
        classes = [TrafficClass("voice", 1, 46), TrafficClass("video", 2, 34),
                   TrafficClass("interactive", 3, 0), TrafficClass("file", 4, 10),
                   TrafficClass("background", 5, 8)]
        rules = [
            PortRule("voice", ((5060, 5062), (16384, 16396))),
            PortRule("video", ((1935, 1935), (3478, 3478), (5004, 5004), (8554, 8554), (6970, 6979))),
            PortRule("file", tuple((p, p) for p in (20, 21, 22, 25, 110, 143, 445, 3389, 8080, 8443))),
            PortRule("background", tuple((p, p) for p in (53, 123, 161, 389, 3306, 5432))),
        ]
        return cls(classes=classes, port_rules=rules)

    def class_id(self, name: str, where: str = "class") -> int:
        for traffic_class in self.classes:
            if traffic_class.name == name:
                return traffic_class.class_id
        known = ", ".join(c.name for c in self.classes)
        raise ValueError(f"{where}: unknown class {name!r} (known: {known})")

    def validate(self) -> None:
        seen: set[int] = set()
        for i, c in enumerate(self.classes):
            where = f"classes[{i}] ({c.name})"
            if not 1 <= c.class_id < kstructs.CLASS_MAX:
                raise ValueError(f"{where}.class_id: must be 1..{kstructs.CLASS_MAX - 1}, got {c.class_id}")
            if c.class_id in seen:
                raise ValueError(f"{where}.class_id: {c.class_id} is used twice")
            seen.add(c.class_id)
            if c.dscp is not None and not 0 <= c.dscp < 64:
                raise ValueError(f"{where}.dscp: must be 0..63, got {c.dscp}")
        for i, rule in enumerate(self.port_rules):
            self.class_id(rule.class_name, f"port_rules[{i}].class_name")
            if rule.proto not in PROTOS:
                raise ValueError(f"port_rules[{i}].proto: one of {', '.join(PROTOS)}, got {rule.proto!r}")
            for low, high in rule.ports:
                if not 0 <= low <= high <= 65535:
                    raise ValueError(f"port_rules[{i}].ports: bad range {low}-{high} (0..65535, low <= high)")
        for i, rule in enumerate(self.prefix_rules):
            self.class_id(rule.class_name, f"prefix_rules[{i}].class_name")
            try:
                ipaddress.ip_network(rule.prefix, strict=False)
            except ValueError as exc:
                raise ValueError(f"prefix_rules[{i}].prefix: {exc}") from None
        self.class_id(self.default_class, "default_class")

    def port_table(self) -> np.ndarray:
        """The port_classes array (65536 entries): for each port and protocol, the class
        and rank of the rule of lowest rank (the first listed of equals)."""
        table = np.zeros(65536, dtype=kstructs.PORT_CLASS)
        ordered = sorted(enumerate(self.port_rules), key=lambda item: (item[1].rank, item[0]))
        for _, rule in reversed(ordered):    # reversed: better rules overwrite worse ones
            class_id, rank = self.class_id(rule.class_name), min(rule.rank, kstructs.MAX_RANK)
            protos = {"tcp": ("tcp",), "udp": ("udp",), "any": ("tcp", "udp", "other")}[rule.proto]
            for low, high in rule.ports:
                for proto in protos:
                    table[proto][low:high + 1] = class_id
                    table[f"{proto}_rank"][low:high + 1] = rank
        return table

    def prefix_entries(self) -> dict[tuple[int, int, bytes], tuple[int, int]]:
        """(IP version, prefix length, network) -> (class id, rank) for the prefix tries.

        The tries answer the longest prefix that matches; the rule list, the first
        rule that matches.  So each prefix takes the best ranked rule of every
        prefix that contains it (a /16 listed after its /8 answers with the /8's)."""
        best: dict[tuple[int, int, bytes], tuple[int, int, int]] = {}    # -> (rank, index, class)
        for index, rule in enumerate(self.prefix_rules):
            network = ipaddress.ip_network(rule.prefix, strict=False)
            entry = (network.version, network.prefixlen, network.network_address.packed)
            candidate = (min(rule.rank, kstructs.MAX_RANK), index, self.class_id(rule.class_name))
            if entry not in best or candidate < best[entry]:
                best[entry] = candidate
        lengths = {4: sorted({e[1] for e in best if e[0] == 4}), 6: sorted({e[1] for e in best if e[0] == 6})}
        out = {}
        for (version, length, packed), own in best.items():
            chosen = own
            address = int.from_bytes(packed, "big")
            bits = 32 if version == 4 else 128
            for shorter in lengths[version]:
                if shorter >= length:
                    break
                masked = address & (((1 << shorter) - 1) << (bits - shorter))
                outer = best.get((version, shorter, masked.to_bytes(bits // 8, "big")))
                if outer is not None and outer < chosen:
                    chosen = outer
            out[(version, length, packed)] = (chosen[2], chosen[0])
        return out


def _update_array(bpf_map, values: np.ndarray, keys: np.ndarray | None = None) -> None:
    """Write `values` at `keys` (default: the whole array map) in one BPF_MAP_UPDATE_BATCH."""
    from bcc.libbcc import lib

    keys = np.ascontiguousarray(np.arange(len(values), dtype=np.uint32) if keys is None else keys,
                                dtype=np.uint32)
    values = np.ascontiguousarray(values)
    if not len(keys):
        return
    count = ct_uint32(len(values))
    rc = lib.bpf_update_batch(bpf_map.get_fd(), ct_void_p(keys.ctypes.data),
                              ct_void_p(values.ctypes.data), ct_byref(count))
    if rc != 0:
        # Older kernels: one update per entry.
        for key, i in zip(keys.tolist(), range(len(values))):
            bpf_map[bpf_map.Key(key)] = bpf_map.Leaf.from_buffer_copy(values[i:i + 1].tobytes())


def bump_generation(datapath, default_class: int | None = None) -> int:
    config = datapath.config
    leaf = config[config.Key(0)]
    leaf.policy_generation = (leaf.policy_generation + 1) & 0xFFFFFFFF
    if default_class is not None:
        leaf.default_class = default_class
    config[config.Key(0)] = leaf
    return leaf.policy_generation


@dataclass
class Written:
    """What write_policy last put into the maps, so the next call writes only the difference:
    a rule change then costs the entries it touches, not 65 536 ports and every prefix."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    prefixes: dict[tuple[int, int, bytes], tuple[int, int]] = field(default_factory=dict)  # -> (class, rank)


def _write_array(bpf_map, name: str, values: np.ndarray, written: Written | None) -> None:
    before = written.arrays.get(name) if written is not None else None
    if before is None or before.shape != values.shape:
        _update_array(bpf_map, values)
    else:
        changed = np.nonzero((before.view(np.uint8).reshape(len(values), -1) !=
                              values.view(np.uint8).reshape(len(values), -1)).any(axis=1))[0]
        _update_array(bpf_map, values[changed], changed.astype(np.uint32))
    if written is not None:
        written.arrays[name] = values.copy()


def _prefix_key(trie, prefixlen: int, raw: bytes):
    key = trie.Key()
    key.prefixlen = prefixlen
    for i, byte in enumerate(raw):
        key.addr[i] = byte
    return key


def write_policy(datapath, policy: Policy, written: Written | None = None) -> int:
    """Replace the class table and rules in the kernel; returns the new generation.
    With `written` (what an earlier call wrote), only the entries that changed are written."""
    policy.validate()
    classes = np.zeros(kstructs.CLASS_MAX, dtype=kstructs.CLASS)
    dscp_priority = np.zeros(kstructs.DSCP_MAX, dtype=np.uint32)
    for c in policy.classes:
        entry = classes[c.class_id]
        classid = c.classid if c.classid is not None else htb_classid(c.class_id)
        entry["priority"] = classid
        flags = kstructs.CLASS_SET_PRIO if policy.mark_priority else 0
        if c.dscp is not None:
            entry["dscp"] = c.dscp
            flags |= kstructs.CLASS_SET_DSCP
            # LAN egress finds the class from the DSCP: first class with it wins.
            if policy.mark_priority and dscp_priority[c.dscp] == 0:
                dscp_priority[c.dscp] = classid
        entry["flags"] = flags
    # Before its first write the tries hold whatever an earlier writer left: clear them then.
    first = written is None or not written.arrays
    _write_array(datapath.classes, "classes", classes, written)
    _write_array(datapath.dscp_priority, "dscp_priority", dscp_priority, written)
    _write_array(datapath.port_classes, "port_classes", policy.port_table(), written)

    tries = {4: datapath.prefixes_v4, 6: datapath.prefixes_v6}
    wanted = policy.prefix_entries()
    if first:
        for trie in tries.values():
            trie.clear()
        before: dict[tuple[int, int, bytes], tuple[int, int]] = {}
    else:
        before = written.prefixes
    for entry in [e for e in before if e not in wanted]:
        try:
            del tries[entry[0]][_prefix_key(tries[entry[0]], entry[1], entry[2])]
        except KeyError:
            pass
    for entry, (class_id, rank) in wanted.items():
        if before.get(entry) != (class_id, rank):
            trie = tries[entry[0]]
            leaf = trie.Leaf()
            leaf.class_id = class_id
            leaf.rank = rank
            trie[_prefix_key(trie, entry[1], entry[2])] = leaf
    if written is not None:
        written.prefixes = wanted
    return bump_generation(datapath, policy.class_id(policy.default_class))


def _flow_key_struct(datapath, key: np.ndarray | dict):
    """A BCC key of the flows/overrides maps from a FLOW_KEY record or a dict
    {ifindex, family, proto, lan_addr, lan_port, remote_addr, remote_port} (addresses as text)."""
    if isinstance(key, dict):
        record = np.zeros((), dtype=kstructs.FLOW_KEY)
        family = int(key["family"])
        af = socket.AF_INET if family == kstructs.FAMILY_V4 else socket.AF_INET6
        record["ifindex"] = key["ifindex"]
        record["family"] = family
        record["proto"] = key["proto"]
        record["lan_port"] = key["lan_port"]
        record["remote_port"] = key["remote_port"]
        for name in ("lan_addr", "remote_addr"):
            raw = socket.inet_pton(af, key[name])
            record[name][:len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        key = record
    return datapath.overrides.Key.from_buffer_copy(np.asarray(key, dtype=kstructs.FLOW_KEY).tobytes())


def set_override(datapath, key, class_id: int) -> int:
    """Pin one flow to a class (key: FLOW_KEY record or dict); returns the generation."""
    leaf = datapath.overrides.Leaf()
    leaf.class_id = class_id
    datapath.overrides[_flow_key_struct(datapath, key)] = leaf
    return bump_generation(datapath)


def clear_override(datapath, key) -> int:
    try:
        del datapath.overrides[_flow_key_struct(datapath, key)]
    except KeyError:
        pass
    return bump_generation(datapath)


def set_token_class(datapath, token: int, class_id: int) -> None:
    """An MPTCP connection's class by its token: its joined subflows get it at their SYN.
    (No generation bump: only new subflows look tokens up.)"""
    leaf = datapath.tokens.Leaf()
    leaf.class_id = class_id
    datapath.tokens[datapath.tokens.Key(token)] = leaf


def clear_token(datapath, token: int) -> None:
    try:
        del datapath.tokens[datapath.tokens.Key(token)]
    except KeyError:
        pass
