import ipaddress
import struct

import pytest

from anabranch.controller import hostnames as hn


def client_hello(name: str, extra_before: bytes = b"") -> bytes:
    """A TLS 1.3-style ClientHello body with an SNI extension (after other extensions)."""
    sni = name.encode()
    server_name = struct.pack("!HBH", len(sni) + 3, 0, len(sni)) + sni
    exts = extra_before + struct.pack("!HH", 0, len(server_name)) + server_name
    exts += struct.pack("!HH", 43, 3) + b"\x02\x03\x04"          # supported_versions
    body = b"\x03\x03" + bytes(32) + b"\x20" + bytes(32)          # version, random, session id
    body += struct.pack("!H", 4) + b"\x13\x01\x13\x02" + b"\x01\x00"
    body += struct.pack("!H", len(exts)) + exts
    return b"\x01" + len(body).to_bytes(3, "big") + body


def tls_record(handshake: bytes) -> bytes:
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def test_tls_sni_read_from_client_hello_after_other_extensions():
    grease = struct.pack("!HH", 0x0A0A, 2) + b"\x00\x00"
    assert hn.tls_sni(tls_record(client_hello("Video.Example.COM", grease))) == "video.example.com"


def test_tls_sni_absent_or_garbage_yields_none():
    assert hn.tls_sni(b"\x17\x03\x03\x00\x10" + bytes(16)) is None
    assert hn.tls_sni(tls_record(client_hello("x.example"))[:40]) is None
    assert hn.tls_sni(b"") is None


def test_tls_sni_survives_truncation_after_the_extension():
    record = tls_record(client_hello("cut.example.net"))
    assert hn.tls_sni(record[:-7]) == "cut.example.net"


def test_http_host_with_port_and_case():
    req = b"GET /video.mp4 HTTP/1.1\r\nUser-Agent: x\r\nHOST: Media.Example.org:8080\r\n\r\n"
    assert hn.http_host(req) == "media.example.org"
    assert hn.http_host(b"HTTP/1.1 200 OK\r\nHost: a\r\n\r\n") is None


def dns_response(qname: str, answers: list[tuple[str, int]], cname: str | None = None) -> bytes:
    def name(n: str) -> bytes:
        return b"".join(bytes([len(p)]) + p.encode() for p in n.split(".")) + b"\x00"
    ancount = len(answers) + (1 if cname else 0)
    msg = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, ancount, 0, 0) + name(qname) + struct.pack("!HH", 1, 1)
    owner = b"\xc0\x0c"                                           # compressed pointer to the question
    if cname:
        target = name(cname)
        msg += owner + struct.pack("!HHIH", 5, 1, 300, len(target)) + target
    for address, ttl in answers:
        packed = ipaddress.ip_address(address).packed
        rtype = 1 if len(packed) == 4 else 28
        msg += owner + struct.pack("!HHIH", rtype, 1, ttl, len(packed)) + packed
    return msg


def test_dns_answers_give_addresses_names_and_ttls():
    msg = dns_response("www.example.com", [("198.51.100.4", 30), ("2001:db8::5", 120)],
                       cname="edge.cdn.example.net")
    answers = hn.dns_answers(msg)
    assert [(a.address, a.name, a.ttl) for a in answers] == [
        ("198.51.100.4", "www.example.com", 30), ("2001:db8::5", "www.example.com", 120)]
    assert answers[0].aliases == ("edge.cdn.example.net",)


def test_dns_over_tcp_length_prefix_is_accepted():
    msg = dns_response("a.example", [("192.0.2.1", 60)])
    assert hn.dns_answers(struct.pack("!H", len(msg)) + msg)[0].address == "192.0.2.1"


def test_dns_query_is_not_an_answer():
    assert hn.dns_answers(struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01") == []


def test_dns_names_expire_after_their_ttl_with_a_floor():
    names = hn.HostNames(min_ttl_s=10)
    names.learn(0, dns_response("cdn.example", [("192.0.2.9", 2)]), True, now=1000.0)
    assert names.names_of_address("192.0.2.9", 1009.0) == ("cdn.example",)
    assert names.names_of_address("192.0.2.9", 1011.0) == ()


def test_quic_initial_keys_match_rfc9001_appendix_a():
    key, iv, hp = hn.quic_client_initial_keys(bytes.fromhex("8394c8f03e515708"))
    assert key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert hp.hex() == "9f50449e04a0e810283a1e9933adedd2"


def quic_initial(crypto_frames: list[tuple[int, bytes]], dcid: bytes = bytes.fromhex("8394c8f03e515708"),
                 pn: int = 2) -> bytes:
    """Protect a client Initial the way a QUIC v1 client does (RFC 9001 section 5)."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    def varint(v: int) -> bytes:
        return struct.pack("!H", 0x4000 | v) if v >= 64 else bytes([v])

    plain = b"".join(b"\x06" + varint(off) + varint(len(d)) + d for off, d in crypto_frames)
    plain += bytes(1162 - len(plain)) if len(plain) < 1162 else b""          # PADDING
    key, iv, hp = hn.quic_client_initial_keys(dcid)
    pn_bytes = pn.to_bytes(4, "big")
    length = len(pn_bytes) + len(plain) + 16
    header = bytes([0xC3]) + struct.pack("!I", 1) + bytes([len(dcid)]) + dcid + b"\x00" + b"\x00"
    header += struct.pack("!H", 0x4000 | length) + pn_bytes
    nonce = bytes(a ^ b for a, b in zip(iv, bytes(8) + pn_bytes))
    sealed = AESGCM(key).encrypt(nonce, plain, header)
    pn_offset = len(header) - 4
    sample = sealed[:16]
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    first = bytes([header[0] ^ (mask[0] & 0x0F)])
    protected_pn = bytes(b ^ m for b, m in zip(pn_bytes, mask[1:5]))
    return first + header[1:pn_offset] + protected_pn + sealed


def test_quic_initial_sni_decrypted():
    hello = client_hello("quic.example.com")
    assert hn.HostNames().learn(7, quic_initial([(0, hello)]), False, 0.0) == "quic.example.com"


def test_quic_client_hello_split_over_two_initials_out_of_order():
    hello = client_hello("split.example.com")
    names = hn.HostNames()
    assert names.learn(9, quic_initial([(60, hello[60:])], pn=1), False, 0.0) is None
    assert names.learn(9, quic_initial([(0, hello[:60])], pn=2), False, 0.0) == "split.example.com"


def test_quic_corrupted_packet_yields_no_name():
    packet = bytearray(quic_initial([(0, client_hello("x.example"))]))
    packet[-1] ^= 0xFF
    assert hn.quic_initial_crypto(bytes(packet)) == []


def stun_binding_request() -> bytes:
    return struct.pack("!HH", 0x0001, 8) + bytes.fromhex("2112a442") + bytes(12) + struct.pack("!HH", 0x8022, 4) + b"test"


@pytest.mark.parametrize("payload,udp,expected", [
    (stun_binding_request(), True, "stun"),
    (bytes([0x80, 0x00]) + struct.pack("!HII", 1, 160, 0x1234) + bytes(160), True, "rtp"),
    (b"INVITE sip:bob@example.org SIP/2.0\r\n", True, "sip"),
    (b"DESCRIBE rtsp://cam.example/stream RTSP/1.0\r\n", False, "rtsp"),
    (b"\x13BitTorrent protocol" + bytes(8), False, "bittorrent"),
    (b"GET /live/chunk-001.ts?token=1 HTTP/1.1\r\nHost: x\r\n\r\n", False, "hls"),
    (b"GET /video/manifest.mpd HTTP/1.1\r\n\r\n", False, "dash"),
    (b"GET /files/setup.EXE HTTP/1.1\r\n\r\n", False, "download"),
    (b"PROPFIND /dav/ HTTP/1.1\r\n\r\n", False, "webdav"),
    (b"@RSYNCD: 31.0\n", False, "rsync"),
    (b"\x00\x01boot.img\x00octet\x00", True, "tftp"),
    (b"GET /index.html HTTP/1.1\r\n\r\n", False, None),
    (bytes([0x45, 0x00, 0x01, 0x02]) + bytes(40), True, None),
])
def test_payload_signatures(payload, udp, expected):
    assert hn.payload_signature(payload, udp) == expected


def test_google_quic_plaintext_chlo_sni():
    values = b"upload.youtube.com" + b"Q043"
    tags = struct.pack("<4sI", b"SNI\x00", 18) + struct.pack("<4sI", b"VER\x00", 22)
    packet = bytes([0x0D]) + bytes(8) + b"Q043" + b"\x01" + bytes(12) + b"CHLO" + struct.pack("<HH", 2, 0) + tags + values
    assert hn.gquic_sni(packet) == "upload.youtube.com"


def test_parsers_never_raise_on_random_or_truncated_input():
    import random
    rng = random.Random(5)
    seeds = [tls_record(client_hello("a.example")), dns_response("a.example", [("192.0.2.1", 5)]),
             b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", quic_initial([(0, client_hello("q.example"))]),
             stun_binding_request()]
    names = hn.HostNames()
    for i in range(3000):
        base = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(0, 6)):
            base[rng.randrange(len(base))] = rng.randrange(256)
        data = bytes(base[: rng.randint(0, len(base))]) if i % 2 else bytes(rng.randbytes(rng.randint(0, 64)))
        names.learn(i, data, bool(i % 3 == 0), 0.0)
        hn.payload_signature(data, bool(i % 2))
        hn.gquic_sni(data)
