"""`reftag`: the command-line client of a reftag server (HTTP only; see `reftag --help`).

    reftag login --url http://127.0.0.1:8000          # asks for the key, checks it, saves both
    reftag label-sets create tickets --labels billing,delivery,other   # and uses it from now on
    reftag examples add examples.csv
    reftag train --wait                                # a live bar: step, loss, ETA
    reftag tag texts.jsonl --wait -o results.jsonl     # a bar over items, then the results file
    reftag jobs
    reftag adapters                                    # versions, scores; `adapters activate 2` rolls back
    reftag base-models                                 # what a label set can train on; `label-sets set-base` picks

An error from the server is printed as its one-line message, and the exit status is 1; a job
that ends failed or cancelled exits 1 too.
"""
from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from . import config, files
from .http import ApiError, ReftagClient

LABEL_SET_ID = re.compile(r"ls_[0-9a-f]{16}")
FINISHED = ("succeeded", "failed", "cancelled")
POLL_SECONDS = 0.5

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


class Session:
    """What every command needs: the client, built on first use from flags, env and config."""

    def __init__(self, url: str | None, key: str | None) -> None:
        self.url_flag, self.key_flag = url, key
        self._client: ReftagClient | None = None

    @property
    def client(self) -> ReftagClient:
        if self._client is None:
            url = config.server_url(self.url_flag)
            key = config.resolve("key", self.key_flag, "--key").value
            if not key:
                fail("no API key: pass --key, set REFTAG_KEY, or run `reftag login`")
            self._client = ReftagClient(url, key)
        return self._client

    def label_set(self, ref: str | None) -> dict[str, Any]:
        """The label set `ref` names (id or name), else the one in use (REFTAG_LABEL_SET or the
        config file)."""
        ref = ref or config.resolve("label_set", None, "").value
        if not ref:
            fail("no label set chosen: pass --label-set ID_OR_NAME, set REFTAG_LABEL_SET, "
                 "or run `reftag label-sets use NAME`")
        if LABEL_SET_ID.fullmatch(ref):
            return self.client.label_set(ref)
        label_sets = self.client.label_sets()
        for label_set in label_sets:
            if label_set["name"] == ref:
                return label_set
        names = ", ".join(repr(s["name"]) for s in label_sets[:10]) + (", …" if len(label_sets) > 10 else "")
        fail(f"no label set named {ref!r}" + (f" (yours: {names})" if names else " (you have none yet)"))


class ReftagGroup(click.Group):
    """Turns an ApiError or an unreadable file anywhere below into one line and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as e:
            raise click.ClickException(str(e)) from None
        except (files.InputError, config.ConfigError) as e:
            raise click.ClickException(str(e)) from None


output_format_option = click.option(
    "--output-format", metavar="NAME",
    help="the API's name of an export format (jsonl, csv, label_studio, argilla, ...; default: from OUT's suffix)")
label_set_option = click.option("-l", "--label-set", "label_set_ref", metavar="ID_OR_NAME",
                                help="label set to use (default: the one `reftag label-sets use` chose)")


@click.group(cls=ReftagGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", metavar="URL", help="server URL (else REFTAG_URL, the config file, http://127.0.0.1:8000)")
@click.option("--key", metavar="KEY", help="API key (else REFTAG_KEY, the config file)")
@click.version_option("0.1.0", prog_name="reftag")
@click.pass_context
def cli(ctx: click.Context, url: str | None, key: str | None) -> None:
    """reftag from the command line: label sets, examples, training, tagging, jobs."""
    ctx.obj = Session(url, key)


pass_session = click.make_pass_decorator(Session)


# --- set-up ---------------------------------------------------------------------------------------


@cli.command()
@click.option("--url", "login_url", metavar="URL", help="server URL to save")
@click.option("--key", "login_key", metavar="KEY", help="API key to save (asked for when not given)")
@pass_session
def login(session: Session, login_url: str | None, login_key: str | None) -> None:
    """Check a server URL and API key, and save them in the config file."""
    url = config.server_url(login_url or session.url_flag)
    key = login_key or session.key_flag or click.prompt("API key", hide_input=True)
    count = len(ReftagClient(url, key).label_sets())
    path = config.write_file({"url": url, "key": key})
    click.echo(f"logged in to {url} ({count} label set(s)); saved in {path}")


@cli.command("config")
@click.option("--url", "new_url", metavar="URL", help="save this server URL")
@click.option("--key", "new_key", metavar="KEY", help="save this API key")
@label_set_option
def config_command(new_url: str | None, new_key: str | None, label_set_ref: str | None) -> None:
    """Show the settings in force and where each comes from; with options, save them."""
    values = {"url": new_url, "key": new_key, "label_set": label_set_ref}
    if any(values.values()):
        path = config.write_file({k: v for k, v in values.items() if v})
        click.echo(f"saved in {path}")
        return
    for name in config.FIELDS:
        setting = config.resolve(name, None, "")
        shown = setting.value or "-"
        if name == "key" and setting.value:
            shown = setting.value[:7] + "…"
        click.echo(f"{name:10} {shown:40} ({setting.source})")


# --- label sets -----------------------------------------------------------------------------------


def plain(value: Any) -> Text:
    """A table cell shown as it is (a label may contain `[`, which rich reads as markup)."""
    return Text("" if value is None else str(value))


def base_model_line(ls: dict[str, Any]) -> str:
    """The base a label set's adapters train on: the resolved one, else what it asks for."""
    resolved, asked = ls.get("resolved_base_model"), ls.get("base_model") or "auto"
    if resolved:
        return f"{resolved} (auto)" if asked == "auto" else resolved
    return "auto (chosen at the next training)" if asked == "auto" else asked


def score_line(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "-"
    parts = [f"{name} {metrics[name]:.3f}" for name in ("accuracy", "macro_f1", "micro_f1")
             if isinstance(metrics.get(name), (int, float))]
    return ", ".join(parts) or "-"


@cli.group("label-sets", cls=ReftagGroup, invoke_without_command=True)
@click.pass_context
def label_sets(ctx: click.Context) -> None:
    """List label sets (subcommands: create, show, use, set-base)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_label_sets)


@label_sets.command("list")
@pass_session
def list_label_sets(session: Session) -> None:
    """List your label sets; `*` marks the one in use."""
    current = config.resolve("label_set", None, "").value
    table = Table("", "id", "name", "labels", "examples", "base model", "adapter", "held-out", title=None)
    for ls in session.client.label_sets():
        active = ls["active_adapter"]
        table.add_row("*" if current in (ls["id"], ls["name"]) else "", ls["id"], plain(ls["name"]),
                      str(len(ls["labels"])), str(ls["example_count"]), base_model_line(ls),
                      f"v{active['version']}" if active else "-", score_line(active["metrics"] if active else None))
    out.print(table)


@label_sets.command("create")
@click.argument("name")
@click.option("--labels", required=True, metavar="A,B,C", help="label names, comma-separated, in score order")
@click.option("--multi-label", is_flag=True, help="a text may carry several labels")
@click.option("--kind", type=click.Choice(["classification", "spans"]), default="classification", show_default=True,
              help="spans: the labels are entity types, and examples mark spans of their texts")
@click.option("--base-model", metavar="NAME", help="the base its adapters train on (`reftag base-models`; "
                                                   "default: auto, chosen from the examples at the first training)")
@click.option("--use/--no-use", default=True, show_default=True, help="use it for the next commands")
@pass_session
def create_label_set(session: Session, name: str, labels: str, multi_label: bool, kind: str, base_model: str | None,
                     use: bool) -> None:
    """Create the label set NAME."""
    names = [label.strip() for label in labels.split(",") if label.strip()]
    created = session.client.create_label_set(name, names, multi_label, base_model, kind=kind)
    click.echo(f"created label set {created['name']} ({created['id']}) with {len(names)} labels, "
               f"base model {base_model_line(created)}")
    if use:
        config.write_file({"label_set": created["id"]})
        click.echo(f"using {created['name']} from now on")


@label_sets.command("show")
@click.argument("label_set_ref", metavar="[ID_OR_NAME]", required=False)
@pass_session
def show_label_set(session: Session, label_set_ref: str | None) -> None:
    """A label set's labels, examples, base model and active adapter."""
    ls = session.label_set(label_set_ref)
    active = ls["active_adapter"]
    shape = "spans" if ls.get("kind") == "spans" else "multi-label" if ls["multi_label"] else "single-label"
    out.print(Text(f"{ls['name']} ({ls['id']}), {shape}, {ls['example_count']} examples"))
    out.print(Text(f"base model: {base_model_line(ls)}"))
    per_label = (active["metrics"].get("per_label") or {}) if active else {}
    table = Table("#", "label", "description", "held-out F1")
    for i, label in enumerate(ls["labels"]):
        f1 = (per_label.get(label["name"]) or {}).get("f1")
        table.add_row(str(i), plain(label["name"]), plain(label["description"] or ""),
                      f"{f1:.3f}" if isinstance(f1, (int, float)) else "-")
    out.print(table)
    out.print(Text(f"active adapter: v{active['version']} ({score_line(active['metrics'])})" if active
                   else "no adapter yet: add examples and run `reftag train`"))


@label_sets.command("use")
@click.argument("label_set_ref", metavar="ID_OR_NAME")
@pass_session
def use_label_set(session: Session, label_set_ref: str) -> None:
    """Use a label set for the next commands (saved in the config file)."""
    ls = session.label_set(label_set_ref)
    config.write_file({"label_set": ls["id"]})
    click.echo(f"using {ls['name']} ({ls['id']})")


@label_sets.command("set-base")
@click.argument("base_model", metavar="NAME|auto")
@label_set_option
@pass_session
def set_base_model(session: Session, base_model: str, label_set_ref: str | None) -> None:
    """Choose the base model the label set's next adapter trains on.

    NAME is one that `reftag base-models` lists, or auto (chosen from the examples' script at
    the next training). The next adapter trains on it from scratch; the versions already
    trained keep serving until a new one is promoted."""
    ls = session.label_set(label_set_ref)
    changed = session.client.set_base_model(ls["id"], base_model)
    if changed["base_model"] == ls["base_model"]:
        click.echo(f"{changed['name']}: base model {base_model_line(changed)} (unchanged)")
        return
    click.echo(f"{changed['name']}: base model {base_model_line(changed)}")
    active = changed["active_adapter"]
    if active:
        click.echo(f"the next `reftag train` trains a new adapter on it from scratch; v{active['version']} "
                   f"keeps serving until a new version is promoted")


@cli.command("base-models")
@pass_session
def base_models(session: Session) -> None:
    """The base models label sets can train on; `*` marks what auto picks for English."""
    table = Table("name", "languages", "layers", "hidden", "English default", "loaded", "fingerprint")
    for base in session.client.base_models():
        table.add_row(plain(base["name"]), plain(base["languages"]), str(base["layers"] or "-"),
                      str(base["hidden_size"] or "-"), "*" if base["english_default"] else "",
                      "yes" if base["loaded"] else "", (base["fingerprint"] or "-")[:12])
    out.print(table)
    click.echo("auto (a label set's default) picks the multilingual base when half or more of the examples' "
               "letters are not Latin (Chinese, …), else the English default (*)")


# --- examples ---------------------------------------------------------------------------------------


@cli.group(cls=ReftagGroup)
def examples() -> None:
    """Labelled examples."""


@examples.command("add")
@click.argument("path", metavar="FILE")
@label_set_option
@click.option("--format", "file_format", metavar="NAME",
              help="the API's name of the file's format (default: from the suffix: .json, .jsonl, .csv)")
@pass_session
def add_examples(session: Session, path: str, label_set_ref: str | None, file_format: str | None) -> None:
    """Upload FILE's labelled examples as it is (JSON, JSONL or CSV; `-` reads stdin)."""
    body, media = files.example_upload(path, file_format)
    ls = session.label_set(label_set_ref)
    added = session.client.add_examples(ls["id"], body, media, file_format)
    click.echo(f"added {added['added']} examples to {ls['name']} ({added['duplicates']} duplicates skipped)")


# --- training ---------------------------------------------------------------------------------------


def parse_config(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`epochs=3 layers=[1,2] intervention=red` → {"epochs": 3, "layers": [1, 2], "intervention": "red"}."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--config")
        try:
            parsed[name.strip()] = json.loads(raw)
        except ValueError:
            parsed[name.strip()] = raw
    return parsed


@cli.command()
@label_set_option
@click.option("-c", "--config", "pairs", multiple=True, metavar="NAME=VALUE",
              help="a training option (e.g. epochs=5); repeat for more (docs/api.md lists them)")
@click.option("--wait", is_flag=True, help="follow the job with a progress bar until it ends")
@pass_session
def train(session: Session, label_set_ref: str | None, pairs: tuple[str, ...], wait: bool) -> None:
    """Train a new adapter version of the label set."""
    ls = session.label_set(label_set_ref)
    job, created = session.client.train(ls["id"], parse_config(pairs))
    if created:
        click.echo(f"train job {job['id']} queued for {ls['name']}")
    else:  # train requests coalesce: the job already queued reads the examples when it starts
        click.echo(f"train job {job['id']} was already queued for {ls['name']}; this request joined it")
    if job.get("queued_after"):
        click.echo(f"it starts when train job {job['queued_after']} (running) has finished")
    if wait:
        finish(session, follow(session, job))
    else:
        click.echo(f"follow it: reftag jobs wait {job['id']}")


@cli.group(cls=ReftagGroup, invoke_without_command=True)
@label_set_option
@click.pass_context
def adapters(ctx: click.Context, label_set_ref: str | None) -> None:
    """A label set's adapter versions and their held-out scores (subcommand: activate)."""
    if ctx.invoked_subcommand is not None:
        return
    session: Session = ctx.obj
    ls = session.label_set(label_set_ref)
    table = Table("version", "active", "held-out", "parameters", "train job", "note")
    for adapter in session.client.adapters(ls["id"])["adapters"]:
        table.add_row(f"v{adapter['version']}", "*" if adapter["active"] else "", score_line(adapter["metrics"]),
                      str(adapter["param_count"]), adapter["train_job_id"] or "-", plain(adapter["note"] or ""))
    out.print(table)


@adapters.command("activate")
@click.argument("version", type=click.IntRange(1))
@label_set_option
@pass_session
def activate_adapter(session: Session, version: int, label_set_ref: str | None) -> None:
    """Make VERSION the active adapter (promote, or roll back); new jobs use it."""
    ls = session.label_set(label_set_ref)
    adapter = session.client.activate(ls["id"], version)
    click.echo(f"{ls['name']}: adapter v{adapter['version']} is active ({score_line(adapter['metrics'])})")


# --- tagging ----------------------------------------------------------------------------------------


@cli.command()
@click.argument("path", metavar="FILE")
@label_set_option
@click.option("--wait", is_flag=True, help="follow the job with a progress bar until it ends")
@click.option("-o", "--output", metavar="OUT",
              help="write the results here when done (.csv: CSV, else JSONL; implies --wait)")
@output_format_option
@click.option("--adapter-version", type=int, help="tag with this adapter version (default: the active one)")
@click.option("--text-field", default="text", show_default=True, help="field/column holding the text")
@click.option("--id-field", default="id", show_default=True, help="field/column holding the item id")
@pass_session
def tag(session: Session, path: str, label_set_ref: str | None, wait: bool, output: str | None,
        output_format: str | None, adapter_version: int | None, text_field: str, id_field: str) -> None:
    """Tag the texts in FILE (.jsonl, .json, .csv, or one text per line)."""
    items = files.read_items(path, text_field, id_field)
    ls = session.label_set(label_set_ref)
    job = session.client.submit_tag_job(ls["id"], items, adapter_version)
    click.echo(f"tag job {job['id']}: {len(items)} items for {ls['name']} (adapter v{job['adapter_version']})")
    if wait or output:
        finish(session, follow(session, job), output, output_format)
    else:
        click.echo(f"follow it: reftag jobs wait {job['id']} -o results.jsonl")


@cli.command()
@click.argument("texts", nargs=-1, required=True)
@label_set_option
@pass_session
def predict(session: Session, texts: tuple[str, ...], label_set_ref: str | None) -> None:
    """Tag a few TEXTS at once (synchronous; for many, use `reftag tag`)."""
    ls = session.label_set(label_set_ref)
    table = Table("text", "labels", "score", "review")
    for text, result in zip(texts, session.client.predict(ls["id"], list(texts))):
        best = max(result["scores"].values(), default=0.0)
        # a spans set's answer: each span as `text` LABEL, its score the least sure span's
        found = ", ".join(f"{s['text']} {s['label']}" for s in result["spans"]) if "spans" in result \
            else ", ".join(result["labels"])
        if "spans" in result:
            best = min((s["score"] for s in result["spans"]), default=result.get("confidence") or 0.0)
        table.add_row(plain(text), plain(found), f"{best:.3f}", "yes" if result["needs_review"] else "")
    out.print(table)


# --- jobs -------------------------------------------------------------------------------------------


def job_progress(job: dict[str, Any]) -> str:
    p = job["progress"]
    unit = "steps" if job["type"] == "train" else "items"
    failed = f", {p['failed']} failed" if p["failed"] else ""
    return f"{p['done']}/{p['total']} {unit}{failed}"


@cli.group(cls=ReftagGroup, invoke_without_command=True)
@label_set_option
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]))
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, 200))
@click.pass_context
def jobs(ctx: click.Context, label_set_ref: str | None, status: str | None, limit: int) -> None:
    """List your newest jobs (subcommands: show, wait, results, cancel)."""
    if ctx.invoked_subcommand is not None:
        return
    session: Session = ctx.obj
    label_set_id = session.label_set(label_set_ref)["id"] if label_set_ref else None
    names = {ls["id"]: ls["name"] for ls in session.client.label_sets()}
    table = Table("id", "type", "status", "label set", "progress", "created", "took")
    for job in session.client.jobs(label_set_id, status, limit):
        table.add_row(job["id"], job["type"], job["status"], plain(names.get(job["label_set_id"], job["label_set_id"])),
                      job_progress(job), job["created_at"][:19].replace("T", " "), took(job))
    out.print(table)


def took(job: dict[str, Any]) -> str:
    if not (job.get("started_at") and job.get("finished_at")):
        return "-"
    seconds = (datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
               - datetime.fromisoformat(job["started_at"].replace("Z", "+00:00"))).total_seconds()
    return f"{seconds:.1f} s"


@jobs.command("show")
@click.argument("job_id")
@pass_session
def show_job(session: Session, job_id: str) -> None:
    """A job's status, progress, scores or error."""
    job = session.client.job(job_id)
    click.echo(f"{job['id']}  {job['type']} job, {job['status']}, {job_progress(job)}, label set {job['label_set_id']}")
    if job.get("queued_after") and job["status"] == "queued":
        click.echo(f"waits for train job {job['queued_after']} to finish")
    describe_end(job)


@jobs.command("wait")
@click.argument("job_id")
@click.option("-o", "--output", metavar="OUT", help="tag jobs: write the results here (.csv: CSV, else JSONL)")
@output_format_option
@pass_session
def wait_job(session: Session, job_id: str, output: str | None, output_format: str | None) -> None:
    """Follow a job with a progress bar until it ends."""
    finish(session, follow(session, session.client.job(job_id)), output, output_format)


@jobs.command("results")
@click.argument("job_id")
@click.option("-o", "--output", metavar="OUT", required=True, help=".csv: CSV, else JSONL; `-` for stdout")
@output_format_option
@pass_session
def job_results(session: Session, job_id: str, output: str, output_format: str | None) -> None:
    """Download a tag job's results (those written so far, if it is still running)."""
    save_results(session, session.client.job(job_id), output, output_format)


@jobs.command("cancel")
@click.argument("job_id")
@pass_session
def cancel_job(session: Session, job_id: str) -> None:
    """Cancel a queued or running job (results already written stay)."""
    job = session.client.cancel(job_id)
    click.echo(f"{job['id']} cancelled at {job_progress(job)}")


# --- following a job --------------------------------------------------------------------------------


def train_bar() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                    TextColumn("epoch {task.fields[epoch]}"), TextColumn("loss {task.fields[loss]}"),
                    TextColumn("ETA {task.fields[eta]}"), console=err)


def tag_bar() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("tag"), BarColumn(), MofNCompleteColumn(), TextColumn("items"),
                    TaskProgressColumn(), TextColumn("{task.fields[failed]}"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=err)


def train_fields(job: dict[str, Any]) -> dict[str, Any]:
    detail = job.get("detail") or {}
    loss, eta = detail.get("loss"), detail.get("eta_seconds")
    epoch = f"{detail['epoch']}/{detail['epochs']}" if detail.get("epoch") is not None and detail.get("epochs") else "-"
    return {"epoch": epoch, "loss": f"{loss:.4f}" if isinstance(loss, (int, float)) else "-",
            "eta": time.strftime("%H:%M:%S", time.gmtime(eta)) if isinstance(eta, (int, float)) else "-"}


def tag_fields(job: dict[str, Any]) -> dict[str, Any]:
    failed = job["progress"]["failed"]
    return {"failed": f"{failed} failed" if failed else ""}


def follow(session: Session, job: dict[str, Any]) -> dict[str, Any]:
    """Poll a job, drawing its bar, until it has ended; return it. Ctrl-C stops watching (the
    job goes on)."""
    bar, fields = (train_bar(), train_fields) if job["type"] == "train" else (tag_bar(), tag_fields)
    try:
        with bar:
            task = bar.add_task(job["type"], total=job["progress"]["total"] or None, **fields(job))
            while True:
                progress = job["progress"]
                bar.update(task, total=progress["total"] or None, completed=progress["done"] + progress["failed"],
                           **fields(job))
                if job["status"] in FINISHED:
                    return job
                time.sleep(POLL_SECONDS)
                job = session.client.job(job["id"])
    except KeyboardInterrupt:
        click.echo(f"\nstopped watching; job {job['id']} goes on: reftag jobs wait {job['id']}", err=True)
        sys.exit(130)


def describe_end(job: dict[str, Any]) -> None:
    if job["status"] == "failed" and job.get("error"):
        click.echo(f"error: {job['error'].get('message')} ({job['error'].get('code')})")
    if job["type"] == "train" and job["status"] == "succeeded":
        metrics = job.get("metrics") or {}
        state = "active" if metrics.get("activated") else "not active"
        click.echo(f"adapter v{job['adapter_version']} ({state}): held-out {score_line(metrics)}")
        if metrics.get("note"):
            click.echo(metrics["note"])


def finish(session: Session, job: dict[str, Any], output: str | None = None, output_format: str | None = None) -> None:
    """Report how a followed job ended; save a tag job's results; exit 1 unless it succeeded."""
    click.echo(f"{job['type']} job {job['id']} {job['status']}: {job_progress(job)}")
    describe_end(job)
    if job["type"] == "tag" and job["status"] != "failed":
        if output:
            save_results(session, job, output, output_format)
        elif job["status"] == "succeeded":
            click.echo(f"results: reftag jobs results {job['id']} -o results.jsonl")
    if job["status"] != "succeeded":
        sys.exit(1)


def save_results(session: Session, job: dict[str, Any], output: str, output_format: str | None = None) -> None:
    if job["type"] != "tag":
        fail(f"{job['id']} is a {job['type']} job; only tag jobs have results")
    file_format = output_format or files.result_format(output)
    if output == "-":
        for piece in session.client.export_results(job["id"], file_format):
            sys.stdout.buffer.write(piece)
        sys.stdout.buffer.flush()
        return
    path = Path(output)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:  # the API's bytes as they are: UTF-8
        for piece in session.client.export_results(job["id"], file_format):
            f.write(piece)
    partial.replace(path)  # a file named OUT is always complete
    if file_format not in files.SUMMARIZED:
        click.echo(f"wrote the results to {path} ({file_format})")
        return
    summary = files.summarize_results(path, file_format)
    show_summary(summary)
    click.echo(f"wrote {summary.items} results to {path}")


def show_summary(summary: files.ResultSummary) -> None:
    table = Table("label", "items", "share")
    answered = max(summary.items - summary.failed, 1)
    for label, count in summary.labels.most_common():
        table.add_row(plain(label), str(count), f"{count / answered:.1%}")
    out.print(table)
    notes = [f"{summary.needs_review} need review"] + ([f"{summary.failed} failed"] if summary.failed else [])
    click.echo(", ".join(notes))


def main() -> None:
    cli(prog_name="reftag")


if __name__ == "__main__":
    main()
