"""The guard against the next exponential parse (issue 15): property-based tests (hypothesis) of
every format reader and every JSON endpoint with nested, huge and odd-typed input.

Each call runs under a ceiling — 10 s and 1 GB more memory — far above what any of them needs,
far below the hours a reader whose cost grows with the input's nesting takes (`choice_names`
once took 3 s at depth 22 and doubled with every level). The calls run in a forked child: its
address space may grow by 1 GB at most (a MemoryError fails the case), and each call arms
`alarm(10)`, whose default action ends the child even inside C code (the case it was on is
reported). No call is timed against anything lower, so a slow machine does not fail it.

A reader either returns, or refuses with the API's own 4xx (`ApiError`); an endpoint answers
below 500 (a documented 502-504 aside: here no worker runs and Label Studio is not there). Runs
are derandomized with no example database, so CI sees the same inputs every time; they are not
shrunk (the case that failed is reported as it was drawn).
"""
from __future__ import annotations

import csv
import io
import json
import os
import resource
import signal
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from api import interop
from api.errors import ApiError
from api.interop import label_studio
from api.openapi import PARAM
from api.requests import validate
from api.v1.schemas import ExamplesUpload
from service.settings import Settings

CEILING_SECONDS = 10
CEILING_BYTES = 1 << 30
FUZZ = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
LABELS = ("billing", "delivery", "other")


# --- the ceiling --------------------------------------------------------------------------------


def under_ceiling(batch: Callable[[Callable[[str, Callable[[], Any]], Any]], None]) -> None:
    """Run `batch(call)` in a forked child; `call(case, fn)` runs fn() under the ceiling. Fails
    the test with the case when a call goes over it, or with the child's error."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report on the pipe, never return into pytest
        os.close(read_end)
        status = 1
        with os.fdopen(write_end, "w", buffering=1) as report:
            try:
                signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the alarm ends the child, even in C code
                _, hard = resource.getrlimit(resource.RLIMIT_AS)
                resource.setrlimit(resource.RLIMIT_AS, (address_space() + CEILING_BYTES, hard))

                def call(case: str, fn: Callable[[], Any]) -> Any:
                    report.write(json.dumps({"case": case[:500]}) + "\n")
                    signal.alarm(CEILING_SECONDS)
                    try:
                        return fn()
                    finally:
                        signal.alarm(0)

                batch(call)
                status = 0
            except BaseException:  # noqa: BLE001 — every failure goes to the parent, as text
                report.write(json.dumps({"error": traceback.format_exc()[-6000:]}) + "\n")
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as report:
        messages = [json.loads(line) for line in report]
    _, status = os.waitpid(pid, 0)
    cases = [m["case"] for m in messages if "case" in m]
    errors = [m["error"] for m in messages if "error" in m]
    last = cases[-1] if cases else "(none)"
    if os.WIFSIGNALED(status):
        why = {signal.SIGALRM: f"over the {CEILING_SECONDS} s ceiling"}.get(os.WTERMSIG(status),
                                                                          f"killed by signal {os.WTERMSIG(status)}")
        pytest.fail(f"{why} on case {len(cases)}: {last}")
    assert os.WEXITSTATUS(status) == 0 and not errors, f"on case {len(cases)}: {last}\n" + "\n".join(errors)
    assert cases, "no case ran"


def address_space() -> int:
    """The process's virtual size now, in bytes (VmSize)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmSize:"))
    return int(line.split()[1]) * 1024


def refused_clearly(fn: Callable[[], Any]) -> ApiError | None:
    """fn() either returns or raises the API's 4xx; anything else fails the case."""
    try:
        fn()
    except ApiError as e:
        assert 400 <= e.status < 500, (e.status, e.code, e.message)
        return e
    return None


# --- hostile input ------------------------------------------------------------------------------

# What the readers look for, so that generated objects reach past the first check.
KEYS = ("text", "label", "labels", "data", "annotations", "predictions", "result", "from_name", "to_name", "type",
        "value", "choices", "was_cancelled", "skipped", "ground_truth", "updated_at", "created_at", "id", "fields",
        "responses", "suggestions", "question_name", "status", "values", "metadata", "examples", "items", "meta")
ODD_STRINGS = ("", " ", "\u3000", "\x00", "\ud800", "choices", "submitted", "NaN", "[", "{\"choices\": [", "'=1+1",
               "\u202e", "💥", *LABELS)
# Text that stands in for a value once the document is written out: nesting too deep for any
# JSON encoder to write, and sizes no strategy would draw.
AMPLIFIED = {
    "deep arrays": lambda n: "[" * n + "]" * n,
    "deep objects": lambda n: '{"choices":' * n + '"billing"' + "}" * n,
    "deep label": lambda n: "[" * n + '"billing"' + "]" * n,
    "deep, unclosed": lambda n: "[" * n,
    "brackets in a string": lambda n: '"' + "[{" * n + '"',
    "wide array": lambda n: "[" + "0," * n + "0]",
    "wide choices": lambda n: '{"choices": [' + '"billing",' * n + '"other"]}',
    "many keys": lambda n: "{" + ",".join(f'"k{i}":0' for i in range(n)) + "}",
    "long string": lambda n: '"' + "x" * (20 * n) + '"',
    "long escapes": lambda n: '"' + "\\u00e9\\\"" * n + '"',
}
DEPTHS = (1, 22, 32, 33, 40, 1_000, 100_000)  # 32 is the limit (MAX_JSON_DEPTH)
SIZES = {"deep arrays": DEPTHS, "deep objects": DEPTHS, "deep label": DEPTHS, "deep, unclosed": DEPTHS,
         "brackets in a string": DEPTHS, "wide array": (1_000, 1_000_000), "wide choices": (1_000, 1_000_000),
         "many keys": (1_000, 100_000), "long string": (1_000, 100_000), "long escapes": (1_000, 100_000)}
MARK = "\ue000amplified {}\ue000"


def amplifier() -> st.SearchStrategy[str]:
    """A placeholder that `expand` replaces with an amplified value."""
    return st.sampled_from(sorted(AMPLIFIED)).flatmap(
        lambda kind: st.sampled_from(SIZES[kind]).map(lambda size: MARK.format(f"{kind}|{size}")))


# What the amplifiers of one text may add up to: each is huge on its own, but a document drawing a
# dozen of them would be hundreds of megabytes, which the fuzzing child itself (its copies of the
# text, hypothesis's records) cannot hold under the memory ceiling. Past it, the small size.
AMPLIFIED_BUDGET = 8_000_000


def expand(text: str) -> str:
    parts = text.split("\ue000")
    spent = 0
    for i in range(1, len(parts), 2):
        kind, size = parts[i].removeprefix("amplified ").split("|")
        placeholder_quote = parts[i - 1].endswith('"') and parts[i + 1].startswith('"')
        value = AMPLIFIED[kind](int(size))
        if spent + len(value) > AMPLIFIED_BUDGET:
            value = AMPLIFIED[kind](min(SIZES[kind]))
        spent += len(value)
        parts[i] = value
        if placeholder_quote:  # in JSON, the placeholder was a whole string: the value takes its place
            parts[i - 1], parts[i + 1] = parts[i - 1][:-1], parts[i + 1][1:]
    return "".join(parts)


def plain_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(blacklist_characters="\ue000"), max_size=max_size)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                    plain_text(12), st.sampled_from(ODD_STRINGS), amplifier())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS) | plain_text(6), inner, max_size=4)),
    max_leaves=12)


def label_value() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(LABELS), st.lists(st.sampled_from(LABELS), max_size=3),
                     st.fixed_dictionaries({"choices": st.lists(st.sampled_from(LABELS), max_size=3)}), values)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field with a value of its shape, a hostile one, or absent (None drops it below)."""
    return st.one_of(strategy, values, st.just(None))


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda **kv: {k: v for k, v in kv.items() if v is not None}, **fields)


def texts() -> st.SearchStrategy[Any]:
    return maybe(st.sampled_from(["I was charged twice", "where is my parcel", "退款"]))


def rows(row: st.SearchStrategy[Any], typical: Any) -> st.SearchStrategy[list[Any]]:
    """A few rows; or, one time in eight, many: a million junk rows (2 MB), or the `typical` row
    60,000 times (over the default limit of 50,000 examples per upload)."""
    few = st.lists(st.one_of(row, values), min_size=1, max_size=6)
    many = st.sampled_from([0, "x", {}, typical]).map(lambda one: [one] * (60_000 if one is typical else 1_000_000))
    return st.sampled_from([few] * 7 + [many]).flatmap(lambda rows: rows)


TYPICAL_EXAMPLE = {"text": "I was charged twice", "label": "billing"}
TYPICAL_TASK = {"data": {"text": "I was charged twice"}, "annotations": [
    {"result": [{"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": ["billing"]}}]}]}
TYPICAL_RECORD = {"fields": {"text": "I was charged twice"}, "responses": {"label": [{"value": "billing"}]}}
example = obj(text=texts(), label=maybe(label_value()), labels=maybe(label_value()), extra=maybe(values))
region = obj(from_name=maybe(st.just("topic")), to_name=maybe(st.just("text")), type=maybe(st.just("choices")),
             value=maybe(obj(choices=maybe(label_value()))))
offset = st.integers(-1, 40)
span_region = obj(from_name=maybe(st.just("ner")), to_name=maybe(st.just("text")), type=maybe(st.just("labels")),
                  value=maybe(obj(start=maybe(offset), end=maybe(offset), labels=maybe(label_value()))))
annotation = obj(result=maybe(st.lists(st.one_of(region, span_region, values), max_size=3)),
                 was_cancelled=maybe(st.booleans()),
                 ground_truth=maybe(st.booleans()), updated_at=maybe(plain_text(8)))
task = obj(id=maybe(st.integers(0, 99)), data=maybe(obj(text=texts(), extra=maybe(values))),
           annotations=maybe(st.lists(st.one_of(annotation, values), max_size=3)),
           predictions=maybe(st.lists(st.one_of(annotation, values), max_size=2)))
TYPICAL_SPAN_ROW = {"text": "I was charged twice", "label": [[6, 13, "billing"]]}
triple = st.tuples(offset, offset, st.sampled_from(LABELS)).map(list)
span_row = obj(text=texts(), label=maybe(st.lists(st.one_of(triple, values), max_size=3)),
               entities=maybe(st.lists(obj(start_offset=maybe(offset), end_offset=maybe(offset),
                                           label=maybe(st.sampled_from(LABELS))), max_size=3)),
               error=maybe(st.just("worker died")))
TYPICAL_CONLL_ROW = {"tokens": ["charged", "twice"], "tags": ["B-billing", "O"]}
conll_row = obj(tokens=maybe(st.lists(st.sampled_from(["EU", "退", "款", "", " ", "💥"]), max_size=5)),
                tags=maybe(st.lists(st.sampled_from(["O", "B-billing", "I-billing", "I-", "X-PER", ""]), max_size=5)),
                error=maybe(st.just("worker died")))
conll_line = st.one_of(st.sampled_from(["", "-DOCSTART- -X- O", "EU NNP B-billing", "北\tI-billing", "lonely",
                                        "a b c X-PER"]), plain_text(12))
flat_record = obj(text=texts(), label=maybe(label_value()), id=maybe(st.integers(0, 99)), extra=maybe(values))
answer = obj(value=maybe(label_value()), status=maybe(st.sampled_from(["submitted", "discarded"])))
argilla_record = obj(id=maybe(st.integers(0, 99)), fields=maybe(obj(text=texts())), metadata=maybe(values),
                     responses=maybe(st.one_of(st.dictionaries(st.just("label"), st.lists(answer, max_size=3)),
                                               st.lists(obj(values=maybe(st.dictionaries(st.just("label"), answer)),
                                                            status=maybe(st.just("submitted"))), max_size=3))),
                     suggestions=maybe(st.dictionaries(st.just("label"), answer)))


def json_text(document: Any) -> str:
    return expand(json.dumps(document, ensure_ascii=False))


def written_once(write: Callable[[Any], str], rows: list[Any]) -> list[str]:
    """Each row written out, once per distinct row (`rows` may be one row a million times)."""
    done: dict[int, str] = {}
    return [done[id(row)] if id(row) in done else done.setdefault(id(row), write(row)) for row in rows]


def jsonl_text(lines: list[Any]) -> str:
    return "\n".join(written_once(json_text, lines))


def cell(value: Any) -> str:
    return expand(value) if isinstance(value, str) else json_text(value)


def csv_text(columns: list[str], records: list[Any]) -> str:
    def csv_line(record: Any) -> str:
        record = record if isinstance(record, dict) else {"text": record}
        buffer = io.StringIO()
        csv.writer(buffer).writerow([cell(record[c]) if c in record else "" for c in columns])
        return buffer.getvalue()

    return csv_line(dict(zip(columns, columns))) + "".join(written_once(csv_line, records))


csv_columns = st.lists(st.sampled_from(["text", "label", "labels", "topic", "id", "extra"]), min_size=1, max_size=4,
                       unique=True)
# Each format's upload, from a document of its own shape (with hostile values and amplifiers in it).
UPLOADS: dict[str, st.SearchStrategy[str]] = {
    "json": st.builds(json_text, st.one_of(obj(examples=maybe(rows(example, TYPICAL_EXAMPLE))), values)),
    "jsonl": st.builds(jsonl_text, rows(example, TYPICAL_EXAMPLE)),
    "csv": st.builds(csv_text, csv_columns, rows(example, TYPICAL_EXAMPLE)),
    "label_studio": st.builds(json_text, st.one_of(rows(task, TYPICAL_TASK), task)),
    "label_studio_min": st.builds(json_text, st.one_of(rows(flat_record, TYPICAL_EXAMPLE), flat_record)),
    "label_studio_csv": st.builds(csv_text, csv_columns, rows(flat_record, TYPICAL_EXAMPLE)),
    "doccano": st.one_of(st.builds(jsonl_text, rows(example, TYPICAL_EXAMPLE)),
                         st.builds(jsonl_text, rows(span_row, TYPICAL_SPAN_ROW))),
    "argilla": st.builds(lambda write, records: write(records), st.sampled_from([json_text, jsonl_text]),
                         rows(argilla_record, TYPICAL_RECORD)),
    "conll": st.one_of(st.builds(jsonl_text, rows(conll_row, TYPICAL_CONLL_ROW)),
                       st.builds("\n".join, st.one_of(st.lists(conll_line, max_size=12),
                                                      st.just(["a O", ""] * 60_000)))),
}


def damaged(upload: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """An upload as written, or cut short, or with a byte order mark or a stray character in it."""
    def damage(text: str, how: str, at: float) -> str:
        # only the copy asked for: texts run to tens of megabytes, and the child's memory is capped
        cut = int(len(text) * at)
        if how == "cut":
            return text[:cut]
        if how == "bom":
            return "\ufeff" + text
        if how == "stray":
            return text[:cut] + "\"" + text[cut:]
        return text

    return st.builds(damage, upload, st.sampled_from(["whole", "whole", "cut", "bom", "stray"]), st.floats(0, 1))


read_options = st.builds(interop.ReadOptions, st.sampled_from([None, "text", "data"]),
                         st.sampled_from([None, "label", "topic"]), st.sampled_from(["annotations", "predictions"]),
                         st.just(Settings().max_examples_per_request))  # as the route reads them


# --- the guard ----------------------------------------------------------------------------------


def test_every_reader_is_fuzzed():
    assert set(UPLOADS) == set(interop.EXAMPLE_FORMATS), "a reader with no hostile uploads here"


@pytest.mark.parametrize("name", interop.EXAMPLE_FORMATS)
def test_reader_returns_or_refuses_with_a_4xx_under_the_ceiling(app, name):
    """The reader and the validation after it, as `POST .../examples?format=` runs them."""
    read = interop.example_reader(name)

    def batch(call: Callable[[str, Callable[[], Any]], Any]) -> None:
        @FUZZ
        @given(text=damaged(UPLOADS[name]), options=read_options)
        def reads(text: str, options: interop.ReadOptions) -> None:
            def read_and_validate() -> None:
                upload = read(text, options)
                with upload.errors_at_source_rows():
                    validate(ExamplesUpload, upload.document)

            call(f"{name} {options} {text[:300]!r} ({len(text)} characters)",
                 lambda: refused_clearly(read_and_validate))

        with app.app_context():
            reads()

    under_ceiling(batch)


def test_label_config_returns_or_refuses_under_the_ceiling():
    """A project's labeling config (XML, from /ls/setup, /predict, webhooks) with hostile nesting and size."""
    element = st.sampled_from(["View", "Text", "Choices", "Choice", "Header", "x"])
    xml = st.one_of(
        st.builds(lambda tag, n: f"<{tag}>" * n + f"</{tag}>" * n, element, st.sampled_from([1, 1_000, 100_000])),
        st.builds(lambda n: '<View><Text name="t" value="$text"/><Choices name="c" toName="t">'
                            + '<Choice value="billing"/>' * n + "</Choices></View>", st.sampled_from([1, 100_000])),
        st.builds(lambda n: "<View " + " ".join(f'a{i}="x"' for i in range(n)) + "/>", st.sampled_from([1, 10_000])),
        st.sampled_from(['<!DOCTYPE x [<!ENTITY a "aaaa">]><View>&a;</View>', "<View", "", "\x00"]),
        plain_text(50))

    def batch(call: Callable[[str, Callable[[], Any]], Any]) -> None:
        @FUZZ
        @given(xml=xml)
        def reads(xml: str) -> None:
            call(f"{xml[:300]!r} ({len(xml)} characters)",
                 lambda: refused_clearly(lambda: label_studio.label_config(xml, "/label_config")))

        reads()

    under_ceiling(batch)


class CountingList(list):
    """A list that counts how often it is walked."""

    walks: list[int] = []

    def __iter__(self) -> Iterator[Any]:
        CountingList.walks.append(id(self))
        return super().__iter__()


def test_choice_names_walks_each_list_once():
    """The reader of JSON-MIN/CSV label cells: one pass, whatever the nesting (a walk per level
    and element, not 2^depth)."""
    CountingList.walks = []
    value: Any = "billing"
    for _ in range(20):
        value = CountingList([value, "other"])
    assert label_studio.choice_names(value) == ["billing"] + ["other"] * 20
    assert len(CountingList.walks) == len(set(CountingList.walks)) == 20


# --- every JSON endpoint ------------------------------------------------------------------------

# A body of each endpoint's own shape (hostile values and amplifiers inside); a random JSON value
# is drawn for any endpoint too.
label_configs = st.sampled_from(['<View><Text name="text" value="$text"/><Choices name="topic" toName="text">'
                                 + "".join(f'<Choice value="{name}"/>' for name in LABELS) + "</Choices></View>",
                                 "<View/>"])
job_item = obj(id=maybe(plain_text(6)), text=texts(), meta=maybe(values))
BODIES: dict[str, st.SearchStrategy[Any]] = {
    "v1.label_sets.create_label_set": obj(name=maybe(plain_text(8)), multi_label=maybe(st.booleans()),
                                          labels=maybe(st.lists(obj(name=maybe(plain_text(8))), max_size=4)),
                                          config=maybe(values)),
    "v1.label_sets.update_label_set": obj(base_model=maybe(st.sampled_from(["auto", "x"])),
                                          review_precision=maybe(st.one_of(st.floats(), values)),
                                          retrain_after=maybe(st.one_of(st.integers(), values))),
    "v1.label_sets.add_examples": obj(examples=maybe(rows(example, TYPICAL_EXAMPLE))),
    "v1.label_sets.train": obj(config=maybe(values)),
    "v1.label_sets.activate_adapter": values,
    "v1.jobs.create_job": obj(label_set_id=st.just("{label_set_id}"), items=maybe(rows(job_item, {"text": "t"})),
                              adapter_version=maybe(st.just(1))),
    "v1.jobs.cancel_job": values,
    "v1.jobs.review_item": obj(label=maybe(st.sampled_from(LABELS)), labels=maybe(st.lists(st.sampled_from(LABELS),
                                                                                          max_size=3))),
    "v1.predict.predict": obj(label_set_id=st.just("{label_set_id}"), items=maybe(rows(job_item, {"text": "t"}))),
    "v1.loop.suggest": obj(job_id=maybe(st.one_of(st.just("{job_id}"), plain_text(8))), n=maybe(values)),
    "v1.loop.audit": values,
    "v1.loop.decide": obj(decision=maybe(st.sampled_from(["accept", "keep", "x"]))),
    "v1.label_studio_connection.connect": obj(url=maybe(st.just("http://127.0.0.1:9")), project=maybe(st.just(1)),
                                              token=maybe(st.just("t"))),
    "v1.label_studio_connection.pull": values,
    "label_studio.setup": obj(project=maybe(values), schema=maybe(label_configs)),
    "label_studio.predict": obj(tasks=maybe(rows(task, TYPICAL_TASK)), label_config=maybe(label_configs),
                                params=maybe(values)),
    "label_studio.webhook": obj(action=maybe(st.sampled_from(["ANNOTATION_CREATED", "START_TRAINING", "X"])),
                                task=maybe(task), annotation=maybe(annotation), project=maybe(values)),
    "label_studio.train": obj(annotations=maybe(rows(task, TYPICAL_TASK)), label_config=maybe(label_configs)),
}


def json_endpoints(app: Any) -> dict[str, tuple[str, str]]:
    """Every route of the API (not the dashboard's form posts) that takes a body: endpoint → (method, rule)."""
    return {rule.endpoint: (method, rule.rule) for rule in app.url_map.iter_rules()
            for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH"})
            if rule.rule.startswith(("/v1/", "/ls/"))}


def test_every_json_endpoint_is_fuzzed(app):
    assert set(json_endpoints(app)) == set(BODIES), "an endpoint with no hostile bodies here"


def test_json_endpoints_answer_below_500_under_the_ceiling(make_app, auth, make_label_set, add_adapter):
    app = make_app(predict_timeout=0.01)
    client = app.test_client()
    label_set_id = make_label_set("fuzz", labels=LABELS)["id"]
    add_adapter(label_set_id)
    job_id = client.post("/v1/jobs", headers=auth, json={"label_set_id": label_set_id, "items": [{"text": "x"}]}
                         ).get_json()["id"]
    ids = {"label_set_id": label_set_id, "job_id": job_id}
    endpoints = json_endpoints(app)
    paths = client.get("/openapi.json").get_json()["paths"]

    def url(rule: str) -> str:
        for name, value in ids.items():
            rule = rule.replace(f"<id:{name}>", value).replace(f"<{name}>", value)
        return (rule.replace("<int(max=2147483647):version>", "1").replace("<path:item_id>", "0")
                .replace("<int(max=2147483647):example_id>", "1"))

    def batch(call: Callable[[str, Callable[[], Any]], Any]) -> None:
        for factory in app.extensions.values():  # the child opens its own database connections
            if hasattr(factory, "kw") and "bind" in factory.kw:
                factory.kw["bind"].dispose(close=False)

        @settings(FUZZ, max_examples=150)
        @given(endpoint=st.sampled_from(sorted(endpoints)), data=st.data(),
               media=st.sampled_from(["application/json", "text/csv", "application/x-ndjson"]),
               fmt=st.sampled_from([None, *interop.FORMATS, "nonsense"]))
        def answers(endpoint: str, data: st.DataObject, media: str, fmt: str | None) -> None:
            method, rule = endpoints[endpoint]
            document = data.draw(st.one_of(BODIES[endpoint], values), label="body")
            body = damaged(st.just(json_text(document).replace("{label_set_id}", label_set_id)
                                   .replace("{job_id}", job_id)))
            uploading = endpoint == "v1.label_sets.add_examples" and fmt is not None
            if uploading and fmt in UPLOADS:  # an upload in that format, or anything else
                body = st.one_of(body, damaged(UPLOADS[fmt]))
            text = data.draw(body, label="text")
            target = url(rule) + (f"?format={fmt}" if uploading else "")
            response = call(f"{method} {target} {media} {text[:300]!r} ({len(text)} characters)",
                            lambda: client.open(target, method=method, headers=auth, data=text.encode(
                                "utf-8", "surrogatepass"), content_type=media if "/examples" in target
                                else "application/json"))
            documented = paths[PARAM.sub(r"{\2}", rule)][method.lower()]["responses"]
            # a 5xx only where documented: the worker or Label Studio failing or not answering
            assert response.status_code < 500 or str(response.status_code) in documented, (
                target, response.status_code, response.get_data(as_text=True)[:300])
            if response.status_code >= 400:
                assert set(response.get_json()["error"]) == {"code", "message", "details"}

        answers()

    under_ceiling(batch)
