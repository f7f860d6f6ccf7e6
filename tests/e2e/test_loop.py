"""The labeling loop through the real stack (web, Redis, a Celery worker, the bundled MiniLM):
what to label next (a suggest job over a tag job's items, exported as Label Studio tasks), which
labels are wrong (an audit job that finds planted mistakes), and the audit list in a real
Chromium, where a person accepts one fix and keeps one label."""
from __future__ import annotations

from tests.e2e.browser import Browser, sync_playwright

PER_LABEL = 10
FAST = {"epochs": 3, "min_steps": 30}
# Texts of one topic given another topic's label (news_en's labels: World, Sports, Business, Sci/Tech).
PLANTED = [
    ("Striker scores twice as United beat City in the derby at Old Trafford", "Business"),
    ("Goalkeeper saves late penalty to send the champions into the cup final", "Sci/Tech"),
    ("New chip doubles battery life of smartphones, engineers say", "Sports"),
    ("Central bank raises interest rates to cool inflation as markets slide", "Sports"),
]


def test_suggest_then_audit_then_decide_in_the_dashboard(stack, news_en):
    client, base = stack.client(), stack.base_url
    # The set's config is its recipe: training and the audit's per-fold fits both use it.
    created = client.post(f"{base}/v1/label-sets", json={
        "name": "loop", "labels": [{"name": n} for n in news_en.label_names], "config": FAST, "retrain_after": None})
    assert created.status_code == 201, created.text
    label_set_id = created.json()["id"]
    examples = [{"text": r["text"], "label": r["label"]} for r in news_en.balanced_train(PER_LABEL)]
    added = client.post(f"{base}/v1/label-sets/{label_set_id}/examples",
                        json={"examples": examples + [{"text": t, "label": label} for t, label in PLANTED]})
    assert added.status_code == 201 and added.json()["added"] == len(examples) + len(PLANTED), added.text
    trained = client.post(f"{base}/v1/label-sets/{label_set_id}/train")
    assert stack.wait_for_job(trained.json()["id"], timeout=600)["status"] == "succeeded"

    # --- what to label next ---------------------------------------------------------------------
    rows = news_en.test_rows(40)
    tagged = client.post(f"{base}/v1/jobs", json={
        "label_set_id": label_set_id, "items": [{"id": f"t{i}", "text": r["text"]} for i, r in enumerate(rows)]})
    tag_job = stack.wait_for_job(tagged.json()["id"])
    assert tag_job["status"] == "succeeded"
    asked = client.post(f"{base}/v1/label-sets/{label_set_id}/suggest", json={"job_id": tag_job["id"], "n": 8})
    assert asked.status_code == 202, asked.text
    suggest_job = stack.wait_for_job(asked.json()["id"])
    assert (suggest_job["type"], suggest_job["status"]) == ("suggest", "succeeded"), suggest_job
    picks = client.get(f"{base}/v1/jobs/{suggest_job['id']}/results").json()["results"]
    assert len(picks) == 8 and len({p["item_id"] for p in picks}) == 8
    by_id = {f"t{i}": r["text"] for i, r in enumerate(rows)}
    assert all(by_id[p["item_id"]] == p["text"] and p["reason"] for p in picks)
    tasks = client.get(f"{base}/v1/jobs/{suggest_job['id']}/results?format=label_studio").json()
    assert [t["data"]["item_id"] for t in tasks] == [p["item_id"] for p in picks]

    # --- which labels are wrong -----------------------------------------------------------------
    asked = client.post(f"{base}/v1/label-sets/{label_set_id}/audit")
    assert asked.status_code == 202, asked.text
    audit_job = stack.wait_for_job(asked.json()["id"], timeout=600)
    assert (audit_job["type"], audit_job["status"]) == ("audit", "succeeded"), audit_job
    findings = client.get(f"{base}/v1/jobs/{audit_job['id']}/results").json()["results"]
    planted = {text: label for text, label in PLANTED}
    caught = [f for f in findings if f["text"] in planted]
    assert len(caught) >= 3, findings
    assert all(f["given"] == planted[f["text"]] and f["suggested"] != f["given"] for f in caught)

    # --- the audit list in a browser: accept one fix, keep one label --------------------------------
    fix, keep = caught[0], caught[1]
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            lead = Browser(chromium, base, shots="loop")
            lead.open(f"/ui/jobs/{audit_job['id']}")
            lead.sign_in(stack.api_key)
            lead.page.wait_for_selector("#findings")
            assert lead.page.locator(".finding-row").count() == len(findings)
            lead.shot("audit")
            row = lead.page.locator(f".finding-row[data-example-id='{fix['example_id']}']")
            row.locator("button[data-decision='accept']").click()
            row.locator(".decision", has_text="fixed").wait_for()
            row = lead.page.locator(f".finding-row[data-example-id='{keep['example_id']}']")
            row.locator("button[data-decision='keep']").click()
            row.locator(".decision", has_text="kept").wait_for()
            lead.open(f"/ui/jobs/{audit_job['id']}?lang=zh-CN")
            assert "接受修正" in lead.page.inner_text("#findings")
            lead.shot("audit-zh")
            lead.open(f"/ui/jobs/{suggest_job['id']}")
            assert lead.page.locator("#suggestions tbody tr").count() == 8
            lead.open(f"/ui/label-sets/{label_set_id}")
            assert lead.page.locator("#audit-button").count() == 1
            lead.check_clean()
        finally:
            chromium.close()
    decided = {f["example_id"]: f["decision"]
               for f in client.get(f"{base}/v1/jobs/{audit_job['id']}/results").json()["results"]}
    assert decided[fix["example_id"]] == "accepted" and decided[keep["example_id"]] == "kept"
    # the example the browser fixed carries the suggested label now, and its old one in its history
    again = client.post(f"{base}/v1/jobs/{audit_job['id']}/findings/{fix['example_id']}", json={"decision": "keep"})
    example = again.json()["example"]
    assert example["labels"] == [fix["suggested"]] and [h["labels"] for h in example["history"]] == [[fix["given"]]]
