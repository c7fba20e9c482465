"""MRQA-format parsing and the SQuAD / MRQA tasks on a small hand-written fixture."""
import gzip
import json

import pytest
import seqio

from prompt_tuning.data import metrics, sources, tasks, transfer
from tests.data.conftest import examples

HEADER = {"header": {"dataset": "SQuAD", "split": "dev"}}
ROWS = [
    {"context": "Paris is the capital of France. [PAR] It has 2.1 million people.", "qas": [
        {"qid": "q1", "question": "What is France's capital?", "answers": ["Paris", "Paris, France"],
         "detected_answers": [{"text": "Paris", "char_spans": [[0, 4]], "token_spans": [[0, 0]]}]},
        {"qid": "q2", "question": "How many people?", "answers": ["2.1 million"]},
    ]},
    {"context": "The Nile flows north.", "qas": [
        {"qid": "q3", "question": "Which way?", "answers": [],
         "detected_answers": [{"text": "north", "char_spans": [[16, 20]]}]},
    ]},
]


def _write(path, rows, gz=False):
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)


def test_parse_mrqa_skips_the_header_and_flattens_questions():
    parsed = list(transfer.parse_mrqa([HEADER] + ROWS))
    assert [p["id"] for p in parsed] == ["q1", "q2", "q3"]
    assert parsed[0] == {"id": "q1", "context": ROWS[0]["context"], "question": "What is France's capital?",
                         "answers": ["Paris", "Paris, France"]}
    assert parsed[2]["answers"] == ["north"]  # falls back to the detected answer spans
    with pytest.raises(sources.DataFileError, match="MRQA row"):
        list(transfer.parse_mrqa([{"qas": []}]))


@pytest.mark.parametrize("gz", [True, False])
def test_mrqa_task_format_and_metric(vocab, tmp_path, gz):
    (tmp_path / "dev").mkdir()
    _write(tmp_path / ("dev/TextbookQA.jsonl.gz" if gz else "TextbookQA.jsonl"), [HEADER] + ROWS, gz)
    tasks.register_tasks(vocab, mrqa_data_dir=str(tmp_path))
    task = seqio.get_mixture_or_task("mrqa_textbookqa")
    assert task.splits == ("validation",)
    exs = examples(task, "validation")
    # T5's squad format: every non-word character padded with spaces, whitespace collapsed.
    assert exs[0]["inputs_pretokenized"] == (
        "question: What is France ' s capital ? context: Paris is the capital of France . [ PAR ] It has 2 . 1 "
        "million people . ")
    assert exs[0]["targets_pretokenized"] == "Paris"
    assert [a.decode() for a in exs[0]["answers"]] == ["Paris", "Paris , France"]
    assert exs[1]["targets_pretokenized"] == "2 . 1 million"
    # Max over answers, SQuAD-normalised. Golds are padded like the training targets, so the model's
    # padded "2 . 1 million" matches while "2.1 million" ("21 million" once normalised) would not.
    targets = [task.postprocess_fn(e["targets_pretokenized"], example=e, is_target=True) for e in exs]
    preds = [task.postprocess_fn(p, example=e) for p, e in zip(["Paris, France", "2 . 1 million", "south"], exs)]
    got = metrics.squad(targets, preds)
    assert got["em"] == pytest.approx(200 / 3) and got["f1"] == pytest.approx(200 / 3)
    assert metrics.squad(targets[1:2], ["2.1 million"])["em"] == 0.0
    tasks.register_tasks(vocab)


def test_squad_train_and_dev_files(vocab, tmp_path):
    for split in ("train", "dev"):
        (tmp_path / split).mkdir()
        _write(tmp_path / split / "SQuAD.jsonl", [HEADER] + ROWS[:1])
    tasks.register_tasks(vocab, mrqa_data_dir=str(tmp_path))
    task = seqio.get_mixture_or_task("mrqa_squad")
    assert len(examples(task, "train")) == 2 and len(examples(task, "validation")) == 2
    tasks.register_tasks(vocab)


def test_missing_mrqa_dir_says_how_to_set_it(vocab, monkeypatch):
    monkeypatch.delenv(transfer.MRQA_DATA_DIR_ENV, raising=False)
    tasks.register_tasks(vocab)
    with pytest.raises(sources.DataFileError, match="MRQA_DATA_DIR"):
        seqio.get_mixture_or_task("mrqa_bioasq").get_dataset({"inputs": 8, "targets": 8}, split="validation")
