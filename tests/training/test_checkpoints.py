"""Trainer checkpoints: latest and best, the prompt as .npy, partial writes ignored, clear errors."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.checkpoints import save_restore
from prompt_tuning.checkpoints.errors import CheckpointError
from prompt_tuning.training import optimizer


def _state(step, value):
    params = {"encoder": {"prompt": {"prompt": jnp.full((3, 4), value, jnp.float32)}}}
    return {"step": jnp.asarray(step, jnp.int32), "params": params, "opt_state": optimizer.adafactor().init(params)}


def _abstract(state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def test_latest_best_prompts_and_partial_writes(tmp_path):
    ckpts = save_restore.TrainCheckpoints(str(tmp_path))
    ckpts.save(_state(1, 1.0), prompt=np.full((3, 4), 1.0))
    ckpts.save(_state(2, 2.0), prompt=np.full((3, 4), 2.0))
    ckpts.save_best(_state(1, 1.0), 0.5, {"acc": 0.5}, prompt=np.full((3, 4), 1.0))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]  # keep=1
    assert sorted(os.listdir(tmp_path / "prompts")) == ["best.npy", "step_1.npy", "step_2.npy"]
    assert ckpts.best_info() == {"step": 1, "value": 0.5, "metrics": {"acc": 0.5}}
    ckpts.close()
    # A save killed half-way leaves orbax's temporary directory; it is not a checkpoint.
    os.makedirs(tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-1234" / "default")
    (tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-1234" / "default" / "junk").write_text("x")
    ckpts = save_restore.TrainCheckpoints(str(tmp_path))
    assert ckpts.latest_step() == 2
    restored = ckpts.restore(_abstract(_state(0, 0.0)))
    assert int(restored["step"]) == 2
    np.testing.assert_array_equal(restored["params"]["encoder"]["prompt"]["prompt"], np.full((3, 4), 2.0))
    best = ckpts.restore(_abstract(_state(0, 0.0)), which="best")
    assert int(best["step"]) == 1
    ckpts.close()
    for path in (tmp_path, tmp_path / "checkpoints", tmp_path / "checkpoints" / "2"):
        params, step = save_restore.read_params(str(path))
        assert step == 2 and params["encoder"]["prompt"]["prompt"].shape == (3, 4)
    assert save_restore.read_params(str(tmp_path / "best"))[1] == 1


def test_missing_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        save_restore.read_params(str(tmp_path / "nothing"))
    with pytest.raises(CheckpointError, match="no trainer checkpoint"):
        save_restore.read_params(str(tmp_path))
    with pytest.raises(CheckpointError, match="no latest checkpoint"):
        save_restore.TrainCheckpoints(str(tmp_path / "empty")).restore({})


def test_save_npy_is_atomic_and_pickle_free(tmp_path):
    path = str(tmp_path / "p" / "x.npy")
    save_restore.save_npy(path, np.arange(6, dtype=np.float64).reshape(2, 3))
    arr = np.load(path, allow_pickle=False)
    assert arr.dtype == np.float32 and arr.shape == (2, 3)
    assert os.listdir(tmp_path / "p") == ["x.npy"]
