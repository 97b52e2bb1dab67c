#!/usr/bin/env python3
"""The Anabranch lab: client, gateway and server in network namespaces.

One definition used by `make demo`, the tests and the Vagrant provisioning
(`lab.py plan --json` prints the addressing).  The client has two uplinks; each
enters the gateway on its own LAN port and leaves through its own WAN port, so
an MPTCP connection from the client opens two subflows over two WAN paths:

    client up0 ---- lan0 [gateway] wan0 ---- eth0 server
    client up1 ---- lan1 [gateway] wan1 ---- eth1 server

The gateway routes by source: traffic from the up1 subnet leaves through wan1.
Namespaces are named `<prefix>-cli`, `<prefix>-gw`, `<prefix>-srv`; `up` and
`down` are idempotent, and `down` kills what runs inside before deleting.

    lab.py up [--prefix ab]      lab.py down [--prefix ab | --all]
    lab.py plan --json           lab.py exec gw -- ip -s link
Stdlib only: it runs before the venv exists (Vagrant) and as root.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

# The address plan.  Subnets are per link; the client's up0 address is its
# primary, the server's eth0 address is the service address.
PLAN = {
    "links": [
        {"a": ("cli", "up0"), "b": ("gw", "lan0"), "v4": "10.71.1.0/24", "v6": "fd71:1::/64", "path": 0},
        {"a": ("cli", "up1"), "b": ("gw", "lan1"), "v4": "10.71.2.0/24", "v6": "fd71:2::/64", "path": 1},
        {"a": ("gw", "wan0"), "b": ("srv", "eth0"), "v4": "10.72.1.0/24", "v6": "fd72:1::/64", "path": 0},
        {"a": ("gw", "wan1"), "b": ("srv", "eth1"), "v4": "10.72.2.0/24", "v6": "fd72:2::/64", "path": 1},
    ],
    # Host part of each side: clients and servers .2, the gateway .1.
    "host": {"cli": 2, "srv": 2, "gw": 1},
    "gateway_ports": {"lan": ["lan0", "lan1"], "wan": ["wan0", "wan1"]},
}

CLIENT_V4 = ("10.71.1.2", "10.71.2.2")
CLIENT_V6 = ("fd71:1::2", "fd71:2::2")
SERVER_V4 = ("10.72.1.2", "10.72.2.2")
SERVER_V6 = ("fd72:1::2", "fd72:2::2")
GATEWAY_LAN_V4 = ("10.71.1.1", "10.71.2.1")
GATEWAY_WAN_V4 = ("10.72.1.1", "10.72.2.1")

ROLES = ("cli", "gw", "srv")
MARKER = "-gw"  # every lab has a gateway namespace: how `down --all` finds labs


def _run(args: list[str], check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def netns_list() -> list[str]:
    out = _run(["ip", "-json", "netns", "list"], check=False).stdout.strip()
    return [entry["name"] for entry in json.loads(out or "[]")]


@dataclass
class Lab:
    prefix: str = "ab"

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def exists(self) -> bool:
        return self.ns("gw") in netns_list()

    # -- running things inside -------------------------------------------------
    def cmd(self, role: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(role), *args]

    def run(self, role: str, *args: str, check: bool = True, timeout: float | None = 60,
            **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(role, *args), check=check, timeout=timeout,
                              capture_output=True, text=True, **kwargs)

    def popen(self, role: str, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(role, *args), **kwargs)

    def link_stats(self, role: str, ifname: str) -> dict:
        out = self.run(role, "ip", "-json", "-s", "link", "show", ifname).stdout
        stats = json.loads(out)[0]["stats64"]
        return {"tx_bytes": stats["tx"]["bytes"], "tx_packets": stats["tx"]["packets"],
                "rx_bytes": stats["rx"]["bytes"], "rx_packets": stats["rx"]["packets"]}

    # -- lifecycle -----------------------------------------------------------------
    def up(self) -> None:
        if self.exists():
            return
        try:
            self._build()
        except Exception:
            self.down()
            raise

    def _build(self) -> None:
        for role in ROLES:
            _run(["ip", "netns", "add", self.ns(role)])
            self.run(role, "ip", "link", "set", "lo", "up")
        for link in PLAN["links"]:
            (ra, ia), (rb, ib) = link["a"], link["b"]
            # Created directly inside the namespaces: no name ever exists in the
            # root namespace, so labs with different prefixes never collide.
            _run(["ip", "link", "add", ia, "netns", self.ns(ra), "type", "veth",
                  "peer", "name", ib, "netns", self.ns(rb)])
            for role, ifname in ((ra, ia), (rb, ib)):
                host = PLAN["host"][role]
                v4 = link["v4"].rsplit(".", 1)[0] + f".{host}/24"
                v6 = link["v6"].split("/")[0] + f"{host}/64"
                self.run(role, "ip", "addr", "add", v4, "dev", ifname)
                self.run(role, "ip", "-6", "addr", "add", v6, "dev", ifname, "nodad")
                self.run(role, "ip", "link", "set", ifname, "up")

        for role in ROLES:
            for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
                self.run(role, "sysctl", "-qw", f"{key}=0")
            self.run(role, "sysctl", "-qw", "net.mptcp.enabled=1")
        for ifname in ("lan0", "lan1", "wan0", "wan1"):
            self.run("gw", "sysctl", "-qw", f"net.ipv4.conf.{ifname}.rp_filter=0")
        for ifname in ("eth0", "eth1"):
            self.run("srv", "sysctl", "-qw", f"net.ipv4.conf.{ifname}.rp_filter=0")
        self.run("gw", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.run("gw", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")

        # Client: up0 is the default path; traffic sourced from up1's address
        # leaves through up1 (what MPTCP's second subflow needs).
        self.run("cli", "ip", "route", "add", "default", "via", GATEWAY_LAN_V4[0], "dev", "up0")
        self.run("cli", "ip", "-6", "route", "add", "default", "via", "fd71:1::1", "dev", "up0")
        self.run("cli", "ip", "route", "add", "default", "via", GATEWAY_LAN_V4[1], "dev", "up1", "table", "102")
        self.run("cli", "ip", "-6", "route", "add", "default", "via", "fd71:2::1", "dev", "up1", "table", "102")
        self.run("cli", "ip", "rule", "add", "from", CLIENT_V4[1], "table", "102")
        self.run("cli", "ip", "-6", "rule", "add", "from", CLIENT_V6[1], "table", "102")

        # Gateway: WAN path by source subnet.
        self.run("gw", "ip", "route", "add", "default", "via", SERVER_V4[0], "dev", "wan0")
        self.run("gw", "ip", "-6", "route", "add", "default", "via", SERVER_V6[0], "dev", "wan0")
        self.run("gw", "ip", "route", "add", "default", "via", SERVER_V4[1], "dev", "wan1", "table", "202")
        self.run("gw", "ip", "-6", "route", "add", "default", "via", SERVER_V6[1], "dev", "wan1", "table", "202")
        self.run("gw", "ip", "rule", "add", "from", "10.71.2.0/24", "table", "202")
        self.run("gw", "ip", "-6", "rule", "add", "from", "fd71:2::/64", "table", "202")

        # Server: answer each client subnet through the path it came by.
        self.run("srv", "ip", "route", "add", "10.71.1.0/24", "via", GATEWAY_WAN_V4[0], "dev", "eth0")
        self.run("srv", "ip", "route", "add", "10.71.2.0/24", "via", GATEWAY_WAN_V4[1], "dev", "eth1")
        self.run("srv", "ip", "-6", "route", "add", "fd71:1::/64", "via", "fd72:1::1", "dev", "eth0")
        self.run("srv", "ip", "-6", "route", "add", "fd71:2::/64", "via", "fd72:2::1", "dev", "eth1")

        # MPTCP: the client opens a second subflow from up1; both ends accept two.
        for role in ("cli", "srv"):
            self.run(role, "ip", "mptcp", "limits", "set", "subflows", "2", "add_addr_accepted", "2")
        self.run("cli", "ip", "mptcp", "endpoint", "add", CLIENT_V4[1], "dev", "up1", "subflow")

    def down(self) -> None:
        for role in ROLES:
            name = self.ns(role)
            if name not in netns_list():
                continue
            pids = _run(["ip", "netns", "pids", name], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            deadline = time.monotonic() + 5
            while _run(["ip", "netns", "pids", name], check=False).stdout.split() and time.monotonic() < deadline:
                time.sleep(0.05)
            _run(["ip", "netns", "del", name], check=False)


def all_labs() -> list[Lab]:
    return [Lab(name[: -len(MARKER)]) for name in netns_list() if name.endswith(MARKER)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "plan", "exec", "status"))
    parser.add_argument("role", nargs="?", choices=ROLES)
    parser.add_argument("--prefix", default=os.environ.get("AB_LAB_PREFIX", "ab"))
    parser.add_argument("--all", action="store_true", help="with down: every lab on this machine")
    parser.add_argument("--json", action="store_true")
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1:]
    args = parser.parse_args(argv)
    lab = Lab(args.prefix)
    if args.action == "plan":
        print(json.dumps(PLAN, indent=2) if args.json else PLAN)
    elif args.action == "up":
        lab.up()
        print(f"lab {lab.prefix} up: namespaces {', '.join(lab.ns(r) for r in ROLES)}")
    elif args.action == "down":
        for each in (all_labs() if args.all else [lab]):
            each.down()
            print(f"lab {each.prefix} down")
    elif args.action == "status":
        print("up" if lab.exists() else "down")
        return 0 if lab.exists() else 1
    elif args.action == "exec":
        return subprocess.call(lab.cmd(args.role, *command))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
