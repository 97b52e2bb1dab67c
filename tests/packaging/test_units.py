"""The systemd units, sysusers and tmpfiles snippets: valid for Debian 12's systemd, and hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from daemon_harness import REPO

SYSTEMD = REPO / "systemd"
UNITS = ("anabranchd.service", "anabranch-webui.service")
# What the tests allow `systemd-analyze security` to report (0 = locked down,
# 10 = unprotected); the scores at the time of writing are in the report.
MAX_EXPOSURE = {"anabranchd.service": 3.0, "anabranch-webui.service": 1.5}


def unit_settings(name: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (SYSTEMD / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.fixture
def unit_root(tmp_path) -> Path:
    """A root with the units, stand-ins for their executables and the host's own units."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(SYSTEMD / unit, root / "etc/systemd/system" / unit)
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for program in ("usr/bin/anabranchd", "usr/bin/anabranch-webui", "usr/lib/anabranch/anabranch-ready",
                    "bin/kill"):
        path = root / program
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    (root / "etc/anabranch").mkdir()
    (root / "etc/anabranch/anabranch.toml").write_text("")
    return root


def test_units_pass_systemd_analyze_verify(unit_root):
    result = subprocess.run(["systemd-analyze", "verify", f"--root={unit_root}", *UNITS],
                            capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_unit_exposure_stays_low(unit_root, unit):
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={unit_root}",
                             "--no-pager", unit], capture_output=True, text=True)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    score = float(found.group(1))
    print(f"{unit}: exposure {score}")
    assert score <= MAX_EXPOSURE[unit], result.stdout


def test_daemon_is_a_watchdogged_notify_service_with_only_bpf_and_tc_capabilities():
    daemon = unit_settings("anabranchd.service")
    assert daemon["Type"] == ["notify"] and daemon["WatchdogSec"] and daemon["Restart"] == ["on-failure"]
    assert daemon["CapabilityBoundingSet"] == ["CAP_BPF CAP_PERFMON CAP_NET_ADMIN"]
    assert "bpf" in daemon["SystemCallFilter"][0] and "perf_event_open" in daemon["SystemCallFilter"][0]
    # BCC reads kernel headers under /lib/modules and LLVM JITs: these two must stay off.
    assert "ProtectKernelModules" not in daemon and "MemoryDenyWriteExecute" not in daemon
    assert daemon["RestrictAddressFamilies"] == ["AF_UNIX AF_NETLINK AF_INET AF_INET6"]


def test_webui_runs_unprivileged_after_the_daemon():
    webui = unit_settings("anabranch-webui.service")
    assert webui["User"] == ["anabranch"] and webui["CapabilityBoundingSet"] == [""]
    assert "anabranchd.service" in webui["After"][0] and webui["Wants"] == ["anabranchd.service"]


@pytest.mark.root
def test_sysusers_and_tmpfiles_create_the_user_and_its_directories(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc" / name).write_text("")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    subprocess.run(["systemd-sysusers", f"--root={root}", str(SYSTEMD / "anabranch.sysusers")],
                   check=True, capture_output=True, text=True)
    assert "anabranch:" in (root / "etc/passwd").read_text()
    assert "anabranch:" in (root / "etc/group").read_text()
    result = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(SYSTEMD / "anabranch.tmpfiles")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for path in ("run/anabranch", "var/lib/anabranch", "var/lib/anabranch/webui"):
        assert (root / path).is_dir()
