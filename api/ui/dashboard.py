"""The dashboard at /ui/: server-rendered pages (Jinja) over the same store functions as the
API, in English, 简体中文 or 繁體中文 (`i18n`: gettext catalogs, through Flask-Babel).

A person signs in by pasting an API key; that starts a dashboard session
(`tenants.start_dashboard_session`) whose random token the session cookie carries (signed with
the `secret_key` setting, HttpOnly, SameSite=Lax, Secure with `cookie_secure`) — never the key
nor anything the database stores — and every page checks that the session has not ended and its
key is still live. Signing out ends the session in the database. Every form post (sign-in
included: no signing a person in to someone else's tenant) carries the session's CSRF token and,
when the browser says where it comes from (Origin, else Referer), comes from this site. Pages
show only that key's tenant: another tenant's id is the same 404 page as an id that does not
exist. The two things a page does beyond reading — export results and try the model — call the
functions the API's own routes call (`jobs.export_response`, `predict.tag_now`) with the
session's tenant, so the rules, limits and the predict queue are the API's.
"""
from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    g,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from flask_babel import gettext
from markupsafe import Markup, escape

from reft_core.config import AUDIT_MIN_EXAMPLES, AUDIT_MIN_PER_LABEL
from service.settings import dashboard_secret_key
from store import adapters, jobs, loop, results, reviews, tenants
from store import label_sets as store_label_sets
from store.errors import NotFound, StoreError
from store.loop import MAX_SUGGEST
from store.models import Adapter, JobStatus, JobType, LabelSet, LabelSetKind, as_utc

from .. import broker
from ..db import read_transaction, transaction
from ..errors import ApiError, error_response, store_error_response
from ..openapi import operation
from ..requests import parse_body, parse_query, settings
from ..v1 import jobs as job_routes
from ..v1 import loop as loop_routes
from ..v1 import predict as predict_routes
from ..v1.schemas import FindingDecisionIn, PredictRequest, ResultsQuery, ReviewIn, ReviewQuery, job_json, output_json
from . import charts, i18n

bp = Blueprint("dashboard", __name__, template_folder="templates", static_folder=None)

STATIC_DIR = bp.root_path + "/static/dashboard"
RESULTS_PER_PAGE = 50
# A dashboard session ends when its person signs out, its key is revoked, or after this long.
SESSION_LIFETIME = timedelta(days=7)
REVIEW_BATCH = 50  # results the review page holds before it asks for more
PUBLIC_ENDPOINTS = {"dashboard.login", "dashboard.login_submit", "dashboard.static_file", "dashboard.home"}
JSON_ENDPOINTS = {"dashboard.job_progress", "dashboard.try_submit", "dashboard.review_items",
                  "dashboard.review_submit", "dashboard.finding_submit"}
LOOP_ROWS = 500  # a suggest or audit job's rows its page shows (the rest: download or the API)
PAGE = {200: "An HTML page"}
# What a signed-in page can also answer (described, not given a schema: they are pages).
SIGNED_OUT = {302: "Not signed in (or the key was revoked): a redirect to the sign-in form"}
NOT_FOUND = {404: "An HTML page: no such object for this tenant"}
SPAN_COLOURS = 8  # the stylesheet's span-c0 … span-c7: a type's colour by its place in the set, cycling


def page(summary: str, responses: dict[int, Any] | None = None, signed_in: bool = True) -> Any:
    """Dashboard routes appear in the OpenAPI document as what they are: pages, not API.
    Sign-in is the session cookie, not a bearer key."""
    answers = {**(responses or PAGE), **(SIGNED_OUT if signed_in else {})}
    return operation(f"Dashboard: {summary}", tag="dashboard", public=True, responses=answers)


def init_app(app: Flask) -> None:
    app.secret_key = dashboard_secret_key(app.config["REFTAG_SETTINGS"])
    app.config.update(SESSION_COOKIE_NAME="reftag_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=app.config["REFTAG_SETTINGS"].cookie_secure)
    i18n.init_app(app)
    app.register_blueprint(bp)


# --- every request: language, signed-in tenant, CSRF -------------------------------------------


@bp.before_request
def load_language_and_tenant():
    g.lang = i18n.choose_language(request)
    if request.endpoint in PUBLIC_ENDPOINTS:  # sign-in checks its form itself, to answer with the form
        return None
    with read_transaction() as db:
        signed_in = tenants.tenant_for_dashboard_session(db, session.get("sid", ""))
        if signed_in is not None:
            tenant, g.api_key_id = signed_in
            g.tenant_id, g.tenant_name = tenant.id, tenant.name
    if signed_in is None:
        session.clear()
        if request.endpoint in JSON_ENDPOINTS:
            return error_response(401, "unauthorized", "sign in to the dashboard again")
        return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
    if request.method == "POST" and forged_post():
        return error_response(403, "forbidden", "the page is out of date or the form came from another site; "
                              "reload it and try again")
    return None


def forged_post() -> bool:
    """A POST that a page of this site did not send: without the session's CSRF token (form
    field or X-CSRF-Token header), or from another origin by the browser's own Origin (else
    Referer) header. A request with neither header (some privacy settings drop Referer) is
    judged by the token alone."""
    token = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
    expected = session.get("csrf", "")
    if not expected or not secrets.compare_digest(token, expected):
        return True
    source = request.headers.get("Origin") or request.headers.get("Referer")
    return source is not None and not from_this_site(source)


def from_this_site(url: str) -> bool:
    """Whether an Origin or Referer names this site: the host the request was sent to (a proxy may
    change the scheme in front, not the host), or the origin of the `base_url` setting."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:  # "null": a sandboxed frame, a data: URL, a file
        return False
    if parts.netloc.lower() == request.host.lower():
        return True
    base = settings().base_url
    return base is not None and origin_of(url) == origin_of(base)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@bp.after_request
def remember_language(response):
    if request.args.get("lang") in i18n.LANGUAGES:
        response.set_cookie(i18n.LANGUAGE_COOKIE, request.args["lang"], max_age=365 * 24 * 3600, samesite="Lax",
                            secure=settings().cookie_secure)
    response.vary.add("Cookie")
    response.vary.add("Accept-Language")
    return response


@bp.app_template_global()
def lang_url(language: str) -> str:
    """This page in another language: its path, and its query with `lang` replaced. The query is
    encoded here, not passed to `url_for`, whose own keywords (`endpoint`, `_method`, `_external`)
    a query could otherwise name."""
    query = request.args.copy()
    query["lang"] = language
    return url_for(request.endpoint or "dashboard.label_sets", **(request.view_args or {})) + "?" + urlencode(
        list(query.items(multi=True)))


bp.add_app_template_global(job_json)
bp.add_app_template_global(i18n.status_word)
bp.add_app_template_global(i18n.job_type_word)
bp.add_app_template_global(i18n.job_title)
bp.add_app_template_global(JobStatus, "JobStatus")
bp.add_app_template_global(JobType, "JobType")
bp.add_app_template_global(LabelSetKind, "LabelSetKind")


@bp.app_template_global()
def status_words() -> dict[str, str]:
    """Each job status in the page's language (the page's script shows statuses it polls)."""
    return {str(status): i18n.status_word(status) for status in JobStatus}


@bp.app_template_global()
def trained_on(adapter: Adapter | None) -> str | None:
    """The base model an adapter version was trained on, as its saved config names it."""
    return adapters.trained_base(adapter.config_json) if adapter is not None else None


@bp.app_template_global()
def job_duration(job) -> float | None:
    """Seconds from start to finish, or until now while it runs."""
    if job.started_at is None:
        return None
    return ((as_utc(job.finished_at) or datetime.now(UTC)) - as_utc(job.started_at)).total_seconds()


@bp.app_template_global()
def kind_word(label_set: LabelSet) -> str:
    """What a label set labels, in the page's language: one label a text, several, or spans."""
    if label_set.kind == LabelSetKind.SPANS:
        # TRANSLATORS: a label set's type: its labels are entity types (people, places…) marked on spans of a text
        return gettext("spans")
    return gettext("multi-label") if label_set.multi_label else gettext("single-label")


# The number versions are compared by (reft_core.config.main_metric), as the adapter page names it.
METRIC_WORDS = {"macro_f1": i18n.N_("Macro-F1"), "micro_f1": i18n.N_("Micro-F1"), "accuracy": i18n.N_("Accuracy")}


@bp.app_template_global()
def promotion_text(promotion: dict[str, Any]) -> str:
    """Why a train job's version was or was not made active (store.adapters.Promotion's JSON), in
    the page's language, with both scores; the stored English `reason` for a rule this does not know."""
    rule, promoted = promotion.get("rule"), bool(promotion.get("promoted"))
    if promotion.get("active_changed_to") is not None:
        return gettext("Not activated: it was compared with version %(compared)s, but version %(now)s became "
                       "active while it trained; activate it by hand to use it.",
                       compared=promotion.get("active_version"), now=promotion["active_changed_to"])
    if rule == "first":
        return gettext("The first version of the set: active.")
    if rule == "none":
        return gettext("Too few examples to compare the versions; the newer one is active.")
    if rule not in ("held_out", "k-fold") or promotion.get("new_score") is None:
        return str(promotion.get("reason") or "")
    metric = promotion.get("metric")
    values = {"metric": gettext(METRIC_WORDS[metric]) if metric in METRIC_WORDS else metric,
              "new": fixed(promotion["new_score"], 4), "old": fixed(promotion.get("active_score"), 4),
              "version": promotion.get("active_version"), "count": promotion.get("n_eval"),
              "folds": promotion.get("folds")}
    if rule == "held_out":
        return (gettext("Promoted: %(metric)s %(new)s ≥ %(old)s of version %(version)s, both on the same %(count)s "
                        "evaluation examples.", **values) if promoted else
                gettext("Not activated: %(metric)s %(new)s < %(old)s of version %(version)s, both on the same "
                        "%(count)s evaluation examples.", **values))
    return (gettext("Promoted: %(metric)s %(new)s ≥ %(old)s of version %(version)s, each recipe retrained on the "
                    "same %(folds)s folds of the current examples.", **values) if promoted else
            gettext("Not activated: %(metric)s %(new)s < %(old)s of version %(version)s, each recipe retrained on "
                    "the same %(folds)s folds of the current examples.", **values))


@bp.app_template_global()
def warning_text(warning: dict[str, Any]) -> str:
    """A train job's warning in the page's language (its `code` decides); the stored message else."""
    if warning.get("code") == "few_examples" and warning.get("labels"):
        counts = warning.get("examples") or {}  # each label's examples then (jobs before 2026-12-03 lack it)
        return gettext("These labels have fewer than %(count)s examples; the adapter learns them from very little "
                       "and its scores on them are rough: %(labels)s",
                       count=jobs.FEW_EXAMPLES, labels=", ".join(
                           f"{name} ({counts[name]})" if name in counts else str(name) for name in warning["labels"]))
    return str(warning.get("message") or "")


@dataclass(frozen=True)
class Piece:
    """A run of a text as a page shows it: plain (`label` None), or a span of type `label`."""

    text: str
    label: str | None = None
    score: float | None = None
    colour: int = 0


@bp.app_template_global()
def span_pieces(text: str, spans: Sequence[dict[str, Any]] | None, labels: Sequence[str]) -> list[Piece]:
    """`text` cut at its spans' offsets — Python characters, end exclusive, as examples and
    results store them, so a Chinese character or an emoji is one — into plain runs and spans,
    in order, each span coloured by its type's place in `labels`. The template escapes every
    piece. A span that starts inside the one before, or does not fit the text (the store never
    writes one), is shown as plain text."""
    pieces: list[Piece] = []
    at = 0
    for span in sorted(spans or [], key=lambda s: (s["start"], s["end"])):
        start, end, label = span["start"], span["end"], span["label"]
        if not at <= start < end <= len(text):
            continue
        if start > at:
            pieces.append(Piece(text[at:start]))
        score = span.get("score")
        pieces.append(Piece(text[start:end], label, score if isinstance(score, (int, float)) else None,
                            labels.index(label) % SPAN_COLOURS if label in labels else 0))
        at = end
    if at < len(text):
        pieces.append(Piece(text[at:]))
    return pieces


@bp.app_template_filter("when")
def when(moment: datetime | None, seconds: bool = True) -> Markup:
    """A UTC time; the page's script shows it in the reader's own time zone."""
    if moment is None:
        return Markup("–")
    moment = as_utc(moment)
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " UTC"
    return Markup('<time datetime="{}" data-seconds="{}">{}</time>').format(
        moment.isoformat(), "1" if seconds else "", text)


@bp.app_template_filter("seconds")
def seconds_text(value: Any) -> str:
    if not isinstance(value, (int, float)):  # None, or missing from older metrics
        return "–"
    minutes, secs = divmod(round(value), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{value:.1f} s"


@bp.app_template_filter("code_spans")
def code_spans(text: str) -> Markup:
    """`command` in a message → <code>command</code>, everything escaped."""
    return Markup("").join(Markup("<code>{}</code>").format(part) if i % 2 else escape(part)
                           for i, part in enumerate(text.split("`")))


@bp.app_template_filter("fixed")
def fixed(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "–"


@bp.app_template_filter("pct")
def pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "–"


def render(template: str, status: int = 200, **context: Any):
    return render_template(f"dashboard/{template}", languages=i18n.LANGUAGES, lang=g.lang,
                           csrf_token=session.get("csrf", ""), **context), status


@bp.errorhandler(NotFound)
def not_found(_error: NotFound):
    if request.endpoint in JSON_ENDPOINTS:
        return error_response(404, "not_found", str(_error))
    return render("not_found.html", 404)


@bp.errorhandler(ApiError)
@bp.errorhandler(StoreError)
def api_error(error):
    # The JSON endpoints answer like the API; a page never raises these itself.
    if isinstance(error, StoreError):
        return store_error_response(error)
    return error_response(error.status, error.code, error.message, error.details, error.headers)


# --- sign in and out --------------------------------------------------------------------------


def safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, not `//host`) may follow a sign-in."""
    parts = urlsplit(target or "")
    if target and target.startswith("/") and not target.startswith("//") and not parts.scheme and not parts.netloc:
        return target
    return url_for("dashboard.label_sets")


@bp.get("/")
@page("the start page (redirects to /ui/)", {302: "Redirect to /ui/"}, signed_in=False)
def home():
    return redirect(url_for("dashboard.label_sets"))


@bp.get("/ui/login")
@page("sign-in form", signed_in=False)
def login():
    session.setdefault("csrf", secrets.token_urlsafe(24))  # the form's token, before anyone signs in
    return render("login.html", next=safe_next(request.args.get("next")), error=None)


@bp.post("/ui/login")
@page("sign in with an API key", {302: "Signed in: a redirect to the page asked for",
                                   401: "An HTML page: the key is missing, unknown or revoked",
                                   403: "An HTML page: the form's CSRF token is missing or wrong, or it came "
                                        "from another site"}, signed_in=False)
def login_submit():
    follow = safe_next(request.form.get("next"))
    if forged_post():
        session.setdefault("csrf", secrets.token_urlsafe(24))
        return render("login.html", 403, next=follow,
                      error=gettext("This sign-in form is out of date or came from another site. Sign in again here."))
    raw_key = (request.form.get("api_key") or "").strip()
    with transaction() as db:
        signed_in = tenants.start_dashboard_session(db, raw_key, SESSION_LIFETIME) if raw_key else None
    if signed_in is None:
        return render("login.html", 401, next=follow,
                      error=gettext("That API key is unknown or revoked.") if raw_key
                      else gettext("Paste an API key first."))
    session.clear()
    session.update(sid=signed_in[1], csrf=secrets.token_urlsafe(24))
    return redirect(follow)


@bp.post("/ui/logout")
@page("sign out", {302: "Signed out: a redirect to the sign-in form",
                   403: "The form's CSRF token is missing or wrong (JSON error)"})
def logout():
    with transaction() as db:
        tenants.end_dashboard_session(db, session.get("sid", ""))
    session.clear()
    return redirect(url_for("dashboard.login"))


@bp.get("/ui/static/<path:filename>")
@page("stylesheet and script", {200: "A static file", 404: "No such file"}, signed_in=False)
def static_file(filename: str):
    return send_from_directory(STATIC_DIR, filename, max_age=300)


# --- label sets and adapters ------------------------------------------------------------------


@bp.get("/ui/")
@page("label sets")
def label_sets():
    with read_transaction() as db:
        views = store_label_sets.list_label_sets(db, g.tenant_id)
        running = jobs.list_jobs(db, g.tenant_id, status=JobStatus.RUNNING, limit=200)
        return render("label_sets.html", views=views, running=len(running))


@bp.get("/ui/label-sets/<id:label_set_id>")
@page("one label set: labels, example counts, adapter versions, recent jobs", {**PAGE, **NOT_FOUND})
def label_set(label_set_id: str):
    with read_transaction() as db:
        view = store_label_sets.get_label_set(db, g.tenant_id, label_set_id)
        counts = store_label_sets.label_example_counts(db, view.label_set)
        versions = adapters.list_adapters(db, g.tenant_id, label_set_id)
        recent = jobs.list_jobs(db, g.tenant_id, label_set_id=label_set_id, limit=10)
        auditable = (view.label_set.kind == LabelSetKind.CLASSIFICATION and view.example_count >= AUDIT_MIN_EXAMPLES
                     and all(n >= AUDIT_MIN_PER_LABEL for n in counts.values()))
        return render("label_set.html", view=view, counts=counts, adapters=list(reversed(versions)), jobs=recent,
                      label_set_names={label_set_id: view.label_set.name},
                      min_examples=settings().min_examples_per_label, auditable=auditable,
                      audit_minimum=AUDIT_MIN_PER_LABEL)


@bp.get("/ui/label-sets/<id:label_set_id>/adapters/<int(max=2147483647):version>")
@page("one adapter version: held-out scores, confusion matrix, loss curve", {**PAGE, **NOT_FOUND})
def adapter(label_set_id: str, version: int):
    with read_transaction() as db:
        view = store_label_sets.get_label_set(db, g.tenant_id, label_set_id)
        row = adapters.get_adapter(db, g.tenant_id, label_set_id, version)
        train_job = jobs.get_job(db, g.tenant_id, row.train_job_id) if row.train_job_id else None
        metrics = row.metrics or {}
        detail = (train_job.detail or {}) if train_job else {}
        epochs, total_steps = detail.get("epochs"), detail.get("total_steps")
        loss = charts.loss_chart([tuple(p) for p in detail.get("loss_history") or []],
                                 metrics.get("loss_curve") or [],
                                 total_steps / epochs if epochs and total_steps else None)
        heatmap = charts.confusion_heatmap(metrics.get("confusion") or [],
                                           [label.name for label in view.label_set.labels])
        return render("adapter.html", view=view, adapter=row, metrics=metrics, train_job=train_job, loss=loss,
                      heatmap=heatmap)


# --- jobs -------------------------------------------------------------------------------------


@bp.get("/ui/jobs")
@page("jobs, newest first, with live progress")
def jobs_list():
    with read_transaction() as db:
        listed = jobs.list_jobs(db, g.tenant_id, limit=100)
        names = {view.label_set.id: view.label_set.name for view in store_label_sets.list_label_sets(db, g.tenant_id)}
        return render("jobs.html", jobs=listed, label_set_names=names)


@bp.get("/ui/jobs/<id:job_id>")
@page("one job: live progress, and a tag job's results with scores (a spans set's: its spans highlighted), paged",
      {**PAGE, **NOT_FOUND})
def job(job_id: str):
    with read_transaction() as db:
        found = jobs.get_job(db, g.tenant_id, job_id)
        view = store_label_sets.get_label_set(db, g.tenant_id, found.label_set_id)
        pages = max(1, math.ceil(found.total / RESULTS_PER_PAGE)) if found.type == JobType.TAG else 1
        page_number = min(pages, max(1, request.args.get("page", 1, type=int) or 1))
        rows: list = []
        texts: dict[int, str] = {}
        if found.type == JobType.TAG:
            cursor = results.encode_cursor((page_number - 1) * RESULTS_PER_PAGE)
            rows = results.results_page(db, g.tenant_id, job_id, cursor, RESULTS_PER_PAGE).results
            texts = results.item_texts(db, job_id, [r.position for r in rows])
        outputs = [output_json(row) for row in loop.all_outputs(db, found)[:LOOP_ROWS]] \
            if found.type in (JobType.SUGGEST, JobType.AUDIT) else []
        counts = reviews.review_counts(db, [found.id]).get(found.id)
        return render("job.html", job=found, job_data=job_json(found, counts), view=view, results=rows, texts=texts,
                      page_number=page_number, pages=pages, outputs=outputs,
                      multi=view.label_set.multi_label, types=[label.name for label in view.label_set.labels])


@bp.get("/ui/jobs/<id:job_id>/progress")
@page("a job as JSON, polled by the job pages",
      {200: "The job, as GET /v1/jobs/{id}", 401: "Not signed in (JSON error)", 404: "No such job (JSON error)"},
      signed_in=False)
def job_progress(job_id: str):
    with read_transaction() as db:
        return job_json(jobs.get_job(db, g.tenant_id, job_id))


@bp.get("/ui/jobs/<id:job_id>/results.<any(csv, jsonl, label_studio):format_name>")
@page("download a job's results",
      {200: "CSV, JSONL or Label Studio tasks, as GET /v1/jobs/{id}/results?format=", **NOT_FOUND})
def job_export(job_id: str, format_name: str):
    # CSV with a byte order mark: Excel, which many labeling teams open it with, needs one to
    # read UTF-8 (Chinese) rather than the local code page.
    query = ResultsQuery(format=format_name, bom=format_name == "csv")
    with read_transaction() as db:
        found = jobs.get_job(db, g.tenant_id, job_id)
    if found.type in (JobType.SUGGEST, JobType.AUDIT):
        return loop_routes.export(g.tenant_id, found, query)
    return job_routes.export_response(g.tenant_id, job_id, query)


# --- review -----------------------------------------------------------------------------------


@bp.get("/ui/jobs/<id:job_id>/review")
@page("review a tag job's results one at a time: keys 1–9 pick a label, Enter accepts", {**PAGE, **NOT_FOUND})
def review(job_id: str):
    query = parse_query(ReviewQuery)
    with read_transaction() as db:
        found = jobs.get_job(db, g.tenant_id, job_id)
        if found.type != JobType.TAG:
            raise NotFound(f"job {job_id!r} has no results to review")
        view = store_label_sets.get_label_set(db, g.tenant_id, found.label_set_id)
        first = job_routes.review_queue_json(db, g.tenant_id, job_id, query.order, REVIEW_BATCH, None)
        return render("review.html", job=found, view=view, order=query.order, first=first,
                      labels=[label.name for label in view.label_set.labels])


@bp.get("/ui/jobs/<id:job_id>/review/items")
@page("the next results to review, as JSON (GET /v1/jobs/{id}/review)",
      {200: "As GET /v1/jobs/{id}/review", 401: "Not signed in (JSON error)", 404: "No such job (JSON error)"},
      signed_in=False)
def review_items(job_id: str):
    query = parse_query(ReviewQuery)
    with read_transaction() as db:
        return job_routes.review_queue_json(db, g.tenant_id, job_id, query.order, REVIEW_BATCH, query.cursor)


@bp.post("/ui/jobs/<id:job_id>/items/<path:item_id>/review")
@page("accept or correct one result (the body and answer of POST /v1/jobs/{id}/items/{item_id}/review)",
      {200: "As POST /v1/jobs/{id}/items/{item_id}/review", 401: "Not signed in (JSON error)",
       403: "CSRF token missing or wrong (JSON error)", 404: "No such job or item (JSON error)",
       415: "Not a JSON body"}, signed_in=False)
def review_submit(job_id: str, item_id: str):
    if not request.is_json:
        abort(415)
    return job_routes.review_as(g.tenant_id, job_id, item_id, parse_body(ReviewIn), g.get("api_key_id"))


# --- the labeling loop: suggest and audit -----------------------------------------------------


@bp.post("/ui/jobs/<id:job_id>/suggest")
@page("pick the items of this tag job most worth labelling (a suggest job, POST /v1/label-sets/{id}/suggest)",
      {302: "A redirect to the suggest job's page", 403: "The form's CSRF token is missing or wrong (JSON error)",
       **NOT_FOUND})
def suggest_submit(job_id: str):
    n = request.form.get("n", type=int) or 50
    with read_transaction() as db:
        label_set_id = jobs.get_job(db, g.tenant_id, job_id).label_set_id
    with transaction() as db:
        made = loop.create_suggest_job(db, g.tenant_id, label_set_id, job_id, max(1, min(n, MAX_SUGGEST)))
    broker.submit_loop_job(made.id, JobType.SUGGEST)
    return redirect(url_for("dashboard.job", job_id=made.id))


@bp.post("/ui/label-sets/<id:label_set_id>/audit")
@page("look for mislabelled examples (an audit job, POST /v1/label-sets/{id}/audit)",
      {302: "A redirect to the audit job's page", 403: "The form's CSRF token is missing or wrong (JSON error)",
       **NOT_FOUND})
def audit_submit(label_set_id: str):
    with transaction() as db:
        made = loop.create_audit_job(db, g.tenant_id, label_set_id)
    broker.submit_loop_job(made.id, JobType.AUDIT)
    return redirect(url_for("dashboard.job", job_id=made.id))


@bp.post("/ui/jobs/<id:job_id>/findings/<int(max=2147483647):example_id>")
@page("accept an audit's fix or keep the label (the body and answer of POST /v1/jobs/{id}/findings/{example_id})",
      {200: "As POST /v1/jobs/{id}/findings/{example_id}", 401: "Not signed in (JSON error)",
       403: "CSRF token missing or wrong (JSON error)", 404: "No such job or finding (JSON error)",
       409: "The example changed since the audit (JSON error)", 415: "Not a JSON body"}, signed_in=False)
def finding_submit(job_id: str, example_id: int):
    if not request.is_json:
        abort(415)
    return loop_routes.decide_as(g.tenant_id, job_id, example_id, parse_body(FindingDecisionIn).decision,
                                 g.get("api_key_id"))


# --- try the model ----------------------------------------------------------------------------


@bp.get("/ui/try")
@page("type texts and tag them with a label set's active adapter")
def try_model():
    with read_transaction() as db:
        trained = [view for view in store_label_sets.list_label_sets(db, g.tenant_id)
                   if view.active_adapter is not None]
        chosen = request.args.get("label_set") or (trained[0].label_set.id if trained else None)
        return render("try.html", trained=trained, chosen=chosen, max_items=settings().max_predict_items)


@bp.post("/ui/try")
@page("tag a few texts now (the body and answers of POST /v1/predict)",
      {200: "As POST /v1/predict", 401: "Not signed in (JSON error)", 403: "CSRF token missing or wrong (JSON error)",
       415: "Not a JSON body"}, signed_in=False)
def try_submit():
    if not request.is_json:
        abort(415)
    return {"results": predict_routes.tag_now(g.tenant_id, parse_body(PredictRequest))}
