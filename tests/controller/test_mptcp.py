import numpy as np
import pytest

from anabranch.controller.classify import CLASSES
from anabranch.controller.events import FlowEnd, MpCapable, MpFastClose, MpJoin
from anabranch.controller.features import FlowExtras
from anabranch.controller.mptcp import MptcpTracker, key_token

from flowgen import flow_id, flow_key, row_of, table

# Keys and tokens from TShark's MPTCP analysis of the tcpdump project's test captures
# (../shared/data/pcaps/mptcp/ALL_SUBFLOWS.tsv), computed independently of this code.
VECTORS = [
    (11285646634205721522, 0, 2945910507), (10843866842831127890, 0, 3833528642),
    (2295531734017261039, 1, 597671344), (3001306557161771836, 1, 2740809090),
    (18337412883174771571, 1, 3292443918), (16381466453332990326, 1, 1688505345),
]


@pytest.mark.parametrize("key,version,token", VECTORS)
def test_token_is_top_32_bits_of_sha1_v0_or_sha256_v1(key, version, token):
    assert key_token(key, version) == token


INITIAL = {"lan": "10.2.1.2", "lport": 35961, "remote": "10.1.1.2", "rport": 22, "ifindex": 2}
JOINED = {"lan": "10.2.1.2", "lport": 41221, "remote": "10.1.2.2", "rport": 22, "ifindex": 3}
CLI_KEY, SRV_KEY = 11285646634205721522, 10843866842831127890


def handshake(ts=1_000):
    return [MpCapable(ts, flow_id(INITIAL), flow_key(INITIAL), 0, 0, CLI_KEY, SRV_KEY)]


def join(ts=2_000):
    # The join SYN goes to the server, so it carries the server's token.
    return [MpJoin(ts, flow_id(JOINED), flow_key(JOINED), 0, key_token(SRV_KEY, 0), 1)]


def specs():
    return [dict(INITIAL, bytes=(3000, 1000), packets=(30, 10), bps=(800.0, 0.0)),
            dict(JOINED, bytes=(1000, 0), packets=(10, 0), bps=(200.0, 0.0)),
            {"rport": 443}]


def test_join_attaches_to_the_connection_by_token_with_shares_rtt_and_retransmissions():
    t = table(specs())
    rtt = np.full(len(t), np.nan)
    rtt[row_of(t, JOINED)] = 42.0
    retrans = np.zeros((len(t), 2), dtype=np.uint64)
    retrans[row_of(t, JOINED)] = (3, 0)
    tracker = MptcpTracker()
    result = tracker.update(t, handshake() + join(), 100.0, FlowExtras(rtt_ms=rtt, retrans=retrans))
    (conn,) = result.connections
    assert conn.version == 0 and conn.tokens == {2945910507, 3833528642}
    sub = conn.subflows[flow_id(JOINED)]
    assert sub.role == "join" and sub.rtt_ms == 42.0 and sub.retrans == 3 and sub.ifindex == 3
    assert conn.subflows[flow_id(INITIAL)].share == pytest.approx(0.8)
    assert conn.bytes == (4000, 1000)


def test_joined_subflows_inherit_the_connection_class_and_tokens_map_to_it():
    t = table(specs())
    classes = np.full(len(t), CLASSES.index("interactive"), dtype=np.int8)
    classes[row_of(t, INITIAL)] = CLASSES.index("file")
    result = MptcpTracker().update(t, handshake() + join(), 100.0, class_index=classes)
    assert result.inherit == {flow_id(JOINED): "file"}
    assert result.token_classes == {2945910507: "file", 3833528642: "file"}


def test_join_before_handshake_is_folded_in_when_the_keys_arrive():
    tracker = MptcpTracker()
    t = table(specs())
    tracker.update(t, join(), 100.0)
    result = tracker.update(t, handshake(), 101.0)
    assert len(result.connections) == 1
    assert set(result.connections[0].subflows) == {flow_id(INITIAL), flow_id(JOINED)}


def test_subflow_seen_mid_connection_is_kept_as_an_unknown_connection():
    t = table(specs())
    seen = np.zeros(len(t), dtype=bool)
    seen[row_of(t, JOINED)] = True
    result = MptcpTracker().update(t, [], 100.0, FlowExtras(mptcp_seen=seen))
    (conn,) = result.connections
    assert not conn.known and conn.subflows[flow_id(JOINED)].role == "unknown"


def test_v1_third_ack_keys_give_both_tokens():
    spec = {"lan": "10.0.1.1", "lport": 33306, "remote": "10.0.2.1", "rport": 10004}
    event = MpCapable(5, flow_id(spec), flow_key(spec), 0, 1, 2295531734017261039, 3001306557161771836)
    (conn,) = MptcpTracker().update(table([spec]), [event], 100.0).connections
    assert conn.tokens == {597671344, 2740809090}


def test_connection_ends_when_every_subflow_ends_and_lingers_then_goes():
    tracker = MptcpTracker()
    t = table(specs(), now_s=100.0)
    tracker.update(t, handshake() + join(), 100.0)
    ends = [FlowEnd(100_000_000_000, flow_id(INITIAL), "fin")]
    (conn,) = tracker.update(t, ends, 100.0).connections
    assert conn.ended is None
    ends = [FlowEnd(100_500_000_000, flow_id(JOINED), "rst")]
    (conn,) = tracker.update(t, ends, 100.0).connections
    assert conn.ended == pytest.approx(100.5) and conn.end_reason == "all subflows closed"
    assert tracker.update(table([{"rport": 443}], 200.0), [], 200.0).connections == []


def test_fastclose_ends_the_connection_at_once():
    tracker = MptcpTracker()
    t = table(specs())
    tracker.update(t, handshake() + join(), 100.0)
    (conn,) = tracker.update(t, [MpFastClose(100_000_000_000, flow_id(JOINED), 0)], 100.0).connections
    assert conn.end_reason == "fastclose"
    assert all(s.ended is not None for s in conn.subflows.values())


def test_options_validate_linger():
    from anabranch.controller.mptcp import MptcpOptions
    from anabranch.controller.options import OptionsError
    assert MptcpOptions.configure({"linger_s": 5}).linger_s == 5
    with pytest.raises(OptionsError, match='mptcp.linger_s: must be a number, got "long"'):
        MptcpOptions.configure({"linger_s": "long"})
