"""Gate (d)'s statistic: a paired bootstrap over units (person and fact asked about), not over examples."""
import pytest

from experiments.recall_world import gates
from prompt_tuning.data.recall_world import baselines, tasks, world as world_lib


@pytest.fixture(scope="module")
def boolq_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("recall")
    sizes = {"train": 40, "validation": 20, "test": 120}
    return tasks.write_tasks(str(out), world_lib.build_world(0, 40), ["boolq"], sizes)["boolq"]


def test_units_are_the_facts_asked_about(boolq_dir):
    rows = baselines.split_rows(boolq_dir, "test")
    units = {baselines.question_key("boolq", r) for r in rows}
    right = [True] * len(rows)
    boot = gates.unit_bootstrap(boolq_dir, "boolq", right, [False] * len(rows))
    assert boot.clusters == len(units) < len(rows) and boot.difference == 100 and boot.low == 100
    # A model right on the units of one person only: the interval is wide, the clusters are still the units.
    person = rows[0]["question"].split()[1]
    one = [person in r["question"] for r in rows]
    boot = gates.unit_bootstrap(boolq_dir, "boolq", one, [False] * len(rows))
    assert boot.clusters == len(units) and boot.low < boot.difference < boot.high


def test_predictions_of_another_length_are_refused(boolq_dir):
    with pytest.raises(ValueError, match="test rows"):
        gates.unit_bootstrap(boolq_dir, "boolq", [True], [False])
