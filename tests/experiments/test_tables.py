import csv
import os

import pytest

from experiments import tables


def test_csv_keeps_the_column_order_ignores_extras_and_leaves_missing_cells_empty(tmp_path):
    path = str(tmp_path / "a" / "t.csv")  # the directory is made
    rows = [{"b": 1, "a": 2.5, "extra": "x"}, {"a": 3}]
    assert tables.write_csv(path, rows, ("a", "b")) == path
    with open(path) as f:
        assert f.read().splitlines() == ["a,b", "2.5,1", "3,"]
    tables.write_csv(path, rows[:1])  # default columns: the first row's keys
    with open(path) as f:
        assert next(csv.reader(f)) == ["b", "a", "extra"]
    tables.write_csv(path, [])
    assert open(path).read() == ""


def test_an_interrupted_write_leaves_the_previous_table(tmp_path, monkeypatch):
    path = str(tmp_path / "t.csv")
    tables.write_csv(path, [{"a": 1}])

    class Broken(dict):
        def get(self, *a):  # DictWriter reads cells through get: fail halfway through the rows
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        tables.write_csv(path, [{"a": 2}, Broken(a=3)], ("a",))
    assert open(path).read().splitlines() == ["a", "1"]
    assert os.listdir(tmp_path) == ["t.csv"]  # no temporary file left behind


def test_markdown_cells():
    text = tables.markdown([{"x": 1 / 3, "y": None, "z": "s"}, {"x": 2}], ("x", "y", "z"))
    assert text == "| x | y | z |\n|---|---|---|\n| 0.3333 |  | s |\n| 2 |  |  |\n"
