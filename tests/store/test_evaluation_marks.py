"""Each example gets its evaluation mark once, when it is added: about 15 % of them, never a
label's first four, the same text always drawn the same way — so versions trained months apart
are scored on the same rows."""
from collections import Counter

from sqlalchemy import select

from store.label_sets import EVAL_SHARE, MIN_TRAINING_PER_LABEL, evaluation_marks
from store.models import Example


def marks_of(db, label_set_id):
    with db() as session:
        rows = session.execute(select(Example.text, Example.labels, Example.evaluation)
                               .where(Example.label_set_id == label_set_id).order_by(Example.id)).all()
    return {r.text: (r.labels, r.evaluation) for r in rows}


def test_about_fifteen_percent_are_evaluation_examples_and_no_label_loses_its_first_four(client, auth, db,
                                                                                         make_label_set):
    ls = make_label_set(labels=("a", "b", "rare"))
    rows = [{"text": f"{label} text {i}", "label": label} for label, n in (("a", 400), ("b", 400), ("rare", 5))
            for i in range(n)]
    assert client.post(f"/v1/label-sets/{ls['id']}/examples", headers=auth, json={"examples": rows}).status_code == 201
    marks = marks_of(db, ls["id"])
    share = sum(evaluation for _, evaluation in marks.values()) / len(marks)
    assert abs(share - EVAL_SHARE) < 0.04, share
    trained = Counter(labels[0] for labels, evaluation in marks.values() if not evaluation)
    assert trained["rare"] >= min(5, MIN_TRAINING_PER_LABEL)


def test_a_mark_never_changes_and_depends_only_on_the_set_and_the_text(client, auth, db, make_label_set):
    ls = make_label_set(labels=("a", "b"))
    first = [{"text": f"{label} first {i}", "label": label} for label in ("a", "b") for i in range(60)]
    client.post(f"/v1/label-sets/{ls['id']}/examples", headers=auth, json={"examples": first})
    before = marks_of(db, ls["id"])
    later = [{"text": f"{label} later {i}", "label": label} for label in ("a", "b") for i in range(60)]
    client.post(f"/v1/label-sets/{ls['id']}/examples", headers=auth, json={"examples": later + first[:10]})
    after = marks_of(db, ls["id"])
    assert {text: after[text] for text in before} == before  # adding more changed nothing already marked

    # The same texts, added in the opposite order to another set with enough examples of each
    # label already: each text is drawn the same way (the draw is of the set and the text).
    trained = Counter({"a": 10, "b": 10})
    digests = [("x" * 64, ["a"]), ("y" * 64, ["b"])]
    assert evaluation_marks("ls_1", trained.copy(), digests) == evaluation_marks("ls_1", trained.copy(), digests)
