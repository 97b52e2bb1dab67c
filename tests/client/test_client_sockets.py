"""Client and server over real ipc:// sockets: one reply per request, errors as data."""

from __future__ import annotations

import os
import stat
import threading

import msgpack
import pytest
import zmq

from anabranch.client import Client, CommandFailed, DaemonUnreachable, Subscriber, messages
from anabranch.daemon.server import ApiServer, Arg, Command


@pytest.fixture
def server(tmp_path):
    srv = ApiServer(f"ipc://{tmp_path}/events.sock", f"ipc://{tmp_path}/control.sock", group="")
    srv.register(Command("echo", lambda args: {"echo": args.get("text", "")},
                         args={"text": Arg((str,), max_len=10), "n": Arg((int,), low=1, high=5)}))
    srv.register(Command("boom", lambda args: 1 / 0))
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [srv.serve(0.05) for _ in iter(stop.is_set, True)])
    thread.start()
    yield srv, tmp_path
    stop.set()
    thread.join()
    srv.close()


def call(tmp_path, cmd, **args):
    with Client(f"ipc://{tmp_path}/control.sock", timeout_s=2, retries=0) as client:
        return client.call(cmd, **args)


def test_a_command_gets_its_reply(server):
    assert call(server[1], "echo", text="hi") == {"echo": "hi"}


@pytest.mark.parametrize("cmd, args, code", [
    ("nope", {}, messages.E_UNKNOWN_COMMAND),
    ("echo", {"text": 5}, messages.E_INVALID),
    ("echo", {"text": "x" * 11}, messages.E_INVALID),
    ("echo", {"n": 9}, messages.E_INVALID),
    ("echo", {"n": True}, messages.E_INVALID),
    ("echo", {"other": 1}, messages.E_INVALID),
    ("boom", {}, messages.E_INTERNAL),
])
def test_bad_requests_get_an_error_reply_with_a_stable_code(server, cmd, args, code):
    with pytest.raises(CommandFailed) as caught:
        call(server[1], cmd, **args)
    assert caught.value.code == code


def test_garbage_gets_an_error_reply_and_the_server_keeps_serving(server):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{server[1]}/control.sock")
    for junk in (b"\xc1", b"", msgpack.packb([1]), msgpack.packb({"v": 1, "type": "request", "id": [1]})):
        sock.send_multipart([b"", junk])
        assert sock.poll(2000)
        reply = messages.unpack(sock.recv_multipart()[-1])
        assert reply["ok"] is False and reply["error"]["code"] in messages.ERROR_CODES
    sock.close()
    assert call(server[1], "echo", text="still") == {"echo": "still"}


def test_ipc_sockets_are_not_world_accessible(server):
    for name in ("events.sock", "control.sock"):
        mode = stat.S_IMODE(os.stat(server[1] / name).st_mode)
        assert mode & 0o007 == 0


def test_no_daemon_means_a_clear_unreachable_error(tmp_path):
    with pytest.raises(DaemonUnreachable, match="is anabranchd running"):
        with Client(f"ipc://{tmp_path}/absent.sock", timeout_s=0.2, retries=1) as client:
            client.call("status")


def test_subscribers_receive_published_topics(server):
    srv, tmp_path = server
    sub = Subscriber(f"ipc://{tmp_path}/events.sock", topics=("state",))
    try:
        received = None
        for _ in range(50):  # a PUB drops until the subscription has propagated
            srv.publish("state", {"totals": {"flows": 1}})
            srv.publish("flows", {"flows": []})
            received = sub.receive(timeout_s=0.1)
            if received:
                break
        assert received[0] == "state" and received[1]["totals"] == {"flows": 1}
    finally:
        sub.close()
