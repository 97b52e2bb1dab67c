#!/usr/bin/env python3
"""End-to-end checks of a running Anabranch gateway, shared by the netns lab and Vagrant.

Each check prints one line saying what it saw and exits non-zero (with what
failed and what to look at) when the gateway does not behave:

    checks.py reach --from 10.71.1.2,10.71.2.2 --to 10.72.1.2,10.72.2.2   (on the client)
    checks.py state --events ipc:///run/anabranch/events.sock --ports wan0,lan0   (on the gateway)
    checks.py flows --control ipc:///run/anabranch/control.sock --host 10.72.1.2  (on the gateway)

`reach` needs only the standard library and ping; `state` and `flows` need a
Python that can import anabranch.client (the repo's .venv, or the installed
/usr/lib/anabranch/venv/bin/python3).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


class CheckFailed(Exception):
    pass


def reach(sources: list[str], targets: list[str], count: int = 3) -> str:
    """Every target answers ping from every source address (i.e. over every uplink)."""
    for source in sources:
        for target in targets:
            result = subprocess.run(["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2",
                                     "-I", source, target], capture_output=True, text=True)
            if result.returncode != 0:
                raise CheckFailed(f"reach: {target} does not answer from {source} "
                                  f"(check the gateway's forwarding and routes):\n{result.stdout}{result.stderr}")
    return f"reach: {len(targets)} target(s) answer from {len(sources)} source(s)"


def state(events: str, ports: list[str], timeout_s: float = 60.0) -> str:
    """The daemon publishes `state` with every expected port attached."""
    from anabranch.client import Subscriber

    subscriber = Subscriber(events, topics=("state",))
    deadline = time.monotonic() + timeout_s
    last = None
    try:
        while time.monotonic() < deadline:
            item = subscriber.receive(timeout_s=1.0)
            if item is None:
                continue
            last = item[1]
            attached = {i["name"] for i in last.get("interfaces", []) if i.get("attached")}
            if set(ports) <= attached:
                daemon = last.get("daemon", {})
                return (f"state: anabranchd {daemon.get('version')} publishes, "
                        f"attached {', '.join(sorted(attached))}")
    finally:
        subscriber.close()
    if last is None:
        raise CheckFailed(f"state: no `state` message on {events} within {timeout_s:g} s "
                          "(is anabranchd running? see `journalctl -u anabranchd`)")
    raise CheckFailed(f"state: expected {', '.join(ports)} attached, last state says "
                      f"{[(i['name'], i['attached']) for i in last.get('interfaces', [])]}")


def flows(control: str, host: str, timeout_s: float = 20.0) -> str:
    """The daemon has counted at least one flow with `host` at one end."""
    from anabranch.client import Client

    deadline = time.monotonic() + timeout_s
    with Client(control, timeout_s=3.0) as client:
        while time.monotonic() < deadline:
            reply = client.call("flows", host=host)
            seen = [f for f in reply["flows"] if f["bytes_up"] + f["bytes_down"] > 0]
            if seen:
                total = sum(f["bytes_up"] + f["bytes_down"] for f in seen)
                return f"flows: {len(seen)} flow(s) with {host}, {total} bytes counted"
            time.sleep(1.0)
    raise CheckFailed(f"flows: no flow with {host} counted within {timeout_s:g} s "
                      "(did traffic pass the gateway's attached ports?)")


def _names(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="check", required=True)
    p = sub.add_parser("reach", help="ping every target from every source address")
    p.add_argument("--from", dest="sources", type=_names, required=True)
    p.add_argument("--to", dest="targets", type=_names, required=True)
    p = sub.add_parser("state", help="the daemon publishes state with these ports attached")
    p.add_argument("--events", default="ipc:///run/anabranch/events.sock")
    p.add_argument("--ports", type=_names, required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    p = sub.add_parser("flows", help="the daemon counted a flow with this host")
    p.add_argument("--control", default="ipc:///run/anabranch/control.sock")
    p.add_argument("--host", required=True)
    args = parser.parse_args(argv)
    try:
        if args.check == "reach":
            print(reach(args.sources, args.targets))
        elif args.check == "state":
            print(state(args.events, args.ports, args.timeout))
        else:
            print(flows(args.control, args.host))
    except CheckFailed as exc:
        print(f"FAILED {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
