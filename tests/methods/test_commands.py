"""The method gin files through the real commands (`prompt_tuning.train.main` / `eval.main`, in-process)
on the tiny synthetic world: training lowers the validation loss from its start, leaves every frozen
array bit-identical, checkpoints only the method's parameters, and `eval` on that checkpoint
reproduces the run's final accuracy (the method's parameters restored into the same model). For
LoRA, `export` merges the run into a native checkpoint whose evaluation as a plain frozen model
(no method, no prompt) gives the same accuracy, and writes it as a PEFT adapter on request; for prefix
tuning (direct and MLP-reparameterised), P-tuning and multi-task prompts, `export` writes the plain arrays
and `eval` of them without the reparameterisation gives the run's evaluation (accuracy and every greedy
prediction)."""
import json
import os

import gin
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from prompt_tuning.checkpoints import native

from prompt_tuning import eval as eval_main
from prompt_tuning import export as export_main
from prompt_tuning import train as train_main
from tests.training import synthetic_tasks as st

WORLD = "tests/training/synthetic_world.gin"
REGEX_KEY = {"lora": "lora_", "ia3": "ia3_scale", "adapters": "/adapter/", "prefix": "prefix_", "p_tuning": "p_tuning/",
             "multitask_prompt": "multitask_prompt/"}
# Enough for 20 steps to move this random tiny model (IA3's vectors start at 1 and move slowly; at 0.01 the
# prefix lowers the loss but leaves the accuracy at 0).
LEARNING_RATE = {"lora": 0.01, "ia3": 0.1, "adapters": 0.01, "prefix": 0.1, "p_tuning": 0.1, "multitask_prompt": 1.0}


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _evals(model_dir):
    return [r for r in map(json.loads, open(os.path.join(model_dir, "metrics.jsonl"))) if r["kind"] == "eval"]


@pytest.mark.parametrize("name", sorted(REGEX_KEY))
def test_method_gin_file_trains_checkpoints_and_evaluates(name, tmp_path, capsys):
    run = str(tmp_path / "run")
    common = [f"--gin_file=gin/methods/{name}.gin", f"--gin_file={WORLD}", f"--gin.METHOD_LEARNING_RATE={LEARNING_RATE[name]}"]
    rc = train_main.main(common + [f"--gin.MODEL_DIR='{run}'", "--gin.TRAIN_STEPS=20",
                                   "--gin.train_and_evaluate.checkpoint_period=20"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"parameters in {run}/best" in out.out
    first, last = _evals(run)[0], _evals(run)[-1]
    loss = f"{st.TASK}/loss"
    assert (first["step"], last["step"]) == (0, 20)
    assert last[loss] < first[loss] - 0.1, (first[loss], last[loss])
    acc = f"{st.TASK}/accuracy"
    with ocp.CheckpointManager(os.path.join(run, "checkpoints")) as mngr:
        state = mngr.restore(20, args=ocp.args.StandardRestore())
    saved = list(traverse_util.flatten_dict(state["params"], sep="/"))
    assert saved and all(REGEX_KEY[name] in k for k in saved), saved[:3]

    gin.clear_config()
    rc = eval_main.main(common + ["--gin_file=gin/runs/eval.gin", f"--gin.CHECKPOINT_PATH='{run}'"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    got = [json.loads(l) for l in open(os.path.join(run, "eval_validation", "metrics.jsonl"))][-1]
    assert got[acc] == last[acc]
    # The trained parameters were restored, not initialised afresh: the start scored differently. (Not for
    # P-tuning: on this random tiny model its accuracy is still 0 after 20 to 60 steps while its loss falls
    # 6.83 -> 5.40; with the LSTM encoder it reaches 47.67 exact match on the default world, README. Nor for the
    # multi-task prompt, a prompt too: at learning rate 1.0 its loss falls 6.91 -> 4.74, its accuracy stays 0.)
    if name not in ("p_tuning", "multitask_prompt"):
        assert last[acc] != first[acc], (first, last)
    if name == "lora":
        _export_and_evaluate_the_plain_model(common, run, tmp_path, capsys, last[acc])
    if name in SERVE_EXPORT:
        _export_and_serve(name, common, run, tmp_path, capsys, got)


# How each export without its reparameterisation is served (gin/runs/export.gin): prefix tuning's prefixes by the
# direct parameterisation, P-tuning's and the multi-task prompts' (task 0: every row of the commands) plain prompts
# by prompt tuning. The frozen model is the random run's copy.
SERVE_EXPORT = {
    "prefix": lambda out: ["--gin_file=gin/methods/prefix.gin", f"--gin_file={WORLD}", "--gin.PREFIX_MLP_HIDDEN=None",
                           f"--gin.CHECKPOINT_PATH='{out}'"],
    "p_tuning": lambda out: ["--gin_file=gin/runs/prompt_finetune.gin", "--gin_file=gin/prompts/from_file.gin",
                             f"--gin_file={WORLD}", "--gin.PROMPT_LENGTH=20", f"--gin.PROMPT_FILE='{out}/prompt.npy'"],
    "multitask_prompt": lambda out: ["--gin_file=gin/runs/prompt_finetune.gin", "--gin_file=gin/prompts/from_file.gin",
                                     f"--gin_file={WORLD}", "--gin.PROMPT_LENGTH=20", f"--gin.PROMPT_FILE='{out}/task_0.npy'"],
}


def _export_and_serve(name, common, run, tmp_path, capsys, expected):
    """`export` writes the plain arrays; `eval` of them, served without the method's reparameterisation, gives
    the run's evaluation: the same accuracy and every greedy prediction the same."""
    out = str(tmp_path / "export")
    gin.clear_config()
    rc = export_main.main(common + ["--gin_file=gin/runs/export.gin", f"--gin.CHECKPOINT_PATH='{run}'",
                                    f"--gin.OUTPUT_DIR='{out}'"])
    assert rc == 0, capsys.readouterr().err
    assert "checkpoint step 20" in capsys.readouterr().out
    gin.clear_config()
    rc = eval_main.main(SERVE_EXPORT[name](out) + ["--gin_file=gin/runs/eval.gin",
                                                   f"--gin.INITIAL_CHECKPOINT_PATH='{run}/frozen_model'",
                                                   f"--gin.OUTPUT_DIR='{tmp_path / 'served'}'"])
    assert rc == 0, capsys.readouterr().err
    served = [json.loads(l) for l in open(tmp_path / "served" / "metrics.jsonl")][-1]
    assert served[f"{st.TASK}/accuracy"] == expected[f"{st.TASK}/accuracy"]
    predictions = lambda d: [json.loads(l)["prediction"] for l in open(os.path.join(d, f"predictions_{st.TASK}.jsonl"))]
    ours, theirs = predictions(os.path.join(run, "eval_validation")), predictions(tmp_path / "served")
    # Every greedy output (the logits themselves are compared in tests/methods/test_export.py).
    assert ours == theirs, (ours[:5], theirs[:5])


def _export_and_evaluate_the_plain_model(common, run, tmp_path, capsys, accuracy):
    """`export` merges LoRA into a native checkpoint; `eval` of it with no method gives the run's accuracy."""
    merged = str(tmp_path / "merged")
    gin.clear_config()
    rc = export_main.main(common + ["--gin_file=gin/runs/export.gin", f"--gin.CHECKPOINT_PATH='{run}'",
                                    f"--gin.OUTPUT_DIR='{merged}'"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert native.is_native_checkpoint(merged)
    gin.clear_config()
    rc = eval_main.main(["--gin_file=gin/runs/model_finetune.gin", f"--gin_file={WORLD}", "--gin_file=gin/runs/eval.gin",
                         f"--gin.INITIAL_CHECKPOINT_PATH='{merged}'", f"--gin.OUTPUT_DIR='{tmp_path / 'plain_eval'}'"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    got = [json.loads(l) for l in open(tmp_path / "plain_eval" / "metrics.jsonl")][-1]
    assert got[f"{st.TASK}/accuracy"] == accuracy
    # The same run as a PEFT adapter (loaded by PEFT in tests/methods/test_peft_export.py).
    gin.clear_config()
    adapter = tmp_path / "peft"
    rc = export_main.main(common + ["--gin_file=gin/runs/export.gin", f"--gin.CHECKPOINT_PATH='{run}'",
                                    f"--gin.OUTPUT_DIR='{adapter}'", "--gin.export_merged.peft_adapter=True"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(os.listdir(adapter)) == ["adapter_config.json", "adapter_model.safetensors"]


def test_export_refuses_a_method_it_cannot_export(capsys):
    rc = export_main.main(["--gin_file=gin/methods/ia3.gin", f"--gin_file={WORLD}", "--gin_file=gin/runs/export.gin",
                           "--gin.CHECKPOINT_PATH='x'", "--gin.OUTPUT_DIR='y'"])
    assert rc == 2 and "export takes exactly one LoRA, prefix tuning, P-tuning or multi-task" in capsys.readouterr().err
    gin.clear_config()
    rc = export_main.main(["--gin_file=gin/methods/prefix.gin", f"--gin_file={WORLD}", "--gin_file=gin/runs/export.gin",
                           "--gin.CHECKPOINT_PATH='x'", "--gin.OUTPUT_DIR='y'", "--gin.export_merged.peft_adapter=True"])
    assert rc == 2 and "peft_adapter exports LoRA only" in capsys.readouterr().err


def test_reparameterised_prefix_run_exports_plain_prefixes_that_evaluate_the_same(tmp_path, capsys):
    """The MLP-reparameterised prefix run: its export (the MLPs run once and dropped) served directly scores the
    run's own evaluation."""
    run = str(tmp_path / "run")
    common = ["--gin_file=gin/methods/prefix.gin", f"--gin_file={WORLD}", "--gin.PREFIX_MLP_HIDDEN=8",
              "--gin.METHOD_LEARNING_RATE=0.01"]
    rc = train_main.main(common + [f"--gin.MODEL_DIR='{run}'", "--gin.TRAIN_STEPS=20",
                                   "--gin.train_and_evaluate.checkpoint_period=20"])
    assert rc == 0, capsys.readouterr().err
    gin.clear_config()
    rc = eval_main.main(common + ["--gin_file=gin/runs/eval.gin", f"--gin.CHECKPOINT_PATH='{run}'"])
    assert rc == 0, capsys.readouterr().err
    got = [json.loads(l) for l in open(os.path.join(run, "eval_validation", "metrics.jsonl"))][-1]
    _export_and_serve("prefix", common, run, tmp_path, capsys, got)
    with ocp.CheckpointManager(os.path.join(run, "checkpoints")) as mngr:  # the run trained the MLPs, not prefixes
        saved = list(traverse_util.flatten_dict(mngr.restore(20, args=ocp.args.StandardRestore())["params"], sep="/"))
    assert saved and all("prefix_mlp/" in k for k in saved), saved[:3]


def test_packing_with_a_method_that_adds_positions_is_one_line(tmp_path, capsys):
    rc = train_main.main(["--gin_file=gin/methods/prefix.gin", f"--gin_file={WORLD}", f"--gin.MODEL_DIR='{tmp_path / 'run'}'",
                          "--gin.train_and_evaluate.pack_width=64"])
    assert rc == 2 and "METHODS that add positions" in capsys.readouterr().err
