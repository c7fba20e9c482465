"""TEST_SPLITS: scored once at the end, at the best validation checkpoint, with per-example predictions."""
import json
import os

import pytest

from prompt_tuning import prompts
from prompt_tuning.training import metrics_writer, trainer
from tests.training import synthetic_tasks as st
from tests.training.conftest import CONFIG



def _run(tmp_path, frozen_ckpt, **over):
    kw = dict(model_dir=str(tmp_path / "run"), mixture_or_task_name=st.TASK, task_feature_lengths=st.LENGTHS,
              train_steps=6, batch_size=8, model_config=CONFIG, initial_checkpoint_path=frozen_ckpt,
              prompt=prompts.make_prompt(4, prompts.random_uniform), checkpoint_period=2, eval_period=2,
              log_period=1, eval_split="validation", eval_mode="rank", verbalizers={st.TASK: list(st.LABELS)},
              optimizer_factory=lambda initial_step: __import__("optax").sgd(30.0))
    kw.update(over)
    return trainer.train_and_evaluate(**kw)


def test_test_split_is_scored_at_the_best_checkpoint(tmp_path, frozen_ckpt):
    # The validation split doubles as the "test" split: its score at the best checkpoint must be the
    # best validation score, whichever step that was (not the last step's).
    out = _run(tmp_path, frozen_ckpt, test_splits=("validation",))
    best = out["best"]
    name = f"{st.TASK}/accuracy"
    assert out["metrics_test"] == {f"validation/{name}": best["metrics"][name]}
    rows = metrics_writer.read(out["model_dir"], "test")
    assert [r["step"] for r in rows] == [best["step"]]
    with open(os.path.join(out["model_dir"], "test_predictions", f"validation_{st.TASK}.jsonl")) as f:
        preds = [json.loads(line) for line in f]
    assert len(preds) == st.SIZES["validation"]
    assert 100 * sum(p["prediction"] == p["target"] for p in preds) / len(preds) == pytest.approx(best["metrics"][name])


def test_unknown_test_split_is_refused_before_anything_is_written(tmp_path, frozen_ckpt):
    with pytest.raises(Exception, match="nosuch"):
        _run(tmp_path, frozen_ckpt, test_splits=("nosuch",))
    assert not os.path.exists(tmp_path / "run")


def test_test_splits_need_an_eval_split(tmp_path, frozen_ckpt):
    with pytest.raises(trainer.ConfigError, match="EVAL_SPLIT"):
        _run(tmp_path, frozen_ckpt, test_splits=("validation",), eval_split=None)
