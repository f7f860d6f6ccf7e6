"""The v1 HTTP API: label sets, examples and adapters; jobs and their results; synchronous
predictions (all under /v1, behind an API key), and the service's own endpoints (/healthz,
/openapi.json, /docs, /metrics)."""
