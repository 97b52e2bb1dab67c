"""The .deb on this machine: build, install, run from the installed paths in the lab, purge clean.

Slow (the build fetches and installs every wheel: minutes), so `make test-deb`
runs it and `make test` leaves it out.  The tests run in file order against
one installation; the last one purges and checks nothing is left behind.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from daemon_harness import REPO
from lab import CLIENT_V4, SERVER_V4, Lab

pytestmark = [pytest.mark.root, pytest.mark.lab]

DEB_DIR = REPO / "build" / "deb"
CHECKS = REPO / "tests" / "lab" / "checks.py"
REPO_PYTHON = sys.executable  # the repo's .venv: the Subscriber/Client side
VENV_PYTHON = "/usr/lib/anabranch/venv/bin/python3"
PORTS = {"wan0": "wan", "wan1": "wan", "lan0": "lan", "lan1": "lan"}
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]
LEFT_BEHIND = ("/usr/lib/anabranch", "/etc/anabranch", "/var/lib/anabranch", "/run/anabranch",
               "/usr/bin/anabranchd", "/usr/bin/anabranch", "/usr/bin/anabranch-webui",
               "/lib/systemd/system/anabranchd.service", "/lib/systemd/system/anabranch-webui.service",
               "/etc/systemd/system/multi-user.target.wants/anabranchd.service",
               "/etc/systemd/system/multi-user.target.wants/anabranch-webui.service",
               "/usr/lib/sysusers.d/anabranch.conf", "/usr/lib/tmpfiles.d/anabranch.conf")


def installed() -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "anabranch"], capture_output=True, text=True)
    return result.returncode == 0 and "not-installed" not in result.stdout and result.stdout.strip() != ""


def purge() -> subprocess.CompletedProcess:
    return subprocess.run(APT + ["purge", "anabranch"], capture_output=True, text=True,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


@pytest.fixture(scope="module")
def package():
    """The freshly built .deb, installed; purged at the end whatever happened."""
    if installed():
        pytest.fail("anabranch is already installed on this machine; `apt-get purge anabranch` first")
    build = subprocess.run(["bash", str(REPO / "tests" / "packaging" / "build_deb.sh")],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    debs = sorted(DEB_DIR.glob("anabranch_*.deb"))
    assert len(debs) == 1, debs
    install = subprocess.run(APT + ["install", f"./{debs[0].relative_to(REPO)}"], cwd=REPO,
                             capture_output=True, text=True,
                             env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    try:
        assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-4000:]
        yield install
    finally:
        if installed():
            purge()


@pytest.fixture(scope="module")
def lab():
    instance = Lab(prefix=f"pk{os.getpid() % 100000}")
    instance.up()
    try:
        yield instance
    finally:
        instance.down()


def lab_config(tmp: Path, webui_port: int = 8080) -> Path:
    """Sockets and state under `tmp` (never collides); the real socket group."""
    run = tmp / "run"
    path = tmp / "anabranch.toml"
    lines = ["[daemon]", f'runtime_dir = "{run}"', f'state_dir = "{tmp / "state"}"', "",
             "[api]", f'events = "ipc://{run}/events.sock"', f'control = "ipc://{run}/control.sock"',
             'socket_group = "anabranch"', ""]
    for name, role in PORTS.items():
        lines += [f"[interfaces.{name}]", f'role = "{role}"', ""]
    lines += ["[webui]", f'listen = "127.0.0.1:{webui_port}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def test_installed_commands_run_from_usr_bin(package):
    check = subprocess.run(["/usr/bin/anabranchd", "--check-config"], capture_output=True, text=True)
    assert check.returncode == 0 and "OK (0 interface(s))" in check.stdout, check.stderr
    version = subprocess.run(["/usr/bin/anabranch", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "0.1.0" in version.stdout + version.stderr
    # The installed venv sees Debian's BCC, and its own dependencies are its own.
    where = subprocess.run([VENV_PYTHON, "-c", "import bcc, zmq, onnxruntime; print(bcc.__file__, zmq.__file__)"],
                           capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    bcc_file, zmq_file = where.stdout.split()
    assert bcc_file.startswith("/usr/lib/python3/dist-packages/")
    assert zmq_file.startswith("/usr/lib/anabranch/venv/")


def test_package_creates_user_directories_and_a_conffile(package):
    assert pwd.getpwnam("anabranch").pw_shell == "/usr/sbin/nologin"
    grp.getgrnam("anabranch")
    assert Path("/var/lib/anabranch").is_dir() and Path("/run/anabranch").is_dir()
    assert Path("/var/lib/anabranch/webui").stat().st_uid == pwd.getpwnam("anabranch").pw_uid
    conffiles = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}", "anabranch"],
                               capture_output=True, text=True).stdout
    assert "/etc/anabranch/anabranch.toml" in conffiles
    # The web UI refuses a session key anyone else may read.
    secret = Path("/var/lib/anabranch/webui.secret").stat()
    assert secret.st_mode & 0o777 == 0o600 and secret.st_uid == pwd.getpwnam("anabranch").pw_uid
    # Units are enabled (deb-systemd-helper records it even without systemd running)
    # and valid where installed, with the real executables behind them.
    assert Path("/etc/systemd/system/multi-user.target.wants/anabranchd.service").is_symlink()
    verify = subprocess.run(["systemd-analyze", "verify", "/lib/systemd/system/anabranchd.service",
                             "/lib/systemd/system/anabranch-webui.service"], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_daemon_stays_down_until_the_config_names_a_real_interface(package, lab, tmp_path):
    fresh = subprocess.run(["/usr/lib/anabranch/anabranch-ready", "/etc/anabranch/anabranch.toml"],
                           capture_output=True, text=True)
    assert fresh.returncode == 1 and "names no interfaces" in fresh.stderr
    configured = lab.run("gw", "/usr/lib/anabranch/anabranch-ready", str(lab_config(tmp_path)), check=False)
    assert configured.returncode == 0, configured.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[daemon]\ntick_s = \"fast\"\n")
    assert subprocess.run(["/usr/lib/anabranch/anabranch-ready", str(broken)],
                          capture_output=True).returncode == 255


def test_installed_daemon_attaches_publishes_and_counts_in_the_lab(package, lab, tmp_path):
    config = lab_config(tmp_path)
    run = tmp_path / "run"
    log = tmp_path / "anabranchd.log"
    with log.open("ab") as sink:
        daemon = lab.popen("gw", "/usr/bin/anabranchd", "--config", str(config), stdout=sink,
                           stderr=subprocess.STDOUT)
    try:
        def check(*args: str, role: str | None = None, python: str = REPO_PYTHON) -> str:
            cmd = [python, str(CHECKS), *args]
            result = (lab.run(role, *cmd, check=False, timeout=180) if role
                      else subprocess.run(cmd, capture_output=True, text=True, timeout=180))
            assert result.returncode == 0, result.stderr + "\n" + log.read_text()
            return result.stdout

        check("state", "--events", f"ipc://{run}/events.sock", "--ports", ",".join(PORTS), "--timeout", "150")
        sock = run / "events.sock"
        assert sock.stat().st_gid == grp.getgrnam("anabranch").gr_gid and sock.stat().st_mode & 0o777 == 0o660
        check("reach", "--from", ",".join(CLIENT_V4), "--to", ",".join(SERVER_V4), role="cli",
              python="/usr/bin/python3")
        check("flows", "--control", f"ipc://{run}/control.sock", "--host", SERVER_V4[0])
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(30)
    assert code == 0, log.read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_installed_webui_serves_the_login_page_as_its_own_user(package, tmp_path):
    assert "first password" in package.stdout
    initial = Path("/etc/anabranch/webui.initial-password").stat()
    assert initial.st_mode & 0o777 == 0o600 and initial.st_uid == 0
    stored = Path("/etc/anabranch/webui.passwd").stat()
    assert stored.st_uid == pwd.getpwnam("anabranch").pw_uid and stored.st_mode & 0o777 == 0o600
    port = _free_port()
    # pytest's tmp_path sits under a root-only 0700 directory: the web UI's
    # user could not read a config there.
    readable = Path(tempfile.mkdtemp(prefix="ab-webui-"))
    readable.chmod(0o755)
    config = lab_config(readable, webui_port=port)
    config.chmod(0o644)
    log = tmp_path / "webui.log"
    with log.open("ab") as sink:
        webui = subprocess.Popen(["setpriv", "--reuid=anabranch", "--regid=anabranch", "--init-groups",
                                  "--bounding-set=-all", "/usr/bin/anabranch-webui", "--config", str(config)],
                                 stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as reply:
                    page = reply.read().decode()
                    break
            except OSError:
                assert webui.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
        assert reply.status == 200 and "password" in page.lower()
    finally:
        os.killpg(webui.pid, signal.SIGTERM)
        webui.wait(30)
        shutil.rmtree(readable)


def test_purge_leaves_nothing_behind(package, lab):
    result = purge()
    assert result.returncode == 0, result.stdout + result.stderr
    assert not installed()
    left = [path for path in LEFT_BEHIND if os.path.lexists(path)]
    assert left == []
    with pytest.raises(KeyError):
        pwd.getpwnam("anabranch")
    with pytest.raises(KeyError):
        grp.getgrnam("anabranch")
    for port in PORTS:
        qdiscs = lab.run("gw", "tc", "qdisc", "show", "dev", port).stdout
        filters = lab.run("gw", "tc", "filter", "show", "dev", port, "ingress").stdout
        assert "clsact" not in qdiscs and "anabranch" not in filters
