"""The mini world: determinism, exact SuperGLUE schemas, labels that follow from the world."""
import json
import random

import pytest

from prompt_tuning.data.mini_world import corpus, tasks, world as world_lib

SCHEMAS = {
    "boolq": {"question", "passage", "idx", "label"},
    "cb": {"premise", "hypothesis", "idx", "label"},
    "copa": {"premise", "choice1", "choice2", "question", "idx", "label"},
    "rte": {"premise", "hypothesis", "idx", "label"},
    "wic": {"word", "sentence1", "sentence2", "idx", "label", "start1", "end1", "start2", "end2"},
}
LABELS = {"boolq": {True, False}, "cb": {"entailment", "contradiction", "neutral"}, "copa": {0, 1},
          "rte": {"entailment", "not_entailment"}, "wic": {True, False}}
SIZES = {"train": 200, "validation": 60}


@pytest.fixture(scope="module")
def world():
    return world_lib.build_world(0)


@pytest.fixture(scope="module")
def generated(world):
    return {t: tasks.generate(t, world, SIZES) for t in tasks.TASKS}


def test_world_is_deterministic_and_seeded():
    assert world_lib.build_world(3) == world_lib.build_world(3)
    assert world_lib.build_world(3).people != world_lib.build_world(4).people
    w = world_lib.build_world(0)
    assert [corpus.document(w, i) for i in range(50)] == [corpus.document(world_lib.build_world(0), i) for i in range(50)]


def test_every_country_has_a_city(world):
    assert set(world.city_country.values()) == set(world.countries)


def test_world_size_is_checked():
    with pytest.raises(ValueError, match="out of range"):
        world_lib.build_world(0, num_people=1000)


def test_generation_is_deterministic(world, generated):
    assert tasks.generate("rte", world, SIZES) == generated["rte"]


@pytest.mark.parametrize("task", sorted(SCHEMAS))
def test_exact_superglue_schema_and_label_types(generated, task):
    for split, records in generated[task].items():
        assert len(records) == SIZES[split]
        assert [r["idx"] for r in records] == list(range(len(records)))
        for r in records:
            assert set(r) == SCHEMAS[task]
            assert r["label"] in LABELS[task] and type(r["label"]) is type(next(iter(LABELS[task])))
        json.dumps(records)  # jsonl-serialisable


@pytest.mark.parametrize("task", sorted(SCHEMAS))
def test_validation_inputs_never_in_train(generated, task):
    key = lambda r: tasks._key(r)
    assert not {key(r) for r in generated[task]["validation"]} & {key(r) for r in generated[task]["train"]}


@pytest.mark.parametrize("task", sorted(SCHEMAS))
def test_labels_are_not_degenerate(generated, task):
    labels = [r["label"] for r in generated[task]["train"]]
    top = max(labels.count(v) for v in set(labels)) / len(labels)
    assert len(set(labels)) == len(LABELS[task]) and top < 0.6


def _claim_of(world, sentence):
    """(name, relation, value) of a question/statement, or None."""
    for rel in ("city", "job", "pet", "country", "place", "kind"):
        for p in world.people:
            for v in world.values(rel):
                if sentence in (world_lib.question(rel, p.name, v), world_lib.statement(rel, p.name, v)):
                    yield p, rel, v


def test_boolq_label_is_the_world_truth_and_the_passage_is_true(world, generated):
    for r in generated["boolq"]["train"][:80]:
        claims = list(_claim_of(world, r["question"]))
        assert claims
        # 'does X live in Y?' is ambiguous between city and country only by name, never by truth
        assert all((world.value(p, rel) == v) == r["label"] for p, rel, v in claims)
        p = claims[0][0]
        assert p.name in r["passage"]


def test_nli_labels_follow_the_premise(world, generated):
    for r in generated["cb"]["train"][:80]:
        (p, rel, v), *_ = _claim_of(world, r["hypothesis"])
        base = {"country": "city", "place": "job", "kind": "pet"}.get(rel, rel)
        mentioned = p.name in r["premise"] and world.value(p, base) in r["premise"]
        if r["label"] == "entailment":
            assert mentioned and world.value(p, rel) == v
        elif r["label"] == "contradiction":
            assert mentioned and world.value(p, rel) != v


def test_copa_correct_choice_is_the_causal_partner(world, generated):
    sent = lambda t, n: world_lib.capitalize(tasks.fill_person(t, n)) + "."
    pairs = {(sent(c, p.name), sent(e, p.name)) for c, e in world.causal for p in world.people}
    for r in generated["copa"]["train"]:
        right, wrong = (r["choice1"], r["choice2"]) if r["label"] == 0 else (r["choice2"], r["choice1"])
        as_pair = (lambda x: (r["premise"], x)) if r["question"] == "effect" else (lambda x: (x, r["premise"]))
        assert as_pair(right) in pairs and as_pair(wrong) not in pairs


def test_wic_offsets_point_at_the_word(generated):
    for r in generated["wic"]["train"]:
        assert r["sentence1"][r["start1"]:r["end1"]] == r["word"]
        assert r["sentence2"][r["start2"]:r["end2"]] == r["word"]


def test_record_has_superglue_schema_and_the_answer_is_the_persons_fact(world, generated):
    for split, records in generated["record"].items():
        assert len(records) == SIZES[split] and [r["idx"] for r in records] == list(range(len(records)))
        for r in records[:80]:
            assert set(r) == {"source", "passage", "qas", "idx"} and set(r["passage"]) == {"text", "entities"}
            text, (qa,) = r["passage"]["text"], r["qas"]
            assert set(qa) == {"query", "answers", "idx"} and qa["query"].count("@placeholder") == 1
            spans = {text[e["start"]: e["end"] + 1] for e in r["passage"]["entities"]}  # inclusive ends
            answers = {text[a["start"]: a["end"] + 1] for a in qa["answers"]}
            assert answers == {a["text"] for a in qa["answers"]} and len(answers) == 1 and answers <= spans
            (person,) = [p for p in world.people if f" {p.name} " in f" {qa['query']} "]
            rel = next(rel for rel, forms in tasks.RECORD_QUERIES.items()
                       if any(f.format(n=person.name) == qa["query"] for f in forms))
            assert answers == {world.value(person, rel)}
            # the passage states this person's fact (the distractors are other people's values)
            assert any(person.name in sent and world.value(person, rel) in sent for sent in text.split(". "))


def test_write_tasks_uses_superglue_file_names(tmp_path, world):
    dirs = tasks.write_tasks(str(tmp_path), world, ["cb"], {"train": 5, "validation": 3})
    assert sorted(p.name for p in (tmp_path / "cb").iterdir()) == ["train.jsonl", "val.jsonl"]
    rows = [json.loads(l) for l in (tmp_path / "cb" / "val.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and dirs == {"cb": str(tmp_path / "cb")}


def test_corpus_contains_every_document_kind(world):
    docs = [corpus.document(world, i) for i in range(300)]
    assert any("Answer:" in d or " A: " in d for d in docs)       # reading
    assert any("Verdict:" in d or "Result:" in d for d in docs)   # inference
    assert any(" because " in d for d in docs)                    # story
    assert any(" is a city in " in d or " lies in " in d for d in docs)  # atlas
