"""Shaping and marking together, with nothing but the real daemon: the datapath's
default port policy classifies, marks DSCP and steers packets into the HTB classes
(no test filters)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from daemon_harness import daemon_config, start_daemon
from steering import (FILE_PORT, VIDEO_PORT, VOICE_PORT, iperf3_client, iperf3_received_mbit, iperf3_server,
                      wire_sized_packets)

from lab import SERVER_V4

pytestmark = [pytest.mark.root, pytest.mark.lab]

# One port per class from ARCHITECTURE.md's default table, and the DSCP each must carry.
CLASS_PORTS = {"voice": (16384, 46), "video": (5004, 34), "file": (8080, 10),
               "background": (5432, 8), "interactive": (4000, 0)}


@pytest.fixture
def shaping_daemon(lab, tmp_path):
    extra = ('[interfaces.wan0]\nrole = "wan"\nup_mbit = 20\ndown_mbit = 40\n\n'
             '[interfaces.lan0]\nrole = "lan"\n')
    daemon = start_daemon(lab, daemon_config(tmp_path, {}, extra), tmp_path / "d.log")
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        assert daemon.stop() == 0


def test_each_class_arrives_at_the_server_with_its_dscp(lab, shaping_daemon):
    ports = [port for port, _ in CLASS_PORTS.values()]
    server = lab.popen("srv", sys.executable, "-c", textwrap.dedent(f"""
        import select, socket
        socks = []
        for port in {ports}:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
            s.bind(("0.0.0.0", port))
            socks.append(s)
        print("ready", flush=True)
        seen = set()
        while len(seen) < len(socks):
            for s in select.select(socks, [], [], 10)[0]:
                data, anc, _, _ = s.recvmsg(2048, 64)
                port = s.getsockname()[1]
                if port not in seen:
                    seen.add(port)
                    print(port, anc[0][2][0], flush=True)
    """), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        lab.run("cli", sys.executable, "-c", textwrap.dedent(f"""
            import socket, time
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(3):
                for port in {ports}:
                    s.sendto(b"x" * 100, ("{SERVER_V4[0]}", port))
                time.sleep(0.1)
        """))
        received = dict(tuple(map(int, server.stdout.readline().split())) for _ in ports)
    finally:
        server.kill()
        server.wait(5)
        server.stdout.close()
    assert {name: received[port] >> 2 for name, (port, _) in CLASS_PORTS.items()} == \
        {name: dscp for name, (_, dscp) in CLASS_PORTS.items()}
    assert all(tos & 0x3 == 0 for tos in received.values())  # ECN bits untouched (not-ECT)


def test_voice_and_video_keep_their_rate_on_an_uplink_saturated_by_file(lab, shaping_daemon):
    wire_sized_packets(lab)
    servers = [iperf3_server(lab, port) for port in (FILE_PORT, VOICE_PORT, VIDEO_PORT)]
    try:
        bulk = iperf3_client(lab, SERVER_V4[0], FILE_PORT, 12)
        time.sleep(3)  # the bulk flow fills the 20 Mbit/s uplink first
        # Measured after 2 s: a new flow borrows until the daemon's next tick sizes its class.
        voice = iperf3_client(lab, SERVER_V4[0], VOICE_PORT, 6, udp_mbit=1.0, length=200, omit_s=2)
        video = iperf3_client(lab, SERVER_V4[0], VIDEO_PORT, 6, udp_mbit=6.0, length=1200, omit_s=2)
        voice_mbit = iperf3_received_mbit(voice)
        video_mbit = iperf3_received_mbit(video)
        bulk_mbit = iperf3_received_mbit(bulk)
        with shaping_daemon.client() as client:
            shaping = client.call("classes")["shaping"]
    finally:
        for server in servers:
            server.kill()
            server.wait()
    wan0 = next(link for link in shaping["links"] if link["iface"] == "wan0")
    sent = {c["name"]: c["sent_bytes"] for c in wan0["classes"]}
    detail = f"voice {voice_mbit:.2f}, video {video_mbit:.2f}, bulk {bulk_mbit:.2f} Mbit/s; sent {sent}"
    assert voice_mbit >= 0.9 * 1.0, detail
    assert video_mbit >= 0.9 * 6.0, detail
    assert 8.0 <= bulk_mbit <= 20.0, detail
    # The datapath steered each flow into its class: every class carried its traffic.
    assert sent["voice"] > 500_000 and sent["video"] > 3_000_000 and sent["file"] > 10_000_000, detail
