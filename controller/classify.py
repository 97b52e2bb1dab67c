"""Traffic classes per flow: ordered rules (protocol, ports, CIDRs, DSCP, host names),
then behaviour heuristics for flows no rule matched; each flow records why.

Vectorised over the FlowTable: rules are numpy masks, host names are looked up once
per flow (when the flow is named) and joined back by a sorted search over flow ids.
Also produces the Policy the daemon compiles into kernel maps.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from . import options as opt
from .events import PayloadSnippet
from .features import FlowExtras
from .flows import DOWN, UP, FlowTable, flow_ids, locate
from .hostnames import HostNames, payload_signature

CLASSES = ("voice", "video", "interactive", "file", "background")
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
PROTOS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "icmp": socket.IPPROTO_ICMP,
          "icmpv6": socket.IPPROTO_ICMPV6}

# ARCHITECTURE.md's default port table (ports match either end of the flow).
DEFAULT_PORT_TABLE: dict[str, list[int | str]] = {
    "voice": ["5060-5062", "16384-16396"],
    "video": [1935, 3478, 5004, 8554, "6970-6979"],
    "file": [20, 21, 22, 25, 110, 143, 445, 3389, 8080, 8443],
    "background": [53, 123, 161, 389, 3306, 5432],
}

SIGNATURES = ("stun", "rtp", "rtcp", "sip", "rtsp", "hls", "dash", "bittorrent", "webdav", "git",
              "rsync", "tftp", "download")
HEURISTICS = ("heuristic:voice", "heuristic:video", "heuristic:file", "heuristic:call-socket")
DEFAULT_REASON = "default"
# Port rules with more ranges than this match through a 64 KiB lookup table.
LUT_MIN_RANGES = 4


class HostPattern:
    """Host-name patterns: plain names match themselves and every name below them."""

    def __init__(self, patterns: list[str]):
        self.patterns = [p.lower().rstrip(".") for p in patterns]
        self.suffixes = {p for p in self.patterns if "*" not in p and "?" not in p}
        wild = [p for p in self.patterns if p not in self.suffixes]
        # "*.example.com" also matches the bare "example.com".
        self.regex = re.compile("|".join(
            [fnmatch.translate(p) for p in wild] +
            [fnmatch.translate(p[2:]) for p in wild if p.startswith("*.")])) if wild else None

    def matches(self, name: str) -> bool:
        labels = name.split(".")
        for i in range(len(labels)):
            if ".".join(labels[i:]) in self.suffixes:
                return True
        return bool(self.regex and self.regex.match(name))


@dataclass
class Rule:
    """All given conditions must hold; the first matching rule gives the class."""

    id: str
    class_name: str
    proto: int | None = None
    ports: tuple[tuple[int, int], ...] = ()
    lan_cidrs: tuple[str, ...] = ()
    remote_cidrs: tuple[str, ...] = ()
    dscp: tuple[int, ...] = ()
    hosts: HostPattern | None = None          # host names and/or "sig:<signature>" entries

    @property
    def kernel_expressible(self) -> bool:
        """Whether the datapath's port and prefix maps can express this rule alone:
        ports (of TCP, UDP or any protocol) or remote prefixes (of any protocol:
        the prefix tries know none), not both."""
        if self.hosts is not None or self.dscp or self.lan_cidrs:
            return False
        if self.remote_cidrs:
            return not self.ports and self.proto is None
        return bool(self.ports) and self.proto in (None, socket.IPPROTO_TCP, socket.IPPROTO_UDP)


@dataclass(frozen=True)
class PortRule:
    """Ports lo..hi (either end of the flow) -> class; proto 0 means any protocol."""

    proto: int
    lo: int
    hi: int
    class_name: str
    order: int = 0    # the rule's place in the ordered list: lower wins over a PrefixRule


@dataclass(frozen=True)
class PrefixRule:
    """Remote address in `cidr` -> class."""

    cidr: str
    class_name: str
    order: int = 0


@dataclass
class Policy:
    """What the daemon compiles into the kernel maps.  A per-flow override wins; else,
    of the port and prefix rules that match, the one with the lowest `order`."""

    port_rules: list[PortRule]
    prefix_rules: list[PrefixRule]
    overrides: dict[int, str]     # flow_id -> class name


@dataclass
class Classification:
    """Per-row class and reason of one tick (rows of the tick's FlowTable)."""

    class_index: np.ndarray       # int8 into CLASSES
    reason_index: np.ndarray      # int16 into `reasons`
    reasons: list[str]
    flow_names: dict[int, tuple[str, ...]] = field(default_factory=dict)  # the classifier's, shared

    def name_of(self, flow_id: int) -> str | None:
        """The host name a flow is known by (SNI, Host, QUIC or DNS), if any."""
        return next((n for n in self.flow_names.get(int(flow_id), ()) if not n.startswith("sig:")), None)

    @property
    def names(self) -> dict[int, str]:
        """flow_id -> host name for every named flow (built on demand)."""
        return {f: n for f in self.flow_names if (n := self.name_of(f)) is not None}

    def class_of(self, row: int) -> str:
        return CLASSES[int(self.class_index[row])]

    def reason_of(self, row: int) -> str:
        return self.reasons[int(self.reason_index[row])]


@dataclass
class ClassifyOptions:
    rules: list[Rule] = field(default_factory=list)       # the admin's, checked first
    default_ports: bool = True
    services: bool = True
    services_files: tuple[str, ...] = ()
    heuristics: bool = True
    default_class: str = "interactive"
    dns_min_ttl_s: float = 60.0

    @classmethod
    def configure(cls, table: dict[str, Any], path: str = "classify") -> "ClassifyOptions":
        """Validate a `[classify]` table; raise OptionsError naming each bad key."""
        errors: list[str] = []
        r = opt.Reader(table, path, errors)
        rules = []
        raw_rules = r.get("rules", [], lambda v: None if isinstance(v, list) else "must be a list of tables")
        for i, raw in enumerate(raw_rules):
            rule = _read_rule(raw, f"{path}.rules[{i}]", errors)
            if rule is not None:
                rules.append(rule)
        result = cls(
            rules=rules,
            default_ports=r.get("default_ports", True, opt.boolean),
            services=r.get("services", True, opt.boolean),
            services_files=tuple(r.get("services_files", [], opt.string_list)),
            heuristics=r.get("heuristics", True, opt.boolean),
            default_class=r.get("default_class", "interactive", opt.choice(*CLASSES)),
            dns_min_ttl_s=r.get("dns_min_ttl_s", 60.0, opt.number(0, 86_400)),
        )
        r.finish()
        for i, name in enumerate(result.services_files):
            try:
                load_services(Path(name).read_text(), name)
            except OSError as exc:
                errors.append(f"{path}.services_files[{i}]: cannot read {name}: {exc.strerror}")
            except opt.OptionsError as exc:
                errors.extend(exc.errors)
        if errors:
            raise opt.OptionsError(errors)
        return result


def _read_rule(raw: Any, path: str, errors: list[str]) -> Rule | None:
    r = opt.Reader(raw, path, errors)
    before = len(errors)
    rule_id = r.require("id", opt.string, "a name for the rule")
    class_name = r.require("class", opt.choice(*CLASSES), "one of " + ", ".join(CLASSES))
    proto = r.get("proto", None, opt.choice(*PROTOS))
    ports = r.get("ports", [], opt.port_ranges)
    lan = r.get("lan_cidrs", [], opt.cidr_list)
    remote = r.get("remote_cidrs", [], opt.cidr_list)
    dscp = r.get("dscp", [], lambda v: None if isinstance(v, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 63 for d in v) else
        "must be a list of DSCP values 0-63")
    hosts = r.get("hosts", [], opt.string_list)
    r.finish()
    if len(errors) == before and not (proto or ports or lan or remote or dscp or hosts):
        errors.append(f"{path}: matches everything; give at least one of proto, ports, "
                      "lan_cidrs, remote_cidrs, dscp, hosts")
    if len(errors) != before:
        return None
    return Rule(id=rule_id, class_name=class_name, proto=PROTOS[proto] if proto else None,
                ports=tuple(opt.parse_port_range(p) for p in ports),
                lan_cidrs=tuple(lan), remote_cidrs=tuple(remote), dscp=tuple(dscp),
                hosts=HostPattern(hosts) if hosts else None)


def load_services(text: str, source: str) -> list[Rule]:
    """Rules from a services file (see controller/services.toml for the format)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise opt.OptionsError([f"{source}: not valid TOML: {exc}"]) from None
    errors: list[str] = []
    top = opt.Reader(document, "", errors)
    entries = top.get("service", [], lambda v: None if isinstance(v, list) else "must be [[service]] tables")
    top.finish()
    rules = []
    for i, raw in enumerate(entries):
        path = f"{source}: service[{i}]"
        r = opt.Reader(raw, path, errors)
        before = len(errors)
        name = r.require("name", opt.string, "the service's name")
        class_name = r.require("class", opt.choice(*CLASSES), "one of " + ", ".join(CLASSES))
        proto = r.get("proto", None, opt.choice("tcp", "udp"))
        hosts = r.get("hosts", [], opt.string_list)
        signatures = r.get("signatures", [], lambda v: opt.string_list(v) or (
            None if set(v) <= set(SIGNATURES) else "must name signatures from " + ", ".join(SIGNATURES)))
        ports = r.get("ports", [], opt.port_ranges)
        prefixes = r.get("prefixes", [], opt.cidr_list)
        r.finish()
        if len(errors) == before and not (hosts or signatures or ports or prefixes):
            errors.append(f"{path}: give hosts, signatures, prefixes or ports")
        if len(errors) == before:
            patterns = list(hosts) + [f"sig:{s}" for s in signatures]
            rules.append(Rule(id=f"service:{name}", class_name=class_name,
                              proto=PROTOS[proto] if proto else None,
                              ports=tuple(opt.parse_port_range(p) for p in ports),
                              remote_cidrs=tuple(prefixes),
                              hosts=HostPattern(patterns) if patterns else None))
    if errors:
        raise opt.OptionsError(errors)
    return rules


def default_rules(options: ClassifyOptions) -> list[Rule]:
    """The ordered rule list: the admin's rules; services known by host name or payload
    signature (extra files first, then the shipped list); ARCHITECTURE.md's port table;
    then services known only by their well-known ports."""
    rules = list(options.rules)
    services: list[Rule] = []
    if options.services:
        for name in options.services_files:
            services += load_services(Path(name).read_text(), name)
        shipped = resources.files("anabranch.controller").joinpath("services.toml").read_text()
        services += load_services(shipped, "services.toml")
    rules += [r for r in services if r.hosts is not None or r.remote_cidrs]
    if options.default_ports:
        for class_name, ports in DEFAULT_PORT_TABLE.items():
            rules.append(Rule(id=f"port:{class_name}", class_name=class_name,
                              ports=tuple(opt.parse_port_range(p) for p in ports)))
    rules += [r for r in services if r.hosts is None and not r.remote_cidrs]
    return rules


def _address_words(raw: np.ndarray) -> np.ndarray:
    """[n, 16] address bytes -> [n, 2] big-endian uint64 words (IPv4 in the top 32 bits)."""
    return np.ascontiguousarray(raw).view(">u8").reshape(len(raw), 2).astype(np.uint64)


def _cidr_mask(words: np.ndarray, family: np.ndarray, cidrs: tuple[str, ...]) -> np.ndarray:
    mask = np.zeros(len(words), dtype=bool)
    nets = [ipaddress.ip_network(text, strict=False) for text in cidrs]
    if any(net.version == 4 for net in nets):
        v4 = (words[:, 0] >> np.uint64(32)).astype(np.uint32)
        is_v4 = family == 4
        for net in (n for n in nets if n.version == 4):
            bits = np.uint32((0xFFFFFFFF << (32 - net.prefixlen)) & 0xFFFFFFFF)
            mask |= (v4 & bits) == np.uint32(int(net.network_address))
        mask &= is_v4
    v6_nets = [n for n in nets if n.version == 6]
    if v6_nets:
        is_v6 = family == 6
        for net in v6_nets:
            value, plen = int(net.network_address), net.prefixlen
            hi_v, lo_v = np.uint64(value >> 64), np.uint64(value & (2**64 - 1))
            hi_m = np.uint64(((1 << 64) - 1) ^ ((1 << (64 - min(plen, 64))) - 1)) if plen else np.uint64(0)
            lo_bits = max(plen - 64, 0)
            lo_m = np.uint64(((1 << 64) - 1) ^ ((1 << (64 - lo_bits)) - 1)) if lo_bits else np.uint64(0)
            mask |= is_v6 & ((words[:, 0] & hi_m) == hi_v) & ((words[:, 1] & lo_m) == lo_v)
    return mask


class Classifier:
    """Classifies every row of each tick's FlowTable; state: host names and sticky heuristics."""

    def __init__(self, options: ClassifyOptions | None = None):
        self.options = options or ClassifyOptions()
        self._sticky_reason = np.zeros(0, dtype=np.int16)
        self.reasons: list[str] = []
        self._set_rules(default_rules(self.options))
        self.hosts = HostNames(min_ttl_s=self.options.dns_min_ttl_s)
        self._flow_names: dict[int, tuple[str, ...]] = {}
        self._named_ids = np.zeros(0, dtype=np.uint64)
        self._named_match = np.zeros((0, len(self._host_rules)), dtype=bool)
        self._names_dirty = False
        self._sticky_ids = np.zeros(0, dtype=np.uint64)
        self._sticky_class = np.zeros(0, dtype=np.int8)
        self._prev_ids = np.zeros(0, dtype=np.uint64)
        self._bps_mean = np.zeros(0)
        self._bps_var = np.zeros(0)
        self._ticks_seen = np.zeros(0, dtype=np.int32)
        self._last_prune = None

    def _set_rules(self, rules: list[Rule]) -> None:
        old_reasons = self.reasons
        self.rules = rules
        self.reasons = [r.id for r in self.rules] + list(HEURISTICS) + [DEFAULT_REASON]
        self._heuristic_reason = {h: len(self.rules) + i for i, h in enumerate(HEURISTICS)}
        self._default_reason = len(self.reasons) - 1
        self._host_rules = [i for i, r in enumerate(self.rules) if r.hosts is not None]
        # A 64 KiB lookup table per port rule of many ranges: two gathers instead of four
        # compares per range (rules of a few ranges compare: a thousand API rules stay small).
        self._port_luts: dict[int, np.ndarray] = {}
        for i, rule in enumerate(self.rules):
            if len(rule.ports) > LUT_MIN_RANGES:
                lut = np.zeros(65536, dtype=bool)
                for lo, hi in rule.ports:
                    lut[lo: hi + 1] = True
                self._port_luts[i] = lut
        if len(self._sticky_reason):
            # Sticky heuristic verdicts keep their reason across a rule change (by name).
            index = {name: i for i, name in enumerate(self.reasons)}
            remap = np.array([index.get(name, self._default_reason) for name in old_reasons], dtype=np.int16)
            self._sticky_reason = remap[self._sticky_reason]
        self._names_dirty = True

    def replace_rules(self, rules: list[Rule]) -> None:
        """Run time rule changes (the API's): `rules` go first, then the configured ones,
        the services and the port table; host names and sticky verdicts are kept."""
        self._set_rules(list(rules) + default_rules(self.options))

    # -- host names ------------------------------------------------------------------
    def _name_flow(self, flow_id: int, names: tuple[str, ...]) -> None:
        """Add names (host names, or "sig:<signature>") to what a flow is known by."""
        known = self._flow_names.get(flow_id, ())
        fresh = tuple(n for n in names if n not in known)
        if fresh:
            self._flow_names[flow_id] = known + fresh
            self._names_dirty = True

    def _rebuild_names(self) -> None:
        ids = np.fromiter(self._flow_names.keys(), dtype=np.uint64, count=len(self._flow_names))
        order = np.argsort(ids)
        names = list(self._flow_names.values())
        match = np.zeros((len(ids), len(self._host_rules)), dtype=bool)
        for row, idx in enumerate(order.tolist()):
            for col, rule_i in enumerate(self._host_rules):
                pattern = self.rules[rule_i].hosts
                match[row, col] = any(pattern.matches(n) for n in names[idx])
        self._named_ids, self._named_match = ids[order], match
        self._names_dirty = False

    def observe(self, events: list, now: float) -> None:
        for event in events:
            if isinstance(event, PayloadSnippet):
                name = self.hosts.learn(event.flow_id, event.payload, event.dns_answer, now)
                if name is not None:
                    self._name_flow(event.flow_id, (name,))
                # DNS messages are binary headers that can look like RTP: never guess on them.
                key = event.key
                if not event.dns_answer and key is not None and 53 not in (key.lan_port, key.remote_port) \
                        and 5353 not in (key.lan_port, key.remote_port):
                    signature = payload_signature(event.payload, key.proto == socket.IPPROTO_UDP)
                    if signature is not None:
                        self._name_flow(event.flow_id, ("sig:" + signature,))

    # -- the tick ------------------------------------------------------------------------
    def update(self, table: FlowTable, events: list, now: float,
               extras: FlowExtras | None = None) -> Classification:
        self.observe(events, now)
        n = len(table)
        keys = table.keys
        ids = table.ids
        pos, known = locate(self._prev_ids, ids)
        fresh = np.flatnonzero(~known)
        if self.hosts.by_address and len(fresh):
            family = keys["family"][fresh]
            raw = keys["remote_addr"][fresh]
            for i, row in enumerate(fresh.tolist()):
                fid = int(ids[row])
                if any(not n.startswith("sig:") for n in self._flow_names.get(fid, ())):
                    continue
                addr = socket.inet_ntop(socket.AF_INET if family[i] == 4 else socket.AF_INET6,
                                        raw[i].tobytes()[:4] if family[i] == 4 else raw[i].tobytes())
                self._name_flow(fid, self.hosts.names_of_address(addr, now))
        if self._names_dirty:
            self._rebuild_names()

        # Column-major: each host rule reads one contiguous column.
        host_match = None
        if len(self._named_ids) and n:
            npos, named = locate(self._named_ids, ids)
            if named.any():
                host_match = np.zeros((n, len(self._host_rules)), dtype=bool, order="F")
                host_match[named] = self._named_match[npos[named]]

        class_index = np.full(n, CLASS_INDEX[self.options.default_class], dtype=np.int8)
        reason_index = np.full(n, self._default_reason, dtype=np.int16)
        open_rows = np.ones(n, dtype=bool)
        proto = keys["proto"]
        lan_port, remote_port = keys["lan_port"], keys["remote_port"]
        family = keys["family"]
        words: dict[str, np.ndarray] = {}
        host_col = {rule_i: c for c, rule_i in enumerate(self._host_rules)}
        for i, rule in enumerate(self.rules):
            if not open_rows.any():
                break
            if rule.hosts is not None:
                if host_match is None:
                    continue
                mask = host_match[:, host_col[i]] & open_rows
                if not mask.any():
                    continue
            else:
                mask = open_rows.copy()
            if rule.proto is not None:
                mask &= proto == rule.proto
            if rule.ports:
                lut = self._port_luts.get(i)
                if lut is not None:
                    mask &= lut[remote_port] | lut[lan_port]
                else:
                    hit = np.zeros(n, dtype=bool)
                    for lo, hi in rule.ports:
                        hit |= ((remote_port >= lo) & (remote_port <= hi)) | ((lan_port >= lo) & (lan_port <= hi))
                    mask &= hit
            if rule.lan_cidrs:
                if "lan" not in words:
                    words["lan"] = _address_words(keys["lan_addr"])
                mask &= _cidr_mask(words["lan"], family, rule.lan_cidrs)
            if rule.remote_cidrs:
                if "remote" not in words:
                    words["remote"] = _address_words(keys["remote_addr"])
                mask &= _cidr_mask(words["remote"], family, rule.remote_cidrs)
            if rule.dscp:
                if extras is None or extras.dscp is None:
                    continue
                mask &= np.isin(extras.dscp, rule.dscp)
            class_index[mask] = CLASS_INDEX[rule.class_name]
            reason_index[mask] = i
            open_rows &= ~mask

        self._update_burstiness(table, pos, known)
        if self.options.heuristics:
            self._call_sockets(table, open_rows, class_index, reason_index)
            self._heuristics(table, open_rows, class_index, reason_index)
        self._prev_ids = ids
        if self._last_prune is None or now - self._last_prune >= 60.0:
            self._prune(ids, now)
        return Classification(class_index, reason_index, self.reasons, self._flow_names)

    def _update_burstiness(self, table: FlowTable, pos: np.ndarray, known: np.ndarray) -> None:
        """EWMA mean and variance of each flow's downstream rate over its ticks."""
        n = len(table)
        bps = table.bps[:, DOWN]
        mean, var, seen = np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int32)
        if len(self._prev_ids):
            mean[known] = self._bps_mean[pos[known]]
            var[known] = self._bps_var[pos[known]]
            seen[known] = self._ticks_seen[pos[known]]
        # A running mean for the first ticks (exact), then exponential with alpha 0.1.
        alpha = np.maximum(0.1, 1.0 / (seen + 1))
        delta = bps - mean
        mean = mean + alpha * delta
        var = (1 - alpha) * (var + alpha * delta * delta)
        self._bps_mean, self._bps_var, self._ticks_seen = mean, var, seen + 1

    def _call_sockets(self, table: FlowTable, open_rows: np.ndarray, class_index: np.ndarray,
                      reason_index: np.ndarray) -> None:
        """UDP flows from the LAN socket (address, port) of a flow a rule found to be a call
        are that call's media (ICE sends STUN and media from one socket to many peers)."""
        keys = table.keys
        udp = keys["proto"] == socket.IPPROTO_UDP
        voice = udp & ~open_rows & (class_index == CLASS_INDEX["voice"])
        candidates = udp & open_rows
        if not voice.any() or not candidates.any():
            return
        sockets = np.zeros(len(table), dtype=[("family", "u1"), ("port", "<u2"), ("addr", "u1", 16)])
        rows = np.flatnonzero(voice | candidates)
        sock = sockets[rows]
        sock["family"] = keys["family"][rows]
        sock["port"] = keys["lan_port"][rows]
        sock["addr"] = keys["lan_addr"][rows]
        hashes = flow_ids(sock)
        is_voice = voice[rows]
        hit = rows[~is_voice][np.isin(hashes[~is_voice], hashes[is_voice])]
        class_index[hit] = CLASS_INDEX["voice"]
        reason_index[hit] = self._heuristic_reason["heuristic:call-socket"]
        open_rows[hit] = False

    def burstiness(self) -> np.ndarray:
        """Coefficient of variation of each row's downstream rate (NaN before 5 ticks)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            cv = np.sqrt(self._bps_var) / self._bps_mean
        return np.where((self._ticks_seen >= 5) & (self._bps_mean > 0), cv, np.nan)

    def _heuristics(self, table: FlowTable, open_rows: np.ndarray, class_index: np.ndarray,
                    reason_index: np.ndarray) -> None:
        rows = np.flatnonzero(open_rows)
        if not len(rows):
            return
        ids = table.ids[rows]
        # A flow keeps the class a heuristic once gave it: classes must not flap.
        if len(self._sticky_ids):
            spos, is_sticky = locate(self._sticky_ids, ids)
            class_index[rows[is_sticky]] = self._sticky_class[spos[is_sticky]]
            reason_index[rows[is_sticky]] = self._sticky_reason[spos[is_sticky]]
            rows = rows[~is_sticky]
            if not len(rows):
                return
        packets = table.packets[rows].astype(np.float64)
        octets = table.bytes[rows].astype(np.float64)
        duration = np.maximum((table.last_seen_ns[rows].astype(np.float64)
                               - table.first_seen_ns[rows].astype(np.float64)) / 1e9, 1e-3)
        size = octets / np.maximum(packets, 1)
        pps = packets / duration[:, None]
        keys = table.keys[rows]
        udp = keys["proto"] == socket.IPPROTO_UDP
        quic = udp & ((keys["remote_port"] == 443) | (keys["lan_port"] == 443))
        cv = self.burstiness()[rows]
        big = octets.max(axis=1)
        small = octets.min(axis=1)
        ratio = big / np.maximum(small, 1)

        # Calls: UDP both ways at a steady 5-400 pps of small-to-medium packets.
        voice = (udp & ~quic & (duration >= 1) & (pps.min(axis=1) >= 5) & (pps.sum(axis=1) <= 400)
                 & (size.max(axis=1) <= 1250) & (ratio <= 20))
        # Streaming: mostly downstream, sustained, in bursts (player buffer refills).
        down_rate = octets[:, DOWN] * 8 / duration
        downstream = octets[:, DOWN] >= 8 * np.maximum(octets[:, UP], 1)
        video = (~voice & downstream & (down_rate >= 500_000) & (octets[:, DOWN] >= 2e6)
                 & (duration >= 10) & (cv >= 0.6))
        # Bulk: a long transfer one way in full-size packets, steady rather than bursty.
        bulk_size = np.where(octets[:, DOWN] >= octets[:, UP], size[:, DOWN], size[:, UP])
        file = (~voice & ~video & (big >= 10e6) & (ratio >= 8) & (duration >= 5)
                & (bulk_size >= 1000) & (cv < 0.6))
        new_hits = []
        for name, mask, class_name in (("heuristic:voice", voice, "voice"),
                                       ("heuristic:video", video, "video"),
                                       ("heuristic:file", file, "file")):
            hit = rows[mask]
            if not len(hit):
                continue
            class_index[hit] = CLASS_INDEX[class_name]
            reason_index[hit] = self._heuristic_reason[name]
            new_hits.append(hit)
        if new_hits:
            hit = np.concatenate(new_hits)
            self._set_sticky(np.concatenate([self._sticky_ids, table.ids[hit]]),
                             np.concatenate([self._sticky_class, class_index[hit]]),
                             np.concatenate([self._sticky_reason, reason_index[hit]]))

    def _set_sticky(self, ids: np.ndarray, classes: np.ndarray, reasons: np.ndarray) -> None:
        order = np.argsort(ids, kind="stable")
        self._sticky_ids, self._sticky_class, self._sticky_reason = ids[order], classes[order], reasons[order]

    def _prune(self, ids: np.ndarray, now: float) -> None:
        self._last_prune = now
        present = set(ids.tolist())
        gone = [f for f in self._flow_names if f not in present]
        for f in gone:
            del self._flow_names[f]
        self._names_dirty = self._names_dirty or bool(gone)
        keep = np.isin(self._sticky_ids, ids)
        self._set_sticky(self._sticky_ids[keep], self._sticky_class[keep], self._sticky_reason[keep])
        self.hosts.forget_flows(present)
        self.hosts.expire(now)

    # -- policy for the kernel maps ------------------------------------------------------------
    def policy(self, table: FlowTable, result: Classification,
               extra_overrides: dict[int, str] | None = None) -> Policy:
        port_rules, prefix_rules = [], []
        kernel_rules = set()
        for i, rule in enumerate(self.rules):
            if not rule.kernel_expressible:
                continue
            kernel_rules.add(i)
            for lo, hi in rule.ports:
                port_rules.append(PortRule(rule.proto or 0, lo, hi, rule.class_name, i))
            for cidr in rule.remote_cidrs:
                prefix_rules.append(PrefixRule(str(ipaddress.ip_network(cidr, strict=False)),
                                               rule.class_name, i))
        decided_in_user_space = ~np.isin(result.reason_index, np.array(sorted(kernel_rules), dtype=np.int16))
        rows = np.flatnonzero(decided_in_user_space & (result.reason_index != self._default_reason))
        overrides = {int(table.ids[r]): CLASSES[int(result.class_index[r])] for r in rows.tolist()}
        overrides.update(extra_overrides or {})
        return Policy(port_rules, prefix_rules, overrides)
