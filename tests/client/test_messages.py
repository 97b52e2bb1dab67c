"""The message schema: versioned msgpack maps, refused clearly when malformed."""

import msgpack
import pytest

from anabranch.client import messages
from anabranch.client.messages import ProtocolError


def test_an_event_is_topic_and_versioned_payload():
    topic, payload = messages.event("state", 7, 1.5, {"totals": {"flows": 3}})
    assert topic == b"state"
    assert messages.unpack(payload) == {"v": 1, "type": "state", "seq": 7, "ts": 1.5,
                                        "totals": {"flows": 3}}


def test_a_request_round_trips():
    decoded = messages.unpack(messages.request("flows", {"limit": 5}, 42))
    assert decoded == {"v": 1, "type": "request", "id": 42, "cmd": "flows", "args": {"limit": 5}}


@pytest.mark.parametrize("raw, code", [
    (b"\xc1", messages.E_MALFORMED),                       # never-used msgpack byte
    (msgpack.packb([1, 2]), messages.E_MALFORMED),          # not a map
    (msgpack.packb({"type": "request"}), messages.E_VERSION),
    (msgpack.packb({"v": 2, "type": "request"}), messages.E_VERSION),
    (msgpack.packb({"v": 1, "type": 5}), messages.E_MALFORMED),
    (msgpack.packb({1: 2}), messages.E_MALFORMED),           # non-string map keys
])
def test_malformed_messages_are_refused_with_a_code(raw, code):
    with pytest.raises(ProtocolError) as caught:
        messages.unpack(raw)
    assert caught.value.code == code


def test_oversized_messages_are_refused_before_decoding():
    with pytest.raises(ProtocolError) as caught:
        messages.unpack(b"\x00" * 100, max_bytes=10)
    assert caught.value.code == messages.E_TOO_LARGE


def test_unknown_topics_are_a_programming_error():
    with pytest.raises(ValueError):
        messages.event("weather", 1, 0.0, {})
