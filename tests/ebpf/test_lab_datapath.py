"""The datapath on the lab gateway with real traffic: MPTCP over both paths, RTT, DSCP (root, lab)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from anabranch.controller import events as ev

pytestmark = [pytest.mark.root, pytest.mark.lab]

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from lab import CLIENT_V4, SERVER_V4, Lab  # noqa: E402

PYTHON = sys.executable
IPPROTO_MPTCP = 262


@pytest.fixture
def gateway(tmp_path):
    """A fresh lab with the datapath on all four gateway ports (marking on)."""
    from anabranch.daemon import kstructs, policy
    from anabranch.daemon.attach import Ledger, TcHooks
    from anabranch.daemon.datapath import BuildOptions, Datapath

    lab = Lab(f"dpl{os.getpid() % 100000}")
    lab.up()
    datapath = hooks = None
    try:
        datapath = Datapath(BuildOptions(flow_map_size=4096))
        policy.write_policy(datapath, policy.Policy.default())
        hooks = TcHooks(Ledger(tmp_path / "ledger.json"), netns=lab.ns("gw"))
        ports = {}
        for name in ("lan0", "lan1", "wan0", "wan1"):
            role = kstructs.ROLE_WAN if name.startswith("wan") else kstructs.ROLE_LAN
            flags = kstructs.PORT_COUNT | kstructs.PORT_MARK
            ifindex = hooks.attach(name, datapath.programs_for(name, role, flags),
                                   {"ingress": "anabranch_in", "egress": "anabranch_eg"})
            datapath.set_port(ifindex, role, flags)
            ports[name] = ifindex
        yield lab, datapath, ports
    finally:
        if hooks is not None:
            hooks.detach_all()
            hooks.close()
        if datapath is not None:
            datapath.close()
        lab.down()


def _script(code: str) -> list[str]:
    return [PYTHON, "-c", textwrap.dedent(code)]


def _start_server(lab: Lab, code: str) -> tuple[subprocess.Popen, int]:
    proc = lab.popen("srv", *_script(code), stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, port


MPTCP_SINK = """
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    s.bind(("0.0.0.0", 0)); s.listen(4)
    print(s.getsockname()[1], flush=True)
    conn, _ = s.accept()
    while conn.recv(65536):
        pass
"""


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _decoded(datapath) -> list:
    from anabranch.daemon.events import decode_all
    return decode_all(datapath.drain_events(), datapath.options.snippet_size)


def test_mptcp_connection_over_both_paths_is_seen_and_correlated(gateway):
    lab, datapath, ports = gateway
    server, port = _start_server(lab, MPTCP_SINK)
    try:
        lab.run("cli", *_script(f"""
            import socket, time
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
            s.connect(("{SERVER_V4[0]}", {port}))
            end = time.time() + 2.0
            while time.time() < end:
                s.sendall(b"x" * 16384)
                time.sleep(0.005)
            s.close()
        """), timeout=30)
        server.wait(timeout=10)
    finally:
        _stop(server)
    keys, values = datapath.sweep_flows()
    subflows = [(int(k["ifindex"]), int(k["remote_port"])) for k in keys if int(k["remote_port"]) == port]
    assert (ports["wan0"], port) in subflows and (ports["wan1"], port) in subflows, subflows
    events = _decoded(datapath)
    capable = [e for e in events if isinstance(e, ev.MpCapable) and e.receiver_key is not None]
    assert capable, "no MP_CAPABLE third ACK with both keys"
    third = capable[0]
    assert third.key.ifindex == ports["wan0"] and third.direction == ev.UP
    joins = [e for e in events if isinstance(e, ev.MpJoin)]
    assert joins and joins[0].key.ifindex == ports["wan1"]
    server_token = int.from_bytes(hashlib.sha256(third.receiver_key.to_bytes(8, "big")).digest()[:4], "big")
    assert joins[0].token == server_token


def test_dscp_of_the_class_reaches_the_server_and_the_client(gateway):
    lab, datapath, _ = gateway
    # The server reads the TOS of what arrives (voice port 5060 -> EF) and answers
    # from port 53 (background -> CS1), whose TOS the client reads.
    server = lab.popen("srv", *_script("""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
        s.bind(("0.0.0.0", 5060))
        d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        d.bind(("0.0.0.0", 53))
        print("ready", flush=True)
        data, anc, _, peer = s.recvmsg(2048, 64)
        print(anc[0][2][0], flush=True)
        d.sendto(b"answer", (peer[0], 40053))
    """), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        client = lab.run("cli", *_script(f"""
            import socket
            r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            r.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
            r.bind(("0.0.0.0", 40053)); r.settimeout(5)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"hello", ("{SERVER_V4[0]}", 5060))
            data, anc, _, _ = r.recvmsg(2048, 64)
            print(anc[0][2][0])
        """), timeout=20)
        upload_tos = int(server.stdout.readline())
    finally:
        _stop(server)
    assert upload_tos >> 2 == 46      # voice, EF, rewritten at WAN egress
    assert int(client.stdout) >> 2 == 8  # background, CS1, rewritten at WAN ingress


def _ss_rtt_ms(lab: Lab, port: int) -> float | None:
    out = lab.run("cli", "ss", "-tin", "dst", f"{SERVER_V4[0]}:{port}").stdout
    found = re.search(r"\brtt:([\d.]+)/", out)
    return float(found.group(1)) if found else None


def test_passive_rtt_agrees_with_the_client_socket(gateway):
    """Delay comes from a queue (netem is absent): tbf on the gateway's wan0, after
    our egress hook; under a steady bulk upload the client's srtt and the sum of
    the gateway's two half-RTTs see the same queue."""
    lab, datapath, ports = gateway
    lab.run("gw", "tc", "qdisc", "add", "dev", "wan0", "root", "tbf", "rate", "4mbit",
            "burst", "8kb", "latency", "150ms")
    server, port = _start_server(lab, """
        import socket
        s = socket.socket(); s.bind(("0.0.0.0", 0)); s.listen(1)
        print(s.getsockname()[1], flush=True)
        c, _ = s.accept()
        while c.recv(65536):
            pass
    """)
    try:
        client = lab.popen("cli", *_script(f"""
            import socket, time
            s = socket.create_connection(("{SERVER_V4[0]}", {port}))
            end = time.time() + 8
            while time.time() < end:
                s.sendall(b"y" * 16384)
        """))
        time.sleep(4.0)
        samples = []
        for _ in range(5):
            ss_rtt = _ss_rtt_ms(lab, port)
            keys, values = datapath.sweep_flows()
            rows = [i for i, k in enumerate(keys) if int(k["remote_port"]) == port]
            tcp_state = values["dir"][rows[0]]
            ours = (int(tcp_state[0]["rtt_srtt_ns"]) + int(tcp_state[1]["rtt_srtt_ns"])) / 1e6
            samples.append((ss_rtt, ours))
            time.sleep(0.3)
    finally:
        _stop(server, client)
    ss_median = sorted(s for s, _ in samples)[2]
    ours_median = sorted(o for _, o in samples)[2]
    assert ss_median > 5, f"no queueing delay built up: ss says {ss_median} ms"
    # Within a fifth, plus 2 ms: on a busy 2-core host the client's stack runs
    # late by a few ms now and then, and both sides smooth over different samples.
    assert abs(ours_median - ss_median) <= 0.2 * ss_median + 2.0, samples
