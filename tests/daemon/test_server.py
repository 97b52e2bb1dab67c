"""The sockets themselves: protocol errors, size limit, ipc permissions, CURVE, slow subscribers, fuzzing."""

from __future__ import annotations

import grp
import os
import random
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.auth

from anabranch.client import Client, CurveKeys, DaemonUnreachable, Subscriber, messages
from anabranch.client.cli import keygen
from anabranch.daemon import config as config_mod
from anabranch.daemon.server import ApiServer, Command, CurveKeys as ServerCurveKeys

HERE = Path(__file__).resolve().parent


@pytest.fixture
def dealer(context):
    """Raw DEALER sockets (closed after the test), to send bytes no Client would."""
    made = []

    def connect(endpoint: str) -> zmq.Socket:
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        made.append(sock)
        return sock
    yield connect
    for sock in made:
        sock.close(0)


def _exchange(sock: zmq.Socket, payload: bytes, timeout_ms: int = 5000) -> dict:
    sock.send_multipart([b"", payload])
    assert sock.poll(timeout_ms), "no reply"
    return msgpack.unpackb(sock.recv_multipart()[-1], raw=False)


@pytest.mark.parametrize("payload, code", [
    (b"\xc1", messages.E_MALFORMED),
    (b"", messages.E_MALFORMED),
    (msgpack.packb([1, 2, 3]), messages.E_MALFORMED),
    (msgpack.packb({"type": "request", "cmd": "status"}), messages.E_VERSION),
    (msgpack.packb({"v": 2, "type": "request", "cmd": "status"}), messages.E_VERSION),
    (msgpack.packb({"v": 1, "type": 5, "cmd": "status"}), messages.E_MALFORMED),
    (msgpack.packb({"v": 1, "type": "reply", "cmd": "status"}), messages.E_MALFORMED),
    (msgpack.packb({"v": 1, "type": "request", "id": [1], "cmd": "status"}), messages.E_MALFORMED),
    (msgpack.packb({"v": 1, "type": "request", "cmd": "nope"}), messages.E_UNKNOWN_COMMAND),
    (msgpack.packb({"v": 1, "type": "request", "cmd": 7}), messages.E_UNKNOWN_COMMAND),
    (msgpack.packb({"v": 1, "type": "request", "cmd": "status", "args": [1]}), messages.E_INVALID),
    (b"\x91" * 100_000, messages.E_MALFORMED),  # nesting deeper than the decoder's stack
    (b"\xdd\xff\xff\xff\xff", messages.E_MALFORMED),  # claims a 4-billion-element array
])
def test_bad_requests_get_one_error_reply(served, dealer, payload, code):
    sock = dealer( served.control)
    reply = _exchange(sock, payload)
    assert reply["ok"] is False and reply["error"]["code"] == code
    assert reply["v"] == 1 and reply["type"] == "reply"


def test_the_reply_carries_the_request_id(served, dealer):
    sock = dealer( served.control)
    reply = _exchange(sock, messages.request("status", request_id="abc"))
    assert reply["id"] == "abc" and reply["ok"] is True


def test_a_failing_handler_answers_internal_and_the_server_carries_on(served, caplog):
    def broken(args):
        raise RuntimeError("a bug")
    with served.lock:
        served.daemon.server.register(Command("broken", broken))
    code, message = served.error("broken")
    assert code == messages.E_INTERNAL and "logged" in message
    assert "command failed" in caplog.text
    assert served.call("status")["totals"]["flows"] == 200


def test_an_oversized_request_is_dropped_and_the_server_carries_on(served, dealer):
    sock = dealer( served.control)
    sock.send_multipart([b"", b"\x00" * (messages.MAX_REQUEST_BYTES + 1)])
    assert not sock.poll(500), "an oversized request must not be read, let alone answered"
    assert served.call("status")["totals"]["flows"] == 200


def test_ipc_sockets_are_mode_0660_with_the_api_group(tmp_path, make_served):
    group = next(g for g in grp.getgrall() if g.gr_gid != 0)
    api = make_served(tmp_path, group=group.gr_name)
    try:
        for endpoint in (api.events, api.control):
            st = os.stat(endpoint[len("ipc://"):])
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o660
            assert st.st_gid == group.gr_gid
    finally:
        api.close()


def test_ipc_sockets_stay_0600_when_the_group_is_missing(tmp_path, make_served):
    api = make_served(tmp_path, group="no-such-group-anabranch")
    try:
        st = os.stat(api.control[len("ipc://"):])
        assert stat.S_IMODE(st.st_mode) == 0o600
    finally:
        api.close()


def test_a_stale_socket_file_is_replaced(tmp_path, make_served):
    (tmp_path / "control.sock").write_text("left by a crash")
    api = make_served(tmp_path)
    try:
        assert api.call("status")
    finally:
        api.close()


def test_default_endpoints_are_ipc_under_run_anabranch():
    config = config_mod.Config()
    assert config.api.events == "ipc:///run/anabranch/events.sock"
    assert config.api.control == "ipc:///run/anabranch/control.sock"
    assert config.api.socket_group == "anabranch"


def test_tcp_endpoint_without_curve_is_refused(context):
    with pytest.raises(ValueError, match="CURVE"):
        ApiServer("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", context=context)


def test_config_refuses_tcp_without_curve_keys():
    with pytest.raises(config_mod.ConfigError, match="api.control: a tcp:// endpoint needs CURVE keys"):
        config_mod.loads('[api]\ncontrol = "tcp://0.0.0.0:5555"\n')
    config = config_mod.loads('[api]\ncontrol = "tcp://0.0.0.0:5555"\ncurve_server_key = "/k/server.key_secret"\n'
                              'curve_clients_dir = "/k/clients"\n')
    assert config.api.control == "tcp://0.0.0.0:5555"
    with pytest.raises(config_mod.ConfigError, match="both or neither"):
        config_mod.loads('[api]\ncurve_server_key = "/k/server.key_secret"\n')
    with pytest.raises(config_mod.ConfigError, match="api.events"):
        config_mod.loads('[api]\nevents = "http://x"\n')


@pytest.fixture
def curve_keys(tmp_path):
    keys = tmp_path / "keys"
    server = keygen("server", str(keys))
    allowed = keygen("allowed", str(keys / "secret-allowed"))
    stranger = keygen("stranger", str(keys / "secret-stranger"))
    clients = keys / "clients"
    clients.mkdir()
    os.link(allowed["public_file"], clients / "allowed.key")
    return {"server": server, "allowed": allowed, "stranger": stranger, "clients": str(clients)}


def _tcp_served(tmp_path, make_served, curve_keys):
    api = make_served(tmp_path, curve=ServerCurveKeys(curve_keys["server"]["secret_file"], curve_keys["clients"]),
                      endpoints=("tcp://127.0.0.1:0", "tcp://127.0.0.1:0"))
    api.tick()
    return api


def test_keygen_writes_a_public_and_a_private_certificate(curve_keys):
    server = curve_keys["server"]
    assert stat.S_IMODE(os.stat(server["secret_file"]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(server["public_file"]).st_mode) == 0o644
    public, secret = zmq.auth.load_certificate(server["secret_file"])
    assert public.decode() == server["public_key"] and secret
    assert zmq.auth.load_certificate(server["public_file"])[1] is None
    with pytest.raises(FileExistsError):
        keygen("server", os.path.dirname(server["public_file"]))


def test_curve_admits_an_allowed_client_key(tmp_path, make_served, curve_keys):
    api = _tcp_served(tmp_path, make_served, curve_keys)
    try:
        assert api.control.startswith("tcp://127.0.0.1:") and not api.control.endswith(":0")
        curve = CurveKeys(curve_keys["server"]["public_file"], curve_keys["allowed"]["secret_file"])
        with Client(api.control, timeout_s=3, retries=0, curve=curve) as client:
            assert client.call("status")["totals"]["flows"] == 200
        subscriber = Subscriber(api.events, topics=("state",), curve=curve)
        try:
            deadline = time.monotonic() + 5
            item = None
            while item is None and time.monotonic() < deadline:
                api.tick()
                item = subscriber.receive(timeout_s=0.2)
            assert item is not None and item[0] == "state"
        finally:
            subscriber.close()
    finally:
        api.close()


def test_curve_refuses_an_unlisted_client_key(tmp_path, make_served, curve_keys):
    api = _tcp_served(tmp_path, make_served, curve_keys)
    try:
        curve = CurveKeys(curve_keys["server"]["public_file"], curve_keys["stranger"]["secret_file"])
        with Client(api.control, timeout_s=0.5, retries=0, curve=curve) as client:
            with pytest.raises(DaemonUnreachable):
                client.call("status")
    finally:
        api.close()


def test_curve_refuses_a_plain_text_client(tmp_path, make_served, curve_keys):
    api = _tcp_served(tmp_path, make_served, curve_keys)
    try:
        with Client(api.control, timeout_s=0.5, retries=0) as client:
            with pytest.raises(DaemonUnreachable):
                client.call("status")
    finally:
        api.close()


def test_a_subscriber_that_never_reads_does_not_block_publishing(served, context):
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(served.events)
    time.sleep(0.2)
    body = {"flows": [{"id": "x" * 64}] * 500}
    for _ in range(3000):  # far past both high-water marks; NOBLOCK drops instead of waiting
        served.daemon.server.publish("flows", body)
    assert served.call("status")
    sub.close(0)


# -- fuzzing: 10 000 hostile messages to a server in its own process -------------------------

def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


VALID = [
    ("status", {}), ("flows", {"limit": 5}), ("flows", {"host": "10.0.0.1"}), ("links", {}),
    ("rules.add", {"rule": {"class": "voice", "match": {"ports": [1, [2, 3]]}}}),
    ("predict", {"class": "voice", "recent_mbps": [1.0, 2.0]}),
    ("allocate", {"total_mbit": 10, "demands": {"voice": 1}}), ("history", {"series": "total.flows"}),
    ("class.set", {"name": "voice", "dscp": 46}), ("usage", {"limit": 3}),
]


# Packed once: what matters is that the server sees them, not that each is new.
_HUGE = [messages.request("predict", {"class": "voice", "recent_mbps": [1] * length})
         for length in (3601, 20_000, 100_001)]


def _hostile(rng: random.Random) -> bytes:
    kind = rng.randrange(9)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 300))
    if kind == 1:  # a valid request with a few bytes flipped
        raw = bytearray(messages.request(*rng.choice(VALID), request_id=rng.randrange(1 << 30)))
        for _ in range(rng.randrange(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    if kind == 2:  # truncated
        raw = messages.request(*rng.choice(VALID))
        return raw[: rng.randrange(len(raw))]
    if kind == 3:  # wrong types in every position
        junk = rng.choice([None, True, -1, 2 ** 63, 1e308, float("nan"), "x" * 300, b"\x00" * 50, [1, [2]], {"a": 1}])
        cmd, args = rng.choice(VALID)
        args = {key: junk for key in (list(args) or ["limit"])}
        return msgpack.packb({"v": 1, "type": "request", "id": junk if rng.random() < 0.3 else 1,
                              "cmd": rng.choice([cmd, junk]), "args": rng.choice([args, junk])})
    if kind == 4:  # huge arrays: past the schema's bound, and past the decoder's
        return _HUGE[rng.randrange(len(_HUGE))]
    if kind == 5:  # deep nesting, in the args and raw
        depth = rng.randrange(50, 5000)
        if rng.random() < 0.5:
            return b"\x81\xa1a" * depth
        nested: object = 1
        for _ in range(min(depth, 400)):
            nested = {"match": nested}
        return msgpack.packb({"v": 1, "type": "request", "cmd": "rules.add", "args": {"rule": nested}})
    if kind == 6:  # big maps with many unknown keys
        return messages.request("flows", {f"k{i}": i for i in range(rng.randrange(100, 1500))})
    if kind == 7:  # unknown commands, long names
        return messages.request("x" * rng.randrange(1, 2000))
    cmd, args = rng.choice(VALID)  # valid ones in between
    return messages.request(cmd, args, request_id=rng.randrange(1 << 30))


def test_fuzzing_neither_crashes_stalls_nor_grows_the_server(tmp_path, dealer):
    events, control = f"ipc://{tmp_path}/e.sock", f"ipc://{tmp_path}/c.sock"
    # The policy file on tmpfs: this test is about robustness, and a disk fsync
    # per accepted change (tested elsewhere) would dominate its run time.
    state = tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    proc = subprocess.Popen([sys.executable, str(HERE / "fake_daemon.py"), events, control, state.name],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        sock = dealer(control)
        rng = random.Random(20261122)

        def barrage(count: int) -> int:
            replies = 0
            for start in range(0, count, 10):
                batch = [_hostile(rng) for _ in range(min(10, count - start))]
                for payload in batch:
                    sock.send_multipart([b"", payload])
                for _ in batch:
                    assert sock.poll(10_000), f"the server stalled (process alive: {proc.poll() is None})"
                    reply = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
                    assert reply["v"] == 1 and reply["type"] == "reply" and isinstance(reply["ok"], bool)
                    replies += 1
            return replies

        barrage(1500)  # warm-up: caches, allocator arenas, the rules list filling up
        before = _rss_kib(proc.pid)
        assert barrage(10_000) == 10_000
        after = _rss_kib(proc.pid)
        assert proc.poll() is None
        reply = _exchange(sock, messages.request("status", request_id=7))
        assert reply["ok"] is True and reply["id"] == 7 and reply["totals"]["flows"] == 200
        assert after <= before * 1.10, f"RSS grew from {before} KiB to {after} KiB"
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        state.cleanup()
