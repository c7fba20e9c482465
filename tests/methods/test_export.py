"""LoRA merged into the weights: a native checkpoint that the plain model loads and that reproduces
the adapted model's logits (float32, max abs difference < 1e-5)."""
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning import methods
from prompt_tuning.checkpoints import loading, native
from prompt_tuning.methods import export
from prompt_tuning.models import t5
from tests.methods import test_methods as tm


def _adapted(name, seed=7):
    """The test model with the method's parameters set to random values (so the update matters)."""
    model, params = tm._params(name)
    rng = np.random.default_rng(seed)
    flat = {k: ((0.2 * rng.normal(size=v.shape)).astype(np.float32) if k.endswith(("lora_a", "lora_b", "ia3_scale")) else v)
            for k, v in tm._flat(params).items()}
    return model, traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def test_merged_lora_checkpoint_loads_into_the_plain_model_and_reproduces_the_logits(tmp_path):
    model, params = _adapted("lora")
    export.merged_lora_checkpoint(str(tmp_path), params, tm.CONFIG, tm.METHODS["lora"])
    assert native.is_native_checkpoint(str(tmp_path))
    loaded, _ = loading.load_params(str(tmp_path), tm.CONFIG)  # checks every name and shape of the plain model
    batch = tm._batch(3)
    adapted = tm._logits(model, params, batch)
    plain = tm._logits(t5.T5(tm.CONFIG), loaded, batch)
    diff = np.abs(adapted - plain).max()
    assert diff < 1e-5 and np.abs(adapted).max() > 1.0, (diff, np.abs(adapted).max())
    # Not vacuous: the LoRA update changes the logits, and the merged kernels differ from the frozen ones.
    frozen = {k: v for k, v in tm._flat(params).items() if "lora_" not in k}
    unmerged = tm._logits(t5.T5(tm.CONFIG), traverse_util.unflatten_dict(
        {tuple(k.split("/")): v for k, v in frozen.items()}), batch)
    assert np.abs(adapted - unmerged).max() > 1e-2
    changed = {k for k, v in tm._flat(loaded).items() if not np.array_equal(v, frozen[k])}
    assert changed == {k[: -len("/lora_a")] + "/kernel" for k in tm._flat(params) if k.endswith("lora_a")}


def test_merge_refuses_parameters_that_are_not_lora(tmp_path):
    _, params = _adapted("ia3")
    with pytest.raises(ValueError, match="not the plain model's: extra .*ia3_scale"):
        export.merged_lora_checkpoint(str(tmp_path), params, tm.CONFIG, methods.LoRA(rank=tm.RANK))
    assert not native.is_native_checkpoint(str(tmp_path))
