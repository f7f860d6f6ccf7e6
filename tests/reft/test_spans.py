"""Span labeling: offsets ↔ tokens ↔ BIO tags, validation, constrained decoding, entity metrics,
training and tagging (tests/fixtures/ner_en: 32 + 12 hand-written English NER sentences)."""
import itertools
import json
import random
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from reft_core import Adapter, ReftConfigError, Tagger, evaluate_spans, train_spans
from reft_core.adapter import AdapterConfig
from reft_core.metrics import span_metrics
from reft_core.span_decoding import bio_constraints, decode, viterbi
from reft_core.span_training import EARLY_STOPPING_MIN_EVAL
from reft_core.spans import (
    Alignment,
    Span,
    SpanError,
    align,
    bio_tags,
    from_conll,
    spans_from_tags,
    spans_to_tags,
    tag_parts,
    to_conll,
    validate_spans,
)

from .conftest import make_base

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ner_en"
LABELS = json.loads((FIXTURE / "labels.json").read_text())
# e5 cuts it into ▁我 · 住在 · 北京市 · 朝 · 阳 · 区 · ， · 在 · 阿里巴巴 · 工作 · 。
ZH = "我住在北京市朝阳区，在阿里巴巴工作。"
EN = "Alice Martin joined Google in Paris, then Acme Corp."


def rows(split):
    return [json.loads(line) for line in (FIXTURE / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The training tests' small ops run many times faster on one thread on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def e5_tokenizer():
    from reft_core.multilingual import multilingual_model_path

    return AutoTokenizer.from_pretrained(multilingual_model_path(), local_files_only=True)


def round_trip(tokenizer, text, spans, prefix=""):
    alignment = align(tokenizer, [text], 64, prefix)[0]
    tagged = spans_to_tags(alignment, validate_spans(text, spans, LABELS))
    return alignment, tagged, spans_from_tags(alignment, tagged.tags)


# -- offsets, tokens, tags ------------------------------------------------------------------------------
EXACT = {
    "en": (EN, [Span(0, 12, "PER"), Span(20, 26, "ORG"), Span(30, 35, "LOC"), Span(42, 51, "ORG")]),
    # two adjacent LOC spans (北京市 | 朝阳区) stay two
    "zh": (ZH, [Span(3, 6, "LOC"), Span(6, 9, "LOC"), Span(11, 15, "ORG")]),
}


@pytest.mark.parametrize("language", EXACT)
@pytest.mark.parametrize("which", ["minilm", "e5"])
def test_spans_on_token_boundaries_survive_offsets_to_bio_and_back(language, which, tokenizer, e5_tokenizer):
    text, spans = EXACT[language]
    tok, prefix = (tokenizer, "") if which == "minilm" else (e5_tokenizer, "query: ")
    alignment, tagged, back = round_trip(tok, text, spans, prefix)
    assert back == spans and tagged.dropped == []
    assert alignment.ids == tok([prefix + text])["input_ids"][0]
    # no content token reaches into the prefix, none starts or ends with whitespace
    for i in alignment.content:
        a, b = alignment.offsets[i]
        assert 0 <= a < b <= len(text) and text[a:b] == text[a:b].strip()


def test_e5_pieces_start_at_the_space_but_spans_do_not(e5_tokenizer):
    alignment, tagged, back = round_trip(e5_tokenizer, EN, [Span(20, 26, "ORG")], "query: ")
    words = [EN[a:b] for a, b in (alignment.offsets[i] for i in alignment.content)]
    assert words[:2] == ["Alice", "Martin"] and tagged.tags[words.index("Google")] == "B-ORG"
    assert tagged.tags.count("O") == len(words) - 1 and back == [Span(20, 26, "ORG")]


def test_a_boundary_inside_a_chinese_piece_rounds_to_the_nearest_token_boundary(e5_tokenizer, tokenizer):
    alignment = align(e5_tokenizer, [ZH], 64, "query: ")[0]
    assert "北京市" in [ZH[a:b] for a, b in alignment.offsets] and "阿里巴巴" in [ZH[a:b] for a, b in alignment.offsets]

    def rounded(*spans):
        tagged = spans_to_tags(alignment, validate_spans(ZH, spans, LABELS))
        return [ZH[s.start:s.end] for s in spans_from_tags(alignment, tagged.tags)], \
            [ZH[s.start:s.end] for s in tagged.dropped]

    assert rounded(Span(3, 5, "LOC")) == (["北京市"], [])  # 北京: 2 of the piece's 3 characters
    assert rounded(Span(5, 6, "LOC")) == ([], ["市"])  # 1 of 3: rounds to nothing, reported
    assert rounded(Span(12, 15, "ORG")) == (["阿里巴巴"], [])  # 里巴巴: 3 of 4
    assert rounded(Span(10, 13, "ORG")) == (["在阿里巴巴"], [])  # 阿里: half of 阿里巴巴, a tie rounds outward
    assert rounded(Span(11, 13, "PER"), Span(13, 15, "ORG")) == (["阿里巴巴"], ["巴巴"])  # the earlier takes a tie
    # MiniLM reads Chinese a character per token: the same spans are kept exactly
    mini = align(tokenizer, [ZH], 64)[0]
    assert spans_from_tags(mini, spans_to_tags(mini, [Span(3, 5, "LOC")]).tags) == [Span(3, 5, "LOC")]


def test_spans_past_the_length_cut_are_dropped(tokenizer):
    text = "word " * 40 + "Paris"
    alignment = align(tokenizer, [text], 16)[0]
    tagged = spans_to_tags(alignment, [Span(0, 4, "LOC"), Span(200, 205, "LOC")])
    assert tagged.tags[0] == "B-LOC" and tagged.dropped == [Span(200, 205, "LOC")]


def test_conll_rows_join_tokens_with_spaces_and_chinese_without():
    text, spans = from_conll(["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
                             ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"])
    assert text == "EU rejects German call to boycott British lamb ."
    assert [(text[s.start:s.end], s.label) for s in spans] == [("EU", "ORG"), ("German", "MISC"), ("British", "MISC")]
    text, spans = from_conll(["我", "住", "在", "北", "京", "，", "在", "Apple", "工", "作"],
                             ["O", "O", "O", "B-LOC", "I-LOC", "O", "O", "B-ORG", "O", "O"])
    assert text == "我住在北京，在 Apple 工作"
    assert [(text[s.start:s.end], s.label) for s in spans] == [("北京", "LOC"), ("Apple", "ORG")]
    # IOB1 (an entity may open with I-) and two adjacent entities of one type
    text, spans = from_conll(["Peter", "Blackburn", "Paul", "met"], ["I-PER", "I-PER", "B-PER", "O"])
    assert [text[s.start:s.end] for s in spans] == ["Peter Blackburn", "Paul"]
    with pytest.raises(ValueError, match="not a BIO tag"):
        from_conll(["x"], ["U-PER"])


@pytest.mark.parametrize("text, spans", [
    ("EU rejects German call to boycott British lamb .", [Span(0, 2, "ORG"), Span(11, 17, "MISC"),
                                                          Span(34, 41, "MISC")]),
    ("Peter Blackburn Paul met", [Span(0, 15, "PER"), Span(16, 20, "PER")]),  # adjacent, one type
    ("我住在北京，在 Apple 工作", [Span(3, 5, "LOC"), Span(8, 13, "ORG")]),
    (ZH, [Span(3, 6, "LOC"), Span(11, 15, "ORG")]),
    ("no entity here", []),
], ids=["english", "adjacent", "mixed", "chinese", "none"])
def test_to_conll_round_trips_through_from_conll_on_token_boundaries(text, spans):
    tokens, tags = to_conll(text, [s.to_dict() for s in reversed(spans)])
    assert from_conll(tokens, tags) == (text, spans)


def test_to_conll_makes_each_cjk_character_a_token_and_rounds_spans_inside_tokens():
    tokens, tags = to_conll("我在 Apple 工作", [{"start": 3, "end": 8, "label": "ORG"}])
    assert tokens == ["我", "在", "Apple", "工", "作"] and tags == ["O", "O", "B-ORG", "O", "O"]
    # "Paris." is one token: a span holding 5 of its 6 characters takes it, one holding 3 of 6
    # ties and takes it too (rounding outward), one holding 2 of 6 does not
    tokens, tags = to_conll("in  Paris.\tnow", [Span(4, 9, "LOC")])
    assert tokens == ["in", "Paris.", "now"] and tags == ["O", "B-LOC", "O"]
    assert to_conll("a Paris.", [Span(5, 8, "LOC")])[1] == ["O", "B-LOC"]
    assert to_conll("a Paris.", [Span(6, 8, "LOC")])[1] == ["O", "O"]
    assert to_conll("ab cd", [Span(1, 4, "LOC")])[1] == ["B-LOC", "I-LOC"]


# -- validation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spans, pointer, words", [
    ([{"start": 0, "end": 99, "label": "PER"}], "/spans/0/end", "past the end of the text (10 characters)"),
    ([{"start": -1, "end": 3, "label": "PER"}], "/spans/0/start", "before the text"),
    ([{"start": 4, "end": 4, "label": "PER"}], "/spans/0/end", "greater than start"),
    ([{"start": 0, "end": 3, "label": "PER"}, {"start": 2, "end": 5, "label": "ORG"}], "/spans/1",
     "overlaps span 0"),
    ([{"start": 0, "end": 3, "label": "PERSON"}], "/spans/0/label", "unknown label 'PERSON'"),
    ([{"start": True, "end": 3, "label": "PER"}], "/spans/0/start", "integer"),
    ([{"start": 0, "end": 3}], "/spans/0/label", "missing label"),
    (["PER"], "/spans/0", "an object"),
])
def test_bad_spans_are_rejected_naming_the_span_and_the_problem(spans, pointer, words):
    with pytest.raises(SpanError) as caught:
        validate_spans("Ann Smith.", spans, LABELS)
    assert caught.value.pointer == pointer and words in str(caught.value)


def test_validation_sorts_and_training_names_the_example(tokenizer):
    assert validate_spans("Ann in Rome", [Span(7, 11, "LOC"), Span(0, 3, "PER")], LABELS) == \
        [Span(0, 3, "PER"), Span(7, 11, "LOC")]
    base = make_base("bert", tokenizer)
    with pytest.raises(SpanError) as caught:
        train_spans(base, ["Ann", "Bob"], [[], [{"start": 0, "end": 3, "label": "CITY"}]], LABELS)
    assert caught.value.pointer == "/1/spans/0/label"
    with pytest.raises(ReftConfigError, match="positions"):
        train_spans(base, ["Ann"], [[]], LABELS, config={"positions": "f1+l1"})


# -- decoding -----------------------------------------------------------------------------------------------------
def valid(tags):
    previous = "O"
    for tag in tags:
        prefix, label = tag_parts(tag)
        if prefix == "I" and (previous == "O" or tag_parts(previous)[1] != label):
            return False
        previous = tag
    return True


def test_viterbi_never_emits_an_invalid_sequence_and_finds_the_best_valid_one():
    labels = ["PER", "ORG", "LOC", "MISC"]
    tags = bio_tags(labels)
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        batch, width = 1 + trial % 5, 1 + trial % 13
        scale = [0.1, 1.0, 10.0, 100.0][trial % 4]
        logits = torch.randn(batch, width, len(tags), generator=g) * scale
        logits[..., 2::2] += scale  # push I- tags up: the unconstrained argmax is often invalid
        lengths = [random.Random(trial * 10 + b).randint(0, width) for b in range(batch)]
        paths = viterbi(torch.log_softmax(logits, -1), lengths, labels)
        assert [len(p) for p in paths] == lengths
        assert all(valid([tags[k] for k in p]) for p in paths)
    # exhaustive check on short rows: the path is the valid sequence of highest score
    small = ["PER", "LOC"]
    small_tags = bio_tags(small)
    every = torch.tensor([seq for seq in itertools.product(range(5), repeat=4) if valid([small_tags[k] for k in seq])])
    for _ in range(30):
        log_probs = torch.log_softmax(torch.randn(1, 4, 5, generator=g) * 3, -1)
        best = every[log_probs[0, torch.arange(4), every].sum(1).argmax()]
        assert viterbi(log_probs, [4], small) == [best.tolist()]


def test_bio_constraints_allow_i_only_after_the_same_label():
    allowed, first = bio_constraints(["PER", "LOC"])  # O, B-PER, I-PER, B-LOC, I-LOC
    assert first.tolist() == [True, True, False, True, False]
    assert allowed[:, 2].tolist() == [False, True, True, False, False]
    assert allowed[:, 1].all() and allowed[:, 0].all()


def test_decoding_maps_tokens_back_to_characters_with_the_least_tag_probability_as_score():
    text = "Ann Lee in Rome"
    alignment = Alignment(ids=[0, 1, 2, 3, 4, 0], offsets=[(0, 0), (0, 3), (4, 7), (8, 10), (11, 15), (0, 0)])
    tags = bio_tags(["PER", "LOC"])
    probs = torch.full((1, 6, 5), 0.01)
    for token, tag, p in [(1, "B-PER", 0.9), (2, "I-PER", 0.6), (3, "O", 0.96), (4, "B-LOC", 0.7)]:
        probs[0, token, tags.index(tag)] = p
    probs[0, 0, 0] = probs[0, 5, 0] = 0.96
    [prediction] = decode(probs.log(), [alignment], [text], ["PER", "LOC"], review_threshold=0.5)
    got = [(s.text, s.label, s.start, s.end, round(s.score, 3)) for s in prediction.spans]
    norm = probs[0].sum(-1)  # decode normalises with a softmax
    assert got == [("Ann Lee", "PER", 0, 7, round(0.6 / norm[2].item(), 3)),
                   ("Rome", "LOC", 11, 15, round(0.7 / norm[4].item(), 3))]
    assert not prediction.needs_review
    assert decode(probs.log(), [alignment], [text], ["PER", "LOC"], review_threshold=0.95)[0].needs_review


# -- metrics ---------------------------------------------------------------------------------------------------------
def test_entity_metrics_count_exact_matches_only_per_type_and_micro():
    gold = [[Span(0, 5, "PER"), Span(10, 15, "LOC")], [Span(0, 3, "ORG")]]
    predicted = [[Span(0, 5, "PER"), Span(10, 14, "LOC"), Span(20, 25, "ORG")], [Span(0, 3, "ORG")]]
    m = span_metrics(gold, predicted, LABELS)
    assert (m["precision"], m["recall"], m["micro_f1"]) == (0.5, 0.6667, 0.5714)  # 2 of 4 right, 2 of 3 found
    assert m["per_label"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert m["per_label"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}  # boundary off by one
    assert m["per_label"]["ORG"]["precision"] == 0.5 and m["per_label"]["ORG"]["recall"] == 1.0
    assert m["macro_f1"] == round((1 + 0 + 2 / 3) / 3, 4) and (m["n_gold"], m["n_predicted"]) == (3, 4)
    assert span_metrics([[Span(0, 5, "PER")]], [[Span(0, 5, "LOC")]], LABELS)["micro_f1"] == 0.0  # wrong type


# -- training and tagging --------------------------------------------------------------------------------------------
TRAIN, TEST = rows("train"), rows("test")
# A random 32-wide model tells few of the fixture's 180 words apart: it learns slowly, so many steps.
TINY = {"layers": [0, 1, 2, 3], "rank": 8, "lr": 2e-2, "epochs": 30, "batch_size": 4, "patience": 40}


def fit(base, config=None):
    return train_spans(base, [r["text"] for r in TRAIN], [r["spans"] for r in TRAIN], LABELS, config=config)


def test_auto_layers_for_spans_are_every_block_but_the_top():
    from reft_core import TrainConfig

    assert TrainConfig().resolve_layers(6, kind="spans") == [0, 1, 2, 3, 4]
    assert TrainConfig().resolve_layers(1, kind="spans") == [0]
    assert TrainConfig(layers=[2]).resolve_layers(6, kind="spans") == [2]


def test_fixture_spans_are_valid():
    for row in TRAIN + TEST:
        validate_spans(row["text"], row["spans"], LABELS)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_a_tiny_random_model_learns_entities_better_than_chance(family, tokenizer):
    base = make_base(family, tokenizer)
    texts, gold = [r["text"] for r in TRAIN], [r["spans"] for r in TRAIN]
    untrained = Adapter.new(base, intervention="loreft", layers=[1], positions="all", rank=2, dropout=0.0,
                            label_names=LABELS, multi_label=False, pooling="token", kind="spans").eval()
    chance = evaluate_spans(base, untrained, texts, gold)["micro_f1"]
    adapter = fit(base, TINY)
    learned = evaluate_spans(base, adapter, texts, gold)["micro_f1"]
    print(family, chance, learned)
    assert learned >= chance + 0.15  # tagging at chance finds almost no span exactly
    assert adapter.metrics["evaluation"] == "held_out" and adapter.metrics["n_eval"] == 5


def test_minilm_learns_the_hand_written_entities_and_round_trips_through_files(minilm, tmp_path):
    adapter = fit(minilm)
    assert not adapter.training  # no dropout when it tags
    texts, gold = [r["text"] for r in TEST], [r["spans"] for r in TEST]
    m = evaluate_spans(minilm, adapter, texts, gold)
    print(m)
    assert m["micro_f1"] >= 0.6
    assert adapter.kind == "spans" and adapter.config.positions == "all" and adapter.size_bytes() < 64_000

    loaded = Adapter.load(adapter.save(tmp_path / "a"), minilm)
    assert loaded.kind == "spans" and loaded.tag_names == bio_tags(LABELS) and loaded.metrics == adapter.metrics
    tagger = Tagger(minilm)
    assert tagger.predict_spans(loaded, texts) == tagger.predict_spans(adapter, texts)
    with pytest.raises(ValueError, match="predict_spans"):
        tagger.predict(loaded, texts[:1])

    # A mixed batch — this spans adapter and a classification adapter on some of the same texts,
    # interleaved, with other batch sizes — answers each pair as the adapters do apart.
    topics = Adapter.new(minilm, intervention="loreft", layers=[3, 4], positions="f1+l1", rank=2, dropout=0.0,
                         label_names=["a", "b"], multi_label=False, pooling="mean").eval()
    pairs = [(adapter, t) if i % 3 else (topics, t) for i, t in enumerate(texts + texts[:5])]
    mixed = Tagger(minilm, batch_size=5).predict_mixed(pairs, {adapter: 0.7})
    spans_apart = dict(zip(texts, tagger.predict_spans(adapter, texts, review_threshold=0.7)))
    topics_apart = dict(zip(texts, tagger.predict(topics, texts)))
    for (who, text), answer in zip(pairs, mixed):
        expected = spans_apart[text] if who is adapter else topics_apart[text]
        if who is adapter:
            assert [(s.start, s.end, s.label) for s in answer.spans] == [(s.start, s.end, s.label)
                                                                         for s in expected.spans]
            assert answer.needs_review == expected.needs_review
            assert answer.confidence == pytest.approx(expected.confidence, abs=1e-5)
        else:
            assert answer.labels == expected.labels
            assert answer.scores == pytest.approx(expected.scores, abs=1e-5)


ZH_MARKED = """[张伟|PER]在[北京|LOC]的[阿里巴巴|ORG]工作。
[李娜|PER]昨天去了[上海|LOC]。
[腾讯|ORG]在[深圳|LOC]开了新办公室。
[王芳|PER]是[华为|ORG]的工程师。
[刘洋|PER]和[张伟|PER]一起去[广州|LOC]出差。
[百度|ORG]的总部在[北京|LOC]。
今天天气很好，我们去公园散步。
[李娜|PER]在[腾讯|ORG]实习了三个月。
[华为|ORG]宣布在[上海|LOC]建立研究中心。
[王芳|PER]住在[深圳|LOC]。
[阿里巴巴|ORG]和[百度|ORG]都发布了新产品。
[刘洋|PER]从[广州|LOC]回到了[北京|LOC]。
这家餐厅的菜很好吃。
[张伟|PER]给[华为|ORG]写了一封信。
[上海|LOC]的地铁非常方便。
[百度|ORG]聘请了[王芳|PER]。""".splitlines()


def unmark(line):
    """"[张伟|PER]在…" → ("张伟在…", [Span(0, 2, "PER"), …])."""
    text, spans = "", []
    for part in re.split(r"(\[[^\]]+\])", line):
        if part.startswith("["):
            words, label = part[1:-1].split("|")
            spans.append(Span(len(text), len(text) + len(words), label))
            part = words
        text += part
    return text, spans


def test_the_multilingual_base_learns_chinese_spans_at_the_right_characters():
    from reft_core import load_base

    base = load_base("multilingual-e5-small", device="cpu")
    texts, gold = zip(*(unmark(line) for line in ZH_MARKED))
    adapter = train_spans(base, texts, gold, LABELS, config={"eval_fraction": 0.2, "lr": 1e-2})
    predicted = Tagger(base).predict_spans(adapter, texts)
    m = span_metrics(gold, [[s.span for s in p.spans] for p in predicted], LABELS)
    print(m["micro_f1"], predicted[0])
    assert m["micro_f1"] >= 0.6
    assert all(s.text == text[s.start:s.end] and s.text.strip() == s.text for p, text in zip(predicted, texts)
               for s in p.spans)


def test_classification_adapters_saved_before_spans_load_as_classification(tokenizer):
    base = make_base("bert", tokenizer)
    adapter = Adapter.new(base, intervention="loreft", layers=[1], positions="all", rank=2, dropout=0.0,
                          label_names=["a", "b"], multi_label=False, pooling="mean")
    raw = json.loads(adapter.config.to_json())
    del raw["kind"]
    assert AdapterConfig.from_json(json.dumps(raw)).kind == "classification"


def test_with_few_held_out_sentences_training_runs_its_whole_budget_and_keeps_the_last_weights(minilm):
    # 32 fixture sentences hold out 5: far fewer than early stopping needs, so even `patience` 1
    # (stop at the first check without gain) does not stop the run before its 30 steps
    adapter = fit(minilm, {"min_steps": 30, "patience": 1})
    assert adapter.metrics["n_eval"] == 5 < EARLY_STOPPING_MIN_EVAL
    assert adapter.metrics["steps_run"] == 30
    # with enough held-out sentences the same patience stops at the first check without gain
    texts, gold = [r["text"] for r in TRAIN] * 2, [r["spans"] for r in TRAIN] * 2
    many = [f"{t} ({i})" for i, t in enumerate(texts)]
    stopped = train_spans(minilm, many, gold, LABELS, config={"min_steps": 200, "patience": 1, "eval_fraction": 0.5})
    assert stopped.metrics["n_eval"] >= EARLY_STOPPING_MIN_EVAL and stopped.metrics["steps_run"] < 200


def test_span_training_keeps_the_weight_average_when_asked(tokenizer):
    # `ema` is a training option for every kind: spans train through the same fit loop
    base = make_base("bert", tokenizer)
    config = {**TINY, "epochs": 2}
    plain, averaged = fit(base, config), fit(base, {**config, "ema": 0.9})
    assert averaged.config.train_config.ema == 0.9 and plain.metrics["steps_run"] == averaged.metrics["steps_run"]
    assert plain.metrics["loss_curve"] == averaged.metrics["loss_curve"]  # the same steps were taken …
    assert any(not torch.allclose(a, b) for a, b in zip(plain.parameters(), averaged.parameters()))  # … kept apart
