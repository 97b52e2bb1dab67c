"""Login, logout, CSRF and the login gate, through the Flask test client."""

from __future__ import annotations

import time

import pytest
import webui_harness as harness
from webui_harness import csrf_from, log_in
from anabranch.webui.credentials import hash_password, write_password_hash


@pytest.mark.parametrize("path", ["/", "/no/such/page", "/?tab=flows"])
def test_pages_redirect_to_login_without_a_session(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", ["/api/v1/status", "/ws"])
def test_api_and_websocket_answer_401_without_a_session(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_websocket_upgrade_without_a_session_is_refused_before_the_handshake(client):
    response = client.get("/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                          "Sec-WebSocket-Version": "13"})
    assert response.status_code == 401


def test_login_page_is_public_and_its_cookie_is_httponly_and_samesite_strict(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert 'name="csrf_token"' in response.get_data(as_text=True)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http on loopback


def test_session_cookie_is_secure_when_served_over_tls(client):
    response = client.get("/login", base_url="https://gateway.example")
    assert "Secure" in response.headers["Set-Cookie"]


def test_right_password_opens_the_dashboard(client):
    response = log_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert "Flows" in page.get_data(as_text=True)
    assert client.get("/api/v1/status").status_code == 200


def test_wrong_password_is_refused_with_a_clear_message(client):
    response = log_in(client, password="not the password")
    assert response.status_code == 401
    assert "Wrong password" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("form", [{}, {"csrf_token": ""}, {"csrf_token": "forged"}])
def test_login_post_without_a_valid_csrf_token_is_400(client, form):
    client.get("/login")
    response = client.post("/login", data={"password": harness.PASSWORD, **form})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_csrf_token_of_another_session_is_refused(app):
    attacker, victim = app.test_client(), app.test_client()
    token = csrf_from(attacker.get("/login"))
    victim.get("/login")
    response = victim.post("/login", data={"csrf_token": token, "password": harness.PASSWORD})
    assert response.status_code == 400


def test_csrf_token_is_renewed_at_login(client):
    before = csrf_from(client.get("/login"))
    log_in(client)
    response = client.post("/logout", data={"csrf_token": before})
    assert response.status_code == 400


def test_logout_needs_the_token_and_ends_the_session(logged_in):
    assert logged_in.post("/logout").status_code == 400
    assert logged_in.get("/").status_code == 200
    token = csrf_from(logged_in.get("/"))
    response = logged_in.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert logged_in.get("/").status_code == 302
    assert "signed out" in logged_in.get("/login").get_data(as_text=True)


def test_sixth_attempt_within_a_minute_is_429_even_with_the_right_password(client):
    for _ in range(5):
        assert log_in(client, password="guess guess").status_code == 401
    response = log_in(client)
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert "Too many failed attempts" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_rate_limit_counts_per_client_address(app):
    one, other = app.test_client(), app.test_client()
    for _ in range(5):
        log_in(one, password="guess guess")
    assert log_in(one).status_code == 429
    other.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert log_in(other).status_code == 302


def test_new_password_signs_out_existing_sessions(app, logged_in):
    settings = app.config["ANABRANCH_SETTINGS"]
    write_password_hash(settings.webui.password_file, hash_password("a brand new password", log2_n=10))
    assert logged_in.get("/").status_code == 302
    assert logged_in.get("/api/v1/status").status_code == 401


def test_session_older_than_its_lifetime_is_refused(logged_in):
    with logged_in.session_transaction() as session:
        session["since"] = time.time() - 13 * 3600
    assert logged_in.get("/").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example",
                                    "javascript:alert(1)"])
def test_login_never_redirects_off_site(client, target):
    response = log_in(client, next_url=target)
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_login_returns_to_the_page_asked_for(client):
    response = log_in(client, next_url="/?tab=flows")
    assert response.headers["Location"] == "/?tab=flows"


def test_without_a_password_file_the_login_page_says_how_to_set_one(app, client):
    settings = app.config["ANABRANCH_SETTINGS"]
    from pathlib import Path
    Path(settings.webui.password_file).unlink()
    assert "anabranch-webui set-password" in client.get("/login").get_data(as_text=True)
    response = log_in(client)
    assert response.status_code == 503
    assert "No admin password is set" in response.get_data(as_text=True)


def test_pages_carry_a_strict_content_security_policy(logged_in):
    response = logged_in.get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("name", ["anabranch.css", "dashboard.js", "favicon.svg"])
def test_static_files_need_no_session(client, name):
    with client.get(f"/static/{name}") as response:
        assert response.status_code == 200
