"""Span (NER) examples and results in every tool's format, as functions of text: Label Studio
`labels` results (offsets in UTF-16 units), doccano offsets, CoNLL/BIO rows (JSONL and column
text), reftag's JSONL and CSV, and the Label Studio ML backend's labeling config — English,
Chinese, and an emoji before a span. No database: the store's checks are tested with it."""
import json

import pytest

from api.errors import ApiError
from api.interop import FORMATS, ExportSpec, ReadOptions, conll, doccano, label_studio, plain, write_results
from api.interop.label_studio import Utf16, annotation_spans, check_choices, label_config
from reft_core.spans import from_conll

EN = "Alice Martin joined Google in Paris ."
EN_SPANS = [{"start": 0, "end": 12, "label": "PER"}, {"start": 20, "end": 26, "label": "ORG"},
            {"start": 30, "end": 35, "label": "LOC"}]
ZH = "我住在北京市，在阿里巴巴工作。"
ZH_SPANS = [{"start": 3, "end": 6, "label": "LOC"}, {"start": 8, "end": 12, "label": "ORG"}]
# 🎉 is one character to Python and two UTF-16 units to Label Studio: Paris starts at 10, or 11.
EMOJI = "🎉 Hi from Paris"
EMOJI_SPANS = [{"start": 10, "end": 15, "label": "LOC"}]
NO_SPAN = "nothing to see here"
LABELS = ["PER", "ORG", "LOC"]
SPANS_SPEC = ExportSpec(LABELS, kind="spans")


def result(item_id, text, spans, error=None):
    """A spans set's result as the export route hands it to a writer."""
    scored = [{**s, "text": text[s["start"]:s["end"]], "score": 0.9 - 0.1 * k} for k, s in enumerate(spans)]
    return {"item_id": item_id, "text": text, "spans": scored, "labels": sorted({s["label"] for s in spans}),
            "scores": {}, "needs_review": False, "confidence": 0.75, "adapter_version": 2, "error": error}


RESULTS = [result("en", EN, EN_SPANS), result("zh", ZH, ZH_SPANS), result("emoji", EMOJI, EMOJI_SPANS),
           result("none", NO_SPAN, [])]
EXAMPLES = [{"text": r["text"], "spans": [{k: s[k] for k in ("start", "end", "label")} for s in r["spans"]]}
            for r in RESULTS]


def errors_of(call):
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


def pointers(error):
    return [d["pointer"] for d in error.details]


# --- UTF-16 offsets -------------------------------------------------------------------------------


def test_utf16_offsets_count_an_emoji_as_two_units_and_bmp_text_as_characters():
    offsets = Utf16(EMOJI)
    assert [offsets.units(i) for i in (0, 1, 10, 15)] == [0, 2, 11, 16]
    assert [offsets.index(u) for u in (0, 2, 11, 16)] == [0, 1, 10, 15]
    assert offsets.index(1) is None  # between the halves of 🎉
    assert offsets.index(20) == 19  # past the end stays past it, for validation to name
    chinese = Utf16(ZH)
    assert chinese.units(6) == 6 and chinese.index(6) == 6
    assert len(EMOJI.encode("utf-16-le")) // 2 == offsets.units(len(EMOJI))


# --- Label Studio ----------------------------------------------------------------------------------


def ls_region(text, start, end, label, from_name="ner"):
    units = Utf16(text)
    return {"from_name": from_name, "to_name": "text", "type": "labels",
            "value": {"start": units.units(start), "end": units.units(end), "text": text[start:end],
                      "labels": [label]}}


def ls_task(task_id, text, results, cancelled=False):
    return {"id": task_id, "data": {"text": text},
            "annotations": [{"id": task_id * 10, "result": results, "was_cancelled": cancelled}]}


def test_label_studio_labels_results_read_as_spans_in_characters():
    tasks = [ls_task(1, EN, [ls_region(EN, s["start"], s["end"], s["label"]) for s in EN_SPANS]),
             ls_task(2, ZH, [ls_region(ZH, s["start"], s["end"], s["label"]) for s in ZH_SPANS]),
             ls_task(3, EMOJI, [ls_region(EMOJI, 10, 15, "LOC")]),
             ls_task(4, NO_SPAN, []),  # annotated, nothing to label
             {"id": 5, "data": {"text": "not annotated yet"}, "annotations": []},
             ls_task(6, "skipped", [], cancelled=True)]
    upload = label_studio.read(json.dumps(tasks, ensure_ascii=False), ReadOptions())
    assert upload.document["examples"] == EXAMPLES
    assert upload.rows == [0, 1, 2, 3]
    assert [s["index"] for s in upload.skipped] == [4, 5]
    # the emoji case as Label Studio stores it: Paris at 11..16 in UTF-16 units
    assert tasks[2]["annotations"][0]["result"][0]["value"]["start"] == 11


def test_label_studio_choices_uploads_still_read_as_labels():
    task = {"id": 1, "data": {"text": "refund please"}, "annotations": [{"id": 1, "result": [
        {"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": ["billing"]}}]}]}
    upload = label_studio.read(json.dumps([task]), ReadOptions())
    assert upload.document["examples"] == [{"text": "refund please", "labels": ["billing"]}]


def test_a_project_with_choices_and_labels_needs_label_field_which_picks_the_kind():
    results = [ls_region(EN, 0, 12, "PER"),
               {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": ["news"]}}]
    body = json.dumps([ls_task(1, EN, results)])
    error = errors_of(lambda: label_studio.read(body, ReadOptions()))
    assert error.code == "ambiguous_field" and error.details[0]["candidates"] == ["ner", "topic"]
    spans = label_studio.read(body, ReadOptions(label_field="ner")).document["examples"]
    assert spans == [{"text": EN, "spans": [{"start": 0, "end": 12, "label": "PER"}]}]
    labels = label_studio.read(body, ReadOptions(label_field="topic")).document["examples"]
    assert labels == [{"text": EN, "labels": ["news"]}]


def test_malformed_label_studio_regions_are_named_at_their_pointer():
    bad = [{**ls_region(EN, 0, 12, "PER"), "value": {"start": 0, "end": 12, "labels": ["PER", "ORG"]}},
           {**ls_region(EN, 20, 26, "ORG"), "value": {"start": "20", "end": 26, "labels": ["ORG"]}}]
    emoji_split = ls_region(EMOJI, 10, 15, "LOC")
    emoji_split["value"]["start"] = 1  # between the halves of 🎉
    tasks = [ls_task(1, EN, bad), ls_task(2, EMOJI, [emoji_split])]
    error = errors_of(lambda: label_studio.read(json.dumps(tasks), ReadOptions()))
    assert error.status == 422
    assert pointers(error) == ["/examples/0/annotations/0/result/0/value",
                               "/examples/0/annotations/0/result/1/value",
                               "/examples/1/annotations/0/result/0/value"]
    assert "exactly one label" in error.details[0]["message"]
    assert "surrogate" in error.details[2]["message"]


def test_annotation_spans_reads_a_webhook_annotation_in_characters():
    annotation = {"id": 7, "result": [ls_region(EMOJI, 10, 15, "LOC"), ls_region(EMOJI, 2, 4, "PER", "other"),
                                      {"from_name": "ner", "type": "choices", "value": {"choices": ["x"]}}]}
    spans, where = annotation_spans(annotation, "ner", EMOJI)
    assert spans == EMOJI_SPANS and where == ["/annotation/result/0"]
    assert annotation_spans({"result": []}, "ner", EMOJI) == ([], [])
    annotation["result"][0]["value"]["labels"] = []
    error = errors_of(lambda: annotation_spans(annotation, "ner", EMOJI))
    assert pointers(error) == ["/annotation/result/0/value"]


def test_label_studio_export_of_spans_has_labels_regions_in_utf16_units_and_reads_back():
    spec = ExportSpec(LABELS, label_field="ner", to_name="text", kind="spans")
    failed = result("failed", "boom", [], error="worker died")
    tasks = json.loads("".join(write_results("label_studio", [*RESULTS, failed], spec)))
    emoji = tasks[2]["predictions"][0]
    assert emoji["result"] == [{"from_name": "ner", "to_name": "text", "type": "labels", "score": 0.9,
                                "value": {"start": 11, "end": 16, "text": "Paris", "labels": ["LOC"]}}]
    assert emoji["score"] == 0.75 and emoji["model_version"] == "reftag-v2"
    assert [r["score"] for r in tasks[0]["predictions"][0]["result"]] == [0.9, 0.8, 0.7]
    assert tasks[3]["predictions"][0]["result"] == [] and tasks[4]["predictions"] == []
    back = label_studio.read(json.dumps(tasks), ReadOptions(labels_from="predictions"))
    assert back.document["examples"] == EXAMPLES and [s["index"] for s in back.skipped] == [4]


@pytest.mark.parametrize("fmt", ["label_studio_min", "label_studio_csv", "argilla"])
def test_formats_that_cannot_carry_spans_refuse_a_spans_export_naming_those_that_can(fmt):
    error = errors_of(lambda: write_results(fmt, RESULTS, SPANS_SPEC))
    assert error.status == 422 and error.code == "format_not_for_spans"
    assert all(name in error.message for name in ("jsonl", "csv", "label_studio", "doccano", "conll"))


def test_conll_export_is_only_for_spans():
    classification = {"item_id": "1", "text": "refund please", "labels": ["billing"], "scores": {"billing": 0.9},
                      "needs_review": False, "confidence": 0.9, "adapter_version": 1, "error": None}
    error = errors_of(lambda: write_results("conll", [classification], ExportSpec(["billing", "other"])))
    assert error.code == "format_only_for_spans" and "conll" not in error.message.split("export as")[1]


# --- the ML backend's labeling config -------------------------------------------------------------

NER_CONFIG = """<View><Text name="text" value="$body"/>
<Labels name="ner" toName="text"><Label value="PER"/><Label value="ORG"/><Label value="LOC"/></Labels></View>"""


def test_a_spans_set_answers_the_labels_of_a_text_and_checks_their_names():
    config = label_config(NER_CONFIG, "/schema", "spans")
    assert (config.from_name, config.to_name, config.data_key, config.choices, config.tag) == \
        ("ner", "text", "body", ("PER", "ORG", "LOC"), "labels")
    check_choices(config, LABELS, "/schema")
    error = errors_of(lambda: check_choices(config, ["PER", "ORG", "MISC"], "/schema"))
    assert error.code == "label_config_mismatch"
    assert error.details[0]["unknown_choices"] == ["LOC"] and error.details[0]["missing_labels"] == ["MISC"]
    assert "<Labels name='ner'>" in error.details[0]["message"]


def test_a_classification_set_does_not_take_a_labels_config_nor_a_spans_set_a_choices_one():
    error = errors_of(lambda: label_config(NER_CONFIG, "/schema"))
    assert error.code == "invalid_label_config" and "no <Choices" in error.details[0]["message"]
    choices = '<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>'
    error = errors_of(lambda: label_config(choices, "/schema", "spans"))
    assert error.code == "invalid_label_config" and "no <Labels" in error.details[0]["message"]
    assert label_config(choices, "/schema").tag == "choices"


def test_backend_span_prediction_uses_utf16_offsets_and_the_results_confidence():
    answer = {"labels": ["LOC"], "spans": [{"start": 10, "end": 15, "label": "LOC", "text": "Paris", "score": 0.61}],
              "scores": {}, "needs_review": True, "confidence": 0.42, "adapter_version": 5}
    prediction = label_studio.span_prediction(answer, EMOJI, "ner", "text")
    assert prediction == {"result": [{"from_name": "ner", "to_name": "text", "type": "labels", "score": 0.61,
                                      "value": {"start": 11, "end": 16, "text": "Paris", "labels": ["LOC"]}}],
                          "score": 0.42, "model_version": "reftag-v5"}
    nothing = label_studio.span_prediction({"spans": [], "confidence": None, "adapter_version": None}, "x", "n", "t")
    assert nothing == {"result": [], "score": 0.0, "model_version": "reftag-untrained"}


# --- doccano ----------------------------------------------------------------------------------------


def test_doccano_offset_triples_and_entities_read_as_spans():
    rows = [{"text": EN, "label": [[s["start"], s["end"], s["label"]] for s in EN_SPANS]},
            {"text": ZH, "entities": [{"id": 1, "start_offset": 3, "end_offset": 6, "label": "LOC"},
                                      {"id": 2, "start_offset": 8, "end_offset": 12, "label": "ORG"}],
             "relations": []},
            {"text": EMOJI, "label": [[10, 15, "LOC"]]},
            {"text": NO_SPAN, "label": []}]
    upload = doccano.read("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), ReadOptions())
    assert upload.document["examples"] == EXAMPLES


def test_doccano_classification_rows_read_as_before():
    text = '{"text": "a", "label": ["x", "y"]}\n{"text": "b", "label": "x"}\n{"text": "c", "label": []}\n'
    upload = doccano.read(text, ReadOptions())
    assert upload.document["examples"] == [{"text": "a", "labels": ["x", "y"]}, {"text": "b", "labels": ["x"]}]
    assert upload.skipped == [{"index": 2, "reason": "no label (empty `label` list)"}]


def test_malformed_doccano_spans_are_named_at_their_pointer():
    rows = [{"text": EN, "label": [[0, 12, "PER"], [20, "26", "ORG"], [1, 2]]},
            {"text": ZH, "entities": [{"start_offset": 3, "label": "LOC"}]},
            {"text": "x", "label": "PER"}]
    error = errors_of(lambda: doccano.read("\n".join(map(json.dumps, rows)), ReadOptions()))
    assert pointers(error) == ["/examples/0/label/1", "/examples/0/label/2", "/examples/1/entities/0",
                               "/examples/2/label"]


# --- CoNLL ------------------------------------------------------------------------------------------


def test_conll_jsonl_rows_as_in_the_conll2003_files_read_as_spans():
    rows = [{"tokens": EN.split(), "tags": ["B-PER", "I-PER", "O", "B-ORG", "O", "B-LOC", "O"]},
            {"tokens": list(ZH), "tags": ["O", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O", "O", "B-ORG", "I-ORG",
                                          "I-ORG", "I-ORG", "O", "O", "O"]},
            {"tokens": NO_SPAN.split(), "tags": ["O"] * 4}]
    upload = conll.read("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), ReadOptions())
    assert upload.document["examples"] == [EXAMPLES[0], EXAMPLES[1], EXAMPLES[3]]


def test_conll_column_text_skips_docstart_and_takes_the_last_column():
    text = ("-DOCSTART- -X- -X- O\n\n"
            "Alice NNP B-NP B-PER\nMartin NNP I-NP I-PER\njoined VBD B-VP O\nGoogle NNP B-NP B-ORG\n"
            "in IN B-PP O\nParis NNP B-NP B-LOC\n. . O O\n\n\n"
            "北\tB-LOC\n京\tI-LOC\n很\tO\n大\tO\n")
    upload = conll.read(text, ReadOptions())
    assert upload.document["examples"] == [EXAMPLES[0],
                                           {"text": "北京很大", "spans": [{"start": 0, "end": 2, "label": "LOC"}]}]


def test_bad_conll_rows_are_422_with_the_rows_pointer():
    rows = [{"tokens": ["a", "b"], "tags": ["O"]},
            {"tokens": ["a", "b"], "tags": ["O", "X-PER"]},
            {"tokens": ["", "b"], "tags": ["O", "O"]},
            {"tokens": "a b", "tags": ["O", "O"]},
            {"tokens": ["fine"], "tags": ["B-PER"]}]
    error = errors_of(lambda: conll.read("\n".join(map(json.dumps, rows)), ReadOptions()))
    assert error.status == 422
    assert pointers(error) == ["/examples/0/tags", "/examples/1/tags/1", "/examples/2/tokens/0", "/examples/3/tokens"]
    assert "2 tokens but 1 tags" in error.details[0]["message"]
    column = conll.read  # a line with a token and no tag, in the second sentence
    error = errors_of(lambda: column("a O\n\nb O\nc\n", ReadOptions()))
    assert error.details == [{"pointer": "/examples/1/tags/1", "line": 4, "message": error.details[0]["message"]}]


def test_conll_column_text_counts_sentences_against_max_rows():
    error = errors_of(lambda: conll.read("a O\n\nb O\n\nc O\n", ReadOptions(max_rows=2)))
    assert error.status == 413 and error.code == "too_many_examples"


def test_conll_export_writes_tokens_and_bio_tags_per_item():
    lines = [json.loads(line) for line in "".join(write_results("conll", RESULTS, SPANS_SPEC)).splitlines()]
    assert lines[0] == {"item_id": "en", "tokens": EN.split(), "tags": ["B-PER", "I-PER", "O", "B-ORG", "O",
                                                                        "B-LOC", "O"]}
    assert lines[1]["tokens"] == list(ZH) and lines[1]["tags"][3:6] == ["B-LOC", "I-LOC", "I-LOC"]
    assert lines[2] == {"item_id": "emoji", "tokens": ["🎉", "Hi", "from", "Paris"], "tags": ["O", "O", "O", "B-LOC"]}
    assert from_conll(lines[1]["tokens"], lines[1]["tags"])[0] == ZH


# --- reftag's JSONL and CSV ------------------------------------------------------------------------


def test_span_csv_has_one_row_per_span_and_a_row_for_an_item_with_none():
    failed = result("failed", "boom", [], error="worker died")
    text = "".join(write_results("csv", [RESULTS[0], RESULTS[3], failed], SPANS_SPEC))
    rows = text.splitlines()
    assert rows[0] == "item_id,text,start,end,label,span_text,score,needs_review,adapter_version,error"
    assert rows[1:4] == [f"en,{EN},0,12,PER,Alice Martin,0.9,false,2,", f"en,{EN},20,26,ORG,Google,0.8,false,2,",
                         f"en,{EN},30,35,LOC,Paris,0.7,false,2,"]
    assert rows[4:] == [f"none,{NO_SPAN},,,,,,false,2,", "failed,boom,,,,,,false,2,worker died"]
    upload = plain.read_csv(text, ReadOptions())
    assert upload.document["examples"] == [EXAMPLES[0], EXAMPLES[3]]
    assert upload.rows == [0, 3] and upload.skipped[0]["index"] == 4


def test_span_csv_with_bad_offsets_names_the_row_and_column():
    text = "text,start,end,label\nab,0,x,PER\nab,1,,PER\ncd,0,1,\n"
    error = errors_of(lambda: plain.read_csv(text, ReadOptions()))
    assert pointers(error) == ["/examples/0/end", "/examples/1/end", "/examples/2/label"]


def test_classification_csv_still_reads_labels():
    upload = plain.read_csv("text,label\nrefund please,billing\n", ReadOptions())
    assert upload.document["examples"] == [{"text": "refund please", "label": "billing"}]


SPAN_EXPORTS = [  # a spans set's export formats → how each is uploaded again
    ("jsonl", {}, ReadOptions()),
    ("csv", {}, ReadOptions()),
    ("csv", {"bom": True}, ReadOptions()),
    ("label_studio", {"label_field": "实体", "to_name": "正文", "text_field": "正文"},
     ReadOptions(text_field="正文", labels_from="predictions")),
    ("doccano", {}, ReadOptions()),
    ("conll", {}, ReadOptions()),
]


@pytest.mark.parametrize("fmt,params,read_options", SPAN_EXPORTS, ids=[f"{f}{'-bom' if p.get('bom') else ''}"
                                                                       for f, p, _ in SPAN_EXPORTS])
def test_every_span_export_reads_back_as_the_same_span_examples(fmt, params, read_options):
    # CoNLL rejoins tokens with single spaces: its texts must already be written that way
    results = RESULTS if fmt != "conll" else [r for r in RESULTS if r["text"] != EMOJI]
    expected = [e for e, r in zip(EXAMPLES, RESULTS) if r in results]
    text = "".join(write_results(fmt, results, ExportSpec(LABELS, kind="spans", **params)))
    reader = FORMATS[fmt].read
    assert reader is not None
    upload = reader(text.removeprefix("\ufeff"), read_options)  # as the route decodes a body: utf-8-sig
    assert [as_example(e) for e in upload.document["examples"]] == expected


def as_example(row):
    """What the examples schema keeps of a span row (it ignores other keys)."""
    assert "label" not in row and "labels" not in row, row
    return {"text": row["text"], "spans": [{k: s[k] for k in ("start", "end", "label")} for s in row["spans"]]}


def test_jsonl_span_results_read_back_without_their_labels():
    line = "".join(write_results("jsonl", [RESULTS[0]], SPANS_SPEC))
    assert json.loads(line)["labels"] == ["LOC", "ORG", "PER"]  # the export keeps the result as the API gives it
    [example] = plain.read_jsonl(line, ReadOptions()).document["examples"]
    assert "labels" not in example and example["spans"][0] == {**EN_SPANS[0], "text": "Alice Martin", "score": 0.9}
