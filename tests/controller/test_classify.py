import struct

import numpy as np
import pytest

from anabranch.controller.classify import (CLASSES, Classifier, ClassifyOptions, HostPattern,
                                           PrefixRule, load_services)
from anabranch.controller.events import PayloadSnippet
from anabranch.controller.features import FlowExtras
from anabranch.controller.options import OptionsError

from flowgen import flow_id, flow_key, row_of, table
from test_hostnames import client_hello, dns_response, tls_record


def classify(specs, options=None, events=(), now=100.0, extras=None, classifier=None):
    c = classifier or Classifier(options)
    t = table(specs, now)
    result = c.update(t, list(events), now, extras)
    return [(result.class_of(row_of(t, s)), result.reason_of(row_of(t, s))) for s in specs], c, t, result


def test_default_port_table_both_directions():
    specs = [{"rport": 5060, "proto": "udp"}, {"rport": 3478, "proto": "udp"}, {"rport": 22},
             {"rport": 53, "proto": "udp"}, {"rport": 443}, {"lport": 16390, "rport": 50000, "proto": "udp"}]
    got, *_ = classify(specs)
    assert got == [("voice", "port:voice"), ("video", "port:video"), ("file", "port:file"),
                   ("background", "port:background"), ("interactive", "default"), ("voice", "port:voice")]


def test_admin_rules_come_first_with_proto_ranges_and_cidrs():
    opts = ClassifyOptions.configure({"rules": [
        {"id": "games", "class": "voice", "proto": "udp", "ports": ["27000-27050"]},
        {"id": "backup-nas", "class": "file", "remote_cidrs": ["198.51.100.0/24"]},
        {"id": "guests", "class": "background", "lan_cidrs": ["192.168.50.0/24", "fd00:50::/64"]},
    ]})
    specs = [{"proto": "udp", "rport": 27015}, {"proto": "tcp", "rport": 27015},
             {"remote": "198.51.100.77", "rport": 22}, {"lan": "192.168.50.3"},
             {"lan": "fd00:50::9", "remote": "2001:db8::1"}, {"lan": "fd00:51::9", "remote": "2001:db8::1"}]
    got, *_ = classify(specs, opts)
    assert got == [("voice", "games"), ("interactive", "default"), ("file", "backup-nas"),
                   ("background", "guests"), ("background", "guests"), ("interactive", "default")]


def test_dscp_rule_needs_the_datapath_dscp():
    opts = ClassifyOptions.configure({"rules": [{"id": "ef", "class": "voice", "dscp": [46]}]})
    specs = [{"rport": 443}, {"rport": 444}]
    t = table(specs)
    dscp = np.zeros(len(t), dtype=np.uint8)
    dscp[row_of(t, specs[0])] = 46
    c = Classifier(opts)
    result = c.update(t, [], 100.0, FlowExtras(dscp=dscp))
    assert result.reason_of(row_of(t, specs[0])) == "ef"
    assert result.reason_of(row_of(t, specs[1])) == "default"


def test_host_pattern_plain_names_cover_subdomains_and_wildcards():
    p = HostPattern(["example.com", "*.cdn.net", "media?.x.org"])
    assert p.matches("example.com") and p.matches("a.b.example.com")
    assert not p.matches("notexample.com")
    assert p.matches("cdn.net") and p.matches("edge.cdn.net")
    assert p.matches("media1.x.org") and not p.matches("media12.x.org")


def test_sni_names_a_flow_and_services_list_classifies_it():
    spec = {"rport": 443}
    snippet = PayloadSnippet(1, flow_id(spec), flow_key(spec), 0,
                             tls_record(client_hello("rr3---sn-abc.googlevideo.com")))
    got, _, t, result = classify([spec], events=[snippet])
    assert got == [("video", "service:YouTube video")]
    assert result.names[flow_id(spec)] == "rr3---sn-abc.googlevideo.com"


def test_service_proto_qualifier_keeps_conference_signalling_interactive():
    udp, tcp = {"proto": "udp", "rport": 8801}, {"proto": "tcp", "rport": 443}
    events = [PayloadSnippet(1, flow_id(s), flow_key(s), 0, tls_record(client_hello("zoom.us")))
              for s in (udp, tcp)]
    got, *_ = classify([udp, tcp], events=events)
    assert got == [("voice", "service:Zoom media"), ("interactive", "default")]


def test_dns_answer_names_flows_to_that_address_later():
    c = Classifier()
    answer = dns_response("www.netflix.com", [("198.51.100.20", 30)])
    dns_flow = {"proto": "udp", "rport": 53, "remote": "192.0.2.53"}
    c.update(table([dns_flow], 100.0), [PayloadSnippet(1, flow_id(dns_flow), flow_key(dns_flow), 1, answer, True)],
             100.0)
    spec = {"remote": "198.51.100.20", "rport": 443}
    got, *_ = classify([dns_flow, spec], classifier=c, now=101.0)
    assert got[1] == ("video", "service:Netflix")


def test_admin_services_file_extends_the_list(tmp_path):
    extra = tmp_path / "local.toml"
    extra.write_text('[[service]]\nname = "Office backup"\nclass = "file"\nhosts = ["backup.corp.example"]\n')
    opts = ClassifyOptions.configure({"services_files": [str(extra)]})
    spec = {"rport": 443}
    snippet = PayloadSnippet(1, flow_id(spec), flow_key(spec), 0,
                             b"PUT /x HTTP/1.1\r\nHost: nas1.backup.corp.example\r\n\r\n")
    got, *_ = classify([spec], opts, events=[snippet])
    assert got == [("file", "service:Office backup")]


def test_shipped_services_file_loads_and_covers_every_class_but_interactive():
    from importlib import resources
    rules = load_services(resources.files("anabranch.controller").joinpath("services.toml").read_text(), "s")
    assert {r.class_name for r in rules} == {"voice", "video", "file", "background"}


def test_voice_heuristic_for_steady_small_udp_both_ways():
    spec = {"proto": "udp", "rport": 40002, "packets": (500, 500), "bytes": (80_000, 90_000),
            "first_s": 90.0, "last_s": 100.0}
    got, *_ = classify([spec])
    assert got == [("voice", "heuristic:voice")]


def test_file_heuristic_for_long_steady_bulk_transfer():
    spec = {"rport": 9000, "packets": (20_000, 40_000), "bytes": (1_000_000, 58_000_000),
            "first_s": 70.0}
    c = Classifier()
    for i in range(6):
        got, *_ = classify([dict(spec, bps=(2e5, 1.5e7), last_s=95.0 + i)], classifier=c, now=95.0 + i)
    assert got == [("file", "heuristic:file")]


def test_video_heuristic_needs_bursty_downstream():
    spec = {"rport": 9443, "packets": (2000, 20000), "bytes": (100_000, 28_000_000),
            "first_s": 60.0, "last_s": 100.0}
    c = Classifier()
    bursts = [8e6, 0, 0, 0, 9e6, 0, 0, 0, 8e6, 0]
    for i, rate in enumerate(bursts):
        s = dict(spec, bps=(0.0, rate), last_s=91.0 + i)
        got, *_ = classify([s], classifier=c, now=91.0 + i)
    assert got == [("video", "heuristic:video")]


def test_heuristic_class_sticks_once_given():
    spec = {"proto": "udp", "rport": 40002, "packets": (500, 500), "bytes": (80_000, 90_000),
            "first_s": 90.0, "last_s": 100.0}
    got, c, *_ = classify([spec])
    got, *_ = classify([dict(spec, packets=(501, 501), bytes=(10_000_000, 90_000))], classifier=c, now=101.0)
    assert got == [("voice", "heuristic:voice")]


def test_unmatched_short_flow_stays_default():
    got, *_ = classify([{"rport": 9999, "packets": (3, 3), "bytes": (200, 300)}])
    assert got == [("interactive", "default")]


def test_policy_splits_kernel_rules_from_per_flow_overrides():
    opts = ClassifyOptions.configure({"rules": [{"id": "nas", "class": "file", "remote_cidrs": ["10.9.0.0/16"]}]})
    spec = {"rport": 443}
    snippet = PayloadSnippet(1, flow_id(spec), flow_key(spec), 0, tls_record(client_hello("x.nflxvideo.net")))
    _, c, t, result = classify([spec, {"rport": 5060, "proto": "udp"}], opts, events=[snippet])
    policy = c.policy(t, result)
    assert PrefixRule("10.9.0.0/16", "file", 0) in policy.prefix_rules
    voice = next(r for r in policy.port_rules if r.lo == 5060)
    assert (voice.proto, voice.hi, voice.class_name) == (0, 5062, "voice") and voice.order > 0
    assert policy.overrides == {flow_id(spec): "video"}


def test_rules_the_kernels_maps_cannot_hold_are_decided_per_flow():
    """The prefix tries know no protocol and the port table only TCP, UDP and any:
    a UDP-only prefix rule or an ICMP port rule stays out of them, and the flows it
    decides are overridden one by one."""
    opts = ClassifyOptions.configure({"rules": [
        {"id": "udp-nas", "class": "file", "proto": "udp", "remote_cidrs": ["198.51.100.0/24"]},
        {"id": "icmp", "class": "background", "proto": "icmp", "ports": ["7"]},
        {"id": "tcp-nas", "class": "video", "proto": "tcp", "ports": ["2049"]}]})
    udp = {"proto": "udp", "remote": "198.51.100.9", "rport": 4000}
    tcp = {"proto": "tcp", "remote": "198.51.100.9", "rport": 443}
    got, c, t, result = classify([udp, tcp], opts)
    assert got[0] == ("file", "udp-nas") and got[1][1] != "udp-nas"
    policy = c.policy(t, result)
    assert [r.order for r in policy.prefix_rules if r.order < 3] == []
    assert [(r.order, r.lo) for r in policy.port_rules if r.order < 3] == [(2, 2049)]
    assert policy.overrides == {flow_id(udp): "file"}


def test_configure_errors_name_the_key():
    with pytest.raises(OptionsError) as err:
        ClassifyOptions.configure({"rules": [{"id": "x", "class": "fast", "ports": ["70000"]},
                                             {"id": "y", "class": "file"}], "heuristic": True,
                                   "default_class": "bulk"})
    text = str(err.value)
    assert 'classify.rules[0].class: must be one of' in text
    assert 'classify.rules[0].ports: "70000" is not a port' in text
    assert "classify.rules[1]: matches everything" in text
    assert "classify.heuristic: unknown key" in text
    assert 'classify.default_class: must be one of' in text


def test_classes_are_the_five_of_the_architecture():
    assert CLASSES == ("voice", "video", "interactive", "file", "background")


def test_stun_signature_makes_a_call_and_its_socket_carries_the_media():
    stun_flow = {"proto": "udp", "lport": 50000, "remote": "198.51.100.9", "rport": 3478}
    media = {"proto": "udp", "lport": 50000, "remote": "203.0.113.50", "rport": 61000,
             "packets": (3, 3), "bytes": (300, 300)}
    other = {"proto": "udp", "lport": 50001, "remote": "203.0.113.50", "rport": 61000,
             "packets": (3, 3), "bytes": (300, 300)}
    stun = struct.pack("!HH", 1, 0) + bytes.fromhex("2112a442") + bytes(12)
    snippet = PayloadSnippet(1, flow_id(stun_flow), flow_key(stun_flow), 0, stun)
    got, *_ = classify([stun_flow, media, other], events=[snippet])
    assert got == [("voice", "service:Call media and signalling (STUN/TURN, RTP, SIP)"),
                   ("voice", "heuristic:call-socket"), ("interactive", "default")]


def test_service_ports_come_after_the_default_table_and_prefixes_before_it():
    got, *_ = classify([{"proto": "udp", "rport": 514}, {"rport": 22, "remote": "23.246.3.140"}])
    assert got[0] == ("background", "service:" + next(
        r.id[8:] for r in Classifier().rules if r.id.startswith("service:Machine traffic")))
    assert got[1] == ("video", "service:Netflix Open Connect (by address)")


def test_services_file_entry_needs_something_to_match():
    with pytest.raises(OptionsError, match=r"x.toml: service\[0\]: give hosts, signatures, prefixes or ports"):
        load_services('[[service]]\nname = "n"\nclass = "file"\n', "x.toml")
    with pytest.raises(OptionsError, match="signatures: must name signatures from"):
        load_services('[[service]]\nname = "n"\nclass = "file"\nsignatures = ["ftp"]\n', "x.toml")


def test_dns_messages_are_never_taken_for_call_media():
    dns_flow = {"proto": "udp", "lport": 53, "remote": "192.168.1.8", "rport": 32795}
    reply = bytes([0x80, 0x00]) + bytes(30)        # a DNS id whose top bits look like RTP
    snippet = PayloadSnippet(1, flow_id(dns_flow), flow_key(dns_flow), 0, reply)
    got, *_ = classify([dns_flow], events=[snippet])
    assert got == [("background", "port:background")]
