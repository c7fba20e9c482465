"""Few-shot demonstrations: k training rows in the tasks' own text format, never a validation or test person."""
import re

import pytest

from prompt_tuning.data import sources, superglue
from prompt_tuning.data.recall_world import few_shot, tasks, world as world_lib


@pytest.fixture(scope="module")
def world():
    return world_lib.build_world(0, world_lib.DEFAULT_NUM_PEOPLE)


@pytest.fixture(scope="module")
def splits(world):
    return {t: tasks.generate(t, world) for t in ("boolq", "rte", "record")}


@pytest.mark.parametrize("task", ["boolq", "rte", "record"])
def test_demonstrations_are_k_training_rows_and_never_a_scored_person(task, world, splits):
    train = splits[task]["train"]
    for seed in range(3):
        picked = few_shot.draw(task, train, few_shot.K, seed)
        assert len(picked) == few_shot.K and all(r in train for r in picked)
        assert len({r["idx"] for r in picked}) == few_shot.K
        for r in picked:
            assert world.split_of(tasks.fact_asked(task, r)[0]) == "train"
        if task != "record":
            assert sorted(str(r["label"]) for r in picked).count(str(picked[0]["label"])) == few_shot.K // 2
        text = few_shot.demonstration_text(task, train, few_shot.K, seed, "Describe.")
        assert text.startswith("Describe. ")
        marker = {"boolq": "passage:", "rte": "hypothesis:", "record": "query:"}[task]
        assert text.count(marker) == few_shot.K
        scored = {p.name for s in ("validation", "test") for p in world.split_people[s]}
        assert not any(re.search(rf"\b{n}\b", text) for n in scored)
    assert few_shot.draw(task, train, 4, 0) != few_shot.draw(task, train, 4, 1)  # the seed picks
    assert few_shot.draw(task, train, 4, 0) == few_shot.draw(task, train, 4, 0)


@pytest.mark.parametrize("task", ["boolq", "rte", "record"])
def test_format_is_the_seqio_tasks_text(task, splits):
    import tensorflow as tf

    for row in splits[task]["train"][:5]:
        inputs, target = few_shot.format_example(task, row)
        (ex,) = list(sources.convert_rows(task, [row]))
        if task == "record":
            ds = superglue.format_record(tf.data.Dataset.from_tensors(ex))
            (got,) = list(ds.as_numpy_iterator())
        else:
            got = {k: v.numpy() if hasattr(v, "numpy") else v
                   for k, v in superglue.format_classification({k: tf.constant(v) if not isinstance(v, dict) else v
                                                                for k, v in ex.items()}, task).items()}
        assert got["inputs"].decode() == inputs and got["targets"].decode() == target


def test_too_few_rows_is_an_error():
    with pytest.raises(ValueError, match="k must be"):
        few_shot.draw("record", [], 0, 0)
    with pytest.raises(ValueError, match="training rows"):
        few_shot.draw("record", [{"idx": 0}], 4, 0)
