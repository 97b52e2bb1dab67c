"""The admin's TOML configuration: parsed, validated and turned into frozen dataclasses.

Unknown keys and bad values are errors naming the key's path and the reason, e.g.
`interfaces.wan0.up_mbit: must be a positive number, got "fast"`.  Only tomllib, the
standard library and the controller's pure option reader are imported here, so the
unprivileged web UI may read its own section through this module without loading BCC.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from anabranch.controller.options import Reader as _Reader
from anabranch.controller.options import number as _number
from anabranch.controller.options import show as _show

DEFAULT_PATH = Path("/etc/anabranch/anabranch.toml")

# Linux limits interface names to IFNAMSIZ - 1 characters.
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


class ConfigError(Exception):
    """One or more configuration errors; str() lists each as `path: reason`."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class DaemonSettings:
    tick_s: float = 1.0
    flow_map_size: int = 65536
    idle_timeout_s: float = 120.0
    runtime_dir: str = "/run/anabranch"
    state_dir: str = "/var/lib/anabranch"
    log_level: str = "info"
    # Flows listed in each `flows` message, by rate; the total is always counted.
    publish_flows: int = 2000
    # SCHED_RR priority of the tick once started (0: the normal scheduler).  The tick
    # needs ~15 ms of CPU a second; preempted by every waking task on a busy 2-core
    # gateway it took twice as long now and then.
    realtime_priority: int = 1
    # Follow conntrack so that masqueraded and port-forwarded flows count under
    # their LAN hosts (daemon/conntrack.py); false saves conntrack's event work.
    follow_nat: bool = True


@dataclass(frozen=True)
class ApiSettings:
    events: str = "ipc:///run/anabranch/events.sock"
    control: str = "ipc:///run/anabranch/control.sock"
    # Group that may use the ipc:// sockets (mode 0660); empty keeps root's group.
    socket_group: str = "anabranch"
    # CURVE for tcp:// endpoints (both files from `anabranch keygen`): the
    # server's secret certificate and a folder of allowed clients' public ones.
    curve_server_key: str = ""
    curve_clients_dir: str = ""
    # `flows` messages are deltas between full snapshots sent this many ticks apart.
    snapshot_every: int = 10


@dataclass(frozen=True)
class InterfaceSettings:
    name: str
    role: str  # "wan" or "lan"
    up_mbit: float | None = None
    down_mbit: float | None = None
    # Rewrite DSCP and steer into HTB classes; false = count-only on this port.
    mark: bool = True


@dataclass(frozen=True)
class ShapingSettings:
    # What stopping the daemon does to the HTB trees: "remove" them, or "keep"
    # shaping in place (the next start adopts them).
    on_stop: str = "remove"
    # A class's new rate is applied only when it moved by more than this fraction.
    hysteresis: float = 0.05


@dataclass(frozen=True)
class WebSettings:
    listen: str = "127.0.0.1:8080"
    password_file: str = "/etc/anabranch/webui.passwd"
    secret_key_file: str = "/var/lib/anabranch/webui.secret"
    threads: int = 16


@dataclass(frozen=True)
class Config:
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    interfaces: tuple[InterfaceSettings, ...] = ()
    webui: WebSettings = field(default_factory=WebSettings)
    shaping: ShapingSettings = field(default_factory=ShapingSettings)
    # The controller's options (classify, mptcp, paths, usage, alerts, history):
    # an anabranch.controller.tick.ControllerOptions, validated with the rest.
    controller: Any = None
    source: str = "<defaults>"

    def interface(self, name: str) -> InterfaceSettings:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        raise KeyError(name)


def _string(pattern: re.Pattern[str] | None = None, choices: tuple[str, ...] = (),
            what: str = "") -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a string"
        if choices and value not in choices:
            return "must be one of " + ", ".join(f'"{c}"' for c in choices)
        if pattern is not None and not pattern.match(value):
            return f"must be {what}"
        return None
    return check


def _endpoint(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if value.startswith("ipc://") and len(value) > len("ipc://"):
        return None
    if re.match(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+|\*):[0-9]{1,5}$", value):
        return None
    return "must be an ipc:///PATH or tcp://HOST:PORT endpoint"


def _listen(value: Any) -> str | None:
    if not isinstance(value, str) or ":" not in value:
        return "must be HOST:PORT"
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "must be HOST:PORT with an IP address as HOST"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return "must be HOST:PORT with PORT from 1 to 65535"
    return None


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _table(parent: _Reader, key: str) -> dict[str, Any]:
    parent.seen.add(key)
    value = parent.table.get(key, {})
    if not isinstance(value, dict):
        parent.errors.append(f"{parent.key(key)}: must be a table, got {_show(value)}")
        return {}
    return value


def parse(document: dict[str, Any], source: str = "<string>") -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    errors: list[str] = []
    top = _Reader(document, "", errors)

    r = _Reader(_table(top, "daemon"), "daemon", errors)
    defaults = DaemonSettings()
    daemon = DaemonSettings(
        tick_s=r.get("tick_s", defaults.tick_s, _number(0.1, 60.0)),
        flow_map_size=r.get("flow_map_size", defaults.flow_map_size, _number(1024, 16_777_216, integer=True)),
        idle_timeout_s=r.get("idle_timeout_s", defaults.idle_timeout_s, _number(1.0, 86_400.0)),
        runtime_dir=r.get("runtime_dir", defaults.runtime_dir,
                          _string(re.compile(r"^/"), what="an absolute path")),
        state_dir=r.get("state_dir", defaults.state_dir,
                        _string(re.compile(r"^/"), what="an absolute path")),
        log_level=r.get("log_level", defaults.log_level,
                        _string(choices=("debug", "info", "warning", "error"))),
        publish_flows=r.get("publish_flows", defaults.publish_flows, _number(0, 100_000, integer=True)),
        realtime_priority=r.get("realtime_priority", defaults.realtime_priority, _number(0, 99, integer=True)),
        follow_nat=r.get("follow_nat", defaults.follow_nat, _boolean),
    )
    r.finish()

    r = _Reader(_table(top, "api"), "api", errors)
    api_defaults = ApiSettings()
    api = ApiSettings(
        events=r.get("events", api_defaults.events, _endpoint),
        control=r.get("control", api_defaults.control, _endpoint),
        socket_group=r.get("socket_group", api_defaults.socket_group,
                           _string(re.compile(r"^[a-z_][a-z0-9_-]*$|^$"), what="a group name or empty")),
        curve_server_key=r.get("curve_server_key", "", _string(re.compile(r"^/"), what="an absolute path")),
        curve_clients_dir=r.get("curve_clients_dir", "", _string(re.compile(r"^/"), what="an absolute path")),
        snapshot_every=r.get("snapshot_every", api_defaults.snapshot_every, _number(1, 3600, integer=True)),
    )
    for key in ("events", "control"):
        if getattr(api, key).startswith("tcp://") and not (api.curve_server_key and api.curve_clients_dir):
            errors.append(f"api.{key}: a tcp:// endpoint needs CURVE keys: set api.curve_server_key and "
                          f"api.curve_clients_dir (make the keys with `anabranch keygen`), got "
                          f"{_show(getattr(api, key))}")
    if bool(api.curve_server_key) != bool(api.curve_clients_dir):
        errors.append("api.curve_server_key: set together with api.curve_clients_dir (both or neither)")
    r.finish()

    interfaces = []
    ifaces_table = _table(top, "interfaces")
    for name, table in ifaces_table.items():
        path = f"interfaces.{name}"
        if not _IFNAME.match(name):
            errors.append(f"{path}: not a valid interface name (1-15 letters, digits, _ . : @ -)")
            continue
        if not isinstance(table, dict):
            errors.append(f"{path}: must be a table, got {_show(table)}")
            continue
        r = _Reader(table, path, errors)
        role = r.get("role", None, _string(choices=("wan", "lan")))
        if "role" not in table:
            errors.append(f"{path}.role: missing; must be \"wan\" or \"lan\"")
        interfaces.append(InterfaceSettings(
            name=name,
            role=role or "lan",
            up_mbit=r.get("up_mbit", None, _number(positive=True, high=1_000_000)),
            down_mbit=r.get("down_mbit", None, _number(positive=True, high=1_000_000)),
            mark=r.get("mark", True, _boolean),
        ))
        r.finish()

    r = _Reader(_table(top, "webui"), "webui", errors)
    web_defaults = WebSettings()
    webui = WebSettings(
        listen=r.get("listen", web_defaults.listen, _listen),
        password_file=r.get("password_file", web_defaults.password_file,
                            _string(re.compile(r"^/"), what="an absolute path")),
        secret_key_file=r.get("secret_key_file", web_defaults.secret_key_file,
                              _string(re.compile(r"^/"), what="an absolute path")),
        threads=r.get("threads", web_defaults.threads, _number(1, 256, integer=True)),
    )
    r.finish()

    r = _Reader(_table(top, "shaping"), "shaping", errors)
    shaping_defaults = ShapingSettings()
    shaping = ShapingSettings(
        on_stop=r.get("on_stop", shaping_defaults.on_stop, _string(choices=("remove", "keep"))),
        hysteresis=r.get("hysteresis", shaping_defaults.hysteresis, _number(0.0, 0.5)),
    )
    r.finish()

    # Imported here: the web UI reads its section through this module and needs
    # none of the controller's validation when it does not parse the daemon's file.
    from anabranch.controller.options import OptionsError
    from anabranch.controller.tick import ControllerOptions

    controller = None
    try:
        controller = ControllerOptions.configure(_table(top, "controller"))
    except OptionsError as exc:
        errors.extend(exc.errors)
    top.finish()

    if errors:
        raise ConfigError([f"{source}: {e}" for e in errors])
    return Config(daemon=daemon, api=api, interfaces=tuple(interfaces), webui=webui,
                  shaping=shaping, controller=controller, source=source)


def loads(text: str, source: str = "<string>") -> Config:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
    return parse(document, source)


def load(path: str | Path = DEFAULT_PATH) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    return loads(text, str(path))
