"""The real anabranchd (BPF, tc) in a fresh netns, driven only through its API and CLI."""

from __future__ import annotations

import grp
import os
import signal
import stat
import subprocess
import sys
import time
import uuid

import pytest

from anabranch.client import Client, DaemonUnreachable, Subscriber
from anabranch.client import cli

CONFIG = """
[daemon]
runtime_dir = "{run}"
state_dir = "{state}"
tick_s = 0.5
[api]
events = "ipc://{run}/events.sock"
control = "ipc://{run}/control.sock"
socket_group = "{group}"
[interfaces.a0]
role = "wan"
up_mbit = 100
down_mbit = 100
[interfaces.b0]
role = "lan"
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.mark.root
def test_anabranchd_serves_status_commands_and_the_stream(tmp_path, capsys):
    ns = f"abapi-{uuid.uuid4().hex[:8]}"
    group = next(g for g in grp.getgrall() if g.gr_gid != 0)
    run_dir, state_dir = tmp_path / "run", tmp_path / "state"
    config = tmp_path / "anabranch.toml"
    config.write_text(CONFIG.format(run=run_dir, state=state_dir, group=group.gr_name))
    control, events = f"ipc://{run_dir}/control.sock", f"ipc://{run_dir}/events.sock"
    proc = None
    _ip("netns", "add", ns)
    try:
        _ip("-n", ns, "link", "add", "a0", "type", "veth", "peer", "name", "b0")
        _ip("-n", ns, "link", "set", "a0", "up")
        _ip("-n", ns, "link", "set", "b0", "up")
        log = open(tmp_path / "anabranchd.log", "w")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "anabranch.daemon.main",
                                 "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        status = None
        deadline = time.monotonic() + 90  # BCC compiles the datapath first
        with Client(control, timeout_s=0.5, retries=0) as client:
            while status is None or not all(i["attached"] for i in status["interfaces"]):
                assert proc.poll() is None, (tmp_path / "anabranchd.log").read_text()
                assert time.monotonic() < deadline, "anabranchd did not come up"
                try:
                    status = client.call("status")
                except DaemonUnreachable:
                    time.sleep(0.5)
            assert [i["name"] for i in status["interfaces"]] == ["a0", "b0"]
            assert client.call("class.set", name="voice", dscp=40)["class"]["dscp"] == 40
            assert client.call("flows")["count"] >= 0
        for sock in ("control.sock", "events.sock"):
            st = os.stat(run_dir / sock)
            assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == group.gr_gid
        assert (state_dir / "policy.json").exists()

        subscriber = Subscriber(events, topics=("state", "flows"))
        try:
            topics = set()
            deadline = time.monotonic() + 10
            while topics != {"state", "flows"} and time.monotonic() < deadline:
                item = subscriber.receive(timeout_s=1)
                if item:
                    topics.add(item[0])
            assert topics == {"state", "flows"}
        finally:
            subscriber.close()

        assert cli.main(["--control", control, "links"]) == 0
        assert "a0" in capsys.readouterr().out

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
