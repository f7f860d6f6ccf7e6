"""`flask --app api reftag ...`: tenants and API keys, the bootstrap `make run` calls, and the
scheduled pull of Label Studio annotations."""
from __future__ import annotations

import click
from flask import current_app, g
from flask.cli import AppGroup

from service.settings import ROOT, get_settings
from store import label_studio, tenants
from store.errors import StoreError
from store.migrate import upgrade

from . import broker
from .db import read_transaction, transaction
from .interop import label_studio_pull

cli = AppGroup("reftag", help="Manage reftag tenants and API keys.")
DEFAULT_TENANT = "default"
DEV_KEY_FILE = ROOT / "var" / "dev-api-key"
MIN_BOOTSTRAP_KEY_CHARS = 24


def fail(error: StoreError) -> None:
    raise click.ClickException(error.message)


@cli.command("migrate")
def migrate_command() -> None:
    """Bring the database to the newest schema."""
    upgrade(current_app.config["REFTAG_SETTINGS"].database_url)


@cli.command("create-tenant")
@click.argument("name")
def create_tenant_command(name: str) -> None:
    """Create the tenant NAME."""
    try:
        with transaction() as session:
            tenant = tenants.create_tenant(session, name)
    except StoreError as e:
        fail(e)
    click.echo(f"created tenant {tenant.name} ({tenant.id})")


@cli.command("create-key")
@click.option("--tenant", "tenant_name", required=True, help="tenant name")
@click.option("--name", default="", help="a note to tell keys apart")
def create_key_command(tenant_name: str, name: str) -> None:
    """Create an API key and print it. It is shown this once: only its hash is stored."""
    with transaction() as session:
        tenant = tenants.tenant_by_name(session, tenant_name)
        if tenant is None:
            raise click.ClickException(f"no tenant named {tenant_name!r}; create it with `reftag create-tenant`")
        key, raw_key = tenants.create_api_key(session, tenant.id, name)
    click.echo(raw_key)
    click.echo(f"(prefix {key.prefix}; store it now, it cannot be shown again)", err=True)


@cli.command("revoke-key")
@click.argument("prefix")
def revoke_key_command(prefix: str) -> None:
    """Revoke the live key whose prefix is PREFIX; it stops working at once."""
    try:
        with transaction() as session:
            tenants.revoke_api_key(session, prefix)
    except StoreError as e:
        fail(e)
    click.echo(f"revoked key {prefix}")


@cli.command("bootstrap")
def bootstrap_command() -> None:
    """Migrate, ensure the tenant `default`, and give it a key: REFTAG_API_KEY when set, else a
    development key (printed, and kept in var/dev-api-key) if it has none. Safe to rerun.
    Refuses (exit 1) a REFTAG_API_KEY that was revoked — it stays revoked — and one shorter than
    24 characters unless REFTAG_ENV=development."""
    settings = current_app.config["REFTAG_SETTINGS"]
    now = get_settings()  # REFTAG_API_KEY and REFTAG_ENV as they are now
    bootstrap_key = now.bootstrap_api_key
    if bootstrap_key and len(bootstrap_key) < MIN_BOOTSTRAP_KEY_CHARS and now.environment != "development":
        raise click.ClickException(
            f"REFTAG_API_KEY has {len(bootstrap_key)} characters; a deployment's key needs at least "
            f"{MIN_BOOTSTRAP_KEY_CHARS} (make one with "
            "`python -c \"import secrets; print(secrets.token_urlsafe(32))\"`, or unset it for a generated key; "
            "REFTAG_ENV=development allows a short one on a trial machine)")
    upgrade(settings.database_url)
    try:
        with transaction() as session:
            tenant = tenants.ensure_tenant(session, DEFAULT_TENANT)
            if bootstrap_key:
                try:
                    tenants.ensure_api_key(session, tenant.id, bootstrap_key, name="REFTAG_API_KEY")
                except StoreError as e:
                    raise click.ClickException(f"REFTAG_API_KEY: {e.message}; unset it or set a new key") from None
                click.echo("REFTAG_API_KEY is a valid key of tenant `default`")
                return
            if tenants.live_key_count(session, tenant.id):
                dev_key = DEV_KEY_FILE.read_text().strip() if DEV_KEY_FILE.exists() else None
                if dev_key and tenants.tenant_id_for_key(session, dev_key):
                    click.echo(f"dev API key: {dev_key}")
                else:
                    click.echo("tenant `default` already has API keys")
                return
            _key, raw_key = tenants.create_api_key(session, tenant.id, name="dev")
    except StoreError as e:
        fail(e)
    DEV_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    DEV_KEY_FILE.write_text(raw_key + "\n")
    DEV_KEY_FILE.chmod(0o600)
    click.echo(f"dev API key: {raw_key}")


@cli.command("pull-label-studio")
def pull_label_studio_command() -> None:
    """Pull the annotations of every label set connected to a Label Studio project (train requests
    pull on their own; run this from cron, e.g. every 10 minutes, so that examples follow
    Label Studio between trainings too). Exit status 1 when any pull failed."""
    with read_transaction() as session:
        connected = label_studio.every_connection(session)
    failed = 0
    for tenant_id, label_set_id in connected:
        g.tenant_id = tenant_id
        try:
            outcome = label_studio_pull.pull(label_set_id) or {}
        except label_studio_pull.PullFailed as e:
            failed += 1
            click.echo(f"{label_set_id}: {e.message}", err=True)
            continue
        retrain = broker.retrain_if_due(tenant_id, label_set_id) if outcome.get("added") or outcome.get("relabelled") \
            else None
        click.echo(f"{label_set_id}: {outcome['added']} added, {outcome['relabelled']} relabelled, "
                   f"{outcome['removed']} removed, {outcome['unchanged']} unchanged"
                   + (f"; due for retraining: train job {retrain} queued" if retrain else ""))
    if failed:
        raise click.ClickException(f"{failed} of {len(connected)} pulls failed")
