"""The recall world: determinism, entity-disjoint splits, labels that follow from the world, no shortcut."""
import json

import pytest

from prompt_tuning.data.recall_world import baselines, corpus, tasks, world as world_lib

SIZES = {"train": 300, "validation": 100, "test": 200}


@pytest.fixture(scope="module")
def world():
    return world_lib.build_world(0, 60)


@pytest.fixture(scope="module")
def generated(world):
    return {t: tasks.generate(t, world, SIZES) for t in tasks.TASKS}


def test_world_is_seeded_and_splits_partition_the_people():
    w = world_lib.build_world(1, 60)
    assert w == world_lib.build_world(1, 60) and w.people != world_lib.build_world(2, 60).people
    names = [p.name for split in w.split_people.values() for p in split]
    assert sorted(names) == sorted(p.name for p in w.people) and len(set(names)) == 60
    assert {k: len(v) for k, v in w.split_people.items()} == {"train": 18, "validation": 18, "test": 24}
    with pytest.raises(ValueError):
        world_lib.build_world(0, 5)
    for people in w.split_people.values():  # every trait is held by half of every split
        assert all(sum(p.has(t) for p in people) == len(people) // 2 for t in world_lib.TRAITS)


def _person(task, row):
    if task == "record":
        return row["qas"][0]["query"].split()[0]
    return (row["question"] if task == "boolq" else row["hypothesis"]).split()[0 if task == "rte" else 1]


def test_each_split_asks_only_about_its_own_people(world, generated):
    for task, splits in generated.items():
        for split in SIZES:
            allowed = {p.name for p in world.split_people[split]}
            assert {_person(task, r) for r in splits[split]} <= allowed, (task, split)


def test_labels_follow_from_the_world_and_are_balanced(world, generated):
    people = {p.name: p for p in world.people}
    for task in ("boolq", "rte"):
        for split in SIZES:
            rows = generated[task][split]
            truth = [str(r["label"]) in ("True", "entailment") for r in rows]
            assert sum(truth) == len(rows) // 2
            phrasings = tasks.BOOLQ_TRAITS if task == "boolq" else tasks.RTE_TRAITS
            for r, t in zip(rows, truth):
                text = r["question"] if task == "boolq" else r["hypothesis"]
                person = people[_person(task, r)]
                trait = next(k for k, v in phrasings.items() if v.format(n=person.name) == text)
                assert person.has(trait) == t, r
    for r in generated["record"]["test"]:
        person, answer = people[_person("record", r)], r["qas"][0]["answers"][0]["text"]
        assert answer in (person.city, person.job, person.pet)
        spans = [r["passage"]["text"][e["start"]:e["end"] + 1] for e in r["passage"]["entities"]]
        assert answer in spans and len(set(spans)) == 3


def test_the_passage_never_states_the_fact_asked(world, generated):
    """Recall, not reading: the passage states two of the person's relations and no trait."""
    statements = [t[len("{n}"):] for by_bit in world_lib.TRAIT_TEMPLATES.values() for ts in by_bit.values()
                  for t in ts]
    for task in ("boolq", "rte"):
        for r in generated[task]["test"]:
            passage = r["passage"] if task == "boolq" else r["premise"]
            assert passage.count(".") == 2 and not any(s in passage for s in statements), r


def test_closed_book_split_removes_the_passage(generated):
    cb = generated["rte"][tasks.CLOSED_BOOK_SPLIT]
    assert [r["premise"] for r in cb] == [""] * len(cb)
    assert [r["hypothesis"] for r in cb] == [r["hypothesis"] for r in generated["rte"]["test"]]


def test_no_task_format_in_the_corpus(world):
    docs = " ".join(corpus.document(world, i) for i in range(3000))
    found = [m for m in ("question:", "passage:", "premise:", "hypothesis:", "query:", "entities:", "@placeholder")
             if m in docs]
    assert found == []
    assert "entailment" in docs and "not_entailment" in docs  # the verbalizers are words of the language


def test_every_person_appears_in_the_corpus(world):
    docs = " ".join(corpus.document(world, i) for i in range(3000))
    assert all(p.name in docs for p in world.people)


def test_fact_asked_names_the_person_and_the_fact(world, generated):
    people = {p.name: p for p in world.people}
    for task, splits in generated.items():
        for r in splits["test"]:
            person, fact = tasks.fact_asked(task, r)
            if task == "record":
                assert r["qas"][0]["answers"][0]["text"] == people[person].value(fact)
            else:
                assert (str(r["label"]) in ("True", "entailment")) == people[person].has(fact)
    with pytest.raises(ValueError):
        tasks.fact_asked("boolq", {"question": "is it raining"})


def test_lookup_table_cannot_beat_majority_on_disjoint_people(tmp_path, world):
    tasks.write_tasks(str(tmp_path), world, split_sizes=SIZES)
    for task in tasks.TASKS:
        b = baselines.baselines(str(tmp_path / task), task, "test")
        assert b["lookup"] <= b["majority"] + 5, (task, b)
        if task != "record":
            assert b["majority"] == 50.0
    # On the training split itself the same table is perfect: the key does identify the answer.
    b = baselines.baselines(str(tmp_path / "rte"), "rte", "train")
    assert b["lookup"] == 100.0
    assert json.loads((tmp_path / "record" / "test.jsonl").read_text().splitlines()[0])["source"] == "recall_world"
