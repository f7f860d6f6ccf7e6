"""Guards where a second copy of a list could creep back: each concept that several packages
need is defined once (docs/internals.md, "One definition per concept")."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from store.models import ChunkStatus, JobStatus, JobType

REPO = Path(__file__).resolve().parents[1]
STATUS_WORDS = {str(s) for s in (*JobStatus, *ChunkStatus, *JobType)}


def status_literals(path: Path) -> list[tuple[int, str]]:
    """String constants that are status or job-type words used as such: compared with, tested
    for membership in, assigned to a `status`/`type`, or passed as `status=`/`type=`. Enum
    members' own definitions are what they compare with, and are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and node.value in STATUS_WORDS):
            continue
        parent = parents.get(node)
        while isinstance(parent, (ast.Tuple, ast.List, ast.Set)):
            parent = parents.get(parent)
        used_as_status = (
            isinstance(parent, ast.Compare)
            or (isinstance(parent, ast.keyword) and parent.arg in ("status", "type", "job_type"))
            or (isinstance(parent, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr in ("status", "type")
                                                       for t in parent.targets))
        )
        if used_as_status:
            found.append((node.lineno, node.value))
    return found


def test_statuses_are_enums_not_string_literals():
    offenders = {str(path.relative_to(REPO)): hits for folder in ("store", "api", "workers")
                 for path in sorted((REPO / folder).rglob("*.py")) if (hits := status_literals(path))}
    assert offenders == {}, "use store.models.JobStatus / ChunkStatus / JobType"


def test_the_guard_sees_a_status_literal(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('if job.status == "running":\n    chunk.status = "done"\nlist_jobs(s, t, status="failed")\n'
                      'x = {"done": 1}\n')
    assert status_literals(sample) == [(1, "running"), (2, "done"), (3, "failed")]


def test_the_torch_free_intervention_names_are_the_registry():
    from reft_core.config import INTERVENTIONS
    from reft_core.interventions import REGISTRY

    assert list(INTERVENTIONS) == list(REGISTRY)


def test_the_format_table_is_the_only_list_of_formats(client):
    from api import interop

    document = client.get("/openapi.json").get_json()
    examples = document["paths"]["/v1/label-sets/{label_set_id}/examples"]["post"]["parameters"]
    results = document["paths"]["/v1/jobs/{job_id}/results"]["get"]["parameters"]
    example_enum = next(p for p in examples if p["name"] == "format")["schema"]["anyOf"][0]["enum"]
    result_enum = next(p for p in results if p["name"] == "format")["schema"]["enum"]
    assert example_enum == [name for name, f in interop.FORMATS.items() if f.read]
    assert result_enum == ["json", *(name for name, f in interop.FORMATS.items() if f.write)]


@pytest.mark.parametrize("multi_label, metric", [(False, "macro_f1"), (True, "micro_f1")])
def test_early_stopping_and_promotion_compare_the_same_metric(multi_label, metric):
    from reft_core import metrics
    from reft_core.config import main_metric

    assert main_metric(multi_label) == metric
    scores = {"macro_f1": 0.1, "micro_f1": 0.2}
    assert metrics.main_score(scores, multi_label) == scores[metric]
