"""The dashboard's pages through the Flask test client: sign-in, tenant isolation, language,
what each page shows. (tests/e2e/test_dashboard.py drives the same pages in Chromium.)"""
from __future__ import annotations

import json
import re

import pytest
from flask.sessions import SecureCookieSessionInterface

from api.ui import charts, i18n


def sign_in(client, key: str, next_path: str = "/ui/"):
    """As a person does: open the sign-in form, paste the key, submit (with the form's token)."""
    form = text_of(client.get("/ui/login"))
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    return client.post("/ui/login", data={"api_key": key, "next": next_path, "csrf_token": token})


def csrf_of(client) -> str:
    html = client.get("/ui/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def text_of(response) -> str:
    return response.get_data(as_text=True)


def test_root_and_pages_send_a_stranger_to_the_sign_in_form(client):
    assert client.get("/").headers["Location"] == "/ui/"
    response = client.get("/ui/jobs")
    assert response.status_code == 302 and response.headers["Location"].startswith("/ui/login?next=/ui/jobs")
    assert client.get("/ui/login").status_code == 200
    assert client.get("/ui/jobs/job_x/progress").status_code == 401  # JSON endpoints answer, not redirect


def test_a_live_key_signs_in_and_revoking_it_signs_out(client, tenant, db):
    refused = sign_in(client, "rt_not-a-key")
    assert refused.status_code == 401 and "unknown or revoked" in text_of(refused)
    assert "Paste an API key first" in text_of(sign_in(client, "  "))

    signed_in = sign_in(client, tenant.key, "/ui/jobs")
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/ui/jobs"
    page = client.get("/ui/")
    assert page.status_code == 200 and tenant.name in text_of(page)

    from store import tenants

    with db() as session:
        tenants.revoke_api_key(session, tenants.key_prefix(tenant.key))
    assert client.get("/ui/").status_code == 302


def test_the_session_cookie_is_signed_httponly_and_never_holds_the_key(app, client, tenant):
    response = sign_in(client, tenant.key)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert tenant.key not in value
    stored = SecureCookieSessionInterface().get_signing_serializer(app).loads(value)
    assert set(stored) == {"sid", "csrf"} and tenant.key not in str(stored)
    client.set_cookie("reftag_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/ui/").status_code == 302  # a tampered cookie is no session


def test_posts_need_the_pages_csrf_token(client, tenant):
    sign_in(client, tenant.key)
    assert client.post("/ui/logout").status_code == 403
    assert client.post("/ui/logout", data={"csrf_token": csrf_of(client)}).headers["Location"] == "/ui/login"
    assert client.get("/ui/").status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "javascript:alert(1)"])
def test_sign_in_only_returns_to_a_path_on_this_site(client, tenant, target):
    assert sign_in(client, tenant.key, target).headers["Location"] == "/ui/"


def test_another_tenants_ids_are_the_not_found_page(client, make_tenant, make_label_set, add_adapter, clean_redis):
    owner = make_tenant("owner")
    label_set = make_label_set("owned", headers=owner.headers)
    add_adapter(label_set["id"], metrics={"accuracy": 0.5, "macro_f1": 0.5})
    job = client.post("/v1/jobs", headers=owner.headers,
                      json={"label_set_id": label_set["id"], "items": [{"text": "a"}]}).get_json()
    stranger = make_tenant("stranger")
    sign_in(client, stranger.key)
    for path in (f"/ui/label-sets/{label_set['id']}", f"/ui/label-sets/{label_set['id']}/adapters/1",
                 f"/ui/jobs/{job['id']}", "/ui/label-sets/ls_nonexistent"):
        response = client.get(path)
        assert response.status_code == 404 and response.mimetype == "text/html", path
        assert "There is no such object for your tenant" in text_of(response)
        assert "owned" not in text_of(response)
    assert client.get(f"/ui/jobs/{job['id']}/progress").status_code == 404
    assert client.get(f"/ui/jobs/{job['id']}/results.csv").status_code == 404
    assert "owned" not in text_of(client.get("/ui/")) and "owned" not in text_of(client.get("/ui/jobs"))

    sign_in(client, owner.key)
    assert client.get(f"/ui/label-sets/{label_set['id']}").status_code == 200
    assert job["id"] in text_of(client.get("/ui/jobs"))


def test_language_comes_from_lang_then_cookie_then_accept_language(client, tenant):
    sign_in(client, tenant.key)
    assert '<html lang="en">' in text_of(client.get("/ui/"))
    chinese = client.get("/ui/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert '<html lang="zh-CN">' in text_of(chinese) and "标签集" in text_of(chinese)
    for traditional in ("zh-TW", "zh-HK,en;q=0.5", "zh-Hant", "zh-MO"):
        page = text_of(client.get("/ui/", headers={"Accept-Language": traditional}))
        assert '<html lang="zh-TW">' in page and "標籤集" in page, traditional
    for simplified in ("zh", "zh-SG", "zh-Hans-HK"):
        assert '<html lang="zh-CN">' in text_of(client.get("/ui/", headers={"Accept-Language": simplified})), simplified
    first_it_has = client.get("/ui/", headers={"Accept-Language": "fr-FR,en-GB;q=0.8,zh-CN;q=0.5"})
    assert '<html lang="en">' in text_of(first_it_has)

    switched = client.get("/ui/jobs?lang=en", headers={"Accept-Language": "zh-CN"})
    assert "reftag_lang=en" in switched.headers["Set-Cookie"] and '<html lang="en">' in text_of(switched)
    assert '<html lang="en">' in text_of(client.get("/ui/", headers={"Accept-Language": "zh-CN"}))  # remembered
    client.get("/ui/?lang=zh-CN")
    assert "任务" in text_of(client.get("/ui/jobs"))
    assert '<html lang="zh-CN">' in text_of(client.get("/ui/?lang=klingon"))  # unknown: the cookie's


def test_every_page_word_is_in_the_chosen_language(client, tenant, make_label_set):
    make_label_set("新闻", labels=("体育", "财经"))
    sign_in(client, tenant.key)
    traditional = text_of(client.get("/ui/?lang=zh-TW"))
    assert '<html lang="zh-TW">' in traditional and "標籤集" in traditional and "單標籤" in traditional
    assert "体育" in traditional  # the users' own words stay as they wrote them
    jobs = text_of(client.get("/ui/jobs"))
    assert "<h1>工作</h1>" in jobs and "尚無工作。" in jobs
    for code, name in i18n.LANGUAGES.items():  # the switch names each language in itself
        assert f'lang="{code}"' in jobs and name in jobs


def test_label_set_page_counts_examples_per_label_and_escapes_names(client, tenant, make_label_set):
    label_set = make_label_set("新闻 <script>", labels=("体育", "财经", "<b>bold</b>"))
    examples = [{"text": f"比赛 {i}", "label": "体育"} for i in range(5)] + [{"text": "股市", "label": "财经"}]
    assert client.post(f"/v1/label-sets/{label_set['id']}/examples", headers=tenant.headers,
                       json={"examples": examples}).status_code == 201
    sign_in(client, tenant.key)
    html = text_of(client.get(f"/ui/label-sets/{label_set['id']}"))
    rows = re.findall(r'<span class="label-name">(.*?)</span>.*?data-value="(\d+)"', html, re.S)
    assert rows == [("体育", "5"), ("财经", "1"), ("&lt;b&gt;bold&lt;/b&gt;", "0")]  # the set's own order
    assert "<script>" not in html.split("<script", 1)[0] and "新闻 &lt;script&gt;" in html
    assert '· 3 labels\n      · <span class="example-total">6</span> examples' in html
    assert "· 3 个标签" in text_of(client.get(f"/ui/label-sets/{label_set['id']}?lang=zh-CN"))
    one = make_label_set("one example", labels=("yes", "no"))
    client.post(f"/v1/label-sets/{one['id']}/examples", headers=tenant.headers,
                json={"examples": [{"text": "sure", "label": "yes"}]})
    singular = text_of(client.get(f"/ui/label-sets/{one['id']}?lang=en"))
    assert '<span class="example-total">1</span> example</div>' in singular
    listing = text_of(client.get("/ui/"))
    assert "新闻 &lt;script&gt;" in listing and 'data-value="6"' in listing


def test_adapter_page_draws_the_confusion_heatmap_and_loss_curve(client, tenant, make_label_set, add_adapter):
    label_set = make_label_set("topics", labels=("体育", "财经", "娱乐"))
    metrics = {"accuracy": 0.8, "macro_f1": 0.78, "n_train": 40, "n_eval": 10, "epochs_run": 3,
               "loss_curve": [1.1, 0.7, 0.5], "confusion": [[3, 1, 0], [0, 3, 0], [1, 0, 2]],
               "per_label": {"体育": {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}}}
    add_adapter(label_set["id"], metrics=metrics)
    sign_in(client, tenant.key)
    html = text_of(client.get(f"/ui/label-sets/{label_set['id']}/adapters/1"))
    assert html.count('<g class="cell') == 9 and html.count('class="cell diagonal"') == 3
    assert "真实" not in html and "true: 体育 → predicted: 财经 — 1 (25.0%)" in html
    assert re.search(r'<path class="loss-line" d="M[\d.]+,[\d.]+ L[\d.]+,[\d.]+ L[\d.]+,[\d.]+"', html)
    assert "80.0%" in html and "0.780" in html
    assert client.get(f"/ui/label-sets/{label_set['id']}/adapters/2").status_code == 404


def test_try_the_model_goes_through_the_predict_endpoints_rules(client, tenant, make_label_set):
    label_set = make_label_set()
    sign_in(client, tenant.key)
    token = csrf_of(client)
    no_adapter = client.post("/ui/try", json={"label_set_id": label_set["id"], "items": [{"text": "hi"}]},
                             headers={"X-CSRF-Token": token})
    assert no_adapter.status_code == 409 and no_adapter.get_json()["error"]["code"] == "no_adapter"
    blank = client.post("/ui/try", json={"label_set_id": label_set["id"], "items": [{"text": " "}]},
                        headers={"X-CSRF-Token": token})
    assert blank.status_code == 422 and blank.get_json()["error"]["details"][0]["pointer"] == "/items/0/text"
    assert client.post("/ui/try", json={"label_set_id": label_set["id"], "items": [{"text": "hi"}]}).status_code == 403


def test_chart_geometry():
    assert charts.ticks(0, 1.13, 4) == [0, 0.5, 1.0, 1.5]
    chart = charts.loss_chart([(1, 2.0), (2, 1.0), (4, 0.5)], [1.5, 0.6], steps_per_epoch=2)
    assert chart.path.startswith("M") and len(chart.dots) == 2 and chart.x_unit == "step"
    assert charts.loss_chart([], [], None) is None
    heatmap = charts.confusion_heatmap([[2, 0], [1, 1]], ["正面", "负面"])
    assert [round(c.share, 2) for c in heatmap.cells] == [1.0, 0.0, 0.5, 0.5]
    assert charts.confusion_heatmap([[1]], ["a", "b"]) is None
    assert charts.short_name("国际新闻与评论频道") == "国际新闻与评…"


def test_a_multi_label_adapter_shows_micro_f1_and_no_confusion_matrix(client, tenant, make_label_set, add_adapter):
    label_set = make_label_set("emotions", labels=("joy", "anger", "fear"), multi_label=True)
    add_adapter(label_set["id"], metrics={"accuracy": 0.4, "micro_f1": 0.61, "macro_f1": 0.5, "n_eval": 20})
    sign_in(client, tenant.key)
    html = text_of(client.get(f"/ui/label-sets/{label_set['id']}/adapters/1"))
    assert "Micro-F1" in html and "0.610" in html
    assert "No confusion matrix" in html and '<g class="cell' not in html
    assert "multi-label" in text_of(client.get("/ui/"))


def test_an_adapter_page_says_how_it_was_evaluated(client, tenant, make_label_set, add_adapter):
    label_set = make_label_set("small", labels=("a", "b"))
    add_adapter(label_set["id"], metrics={"accuracy": 0.7, "macro_f1": 0.69, "evaluation": "k-fold", "folds": 5,
                                          "n_eval": 24, "n_train": 24})
    add_adapter(label_set["id"], version=2, active=False,
                metrics={"accuracy": 0.9, "macro_f1": 0.9, "evaluation": "held_out", "n_eval": 30, "n_train": 170})
    sign_in(client, tenant.key)
    k_fold = text_of(client.get(f"/ui/label-sets/{label_set['id']}/adapters/1"))
    assert "Scores out of fold: 5 folds over all 24 examples" in k_fold and "24 / 5" in k_fold
    held_out = text_of(client.get(f"/ui/label-sets/{label_set['id']}/adapters/2?lang=zh-CN"))
    assert "验证集得分（30 条样本，未参与训练）" in held_out and "170 / 30" in held_out


def test_a_train_jobs_page_shows_its_warnings_and_why_it_was_or_was_not_promoted(client, tenant, make_label_set, db):
    from store.models import Job

    label_set = make_label_set("few", labels=("a", "b"))
    k_fold = {"promoted": False, "rule": "k-fold", "metric": "macro_f1", "new_score": 0.61, "active_version": 1,
              "active_score": 0.7, "folds": 5, "reason": "not activated: macro_f1 0.6100 < active version 1's 0.7000 "
                                                            "over 5 folds of the current examples"}
    held_out = {"promoted": True, "rule": "held_out", "metric": "micro_f1", "new_score": 0.8, "active_version": 2,
                "active_score": 0.75, "n_eval": 40, "reason": "promoted: …"}
    # It won, but version 3 was activated while it trained (store.adapters.add_version).
    raced = {**held_out, "promoted": False, "active_changed_to": 3, "reason": "not activated: …"}
    job_ids = []
    with db() as session:
        for promotion in (k_fold, held_out, raced):
            job = Job(tenant_id=tenant.id, type="train", label_set_id=label_set["id"], status="succeeded",
                      warnings=[{"code": "few_examples", "message": "1 label(s) have fewer than 4 examples: 'b' (2)",
                                 "labels": ["b"], "examples": {"b": 2}}],
                      metrics={"promotion": promotion})
            session.add(job)
            session.flush()
            job_ids.append(job.id)
    sign_in(client, tenant.key)
    html = text_of(client.get(f"/ui/jobs/{job_ids[0]}?lang=en"))
    assert "Not activated: Macro-F1 0.6100 &lt; 0.7000 of version 1, each recipe retrained on the same 5 folds" in html
    assert "the adapter learns them from very little and its scores on them are rough: b (2)" in html
    zh = text_of(client.get(f"/ui/jobs/{job_ids[0]}?lang=zh-CN"))
    assert "未启用：宏平均 F1 0.6100 &lt; 版本 1 的 0.7000，两个版本的配方都在当前样本的同样 5 折上重新训练。" in zh
    assert "以下标签的样本少于 4 条" in zh and "macro_f1" not in zh and "rough" not in zh
    zh_tw = text_of(client.get(f"/ui/jobs/{job_ids[1]}?lang=zh-TW"))
    assert "已啟用：微平均 F1 0.8000 ≧ 版本 2 的 0.7500，兩者在同樣的 40 筆驗證樣本上評估。" in zh_tw
    assert "but version 3 became active while it trained" in text_of(client.get(f"/ui/jobs/{job_ids[2]}?lang=en"))


def test_a_label_sets_base_model_shows_in_the_list_on_its_page_and_on_each_version(
        client, tenant, make_label_set, add_adapter, db, clean_redis):
    from store.models import Adapter

    label_set = make_label_set("新闻", labels=("体育", "财经"))
    sign_in(client, tenant.key)
    listing = text_of(client.get("/ui/"))
    assert re.search(r'class="base-model-cell[^>]*>\s*<span class="base-model muted"[^>]*>auto: chosen at the next '
                     r'training</span>', listing), listing
    assert "自动：下次训练时选定" in text_of(client.get("/ui/?lang=zh-CN"))

    examples = [{"text": f"比赛第{i}场", "label": "体育"} for i in range(4)] + \
               [{"text": f"股市第{i}天", "label": "财经"} for i in range(4)]
    client.post(f"/v1/label-sets/{label_set['id']}/examples", headers=tenant.headers, json={"examples": examples})
    # Version 1 as if trained on MiniLM before the set's examples turned Chinese; another without a base in its config.
    add_adapter(label_set["id"])
    add_adapter(label_set["id"], version=2, active=False)
    with db() as session:
        session.query(Adapter).filter_by(label_set_id=label_set["id"], version=1).one().config_json = json.dumps(
            {"base_model": {"name": "all-MiniLM-L6-v2", "fingerprint": "5f3c"}})
    assert client.post(f"/v1/label-sets/{label_set['id']}/train", headers=tenant.headers, json={}).status_code == 202

    page = text_of(client.get(f"/ui/label-sets/{label_set['id']}?lang=en"))
    assert 'Base model: <span class="base-model mono">multilingual-e5-small</span> <span class="muted small"' in page
    assert "(auto)</span>" in page
    assert re.findall(r'<div class="muted small mono adapter-base"[^>]*>(.*?)</div>', page) == ["all-MiniLM-L6-v2"]
    assert ("Adapter v1 was trained on all-MiniLM-L6-v2; the next version trains on multilingual-e5-small, "
            "from scratch") in page
    traditional = text_of(client.get(f"/ui/label-sets/{label_set['id']}?lang=zh-TW"))
    assert "基礎模型" in traditional and "（自動）" in traditional
    assert "下一個版本將以 multilingual-e5-small 從頭訓練" in traditional

    adapter_page = text_of(client.get(f"/ui/label-sets/{label_set['id']}/adapters/1?lang=en"))
    assert 'Base model: <span class="mono">all-MiniLM-L6-v2</span>' in adapter_page
    assert "adapter-base" not in text_of(client.get(f"/ui/label-sets/{label_set['id']}/adapters/2"))

    # A base named by the set (PATCH) is shown as it is, without "(auto)", before any training resolves it.
    client.patch(f"/v1/label-sets/{label_set['id']}", headers=tenant.headers, json={"base_model": "all-MiniLM-L6-v2"})
    page = text_of(client.get(f"/ui/label-sets/{label_set['id']}"))
    assert 'Base model: <span class="base-model mono">all-MiniLM-L6-v2</span></div>' in page
    assert "base-change" not in page  # the active version is on that base already


def test_a_train_job_that_waits_names_the_one_it_waits_for(client, tenant, make_label_set, db):
    from store.models import Job

    label_set = make_label_set("news", labels=("a", "b"))
    with db() as session:
        running = Job(tenant_id=tenant.id, type="train", label_set_id=label_set["id"], status="running")
        session.add(running)
        session.flush()
        waiting = Job(tenant_id=tenant.id, type="train", label_set_id=label_set["id"], status="queued",
                      queued_after=running.id)
        session.add(waiting)
        session.flush()
        running_id, waiting_id = running.id, waiting.id
    sign_in(client, tenant.key)
    html = text_of(client.get(f"/ui/jobs/{waiting_id}"))
    assert (f'Waits for train job <a class="mono" href="/ui/jobs/{running_id}">{running_id}</a>, which was running '
            f"when this one was asked for") in html
    assert "queued-after" not in text_of(client.get(f"/ui/jobs/{running_id}"))
    assert "等待训练任务 <a" in text_of(client.get(f"/ui/jobs/{waiting_id}?lang=zh-CN"))


@pytest.mark.parametrize("query", ["endpoint=x", "_method=DELETE", "_external=1", "_anchor=x", "_scheme=javascript",
                                   "values=1&lang=zh-CN"])
def test_any_query_on_any_page_is_a_page_not_a_500(client, tenant, make_label_set, query):
    """The language links repeat the page's query; a query that names url_for's own keywords
    (`endpoint`, `_method`, ...) is only a query."""
    label_set = make_label_set()
    for path in ("/ui/login", "/ui/label-sets/ls_nonexistent"):
        assert client.get(f"{path}?{query}").status_code in (200, 302, 404), path
    sign_in(client, tenant.key)
    for path in ("/ui/", "/ui/jobs", "/ui/try", f"/ui/label-sets/{label_set['id']}", "/ui/label-sets/ls_nonexistent"):
        response = client.get(f"{path}?{query}")
        assert response.status_code in (200, 404), (path, response.status_code)
        links = re.findall(r'class="lang" lang="[^"]+" href="([^"]+)"', text_of(response))
        assert links and all(link.startswith(path + "?") for link in links), links
        assert all(query.split("=")[0] in link for link in links)


def spans_label_set(client, tenant, name: str = "entities", types=("PER", "ORG", "LOC")) -> dict:
    response = client.post("/v1/label-sets", headers=tenant.headers, json={
        "name": name, "kind": "spans", "labels": [{"name": n} for n in types]})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def finished_spans_job(db, tenant, label_set_id: str, rows: list[tuple[str, list[dict], bool]]) -> str:
    """A succeeded tag job whose items are `rows`' texts and whose results are their spans
    (`[{"start", "end", "label", "score"}]`) and needs-review marks, as tag_chunk writes them."""
    from store.models import Job, JobItem, Result

    with db() as session:
        job = Job(tenant_id=tenant.id, type="tag", label_set_id=label_set_id, status="succeeded", total=len(rows),
                  done=len(rows), adapter_version=1)
        session.add(job)
        session.flush()
        for position, (text, spans, needs_review) in enumerate(rows):
            spans = [{**s, "text": text[s["start"]:s["end"]]} for s in spans]
            labels = list(dict.fromkeys(s["label"] for s in spans))
            session.add(JobItem(job_id=job.id, position=position, item_id=f"item-{position}", text=text))
            session.add(Result(job_id=job.id, position=position, item_id=f"item-{position}", labels=labels,
                               scores={name: max(s["score"] for s in spans if s["label"] == name) for name in labels},
                               spans=spans, needs_review=needs_review, adapter_version=1,
                               confidence=min([s["score"] for s in spans], default=0.9)))
        return job.id


def text_cells(html: str) -> list[str]:
    return re.findall(r'<td class="text-col">(.*?)</td>', html, re.S)


def test_a_spans_jobs_results_show_each_span_highlighted_with_its_type(client, tenant, db):
    label_set = spans_label_set(client, tenant)
    chinese = "👍张伟在北京的华为公司工作。"  # the emoji is one character of the offsets (two UTF-16 units)
    job_id = finished_spans_job(db, tenant, label_set["id"], [
        ("Alice Martin joined Google.", [{"start": 0, "end": 12, "label": "PER", "score": 0.97},
                                         {"start": 20, "end": 26, "label": "ORG", "score": 0.884}], False),
        (chinese, [{"start": 1, "end": 3, "label": "PER", "score": 0.91}, {"start": 4, "end": 6, "label": "LOC",
                   "score": 0.41}, {"start": 7, "end": 11, "label": "ORG", "score": 0.88}], True),
        ("Nothing to see here.", [], False),
    ])
    sign_in(client, tenant.key)
    html = text_of(client.get(f"/ui/jobs/{job_id}"))
    english, zh, plain = text_cells(html)
    assert english == ('<mark class="span span-c0" data-label="PER" title="PER 0.97">Alice Martin</mark>'
                       '<small class="span-tag span-c0">PER</small> joined '
                       '<mark class="span span-c1" data-label="ORG" title="ORG 0.88">Google</mark>'
                       '<small class="span-tag span-c1">ORG</small>.')
    assert re.findall(r'<mark class="span span-c(\d)" data-label="(\w+)"[^>]*>(.*?)</mark>', zh) == [
        ("0", "PER", "张伟"), ("2", "LOC", "北京"), ("1", "ORG", "华为公司")]
    assert zh.startswith("👍<mark") and zh.endswith("</small>工作。")
    assert plain == "Nothing to see here."
    rows = re.findall(r'<tr class="(result-row[^"]*)">', html)
    assert rows == ["result-row", "result-row review", "result-row"]
    assert html.count("no-spans") == 1 and html.count('class="badge review-badge"') == 1
    # suggest and the one-at-a-time review are for classification sets
    assert "suggest-button" not in html and "review-link" not in html
    assert "未发现片段" in text_of(client.get(f"/ui/jobs/{job_id}?lang=zh-CN"))


def test_a_spans_page_escapes_texts_and_types_inside_and_outside_spans(client, tenant, db):
    label_set = spans_label_set(client, tenant, types=("PER", '<b id="x">ORG</b>'))
    text = "<script>alert(1)</script> met <img src=x onerror=alert(2)> & <script>alert(3)</script>"
    inside = text.index("<img")
    job_id = finished_spans_job(db, tenant, label_set["id"], [
        (text, [{"start": inside, "end": text.index(">", inside) + 1, "label": "PER", "score": 0.5},
                {"start": text.rindex("<script>"), "end": len(text), "label": '<b id="x">ORG</b>', "score": 0.6}],
         False)])
    sign_in(client, tenant.key)
    html = text_of(client.get(f"/ui/jobs/{job_id}"))
    assert "<script>alert" not in html and "<img" not in html and '<b id="x">' not in html
    (cell,) = text_cells(html)
    assert cell == ('&lt;script&gt;alert(1)&lt;/script&gt; met '
                    '<mark class="span span-c0" data-label="PER" title="PER 0.50">&lt;img src=x onerror=alert(2)&gt;'
                    '</mark><small class="span-tag span-c0">PER</small> &amp; '
                    '<mark class="span span-c1" data-label="&lt;b id=&#34;x&#34;&gt;ORG&lt;/b&gt;" '
                    'title="&lt;b id=&#34;x&#34;&gt;ORG&lt;/b&gt; 0.60">&lt;script&gt;alert(3)&lt;/script&gt;</mark>'
                    '<small class="span-tag span-c1">&lt;b id=&#34;x&#34;&gt;ORG&lt;/b&gt;</small>')


def test_span_pieces_cut_texts_at_characters_and_leave_spans_that_do_not_fit_plain(app):
    from api.ui.dashboard import Piece, span_pieces

    types = [f"T{i}" for i in range(10)]
    pieces = span_pieces("😀ab张伟c", [{"start": 3, "end": 5, "label": "T9", "score": 0.7},
                                      {"start": 1, "end": 2, "label": "T1"}], types)
    assert pieces == [Piece("😀"), Piece("a", "T1", None, 1), Piece("b"), Piece("张伟", "T9", 0.7, 1), Piece("c")]
    # overlapping the span before, past the end, empty, an unknown type: plain text, or the first colour
    odd = span_pieces("abcdef", [{"start": 0, "end": 3, "label": "X"}, {"start": 2, "end": 4, "label": "T0"},
                                 {"start": 5, "end": 9, "label": "T0"}, {"start": 4, "end": 4, "label": "T0"}], types)
    assert odd == [Piece("abc", "X", None, 0), Piece("def")]
    assert span_pieces("abc", None, types) == [Piece("abc")] and span_pieces("", [], types) == []


def test_a_spans_label_set_shows_its_kind_and_review_threshold(client, tenant):
    label_set = spans_label_set(client, tenant, "实体")
    assert client.patch(f"/v1/label-sets/{label_set['id']}", headers=tenant.headers,
                        json={"span_review_threshold": 0.35}).status_code == 200
    examples = [{"text": f"张伟在北京第{i}次开会。", "spans": [{"start": 0, "end": 2, "label": "PER"},
                                                     {"start": 3, "end": 5, "label": "LOC"}]} for i in range(25)]
    assert client.post(f"/v1/label-sets/{label_set['id']}/examples", headers=tenant.headers,
                       json={"examples": examples}).status_code == 201
    sign_in(client, tenant.key)
    page = text_of(client.get(f"/ui/label-sets/{label_set['id']}?lang=en"))
    assert '· <span class="kind">spans</span>' in page and "· 3 entity types" in page
    assert 'Span review threshold: <span class="num span-review-threshold">0.35</span>' in page
    rows = re.findall(r'<span class="label-name">(.*?)</span>.*?data-value="(\d+)"', page, re.S)
    assert rows == [("PER", "25"), ("ORG", "0"), ("LOC", "25")]  # examples marking each type
    assert "audit-button" not in page  # auditing is for classification sets
    listing = text_of(client.get("/ui/"))
    assert re.findall(r'<td class="type-cell">(.*?)</td>', listing) == ["spans"]
    simplified = text_of(client.get(f"/ui/label-sets/{label_set['id']}?lang=zh-CN"))
    assert "片段标注" in simplified and "3 个实体类型" in simplified and "片段审核阈值" in simplified
    assert "片段標註" in text_of(client.get("/ui/?lang=zh-TW"))
