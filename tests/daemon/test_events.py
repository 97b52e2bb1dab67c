"""Decoding raw ring-buffer records into controller.events (no root)."""

from __future__ import annotations

import numpy as np

from anabranch.controller import events as ev
from anabranch.daemon import events, kstructs


def _mptcp_record(subtype: int, option: bytes, version: int = 1) -> bytes:
    record = np.zeros((), dtype=kstructs.EVENT_MPTCP_T)
    record["header"]["event_type"] = kstructs.EVENT_MPTCP
    record["header"]["key"]["family"] = 4
    record["subtype"] = subtype
    record["version"] = version
    record["option_len"] = len(option)
    record["option"][:len(option)] = np.frombuffer(option, dtype=np.uint8)
    return record.tobytes()


def test_add_addr_v1_ipv6_with_port_and_hmac():
    option = bytes([30, 30, 0x30, 7]) + bytes(range(16)) + b"\x1f\x90" + b"\0" * 8
    event = events.decode(_mptcp_record(3, option))
    assert isinstance(event, ev.AddAddr)
    assert event.address == "1:203:405:607:809:a0b:c0d:e0f" and event.port == 8080 and not event.echo


def test_add_addr_v0_carries_the_ip_version_in_the_low_nibble():
    option = bytes([30, 8, 0x34, 2, 10, 1, 2, 2])
    event = events.decode(_mptcp_record(3, option, version=0))
    assert (event.address, event.address_id, event.port) == ("10.1.2.2", 2, None)


def test_add_addr_echo_has_no_hmac():
    option = bytes([30, 8, 0x31, 1, 192, 0, 2, 1])
    event = events.decode(_mptcp_record(3, option))
    assert event.echo and event.address == "192.0.2.1"


def test_short_or_unknown_records_are_skipped():
    assert events.decode(b"\x01\x00") is None
    assert events.decode(bytes([99]) + b"\0" * 200) is None
    assert events.decode(_mptcp_record(0, bytes([30, 4, 0x01, 0x81]))) is None  # MP_CAPABLE without key
