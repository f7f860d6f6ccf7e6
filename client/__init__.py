"""The `reftag` command-line client: an HTTP client of a reftag server and nothing more (it
imports neither the server's packages nor torch). `client.http.ReftagClient` is usable from
Python too."""
