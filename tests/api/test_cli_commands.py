"""`flask reftag ...`: tenants, keys and the idempotent bootstrap that `make run` uses."""
import pytest
from sqlalchemy import select

from api import cli as reftag_cli
from store import tenants
from store.models import ApiKey, Tenant


@pytest.fixture
def runner(app, tmp_path, monkeypatch):
    monkeypatch.setattr(reftag_cli, "DEV_KEY_FILE", tmp_path / "var" / "dev-api-key")
    monkeypatch.delenv("REFTAG_API_KEY", raising=False)
    monkeypatch.delenv("REFTAG_ENV", raising=False)
    return app.test_cli_runner()


def test_create_tenant_then_key_then_revoke(runner, client):
    assert runner.invoke(args=["reftag", "create-tenant", "acme"]).exit_code == 0
    again = runner.invoke(args=["reftag", "create-tenant", "acme"])
    assert again.exit_code != 0 and "already exists" in again.output
    result = runner.invoke(args=["reftag", "create-key", "--tenant", "acme"])
    assert result.exit_code == 0
    raw_key = result.stdout.strip().splitlines()[0]
    headers = {"Authorization": f"Bearer {raw_key}"}
    assert client.get("/v1/label-sets", headers=headers).status_code == 200
    revoked = runner.invoke(args=["reftag", "revoke-key", tenants.key_prefix(raw_key)])
    assert revoked.exit_code == 0
    assert client.get("/v1/label-sets", headers=headers).status_code == 401


def test_create_key_for_unknown_tenant_fails(runner):
    result = runner.invoke(args=["reftag", "create-key", "--tenant", "nobody"])
    assert result.exit_code != 0 and "no tenant named" in result.output


def test_bootstrap_creates_one_dev_key_and_is_idempotent(runner, client, db):
    first = runner.invoke(args=["reftag", "bootstrap"])
    assert first.exit_code == 0, first.output
    dev_key = reftag_cli.DEV_KEY_FILE.read_text().strip()
    assert f"dev API key: {dev_key}" in first.output
    second = runner.invoke(args=["reftag", "bootstrap"])
    assert second.exit_code == 0 and f"dev API key: {dev_key}" in second.output
    with db() as session:
        tenants = session.scalars(select(Tenant)).all()
        assert [t.name for t in tenants] == ["default"]
        assert len(session.scalars(select(ApiKey)).all()) == 1
    assert client.get("/v1/label-sets", headers={"Authorization": f"Bearer {dev_key}"}).status_code == 200


DEPLOY_KEY = "deploy-secret-0123456789abcdef"  # 30 characters


def test_bootstrap_makes_reftag_api_key_a_key_of_default(runner, client, monkeypatch, db):
    monkeypatch.setenv("REFTAG_API_KEY", DEPLOY_KEY)
    for _ in range(2):
        result = runner.invoke(args=["reftag", "bootstrap"])
        assert result.exit_code == 0, result.output
    assert not reftag_cli.DEV_KEY_FILE.exists()
    with db() as session:
        keys = session.scalars(select(ApiKey)).all()
        assert len(keys) == 1 and keys[0].key_hash != DEPLOY_KEY
    assert client.get("/v1/label-sets", headers={"Authorization": f"Bearer {DEPLOY_KEY}"}).status_code == 200


def test_bootstrap_never_revives_a_revoked_key(runner, client, monkeypatch):
    """A key revoked while REFTAG_API_KEY still names it stays revoked at the next `make run`:
    bootstrap says so and fails, and the service does not start on it."""
    monkeypatch.setenv("REFTAG_API_KEY", DEPLOY_KEY)
    assert runner.invoke(args=["reftag", "bootstrap"]).exit_code == 0
    assert runner.invoke(args=["reftag", "revoke-key", tenants.key_prefix(DEPLOY_KEY)]).exit_code == 0
    again = runner.invoke(args=["reftag", "bootstrap"])
    assert again.exit_code == 1
    assert "REFTAG_API_KEY" in again.stderr and "revoked" in again.stderr and again.stdout == ""
    assert client.get("/v1/label-sets", headers={"Authorization": f"Bearer {DEPLOY_KEY}"}).status_code == 401


@pytest.mark.parametrize("key", ["secret", "a" * 23])
def test_bootstrap_refuses_a_short_key_unless_in_development(runner, client, monkeypatch, db, key):
    monkeypatch.setenv("REFTAG_API_KEY", key)
    refused = runner.invoke(args=["reftag", "bootstrap"])
    assert refused.exit_code == 1
    assert f"REFTAG_API_KEY has {len(key)} characters" in refused.stderr and "at least 24" in refused.stderr
    with db() as session:
        assert session.scalars(select(ApiKey)).all() == []
    monkeypatch.setenv("REFTAG_ENV", "development")
    assert runner.invoke(args=["reftag", "bootstrap"]).exit_code == 0
    assert client.get("/v1/label-sets", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_bootstrap_without_reftag_api_key_makes_a_long_key(runner):
    assert runner.invoke(args=["reftag", "bootstrap"]).exit_code == 0
    assert len(reftag_cli.DEV_KEY_FILE.read_text().strip()) >= reftag_cli.MIN_BOOTSTRAP_KEY_CHARS
