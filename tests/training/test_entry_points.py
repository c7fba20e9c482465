"""The train / eval / infer commands: bad input gives one line and exit 2; a run trains, evaluates, exports.

The commands are called in-process (`prompt_tuning.train.main(argv)`, the same code as
`python -m prompt_tuning.train`), on the tiny synthetic world of tests/training/synthetic.gin.
"""
import json
import os

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import eval as eval_main
from prompt_tuning import infer as infer_main
from prompt_tuning import train as train_main
from prompt_tuning.checkpoints import native
from prompt_tuning.models import t5
from tests.conftest import REPO
from tests.training import synthetic_tasks as st

WORLD = "tests/training/synthetic.gin"


def _run(main, capsys, *argv):
    rc = main.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _model_dir(path) -> str:
    return f"--gin.MODEL_DIR='{path}'"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 6-step synthetic run (module-scoped: later tests read it)."""
    model_dir = str(tmp_path_factory.mktemp("trained") / "run")
    rc = train_main.main([f"--gin_file={WORLD}", _model_dir(model_dir)])
    gin.clear_config()
    assert rc == 0
    return model_dir


def test_train_runs_checkpoints_evaluates_and_exports(trained):
    names = set(os.listdir(trained))
    assert {"run.json", "config.gin", "checkpoints", "best", "prompts", "metrics.jsonl", "train", "eval"} <= names
    assert os.listdir(os.path.join(trained, "checkpoints")) == ["6"]
    prompt = np.load(os.path.join(trained, "prompts", "step_6.npy"))
    assert prompt.shape == (4, 32) and np.isfinite(prompt).all()
    assert os.path.exists(os.path.join(trained, "prompts", "best.npy"))
    kinds = [json.loads(l)["kind"] for l in open(os.path.join(trained, "metrics.jsonl"))]
    assert kinds.count("eval") == 2 and kinds.count("train") == 3
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(trained, "eval")))


def test_same_configuration_resumes(trained, capsys):
    rc, out, _ = _run(train_main, capsys, f"--gin_file={WORLD}", _model_dir(trained))
    assert rc == 0 and "(resuming)" in out and "done: 6 steps" in out


def test_eval_and_infer_read_the_trained_checkpoint(trained, capsys, tmp_path):
    rc, out, err = _run(eval_main, capsys, f"--gin_file={WORLD}", "--gin_file=gin/runs/eval.gin",
                        f"--gin.CHECKPOINT_PATH='{trained}'")
    assert rc == 0, err
    assert "checkpoint step 6" in out
    evals = [json.loads(l) for l in open(os.path.join(trained, "metrics.jsonl"))]
    final = [r for r in evals if r["kind"] == "eval" and r["step"] == 6][-1]
    got = [json.loads(l) for l in open(os.path.join(trained, "eval_validation", "metrics.jsonl"))][-1]
    key = f"{st.TASK}/accuracy"
    assert got[key] == final[key]
    rc, out, err = _run(infer_main, capsys, f"--gin_file={WORLD}", "--gin_file=gin/runs/infer.gin",
                        f"--gin.CHECKPOINT_PATH='{trained}/best'", f"--gin.OUTPUT_DIR='{tmp_path}'")
    assert rc == 0, err
    rows = [json.loads(l) for l in open(tmp_path / f"predictions_{st.TASK}.jsonl")]
    assert len(rows) == st.SIZES["validation"] and {"inputs", "prediction", "target"} <= set(rows[0])


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    other = t5.get_config("test", vocab_size=st.VOCAB_SIZE, emb_dim=16)
    tokens = jnp.ones((1, 1), jnp.int32)
    params = nn.meta.unbox(t5.T5(other).init(jax.random.PRNGKey(0), tokens, tokens, tokens)["params"])
    native.save(str(root / "wrong_shape"), params, other)
    os.makedirs(root / "corrupt")
    (root / "corrupt" / native.PARAMS_FILE).write_bytes(b"not a safetensors file")
    (root / "corrupt" / native.CONFIG_FILE).write_text("{}")
    np.save(root / "prompt_3x32.npy", np.zeros((3, 32), np.float32))
    (root / "typo.gin").write_text(f"include '{WORLD}'\ntrain_and_evaluate.chekpoint_period = 3\n")
    return root


BAD_INPUTS = {
    "unknown task": (["--gin.MIXTURE_OR_TASK_NAME='no_such_task'"], "unknown task or mixture 'no_such_task'"),
    "unknown gin file": (["--gin_file=gin/no_such_file.gin"], "gin file not found: gin/no_such_file.gin"),
    "gin typo in a flag": (["--gin.train_and_evaluate.sed=1"], "doesn't have a parameter named 'sed'"),
    "gin typo in a file": (["--gin_file={root}/typo.gin"], "doesn't have a parameter named 'chekpoint_period'"),
    "missing checkpoint": (["--gin.INITIAL_CHECKPOINT_PATH='{root}/nothing_here'"], "checkpoint not found"),
    "unreadable checkpoint": (["--gin.INITIAL_CHECKPOINT_PATH='{root}/corrupt'"], "corrupt"),
    "checkpoint shape mismatch": (["--gin.INITIAL_CHECKPOINT_PATH='{root}/wrong_shape'"], "shape mismatch"),
    "prompt file of the wrong shape": (
        ["--gin_file=gin/prompts/from_file.gin", "--gin.PROMPT_FILE='{root}/prompt_3x32.npy'"],
        "has shape (3, 32), expected (4, 32)"),
    "missing required macro": (["--gin_file=gin/prompts/from_file.gin"], "missing required value PROMPT_FILE"),
    "unknown flag": (["--gin_fiel=x.gin"], "unknown flag --gin_fiel"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_writes_nothing(case, bad_files, tmp_path, capsys):
    extra, message = BAD_INPUTS[case]
    model_dir = tmp_path / "run"
    argv = [f"--gin_file={WORLD}", _model_dir(model_dir)] + [a.format(root=bad_files) for a in extra]
    rc, out, err = _run(train_main, capsys, *argv)
    lines = [l for l in err.splitlines() if l.strip()]
    assert rc == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert not model_dir.exists(), "a failed start must not create MODEL_DIR"


def test_model_dir_of_another_configuration_is_refused(trained, capsys):
    before = sorted(os.listdir(trained))
    rc, _, err = _run(train_main, capsys, f"--gin_file={WORLD}", _model_dir(trained), "--gin.BATCH_SIZE=4")
    assert rc == 2 and err.startswith("error: MODEL_DIR") and "different configuration" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(trained)) == before


def test_default_model_dir_is_created_under_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # gin files are still found through the repository root
    rc, out, err = _run(train_main, capsys, f"--gin_file={WORLD}", "--gin.TRAIN_STEPS=0",
                        "--gin.EVAL_SPLIT=None")
    assert rc == 0, err
    runs = os.listdir(tmp_path / "runs")
    assert len(runs) == 1 and runs[0].startswith("synthetic-")
    assert f"MODEL_DIR: runs/{runs[0]}" in out


@pytest.mark.slow
def test_main_command_runs_as_written(tmp_path, capsys, monkeypatch):
    """`python -m prompt_tuning.train --gin_file=gin/prompt_len_20.gin`, shortened to 2 steps: offline, no
    ../shared, the shipped recall-world model loaded (not initialised) and frozen, baselines printed, the
    test split scored at the end."""
    from prompt_tuning.checkpoints import native
    from prompt_tuning.data.recall_world import registry

    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    model_dir = tmp_path / "main"
    try:
        rc, out, err = _run(train_main, capsys, "--gin_file=gin/prompt_len_20.gin", _model_dir(model_dir),
                            "--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=8")
    finally:
        gin.clear_config()
    assert rc == 0, err
    assert "recall world: task recall_world_boolq, baselines on test: majority 50.00, lookup 50.00, " \
           "untrained_frozen 49.33" in out
    assert "validation before training" in out and "validation after training" in out
    assert "test at the best checkpoint" in out and "test_closed_book/recall_world_boolq/accuracy" in out
    shipped = native.load(str(REPO / "assets" / "recall_world" / "default"))
    assert np.load(model_dir / "prompts" / "best.npy").shape == (20, shipped["token_embedder"]["embedding"].shape[1])
    assert not os.path.exists(model_dir / "frozen_model")  # only a randomly initialised model is saved there


def test_model_finetune_run_file_trains_and_checkpoints_everything(tmp_path, capsys):
    import orbax.checkpoint as ocp

    model_dir = tmp_path / "model_tuning"
    rc, out, err = _run(train_main, capsys, "--gin_file=gin/runs/model_finetune.gin",
                        "--gin_file=tests/training/synthetic_world.gin", _model_dir(model_dir),
                        "--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=8", "--gin.EVAL_SPLIT=None")
    assert rc == 0, err
    with ocp.CheckpointManager(str(model_dir / "checkpoints")) as mngr:
        state = mngr.restore(2, args=ocp.args.StandardRestore())
    assert {"token_embedder", "encoder", "decoder"} <= set(state["params"])
    assert "prompt" not in state["params"]["encoder"]
    assert not (model_dir / "prompts").exists()


@pytest.mark.parametrize("override, split", [((), "validation"), (("EVAL_SPLIT = 'test'",), "test")])
def test_eval_gin_scores_in_the_runs_own_mode(monkeypatch, override, split):
    """The README's eval command (the main command's gin file, then gin/runs/eval.gin) scores a checkpoint
    in the mode and on the split its run validated with (default world: rank classification), not in
    eval.gin's own: a later gin file that set EVAL_MODE would win over the experiment file's."""
    monkeypatch.chdir(REPO)
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings(["gin/prompt_len_20.gin", "gin/runs/eval.gin"], list(override),
                                            skip_unknown=False)
        assert gin.query_parameter("%EVAL_MODE") == "rank"
        assert gin.query_parameter("%EVAL_SPLIT") == split
        assert str(gin.query_parameter("evaluate_checkpoint.mode")) == "%EVAL_MODE"
        assert str(gin.query_parameter("evaluate_checkpoint.split")) == "%EVAL_SPLIT"
    finally:
        gin.clear_config()
