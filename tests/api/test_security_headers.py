"""Headers that keep a browser from misusing reftag's answers: a Content-Security-Policy on every
page (scripts from reftag itself only), no framing by another site, no type sniffing."""
from __future__ import annotations

import re

from tests.api.test_dashboard_pages import sign_in, text_of


def policy(response) -> dict[str, str]:
    return {part.split()[0]: part.strip() for part in response.headers["Content-Security-Policy"].split(";")}


def assert_guarded(response) -> None:
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_dashboard_pages_run_only_reftags_own_script(client, tenant, make_label_set):
    label_set = make_label_set()
    pages = [client.get("/ui/login")]
    sign_in(client, tenant.key)
    pages += [client.get(path) for path in ("/ui/", "/ui/jobs", "/ui/try", f"/ui/label-sets/{label_set['id']}",
                                            "/ui/label-sets/ls_nonexistent")]
    for page in pages:
        assert page.mimetype == "text/html"
        assert_guarded(page)
        script = policy(page)["script-src"]
        assert script == "script-src 'self'", script
        assert "'unsafe-inline'" not in policy(page).get("default-src", "")
        # Every script the page has is a file of reftag's (or JSON data, which is not run): an
        # inline one would be blocked by the policy, and the page would break.
        for tag in re.findall(r"<script\b[^>]*>", text_of(page)):
            assert "src=" in tag or 'type="application/json"' in tag, tag


def test_docs_keep_their_own_policy_and_get_the_other_headers(client):
    page = client.get("/docs")
    assert_guarded(page)
    nonce = re.search(r"'nonce-([^']+)'", policy(page)["script-src"]).group(1)
    assert f'<script nonce="{nonce}">' in text_of(page)
    assert_guarded(client.get("/docs/swagger-ui/swagger-ui.css"))


def test_api_answers_are_not_sniffed_or_framed(client, auth):
    for response in (client.get("/v1/label-sets", headers=auth), client.get("/v1/label-sets"), client.get("/healthz"),
                     client.get("/openapi.json")):
        assert_guarded(response)
        assert policy(response)["default-src"] == "default-src 'none'"
