"""`anabranch`: the command line over the daemon's ZeroMQ API.

    anabranch status [--json]
    anabranch flows [--limit N] [--sort rate|bytes|first_seen|last_seen] [--iface NAME] [--json]
    anabranch watch                       follow the state stream
    anabranch analyze FILE.pcap [--json]  run the datapath over a capture (root, offline)
Human tables by default, `--json` for scripts; exits 3 when the daemon is unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from typing import Any

from . import Client, CommandFailed, DaemonUnreachable, Subscriber
from .messages import Endpoints

EXIT_UNREACHABLE = 3
EXIT_FAILED = 4


def _rate(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.1f} {unit}"
    return f"{bps:.0f} bit/s"


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _endpoint(host: str, port: int, family: int) -> str:
    return f"[{host}]:{port}" if family == 6 else f"{host}:{port}"


def show_status(reply: dict[str, Any]) -> str:
    daemon, totals = reply["daemon"], reply.get("totals", {})
    lines = [f"anabranchd {daemon['version']} (pid {daemon['pid']}), up {daemon['uptime_s']:.0f} s, "
             f"tick {daemon['tick_ms']:.1f} ms",
             f"flows {totals.get('flows', 0)}   up {_rate(totals.get('up_bps', 0))}   "
             f"down {_rate(totals.get('down_bps', 0))}", "",
             f"{'interface':<12}{'role':<6}{'attached':<10}{'up':>14}{'down':>14}"]
    for iface in reply["interfaces"]:
        lines.append(f"{iface['name']:<12}{iface['role']:<6}{'yes' if iface['attached'] else 'NO':<10}"
                     f"{_rate(iface['up_bps']):>14}{_rate(iface['down_bps']):>14}")
    return "\n".join(lines)


def show_flows(reply: dict[str, Any]) -> str:
    lines = [f"{'proto':<7}{'lan side':<42}{'remote':<42}{'iface':<8}{'up':>12}{'down':>12}{'bytes':>10}"]
    for f in reply["flows"]:
        lines.append(f"{f['proto']:<7}{_endpoint(f['src'], f['sport'], f['family']):<42}"
                     f"{_endpoint(f['dst'], f['dport'], f['family']):<42}{f['iface']:<8}"
                     f"{_rate(f['bps_up']):>12}{_rate(f['bps_down']):>12}"
                     f"{_bytes(f['bytes_up'] + f['bytes_down']):>10}")
    lines.append(f"({len(reply['flows'])} of {reply['count']} flows)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["analyze"]:
        # Offline and needs BCC: imported only here, so the rest of the CLI stays light.
        from anabranch.daemon import analyze
        return analyze.main(argv[1:])
    parser = argparse.ArgumentParser(prog="anabranch", description="Anabranch command line")
    parser.add_argument("--control", default=Endpoints.control, help="the daemon's control endpoint")
    parser.add_argument("--events", default=Endpoints.events, help="the daemon's event endpoint")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for a reply")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--version", action="version",
                        version=f"anabranch {metadata.version('anabranch')}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="daemon, interfaces and totals")
    flows = sub.add_parser("flows", help="active flows")
    flows.add_argument("--limit", type=int, default=50)
    flows.add_argument("--sort", default="rate", choices=("rate", "bytes", "first_seen", "last_seen"))
    flows.add_argument("--iface")
    sub.add_parser("watch", help="follow the state stream (Ctrl-C to stop)")
    sub.add_parser("analyze", help="run the datapath over a pcap/pcapng file: analyze FILE [--json]")
    args = parser.parse_args(argv)

    try:
        if args.command == "watch":
            subscriber = Subscriber(args.events, topics=("state",))
            try:
                while True:
                    item = subscriber.receive(timeout_s=args.timeout + 2)
                    if item is None:
                        raise DaemonUnreachable(f"no state from {args.events}; is anabranchd running?")
                    print(json.dumps(item[1]) if args.json else show_status(item[1]) + "\n", flush=True)
            except KeyboardInterrupt:
                return 0
        with Client(args.control, timeout_s=args.timeout) as client:
            if args.command == "status":
                reply = client.call("status")
                print(json.dumps(reply, indent=2) if args.json else show_status(reply))
            elif args.command == "flows":
                call_args = {"limit": args.limit, "sort": args.sort}
                if args.iface:
                    call_args["iface"] = args.iface
                reply = client.call("flows", **call_args)
                print(json.dumps(reply, indent=2) if args.json else show_flows(reply))
    except DaemonUnreachable as exc:
        print(f"anabranch: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except CommandFailed as exc:
        print(f"anabranch: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
