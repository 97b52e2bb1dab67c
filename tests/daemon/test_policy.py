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
