"""Keys on the running service: a key made with the CLI works at once, and once revoked with
the CLI it is refused by every web worker on the very next request (nothing caches keys)."""
from __future__ import annotations

import subprocess

import requests

from store.tenants import key_prefix
from tests.e2e.conftest import BIN, REPO


def reftag_cli(stack, *args: str) -> str:
    done = subprocess.run([str(BIN / "flask"), "--app", "api", "reftag", *args], cwd=REPO, env=stack.env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_revoked_key_is_refused_at_once(stack):
    key = reftag_cli(stack, "create-key", "--tenant", "default", "--name", "e2e-revoke").splitlines()[0].strip()
    client = requests.Session()
    client.headers["Authorization"] = f"Bearer {key}"
    url = f"{stack.base_url}/v1/label-sets"
    assert [client.get(url, timeout=30).status_code for _ in range(4)] == [200] * 4

    reftag_cli(stack, "revoke-key", key_prefix(key))
    answers = [client.get(url, timeout=30) for _ in range(8)]  # gunicorn runs 2 processes: both are asked
    assert [a.status_code for a in answers] == [401] * 8
    assert all(a.json()["error"]["code"] == "unauthorized" for a in answers)
    assert stack.client().get(url, timeout=30).status_code == 200  # other keys of the tenant still work
