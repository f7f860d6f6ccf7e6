"""Keeps bench/accuracy.py, bench/speed.py and bench/sweep.py from rotting: every path, on a few rows.

Numbers are not checked (a handful of rows, one epoch); shapes, keys and the tables are. The
benchmarks read the team's shared data sets; here they read the test fixtures instead
(news_en stands in for a single-label set, goemotions_sample for a multi-label one).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import accuracy, common, data, speed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SINGLE, MULTI = "news_en", "goemotions_sample"


@pytest.fixture(autouse=True)
def fixture_data(monkeypatch):
    monkeypatch.setattr(data, "DATA_DIR", FIXTURES)
    monkeypatch.setattr(speed, "CORPUS", (SINGLE, MULTI))
    monkeypatch.setattr(speed, "TRAIN_SET", SINGLE)


def test_a_missing_data_set_says_where_benchmark_data_comes_from(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    with pytest.raises(data.DataMissing, match=r"shared/data beside the checkout.*REFTAG_DATA_DIR"):
        common.load_dataset("sst2", 10, 10)


@pytest.fixture(scope="module")
def base():
    from reft_core import load_base

    return load_base(device="cpu")


@pytest.fixture(autouse=True)
def out_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "OUT_DIR", tmp_path)
    return tmp_path


@pytest.mark.parametrize("name, methods", [(SINGLE, ["probe", "red"]), (MULTI, ["probe", "loreft"])])
def test_accuracy_methods_report_metrics_params_and_time(base, name, methods):
    data = common.load_dataset(name, 32, 8)
    results = {name: {m: accuracy.run_method(m, base, data, epochs=1) for m in methods}}
    for r in results[name].values():
        expected = {"accuracy", "micro_f1", "macro_f1"} if data.multi_label else {"accuracy", "macro_f1"}
        assert set(r["metrics"]) == expected
        assert all(0.0 <= v <= 1.0 for v in r["metrics"].values())
        assert r["params"]["head"] == (base.hidden_size + 1) * len(data.names) and r["train_seconds"] > 0
    assert "probe" in accuracy.table(results) and len(accuracy.table(results).splitlines()) == 2 + len(methods)


def test_accuracy_quick_flags():
    args = accuracy.parse_args(["--quick", "--data", SINGLE, "--methods", "probe"])
    assert (args.train_rows, args.test_rows, args.epochs) == (200, 100, 1)
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--methods", "nope"])


def test_lora_and_full_baselines_train_what_they_should(base):
    data = common.load_dataset(SINGLE, 16, 1)
    tuned = common.finetune(base, "lora", data.train.texts, data.targets(data.train), 4, False, epochs=1)
    # r=8 on query and value of 6 layers: 6 × 2 × 8 × (384 + 384); the head is 384 × 4 + 4 (four labels)
    assert tuned.params == {"adapter": 6 * 2 * 8 * 768, "head": 1540, "total": 6 * 2 * 8 * 768 + 1540}
    assert tuned.epochs_run == 1 and not any(p.requires_grad for p in base.model.parameters())
    full = common.full_encoder(base)
    trainable = sum(p.numel() for p in full.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in base.model.parameters())


def test_speed_parts_give_their_ratios(base, out_dir):
    corpus = speed.mixed_corpus(12)
    results = {"train": speed.part_train(base, 16, 1, with_pyreft=False),
               "tag": speed.part_tag(base, corpus, repeats=1),
               "mixed": speed.part_mixed(base, corpus[:6], n_adapters=2, repeats=1),
               "memory": speed.part_memory(base, n_adapters=3, n_texts=4)}
    assert set(results["train"]["seconds"]) == {"loreft_cached", "loreft_uncached", "loreft_pyreft_way", "lora_r8"}
    assert all(v > 0 for r in ("train", "tag", "mixed") for v in results[r]["ratios"].values())
    assert results["memory"]["adapters"] == 3
    assert len(speed.table(results).splitlines()) == 2 + sum(len(r["ratios"]) for r in results.values())


def test_sweep_runs_each_configuration_once_per_seed_and_averages(out_dir, monkeypatch):
    from bench import sweep

    monkeypatch.setattr(sweep, "OUT_DIR", out_dir)
    results = sweep.main(["--data", SINGLE, "--train-rows", "40", "--test-rows", "8", "--seeds", "0,1",
                          "--configs", '[{"epochs": 1, "intervention": "red"}]'])
    assert [r["config"]["seed"] for r in results] == [0, 1]
    assert len((out_dir / "sweep.jsonl").read_text().splitlines()) == 2
    table = sweep.summary(results).splitlines()
    assert len(table) == 3 and "| 2 |" in table[2] and " ± " in table[2]


def test_accuracy_seeds_run_every_method_per_seed_and_report_the_spread():
    payload = accuracy.main(["--quick", "--data", SINGLE, "--methods", "probe,red", "--seeds", "0,1",
                             "--train-rows", "60", "--test-rows", "20"])
    red = payload["results"][SINGLE]["red"]
    assert [r["seed"] for r in red["by_seed"]] == [0, 1] and red["seed"] == 0
    assert all(0 <= r["score"] <= 1 for r in red["by_seed"])
    rows = accuracy.table(payload["results"]).splitlines()[2:]
    assert all(" ± " in row and "(2)" in row for row in rows)


def test_loop_active_and_audit_cells_have_their_shape(tmp_path, monkeypatch):
    """bench/loop.py's issue-17 scenarios at a tiny size (one round, one epoch, no step floor):
    one cell per strategy with the whole curve, one audit cell with both methods, and the tables."""
    import torch

    from bench import loop

    quick = {"epochs": 1, "min_steps": 0}
    real_train, real_audit = loop.train, loop.audit
    monkeypatch.setattr(loop, "train", lambda *a, config, **k: real_train(*a, config={**config, **quick}, **k))
    monkeypatch.setattr(loop, "audit", lambda *a, config, **k: real_audit(*a, config={**config, **quick}, **k))
    results, threads = tmp_path / "loop.jsonl", torch.get_num_threads()
    argv = ["--scenario", "audit,active", "--data", SINGLE, "--seeds", "0", "--train-rows", "120", "--test-rows",
            "40", "--rounds", "1", "--results", str(results)]
    try:
        cells = loop.main(argv + ["--resume"])
        assert loop.main(argv + ["--resume"]) == []  # every cell is there: nothing runs again
    finally:
        torch.set_num_threads(threads)
    assert [(c["scenario"], c.get("strategy") or c.get("variant")) for c in cells] == [
        ("audit", "default"), ("active", "suggest"), ("active", "random")]
    audit_cell, suggest, random_ = (c["result"] for c in cells)
    assert audit_cell["n"] == 120 and audit_cell["flipped"] == 12
    for method in ("reftag", "cleanlab_tfidf_logreg"):
        r = audit_cell[method]
        assert all(0 <= r[k] <= 1 for k in ("precision", "recall", "f1")) and r["seconds"] >= 0
        assert r["hits"] <= min(r["flagged"], 12)
    for r in (suggest, random_):
        assert [p["round"] for p in r["curve"]] == [0, 1] and [p["n"] for p in r["curve"]] == [32, 72]
        assert all(0 <= p["accuracy"] <= 1 for p in r["curve"]) and len(set(r["picked"][0])) == 40
        assert not set(r["picked"][0]) & set(r["start"])  # picks come from the unlabelled rest of the pool
    assert suggest["curve"][0] == random_["curve"][0]  # round 0 is shared
    table = loop.tables(loop.read_results(results))
    from reft_core.selection import DEFAULT_STRATEGY

    assert f"| {DEFAULT_STRATEGY} | 1 |" in table and "| random | 1 |" in table and "reftag audit" in table
    assert "by round 1" in table and "precision ≥ 0.8" in table


def test_fewshot_samples_k_per_label_runs_contenders_and_resumes(tmp_path, monkeypatch):
    """bench/fewshot.py at a tiny size: K rows per label (multi-label: until every label has K),
    one cell per contender and seed appended to the results file, --resume runs nothing twice, and
    the table carries the full-data row of the base it was measured on."""
    from collections import Counter

    import torch

    from bench import fewshot

    single = fewshot.sample(SINGLE, 3, seed=0, test_rows=10)
    assert set(Counter(single.train.labels).values()) == {3} and len(single.test.texts) == 10
    assert fewshot.sample(SINGLE, 3, seed=1, test_rows=10).train.texts != single.train.texts
    multi = fewshot.sample(MULTI, 2, seed=0, test_rows=10)
    counts = Counter(label for labels in multi.train.labels for label in labels)
    pool = data.read_jsonl(MULTI, "train")
    available = Counter(label for row in pool for label in row["labels"])
    # The fixture lacks a few rare emotions (0-1 rows): every label gets K or all the rows it has.
    assert multi.multi_label and all(counts[name] >= min(2, available[name]) for name in multi.names)
    assert len(multi.train.texts) < len(pool)

    monkeypatch.setattr(fewshot, "RESULTS", tmp_path / "fewshot.jsonl")
    monkeypatch.setattr(fewshot, "FULL_DATA", {**fewshot.FULL_DATA, (fewshot.MINILM, SINGLE): "0.9 (made up)"})
    argv = ["--data", SINGLE, "--k", "2,4", "--seeds", "0", "--contenders", "probe", "--test-rows", "12",
            "--resume"]
    threads = torch.get_num_threads()
    try:
        cells = fewshot.main(argv)
        assert fewshot.main(argv) == []  # every cell is there: nothing runs again
    finally:
        torch.set_num_threads(threads)
    assert [(c["k"], c["n_train"], c["contender"]) for c in cells] == [(2, 8, "probe"), (4, 16, "probe")]
    assert all(0 <= c["score"] <= 1 and c["n_test"] == 12 for c in cells)
    table = fewshot.table(fewshot.read_results()).splitlines()
    assert len(table) == 2 + 3 and "0.9 (made up)" in table[-1]


def test_fewshot_measures_a_reftag_variant_into_a_file_of_its_own(tmp_path, monkeypatch, capsys):
    """A variant of reftag's recipe (--reftag-config) is recorded with its cells, which go to their
    own --results file: the table's file keeps the defaults' cells."""
    import torch

    from bench import fewshot

    monkeypatch.setattr(fewshot, "RESULTS", tmp_path / "fewshot.jsonl")
    with pytest.raises(SystemExit):
        fewshot.parse_args(["--reftag-config", '{"soup": "everything"}'])
    assert "--reftag-config: soup: one of auto, none, folds" in capsys.readouterr().err
    variant = tmp_path / "variant.jsonl"
    threads = torch.get_num_threads()
    try:
        cells = fewshot.main(["--data", SINGLE, "--k", "2", "--seeds", "0", "--contenders", "reftag",
                              "--test-rows", "12", "--reftag-config", '{"soup": "folds", "min_steps": 10}',
                              "--results", str(variant)])
    finally:
        torch.set_num_threads(threads)
    assert not (tmp_path / "fewshot.jsonl").exists() and fewshot.read_results(variant) == cells
    [cell] = cells
    assert (cell["details"]["recipe"]["soup"], cell["details"]["recipe"]["min_steps"]) == ("folds", 10)
    assert cell["details"]["evaluation"]["evaluation"] == "k-fold"


def test_fewshot_table_marks_reftag_cells_from_before_the_refit_fix():
    """Cells of a contender re-run replace the old ones; small-K reftag cells that are still from
    before the refit's schedule ended at the chosen step say so, so a stale figure is not read as
    today's (held-out cells, at 200 examples or more, were not affected)."""
    from bench import fewshot

    def cell(k: int, n_train: int, when: str) -> dict:
        return {"base": fewshot.MINILM, "data": "sst2", "contender": "reftag", "k": k, "seed": 0,
                "n_train": n_train, "metrics": {"accuracy": 0.7}, "train_seconds": 1.0,
                "machine": {"time_utc": when}}

    before, after = "2026-12-02T10:00:00Z", "2026-12-03T17:00:00Z"
    rows = fewshot.table([cell(8, 16, before), cell(16, 32, before), cell(16, 32, after),
                          cell(128, 256, before)]).splitlines()[2:]
    marked = {int(row.split("|")[3]): "(old refit)" in row for row in rows if "4,000 rows" not in row}
    assert marked == {8: True, 16: False, 128: False}


def test_fewshot_table_marks_single_label_k_fold_cells_trained_on_the_labels():
    """Since objective auto trains SetFit's pairs in k-fold evaluation of a single-label set, the
    reftag cells measured there on the labels (the default before) say so; held-out cells and
    multi-label sets train on the labels as before."""
    from bench import fewshot

    def cell(data: str, k: int, seed: int, evaluation: str, objective: str | None) -> dict:
        recipe = {} if objective is None else {"objective": objective}
        return {"base": fewshot.MULTILINGUAL, "data": data, "contender": "reftag", "k": k, "seed": seed,
                "n_train": 300, "metrics": {"accuracy": 0.7, "micro_f1": 0.4} if data == "goemotions" else
                {"accuracy": 0.7}, "train_seconds": 1.0, "machine": {"time_utc": "2026-12-05T03:00:00Z"},
                "details": {"recipe": recipe, "evaluation": {"evaluation": evaluation}}}

    rows = fewshot.table([cell("sst2", 8, 0, "k-fold", None), cell("sst2", 8, 1, "k-fold", "pairs"),
                          cell("sst2", 16, 0, "k-fold", "labels"), cell("sst2", 64, 0, "held_out", None),
                          cell("goemotions", 8, 0, "k-fold", None)]).splitlines()[2:]
    marks = {(row.split("|")[2].strip(), int(row.split("|")[3])): row.split("|")[4].strip()
             for row in rows if "4,000 rows" not in row}
    assert marks[("sst2", 8)].endswith("(labels objective: 1 of 2 seeds)")
    assert marks[("sst2", 16)].endswith("(labels objective)")
    assert "labels objective" not in marks[("sst2", 64)] + marks[("goemotions", 8)]


def test_setfit_planned_steps_count_its_pairs():
    """SetFit's default sampling, counted by hand: 4 rows labelled (0, 0, 1, 2) make 10 unordered
    pairs with replacement, 5 of them positive (same label); the smaller kind is oversampled to the
    larger's count, 16 pairs a step."""
    import torch

    from bench import fewshot

    targets = torch.tensor([0, 0, 1, 2])
    positive = 3 + 1 + 1  # label 0: pairs {a,a}, {b,b}, {a,b}; labels 1 and 2: one each
    negative = 4 * 5 // 2 - positive
    assert fewshot.setfit_planned_steps(targets, False) == -(-2 * max(positive, negative) // 16) == 1
    many = torch.arange(40) % 4  # 10 rows per label: 4 × 55 positive pairs of 820
    assert fewshot.setfit_planned_steps(many, False) == -(-2 * (820 - 220) // 16) == 75


def test_the_pairs_setfit_makes_are_as_many_steps_as_setfit_plans():
    """The pairs objective's pairs (`reft_core.training.setfit_pairs`, which bench.pairs_scout
    trains on too) are as many steps of 16 as `setfit_planned_steps` counts."""
    import torch

    from bench import fewshot
    from reft_core.training import setfit_pairs

    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert -(-len(setfit_pairs(labels, seed=3)) // 16) == fewshot.setfit_planned_steps(torch.tensor(labels), False)


def test_fewshot_table_shows_accuracy_or_micro_f1_not_the_comparison_score():
    from bench import fewshot

    def cell(data, seed, metrics):
        return {"base": fewshot.MINILM, "data": data, "contender": "probe", "k": 4, "seed": seed, "score": 0.1,
                "metrics": metrics, "train_seconds": 1.0}

    rows = fewshot.table([cell("one", 0, {"accuracy": 0.6, "macro_f1": 0.1}),
                          cell("one", 1, {"accuracy": 0.8, "macro_f1": 0.1}),
                          cell("many", 0, {"accuracy": 0.2, "micro_f1": 0.5, "macro_f1": 0.1})]).splitlines()
    assert "| one | 4 | – | – | – | – | 0.700 ± 0.141 | 1.0 |" in rows[2]
    assert "| many | 4 | – | – | – | – | 0.500 | 1.0 |" in rows[3]


def test_fewshot_table_keeps_a_gpus_seconds_apart_from_the_cpus():
    from bench import fewshot

    def cell(seed, seconds, gpu):
        return {"base": fewshot.MINILM, "data": "one", "contender": "probe", "k": 4, "seed": seed, "score": 0.1,
                "metrics": {"accuracy": 0.5}, "train_seconds": seconds, "machine": {"gpu": gpu}}

    [row] = fewshot.table([cell(0, 100.0, None), cell(1, 300.0, None), cell(2, 4.0, "NVIDIA H200")]).splitlines()[2:]
    assert "| 200.0; 4.0 (on a GPU, 1 of 3 seeds) |" in row
    [row] = fewshot.table([cell(0, 4.0, "NVIDIA H200"), cell(1, 6.0, "NVIDIA H200")]).splitlines()[2:]
    assert "| 5.0 (on a GPU) |" in row


def test_fewshot_table_marks_reftag_cells_that_stopped_early_on_a_few_evaluation_rows():
    from bench import fewshot

    def cell(seed, n_eval, time_utc):
        return {"base": fewshot.MINILM, "data": "one", "contender": "reftag", "k": 64, "seed": seed, "score": 0.1,
                "n_train": 256, "metrics": {"accuracy": 0.5}, "train_seconds": 1.0, "machine": {"time_utc": time_utc},
                "details": {"evaluation": {"evaluation": "held_out", "n_eval": n_eval}}}

    before, after = "2026-12-01T00:00:00Z", "2026-12-05T00:00:00Z"
    assert "(early-stopped on few rows)" in fewshot.table([cell(0, 40, before)])
    assert "(early-stopped on few rows)" not in fewshot.table([cell(0, 40, after)])
    assert "(early-stopped on few rows)" not in fewshot.table([cell(0, 600, before)])


def test_objective_auto_takes_the_pairs_cell_only_where_its_folds_score_better():
    """bench.objective_auto reads the first rule off two runs of the table: the default's cell
    and the pairs cell of the same set, K and seed; auto is the one whose mean fold score is
    higher (a tie keeps labels), and the second rule is judged on the cells new to pairs only."""
    from bench import objective_auto

    def cell(data, k, seed, contender, accuracy, folds):
        return {"base": objective_auto.BASE, "data": data, "k": k, "seed": seed, "contender": contender,
                "metrics": {"accuracy": accuracy}, "details": {"evaluation": {"fold_scores": folds}}}

    default = {("multilingual-e5-small", d, c, k, s): cell(d, k, s, c, acc, folds) for d, c, k, s, acc, folds in [
        ("sst2", "reftag", 8, 0, 0.60, [0.9, 0.7]), ("sst2", "reftag", 8, 1, 0.80, [0.5, 0.5]),
        ("ag_news", "reftag", 4, 0, 0.70, [0.6, 0.6]), ("sst2", "setfit", 8, 0, 0.68, [0.0])]}
    pairs = {("multilingual-e5-small", d, "reftag", k, s): cell(d, k, s, "reftag", acc, folds)
             for d, k, s, acc, folds in [("sst2", 8, 0, 0.77, [0.5, 0.5]), ("sst2", 8, 1, 0.70, [0.6, 0.5]),
                                         ("ag_news", 4, 0, 0.74, [0.6, 0.6]), ("tnews", 4, 0, 0.4, [0.4])]}
    rows = objective_auto.auto_cells(default, pairs)
    assert [(r["data"], r["seed"], r["took_pairs"], r["auto"]) for r in rows] == [
        ("ag_news", 0, False, 0.70), ("sst2", 0, False, 0.60), ("sst2", 1, True, 0.70)]  # tnews: no default cell
    assert rows[1]["setfit"] == 0.68 and rows[1]["probe"] is None
    text = objective_auto.report(rows)
    assert "auto (the first rule): 3 cells, -3.33 points" in text
    assert "pairs alone (the second rule), on the cells new to it: 1 cells, +4.00 points" in text
