"""Fault injection: a run killed at every phase boundary, corrupt checkpoints, concurrent runs, bad input.

Every case ends in the uninterrupted run's exact result (final prompt, best prompt, best.json,
evaluation records and training losses, bit for bit) or in one line `error: ...` with exit
status 2 and nothing half-written. One run of tests/training/synthetic.gin (6 steps, a
checkpoint and an evaluation every 2 steps) is the reference.

Kills are injected at the named points of prompt_tuning/fault_points.py: in-process (the
point raises an exception no handler of the trainer catches, which leaves the disk exactly
as SIGKILL at that point would) for every point, and as a real SIGKILL of a subprocess
(PROMPT_TUNING_KILL_AT) for the two cases the issue found: right after the final checkpoint
directory appears and during the final evaluation.
"""
import json
import os
import shutil
import signal
import subprocess
import sys

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import eval as eval_main
from prompt_tuning import fault_points
from prompt_tuning import train as train_main
from prompt_tuning.checkpoints import save_restore
from prompt_tuning.checkpoints.errors import CheckpointError
from prompt_tuning.training import metrics_writer, run_dir
from tests.conftest import REPO
from tests.training.conftest import Killed

STEPS = 6
FLAGS = ["--gin_file=tests/training/synthetic.gin", "--gin.train_and_evaluate.eval_period=2"]


def _train(model_dir, capsys=None, *extra):
    gin.clear_config()
    rc = train_main.main([*FLAGS, f"--gin.MODEL_DIR='{model_dir}'", *extra])
    gin.clear_config()
    out = capsys.readouterr() if capsys is not None else None
    return rc, (out.out if out else ""), (out.err if out else "")


def outcome(model_dir) -> dict:
    """Everything a run's result consists of (timings excluded)."""
    read = lambda *p: open(os.path.join(model_dir, *p), "rb").read()
    evals = {r["step"]: {k: v for k, v in r.items()} for r in metrics_writer.read(model_dir, "eval")}
    losses = {r["step"]: r["loss"] for r in metrics_writer.read(model_dir, "train")}
    return {"final": read("prompts", f"step_{STEPS}.npy"), "best": read("prompts", "best.npy"),
            "best.json": json.loads(read("best", "best.json")), "evals": evals, "losses": losses,
            "prompts": sorted(os.listdir(os.path.join(model_dir, "prompts"))),
            "checkpoints": sorted(os.listdir(os.path.join(model_dir, "checkpoints")))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("reference") / "run"
    rc, _, _ = _train(model_dir)
    assert rc == 0
    want = outcome(model_dir)
    assert sorted(want["evals"]) == [0, 2, 4, 6] and want["checkpoints"] == [str(STEPS)]
    return model_dir, want


# ---------------------------------------------------------------------------
# Kills at every phase boundary
# ---------------------------------------------------------------------------


# (point, n-th time reached) in a 6-step run with evaluations at steps 0, 2, 4, 6.
KILL_POINTS = [
    ("startup", 1),             # MODEL_DIR claimed, nothing else
    ("eval_started", 1),        # during the evaluation before training
    ("best_written", 1),        # during the best-checkpoint write: best/<step>/ there, best.npy and best.json not
    ("best_before_commit", 1),  # best/<step>/ and best.npy written, best.json not
    ("save_written", 1),        # during a save: checkpoints/2/ renamed, no prompt, no checksums.json
    ("save_committed", 1),      # after a save: step 2 committed
    ("eval_started", 3),        # during the evaluation of step 4
    ("save_written", 3),        # the final checkpoint directory has just appeared
    ("eval_started", 4),        # during the final evaluation
    ("final_saved", 1),         # after the final save
]


@pytest.mark.parametrize("point,nth", KILL_POINTS, ids=[f"{p}-{n}" for p, n in KILL_POINTS])
def test_kill_at_every_phase_then_resume_equals_uninterrupted(point, nth, reference, tmp_path, kill_at):
    _, want = reference
    model_dir = tmp_path / "run"
    kill_at(point, nth)
    with pytest.raises(Killed):
        _train(model_dir)
    kill_at(None)
    rc, _, _ = _train(model_dir)
    assert rc == 0
    assert outcome(model_dir) == want


def _subprocess_env(cache_dir, kill_at):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **{fault_points.ENV_VAR: kill_at})
    env.pop("XLA_FLAGS", None)
    return env


@pytest.mark.parametrize("kill_at", ["save_written:3", "eval_started:4"])
def test_sigkill_at_the_end_of_a_run_then_resume_equals_uninterrupted(kill_at, reference, tmp_path,
                                                                      compilation_cache_dir):
    _, want = reference
    model_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "prompt_tuning.train", *FLAGS, f"--gin.MODEL_DIR='{model_dir}'"],
                          cwd=REPO, env=_subprocess_env(compilation_cache_dir, kill_at), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert "done:" not in proc.stdout
    rc, _, _ = _train(model_dir)
    assert rc == 0
    assert outcome(model_dir) == want


# ---------------------------------------------------------------------------
# Corrupt checkpoints
# ---------------------------------------------------------------------------


def _data_files(step_dir):
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs
                  if os.sep + "d" + os.sep in os.path.join(r, f) + os.sep or os.path.basename(r) == "d")


def _flip_bits(path, n=3):
    data = bytearray(open(path, "rb").read())
    for i in range(n):
        pos = (len(data) * (i + 1)) // (n + 1)
        data[pos] ^= 1 << i
    open(path, "wb").write(bytes(data))


CORRUPTIONS = {
    "data file deleted": lambda d: os.remove(_data_files(d)[-1]),
    "data file truncated": lambda d: open(_data_files(d)[-1], "r+b").truncate(7),
    "data file overwritten": lambda d: open(_data_files(d)[-1], "wb").write(b"\0" * 64),
    "three bits flipped": lambda d: _flip_bits(_data_files(d)[-1]),
    "_METADATA deleted": lambda d: os.remove(os.path.join(d, "default", "_METADATA")),
    "garbage manifest.ocdbt": lambda d: open(os.path.join(d, "default", "manifest.ocdbt"), "wb").write(b"garbage"),
    "checksums.json garbage": lambda d: open(os.path.join(d, save_restore.CHECKSUMS), "w").write("{"),
}


def _state(step, value):
    from prompt_tuning.training import optimizer

    params = {"encoder": {"prompt": {"prompt": jnp.full((3, 4), value, jnp.float32)}}}
    return {"step": jnp.asarray(step, jnp.int32), "params": params, "opt_state": optimizer.adafactor().init(params)}


def _abstract(state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_checkpoint_is_reported_and_the_newest_intact_one_used(kind, tmp_path):
    notes = []
    ckpts = save_restore.TrainCheckpoints(str(tmp_path), keep=2, say=notes.append)
    ckpts.save(_state(1, 1.0), prompt=np.ones((3, 4)))
    ckpts.save(_state(2, 2.0), prompt=np.ones((3, 4)))
    ckpts.close()
    CORRUPTIONS[kind](str(tmp_path / "checkpoints" / "2"))
    with pytest.raises(CheckpointError, match="checkpoints/2 is corrupt|cannot be read"):
        save_restore.read_params(str(tmp_path / "checkpoints" / "2"))  # what eval / infer do
    ckpts = save_restore.TrainCheckpoints(str(tmp_path), keep=2, say=notes.append)
    state = ckpts.restore_intact(_abstract(_state(0, 0.0)))
    ckpts.close()
    assert int(state["step"]) == 1
    np.testing.assert_array_equal(state["params"]["encoder"]["prompt"]["prompt"], np.full((3, 4), 1.0))
    assert len(notes) == 2 and "checkpoints/2" in notes[0] and "newest intact checkpoint, step 1" in notes[1]
    assert all("\n" not in n for n in notes)
    assert os.listdir(tmp_path / "corrupt") == ["checkpoints-2"]  # kept for inspection, out of the way


def test_unfinished_save_is_discarded_and_none_intact_is_one_error(tmp_path):
    notes = []
    ckpts = save_restore.TrainCheckpoints(str(tmp_path), keep=1, say=notes.append)
    ckpts.save(_state(1, 1.0))
    os.remove(tmp_path / "checkpoints" / "1" / save_restore.CHECKSUMS)  # killed before the commit
    assert ckpts.latest_step() is None and ckpts.restore_intact(_abstract(_state(0, 0.0))) is None
    assert "unfinished save" in notes[0] and not (tmp_path / "checkpoints" / "1").exists()
    ckpts.save(_state(1, 1.0))
    CORRUPTIONS["three bits flipped"](str(tmp_path / "checkpoints" / "1"))
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        ckpts.restore_intact(_abstract(_state(0, 0.0)))
    ckpts.close()


def test_bit_flip_in_the_latest_checkpoint_resumes_from_best_to_the_same_result(reference, tmp_path, capsys):
    ref_dir, want = reference
    model_dir = tmp_path / "run"
    shutil.copytree(ref_dir, model_dir)
    _flip_bits(_data_files(str(model_dir / "checkpoints" / str(STEPS)))[-1])
    rc, out, err = _train(model_dir, capsys)
    assert rc == 0, err
    assert f"checkpoints/{STEPS} is corrupt" in out and "resuming from the best checkpoint, step 0" in out
    assert outcome(model_dir) == want


def test_no_intact_checkpoint_eval_of_a_corrupt_one_and_bad_best_json_are_one_line(reference, tmp_path, capsys):
    ref_dir, _ = reference
    model_dir = tmp_path / "run"
    shutil.copytree(ref_dir, model_dir)
    _flip_bits(_data_files(str(model_dir / "checkpoints" / str(STEPS)))[-1])
    gin.clear_config()
    rc = eval_main.main([*FLAGS, "--gin_file=gin/runs/eval.gin", f"--gin.CHECKPOINT_PATH='{model_dir}'"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: checkpoint") and "does not match its checksum" in err
    assert len(err.strip().splitlines()) == 1
    open(model_dir / "best" / "best.json", "w").write("{not json")
    rc, _, err = _train(model_dir, capsys)
    assert rc == 2 and err.startswith("error: ") and "best.json is corrupt" in err and len(err.splitlines()) == 1
    shutil.rmtree(model_dir / "best")
    rc, out, err = _train(model_dir, capsys)
    assert rc == 2 and err.startswith("error: no intact checkpoint") and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------
# One run per MODEL_DIR
# ---------------------------------------------------------------------------

HOLDER = """
import sys, time
from prompt_tuning.training import run_dir
lock = run_dir.RunLock(sys.argv[1]); lock.acquire(); print('locked', flush=True); time.sleep(600)
"""


def test_second_run_on_a_model_dir_exits_naming_the_holder_and_the_lock_dies_with_it(reference, tmp_path, capsys):
    ref_dir, want = reference
    model_dir = tmp_path / "run"
    shutil.copytree(ref_dir, model_dir)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(model_dir)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = open(model_dir / "metrics.jsonl").read()
        rc, out, err = _train(model_dir, capsys)
        assert rc == 2 and len(err.splitlines()) == 1
        assert err.startswith(f"error: MODEL_DIR {model_dir} is in use by pid {holder.pid} on ")
        assert open(model_dir / "metrics.jsonl").read() == before
    finally:
        holder.kill()  # SIGKILL: no chance to unlock; the OS releases the lock
        holder.wait()
    rc, out, _ = _train(model_dir, capsys)
    assert rc == 0 and "done: 6 steps" in out
    assert outcome(model_dir) == want


def test_lock_is_exclusive_between_open_descriptions(tmp_path):
    a, b = run_dir.RunLock(str(tmp_path)), run_dir.RunLock(str(tmp_path))
    a.acquire()
    with pytest.raises(run_dir.RunDirError, match=f"in use by pid {os.getpid()}"):
        b.acquire()
    a.release()
    b.acquire()
    b.release()


# ---------------------------------------------------------------------------
# Bad input: one line, exit 2, no MODEL_DIR
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    (root / "empty.npy").write_bytes(b"")
    (root / "a_file").write_text("x")
    return root


BAD_INPUTS = {
    "keep_checkpoints=0": (["--gin.train_and_evaluate.keep_checkpoints=0"], "keep_checkpoints must be an int >= 1"),
    "checkpoint_period=0": (["--gin.train_and_evaluate.checkpoint_period=0"], "checkpoint_period must be an int >= 1"),
    "eval_period=0": (["--gin.train_and_evaluate.eval_period=0"], "eval_period must be an int >= 1"),
    "misspelled macro PROMPT_LENGHT": (["--gin.PROMPT_LENGHT=7"], "did you mean PROMPT_LENGTH?"),
    "misspelled macro TRAIN_STEP": (["--gin.TRAIN_STEP=2"], "did you mean TRAIN_STEPS?"),
    "vocabulary path that does not exist": (["--gin.get_vocabulary.path='/nonexistent'"],
                                            "vocabulary file not found: /nonexistent"),
    "feature length 100000": (["--gin.TASK_FEATURE_LENGTHS={{'inputs': 100000, 'targets': 4}}"],
                              "TASK_FEATURE_LENGTHS['inputs'] must be an int in [1, 8192]"),
    "empty .npy prompt": (["--gin_file=gin/prompts/from_file.gin", "--gin.PROMPT_FILE='{root}/empty.npy'"],
                          "empty.npy cannot be read (EOFError"),
    "MODEL_DIR under a file": (["--gin.MODEL_DIR='{root}/a_file/run'"], "a_file is not a directory"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_writes_nothing(case, bad_files, tmp_path, capsys):
    extra, message = BAD_INPUTS[case]
    model_dir = tmp_path / "run"
    rc, out, err = _train(model_dir, capsys, *[a.format(root=bad_files) for a in extra])
    lines = [l for l in err.splitlines() if l.strip()]
    assert rc == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert not model_dir.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_parent_is_one_line(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir(mode=0o500)
    rc, _, err = _train(parent / "run", capsys)
    assert rc == 2 and "no write permission" in err and len(err.splitlines()) == 1


def test_activation_memory_estimate_is_checked_before_anything_is_written():
    from prompt_tuning.models import t5
    from prompt_tuning.training import config_checks

    config = t5.get_config("small")
    need = config_checks.activation_bytes(config, 32, {"inputs": 512, "targets": 8}, 100)
    assert 1e9 < need < 1e11  # ~ a few GiB for T5-Small at the paper's batch, as measured on accelerators
    with pytest.raises(config_checks.SettingsError, match="needs about .* GiB of activations"):
        config_checks.check_run_settings(checkpoint_period=1, eval_period=None, log_period=1, keep_checkpoints=1,
                                         task_feature_lengths={"inputs": 8192, "targets": 8}, model_config=config,
                                         batch_size=32, available=16 * 2**30)


def test_out_of_memory_and_file_errors_are_described_in_one_line():
    from prompt_tuning.training import config_checks

    oom = RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 99 bytes.\nmore\nlines")
    assert config_checks.describe(oom).startswith("out of memory: RESOURCE_EXHAUSTED")
    assert config_checks.describe(PermissionError(13, "Permission denied", "/x")) == "Permission denied: /x"
    assert config_checks.describe(KeyError("a bug")) is None


# ---------------------------------------------------------------------------
# Bad data rows: raised inside tf.data, reported as the project's own one line
# ---------------------------------------------------------------------------

GOOD_AXB = {"sentence1": "The cat sat.", "sentence2": "A cat sat.", "idx": 0, "label": "entailment"}
BAD_ROWS = {
    "label not in the label set": (json.dumps(dict(GOOD_AXB, label="maybe")).encode(), "label 'maybe' is not one of"),
    "truncated JSON line": (json.dumps(GOOD_AXB).encode()[:25], "not valid JSON"),
    "latin-1 bytes": (json.dumps(GOOD_AXB).replace("cat", "caf\u00e9").encode("latin-1"), "not UTF-8"),
    "not an object": (b"[1, 2]", "not a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_jsonl_row_inside_tf_data_is_unwrapped_to_file_and_line(case, tmp_path):
    import tensorflow as tf

    from prompt_tuning.data import sources
    from prompt_tuning.training import config_checks

    row, message = BAD_ROWS[case]
    path = tmp_path / f"{sources.JSONL_DIRS['axb']}.jsonl"
    path.write_bytes(json.dumps(GOOD_AXB).encode() + b"\n\n" + row + b"\n")
    ds = sources.jsonl_source("axb", str(tmp_path)).get_dataset("test", shuffle=False)
    with pytest.raises(tf.errors.OpError) as caught:
        list(ds.as_numpy_iterator())
    line = config_checks.describe(caught.value)
    assert line is not None and line.startswith(f"{path}:3: ") and message in line and "\n" not in line


def test_bad_row_in_the_default_worlds_files_is_one_line(tmp_path, capsys):
    """The main command's world, its files in a temporary directory: a latin-1 byte in the training file
    and a cut line in the test file (both read by the start-up hook's baselines, then by tf.data)."""
    from prompt_tuning.data.recall_world import registry

    world = registry.prepare_recall_world(vocab_path="assets/recall_world/spm.model", out_dir=str(tmp_path / "world"))
    argv = ["--gin_file=gin/prompt_len_20.gin", f"--gin.prepare_recall_world.out_dir='{world['dir']}'",
            "--gin.TRAIN_STEPS=2", "--gin.train_and_evaluate.eval_before_training=False",
            f"--gin.MODEL_DIR='{tmp_path / 'run'}'"]
    for name, bad, message in (("train.jsonl", b'{"passage": "caf\xe9"}', "train.jsonl:2: not UTF-8"),
                               ("test.jsonl", b'{"passage": ', "test.jsonl:2: not valid JSON")):
        path = os.path.join(world["task_dir"], "boolq", name)  # the main command's task (gin/default_world.gin)
        good = open(path, "rb").read()
        lines = good.split(b"\n")
        open(path, "wb").write(b"\n".join([lines[0], bad] + lines[2:]))
        gin.clear_config()
        rc = train_main.main(argv)
        err = capsys.readouterr().err
        open(path, "wb").write(good)
        assert rc == 2 and err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "run").exists()
    # The shipped vocabulary missing from the assets directory: one line naming it.
    (tmp_path / "assets").mkdir()
    gin.clear_config()
    rc = train_main.main(argv + [f"--gin.ensure_recall_world_default.assets_dir='{tmp_path / 'assets'}'"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: recall-world default assets missing") and "spm.model" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
