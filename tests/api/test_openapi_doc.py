"""/openapi.json covers every route from the same schemas; /docs is Swagger UI over it, offline;
the web tier stays free of torch."""
import re
import subprocess
import sys

from api.openapi import PARAM


def test_openapi_document_covers_every_route(app, client):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    for rule in app.url_map.iter_rules():
        path = PARAM.sub(r"{\2}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            op = doc["paths"][path][method.lower()]
            assert op["tags"] != ["undocumented"], f"{method} {rule.rule} has no @operation"
            assert op["tags"][0] in {tag["name"] for tag in doc["tags"]}, f"{method} {rule.rule}: an undescribed tag"
            assert op["summary"] and op["responses"]
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(rule.arguments), path


def test_every_schema_reference_resolves(client):
    doc = client.get("/openapi.json").get_json()
    text = str(doc)
    refs = set(re.findall(r"#/components/schemas/([\w-]+)", text))
    assert refs and refs <= set(doc["components"]["schemas"])
    job_create = doc["components"]["schemas"]["JobCreate"]
    assert set(job_create["required"]) == {"label_set_id", "items"}
    assert job_create["additionalProperties"] is False


def test_v1_and_label_studio_operations_declare_their_auth_and_the_error_schema(client):
    doc = client.get("/openapi.json").get_json()
    for path, ops in doc["paths"].items():
        for op in ops.values():
            if path.startswith(("/v1/", "/ls/")):
                # Label Studio connects with HTTP Basic, the API key as the password
                assert op["security"] == [{"bearer": []}] + ([{"basic": []}] if path.startswith("/ls/") else [])
                assert op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
            else:
                assert "security" not in op


def test_docs_page_is_swagger_ui_served_by_this_app(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "SwaggerUIBundle({" in html and 'url: "/openapi.json"' in html
    assets = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
    assert len(assets) == 3 and all(path.startswith("/docs/swagger-ui/") for path in assets), assets
    for path in assets:
        assert client.get(path).status_code == 200, path
    # The browser itself refuses anything from elsewhere (tests/e2e/test_docs_page.py watches it do so).
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'self';") and "http" not in policy
    assert client.get("/docs/swagger-ui/..%2Fmeta.py").status_code == 404


def test_importing_the_web_tier_does_not_import_torch():
    # The web tier reads reft_core's training options and its list of bases (both torch-free), and
    # nothing else of it.
    code = ("import sys, api; api.create_app(); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'a model library was loaded'; "
            "loaded = sorted(m for m in sys.modules if m.startswith('reft_core')); "
            "assert loaded == ['reft_core', 'reft_core.bases', 'reft_core.config', 'reft_core.spans'], loaded")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
