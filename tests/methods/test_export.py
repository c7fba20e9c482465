"""Exports give the trained model's logits (float32, max abs difference < 1e-5): LoRA merged into the
weights (a native checkpoint the plain model loads); prefix tuning's plain prefixes (the MLP dropped) read
back as eval reads CHECKPOINT_PATH; P-tuning's prompt and the multi-task prompts' per-task prompts as .npy
files read back by prompts.from_file and served by plain prompt tuning."""
import dataclasses
import functools
import os
import re

import jax
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning import methods, prompts
from prompt_tuning.checkpoints import loading, native, save_restore
from prompt_tuning.methods import export
from prompt_tuning.models import t5
from tests.methods import test_methods as tm
from tests.methods import test_multitask as tmt
from tests.methods import test_prefix as tp
from tests.methods import test_ptuning as tpt


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


# -- prefix tuning, P-tuning and multi-task prompts without their reparameterisation ------------------------
# Each export is written to disk, read back the way eval / infer read it (save_restore.read_params for the
# prefixes, prompts.from_file for a prompt), served by the plain parameterisation, and gives the trained
# model's logits.


def _served_prompt(flat_frozen, path, length):
    """A plain prompt-tuned model serving the .npy at `path` (as PROMPT_INIT = @from_file does) and its tree."""
    init = prompts.from_file(path)
    value = np.asarray(init(jax.random.PRNGKey(0), (length, tm.CONFIG.emb_dim)))
    model = t5.T5(tm.CONFIG, functools.partial(prompts.Prompt, length=length, prompt_init=init))
    flat = dict(flat_frozen, **{"encoder/prompt/prompt": value})
    return model, traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def test_prefix_export_drops_the_mlp_and_reads_back_with_the_same_logits(tmp_path):
    mlp = tp.VARIANTS["mlp"]
    model, _ = tp._params("mlp")
    params = tm._unflat(tp._perturbed("mlp"))
    written = export.plain_prefixes(str(tmp_path), params, tm.CONFIG, mlp, step=7)
    assert os.listdir(tmp_path) == [save_restore.METHOD_PARAMS_FILE]
    direct_keys = {k for k in tm._flat(tp._params("direct")[1]) if "prefix_" in k}
    assert set(written) == direct_keys and all(v.shape == (tp.P, tp.INNER) for v in written.values())
    restored, step = save_restore.read_params(str(tmp_path))  # what eval / infer read as CHECKPOINT_PATH
    assert step == 7 and set(tm._flat(restored)) == direct_keys
    frozen = {k: v for k, v in tm._flat(params).items() if not re.fullmatch(methods.Prefix.TRAINABLE_REGEX, k)}
    served = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in {**frozen, **tm._flat(restored)}.items()})
    direct_model = t5.T5(tm.CONFIG, methods=(dataclasses.replace(mlp, mlp_hidden=None),))
    batch = tm._batch()
    ours, theirs = tm._logits(model, params, batch), tm._logits(direct_model, served, batch)
    assert np.abs(ours - theirs).max() < 1e-5, np.abs(ours - theirs).max()
    assert np.abs(ours - tm._logits(t5.T5(tm.CONFIG), traverse_util.unflatten_dict(
        {tuple(k.split("/")): v for k, v in frozen.items()}), batch)).max() > 1e-2  # the prefixes matter
    with pytest.raises(ValueError, match="no prefix arrays"):
        export.plain_prefixes(str(tmp_path / "none"), traverse_util.unflatten_dict(
            {tuple(k.split("/")): v for k, v in frozen.items()}), tm.CONFIG, methods.Prefix(length=tp.P))


@pytest.mark.parametrize("encoder", ["mlp", "lstm"])
def test_p_tuning_export_is_a_plain_prompt_file_with_the_same_logits(tmp_path, encoder):
    model, params = tpt._params(encoder)
    rng = np.random.default_rng(2)
    flat = {k: (v + 0.3 * rng.normal(size=v.shape).astype(np.float32) if k.startswith("encoder/p_tuning/") else v)
            for k, v in tm._flat(params).items()}
    params = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})
    prompt = export.plain_prompt(str(tmp_path), params, tpt.VARIANTS[encoder], tm.CONFIG.emb_dim)
    assert prompt.shape == (tpt.P, tm.CONFIG.emb_dim)
    frozen = {k: v for k, v in flat.items() if not k.startswith("encoder/p_tuning/")}
    served_model, served = _served_prompt(frozen, str(tmp_path / export.PROMPT_FILE), tpt.P)
    batch = tm._batch()
    ours, theirs = tm._logits(model, params, batch), tm._logits(served_model, served, batch)
    assert np.abs(ours - theirs).max() < 1e-5, np.abs(ours - theirs).max()


@pytest.mark.parametrize("name", sorted(tmt.VARIANTS))
def test_multitask_export_is_one_plain_prompt_file_per_task_with_the_same_logits(tmp_path, name):
    model = tmt._params(name)[0]
    flat = tmt._random(name)
    params = tmt._unflat(flat)
    table = export.plain_task_prompts(str(tmp_path), params, tmt.VARIANTS[name])
    assert sorted(os.listdir(tmp_path)) == [f"task_{k}.npy" for k in range(tmt.K)]
    frozen = {k: v for k, v in flat.items() if not k.startswith("encoder/multitask_prompt/")}
    batch = tm._batch()
    mixed = tmt._logits(model, params, batch, tmt.MIXED)
    for b, k in enumerate(tmt.MIXED):
        served_model, served = _served_prompt(frozen, str(tmp_path / f"task_{k}.npy"), tmt.P)
        theirs = tm._logits(served_model, served, batch)
        assert np.abs(mixed[b] - theirs[b]).max() < 1e-5, (k, np.abs(mixed[b] - theirs[b]).max())
    assert np.abs(table[0] - table[1]).max() > 1e-3
