"""Dashboard sign-in and sessions: a session lives in the database and ends on sign-out, its cookie
holds nothing the database stores, the cookie is Secure when the service is served over HTTPS,
and no other site can post a form — sign-in included — on a person's behalf."""
from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select, update

from service.settings import Settings
from store.models import ApiKey, DashboardSession, utcnow
from tests.api.test_dashboard_pages import csrf_of, sign_in, text_of


def form_token(client) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text_of(client.get("/ui/login"))).group(1)


def signed_in(client) -> bool:
    return client.get("/ui/").status_code == 200


def cookie_value(client) -> str:
    return client.get_cookie("reftag_session").value


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(client, tenant, db):
    sign_in(client, tenant.key)
    copied = cookie_value(client)  # what a stolen cookie, or another tab, still holds
    assert client.post("/ui/logout", data={"csrf_token": csrf_of(client)}).status_code == 302
    client.set_cookie("reftag_session", copied)
    assert not signed_in(client)
    with db() as session:
        assert session.scalars(select(DashboardSession)).all() == []


def test_a_database_copy_and_the_signing_secret_make_no_cookie_that_signs_in(app, client, tenant, db):
    """Everything the database holds about the key and the session, signed with the app's own
    secret under either name the cookie has used: none of it signs in."""
    sign_in(client, tenant.key)
    assert signed_in(client)
    with db() as session:
        stored = [*session.scalars(select(ApiKey.key_hash)), *session.scalars(select(DashboardSession.token_hash))]
    assert hashlib.sha256(tenant.key.encode()).hexdigest() in stored and len(stored) == 2
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert not any(value in str(serializer.loads(cookie_value(client))) for value in stored)
    for value in stored:
        for name in ("key_hash", "sid"):
            thief = app.test_client()
            thief.set_cookie("reftag_session", serializer.dumps({name: value, "csrf": "x"}))
            assert not signed_in(thief), name


def test_a_session_ends_when_it_expires(client, tenant, db):
    sign_in(client, tenant.key)
    with db() as session:
        session.execute(update(DashboardSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert not signed_in(client)
    sign_in(client, tenant.key)  # signing in again sweeps the expired one
    with db() as session:
        assert len(session.scalars(select(DashboardSession)).all()) == 1


def test_the_cookie_is_secure_when_configured(make_app, tenant):
    client = make_app(cookie_secure=True).test_client()
    response = sign_in(client, tenant.key)
    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]
    assert "Secure" in client.get("/ui/login?lang=en").headers["Set-Cookie"]  # the language cookie too
    plain = make_app(cookie_secure=False).test_client()
    assert "Secure" not in sign_in(plain, tenant.key).headers["Set-Cookie"]


@pytest.mark.parametrize(("env", "secure"), [
    ({}, False),
    ({"REFTAG_BASE_URL": "https://reftag.example.com"}, True),
    ({"REFTAG_BASE_URL": "http://10.0.0.5:8000"}, False),
    ({"REFTAG_BASE_URL": "https://reftag.example.com", "REFTAG_COOKIE_SECURE": "false"}, False),
    ({"REFTAG_COOKIE_SECURE": "true"}, True),
])
def test_cookies_are_secure_by_default_when_the_base_url_is_https(monkeypatch, env, secure):
    for name in ("REFTAG_BASE_URL", "REFTAG_COOKIE_SECURE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().cookie_secure is secure


def test_sign_in_needs_the_forms_token(client, tenant):
    """Login CSRF: another site's page that posts its owner's key to /ui/login would sign the
    visitor in to that tenant, and what they upload or label then lands there."""
    for data in ({"api_key": tenant.key}, {"api_key": tenant.key, "csrf_token": "guessed"}):
        refused = client.post("/ui/login", data=data)
        assert refused.status_code == 403 and "another site" in text_of(refused)
        assert 'name="csrf_token"' in text_of(refused)  # the form again, to sign in here
        assert not signed_in(client)
    assert sign_in(client, tenant.key).status_code == 302 and signed_in(client)


@pytest.mark.parametrize("header", [{"Origin": "https://evil.example"}, {"Origin": "null"},
                                    {"Referer": "https://evil.example/page"}], ids=["origin", "null", "referer"])
def test_a_form_from_another_origin_is_refused_even_with_the_token(client, tenant, make_label_set, header):
    token = form_token(client)
    refused = client.post("/ui/login", data={"api_key": tenant.key, "csrf_token": token}, headers=header)
    assert refused.status_code == 403 and not signed_in(client)
    sign_in(client, tenant.key)
    token = csrf_of(client)
    label_set = make_label_set()
    tried = client.post("/ui/try", json={"label_set_id": label_set["id"], "items": [{"text": "hi"}]},
                        headers={"X-CSRF-Token": token, **header})
    assert tried.status_code == 403
    assert client.post("/ui/logout", data={"csrf_token": token}, headers=header).status_code == 403
    assert signed_in(client)


def test_a_form_from_this_site_is_accepted(make_app, tenant):
    client = make_app(base_url="https://reftag.example.com").test_client()
    for origin in ("http://localhost", "https://localhost", "https://reftag.example.com"):  # the test client's host
        token = form_token(client)
        response = client.post("/ui/login", data={"api_key": tenant.key, "csrf_token": token},
                               headers={"Origin": origin})
        assert response.status_code == 302, origin
    token = form_token(client)
    behind_proxy = client.post("/ui/login", data={"api_key": tenant.key, "csrf_token": token},
                               headers={"Referer": "https://localhost/ui/login?next=/ui/"})
    assert behind_proxy.status_code == 302

