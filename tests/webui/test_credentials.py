"""The admin password hash and the session secret key files."""

from __future__ import annotations

import stat

import pytest

from anabranch.webui.credentials import (CredentialError, PasswordHash, check_new_password,
                                         hash_password, load_secret_key, read_password_hash,
                                         write_password_hash)


def test_hash_verifies_the_right_password_and_refuses_others():
    stored = hash_password("correct horse", log2_n=10)
    assert stored.verify("correct horse")
    assert not stored.verify("correct horse ")
    assert not stored.verify("")


def test_each_hash_has_its_own_random_salt():
    a, b = hash_password("same password", log2_n=10), hash_password("same password", log2_n=10)
    assert a.salt != b.salt and a.digest != b.digest


def test_hash_line_carries_its_scrypt_parameters():
    stored = hash_password("pw-pw-pw-pw", log2_n=11, r=4, p=2)
    line = stored.encode()
    assert line.startswith("$scrypt$ln=11,r=4,p=2$")
    decoded = PasswordHash.decode(line)
    assert decoded == stored and decoded.verify("pw-pw-pw-pw")


def test_default_parameters_follow_owasp_minimum():
    stored = hash_password("a long enough password")
    assert (stored.log2_n, stored.r, stored.p) == (17, 8, 1)
    assert len(stored.salt) >= 16 and len(stored.digest) == 32


def test_garbage_in_the_password_file_is_an_error_that_says_what_to_do():
    with pytest.raises(CredentialError, match="set-password"):
        PasswordHash.decode("admin:secret")


def test_huge_scrypt_parameters_are_refused_before_any_hashing():
    line = hash_password("x" * 10, log2_n=10).encode().replace("ln=10", "ln=30")
    with pytest.raises(CredentialError, match="out of range"):
        PasswordHash.decode(line)


def test_password_file_is_written_0600_and_read_back(tmp_path):
    path = tmp_path / "webui.passwd"
    assert read_password_hash(path) is None
    write_password_hash(path, hash_password("first password", log2_n=10))
    write_password_hash(path, hash_password("second password", log2_n=10))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_password_hash(path).verify("second password")
    assert [p.name for p in tmp_path.iterdir()] == ["webui.passwd"]  # no temporary left


@pytest.mark.parametrize("password", ["short", " leading space1", "trailing space1 "])
def test_weak_or_mistyped_new_passwords_are_refused(password):
    with pytest.raises(CredentialError):
        check_new_password(password)


def test_secret_key_is_created_0600_once_and_then_reused(tmp_path):
    path = tmp_path / "state" / "webui.secret"
    key = load_secret_key(path)
    assert len(key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_key(path) == key


def test_secret_key_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "webui.secret"
    load_secret_key(path)
    path.chmod(0o644)
    with pytest.raises(CredentialError, match="chmod 600"):
        load_secret_key(path)


def test_secret_key_that_cannot_be_created_names_the_file(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(CredentialError, match="not-a-directory"):
        load_secret_key(blocker / "webui.secret")
