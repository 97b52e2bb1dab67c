"""The Vagrant set-up: a valid Vagrantfile on the lab's addressing, a provisioning script that parses."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from daemon_harness import REPO

VAGRANT = REPO / "vagrant"


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed (tests/setup.sh installs it)")
def test_vagrantfile_validates_for_every_provider(tmp_path):
    # --ignore-provider: neither libvirt nor VirtualBox runs on the test machine;
    # the provider blocks are still parsed as Ruby.
    result = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=VAGRANT, capture_output=True,
                            text=True, timeout=120, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                                         "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot")})
    assert result.returncode == 0 and "validated successfully" in result.stdout, result.stdout + result.stderr


def test_vagrantfile_defines_client_gateway_and_server_on_the_labs_networks():
    text = (VAGRANT / "Vagrantfile").read_text()
    assert "tests/lab/lab.py" in text and "plan --json" in text
    for provider in ('"virtualbox"', '"libvirt"'):
        assert f"config.vm.provider {provider}" in text


def test_provisioning_parses_and_uses_the_labs_checks():
    subprocess.run(["bash", "-n", str(VAGRANT / "provision.sh")], check=True)
    script = (VAGRANT / "provision.sh").read_text()
    assert script.count("/vagrant/tests/lab/checks.py") >= 2
