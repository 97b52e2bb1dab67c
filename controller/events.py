"""What the datapath reports besides counters, as plain dataclasses.

The daemon decodes the ring buffer into these (anabranch.daemon.events) and the
offline analyzer produces the same from a capture, so classification and MPTCP
correlation in the controller never see C structs or BCC.  Times are the
datapath's clock (CLOCK_MONOTONIC ns, or capture time in ns offline).
`flow_id` is `controller.flows.flow_ids()` of the flow's key, the same id the
flow table uses.
"""

from __future__ import annotations

from dataclasses import dataclass

UP = 0    # LAN -> WAN
DOWN = 1  # WAN -> LAN


@dataclass(frozen=True)
class FlowKey:
    ifindex: int        # WAN port: the path
    family: int         # 4 or 6
    proto: int          # IPPROTO_*
    lan_addr: str
    lan_port: int
    remote_addr: str
    remote_port: int


@dataclass(frozen=True)
class NewFlow:
    ts_ns: int
    flow_id: int
    key: FlowKey
    direction: int      # direction of the first packet: who opened it


@dataclass(frozen=True)
class FlowEnd:
    ts_ns: int
    flow_id: int
    reason: str         # "fin" or "rst"


@dataclass(frozen=True)
class PayloadSnippet:
    """The first payload bytes of a new flow (per direction, first packets), or a
    DNS answer: for host-name classification (TLS SNI, HTTP Host, QUIC, DNS)."""

    ts_ns: int
    flow_id: int
    key: FlowKey
    direction: int
    payload: bytes      # at most the datapath's snippet size
    dns_answer: bool = False


@dataclass(frozen=True)
class MpCapable:
    """MP_CAPABLE with keys: from the third ACK (both keys) or a SYN/SYN-ACK (one)."""

    ts_ns: int
    flow_id: int
    key: FlowKey
    direction: int
    version: int                 # 0 (RFC 6824) or 1 (RFC 8684)
    sender_key: int              # 64-bit key of the packet's sender
    receiver_key: int | None     # present in the third ACK


@dataclass(frozen=True)
class MpJoin:
    """MP_JOIN on a SYN: `token` identifies the connection at the SYN's receiver."""

    ts_ns: int
    flow_id: int
    key: FlowKey
    direction: int
    token: int
    address_id: int


@dataclass(frozen=True)
class AddAddr:
    ts_ns: int
    flow_id: int
    direction: int
    address_id: int
    address: str
    port: int | None
    echo: bool


@dataclass(frozen=True)
class RemoveAddr:
    ts_ns: int
    flow_id: int
    direction: int
    address_ids: tuple[int, ...]


@dataclass(frozen=True)
class MpFastClose:
    ts_ns: int
    flow_id: int
    direction: int


@dataclass(frozen=True)
class MpTcpRst:
    ts_ns: int
    flow_id: int
    direction: int
    reason: int


Event = NewFlow | FlowEnd | PayloadSnippet | MpCapable | MpJoin | AddAddr | RemoveAddr | MpFastClose | MpTcpRst
