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


def test_every_trait_answer_in_the_corpus_follows_from_the_world(world):
    """Yes/no answers say whether the person has the trait, flipped for a question asked the other way
    ("Is X right-handed?"); claim verdicts say whether the stated trait value is the person's."""
    import re
    people = {p.name: p for p in world.people}
    yes_words, checked = {"Yes", "yes", "True", "true"}, 0
    for i in range(2000):
        doc = corpus.document(world, i)
        for trait, questions in corpus.TRAIT_QUESTIONS.items():
            for q, yes_bit in questions:
                pattern = re.escape(q).replace(re.escape("{n}"), r"(\w+)") + r"(?: A:)? (\w+)"
                for name, word in re.findall(pattern, doc):
                    assert (word in yes_words) == (people[name].has(trait) == yes_bit), (doc, q, name, word)
                    checked += 1
        for name, rest, verdict in re.findall(r"Claim: (\w+) ([^.]*)\. That is (correct|incorrect)", doc):
            (trait, value), = [(t, v) for t, forms in world_lib.TRAIT_TEMPLATES.items() for v in (True, False)
                               if "{n} " + rest in forms[v]]
            assert (verdict == "correct") == (people[name].has(trait) == value), (doc, name, rest, verdict)
            checked += 1
    assert checked > 1000


def test_the_cache_key_changes_with_the_generators_source(monkeypatch, tmp_path):
    from prompt_tuning.data.recall_world import registry
    before = registry.cache_dir(0, 40, 100)
    edited = tmp_path / "corpus.py"
    edited.write_text(open(corpus.__file__).read() + "\n# an edit\n")
    monkeypatch.setattr(corpus, "__file__", str(edited))
    assert registry.cache_dir(0, 40, 100) != before


def _prepare(out_dir, barrier):
    from prompt_tuning.data.recall_world import registry
    barrier.wait()
    registry.prepare_recall_world(corpus_documents=20_000, validation_documents=5_000, out_dir=out_dir,
                                  vocab_path="assets/recall_world/spm.model")


def test_two_commands_preparing_one_cache_at_once_both_succeed(tmp_path):
    """Fault injected: two processes write the same cache directory at the same moment (a ladder rung's
    phase and another rung's, say); each writes its own temporary file, so neither rename can fail."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_prepare, args=(str(tmp_path), barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    world = world_lib.build_world(0, world_lib.DEFAULT_NUM_PEOPLE)
    with open(tmp_path / "corpus_val.txt") as f:
        assert f.readline().rstrip("\n") == corpus.document(world, corpus.VALIDATION_START)
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
