"""Shifted test splits (C6): same rows, people and answers, one field changed; the old splits unchanged."""
import hashlib
import json
import re

import pytest

from prompt_tuning.data.recall_world import baselines, few_shot, shifts, tasks, world as world_lib
from tests.conftest import REPO

# SHA-256 of the split files the #12 sweep trained on (the default world at commit a31d850, cache
# v3-7810393563-seed0-people40-docs60000): adding the shifted splits must leave them byte-identical.
OLD_SPLITS = {
    ("boolq", "train.jsonl"): "74c6bc30d0237229a85d02e4ab977631c08fabcd6a200e8ebb78947814d63bb2",
    ("boolq", "val.jsonl"): "da211bd4b3cf63283e76e29dba1c6f3ed4ecf6450efb21429789153fa5b6ddf6",
    ("boolq", "test.jsonl"): "0c23051326a411e29b6f01f3f4b4b740dfaf388b5b92b9bee1dbdc6a71df299e",
    ("boolq", "test_closed_book.jsonl"): "756f8a543b9a062c46e5373d7b5bb6ce6d287ad444dfb845e9c7b78b101c7cea",
    ("rte", "train.jsonl"): "f860461d80f4e165a180a72bb772282239277a27c90206809c2f884f2206aa71",
    ("rte", "val.jsonl"): "2fd8b9e69477127533a639aca7f271aae6aa2a842bdda82e44a4f3b90056e497",
    ("rte", "test.jsonl"): "d18235416fe1ed53bafdf98ca06ff4353ac1b9d1aa8d271dc78364cc076f0283",
    ("rte", "test_closed_book.jsonl"): "2e45034f5e5a48c5c7ce0cdbc875b2261765ec5667376c1ad09f489273b37696",
    ("record", "train.jsonl"): "cf13f6b9d3c3a95d982f0de6127ce788390caa33933bd1818cd389b95e90de73",
    ("record", "val.jsonl"): "4a8fc0cdffdad85d8b2fd40e4c3f108c3d4bb89cb4394726a36d934f5073495a",
    ("record", "test.jsonl"): "109235df7a0b7fb6bfb9e0cb75abb0f7b85cda6c51b41f715e6bf326ab564959",
    ("record", "test_closed_book.jsonl"): "1bbb95b8ba5454e80f587bd5d0c3c5f4ea004f51bb7707eb27d1f422f294e396",
}
FIELDS = {"boolq": ("question", "passage"), "rte": ("hypothesis", "premise"), "record": ("qas", "passage")}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("recall_tasks")
    tasks.write_tasks(str(out), world_lib.build_world(0, world_lib.DEFAULT_NUM_PEOPLE))
    return out


def _rows(written, task, split):
    return [json.loads(line) for line in (written / task / tasks.SPLIT_FILES[split]).read_text().splitlines()]


def test_the_existing_split_files_are_byte_identical(written):
    for (task, name), digest in OLD_SPLITS.items():
        assert hashlib.sha256((written / task / name).read_bytes()).hexdigest() == digest, (task, name)
    assert set(tasks.SPLIT_FILES) == {"train", "validation", "test", "test_closed_book", "test_paraphrase",
                                      "test_long_passage"}


@pytest.mark.parametrize("task", ["boolq", "rte", "record"])
@pytest.mark.parametrize("split", tasks.SHIFTED_SPLITS)
def test_shifted_rows_keep_people_and_answers_and_change_one_field(written, task, split):
    test, shifted = _rows(written, task, "test"), _rows(written, task, split)
    field = shifts.SHIFTED_FIELDS[task][split]
    assert len(shifted) == len(test) == tasks.SPLIT_SIZES["test"]
    world = world_lib.build_world(0, world_lib.DEFAULT_NUM_PEOPLE)
    # ReCoRD's lengthened passage also moves the answer spans (every mention of the answer is listed)
    changed = {field, "qas"} if (task, split) == ("record", shifts.LONG_PASSAGE) else {field}
    for old, new in zip(test, shifted):
        assert {k: v for k, v in old.items() if k not in changed} == {k: v for k, v in new.items() if k not in changed}
        if task == "record":
            assert {a["text"] for a in old["qas"][0]["answers"]} == {a["text"] for a in new["qas"][0]["answers"]}
        assert old[field] != new[field]
        assert baselines.answer(task, old) == baselines.answer(task, new)
        person, _ = tasks.fact_asked(task, old)
        assert world.split_of(person) == "test"
        if split == shifts.PARAPHRASE:
            asked = new["question"] if task == "boolq" else new["hypothesis"] if task == "rte" else new["qas"][0]["query"]
            assert re.search(rf"\b{person}\b", asked)
            assert asked != (old["question"] if task == "boolq" else old["hypothesis"] if task == "rte"
                             else old["qas"][0]["query"])
        else:
            before = old[field]["text"] if task == "record" else old[field]
            after = new[field]["text"] if task == "record" else new[field]
            assert after.startswith(before + " ")
            extra = after[len(before) + 1:]
            assert extra.count(".") == shifts.DISTRACTORS
            assert not re.search(rf"\b{person}\b", extra)  # distractors are about other people only
            named = [p.name for p in world.people if re.search(rf"\b{p.name}\b", extra)]
            assert len(named) == shifts.DISTRACTORS and all(world.split_of(n) == "test" for n in named)
            if task == "record":  # the same three candidates, spans valid on the longer text
                ents = lambda r: {r["passage"]["text"][e["start"]:e["end"] + 1] for e in r["passage"]["entities"]}
                assert ents(old) == ents(new) and len(ents(new)) == 3
                for ans in new["qas"][0]["answers"]:
                    assert after[ans["start"]:ans["end"] + 1] == ans["text"]


def test_shifts_are_deterministic_and_unknown_ones_refused():
    world = world_lib.build_world(0, world_lib.DEFAULT_NUM_PEOPLE)
    test = tasks.generate("rte", world, {"test": 20})["test"]
    assert tasks.shifted("rte", shifts.LONG_PASSAGE, test, world) == tasks.shifted("rte", shifts.LONG_PASSAGE, test, world)
    with pytest.raises(ValueError, match="unknown shift"):
        tasks.shifted("rte", "test_nope", test, world)


def test_shifted_inputs_fit_96_tokens(written):
    spm = pytest.importorskip("sentencepiece")
    sp = spm.SentencePieceProcessor(model_file=str(REPO / "assets" / "recall_world" / "spm.model"))
    longest = {}
    for task in ("boolq", "rte", "record"):
        for split in ("test",) + tasks.SHIFTED_SPLITS:
            n = [len(sp.encode(few_shot.format_example(task, r)[0])) + 1 for r in _rows(written, task, split)]
            longest[task, split] = max(n)
    assert max(longest.values()) <= 96  # + EOS: nothing is truncated at TASK_FEATURE_LENGTHS inputs 96
    assert longest["record", shifts.LONG_PASSAGE] == 84 and longest["boolq", shifts.LONG_PASSAGE] == 58
