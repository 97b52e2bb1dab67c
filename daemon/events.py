"""Decode the datapath's ring-buffer events (raw bytes) into controller.events dataclasses.

Every event starts with the same header (type, direction, time, flow key); the
MPTCP event carries the raw option, decoded here per RFC 8684 (and RFC 6824 for
the v0 forms real captures still contain).
"""

from __future__ import annotations

import ipaddress
import logging

import numpy as np

from anabranch.controller import events as ev
from anabranch.controller.flows import flow_ids

from . import kstructs

log = logging.getLogger(__name__)

_HEADER = kstructs.EVENT_HEADER


def flow_key(key: np.void) -> ev.FlowKey:
    family = int(key["family"])
    return ev.FlowKey(ifindex=int(key["ifindex"]), family=family, proto=int(key["proto"]),
                      lan_addr=kstructs.address(family, key["lan_addr"]), lan_port=int(key["lan_port"]),
                      remote_addr=kstructs.address(family, key["remote_addr"]),
                      remote_port=int(key["remote_port"]))


def _flow_id(key: np.void) -> int:
    return int(flow_ids(np.array([key], dtype=kstructs.FLOW_KEY))[0])


def _be(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def decode_mptcp(header: np.void, record: np.void) -> ev.Event | None:
    """One MPTCP option event -> its dataclass (None for a malformed option)."""
    option = bytes(record["option"][: int(record["option_len"])])
    subtype = int(record["subtype"])
    ts, direction = int(header["ts_ns"]), int(header["direction"])
    key = header["key"]
    fid = _flow_id(key)
    length = len(option)
    if subtype == 0:  # MP_CAPABLE
        version = option[2] & 0x0F
        if length < 12:
            return None
        receiver = _be(option[12:20]) if length >= 20 else None
        return ev.MpCapable(ts_ns=ts, flow_id=fid, key=flow_key(key), direction=direction,
                            version=version, sender_key=_be(option[4:12]), receiver_key=receiver)
    if subtype == 1:  # MP_JOIN SYN
        if length < 12:
            return None
        return ev.MpJoin(ts_ns=ts, flow_id=fid, key=flow_key(key), direction=direction,
                         token=_be(option[4:8]), address_id=option[3])
    if subtype == 3:  # ADD_ADDR
        return _add_addr(option, ts, fid, direction, int(record["version"]))
    if subtype == 4:  # REMOVE_ADDR
        return ev.RemoveAddr(ts_ns=ts, flow_id=fid, direction=direction, address_ids=tuple(option[3:length]))
    if subtype == 7:  # MP_FASTCLOSE
        return ev.MpFastClose(ts_ns=ts, flow_id=fid, direction=direction)
    if subtype == 8:  # MP_TCPRST
        return ev.MpTcpRst(ts_ns=ts, flow_id=fid, direction=direction,
                           reason=option[3] if length >= 4 else 0)
    return None


def _add_addr(option: bytes, ts: int, fid: int, direction: int, version: int) -> ev.AddAddr | None:
    length = len(option)
    if length < 8:
        return None
    low = option[2] & 0x0F
    address_id = option[3]
    if low in (4, 6) and version != 1:
        # RFC 6824 (v0): the low nibble is the IP version; no HMAC, no echo flag.
        size = 4 if low == 4 else 16
        echo = False
        has_port = length >= 4 + size + 2
    else:
        # RFC 8684: bit 0 is the echo flag; without echo an 8-byte HMAC ends the option.
        echo = bool(low & 0x01)
        body = length - 4 - (0 if echo else 8)
        if body in (4, 6):
            size = 4
        elif body in (16, 18):
            size = 16
        else:
            return None
        has_port = body in (6, 18)
    if length < 4 + size:
        return None
    raw = option[4:4 + size]
    address = str(ipaddress.IPv4Address(raw) if size == 4 else ipaddress.IPv6Address(raw))
    port = _be(option[4 + size:6 + size]) if has_port else None
    return ev.AddAddr(ts_ns=ts, flow_id=fid, direction=direction, address_id=address_id,
                      address=address, port=port, echo=echo)


def decode(raw: bytes, snippet_size: int = kstructs.SNIPPET_SIZE) -> ev.Event | None:
    """One raw ring-buffer record -> its dataclass; None for an unknown or short record."""
    if len(raw) < _HEADER.itemsize:
        return None
    kind = raw[0]
    if kind in (kstructs.EVENT_NEW_FLOW, kstructs.EVENT_FLOW_END) and len(raw) >= kstructs.EVENT_FLOW.itemsize:
        record = np.frombuffer(raw, dtype=kstructs.EVENT_FLOW, count=1)[0]
        header = record["header"]
        key = header["key"]
        if kind == kstructs.EVENT_NEW_FLOW:
            return ev.NewFlow(ts_ns=int(header["ts_ns"]), flow_id=_flow_id(key), key=flow_key(key),
                              direction=int(header["direction"]))
        reason = "rst" if int(record["end_reason"]) == kstructs.END_RST else "fin"
        return ev.FlowEnd(ts_ns=int(header["ts_ns"]), flow_id=_flow_id(key), reason=reason)
    if kind == kstructs.EVENT_PAYLOAD:
        dtype = kstructs.event_payload_dtype(snippet_size)
        if len(raw) < dtype.itemsize:
            return None
        record = np.frombuffer(raw, dtype=dtype, count=1)[0]
        header = record["header"]
        key = header["key"]
        return ev.PayloadSnippet(ts_ns=int(header["ts_ns"]), flow_id=_flow_id(key), key=flow_key(key),
                                 direction=int(header["direction"]),
                                 payload=bytes(record["payload"][: int(record["captured"])]),
                                 dns_answer=bool(record["dns_answer"]))
    if kind == kstructs.EVENT_MPTCP and len(raw) >= kstructs.EVENT_MPTCP_T.itemsize:
        record = np.frombuffer(raw, dtype=kstructs.EVENT_MPTCP_T, count=1)[0]
        try:
            return decode_mptcp(record["header"], record)
        except (IndexError, ValueError):
            return None
    return None


def decode_all(records: list[bytes], snippet_size: int = kstructs.SNIPPET_SIZE) -> list[ev.Event]:
    out = []
    for raw in records:
        event = decode(raw, snippet_size)
        if event is not None:
            out.append(event)
    return out
