"""Test-only helpers for shaping in the lab: class steering by port, wire-sized packets, iperf3.

Until the datapath sets skb->priority to the class's classid, the tests steer
packets into HTB classes with u32 filters on the HTB qdisc (u32 is in the
kernel; `basic` and flower are not).  The filters hang off the HTB root, so
they disappear with the tree.  Stdlib only.
"""

from __future__ import annotations

import json
import subprocess
import time

# Ports of the class table (ARCHITECTURE.md) used by the lab's generators.
VOICE_PORT, VIDEO_PORT, FILE_PORT = 16384, 5004, 8080
CLASSID = {"voice": "1:11", "video": "1:12", "interactive": "1:13", "file": "1:14", "background": "1:15"}


def steer_by_port(lab, ifname: str, ports: dict[int, str], icmp_class: str | None = None) -> None:
    """u32 filters on `ifname`'s HTB 1: sending IPv4 packets to each destination port into its class."""
    for prio, (port, name) in enumerate(sorted(ports.items()), start=10):
        lab.run("gw", "tc", "filter", "add", "dev", ifname, "parent", "1:", "protocol", "ip", "prio", str(prio),
                "u32", "match", "ip", "dport", str(port), "0xffff", "flowid", CLASSID[name])
    if icmp_class:
        lab.run("gw", "tc", "filter", "add", "dev", ifname, "parent", "1:", "protocol", "ip", "prio", "9",
                "u32", "match", "ip", "protocol", "1", "0xff", "flowid", CLASSID[icmp_class])


def wire_sized_packets(lab) -> None:
    """Turn off segmentation offloads on the lab's hosts so each skb is one wire packet.

    veth otherwise hands 64 kB TSO super-packets to the gateway, which a shaper
    can only release as 26 ms bursts at 20 Mbit/s: not what a real uplink sees."""
    for role, ports in (("cli", ("up0", "up1")), ("srv", ("eth0", "eth1")),
                        ("gw", ("lan0", "lan1", "wan0", "wan1"))):
        for port in ports:
            lab.run(role, "ethtool", "-K", port, "tso", "off", "gso", "off", "gro", "off", check=False)


def iperf3_server(lab, port: int) -> subprocess.Popen:
    process = lab.popen("srv", "iperf3", "-s", "-1", "-p", str(port), stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # wait until it listens
        out = lab.run("srv", "ss", "-Hltn", f"sport = :{port}").stdout
        if out.strip():
            break
        time.sleep(0.05)
    return process


def iperf3_client(lab, host: str, port: int, seconds: float, udp_mbit: float | None = None,
                  length: int | None = None, omit_s: int = 0, congestion: str | None = None) -> subprocess.Popen:
    args = ["iperf3", "-c", host, "-p", str(port), "-t", str(seconds), "-J", "-O", str(omit_s)]
    if congestion:
        args += ["-C", congestion]
    if udp_mbit is not None:
        args += ["-u", "-b", f"{udp_mbit}M"]
    if length is not None:
        args += ["-l", str(length)]
    return lab.popen("cli", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def iperf3_received_mbit(process: subprocess.Popen, timeout: float = 60) -> float:
    """What the server received (Mbit/s), from the client's JSON report."""
    out, err = process.communicate(timeout=timeout)
    report = json.loads(out)
    if "error" in report:
        raise RuntimeError(f"iperf3: {report['error']}")
    end = report["end"]
    if "sum_received" in end:
        return end["sum_received"]["bits_per_second"] / 1e6
    total = end["sum"]
    # UDP: iperf3 3.12 reports the sender's rate and the server's loss.
    return total["bits_per_second"] * (1 - total.get("lost_percent", 0) / 100) / 1e6
