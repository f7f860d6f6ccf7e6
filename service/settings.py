"""Every setting reftag reads, in one place. Values come from the environment."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from reft_core.bases import ENGLISH_DEFAULT

ROOT = Path(__file__).resolve().parent.parent


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r}: use true or false")


@dataclass(frozen=True)
class Settings:
    database_url: str = field(
        default_factory=lambda: os.environ.get("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'reftag.db'}")
    )
    redis_url: str = field(default_factory=lambda: os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    # The base a label set's "auto" picks for Latin-script examples: a bundled base's name
    # (reft_core.bases: multilingual-e5-small, the default, or all-MiniLM-L6-v2, half the cost per
    # text) or a local Hugging Face model directory, which workers then offer beside the bundled bases.
    english_base: str = field(default_factory=lambda: os.environ.get("BASE_MODEL") or ENGLISH_DEFAULT)
    device: str = field(default_factory=lambda: os.environ.get("DEVICE", "auto"))
    bootstrap_api_key: str | None = field(default_factory=lambda: os.environ.get("REFTAG_API_KEY") or None)
    # "development" lets a trial run bootstrap a short REFTAG_API_KEY (docs/api.md, "Bootstrap");
    # anything else, the default included, is a deployment.
    environment: str = field(default_factory=lambda: os.environ.get("REFTAG_ENV", "production").strip().lower())

    # Limits at the edge (documented in docs/api.md).
    max_body_bytes: int = field(default_factory=lambda: _int("REFTAG_MAX_BODY_BYTES", 32 * 1024 * 1024))
    max_text_chars: int = field(default_factory=lambda: _int("REFTAG_MAX_TEXT_CHARS", 20_000))
    max_job_items: int = field(default_factory=lambda: _int("REFTAG_MAX_JOB_ITEMS", 100_000))
    max_examples_per_request: int = field(default_factory=lambda: _int("REFTAG_MAX_EXAMPLES", 50_000))
    max_predict_items: int = field(default_factory=lambda: _int("REFTAG_MAX_PREDICT_ITEMS", 64))
    # Items a tenant's unfinished tag jobs may hold without a result; a job past it answers 429.
    max_queued_items_per_tenant: int = field(
        default_factory=lambda: _int("REFTAG_MAX_QUEUED_ITEMS_PER_TENANT", 1_000_000))
    max_labels: int = field(default_factory=lambda: _int("REFTAG_MAX_LABELS", 1_000))
    min_examples_per_label: int = field(default_factory=lambda: _int("REFTAG_MIN_EXAMPLES_PER_LABEL", 1))

    # Work splitting and leases.
    chunk_size: int = field(default_factory=lambda: _int("REFTAG_CHUNK_SIZE", 256))
    # A tag worker renews its chunk's lease every quarter of it (a heartbeat): a dead worker's
    # chunk is taken over within a lease length.
    chunk_lease_seconds: float = field(default_factory=lambda: _float("REFTAG_CHUNK_LEASE_SECONDS", 15))
    train_lease_seconds: float = field(default_factory=lambda: _float("REFTAG_TRAIN_LEASE_SECONDS", 60))
    max_attempts: int = field(default_factory=lambda: _int("REFTAG_MAX_ATTEMPTS", 5))
    # A train or audit job whose training has reported progress and then reports none for this
    # long is presumed stuck (a deadlock: its heartbeat thread alone would keep it "running" for
    # good) and queued again for another attempt (workers.train_lease.Heartbeat).
    train_stall_seconds: float = field(default_factory=lambda: _float("REFTAG_TRAIN_STALL_SECONDS", 1800))
    # How often the reconciler looks for lost work: a dead tag worker's chunk is taken over at
    # most this long after its lease ran out (sooner when another token comes first).
    reconcile_interval: float = field(default_factory=lambda: _float("REFTAG_RECONCILE_INTERVAL", 5))
    predict_timeout: float = field(default_factory=lambda: _float("REFTAG_PREDICT_TIMEOUT", 30))
    # A Label Studio /predict of more tasks than this runs as a tag job (chunks on the `tag`
    # queue), so one project's "Retrieve predictions" cannot fill the shared `predict` queue.
    predict_via_tag_above: int = field(default_factory=lambda: _int("REFTAG_PREDICT_VIA_TAG_ABOVE", 256))

    # Label Studio connections (docs/api.md, "Label Studio connection"): the hosts reftag may
    # fetch annotations from — an operator's list, since a tenant names the URL (comma-separated
    # host names or addresses; default: this machine only) — and how long one request may take.
    label_studio_hosts: tuple[str, ...] = field(default_factory=lambda: tuple(
        h.strip().lower().strip("[]") for h in os.environ.get("REFTAG_LABEL_STUDIO_HOSTS", "127.0.0.1,localhost,::1")
        .split(",") if h.strip()))
    label_studio_timeout: float = field(default_factory=lambda: _float("REFTAG_LABEL_STUDIO_TIMEOUT", 30))

    # Operations (README: "Operations"). json: one object per line; text: for people.
    log_format: str = field(default_factory=lambda: os.environ.get("LOG_FORMAT", "json"))
    # When set, GET /metrics wants `Authorization: Bearer <token>`; unset, it is public.
    metrics_token: str | None = field(default_factory=lambda: os.environ.get("REFTAG_METRICS_TOKEN") or None)

    # Signs the dashboard's session cookie. Production: set REFTAG_SECRET_KEY to a long random
    # string, the same on every web server. Unset: `dashboard_secret_key()` makes one in var/.
    secret_key: str | None = field(default_factory=lambda: os.environ.get("REFTAG_SECRET_KEY") or None, repr=False)
    # The address people reach this service at (e.g. https://reftag.example.com), when a proxy
    # stands in front: the dashboard accepts form posts from its origin (besides the Host asked).
    base_url: str | None = field(default_factory=lambda: os.environ.get("REFTAG_BASE_URL", "").rstrip("/") or None)
    # The dashboard's cookies are sent over HTTPS only (`Secure`). Default: on when base_url is https.
    cookie_secure: bool = field(default_factory=lambda: _flag(
        "REFTAG_COOKIE_SECURE", os.environ.get("REFTAG_BASE_URL", "").lower().startswith("https://")))


def get_settings() -> Settings:
    return Settings()


def dashboard_secret_key(settings: Settings, path: Path = ROOT / "var" / "secret-key") -> str:
    """REFTAG_SECRET_KEY, else the embedded default: a random key made once and kept in
    var/secret-key (never a constant, which anyone could use to forge a session), so that
    every web process of this checkout signs alike and a restart keeps people signed in."""
    if settings.secret_key:
        return settings.secret_key
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, secrets.token_hex(32).encode())
        os.close(fd)
        try:
            os.link(draft, path)  # atomic, and fails if another process made it first: theirs wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()
