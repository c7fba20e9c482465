"""Early stopping with a patience (train_and_evaluate.patience): the stop step, its record, and resume.

A run stops at the first evaluation that is `patience` evaluations after the best one; TRAIN_STEPS
is a cap. The validation trajectory is constructed: an optimizer sets the prompt's first entry to
min(step, len(TRAJECTORY) - 1) (its state, a step counter, is checkpointed like any optimizer's), and
the evaluation reports TRAJECTORY[that entry] as the accuracy. So the best step and the stop step are
known in advance, including a tie (which is no improvement) and a dip before a new best.
"""
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prompt_tuning import prompts
from prompt_tuning.training import evaluation, metrics_writer, trainer
from tests.training import synthetic_tasks as st
from tests.training.conftest import CONFIG, Killed

# Accuracy after step k (k >= len - 1: the last value). Best 10 (0), 30 (1); 20, 30 (a tie) are no
# improvement; 50 at step 4 is the best; 40, 45, 45, ... never improve on it.
TRAJECTORY = (10.0, 30.0, 20.0, 30.0, 50.0, 40.0, 45.0)
BEST_STEP, PATIENCE = 4, 3
STOP_STEP = BEST_STEP + PATIENCE  # eval_period 1
CAP = 40
NAME = f"{st.TASK}/accuracy"


def _step_writer(initial_step=0) -> optax.GradientTransformation:
    """Sets the first entry of every trainable array to min(step, len(TRAJECTORY) - 1); nothing else moves."""
    last = len(TRAJECTORY) - 1

    def init(params):
        return jnp.zeros((), jnp.int32)

    def update(updates, count, params):
        target = jnp.minimum(count + 1, last).astype(jnp.float32)
        out = jax.tree.map(lambda p: jnp.zeros_like(p).reshape(-1).at[0].set(target - p.reshape(-1)[0]).reshape(p.shape),
                           params)
        return out, count + 1

    return optax.GradientTransformation(init, update)


def _fake_evaluate(model, params, eval_sets, **kw):
    leaves = [v for path, v in jax.tree_util.tree_leaves_with_path(params) if "prompt" in jax.tree_util.keystr(path)]
    k = int(np.clip(np.round(float(np.asarray(leaves[0]).reshape(-1)[0])), 0, len(TRAJECTORY) - 1))
    metrics = {f"{es.name}/accuracy": TRAJECTORY[k] for es in eval_sets}
    return metrics, {es.name: ["yes"] * len(es.examples) for es in eval_sets}


@pytest.fixture(autouse=True)
def _scripted_evaluation(monkeypatch):
    monkeypatch.setattr(evaluation, "evaluate", _fake_evaluate)


def _run(model_dir, frozen_ckpt, **over):
    kw = dict(model_dir=str(model_dir), mixture_or_task_name=st.TASK, task_feature_lengths=st.LENGTHS,
              train_steps=CAP, batch_size=8, model_config=CONFIG, initial_checkpoint_path=frozen_ckpt,
              prompt=prompts.make_prompt(4, prompts.random_uniform), checkpoint_period=3, eval_period=1,
              log_period=1, eval_split="validation", eval_mode="rank", verbalizers={st.TASK: list(st.LABELS)},
              optimizer_factory=_step_writer, patience=PATIENCE, test_splits=("validation",))
    kw.update(over)
    return trainer.train_and_evaluate(**kw)


def _outcome(model_dir):
    evals = metrics_writer.read(str(model_dir), "eval")
    return {"steps": [r["step"] for r in evals], "values": [r[NAME] for r in evals],
            "stop": metrics_writer.read(str(model_dir), metrics_writer.EARLY_STOP),
            "best_prompt": np.load(os.path.join(model_dir, "prompts", "best.npy")).tolist()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, frozen_ckpt):
    model_dir = tmp_path_factory.mktemp("ref") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluation, "evaluate", _fake_evaluate)
        out = _run(model_dir, frozen_ckpt)
    return out, _outcome(model_dir)


def test_stops_after_patience_evaluations_without_improvement(reference):
    out, got = reference
    assert got["values"] == [10.0, 30.0, 20.0, 30.0, 50.0, 40.0, 45.0, 45.0]  # the construction holds
    assert out["best"]["step"] == BEST_STEP and out["best"]["value"] == 50.0
    assert out["early_stopped"] and out["step"] == STOP_STEP
    assert got["steps"] == list(range(STOP_STEP + 1))  # evaluated at every step up to the stop, none after
    assert got["stop"] == [{"step": STOP_STEP, "kind": "early_stop", "best_step": BEST_STEP, "patience": PATIENCE}]
    assert metrics_writer.early_stopped(out["model_dir"])
    assert np.asarray(got["best_prompt"]).reshape(-1)[0] == BEST_STEP  # the early-stopping prompt is step 4's
    # TEST_SPLITS is scored at the best (early-stopping) checkpoint.
    assert [r["step"] for r in metrics_writer.read(out["model_dir"], "test")] == [BEST_STEP]


def test_patience_off_trains_to_the_cap(frozen_ckpt, tmp_path):
    out = _run(tmp_path / "run", frozen_ckpt, patience=None, train_steps=12, eval_period=2, test_splits=())
    assert out["step"] == 12 and not out["early_stopped"] and out["best"]["step"] == BEST_STEP
    assert not metrics_writer.early_stopped(out["model_dir"])


@pytest.mark.parametrize("patience,eval_period,stop", [(1, 1, 2), (2, 2, 8), (6, 1, 10)])
def test_stop_step_follows_patience_and_eval_period(patience, eval_period, stop, frozen_ckpt, tmp_path):
    # patience 1: 20 at step 2 ends it (best 30 at step 1). eval_period 2: evaluations 0, 2, 4, 6, 8:
    # best 50 at step 4, then two without improvement. patience 6: 4 + 6.
    out = _run(tmp_path / "run", frozen_ckpt, patience=patience, eval_period=eval_period, checkpoint_period=eval_period,
               test_splits=())
    assert out["early_stopped"] and out["step"] == stop


def test_cap_binds_before_patience(frozen_ckpt, tmp_path):
    out = _run(tmp_path / "run", frozen_ckpt, train_steps=STOP_STEP - 1, test_splits=())
    assert out["step"] == STOP_STEP - 1 and not out["early_stopped"]


def test_rerunning_a_stopped_run_trains_no_further(reference, frozen_ckpt, tmp_path):
    model_dir = tmp_path / "run"
    shutil.copytree(reference[0]["model_dir"], model_dir)
    out = _run(model_dir, frozen_ckpt)
    assert out["early_stopped"] and out["step"] == STOP_STEP
    assert _outcome(model_dir) == reference[1]


# Evaluations at steps 0..7 (the 8th is the stopping one), saves at 3, 6 and the stop step 7, best
# updates at steps 0, 1, 4.
KILL_POINTS = [("eval_started", 5), ("best_before_commit", 3), ("save_committed", 2), ("eval_started", 8),
               ("save_written", 3), ("final_saved", 1)]


@pytest.mark.parametrize("point,nth", KILL_POINTS, ids=[f"{p}-{n}" for p, n in KILL_POINTS])
def test_kill_then_resume_stops_at_the_same_step(point, nth, reference, frozen_ckpt, tmp_path, kill_at):
    model_dir = tmp_path / "run"
    kill_at(point, nth)
    with pytest.raises(Killed):
        _run(model_dir, frozen_ckpt)
    kill_at(None)
    out = _run(model_dir, frozen_ckpt)
    assert out["step"] == reference[0]["step"] and out["early_stopped"]
    assert out["best"]["step"] == reference[0]["best"]["step"]
    assert _outcome(model_dir) == reference[1]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_patience_is_one_line(bad, frozen_ckpt, tmp_path):
    with pytest.raises(trainer.ConfigError, match="patience"):
        _run(tmp_path / "run", frozen_ckpt, patience=bad)
    assert not os.path.exists(tmp_path / "run")


def test_patience_needs_an_eval_split(frozen_ckpt, tmp_path):
    with pytest.raises(trainer.ConfigError, match="EVAL_SPLIT"):
        _run(tmp_path / "run", frozen_ckpt, eval_split=None, test_splits=())
