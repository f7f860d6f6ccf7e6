"""Whether a new adapter version replaces the active one: both scored on the same rows.

- held_out (the new version was evaluated on the set's evaluation examples): the active version
  is scored on the same examples — as it is, when it never trained on any of them (it was
  trained on the same evaluation marks), else by retraining its recipe on the training examples.
- k-fold (a small set; the new version was refit on every example): each version's recipe is
  retrained per fold on the current examples, on the same folds; the mean fold score decides,
  each fold scored at the step the other folds chose (not the best step's mean, which favours
  the labels objective's twenty checks over the pairs objective's one). A recipe whose objective
  is auto settles as it would to train on the current examples.
- A first version is active at once; with too few examples to compare, the newer one wins.

Spans sets have only the held_out rule: the new version was early-stopped and
scored on the set's evaluation examples when there are any (else on a random share: too few to
compare, the newer wins), and the active version is scored on the same ones as above.

Ties promote the new version: it learned from the newest examples. The decision, with both
scores, goes on the train job (`metrics.promotion`) and on a version that was not promoted.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reft_core.config import main_metric
from store import adapters
from store.jobs import TrainWork

from . import model_cache

if TYPE_CHECKING:
    import reft_core


def decide(work: TrainWork, new: reft_core.Adapter,
           progress: Callable[[dict[str, Any]], None] | None = None) -> adapters.Promotion:
    """Whether `new` replaces the active version (the rules above). `progress` gets the reports
    of retraining the active version's recipe, where the rule retrains it (the train task's
    heartbeat: progress that is not the job's own, but keeps its stall watch quiet)."""
    from reft_core import AdapterConfig, evaluate, evaluate_spans, recipe_cross_validation, train, train_spans

    spans = work.kind == "spans"
    metric = main_metric(work.multi_label, kind=work.kind)
    evaluation = new.metrics.get("evaluation")
    if spans and new.metrics.get("split") != "given":
        evaluation = "none"  # a spans set with no evaluation examples yet was scored on a random share
    if work.active is None:
        return adapters.first_version(metric, new.metrics.get(metric))
    active = work.active
    # The active version's recipe includes its base, which may not be the new one's (a label set
    # moved to another base): it is scored, or retrained, on its own.
    active_config = AdapterConfig.from_json(active.config_json)
    recipe = active_config.train_config
    base = model_cache.base(active_config.base_model.name)
    detail: dict[str, object] = {}
    if evaluation == "held_out":
        rows = [i for i, marked in enumerate(work.evaluation) if marked]
        new_score = float(new.metrics[metric])
        if active.metrics.get("split") == "given":
            loaded = model_cache.adapter(adapters.AdapterRef(work.label_set_id, active.version, active.checksum))
            score = evaluate_spans if spans else evaluate
            scored = score(base, loaded, [work.texts[i] for i in rows], [work.labels[i] for i in rows])
            detail["active_scored"] = "as it is, on the evaluation examples (it never trained on them)"
        else:
            config = {**recipe.to_dict(), "evaluation": "held_out"}
            scored = (train_spans(base, work.texts, work.labels, work.label_names, config=config,
                                  eval_mask=work.evaluation, progress=progress) if spans else
                      train(base, work.texts, work.labels, work.label_names, work.multi_label, config=config,
                            eval_mask=work.evaluation, progress=progress)).metrics
            detail["active_scored"] = ("its recipe retrained on the training examples (the version itself was "
                                       "trained on some of the evaluation examples)")
        active_score = float(scored[metric])
        detail["n_eval"] = len(rows)
    elif evaluation == "k-fold":
        folds = int(new.metrics["folds"])
        # each fold scored at the step the other folds chose (`fold_score_nested`): the best check's
        # mean would favour the recipe with more checks to choose from (versions trained before it
        # was recorded: their mean fold score)
        new_score = float(new.metrics.get("fold_score_nested", statistics.fmean(new.metrics["fold_scores"])))
        cv = recipe_cross_validation(base, work.texts, work.labels, work.label_names, work.multi_label,
                                     {**recipe.to_dict(), "evaluation": "k-fold"}, folds=folds, progress=progress)
        active_score = cv.nested_score
        detail.update(folds=folds, new_fold_scores=new.metrics["fold_scores"], active_fold_scores=cv.fold_scores)
    else:
        return adapters.Promotion(True, "none", metric, None, active.version, None,
                                  "too few examples to compare the versions; the newer one is active")
    promote = new_score >= active_score
    rule = "held_out" if evaluation == "held_out" else "k-fold"
    where = f"on the {detail['n_eval']} evaluation examples" if rule == "held_out" else \
        f"over {detail['folds']} folds of the current examples"
    reason = (f"{metric} {new_score:.4f} {'≥' if promote else '<'} active version {active.version}'s "
              f"{active_score:.4f} {where}")
    return adapters.Promotion(promote, rule, metric, round(new_score, 4), active.version, round(active_score, 4),
                              ("promoted: " if promote else "not activated: ") + reason, detail)
