"""Flow records for the API: table rows to msgpack-ready maps, the key-derived half cached per flow.

A flow's addresses, ports, protocol, interface and first-seen time do not change
(but where NAT hands a wire tuple to another LAN host: `forget`), and formatting
them (inet_ntop, hex ids) is most of a record's cost; so they are built once per
flow and only counters, rates and last-seen are filled per tick.
"""

from __future__ import annotations

import socket
from typing import Any

import numpy as np

from anabranch.controller.flows import DOWN, UP

from . import kstructs

# The cache is pruned to the live flows when it grows past this multiple of the table.
PRUNE_FACTOR = 2


def addresses(family: np.ndarray, raw: np.ndarray) -> list[str]:
    out = []
    for fam, addr in zip(family.tolist(), raw):
        data = addr.tobytes()
        out.append(socket.inet_ntop(socket.AF_INET, data[:4]) if fam == kstructs.FAMILY_V4
                   else socket.inet_ntop(socket.AF_INET6, data))
    return out


class FlowRecords:
    """Builds records for rows of a FlowTable; remembers each flow's fixed fields."""

    def __init__(self) -> None:
        self._fixed: dict[int, dict[str, Any]] = {}

    def forget(self, ids: np.ndarray) -> None:
        """Build these flows' fixed fields again (NAT gave their wire tuple to another LAN host)."""
        for flow_id in ids.tolist():
            self._fixed.pop(flow_id, None)

    def build(self, table, rows: np.ndarray, iface_names: dict[int, str],
              epoch_offset_s: float) -> list[dict[str, Any]]:
        """Records of `rows`; `epoch_offset_s` turns the datapath's monotonic ns into Unix time."""
        if len(self._fixed) > PRUNE_FACTOR * len(table) + 1000:
            live = set(table.ids.tolist())
            self._fixed = {k: v for k, v in self._fixed.items() if k in live}
        ids = table.ids[rows].tolist()
        fixed = [self._fixed.get(flow_id) for flow_id in ids]
        fresh = [i for i, record in enumerate(fixed) if record is None]
        if fresh:
            self._remember(table, rows[fresh], iface_names, epoch_offset_s)
            for i in fresh:
                fixed[i] = self._fixed[ids[i]]
        # Flat columns and item assignment: the cheapest way CPython builds many maps.
        columns = (table.packets[rows, UP].tolist(), table.packets[rows, DOWN].tolist(),
                   table.bytes[rows, UP].tolist(), table.bytes[rows, DOWN].tolist(),
                   table.bps[rows, UP].tolist(), table.bps[rows, DOWN].tolist(),
                   (table.last_seen_ns[rows].astype(np.float64) / 1e9 + epoch_offset_s).tolist())
        records = []
        for base, p_up, p_down, b_up, b_down, r_up, r_down, last in zip(fixed, *columns):
            record = base.copy()
            record["packets_up"] = p_up
            record["packets_down"] = p_down
            record["bytes_up"] = b_up
            record["bytes_down"] = b_down
            record["bps_up"] = r_up
            record["bps_down"] = r_down
            record["last_seen"] = last
            records.append(record)
        return records

    def _remember(self, table, rows: np.ndarray, iface_names: dict[int, str], epoch_offset_s: float) -> None:
        keys = table.keys[rows]
        family = keys["family"]
        src = addresses(family, keys["lan_addr"])
        dst = addresses(family, keys["remote_addr"])
        first = (table.first_seen_ns[rows].astype(np.float64) / 1e9 + epoch_offset_s).tolist()
        ifindex = keys["ifindex"].tolist()
        proto = keys["proto"].tolist()
        sport = keys["lan_port"].tolist()
        dport = keys["remote_port"].tolist()
        families = family.tolist()
        nat = [None] * len(rows)
        if table.wire_keys is not None:
            # Translated by the gateway (daemon/conntrack.py): the address and port the WAN sees.
            wire = table.wire_keys[rows]
            moved = np.flatnonzero((wire["lan_addr"] != keys["lan_addr"]).any(axis=1)
                                   | (wire["lan_port"] != keys["lan_port"]))
            for i, seen, port in zip(moved.tolist(), addresses(family[moved], wire["lan_addr"][moved]),
                                     wire["lan_port"][moved].tolist()):
                nat[i] = {"src": seen, "sport": port}
        for i, flow_id in enumerate(table.ids[rows].tolist()):
            self._fixed[flow_id] = {
                "id": f"{flow_id:016x}",
                "iface": iface_names.get(ifindex[i], str(ifindex[i])),
                "proto": kstructs.proto_name(proto[i]),
                "family": families[i],
                "src": src[i], "sport": sport[i],
                "dst": dst[i], "dport": dport[i],
                "nat": nat[i],
                "packets_up": 0, "packets_down": 0, "bytes_up": 0, "bytes_down": 0,
                "bps_up": 0.0, "bps_down": 0.0,
                "first_seen": first[i], "last_seen": first[i],
                # Filled by the classifier once it is merged (it will pass them in).
                "class": None, "reason": None,
            }
