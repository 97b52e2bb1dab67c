"""Host names from payload snippets: TLS ClientHello SNI, HTTP Host, QUIC v1 Initial
(decrypted with the public initial salt) and DNS answers (address -> name, with TTL).

Parsers are lenient about truncation (a snippet is only the first bytes) and never
raise on malformed input: they return None or an empty list.  QUIC needs the
`cryptography` package (AES); without it QUIC snippets yield no name.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass, field

# RFC 9001 section 5.2: the salt of QUIC version 1 Initial packets.
QUIC_V1_SALT = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
QUIC_V1 = 0x00000001

_HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ",
                 b"CONNECT ", b"PROPFIND ", b"MKCOL ", b"COPY ", b"MOVE ", b"LOCK ")


def _clean(name: bytes) -> str | None:
    try:
        text = name.decode("ascii").strip().rstrip(".").lower()
    except UnicodeDecodeError:
        return None
    if not text or len(text) > 253 or any(c.isspace() for c in text):
        return None
    return text


# -- TLS ---------------------------------------------------------------------------
def sni_from_client_hello(body: bytes) -> str | None:
    """SNI from a ClientHello body (after the 4-byte handshake header); tolerates truncation."""
    try:
        pos = 2 + 32                                   # legacy_version, random
        pos += 1 + body[pos]                           # session id
        pos += 2 + struct.unpack_from("!H", body, pos)[0]  # cipher suites
        pos += 1 + body[pos]                           # compression methods
        end = pos + 2 + struct.unpack_from("!H", body, pos)[0]
        pos += 2
        end = min(end, len(body))
        while pos + 4 <= end:
            ext_type, ext_len = struct.unpack_from("!HH", body, pos)
            pos += 4
            if ext_type == 0:                          # server_name
                # server_name_list: u16 length, then (type u8, u16 len, name)
                lpos = pos + 2
                while lpos + 3 <= min(pos + ext_len, len(body)):
                    kind, nlen = body[lpos], struct.unpack_from("!H", body, lpos + 1)[0]
                    name = body[lpos + 3: lpos + 3 + nlen]
                    if kind == 0 and len(name) == nlen:
                        return _clean(name)
                    lpos += 3 + nlen
                return None
            pos += ext_len
    except (IndexError, struct.error):
        return None
    return None


def tls_sni(payload: bytes) -> str | None:
    """SNI of a TLS record carrying a ClientHello (the first bytes a client sends)."""
    if len(payload) < 9 or payload[0] != 0x16 or payload[1] != 0x03 or payload[5] != 0x01:
        return None
    return sni_from_client_hello(payload[9:])


# -- HTTP --------------------------------------------------------------------------
def http_host(payload: bytes) -> str | None:
    if not payload.startswith(_HTTP_METHODS):
        return None
    for line in payload.split(b"\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            host = value.strip()
            if host.startswith(b"["):                  # [v6]:port
                host = host[1:host.find(b"]")] if b"]" in host else host
            elif host.count(b":") == 1:
                host = host.split(b":")[0]
            return _clean(host)
    return None


# -- QUIC --------------------------------------------------------------------------
def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand_label(secret: bytes, label: str, length: int) -> bytes:
    """TLS 1.3 HKDF-Expand-Label with an empty context (RFC 8446 section 7.1)."""
    full = b"tls13 " + label.encode()
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def quic_client_initial_keys(dcid: bytes) -> tuple[bytes, bytes, bytes]:
    """(key, iv, hp) protecting a client's Initial packets for this destination CID."""
    initial = _hkdf_extract(QUIC_V1_SALT, dcid)
    client = hkdf_expand_label(initial, "client in", 32)
    return (hkdf_expand_label(client, "quic key", 16), hkdf_expand_label(client, "quic iv", 12),
            hkdf_expand_label(client, "quic hp", 16))


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    first = buf[pos]
    size = 1 << (first >> 6)
    if pos + size > len(buf):
        raise IndexError("varint past the end")
    value = first & 0x3F
    for b in buf[pos + 1: pos + size]:
        value = (value << 8) | b
    return value, pos + size


def quic_initial_crypto(payload: bytes) -> list[tuple[int, bytes]]:
    """CRYPTO frames (offset, data) of a client's QUIC v1 Initial packet; [] if not one."""
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        return []
    try:
        first = payload[0]
        if first & 0xC0 != 0xC0 or (first & 0x30) != 0:    # long header, Initial (v1)
            return []
        if struct.unpack_from("!I", payload, 1)[0] != QUIC_V1:
            return []
        pos = 5
        dcid = payload[pos + 1: pos + 1 + payload[pos]]
        pos += 1 + payload[pos]
        pos += 1 + payload[pos]                           # source CID
        token_len, pos = _varint(payload, pos)
        pos += token_len
        length, pos = _varint(payload, pos)
        pn_offset = pos
        if pn_offset + length > len(payload) or length < 20:
            return []
        key, iv, hp = quic_client_initial_keys(dcid)
        sample = payload[pn_offset + 4: pn_offset + 20]
        encryptor = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
        mask = encryptor.update(sample) + encryptor.finalize()
        first = first ^ (mask[0] & 0x0F)
        pn_len = (first & 0x03) + 1
        pn_bytes = bytes(b ^ m for b, m in zip(payload[pn_offset: pn_offset + pn_len], mask[1:]))
        header = bytes([first]) + payload[1:pn_offset] + pn_bytes
        nonce = bytearray(iv)
        for i, b in enumerate(pn_bytes):
            nonce[len(nonce) - pn_len + i] ^= b
        plain = AESGCM(key).decrypt(bytes(nonce), payload[pn_offset + pn_len: pn_offset + length], header)
    except Exception:   # truncated, not QUIC, or authentication failed: no name
        return []
    frames = []
    pos = 0
    try:
        while pos < len(plain):
            kind = plain[pos]
            if kind in (0x00, 0x01):                      # PADDING, PING
                pos += 1
            elif kind in (0x02, 0x03):                    # ACK: skip its ranges
                pos += 1
                _, pos = _varint(plain, pos)
                _, pos = _varint(plain, pos)
                count, pos = _varint(plain, pos)
                _, pos = _varint(plain, pos)
                for _ in range(count):
                    _, pos = _varint(plain, pos)
                    _, pos = _varint(plain, pos)
                if kind == 0x03:
                    for _ in range(3):
                        _, pos = _varint(plain, pos)
            elif kind == 0x06:                            # CRYPTO
                offset, pos = _varint(plain, pos + 1)
                size, pos = _varint(plain, pos)
                frames.append((offset, plain[pos: pos + size]))
                pos += size
            else:                                         # anything else ends what we can read
                break
    except IndexError:
        pass
    return frames


def client_hello_sni(crypto: dict[int, bytes]) -> str | None:
    """SNI from reassembled CRYPTO data (offset -> bytes): the contiguous run from 0."""
    stream = b""
    for offset in sorted(crypto):
        if offset > len(stream):
            break
        stream += crypto[offset][len(stream) - offset:]
    if len(stream) < 4 or stream[0] != 0x01:
        return None
    return sni_from_client_hello(stream[4:])


def gquic_sni(payload: bytes) -> str | None:
    """SNI of a Google QUIC (Q043 and older) client hello: a plaintext CHLO with tagged values."""
    at = payload.find(b"CHLO", 0, 200)
    if at < 0:
        return None
    try:
        count = struct.unpack_from("<H", payload, at + 4)[0]
        table = at + 8
        values = table + 8 * count
        start = 0
        for i in range(count):
            tag, end = struct.unpack_from("<4sI", payload, table + 8 * i)
            if tag == b"SNI\x00":
                name = payload[values + start: values + end]
                return _clean(name) if len(name) == end - start else None
            start = end
    except struct.error:
        return None
    return None


# -- DNS ---------------------------------------------------------------------------
def _dns_name(msg: bytes, pos: int) -> tuple[str, int]:
    labels, jumps, end = [], 0, None
    while True:
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = pos + 2
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
            jumps += 1
            if jumps > 20:
                raise IndexError("DNS compression loop")
            continue
        if length == 0:
            pos += 1
            break
        labels.append(msg[pos + 1: pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length
    return ".".join(labels).lower(), end if end is not None else pos


@dataclass(frozen=True)
class DnsAnswer:
    address: str
    name: str          # the name that was asked for
    ttl: int
    aliases: tuple[str, ...] = ()   # CNAMEs on the way


def dns_answers(payload: bytes) -> list[DnsAnswer]:
    """A and AAAA records of a DNS response (UDP payload, or TCP with its length prefix)."""
    for msg in (payload, payload[2:]):
        try:
            return _dns_answers(msg)
        except (IndexError, struct.error, UnicodeDecodeError, ValueError):
            continue
    return []


def _dns_answers(msg: bytes) -> list[DnsAnswer]:
    _, flags, qdcount, ancount = struct.unpack_from("!HHHH", msg, 0)
    if not flags & 0x8000 or qdcount == 0:
        raise ValueError("not a response")
    pos = 12
    qname = ""
    for i in range(qdcount):
        name, pos = _dns_name(msg, pos)
        qname = qname or name
        pos += 4
    aliases: list[str] = []
    answers = []
    for _ in range(ancount):
        _, pos = _dns_name(msg, pos)
        rtype, _, ttl, rdlen = struct.unpack_from("!HHIH", msg, pos)
        pos += 10
        rdata = msg[pos: pos + rdlen]
        if len(rdata) != rdlen:
            break
        if rtype == 1 and rdlen == 4:
            answers.append((str(ipaddress.IPv4Address(rdata)), ttl))
        elif rtype == 28 and rdlen == 16:
            answers.append((str(ipaddress.IPv6Address(rdata)), ttl))
        elif rtype == 5:
            aliases.append(_dns_name(msg, pos)[0])
        pos += rdlen
    return [DnsAnswer(addr, qname, ttl, tuple(aliases)) for addr, ttl in answers]


# -- the state kept across ticks ----------------------------------------------------
@dataclass
class HostNames:
    """Names learnt per flow (SNI, Host, QUIC) and per address (DNS, until the TTL ends)."""

    min_ttl_s: float = 60.0       # CDNs answer with TTLs of seconds; keep names a little longer
    max_addresses: int = 200_000  # bounds memory on a busy resolver
    by_flow: dict[int, str] = field(default_factory=dict)
    by_address: dict[str, tuple[tuple[str, ...], float]] = field(default_factory=dict)
    _quic: dict[int, dict[int, bytes]] = field(default_factory=dict)

    def learn(self, flow_id: int, payload: bytes, dns_answer: bool, now: float) -> str | None:
        """Read one snippet; return the flow's name if this snippet named it."""
        if dns_answer:
            for answer in dns_answers(payload):
                expires = now + max(answer.ttl, self.min_ttl_s)
                self.by_address[answer.address] = ((answer.name,) + answer.aliases, expires)
            if len(self.by_address) > self.max_addresses:
                self.expire(now)
            return None
        if flow_id in self.by_flow:
            return None
        name = tls_sni(payload) or http_host(payload) or gquic_sni(payload)
        if name is None:
            frames = quic_initial_crypto(payload)
            if frames:
                pending = self._quic.setdefault(flow_id, {})
                for offset, data in frames:
                    pending.setdefault(offset, data)
                name = client_hello_sni(pending)
                if name is not None:
                    del self._quic[flow_id]
        if name is not None:
            self.by_flow[flow_id] = name
        return name

    def names_of_address(self, address: str, now: float) -> tuple[str, ...]:
        entry = self.by_address.get(address)
        if entry is None or entry[1] < now:
            return ()
        return entry[0]

    def expire(self, now: float) -> None:
        self.by_address = {a: e for a, e in self.by_address.items() if e[1] >= now}
        while len(self.by_address) > self.max_addresses:
            self.by_address.pop(next(iter(self.by_address)))

    def forget_flows(self, keep: set[int]) -> None:
        self.by_flow = {f: n for f, n in self.by_flow.items() if f in keep}
        self._quic = {f: c for f, c in self._quic.items() if f in keep}


# -- payload signatures ---------------------------------------------------------------
_STUN_COOKIE = bytes.fromhex("2112a442")
_WEBDAV = (b"PROPFIND ", b"PROPPATCH ", b"MKCOL ", b"COPY ", b"MOVE ", b"LOCK ", b"UNLOCK ")
_MEDIA_SUFFIXES = {".m3u8": "hls", ".ts": "hls", ".mpd": "dash", ".m4s": "dash"}
_DOWNLOAD_SUFFIXES = (".exe", ".msi", ".msu", ".cab", ".iso", ".img", ".zip", ".7z", ".tar", ".gz", ".xz",
                      ".bz2", ".deb", ".rpm", ".apk", ".dmg", ".pkg", ".psf", ".esd")


def payload_signature(payload: bytes, udp: bool) -> str | None:
    """The protocol a flow's first payload reveals, for protocols whose class is clear:
    stun, rtp, rtcp, sip (calls); rtsp, hls, dash (streaming); bittorrent, webdav, git,
    rsync, tftp, download (an HTTP GET of an installer, archive or image: bulk).  None when nothing is recognised."""
    if len(payload) < 4:
        return None
    if udp:
        # RFC 5389 STUN only (the magic cookie): RFC 3489's cookieless form is too easily
        # confused with other binary headers such as DNS.
        if len(payload) >= 20 and payload[0] & 0xC0 == 0 and payload[4:8] == _STUN_COOKIE:
            return "stun"
        if len(payload) >= 12 and payload[0] & 0xC0 == 0x80:
            pt = payload[1] & 0x7F
            if 72 <= pt <= 76 and payload[1] in (200, 201, 202, 203, 204):
                return "rtcp"
            if pt <= 34 or 96 <= pt <= 127:
                return "rtp"
        if payload[:2] in (b"\x00\x01", b"\x00\x02") and (b"\x00octet\x00" in payload.lower()
                                                          or b"\x00netascii\x00" in payload.lower()):
            return "tftp"
        if payload.startswith((b"d1:ad2:id20:", b"d1:rd2:id20:")):
            return "bittorrent"
    if payload.startswith((b"INVITE sip:", b"REGISTER sip:", b"OPTIONS sip:", b"SIP/2.0 ")):
        return "sip"
    if payload.startswith(b"RTSP/1.0 ") or b" rtsp://" in payload[:40]:
        return "rtsp"
    if payload.startswith(b"\x13BitTorrent protocol"):
        return "bittorrent"
    if payload.startswith(b"@RSYNCD:"):
        return "rsync"
    if b"git-upload-pack" in payload[:300] or b"git-receive-pack" in payload[:300]:
        return "git"
    if payload.startswith(_WEBDAV):
        return "webdav"
    if payload.startswith(_HTTP_METHODS):
        line = payload.split(b"\r\n", 1)[0].split(b" ")
        if len(line) >= 2:
            path = line[1].split(b"?", 1)[0].lower()
            for suffix, name in _MEDIA_SUFFIXES.items():
                if path.endswith(suffix.encode()):
                    return name
            if line[0] == b"GET" and path.endswith(tuple(s.encode() for s in _DOWNLOAD_SUFFIXES)):
                return "download"
    return None
