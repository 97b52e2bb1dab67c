"""The anabranch-webui command: set-password and configuration errors."""

from __future__ import annotations

import io
import stat
import subprocess

import pytest

import webui_harness as harness
from anabranch.webui import main
from anabranch.webui.credentials import PasswordHash, hash_password, read_password_hash


@pytest.fixture
def bare_config(short_tmp):
    """A config whose password file does not exist yet."""
    return harness.write_config(short_tmp, password=None)


def password_file(config_path):
    return config_path.parent / "webui.passwd"


def test_set_password_from_stdin_writes_a_verifiable_scrypt_hash_with_mode_0600(bare_config):
    result = subprocess.run(
        [*harness.webui_command(), "set-password", "--config", str(bare_config), "--stdin"],
        input="a long admin password\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    path = password_file(bare_config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    line = path.read_text().strip()
    assert line.startswith("$scrypt$ln=17,r=8,p=1$")
    stored = PasswordHash.decode(line)
    assert stored.verify("a long admin password") and not stored.verify("a long admin password\n")
    assert str(path) in result.stdout


def test_config_option_may_come_before_the_command(bare_config, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("another long password\n"))
    monkeypatch.setattr(main, "hash_password", lambda pw: hash_password(pw, log2_n=10))
    assert main.main(["--config", str(bare_config), "set-password", "--stdin"]) == 0
    assert read_password_hash(password_file(bare_config)).verify("another long password")


def test_short_password_is_refused_and_nothing_written(bare_config, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main.main(["set-password", "--config", str(bare_config), "--stdin"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    assert not password_file(bare_config).exists()


def test_prompt_without_a_terminal_says_to_use_stdin(bare_config, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a long admin password\n"))
    assert main.main(["set-password", "--config", str(bare_config)]) == 2
    assert "--stdin" in capsys.readouterr().err


def test_bad_config_exits_2_naming_the_key(short_tmp, capsys):
    path = short_tmp / "bad.toml"
    path.write_text('[webui]\nthreads = 0\nlisten = "localhost"\n')
    assert main.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "webui.threads: must be at least 1" in err
    assert "webui.listen: must be HOST:PORT" in err


def test_missing_config_file_exits_2_naming_it(short_tmp, capsys):
    assert main.main(["--config", str(short_tmp / "absent.toml")]) == 2
    assert "absent.toml: cannot read" in capsys.readouterr().err


def test_bad_listen_option_exits_2(config_path, capsys):
    assert main.main(["--config", str(config_path), "--listen", "127.0.0.1:99999"]) == 2
    assert "--listen: webui.listen: must be HOST:PORT with PORT from 1 to 65535" in capsys.readouterr().err


def test_unusable_secret_key_file_exits_2_naming_the_key(short_tmp, capsys):
    blocker = short_tmp / "file"
    blocker.write_text("")
    path = harness.write_config(short_tmp)
    path.write_text(path.read_text().replace(f'"{short_tmp}/webui.secret"', f'"{blocker}/webui.secret"'))
    result = subprocess.run([*harness.webui_command(), "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "webui.secret_key_file:" in result.stderr
