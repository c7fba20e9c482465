"""The main command's embedded default: task files, SeqIO registration and the shipped assets."""
import json
import os
import pathlib

import pytest
import seqio

from prompt_tuning.checkpoints import native
from prompt_tuning.data.mini_world import default, registry, tasks


def test_missing_assets_name_the_rebuild_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_default.py"):
        default.ensure_default_assets(assets_dir=str(tmp_path), data_dir=str(tmp_path / "data"))


def test_task_files_are_written_once(tmp_path):
    d = default.ensure_task_files(str(tmp_path))
    for task in tasks.TASKS:
        assert sorted(os.listdir(os.path.join(d, task))) == ["train.jsonl", "val.jsonl"]
    stamp = os.path.getmtime(os.path.join(d, "boolq", "train.jsonl"))
    default.ensure_task_files(d)
    assert os.path.getmtime(os.path.join(d, "boolq", "train.jsonl")) == stamp


def test_unknown_task_name():
    with pytest.raises(ValueError, match="unknown mini task"):
        registry.task_name("multirc")


@pytest.mark.skipif(not (default.ASSETS_DIR / "default" / "params.safetensors").exists(),
                    reason="shipped default model not present (rebuild: python experiments/mini_world/build_default.py)")
def test_shipped_default_loads_registers_and_fits(tmp_path):
    a = default.ensure_default_assets(data_dir=str(tmp_path / "data"))
    assert a.task_name == "mini_world_record"
    size = sum(f.stat().st_size for f in pathlib.Path(a.model_dir).iterdir())
    assert size <= 20 * 2**20, size  # the bound for a shipped model
    config = native.load_config(a.model_dir)
    vocab = seqio.SentencePieceVocabulary(a.vocab_path, extra_ids=100)
    assert vocab.vocab_size <= config.vocab_size
    ds = seqio.get_mixture_or_task(a.task_name).get_dataset(
        {"inputs": 96, "targets": 8}, split="validation", shuffle=False)
    for ex in ds.as_numpy_iterator():  # the default's feature lengths truncate nothing
        assert ex["inputs_pretokenized"].startswith(b"query: ") and b" passage: " in ex["inputs_pretokenized"]
        assert ex["targets_pretokenized"] in ex["inputs_pretokenized"]  # the answer is copied from the passage
        assert ex["inputs"].max() < config.vocab_size
        assert ex["inputs"][-1] == 1 and len(ex["targets"]) <= 8  # EOS kept: nothing cut


def test_majority_baseline_counts_record_answers_and_labels(tmp_path):
    d = tmp_path / "record"
    d.mkdir()
    rows = [{"qas": [{"answers": [{"text": t}]}]} for t in ("cat", "cat", "dog", "owl")]
    (d / "val.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert default.majority_baseline(str(tmp_path), "record") == ("cat", 0.5)
    (tmp_path / "rte").mkdir()
    (tmp_path / "rte" / "val.jsonl").write_text("\n".join(json.dumps({"label": l}) for l in ["entailment"] * 3 + ["x"]))
    assert default.majority_baseline(str(tmp_path), "rte") == ("entailment", 0.75)
