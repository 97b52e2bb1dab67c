#!/usr/bin/env python3
"""`make demo`: the appliance on the namespace lab, with live traffic and the web UI.

Brings the lab up, runs anabranchd on the gateway (all four ports), the web UI on
http://127.0.0.1:8080 (admin password printed below), and a traffic mix from the
client: bulk TCP, voice- and video-like UDP, IPv6, and one MPTCP connection over
both WAN paths.  Ctrl-C stops everything and removes the lab.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

from lab import SERVER_V4, Lab  # noqa: E402

BIN = Path(sys.executable).parent
STATE = REPO / "build" / "demo"
LISTEN = os.environ.get("AB_DEMO_LISTEN", "127.0.0.1:8080")


def write_config() -> Path:
    run = STATE / "run"
    config = STATE / "anabranch.toml"
    config.write_text(f"""# Written by `make demo`; see README.md for every key.
[daemon]
runtime_dir = "{run}"
state_dir = "{STATE / 'state'}"

[api]
events = "ipc://{run}/events.sock"
control = "ipc://{run}/control.sock"
socket_group = ""

[interfaces.wan0]
role = "wan"
up_mbit = 50
down_mbit = 50

[interfaces.wan1]
role = "wan"
up_mbit = 20
down_mbit = 20

[interfaces.lan0]
role = "lan"

[interfaces.lan1]
role = "lan"

[webui]
listen = "{LISTEN}"
password_file = "{STATE / 'webui.passwd'}"
secret_key_file = "{STATE / 'webui.secret'}"
""")
    return config


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (BPF, network namespaces)", file=sys.stderr)
        return 1
    # A kill or a closed terminal stops the demo as Ctrl-C does: processes and lab removed.
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    STATE.mkdir(parents=True, exist_ok=True)
    config = write_config()
    password = secrets.token_urlsafe(12)
    subprocess.run([str(BIN / "anabranch-webui"), "set-password", "--config", str(config), "--stdin"],
                   input=password + "\n", text=True, check=True)

    lab = Lab(prefix="demo")
    lab.down()  # a previous demo killed hard
    lab.up()
    logs = STATE / "logs"
    logs.mkdir(exist_ok=True)
    processes: list[subprocess.Popen] = []

    def spawn(name: str, command: list[str]) -> subprocess.Popen:
        with (logs / f"{name}.log").open("wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    try:
        spawn("sinks", lab.cmd("srv", sys.executable, str(HERE / "traffic.py"), "serve"))
        daemon = spawn("anabranchd", lab.cmd("gw", str(BIN / "anabranchd"), "--config", str(config)))
        spawn("webui", [str(BIN / "anabranch-webui"), "--config", str(config)])
        time.sleep(1)
        spawn("traffic", lab.cmd("cli", sys.executable, str(HERE / "traffic.py"), "mix", SERVER_V4[0]))
        print(f"""
  Anabranch demo is running.
    web UI:    http://{LISTEN}/    user admin, password: {password}
    CLI:       {BIN / 'anabranch'} --control ipc://{STATE}/run/control.sock status
    logs:      {logs}/
  Ctrl-C stops everything and removes the lab.
""", flush=True)
        while True:
            time.sleep(1)
            for process in processes:
                if process.poll() is not None:
                    name = Path(process.args[-1] if process is not daemon else "anabranchd").name
                    print(f"a demo process exited ({process.returncode}): {process.args}; "
                          f"see {logs}/ ({name})", file=sys.stderr)
                    return 1
    except KeyboardInterrupt:
        print("\nstopping...")
        return 0
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(processes):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        lab.down()
        print("demo stopped; lab removed")


if __name__ == "__main__":
    sys.exit(main())
