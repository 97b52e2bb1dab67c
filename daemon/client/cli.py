"""`anabranch`: the command line over the daemon's ZeroMQ API.

    anabranch status                         daemon, interfaces, totals
    anabranch flows [--limit N] [--sort rate|bytes|first_seen|last_seen] [--iface NAME]
                    [--proto tcp|udp|icmp|icmpv6] [--host ADDR] [--class NAME]
    anabranch flow ID                        one flow and its recent rates
    anabranch mptcp | links | classes | usage
    anabranch rules [list] | rules add --class C [--ports 5060,16384-16396] [--proto P]
                    [--cidr NET]... [--host NAME]... | rules update ID [...] | rules delete ID
    anabranch class set NAME [--priority P] [--min MBIT] [--max MBIT|link] [--dscp N]
    anabranch link set NAME [--up MBIT|auto] [--down MBIT|auto]
    anabranch alerts [list [--all]] | alerts ack ID
    anabranch predict CLASS MBIT...          next 1 s / 5 s demand from recent samples
    anabranch history SERIES [--last S] [--step S]
    anabranch call CMD [JSON-ARGS]           any command, raw (see `anabranch call commands`)
    anabranch reload                         re-read the daemon's TOML
    anabranch watch [--topic T]...           follow the state stream
    anabranch keygen NAME [--dir DIR]        a CURVE key pair for tcp:// endpoints
    anabranch analyze FILE.pcap [--json]     run the datapath over a capture (root, offline)

Human tables by default, `--json` (before or after the command) for scripts.  Exit status: 0 done, 2 bad usage,
3 the daemon is unreachable, 4 the daemon refused the command (its error code is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import metadata
from typing import Any

from . import Client, CommandFailed, CurveKeys, DaemonUnreachable, Subscriber
from .messages import TOPICS, Endpoints

EXIT_USAGE = 2
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


def _mbit(value: float | None, none: str = "link") -> str:
    return none if value is None else f"{value:g}"


def _endpoint(host: str, port: int, family: int) -> str:
    return f"[{host}]:{port}" if family == 6 else f"{host}:{port}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """Columns as wide as their widest cell; numbers right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) and bool(rows) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric)).rstrip()
    return "\n".join([line(header)] + [line(r) for r in cells])


def show_status(reply: dict[str, Any]) -> str:
    daemon, totals = reply["daemon"], reply.get("totals", {})
    lines = [f"anabranchd {daemon['version']} (pid {daemon['pid']}), up {daemon['uptime_s']:.0f} s, "
             f"tick {daemon['tick_ms']:.1f} ms",
             f"flows {totals.get('flows', 0)}   up {_rate(totals.get('up_bps', 0))}   "
             f"down {_rate(totals.get('down_bps', 0))}", ""]
    rows = [[i["name"], i["role"], "yes" if i["attached"] else "NO", _rate(i["up_bps"]), _rate(i["down_bps"])]
            for i in reply["interfaces"]]
    lines.append(_table(["interface", "role", "attached", "up", "down"], rows))
    return "\n".join(lines)


def show_flows(reply: dict[str, Any]) -> str:
    rows = [[f["id"], f["proto"], _endpoint(f["src"], f["sport"], f["family"]),
             _endpoint(f["dst"], f["dport"], f["family"]), f["iface"], f.get("class") or "-",
             _rate(f["bps_up"]), _rate(f["bps_down"]), _bytes(f["bytes_up"] + f["bytes_down"])]
            for f in reply["flows"]]
    table = _table(["id", "proto", "lan side", "remote", "iface", "class", "up", "down", "bytes"], rows)
    return f"{table}\n({len(reply['flows'])} of {reply['count']} flows)"


def show_flow(reply: dict[str, Any]) -> str:
    flow = reply["flow"]
    lines = [f"{key:<12} {value}" for key, value in flow.items()]
    if reply["history"]:
        lines += ["", _table(["time", "up", "down"],
                             [[time.strftime("%H:%M:%S", time.localtime(ts)), _rate(up), _rate(down)]
                              for ts, up, down in reply["history"][-20:]])]
    else:
        lines += ["", "(rate history starts now; ask again in a few seconds)"]
    return "\n".join(lines)


def show_mptcp(reply: dict[str, Any]) -> str:
    if not reply.get("available", True):
        return "MPTCP tracking is not available in this daemon build."
    lines = []
    for c in reply["connections"]:
        tokens = ",".join(c.get("tokens", [])) or "unknown connection"
        state = f"ended ({c['end_reason']})" if c.get("ended") else "live"
        lines.append(f"connection {c['id']} v{c.get('version') or '?'} [{tokens}] class {c.get('class') or '-'} "
                     f"{state}: {_bytes(c['bytes_up'])} up, {_bytes(c['bytes_down'])} down")
        rows = [[s["role"], s.get("iface") or "-", f"{s.get('lan', '?')}:{s.get('lan_port', '?')}",
                 f"{s.get('remote', '?')}:{s.get('remote_port', '?')}", _rate(s["bps_up"]), _rate(s["bps_down"]),
                 "-" if s.get("rtt_ms") is None else f"{s['rtt_ms']:.1f}", s["retrans"], f"{100 * s['share']:.0f}%"]
                for s in c["subflows"]]
        lines.append(_table(["subflow", "path", "lan", "remote", "up", "down", "rtt ms", "retrans", "share"], rows))
    return "\n".join(lines + [f"({reply['count']} connections)"])


def show_links(reply: dict[str, Any]) -> str:
    rows = [[l["name"], l["role"], "yes" if l["attached"] else "NO",
             f"{_mbit(l['up_mbit'], 'auto')} ({l['up_source']})", f"{_mbit(l['down_mbit'], 'auto')} ({l['down_source']})",
             _rate(l["up_bps"]), _rate(l["down_bps"])] for l in reply["links"]]
    return _table(["link", "role", "attached", "up Mbit/s", "down Mbit/s", "up now", "down now"], rows)


def show_classes(reply: dict[str, Any]) -> str:
    rows = [[c["name"], c["priority"], _mbit(c["min_mbit"]), _mbit(c["max_mbit"]), c["dscp"], c["flows"],
             _rate(c["up_bps"]), _rate(c["down_bps"])] for c in reply["classes"]]
    table = _table(["class", "priority", "min Mbit/s", "max Mbit/s", "dscp", "flows", "up", "down"], rows)
    if reply.get("shaping"):
        table += "\n\n" + show_shaping(reply["shaping"])
    return table


def show_shaping(reply: dict[str, Any]) -> str:
    """The HTB plan per shaped link, as the kernel reports it."""
    lines = [f"leaf qdisc: {reply.get('leaf_qdisc') or 'not probed yet'}"]
    for link in reply["links"]:
        state = "shaped" if link["shaped"] else f"NOT shaped: {link['error'] or 'no plan yet'}"
        lines += ["", f"{link['iface']} ({link['link']} {link['direction']}, {link['link_mbit']:g} Mbit/s): {state}",
                  f"  {'class':<12}{'id':<6}{'prio':>5}{'rate':>14}{'ceil':>14}{'now':>14}"
                  f"{'sent':>10}{'dropped':>9}{'overlimits':>11}"]
        for c in link["classes"]:
            lines.append(f"  {c['name']:<12}{c['classid']:<6}{c['htb_prio']:>5}{_rate(c['rate_bps']):>14}"
                         f"{_rate(c['ceil_bps']):>14}{_rate(c['measured_bps']):>14}"
                         f"{_bytes(c.get('sent_bytes', 0)):>10}{c.get('dropped', 0):>9}"
                         f"{c.get('overlimits', 0):>11}")
    return "\n".join(lines)


def _ports(ports: list[Any]) -> str:
    return ",".join(f"{p[0]}-{p[1]}" if isinstance(p, list) else str(p) for p in ports)


def show_rules(reply: dict[str, Any]) -> str:
    rows = []
    for r in reply["rules"]:
        m = r["match"]
        what = "; ".join(part for part in (
            f"ports {_ports(m['ports'])}" if m.get("ports") else "",
            f"cidrs {','.join(m['cidrs'])}" if m.get("cidrs") else "",
            f"hosts {','.join(m['hosts'])}" if m.get("hosts") else "") if part)
        rows.append([r["id"], r["class"], m.get("proto", "any"), "yes" if r.get("enabled", True) else "no",
                     what, r.get("comment", "")])
    table = _table(["id", "class", "proto", "enabled", "match", "comment"], rows) if rows else "(no admin rules)"
    builtin = [[r["id"], r["class"], r["proto"], "; ".join(part for part in (
        f"ports {_ports(r['ports'])}" if r.get("ports") else "",
        f"cidrs {','.join(r['cidrs'])}" if r.get("cidrs") else "",
        f"hosts {','.join(r['hosts'][:4])}{' ...' if len(r['hosts']) > 4 else ''}" if r.get("hosts") else "")
        if part)] for r in reply.get("builtin", [])]
    if builtin:
        table += "\n\nthen, built in (read-only):\n" + _table(["id", "class", "proto", "match"], builtin)
    return table


def show_alerts(reply: dict[str, Any]) -> str:
    if not reply["alerts"]:
        return "no alerts"
    rows = [[a["id"], a["severity"], a["state"], "yes" if a.get("acked_at") else "no",
             time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["raised_at"])), a["message"]]
            for a in reply["alerts"]]
    return _table(["id", "severity", "state", "acked", "raised", "message"], rows)


def show_usage(reply: dict[str, Any]) -> str:
    rows = [[h["host"] + (" (gateway)" if h.get("gateway") else ""), h["flows"], _bytes(h["bytes_up"]),
             _bytes(h["bytes_down"]), _rate(h["bps_up"]), _rate(h["bps_down"])] for h in reply["hosts"]]
    return _table(["host", "flows", "sent", "received", "up", "down"], rows) + f"\n(over {reply['window']})"


def show_prediction(reply: dict[str, Any]) -> str:
    p = reply["prediction"]
    return "\n".join(f"{p['class']} in {h[1:]} s: {p[h]['mbit']:.3f} Mbit/s "
                     f"(p10 {p[h]['p10']:.3f}, p90 {p[h]['p90']:.3f}, confidence {p[h]['confidence']:.0f} %)"
                     for h in ("h1", "h5")) + f"\nmethod: {reply['method']}"


def show_history(reply: dict[str, Any]) -> str:
    rows = [[time.strftime("%H:%M:%S", time.localtime(ts)), f"{value:.6g}"] for ts, value in reply["points"]]
    return _table(["time", reply["series"]], rows)


def _port_list(text: str) -> list[Any]:
    ports: list[Any] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        try:
            ports.append([int(first), int(last)] if last else int(first))
        except ValueError:
            raise argparse.ArgumentTypeError(f"ports: {part!r} is not a port or FIRST-LAST range") from None
    return ports


def _mbit_or(word: str):
    def parse(text: str) -> float | str | None:
        if text == word:
            return "auto" if word == "auto" else None
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number of Mbit/s or {word!r}, got {text!r}") from None
    return parse


def _samples(text: str) -> float | None:
    if text in ("-", "null"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of Mbit/s, or - for a missed second; got {text!r}") \
            from None


def _rule_options(parser: argparse.ArgumentParser, new: bool) -> None:
    parser.add_argument("--class", dest="class_", required=new, help="the class matching flows get")
    parser.add_argument("--ports", type=_port_list, help="e.g. 5060,16384-16396 (either side)")
    parser.add_argument("--proto", choices=("tcp", "udp", "any"))
    parser.add_argument("--cidr", action="append", help="a remote network (repeatable)")
    parser.add_argument("--host", action="append", help="a host name or *.domain (repeatable)")
    parser.add_argument("--comment")
    enabled = parser.add_mutually_exclusive_group()
    enabled.add_argument("--enable", dest="enabled", action="store_true", default=None)
    enabled.add_argument("--disable", dest="enabled", action="store_false")


def _rule_from(args: argparse.Namespace) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    match = {k: v for k, v in (("ports", args.ports), ("proto", args.proto), ("cidrs", args.cidr),
                               ("hosts", args.host)) if v is not None}
    if match:
        rule["match"] = match
    for key, value in (("class", args.class_), ("comment", args.comment), ("enabled", args.enabled)):
        if value is not None:
            rule[key] = value
    return rule


def parser() -> argparse.ArgumentParser:
    # `--json` is accepted before or after the command (SUPPRESS: the later one
    # must not reset what the earlier one set).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts")
    top = argparse.ArgumentParser(prog="anabranch", description="Anabranch command line",
                                  epilog="exit status: 0 done, 2 bad usage, 3 daemon unreachable, "
                                         "4 command refused")
    top.add_argument("--control", default=os.environ.get("ANABRANCH_CONTROL", Endpoints.control),
                     help="the daemon's control endpoint (env ANABRANCH_CONTROL)")
    top.add_argument("--events", default=os.environ.get("ANABRANCH_EVENTS", Endpoints.events),
                     help="the daemon's event endpoint (env ANABRANCH_EVENTS)")
    top.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for a reply")
    top.add_argument("--server-key", help="the daemon's public CURVE certificate (tcp:// endpoints)")
    top.add_argument("--client-key", help="this client's secret CURVE certificate (tcp:// endpoints)")
    top.add_argument("--json", action="store_true", help="print JSON for scripts")
    top.add_argument("--version", action="version", version=f"anabranch {_version()}")
    sub = top.add_subparsers(dest="command", required=True)

    sub.add_parser("status", parents=[common], help="daemon, interfaces and totals")
    flows = sub.add_parser("flows", parents=[common], help="active flows")
    flows.add_argument("--limit", type=int, default=50)
    flows.add_argument("--sort", default="rate", choices=("rate", "bytes", "first_seen", "last_seen"))
    flows.add_argument("--iface")
    flows.add_argument("--proto", choices=("tcp", "udp", "icmp", "icmpv6"))
    flows.add_argument("--host", help="an IP address on either side")
    flows.add_argument("--class", dest="class_")
    flow = sub.add_parser("flow", parents=[common], help="one flow and its recent rates")
    flow.add_argument("id")
    for name, text in (("mptcp", "MPTCP connections"), ("links", "links and capacities"),
                       ("classes", "the class table"), ("usage", "traffic per LAN host"),
                       ("reload", "re-read the daemon's configuration file")):
        sub.add_parser(name, parents=[common], help=text)

    rules = sub.add_parser("rules", parents=[common], help="classification rules").add_subparsers(dest="action")
    rules.add_parser("list", parents=[common])
    add = rules.add_parser("add", parents=[common])
    add.add_argument("--id")
    add.add_argument("--position", type=int)
    _rule_options(add, new=True)
    update = rules.add_parser("update", parents=[common])
    update.add_argument("id")
    _rule_options(update, new=False)
    delete = rules.add_parser("delete", parents=[common])
    delete.add_argument("id")

    klass = sub.add_parser("class", parents=[common], help="change a class").add_subparsers(dest="action", required=True)
    cset = klass.add_parser("set", parents=[common])
    cset.add_argument("name")
    cset.add_argument("--priority", type=int)
    cset.add_argument("--min", type=float, dest="min_mbit")
    cset.add_argument("--max", type=_mbit_or("link"), dest="max_mbit", default=False,
                      help="Mbit/s, or `link` for no limit below the link")
    cset.add_argument("--dscp", type=int)

    link = sub.add_parser("link", parents=[common], help="change a link").add_subparsers(dest="action", required=True)
    lset = link.add_parser("set", parents=[common])
    lset.add_argument("name")
    lset.add_argument("--up", type=_mbit_or("auto"), dest="up_mbit")
    lset.add_argument("--down", type=_mbit_or("auto"), dest="down_mbit")

    alerts = sub.add_parser("alerts", parents=[common], help="alerts").add_subparsers(dest="action")
    alist = alerts.add_parser("list", parents=[common])
    alist.add_argument("--all", action="store_true", help="also recently resolved alerts")
    ack = alerts.add_parser("ack", parents=[common])
    ack.add_argument("id")

    predict = sub.add_parser("predict", parents=[common], help="next 1 s / 5 s demand of a class")
    predict.add_argument("class_", metavar="CLASS")
    predict.add_argument("samples", metavar="MBIT", nargs="+", type=_samples,
                         help="recent Mbit/s per second, oldest first (- for a missed second)")
    history = sub.add_parser("history", parents=[common], help="a time series the daemon keeps in memory")
    history.add_argument("series", help="e.g. total.down_bps or link.wan0.up_bps")
    history.add_argument("--last", type=float, default=300.0, help="seconds back from now")
    history.add_argument("--step", type=float, default=10.0, help="seconds per point")
    call = sub.add_parser("call", parents=[common], help="send any command with JSON arguments")
    call.add_argument("cmd")
    call.add_argument("args", nargs="?", default="{}", help="a JSON object")
    watch = sub.add_parser("watch", parents=[common], help="follow the state stream (Ctrl-C to stop)")
    watch.add_argument("--topic", action="append", choices=TOPICS, help="default: state")
    keygen = sub.add_parser("keygen", parents=[common], help="make a CURVE key pair (NAME.key, NAME.key_secret)")
    keygen.add_argument("name")
    keygen.add_argument("--dir", default=".", help="where to write them (default: here)")
    return top


def _version() -> str:
    try:
        return metadata.version("anabranch")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def keygen(name: str, folder: str) -> dict[str, str]:
    import zmq.auth

    os.makedirs(folder, mode=0o750, exist_ok=True)
    for suffix in (".key", ".key_secret"):
        if os.path.exists(os.path.join(folder, name + suffix)):
            raise FileExistsError(f"{os.path.join(folder, name + suffix)} exists; choose another name or remove it")
    old = os.umask(0o077)  # the secret file is never readable by others, not even briefly
    try:
        public_file, secret_file = zmq.auth.create_certificates(folder, name)
    finally:
        os.umask(old)
    os.chmod(public_file, 0o644)
    os.chmod(secret_file, 0o600)
    public, _ = zmq.auth.load_certificate(public_file)
    return {"public_file": public_file, "secret_file": secret_file, "public_key": public.decode()}


def run(args: argparse.Namespace, client: Client) -> tuple[dict[str, Any], Any]:
    """The reply of the chosen command and the function that shows it as text."""
    c = args.command
    if c == "status":
        return client.call("status"), show_status
    if c == "flows":
        call = {"limit": args.limit, "sort": args.sort}
        for key, value in (("iface", args.iface), ("proto", args.proto), ("host", args.host),
                           ("class", args.class_)):
            if value is not None:
                call[key] = value
        return client.call("flows", **call), show_flows
    if c == "flow":
        return client.call("flow", id=args.id), show_flow
    if c in ("mptcp", "links", "classes", "usage"):
        return client.call(c), globals()[f"show_{c}"]
    if c == "reload":
        return client.call("config.reload"), lambda r: f"reloaded {r['source']}"
    if c == "rules":
        if args.action in (None, "list"):
            return client.call("rules.list"), show_rules
        if args.action == "add":
            rule = _rule_from(args)
            if args.id:
                rule["id"] = args.id
            call = {"rule": rule} if args.position is None else {"rule": rule, "position": args.position}
            return client.call("rules.add", **call), lambda r: f"added rule {r['rule']['id']}"
        if args.action == "update":
            return (client.call("rules.update", id=args.id, rule=_rule_from(args)),
                    lambda r: f"updated rule {r['rule']['id']}")
        return client.call("rules.delete", id=args.id), lambda r: f"deleted rule {r['deleted']}"
    if c == "class":
        call = {k: v for k, v in (("priority", args.priority), ("min_mbit", args.min_mbit),
                                  ("dscp", args.dscp)) if v is not None}
        if args.max_mbit is not False:
            call["max_mbit"] = args.max_mbit
        return client.call("class.set", name=args.name, **call), lambda r: show_classes({"classes": [
            {**r["class"], "flows": 0, "up_bps": 0.0, "down_bps": 0.0}]})
    if c == "link":
        call = {k: v for k, v in (("up_mbit", args.up_mbit), ("down_mbit", args.down_mbit)) if v is not None}
        return client.call("link.set", name=args.name, **call), lambda r: show_links({"links": [r["link"]]})
    if c == "alerts":
        if args.action == "ack":
            return client.call("alerts.ack", id=args.id), lambda r: f"acknowledged {r['alert']['id']}"
        state = "all" if getattr(args, "all", False) else "active"
        return client.call("alerts.list", state=state), show_alerts
    if c == "predict":
        return client.call("predict", **{"class": args.class_, "recent_mbps": args.samples}), show_prediction
    if c == "history":
        call = {"series": args.series, "start": time.time() - args.last, "step": args.step}
        return client.call("history", **call), show_history
    if c == "call":
        try:
            call = json.loads(args.args)
        except json.JSONDecodeError as exc:
            raise UsageError(f"call: arguments are not JSON: {exc}") from None
        if not isinstance(call, dict):
            raise UsageError("call: arguments must be a JSON object")
        return client.call(args.cmd, **call), lambda r: json.dumps(r, indent=2)
    raise UsageError(f"unknown command {c!r}")


class UsageError(Exception):
    pass


def watch(args: argparse.Namespace, curve: CurveKeys | None) -> int:
    topics = tuple(args.topic or ("state",))
    subscriber = Subscriber(args.events, topics=topics, curve=curve)
    try:
        while True:
            item = subscriber.receive(timeout_s=args.timeout + 2)
            if item is None:
                raise DaemonUnreachable(f"nothing from {args.events} in {args.timeout + 2:g} s; "
                                        "is anabranchd running?")
            topic, message = item
            if args.json:
                print(json.dumps(message, default=str), flush=True)
            elif topic == "state":
                print(show_status(message) + "\n", flush=True)
            elif topic == "flows":
                kind = "snapshot" if message.get("snapshot") else \
                    f"+{len(message.get('upserts', []))} -{len(message.get('removed', []))}"
                print(f"flows seq {message['seq']}: {message['count']} flows ({kind})", flush=True)
            else:
                print(f"{topic} seq {message['seq']}: {json.dumps(message, default=str)[:200]}", flush=True)
    except KeyboardInterrupt:
        return 0
    finally:
        subscriber.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["analyze"]:
        # Offline and needs BCC: imported only here, so the rest of the CLI stays light.
        from anabranch.daemon import analyze
        return analyze.main(argv[1:])
    args = parser().parse_args(argv)
    try:
        if args.command == "keygen":
            written = keygen(args.name, args.dir)
            print(json.dumps(written, indent=2) if args.json else
                  f"public key  {written['public_file']}  (give this file to the other side)\n"
                  f"secret key  {written['secret_file']}  (mode 0600; keep it here)")
            return 0
        curve = None
        if args.server_key or args.client_key:
            if not (args.server_key and args.client_key):
                raise UsageError("--server-key and --client-key go together")
            curve = CurveKeys(args.server_key, args.client_key)
        if args.command == "watch":
            return watch(args, curve)
        with Client(args.control, timeout_s=args.timeout, curve=curve) as client:
            reply, show = run(args, client)
        print(json.dumps(reply, indent=2, default=str) if args.json else show(reply))
    except UsageError as exc:
        print(f"anabranch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:
        print(f"anabranch: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except DaemonUnreachable as exc:
        print(f"anabranch: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except CommandFailed as exc:
        print(f"anabranch: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
