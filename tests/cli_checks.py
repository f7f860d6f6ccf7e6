"""What a CLI test checks of a `reftag` run (tests/e2e/test_cli.py, tests/client/test_cli_on_the_api.py)."""
from __future__ import annotations

import subprocess


def ok(process: subprocess.CompletedProcess) -> str:
    assert process.returncode == 0, f"exit {process.returncode}\nstdout:\n{process.stdout}\nstderr:\n{process.stderr}"
    return process.stdout


def one_line_error(process: subprocess.CompletedProcess) -> str:
    assert process.returncode == 1, f"exit {process.returncode}\nstdout:\n{process.stdout}\nstderr:\n{process.stderr}"
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), process.stderr
    return lines[0]
