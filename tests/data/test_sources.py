"""TFDS and jsonl sources: same schema, same pipeline; TFDS-backed tasks on mocked TFDS data."""
import json

import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from prompt_tuning.data import sources, superglue, tasks
from tests.conftest import shared_path
from tests.data.conftest import SUPERGLUE_DIRS, examples

MOCK = dict(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE)

# A hand-written row per task in the official jsonl schema (the tasks without a shared file need one).
FIXTURE_ROWS = {
    "axb": {"sentence1": "The cat sat.", "sentence2": "A cat sat.", "idx": 0, "label": "entailment"},
    "axg": {"premise": "The nurse said she was late.", "hypothesis": "The nurse was late.", "idx": 3,
            "label": "not_entailment", "pair_id": 1},
}


def _spec_of_builder(task):
    builder = tfds.builder(f"super_glue/{sources.TFDS_CONFIG[task]}:{sources.TFDS_VERSION}")
    f = builder.info.features
    return f.dtype, f.shape


def _flat(spec, prefix=""):
    out = {}
    for k, v in spec.items():
        if isinstance(v, dict):
            out.update(_flat(v, prefix + k + "/"))
        else:
            out[prefix + k] = v
    return out


@pytest.mark.parametrize("task", superglue.TASKS)
def test_feature_specs_equal_the_tfds_builders(task):
    dtypes, shapes = _spec_of_builder(task)
    mine = _flat(sources.FEATURE_SPECS[task])
    assert {k: v.dtype for k, v in mine.items()} == _flat(dtypes)
    assert {k: tuple(v.shape) for k, v in mine.items()} == {k: tuple(v) for k, v in _flat(shapes).items()}


def _jsonl_source(task, tmp_path):
    if task in FIXTURE_ROWS:
        (tmp_path / f"{sources.JSONL_DIRS[task]}.jsonl").write_text(json.dumps(FIXTURE_ROWS[task]) + "\n")
        return sources.jsonl_source(task, str(tmp_path)), "test"
    data_dir = shared_path("superglue", SUPERGLUE_DIRS[task])
    return sources.jsonl_source(task, str(data_dir), {"train": "train32.jsonl"}), "train"


@pytest.mark.parametrize("task", superglue.TASKS)
def test_jsonl_source_yields_the_tfds_schema(task, tmp_path):
    src, split = _jsonl_source(task, tmp_path)
    ds = src.get_dataset(split, shuffle=False)
    dtypes, shapes = _spec_of_builder(task)
    assert _flat(tf.nest.map_structure(lambda s: s.dtype, ds.element_spec)) == _flat(dtypes)
    with tfds.testing.mock_data(**MOCK):
        tfds_ds = sources.tfds_source(task).get_dataset(sources.SPLITS[task][0], shuffle=False)
        assert tf.nest.map_structure(lambda s: s.dtype, tfds_ds.element_spec) == \
            tf.nest.map_structure(lambda s: s.dtype, ds.element_spec)
    first = next(iter(ds))
    assert set(first) == set(sources.FEATURE_SPECS[task])


def test_diagnostic_fixtures_convert(tmp_path):
    src, _ = _jsonl_source("axb", tmp_path)
    ex = next(src.get_dataset("test").as_numpy_iterator())
    assert ex["sentence1"] == b"The cat sat." and ex["label"] == 0
    src, _ = _jsonl_source("axg", tmp_path)
    ex = next(src.get_dataset("test").as_numpy_iterator())
    assert ex["label"] == 1 and "pair_id" not in ex


@pytest.mark.parametrize("task", superglue.TASKS)
def test_tfds_tasks_run_on_mock_data(task, vocab):
    tasks.register_tasks(vocab)
    t = seqio.get_mixture_or_task(tasks.superglue_task_name(task, "tfds"))
    split = sources.SPLITS[task][-1] if task in superglue.DIAGNOSTIC_TASKS else "validation"
    with tfds.testing.mock_data(**MOCK):
        exs = examples(t, split)
    assert exs
    for ex in exs:
        assert ex["inputs"][-1] == 1 and ex["targets"][-1] == 1
        if task in superglue.VERBALIZERS:
            assert ex["targets_pretokenized"] in superglue.VERBALIZERS[task]
            assert ex["inputs_pretokenized"].startswith(superglue.FEATURE_ORDER[task][0] + ": ")
    if task == "record":
        assert exs[0]["inputs_pretokenized"].startswith("query: ")


def _mock_from_rows(rows_by_config):
    """A TFDS mock whose builder returns `rows_by_config[config]` (already in the TFDS schema)."""

    def as_dataset(self, split, **kwargs):
        rows = rows_by_config[self.builder_config.name]
        spec = sources.FEATURE_SPECS[{v: k for k, v in sources.TFDS_CONFIG.items()}[self.builder_config.name]]
        return tf.data.Dataset.from_generator(lambda: iter(rows), output_signature=spec)

    return tfds.testing.mock_data(as_dataset_fn=as_dataset)


@pytest.mark.parametrize("task", ["rte", "multirc", "record", "wsc"])
def test_tfds_and_jsonl_tasks_give_identical_examples(task, vocab, shared_task):
    """The same rows through both sources produce the same preprocessed examples."""
    data_dir = shared_path("superglue", SUPERGLUE_DIRS[task])
    rows = list(sources.convert_rows(task, sources.read_jsonl(str(data_dir / "train32.jsonl"))))
    jsonl_exs = examples(shared_task(task), "train")
    tasks.register_tasks(vocab)
    t = seqio.get_mixture_or_task(tasks.superglue_task_name(task, "tfds"))
    with _mock_from_rows({sources.TFDS_CONFIG[task]: rows}):
        tfds_exs = examples(t, "train")
    assert len(jsonl_exs) == len(tfds_exs) > 0
    for a, b in zip(jsonl_exs, tfds_exs):
        assert a.keys() == b.keys()
        for k in a:
            assert str(a[k]) == str(b[k]), k


def test_wsc_train_split_filtered_on_tfds_too(vocab):
    rows = [
        {"text": "A b it c.", "span1_index": 0, "span2_index": 2, "span1_text": "A", "span2_text": "it",
         "idx": i, "label": i % 2}
        for i in range(6)
    ]
    src = sources.tfds_source("wsc")
    with _mock_from_rows({"wsc.fixed": rows}):
        train = list(src.get_dataset("train", shuffle=False).as_numpy_iterator())
        val = list(src.get_dataset("validation", shuffle=False).as_numpy_iterator())
    assert [r["idx"] for r in train] == [1, 3, 5]
    assert len(val) == 6


def test_label_conversion():
    assert sources.label_id("boolq", True) == 1 and sources.label_id("boolq", False) == 0
    assert sources.label_id("copa", 1) == 1 and sources.label_id("copa", 0) == 0
    assert sources.label_id("cb", "neutral") == 2
    assert sources.label_id("rte", None) == -1
    with pytest.raises(sources.DataFileError, match="not one of"):
        sources.label_id("rte", "maybe")


def test_wsc_fix_matches_tfds_wsc_fixed():
    # WSC train idx 234: a newline inside span1_text; the case follows word 11 ("willow-towered").
    text = ('The user changed his password from " GrWQWu8JyC " to " willow-towered Canopy Huntertropic '
            'wrestles " as it was easy to remember.')
    ex = {"text": text, "span1_index": 11, "span2_index": 17,
          "span1_text": "willow-towered Canopy\nHuntertropic wrestles", "span2_text": "it"}
    assert sources.fix_wsc_spans(ex)["span1_text"] == "willow-towered Canopy Huntertropic wrestles"
    # Index on a quote: not lower case, so the span is capitalised (the builder's rule).
    assert sources.fix_wsc_spans({**ex, "span1_index": 10})["span1_text"] == \
        "Willow-towered Canopy Huntertropic wrestles"
    ex = {"text": "Sam took the cake.", "span1_index": 2, "span2_index": 0, "span1_text": "The cake.",
          "span2_text": "Sam"}
    assert sources.fix_wsc_spans(ex)["span1_text"] == "the cake"


def test_missing_data_dir_and_file_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(sources.SUPERGLUE_DIR_ENV, raising=False)
    src = sources.jsonl_source("rte", sources.benchmark_jsonl_dir("rte", None), missing_hint=" (set it)")
    with pytest.raises(sources.DataFileError, match="no data directory is set"):
        src.get_dataset("train")
    src = sources.jsonl_source("rte", str(tmp_path))
    with pytest.raises(sources.DataFileError, match="train.jsonl"):
        src.get_dataset("train")
    with pytest.raises(sources.DataFileError, match="no split 'test'"):
        src.get_dataset("test")
    monkeypatch.setenv(sources.SUPERGLUE_DIR_ENV, str(tmp_path))
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "val.jsonl").write_text(
        json.dumps({"premise": "p", "hypothesis": "h", "idx": 0, "label": "entailment"}) + "\n")
    src = sources.jsonl_source("rte", sources.benchmark_jsonl_dir("rte", None))
    assert len(list(src.get_dataset("validation"))) == 1


def test_unprepared_tfds_dataset_names_what_is_missing(tmp_path, monkeypatch):
    """Offline, seqio's tfds.load(download=True) would fail inside TFDS with an unrelated error."""
    def no_network(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds, "load", no_network)
    src = sources.tfds_source("rte", tfds_data_dir=str(tmp_path))
    with pytest.raises(sources.DataFileError, match=r"super_glue/rte:1.0.2 is not prepared in .*ConnectionError.*_jsonl"):
        src.get_dataset("validation")
