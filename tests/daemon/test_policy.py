"""The policy tables built from plain values (no root: nothing is written to the kernel)."""

from __future__ import annotations

import pytest

from anabranch.daemon import policy


def test_default_port_table_follows_the_class_table():
    table = policy.Policy.default().port_table()
    assert table["tcp"][5060] == table["udp"][5060] == 1       # voice
    assert table["udp"][16396] == 1 and table["udp"][16397] == 0
    assert table["tcp"][6975] == 2                               # video range
    assert table["tcp"][22] == 4 and table["udp"][53] == 5
    assert table["tcp"][443] == 0                                # default class at run time


def test_earlier_port_rules_win():
    rules = policy.Policy.default()
    rules.port_rules.insert(0, policy.PortRule("voice", ((22, 22),), proto="tcp"))
    table = rules.port_table()
    assert table["tcp"][22] == 1 and table["udp"][22] == 4


def test_ranks_order_port_rules_and_reach_the_table():
    rules = policy.Policy.default()
    rules.port_rules = [policy.PortRule("file", ((20, 30),), rank=7), policy.PortRule("voice", ((22, 22),), rank=3)]
    table = rules.port_table()
    assert (table["tcp"][22], table["tcp_rank"][22]) == (1, 3)     # the lower rank, though listed second
    assert (table["udp"][25], table["udp_rank"][25], table["other"][25]) == (4, 7, 4)


def test_a_prefix_inside_a_better_ranked_one_answers_with_its_class():
    rules = policy.Policy.default()
    rules.prefix_rules = [policy.PrefixRule("video", "10.0.0.0/8", rank=1),
                          policy.PrefixRule("file", "10.1.0.0/16", rank=2),
                          policy.PrefixRule("voice", "10.2.0.0/16", rank=0),
                          policy.PrefixRule("background", "10.2.0.0/16", rank=5),    # the same prefix, worse
                          policy.PrefixRule("file", "2001:db8::/32", rank=4),
                          policy.PrefixRule("voice", "2001:db8:1::/48", rank=9)]
    entries = rules.prefix_entries()
    v4 = {(length, bytes(net)): value for (version, length, net), value in entries.items() if version == 4}
    assert v4 == {(8, bytes([10, 0, 0, 0])): (2, 1), (16, bytes([10, 1, 0, 0])): (2, 1),
                  (16, bytes([10, 2, 0, 0])): (1, 0)}
    v6 = {length: value for (version, length, _), value in entries.items() if version == 6}
    assert v6 == {32: (4, 4), 48: (4, 4)}


def test_htb_classid_is_one_colon_sixteen_plus_id():
    assert policy.htb_classid(1) == 0x10011


@pytest.mark.parametrize("change, message", [
    (lambda p: p.port_rules.append(policy.PortRule("nope", ((1, 2),))), "unknown class 'nope'"),
    (lambda p: p.port_rules.append(policy.PortRule("voice", ((9, 2),))), "bad range 9-2"),
    (lambda p: p.prefix_rules.append(policy.PrefixRule("voice", "10.0.0.0/33")), "prefix_rules[0].prefix"),
    (lambda p: p.classes.append(policy.TrafficClass("x", 1, 0)), "used twice"),
    (lambda p: p.classes.append(policy.TrafficClass("x", 9, 64)), "dscp: must be 0..63"),
])
def test_bad_policies_say_where_and_why(change, message):
    rules = policy.Policy.default()
    change(rules)
    with pytest.raises(ValueError, match=None) as raised:
        rules.validate()
    assert message in str(raised.value)
