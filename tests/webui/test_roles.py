"""The read-only viewer role and bearer tokens for scripts."""

from __future__ import annotations

import pytest
import webui_harness as harness
from webui_harness import log_in

from anabranch.daemon import config
from anabranch.webui.credentials import (CredentialError, create_token, hash_password, read_tokens,
                                         role_password_file, token_file, token_role, write_password_hash)

VIEWER_PASSWORD = "just looking around"


@pytest.fixture
def password_file(config_path):
    return config.load(config_path).webui.password_file


@pytest.fixture
def viewer(client, password_file):
    write_password_hash(role_password_file(password_file, "viewer"),
                        hash_password(VIEWER_PASSWORD, log2_n=harness.TEST_SCRYPT_LOG2_N))
    response = log_in(client, VIEWER_PASSWORD, user="viewer")
    assert response.status_code == 302
    return client


def _meta_token(client) -> str:
    page = client.get("/").get_data(as_text=True)
    marker = 'name="csrf-token" content="'
    start = page.index(marker) + len(marker)
    return page[start:page.index('"', start)]


def test_viewer_password_lives_beside_the_admins():
    assert str(role_password_file("/etc/anabranch/webui.passwd", "viewer")) == "/etc/anabranch/webui-viewer.passwd"
    assert str(token_file("/etc/anabranch/webui.passwd")) == "/etc/anabranch/webui-tokens"


def test_viewer_can_read_every_page_and_the_api(viewer, fake_daemon):
    for path in ("/", "/flows", "/classes", "/alerts", "/api/v1/classes", "/api/v1/alerts"):
        assert viewer.get(path).status_code == 200, path
    assert 'data-role="viewer"' in viewer.get("/classes").get_data(as_text=True)


def test_viewer_cannot_change_anything(viewer, fake_daemon):
    headers = {"X-CSRF-Token": _meta_token(viewer)}
    for method, path in [("post", "/api/v1/classes/video"), ("post", "/api/v1/alerts/a1/ack"),
                         ("post", "/api/v1/alert-rules/x"), ("delete", "/api/v1/alert-rules/x")]:
        response = getattr(viewer, method)(path, json={"max_mbit": 40}, headers=headers)
        assert response.status_code == 403, path
        assert response.get_json()["error"]["code"] == "forbidden"
    assert [r for r in fake_daemon.requests if r["cmd"] != "status"] == []


def test_viewer_may_still_sign_out(viewer):
    response = viewer.post("/logout", data={"csrf_token": _meta_token(viewer)})
    assert response.status_code == 302
    assert viewer.get("/").status_code == 302


def test_viewer_with_the_admins_password_is_refused(client, password_file):
    write_password_hash(role_password_file(password_file, "viewer"),
                        hash_password(VIEWER_PASSWORD, log2_n=harness.TEST_SCRYPT_LOG2_N))
    assert log_in(client, harness.PASSWORD, user="viewer").status_code == 401


def test_viewer_login_without_a_viewer_password_is_refused(client):
    response = log_in(client, "anything at all", user="viewer")
    assert response.status_code == 401
    assert "set-password --role viewer" in response.get_data(as_text=True)


def test_unknown_user_is_refused(client):
    assert log_in(client, harness.PASSWORD, user="root").status_code == 401


def test_admin_token_reads_and_changes_without_a_session_or_csrf(client, password_file, fake_daemon):
    token = create_token(token_file(password_file), "admin", "ci script", now=1_700_000_000)
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/links", headers=auth).status_code == 200
    response = client.post("/api/v1/classes/file", json={"max_mbit": 25}, headers=auth)
    assert response.status_code == 200
    assert fake_daemon.commands("class.set")[0]["args"]["max_mbit"] == 25.0


def test_viewer_token_reads_but_cannot_change(client, password_file, fake_daemon):
    token = create_token(token_file(password_file), "viewer", "grafana", now=1_700_000_000)
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/classes", headers=auth).status_code == 200
    assert client.post("/api/v1/classes/file", json={"max_mbit": 25}, headers=auth).status_code == 403


def test_a_wrong_token_is_401_even_with_a_good_session(logged_in, fake_daemon):
    response = logged_in.get("/api/v1/links", headers={"Authorization": "Bearer abt_not-a-token"})
    assert response.status_code == 401


def test_tokens_are_stored_hashed_and_can_be_revoked(password_file):
    path = token_file(password_file)
    token = create_token(path, "viewer", "x", now=5)
    assert token not in path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    assert token_role(path, token) == "viewer"
    assert [t.name for t in read_tokens(path)] == ["x"]
    path.write_text("")
    assert token_role(path, token) is None


def test_a_damaged_token_file_names_the_line(password_file):
    path = token_file(password_file)
    path.write_text("garbage here\n")
    with pytest.raises(CredentialError, match=":1: not a token line"):
        read_tokens(path)
