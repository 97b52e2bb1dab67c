"""Crafted packets through the real program with BPF_PROG_TEST_RUN (root)."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from packets import (ACK, FIN, PSH, RST, SYN, checksum, ethernet, ipv4, ipv6, mptcp_option, tcp,
                     ts_option, udp)

from anabranch.controller import events as ev

pytestmark = pytest.mark.root

LAN, REMOTE = "10.0.0.2", "192.0.2.7"
LAN6, REMOTE6 = "fd00::2", "2001:db8::7"
TC_ACT_OK = 0


def up(dp, frame, t=0):
    return dp.test_runner("egress").run(frame, tstamp_ns=t)


def down(dp, frame, t=0):
    return dp.test_runner("ingress").run(frame, tstamp_ns=t)


def flows(dp):
    keys, values = dp.sweep_flows()
    return keys, values


def decoded(dp):
    from anabranch.daemon.events import decode_all
    return decode_all(dp.drain_events(), dp.options.snippet_size)


def errors_delta(dp, before):
    return {k: v - before[k] for k, v in dp.error_counts().items() if v != before[k]}


def v4_tcp(sport=40000, dport=443, flags=ACK, seq=1000, payload=b"", options=b"", tos=0, src=LAN, dst=REMOTE):
    return ethernet(ipv4(src, dst, 6, tcp(sport, dport, flags, seq=seq, options=options, payload=payload),
                         tos=tos), 0x0800)


def test_vlan_and_qinq_tags_are_parsed_to_the_ports(dp):
    inner = ipv4(LAN, REMOTE, 6, tcp(40001, 443, SYN))
    assert up(dp, ethernet(inner, 0x0800, vlans=((0x8100, 10),))).retval == TC_ACT_OK
    up(dp, ethernet(ipv4(LAN, REMOTE, 6, tcp(40002, 443, SYN)), 0x0800, vlans=((0x88A8, 100), (0x8100, 10))))
    keys, _ = flows(dp)
    assert sorted(keys["lan_port"].tolist()) == [40001, 40002]
    assert set(keys["remote_port"].tolist()) == {443}


def test_pppoe_sessions_are_parsed(dp):
    inner = ipv4(LAN, REMOTE, 17, udp(5555, 123, b"ntp"))
    pppoe = struct.pack("!BBHHH", 0x11, 0, 0x1234, len(inner) + 2, 0x0021) + inner
    up(dp, ethernet(pppoe, 0x8864))
    keys, values = flows(dp)
    assert keys["remote_port"].tolist() == [123] and values["class_id"].tolist() == [5]


def test_ipv4_options_are_skipped(dp):
    frame = ethernet(ipv4(LAN, REMOTE, 17, udp(5555, 5060, b"x"), options=b"\x94\x04\x00\x00"), 0x0800)
    up(dp, frame)
    keys, values = flows(dp)
    assert keys["lan_port"].tolist() == [5555] and keys["remote_port"].tolist() == [5060]
    assert values["class_id"].tolist() == [1]  # voice by port


def test_ipv6_extension_headers_are_skipped(dp):
    hop = bytes([60, 0]) + b"\x01\x04\0\0\0\0"        # hop-by-hop -> destination options
    dst = bytes([6, 0]) + b"\x01\x04\0\0\0\0"         # destination options -> TCP
    frame = ethernet(ipv6(LAN6, REMOTE6, 6, tcp(40003, 22, SYN), ext=hop + dst, ext_proto=0), 0x86DD)
    up(dp, frame)
    keys, values = flows(dp)
    assert keys["family"].tolist() == [6] and keys["proto"].tolist() == [6]
    assert keys["lan_port"].tolist() == [40003] and keys["remote_port"].tolist() == [22]
    assert values["class_id"].tolist() == [4]  # file (ssh)


def test_truncated_headers_are_counted_and_passed_untouched(dp):
    before = dp.error_counts()
    frame = v4_tcp()[:14 + 20 + 10]  # TCP header cut short
    result = up(dp, frame)
    assert result.retval == TC_ACT_OK and result.frame == frame
    # (BPF_PROG_TEST_RUN itself refuses IP headers cut short; a cut VLAN tag it takes.)
    short_vlan = ethernet(b"\x00", 0x8100)
    assert up(dp, short_vlan).frame == short_vlan
    assert errors_delta(dp, before) == {"truncated": 2}


def test_fragments_are_counted_without_ports(dp):
    before = dp.error_counts()
    frame = ethernet(ipv4(LAN, REMOTE, 17, b"\0" * 16, frag=0x2000), 0x0800)  # MF set
    assert up(dp, frame).frame == frame
    keys, _ = flows(dp)
    assert keys["lan_port"].tolist() == [0]
    assert errors_delta(dp, before) == {"fragment": 1}


def test_malformed_tcp_options_do_not_stop_counting(dp):
    before = dp.error_counts()
    up(dp, v4_tcp(options=b"\x08\x30\x00\x00"))  # length past the option area
    _, values = flows(dp)
    assert values["dir"]["packets"][:, 0].tolist() == [1]
    assert errors_delta(dp, before) == {"malformed": 1}


def _capable(key_a=0x1111222233334444, key_b=0x5555666677778888):
    syn = mptcp_option(0, b"\x81", low=1)
    synack = mptcp_option(0, b"\x81" + struct.pack("!Q", key_b), low=1)
    third = mptcp_option(0, b"\x81" + struct.pack("!QQ", key_a, key_b), low=1)
    return syn, synack, third


def test_mp_capable_third_ack_reports_both_keys(dp):
    syn, synack, third = _capable()
    up(dp, v4_tcp(flags=SYN, options=syn), 1)
    down(dp, ethernet(ipv4(REMOTE, LAN, 6, tcp(443, 40000, SYN | ACK, options=synack)), 0x0800), 2)
    up(dp, v4_tcp(flags=ACK, options=third), 3)
    events = [e for e in decoded(dp) if isinstance(e, ev.MpCapable)]
    assert [e.direction for e in events] == [ev.DOWN, ev.UP]
    assert events[0].sender_key == 0x5555666677778888 and events[0].receiver_key is None
    assert events[1].sender_key == 0x1111222233334444 and events[1].receiver_key == 0x5555666677778888
    assert events[1].version == 1
    _, values = flows(dp)
    assert values["mptcp_version"].tolist() == [1] and values["mptcp_subtypes"].tolist() == [1]


def test_every_mptcp_subtype_is_seen_and_reported(dp):
    options = [
        mptcp_option(1, b"\x03" + struct.pack("!II", 0xCAFEF00D, 7)),               # MP_JOIN SYN, id 3
        mptcp_option(2, b"\x00"),                                                    # DSS
        mptcp_option(3, b"\x05" + bytes([198, 51, 100, 9]) + b"\0" * 8, low=0),     # ADD_ADDR v1 + HMAC
        mptcp_option(4, b"\x05\x06"),                                                # REMOVE_ADDR
        mptcp_option(5, b"\x00"),                                                    # MP_PRIO
        mptcp_option(6, b"\x00" + b"\0" * 8),                                        # MP_FAIL
        mptcp_option(7, b"\x00" + b"\0" * 8),                                        # MP_FASTCLOSE
        mptcp_option(8, b"\x02", low=1),                                             # MP_TCPRST reason 2
    ]
    for i, option in enumerate(options):
        flags = SYN if i == 0 else ACK
        up(dp, v4_tcp(sport=41000, flags=flags, seq=1000 + i, options=option), i)
    _, values = flows(dp)
    assert values["mptcp_subtypes"].tolist() == [0b111111110]
    events = decoded(dp)
    join = next(e for e in events if isinstance(e, ev.MpJoin))
    assert (join.token, join.address_id) == (0xCAFEF00D, 3)
    add = next(e for e in events if isinstance(e, ev.AddAddr))
    assert (add.address, add.address_id, add.echo, add.port) == ("198.51.100.9", 5, False, None)
    remove = next(e for e in events if isinstance(e, ev.RemoveAddr))
    assert remove.address_ids == (5, 6)
    assert any(isinstance(e, ev.MpFastClose) for e in events)
    assert next(e for e in events if isinstance(e, ev.MpTcpRst)).reason == 2


def test_new_flow_payload_snippets_and_flow_end_are_reported(dp):
    hello = b"\x16\x03\x01" + b"A" * 600
    up(dp, v4_tcp(flags=SYN), 1)
    for i in range(3):
        up(dp, v4_tcp(flags=ACK | PSH, seq=1001 + i * 600, payload=hello), 2 + i)
    up(dp, v4_tcp(flags=FIN | ACK, seq=3000), 9)
    events = decoded(dp)
    assert isinstance(events[0], ev.NewFlow) and events[0].direction == ev.UP
    snippets = [e for e in events if isinstance(e, ev.PayloadSnippet)]
    assert len(snippets) == 2 and snippets[0].payload == hello[:dp.options.snippet_size]
    assert [e.reason for e in events if isinstance(e, ev.FlowEnd)] == ["fin"]


def test_every_dns_answer_is_reported(dp):
    for i in range(4):
        down(dp, ethernet(ipv4("9.9.9.9", LAN, 17, udp(53, 33333, b"answer%d" % i)), 0x0800), i)
    snippets = [e for e in decoded(dp) if isinstance(e, ev.PayloadSnippet)]
    assert len(snippets) == 4 and all(e.dns_answer for e in snippets)


def test_rst_ends_a_flow(dp):
    up(dp, v4_tcp(flags=SYN))
    down(dp, ethernet(ipv4(REMOTE, LAN, 6, tcp(443, 40000, RST | ACK)), 0x0800))
    assert [e.reason for e in decoded(dp) if isinstance(e, ev.FlowEnd)] == ["rst"]


def test_passive_rtt_matches_the_timestamp_echo(dp):
    ms = 1_000_000
    up(dp, v4_tcp(flags=ACK, payload=b"x", options=ts_option(100, 1)), 10 * ms)
    down(dp, ethernet(ipv4(REMOTE, LAN, 6, tcp(443, 40000, ACK, options=ts_option(900, 100))), 0x0800), 35 * ms)
    up(dp, v4_tcp(flags=ACK, seq=1001, payload=b"y", options=ts_option(101, 900)), 37 * ms)
    _, values = flows(dp)
    tcp_state = values["dir"][0]
    assert tcp_state[0]["rtt_last_ns"] == 25 * ms   # gateway <-> remote
    assert tcp_state[1]["rtt_last_ns"] == 2 * ms    # gateway <-> LAN host
    assert tcp_state[0]["rtt_samples"] == 1 and tcp_state[0]["rtt_min_ns"] == 25 * ms


def test_passive_rtt_also_from_timestamps_behind_other_options(dp):
    """An MPTCP DSS before the timestamps: not the NOP NOP TIMESTAMP layout read in
    place, so the option walk finds them."""
    ms = 1_000_000
    dss = mptcp_option(2, b"\x01" + struct.pack("!I", 7))
    up(dp, v4_tcp(flags=ACK, payload=b"x", options=dss + ts_option(100, 1)), 10 * ms)
    down(dp, ethernet(ipv4(REMOTE, LAN, 6, tcp(443, 40000, ACK, options=dss + ts_option(900, 100))), 0x0800),
         35 * ms)
    _, values = flows(dp)
    assert values["dir"][0][0]["rtt_last_ns"] == 25 * ms
    assert values["mptcp_subtypes"][0] == 1 << 2


def test_retransmission_is_payload_below_the_highest_sequence(dp):
    up(dp, v4_tcp(seq=1000, payload=b"a" * 100))
    up(dp, v4_tcp(seq=1100, payload=b"b" * 100))
    up(dp, v4_tcp(seq=1000, payload=b"a" * 100))   # again
    up(dp, v4_tcp(seq=1200, flags=ACK))             # pure ACK: not a retransmission
    _, values = flows(dp)
    assert values["dir"][0][0]["retransmits"] == 1


def _dscp_v4(frame: bytes) -> tuple[int, int]:
    return frame[15] >> 2, frame[15] & 0x03


def test_egress_dscp_rewrite_keeps_ecn_and_a_valid_checksum(dp):
    result = up(dp, v4_tcp(dport=5060, tos=0x01))  # ECN ECT(1)
    assert _dscp_v4(result.frame) == (46, 1)
    assert checksum(result.frame[14:34]) == 0
    assert result.priority == 0x10011  # HTB 1:11 (voice)


def test_download_is_marked_at_wan_ingress_without_priority(dp):
    result = down(dp, ethernet(ipv4(REMOTE, LAN, 17, udp(53, 40000, b"q")), 0x0800))
    assert _dscp_v4(result.frame) == (8, 0) and checksum(result.frame[14:34]) == 0
    assert result.priority == 0  # forwarding resets it: LAN egress sets it from the DSCP


def test_ipv6_traffic_class_is_rewritten_and_flow_label_kept(dp):
    frame = ethernet(ipv6(LAN6, REMOTE6, 6, tcp(40000, 1935, ACK), tclass=0x02), 0x86DD)
    word = struct.unpack("!I", up(dp, frame).frame[14:18])[0]
    assert (word >> 20) & 0xFF == (34 << 2) | 0x02
    assert word & 0xFFFFF == 0x12345


def test_count_only_port_leaves_packets_alone(dp):
    from anabranch.daemon import kstructs

    dp.set_port(1, kstructs.ROLE_WAN, kstructs.PORT_COUNT)
    frame = v4_tcp(dport=5060)
    result = up(dp, frame)
    assert result.frame == frame and result.priority == 0
    _, values = flows(dp)
    assert values["class_id"].tolist() == [1]


def test_lan_egress_sets_priority_from_the_dscp(dp):
    from anabranch.daemon import kstructs

    dp.set_port(1, kstructs.ROLE_LAN, kstructs.PORT_MARK)
    result = up(dp, ethernet(ipv4(REMOTE, LAN, 17, udp(53, 40000, b"q"), tos=8 << 2), 0x0800))
    assert result.priority == 0x10015  # background 1:15
    keys, _ = flows(dp)
    assert len(keys) == 0  # LAN ports never count


def test_lan_egress_sets_priority_from_the_ipv6_traffic_class_behind_a_vlan_tag(dp):
    from anabranch.daemon import kstructs

    dp.set_port(1, kstructs.ROLE_LAN, kstructs.PORT_MARK)
    packet = ipv6(REMOTE6, LAN6, 17, udp(3478, 40000, b"m"), tclass=(34 << 2) | 0x01)
    result = up(dp, ethernet(packet, 0x86DD, vlans=((0x8100, 10),)))
    assert result.priority == 0x10012  # video 1:12


def test_lan_ingress_and_unmarked_lan_egress_leave_priority_alone(dp):
    from anabranch.daemon import kstructs

    frame = ethernet(ipv4(REMOTE, LAN, 17, udp(53, 40000, b"q"), tos=8 << 2), 0x0800)
    dp.set_port(1, kstructs.ROLE_LAN, kstructs.PORT_MARK)
    assert down(dp, frame).priority == 0
    dp.set_port(1, kstructs.ROLE_LAN, 0)
    assert up(dp, frame).priority == 0


def test_each_port_runs_entry_points_made_for_its_role_and_flags(dp):
    """The daemon attaches entry points made for a port's role and flags, which
    never read the ports maps (here the port is cleared from them): a LAN port's
    ingress and an unmarked LAN egress pass frames untouched, a marked LAN egress
    steers by DSCP, a WAN port counts, and marks only when marking is on.  A port
    whose role or flags change gets new copies."""
    from anabranch.daemon import kstructs
    from anabranch.daemon.datapath import TestRunner

    count, mark = kstructs.PORT_COUNT, kstructs.PORT_COUNT | kstructs.PORT_MARK
    dp.clear_port(1)
    download = v4_tcp(sport=443, dport=40000, src=REMOTE, dst=LAN, tos=8 << 2)
    voice = v4_tcp(dport=5060)

    def run(port, role, flags, hook, frame):
        return TestRunner(dp.programs_for(port, role, flags)[hook]).run(frame)

    for flags in (count, mark):
        result = run(f"lan-{flags}", kstructs.ROLE_LAN, flags, "ingress", download)
        assert (result.retval, result.frame, result.priority) == (TC_ACT_OK, download, 0)
    assert run("lan-count", kstructs.ROLE_LAN, count, "egress", download).priority == 0
    assert run("lan-mark", kstructs.ROLE_LAN, mark, "egress", download).priority == 0x10015  # background 1:15
    assert len(flows(dp)[0]) == 0                       # LAN ports never count

    counted = run("wan-count", kstructs.ROLE_WAN, count, "egress", voice)
    assert (counted.frame, counted.priority) == (voice, 0)
    assert len(flows(dp)[0]) == 1
    dp.clear_flows()
    marked = run("wan-mark", kstructs.ROLE_WAN, mark, "egress", voice)
    assert marked.priority == 0x10011 and marked.frame != voice  # voice 1:11, DSCP rewritten
    assert len(flows(dp)[0]) == 1

    dp.clear_flows()
    assert dp.programs_for("lan-mark", kstructs.ROLE_LAN, mark) is dp.programs_for("lan-mark", kstructs.ROLE_LAN, mark)
    assert run("lan-mark", kstructs.ROLE_WAN, count, "egress", voice).priority == 0   # now a counting WAN port
    assert len(flows(dp)[0]) == 1
    assert run("lan-mark", kstructs.ROLE_WAN, mark, "egress", voice).priority == 0x10011


def test_a_cleared_port_is_passed_without_counting(dp):
    dp.clear_port(1)
    frame = v4_tcp(dport=5060)
    result = up(dp, frame)
    assert result.frame == frame and result.priority == 0
    keys, _ = flows(dp)
    assert len(keys) == 0


def test_ports_past_the_index_array_are_found_in_the_hash():
    """Ifindexes grow as devices come and go: a port beyond AB_PORT_INDEX_SIZE
    is looked up in the ports hash (here every port is, with an index of one)."""
    from anabranch.daemon import kstructs, policy
    from anabranch.daemon.datapath import BuildOptions, Datapath

    datapath = Datapath(BuildOptions(flow_map_size=1024, port_index_size=1, clock_from_skb=True))
    try:
        policy.write_policy(datapath, policy.Policy.default())
        datapath.set_port(1, kstructs.ROLE_WAN, kstructs.PORT_COUNT | kstructs.PORT_MARK)
        assert up(datapath, v4_tcp(dport=5060)).priority == 0x10011  # voice 1:11
        keys, _ = flows(datapath)
        assert len(keys) == 1
        datapath.clear_port(1)
        up(datapath, v4_tcp(dport=5061))
        keys, _ = flows(datapath)
        assert len(keys) == 1
    finally:
        datapath.close()


def test_prefix_rule_beats_port_and_override_beats_both(dp):
    from anabranch.daemon import policy

    rules = policy.Policy.default()
    rules.prefix_rules = [policy.PrefixRule("video", "192.0.2.0/24")]
    policy.write_policy(dp, rules)
    up(dp, v4_tcp(dport=22))
    keys, values = flows(dp)
    assert (values["class_id"][0], values["class_reason"][0]) == (2, 3)
    policy.set_override(dp, keys[0], 5)
    result = up(dp, v4_tcp(dport=22))
    _, values = flows(dp)
    assert (values["class_id"][0], values["class_reason"][0]) == (5, 5)
    assert result.frame[15] >> 2 == 8


def test_prefix_rules_match_the_remote_address_only(dp):
    """A prefix rule names remote ends (the controller's `prefixes`): one that also
    covers the LAN host (10.0.0.0/8 on both sides of a corporate gateway) must not
    class every flow of that host at its first packet."""
    from anabranch.daemon import policy

    rules = policy.Policy.default()
    rules.prefix_rules = [policy.PrefixRule("background", "10.0.0.0/8")]
    policy.write_policy(dp, rules)
    up(dp, v4_tcp(dport=5060))                              # LAN 10.0.0.2 to 192.0.2.7: the port's class
    up(dp, v4_tcp(sport=40001, dport=5060, dst="10.9.9.9"))   # to 10.9.9.9: the prefix's
    keys, values = flows(dp)
    by_remote = {bytes(k["remote_addr"][:4]): (v["class_id"], v["class_reason"]) for k, v in zip(keys, values)}
    assert by_remote[bytes([192, 0, 2, 7])] == (1, 2)       # voice, by port
    assert by_remote[bytes([10, 9, 9, 9])] == (5, 3)        # background, by prefix


def test_of_the_prefix_and_port_rules_that_match_the_first_listed_wins(dp):
    """The kernel takes the rule list's first match, as the controller does: ranks
    order prefix and port rules together, the opener's port can outrank the
    responder's, and a longer prefix listed after its shorter one answers with it."""
    from anabranch.daemon import policy

    def verdict(rules, frame):
        written = policy.Policy.default()
        written.port_rules, written.prefix_rules = rules
        policy.write_policy(dp, written)
        dp.clear_flows()
        up(dp, frame)
        _, values = flows(dp)
        return int(values["class_id"][0]), int(values["class_reason"][0])

    voice, background = policy.PortRule("voice", ((5060, 5062),)), policy.PrefixRule("background", "192.0.2.0/24")
    call = v4_tcp(dport=5060)                                  # 10.0.0.2:40000 to 192.0.2.7:5060
    assert verdict(([voice], [dataclasses.replace(background, rank=1)]), call) == (1, 2)   # voice, port
    assert verdict(([dataclasses.replace(voice, rank=1)], [background]), call) == (5, 3)   # background, prefix
    opener = policy.PortRule("file", ((40000, 40000),))        # the LAN host's (opener's) port, listed first
    assert verdict(([opener, dataclasses.replace(voice, rank=1)], []), call) == (4, 2)
    assert verdict(([dataclasses.replace(opener, rank=2), dataclasses.replace(voice, rank=1)], []), call) == (1, 2)
    outer = policy.PrefixRule("video", "192.0.0.0/16")
    inner = policy.PrefixRule("file", "192.0.2.0/24", rank=1)
    assert verdict(([], [outer, inner]), call) == (2, 3)
    assert verdict(([], [dataclasses.replace(outer, rank=2), inner]), call) == (4, 3)


def test_joined_subflow_takes_its_connection_class_at_the_syn(dp):
    from anabranch.daemon import policy

    policy.set_token_class(dp, 0xCAFEF00D, 1)
    join = mptcp_option(1, b"\x01" + struct.pack("!II", 0xCAFEF00D, 9))
    result = up(dp, v4_tcp(sport=42000, dport=443, flags=SYN, options=join))
    _, values = flows(dp)
    assert (values["class_id"][0], values["class_reason"][0]) == (1, 4)
    assert values["join_token"][0] == 0xCAFEF00D
    assert result.frame[15] >> 2 == 46


def test_default_class_and_reason_for_unmatched_flows(dp):
    up(dp, v4_tcp(dport=443))
    _, values = flows(dp)
    assert (values["class_id"][0], values["class_reason"][0]) == (3, 1)


def _policy_maps(datapath) -> dict:
    """Every policy map's content, read back from the kernel."""
    from anabranch.daemon import kstructs

    def array(bpf_map, size):
        return [bytes(bpf_map[bpf_map.Key(i)]) for i in range(size)]

    return {
        "classes": array(datapath.classes, kstructs.CLASS_MAX),
        "dscp_priority": array(datapath.dscp_priority, kstructs.DSCP_MAX),
        "port_classes": b"".join(bytes(datapath.port_classes[datapath.port_classes.Key(i)])
                                 for i in range(65536)),
        "prefixes": {(k.prefixlen, bytes(k.addr), v.class_id)
                     for trie in (datapath.prefixes_v4, datapath.prefixes_v6) for k, v in trie.items()},
    }


def test_a_policy_written_by_difference_equals_one_written_whole(dp):
    """The controller rewrites the maps on every rule change by difference (policy.Written):
    the kernel must end up exactly as after a whole write of the new policy."""
    import dataclasses

    from anabranch.daemon import policy

    written = policy.Written()
    first = policy.Policy.default()
    first.prefix_rules = [policy.PrefixRule("video", "192.0.2.0/24"), policy.PrefixRule("voice", "2001:db8::/32"),
                          policy.PrefixRule("file", "198.51.100.0/24")]
    policy.write_policy(dp, first, written)
    second = policy.Policy.default()
    second.classes = [dataclasses.replace(c, dscp=12) if c.name == "file" else c for c in second.classes]
    second.port_rules = second.port_rules[1:] + [policy.PortRule("video", ((22, 22),), "tcp")]
    second.prefix_rules = [policy.PrefixRule("file", "192.0.2.0/24"), policy.PrefixRule("voice", "2001:db8::/32"),
                           policy.PrefixRule("background", "203.0.113.0/24"),
                           policy.PrefixRule("voice", "203.0.113.0/24")]   # shadowed: the first rule wins
    policy.write_policy(dp, second, written)
    by_difference = _policy_maps(dp)
    policy.write_policy(dp, second)
    assert by_difference == _policy_maps(dp)
    assert len(by_difference["prefixes"]) == 3
    result = up(dp, v4_tcp(dport=5060))   # to 192.0.2.1: the prefix's new class, and its new DSCP
    _, values = flows(dp)
    assert (values["class_id"][0], values["class_reason"][0]) == (4, 3)
    assert result.frame[15] >> 2 == 12


def test_the_kernel_and_numpy_agree_where_each_flow_lives(dp):
    """kstructs.set_bases() mirrors the program's hash: every live slot is in one
    of the two sets numpy computes for its key, and deleting by key frees it."""
    import numpy as np

    from anabranch.daemon import kstructs

    for port in range(200):
        up(dp, v4_tcp(sport=20000 + port, dport=443 + port % 7))
    live = np.flatnonzero(dp.slots["state"] == kstructs.SLOT_LIVE)
    assert len(live) == 200
    keys = dp.slots["key"][live]
    bases = kstructs.set_bases(keys, dp.options.flow_seed, len(dp.slots))
    assert np.all((live >= bases.min(axis=1)) & (
        ((live >= bases[:, 0]) & (live < bases[:, 0] + kstructs.FLOW_WAYS))
        | ((live >= bases[:, 1]) & (live < bases[:, 1] + kstructs.FLOW_WAYS))))
    assert dp.delete_flows(keys[keys["lan_port"] < 20050]) == 50
    assert len(flows(dp)[0]) == 150
    up(dp, v4_tcp(sport=20000))  # forgotten: a new flow again, counted from zero
    keys, values = flows(dp)
    assert len(keys) == 151
    assert values["dir"]["packets"][keys["lan_port"] == 20000, 0].tolist() == [1]


SECOND = 1_000_000_000


@pytest.fixture
def tiny_table():
    """A datapath of eight slots (two sets of four), the key of the flow a test
    sends (v4_tcp(sport=31000)) and its two sets' first slots; the table empty."""
    import numpy as np

    from anabranch.daemon import kstructs, policy
    from anabranch.daemon.datapath import BuildOptions, Datapath

    datapath = Datapath(BuildOptions(flow_map_size=8, clock_from_skb=True, flow_seed=1))
    try:
        policy.write_policy(datapath, policy.Policy.default())
        datapath.set_port(1, kstructs.ROLE_WAN, kstructs.PORT_COUNT | kstructs.PORT_MARK)
        up(datapath, v4_tcp(sport=31000), t=20 * SECOND)
        (slot,) = np.flatnonzero(datapath.slots["state"] == kstructs.SLOT_LIVE)
        key = datapath.slots["key"][slot].copy()
        datapath.clear_flows()
        yield datapath, key, kstructs.set_bases(key[None], 1, 8)[0]
    finally:
        datapath.close()


def fill(slots) -> None:
    """Every slot live with a flow of its own, seen 5 to 12 s into the run."""
    import numpy as np

    from anabranch.daemon import kstructs

    slots["key"]["lan_port"] = np.arange(8) + 30000
    slots["flow"]["last_seen_ns"] = (np.arange(8) + 5) * SECOND
    slots["state"] = kstructs.SLOT_LIVE


def test_a_full_table_replaces_the_flow_idle_longest(tiny_table):
    """All eight slots live: a new flow takes the slot of the flow seen longest
    ago among its two sets, and leaves the others alone."""
    import numpy as np

    datapath, new_key, (first, _) = tiny_table
    slots = datapath.slots
    fill(slots)
    slots["flow"]["last_seen_ns"][first + 2] = SECOND      # idle longest: way 2 of the first set
    before = slots.copy()
    up(datapath, v4_tcp(sport=31000), t=20 * SECOND)
    assert slots["key"][first + 2] == new_key
    assert slots["flow"]["dir"]["packets"][first + 2, 0] == 1
    others = np.arange(8) != first + 2
    assert (slots[others] == before[others]).all()


def test_a_full_table_replaces_a_flow_never_answered_before_an_answered_one(tiny_table):
    """As conntrack's early drop: a new flow replaces one whose opener never got a
    reply (a flood's) before an established one, even one idle longer."""
    import numpy as np

    from anabranch.daemon import kstructs

    datapath, new_key, (first, other) = tiny_table
    slots = datapath.slots
    fill(slots)
    # Every flow answered (the answer: the direction its opener did not send)...
    slots["flow"]["opened_by"] = np.arange(8) % 2
    slots["flow"]["dir"]["packets"][:, :] = 3
    # ... but the newest of the other set, opened from the WAN and never answered;
    # the one idle longest is answered.
    unanswered = other + 3
    slots["flow"]["opened_by"][unanswered] = kstructs.DIR_DOWN
    slots["flow"]["dir"]["packets"][unanswered, kstructs.DIR_UP] = 0
    slots["flow"]["last_seen_ns"][unanswered] = 19 * SECOND
    slots["flow"]["last_seen_ns"][first + 2] = SECOND
    before = slots.copy()
    up(datapath, v4_tcp(sport=31000), t=20 * SECOND)
    assert slots["key"][unanswered] == new_key
    others = np.arange(8) != unanswered
    assert (slots[others] == before[others]).all()


def test_a_new_flow_meets_a_slot_another_cpu_is_claiming_for_it(dp):
    """Two CPUs meeting one new flow: the second finds the slot the first has
    claimed (zeroed and keyed, not yet live) and counts in it; while the first
    holds its set's lock, the second passes its packet uncounted."""
    import numpy as np

    from anabranch.daemon import kstructs

    up(dp, v4_tcp(sport=41000))
    (slot,) = np.flatnonzero(dp.slots["state"] == kstructs.SLOT_LIVE)
    key = dp.slots["key"][slot].copy()
    dp.slots["state"][slot] = kstructs.SLOT_CLAIMED  # as if another CPU were still setting it up
    up(dp, v4_tcp(sport=41000))
    assert np.flatnonzero(dp.slots["state"] != kstructs.SLOT_EMPTY).tolist() == [slot]
    assert dp.slots["flow"]["dir"]["packets"][slot, 0] == 2

    dp.clear_flows()
    first_set = int(kstructs.set_bases(key[None], dp.options.flow_seed, len(dp.slots))[0, 0])
    locks = dp.bpf[b"flow_locks"]
    locks[locks.Key(first_set // kstructs.FLOW_WAYS)] = locks.Leaf(1)
    try:
        before = dp.error_counts()
        assert up(dp, v4_tcp(sport=41000)).retval == TC_ACT_OK
        assert errors_delta(dp, before) == {"flow_insert": 1}
        assert len(flows(dp)[0]) == 0
    finally:
        locks[locks.Key(first_set // kstructs.FLOW_WAYS)] = locks.Leaf(0)
    up(dp, v4_tcp(sport=41000))
    assert len(flows(dp)[0]) == 1
