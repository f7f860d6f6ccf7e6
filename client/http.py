"""reftag's HTTP API as Python calls: one method per endpoint the CLI uses, JSON in and out.

An error answer becomes `ApiError` carrying the API's own message (`{"error": {"code",
"message"}}`), and a server that cannot be reached becomes one too, so a caller has one thing
to catch and one line to show.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import requests

USER_AGENT = "reftag-cli/0.1"
# Statuses worth sending the same request again for: the broker was down (503, nothing was
# stored), or a proxy in front timed out.
RETRY_STATUSES = (502, 503, 504)


class ApiError(Exception):
    """An error answer (status, code and message from the API) or no answer at all (status 0)."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or []

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status} {self.code})" if self.status else self.message


class ReftagClient:
    def __init__(self, url: str, key: str | None, timeout: float = 60.0, retries: int = 3) -> None:
        self.url = url.rstrip("/")
        self.timeout, self.retries = timeout, retries
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    # --- transport ------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, retry: bool = False, stream: bool = False,
                **kwargs: Any) -> requests.Response:
        """One call; an error answer raises ApiError. With `retry` (safe requests: reads, and
        submissions that carry an Idempotency-Key) a lost connection or a 502/503/504 is tried
        again, waiting Retry-After when the server gives one."""
        attempts = self.retries if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self.session.request(method, self.url + path, timeout=self.timeout, stream=stream, **kwargs)
            except requests.ConnectionError as e:
                if attempt < attempts:
                    time.sleep(0.5 * attempt)
                    continue
                raise ApiError(0, "unreachable", f"cannot reach reftag at {self.url}: {_reason(e)}") from None
            except requests.Timeout:
                if attempt < attempts:
                    continue
                raise ApiError(0, "timeout", f"reftag at {self.url} did not answer within {self.timeout:g} s") from None
            if response.status_code in RETRY_STATUSES and attempt < attempts:
                time.sleep(_retry_after(response, default=attempt))
                continue
            if response.status_code >= 400:
                raise _api_error(response)
            return response
        raise AssertionError("unreachable")

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean, retry=True).json()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs).json()

    # --- label sets -------------------------------------------------------------------------------

    def label_sets(self) -> list[dict[str, Any]]:
        return self.get("/v1/label-sets")["label_sets"]

    def label_set(self, label_set_id: str) -> dict[str, Any]:
        return self.get(f"/v1/label-sets/{label_set_id}")

    def create_label_set(self, name: str, labels: list[str], multi_label: bool = False,
                         base_model: str | None = None, kind: str = "classification") -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "kind": kind, "multi_label": multi_label,
                                "labels": [{"name": label} for label in labels]}
        if base_model is not None:
            body["base_model"] = base_model
        return self.post("/v1/label-sets", body)

    def set_base_model(self, label_set_id: str, base_model: str) -> dict[str, Any]:
        return self.request("PATCH", f"/v1/label-sets/{label_set_id}", json={"base_model": base_model}).json()

    def base_models(self) -> list[dict[str, Any]]:
        return self.get("/v1/base-models")["base_models"]

    def add_examples(self, label_set_id: str, body: bytes, content_type: str,
                     file_format: str | None) -> dict[str, Any]:
        """Upload a file as it is: the API reads JSON, JSONL, CSV (and whatever `format` names)."""
        params = {"format": file_format} if file_format else None
        return self.request("POST", f"/v1/label-sets/{label_set_id}/examples", data=body, params=params,
                            headers={"Content-Type": content_type}).json()

    def train(self, label_set_id: str, config: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The train job, and whether this request made it (202) rather than joining the one
        already queued for the set (200: train requests coalesce)."""
        response = self.request("POST", f"/v1/label-sets/{label_set_id}/train",
                                json={"config": config} if config else {})
        return response.json(), response.status_code == 202

    def adapters(self, label_set_id: str) -> dict[str, Any]:
        return self.get(f"/v1/label-sets/{label_set_id}/adapters")

    def activate(self, label_set_id: str, version: int) -> dict[str, Any]:
        return self.post(f"/v1/label-sets/{label_set_id}/adapters/{version}/activate")

    # --- jobs -------------------------------------------------------------------------------------

    def submit_tag_job(self, label_set_id: str, items: list[dict[str, Any]], adapter_version: int | None = None,
                       idempotency_key: str | None = None) -> dict[str, Any]:
        """A tag job. The Idempotency-Key (a fresh one unless given) makes it safe to send
        again after a lost answer: the server returns the job it already made."""
        body: dict[str, Any] = {"label_set_id": label_set_id, "items": items}
        if adapter_version is not None:
            body["adapter_version"] = adapter_version
        key = idempotency_key or f"reftag-cli-{uuid.uuid4()}"
        return self.request("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key}, retry=True).json()

    def jobs(self, label_set_id: str | None = None, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return self.get("/v1/jobs", label_set_id=label_set_id, status=status, limit=limit)["jobs"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.get(f"/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.post(f"/v1/jobs/{job_id}/cancel")

    def export_results(self, job_id: str, file_format: str = "jsonl") -> Iterator[bytes]:
        """Every result as the API streams it (JSONL or CSV, UTF-8 bytes), in pieces."""
        response = self.request("GET", f"/v1/jobs/{job_id}/results", params={"format": file_format},
                                retry=True, stream=True)
        with response:
            yield from response.iter_content(chunk_size=64 * 1024)

    def predict(self, label_set_id: str, texts: list[str]) -> list[dict[str, Any]]:
        return self.post("/v1/predict", {"label_set_id": label_set_id,
                                         "items": [{"text": t} for t in texts]})["results"]


def _api_error(response: requests.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, error["code"], error["message"], error.get("details"))
    except (ValueError, KeyError, TypeError):
        # Not reftag's error shape: a proxy, or not a reftag server at this URL.
        text = " ".join(response.text.split())[:200] or response.reason
        return ApiError(response.status_code, "http_error", f"unexpected answer from {response.url}: {text}")


def _retry_after(response: requests.Response, default: float) -> float:
    try:
        return min(float(response.headers.get("Retry-After", default)), 30.0)
    except ValueError:
        return default


def _reason(error: requests.ConnectionError) -> str:
    text = str(error)
    for known in ("Connection refused", "Name or service not known", "No route to host", "timed out"):
        if known in text:
            return known.lower()
    return text[:200]
