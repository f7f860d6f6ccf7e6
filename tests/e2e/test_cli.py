"""The `reftag` console script, run as a user runs it (a subprocess, URL and key from the
environment, its own config file) against the running stack, on Chinese news titles with
Chinese label names: create → examples add → train --wait → tag --wait -o → jobs; and the
one-line errors for bad input."""
from __future__ import annotations

import csv
import json
import os
import re
import secrets
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from tests.cli_checks import ok, one_line_error

REFTAG = Path(sys.executable).parent / "reftag"
# Four of the fixture's categories under Chinese names (the fixture names them news_*).
LABELS = {"news_sports": "体育", "news_finance": "财经", "news_car": "汽车", "news_edu": "教育"}
TRAIN_PER_LABEL = 16
N_TAG = 60
BOX = set("┏┓┗┛┃│┳┻╇┡┩└┘┌┐┬┴┼╋")

sqlite_only = pytest.mark.parametrize("new_database", ["sqlite"], indirect=True)  # the CLI does not care


@pytest.fixture(scope="module")
def run(stack, tmp_path_factory):
    """run("label-sets", "create", ...) → the finished process (text out/err, UTF-8)."""
    home = tmp_path_factory.mktemp("cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFTAG_")}
    env.update(REFTAG_URL=stack.base_url, REFTAG_KEY=stack.api_key, REFTAG_CONFIG=str(home / "config.toml"),
               COLUMNS="150")

    def invoke(*args: str, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(REFTAG), *args], cwd=home, env={**env, **extra_env}, capture_output=True,
                              timeout=timeout, encoding="utf-8")

    invoke.home = home
    return invoke


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in text)


def table_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line[:1] in BOX]


def assert_aligned(output: str) -> None:
    """Every line of the table is as wide on screen as the others, and its column borders sit
    at the same screen columns: wide (CJK) characters were counted as two."""
    lines = table_lines(output)
    assert len(lines) >= 4, output
    columns = []
    for line in lines:
        borders, x = [], 0
        for char in line:
            if char in BOX:
                borders.append(x)
            x += display_width(char)
        columns.append((x, borders))
    assert len({width for width, _ in columns}) == 1, output
    body = [borders for _, borders in columns[1:-1]]  # between the top and bottom rules
    assert all(b == body[0] for b in body), output


@sqlite_only
def test_cli_session_from_label_set_to_results_in_chinese(run, news_zh):
    home: Path = run.home
    name = f"新闻分类-{secrets.token_hex(3)}"
    train_rows = [r for r in news_zh.train if r["label"] in LABELS]
    examples = []
    for label in LABELS:
        examples += [r for r in train_rows if r["label"] == label][:TRAIN_PER_LABEL]
    (home / "examples.jsonl").write_text(
        "".join(json.dumps({"text": r["text"], "label": LABELS[r["label"]]}, ensure_ascii=False) + "\n"
                for r in examples), encoding="utf-8")
    extra = [r for r in train_rows if r not in examples][:8]
    with open(home / "more.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([[r["text"], LABELS[r["label"]]] for r in extra + examples[:2]])  # 2 already sent
    to_tag = [r for r in news_zh.test if r["label"] in LABELS][:N_TAG]
    (home / "news.jsonl").write_text(
        "".join(json.dumps({"id": f"新闻-{i}", "text": r["text"]}, ensure_ascii=False) + "\n"
                for i, r in enumerate(to_tag)), encoding="utf-8")

    created = ok(run("label-sets", "create", name, "--labels", ",".join(LABELS.values())))
    assert f"created label set {name}" in created and "using" in created
    assert "label_set" in (home / "config.toml").read_text(encoding="utf-8")  # chosen for what follows

    assert f"added {len(examples)} examples" in ok(run("examples", "add", "examples.jsonl"))
    assert "added 8 examples" in (more := ok(run("examples", "add", "more.csv"))) and "2 duplicates" in more

    listed = ok(run("label-sets"))
    assert name in listed and str(len(examples) + 8) in listed
    assert_aligned(listed)

    trained = run("train", "-c", "epochs=2", "-c", "min_steps=0", "--wait")
    out = ok(trained)
    assert "succeeded" in out and "adapter v1 (active)" in out and "macro_f1" in out, out
    bar = trained.stderr.strip().splitlines()[-1]  # the bar's last state (stderr is not a terminal)
    assert "loss 0." in bar or "loss 1." in bar, trained.stderr
    assert "epoch" in bar and "steps" in bar, trained.stderr

    versions = ok(run("adapters"))
    assert any("v1" in line and "*" in line and "macro_f1" in line for line in versions.splitlines()), versions

    predicted = ok(run("predict", to_tag[0]["text"][:12], to_tag[1]["text"][:12]))
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table_lines(predicted) if "│" in line]
    assert [row[0] for row in rows] == [to_tag[0]["text"][:12], to_tag[1]["text"][:12]], predicted
    assert all(row[1] in LABELS.values() and 0 < float(row[2]) <= 1 for row in rows), predicted
    assert_aligned(predicted)

    shown = ok(run("label-sets", "show", name))
    assert all(label in shown for label in LABELS.values())
    assert "base model: multilingual-e5-small (auto)" in shown  # Chinese examples: "auto" chose it
    assert_aligned(shown)

    tagged = run("tag", "news.jsonl", "--wait", "-o", "结果.jsonl")
    out = ok(tagged)
    assert f"{N_TAG}/{N_TAG} items" in out and f"wrote {N_TAG} results" in out
    assert f"{N_TAG}/{N_TAG}" in tagged.stderr  # the bar over items, finished
    assert_aligned(out)  # the label summary
    raw = (home / "结果.jsonl").read_bytes()
    text = raw.decode("utf-8")  # UTF-8, Chinese as characters, not \u escapes
    assert "\\u" not in text and any(label.encode() in raw for label in LABELS.values())
    results = [json.loads(line) for line in text.splitlines()]
    assert [r["item_id"] for r in results] == [f"新闻-{i}" for i in range(N_TAG)]
    assert all(len(r["labels"]) == 1 and r["labels"][0] in LABELS.values() for r in results)
    assert all(set(r["scores"]) == set(LABELS.values()) for r in results)
    counts = {label: sum(r["labels"] == [label] for r in results) for label in LABELS.values()}
    for label, count in counts.items():  # the summary table tells the same counts
        if count:
            assert any(label in line and f" {count} " in line for line in out.splitlines()), (label, count, out)

    tag_job = re.search(r"job_[0-9a-f]{16}", out).group(0)
    as_csv = ok(run("jobs", "results", tag_job, "-o", "结果.csv"))
    assert f"wrote {N_TAG} results" in as_csv
    with open(home / "结果.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["item_id"] for r in rows] == [f"新闻-{i}" for i in range(N_TAG)]
    assert [r["labels"] for r in rows] == [r["labels"][0] for r in results]

    jobs = ok(run("jobs", "-l", name))
    job_lines = [line for line in jobs.splitlines() if "job_" in line]
    assert len(job_lines) == 2 and all("succeeded" in line and name in line for line in job_lines), jobs
    assert "tag" in job_lines[0] and "train" in job_lines[1]  # newest first
    assert f"{N_TAG}/{N_TAG} items" in job_lines[0]
    assert_aligned(jobs)


@sqlite_only
def test_cli_bad_input_is_one_clear_line_and_exit_1(run, stack):
    missing = one_line_error(run("train", "-l", "没有这个标签集"))
    assert "no label set named '没有这个标签集'" in missing

    unknown_id = one_line_error(run("label-sets", "show", "ls_0000000000000000"))
    assert "label set 'ls_0000000000000000' not found" in unknown_id and "404" in unknown_id

    bad_key = one_line_error(run("jobs", REFTAG_KEY="rt_not_a_key"))
    assert "API key is unknown or revoked" in bad_key and "401" in bad_key

    name = f"错误-{secrets.token_hex(3)}"
    ok(run("label-sets", "create", name, "--labels", "正面,负面"))
    (run.home / "bad.jsonl").write_text(json.dumps({"text": "很好", "label": "中性"}, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
    unknown_label = one_line_error(run("examples", "add", "bad.jsonl", "-l", name))
    assert "unknown labels: '中性'" in unknown_label and "422" in unknown_label
    untrained = one_line_error(run("tag", "bad.jsonl", "-l", name))
    assert "409" in untrained and "no_adapter" in untrained

    down = one_line_error(run("jobs", REFTAG_URL="http://127.0.0.1:9"))
    assert "cannot reach reftag at http://127.0.0.1:9" in down


def test_the_cli_imports_no_server_code():
    probe = ("import sys, client.cli; "
             "print(sorted({m.split('.')[0] for m in sys.modules} "
             "& {'api', 'store', 'workers', 'reft_core', 'torch'}))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert loaded.stdout.strip() == "[]"
