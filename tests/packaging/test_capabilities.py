"""anabranchd needs only the capabilities its unit grants (no CAP_SYS_ADMIN), proved in the lab.

The daemon runs as root under `setpriv` with the unit's CapabilityBoundingSet
as the bounding set, which is what systemd does for a root service: BCC must
still compile and load the datapath, tc attach must work, and SIGTERM must
still detach everything.  Each of the three is needed (found by dropping one
at a time): without CAP_BPF map creation fails (EPERM), without CAP_PERFMON
the verifier refuses the programs (EACCES), without CAP_NET_ADMIN BCC cannot
load a sched_cls program.
"""

from __future__ import annotations

import grp
import subprocess
from pathlib import Path

import pytest
from daemon_harness import REPO, VENV_BIN, RunningDaemon, daemon_config

pytestmark = [pytest.mark.root, pytest.mark.lab]

PORTS = {"wan0": "wan", "wan1": "wan", "lan0": "lan", "lan1": "lan"}
# Bit numbers from linux/capability.h.
CAP_BITS = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}


def unit_capabilities() -> list[str]:
    unit = (REPO / "systemd" / "anabranchd.service").read_text()
    return next(line.partition("=")[2].split() for line in unit.splitlines()
                if line.startswith("CapabilityBoundingSet="))


def test_daemon_loads_attaches_and_detaches_with_only_the_units_capabilities(lab, tmp_path):
    caps = unit_capabilities()
    assert "CAP_SYS_ADMIN" not in caps
    bounding = ",".join(["-all"] + ["+" + c.lower().removeprefix("cap_") for c in caps])
    config = daemon_config(tmp_path, PORTS)
    # The unit hands the sockets to its group through SupplementaryGroups=
    # rather than CAP_CHOWN; "daemon" stands in for "anabranch" here.
    config.write_text(config.read_text().replace('socket_group = ""', 'socket_group = "daemon"'))
    log = tmp_path / "anabranchd.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(lab.cmd("gw", "setpriv", f"--bounding-set={bounding}", "--inh-caps=-all",
                                           "--groups=daemon", "--", str(VENV_BIN / "anabranchd"), "--config", str(config)),
                                   stdout=sink, stderr=subprocess.STDOUT)
    run = tmp_path / "run"
    daemon = RunningDaemon(process, config, f"ipc://{run}/control.sock", f"ipc://{run}/events.sock", log)
    try:
        status = daemon.wait_ready(timeout_s=120)
        assert {i["name"] for i in status["interfaces"] if i["attached"]} == set(PORTS)
        # `ip netns exec` and setpriv both exec, so the pid is the daemon's.
        status_text = Path(f"/proc/{process.pid}/status").read_text()
        line = next(x for x in status_text.splitlines() if x.startswith("CapEff:"))
        assert int(line.split()[1], 16) == sum(1 << CAP_BITS[c] for c in caps)
        sock = run / "events.sock"
        assert sock.stat().st_gid == grp.getgrnam("daemon").gr_gid and sock.stat().st_mode & 0o777 == 0o660
    finally:
        code = daemon.stop()
    assert code == 0, log.read_text()
    for port in PORTS:
        assert "anabranch" not in lab.run("gw", "tc", "filter", "show", "dev", port, "ingress").stdout
