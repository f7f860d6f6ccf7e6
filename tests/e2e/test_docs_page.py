"""/docs in a real headless Chromium (Debian's `chromium`, driven by playwright) against the
running app: Swagger UI loads from the app's own origin only, lists every operation of
/openapi.json, opens an operation from a deep link, and "Try it out" on GET /v1/label-sets is
refused without a key and answers with the tenant's label sets once the key is given to
"Authorize". Screenshots: tests/artifacts/docs-*.png (git-ignored): look at them."""
from __future__ import annotations

import secrets
from urllib.parse import quote

import pytest
import requests

from tests.e2e.browser import ARTIFACTS, CHROMIUM, Browser, sync_playwright


@pytest.mark.parametrize("new_database", ["sqlite"], indirect=True)
def test_docs_list_every_operation_and_try_it_out_with_an_api_key(stack):
    playwright = sync_playwright()  # skip (or fail in CI) before spending time on data
    from playwright.sync_api import expect
    base = stack.base_url
    doc = requests.get(f"{base}/openapi.json", timeout=10).json()
    documented = sorted((method.upper(), path) for path, operations in doc["paths"].items() for method in operations)
    name = f"docs-check-{secrets.token_hex(3)}"
    labels = [{"name": "a"}, {"name": "b"}]
    created = stack.client().post(f"{base}/v1/label-sets", json={"name": name, "labels": labels})
    assert created.status_code == 201, created.text

    with playwright as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM))
        reader = Browser(chromium, base, shots="docs")
        assert reader.open("/docs").status == 200
        page = reader.page
        page.wait_for_selector(".opblock")
        listed = page.eval_on_selector_all(".opblock", """blocks => blocks.map(block => [
            block.querySelector(".opblock-summary-method").textContent,
            block.querySelector("[data-path]").dataset.path])""")
        assert sorted(map(tuple, listed)) == documented
        reader.shot("swagger")

        # --- try it out: refused without a key, answered with one ----------------------------------
        operation = page.locator(".opblock-get").filter(has=page.locator('[data-path="/v1/label-sets"]'))
        operation.locator(".opblock-summary-control").click()
        operation.locator("button.try-out__btn").click()
        operation.locator("button.execute").click()
        status = operation.locator(".live-responses-table .response .response-col_status")
        expect(status).to_have_text("401")

        page.click(".auth-wrapper button.authorize")
        dialog = page.locator(".modal-ux")
        # two schemes: the API's bearer key, and Basic for /ls (Label Studio signs in that way)
        bearer = dialog.locator(".auth-container").filter(has=page.locator("#auth-bearer-value"))
        bearer.locator("#auth-bearer-value").fill(stack.api_key)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs-authorize.png"))
        bearer.locator("button.modal-btn.auth.authorize").click()
        dialog.locator("button.btn-done").first.click()
        operation.locator("button.execute").click()
        expect(status).to_have_text("200")
        assert f"Authorization: Bearer {stack.api_key}" in operation.locator(".curl-command").inner_text()
        assert name in operation.locator(".live-responses-table .response .response-col_description").inner_text()
        operation.screenshot(path=str(ARTIFACTS / "docs-try-it-out.png"))

        # --- a deep link opens its operation -------------------------------------------------------
        one = doc["paths"]["/v1/label-sets/{label_set_id}"]["get"]
        linked = Browser(chromium, base, shots="docs")
        linked.open(f"/docs#/{quote(one['tags'][0])}/{one['operationId']}")
        opened = linked.page.locator(".opblock.is-open")
        expect(opened).to_have_count(1)
        assert opened.locator("[data-path]").get_attribute("data-path") == "/v1/label-sets/{label_set_id}"

        reader.check_clean(expected_errors=("401",))  # the answer asked for without a key
        linked.check_clean()
        chromium.close()
