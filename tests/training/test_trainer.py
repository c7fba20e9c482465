"""The training loop in-process: what is trained, resumption, refusal, NaN stop, eval modes, data order."""
import functools
import json
import os

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from prompt_tuning import prompts
from prompt_tuning.models import t5
from prompt_tuning.training import evaluation, input_pipeline, optimizer, partitioning, run_dir, trainer
from tests.training import synthetic_tasks as st
from tests.training.conftest import CONFIG

PROMPT_KEY = "encoder/prompt/prompt"


def _kwargs(tmp_path, frozen_ckpt, **over):
    kw = dict(
        model_dir=str(tmp_path / "run"), mixture_or_task_name=st.TASK, task_feature_lengths=st.LENGTHS,
        train_steps=3, batch_size=8, model_config=CONFIG, initial_checkpoint_path=frozen_ckpt,
        prompt=prompts.make_prompt(4, prompts.random_uniform), checkpoint_period=100, log_period=1,
        eval_split=None,
    )
    kw.update(over)
    return kw


def _flat(tree):
    return {k: np.array(v) for k, v in traverse_util.flatten_dict(jax.device_get(tree), sep="/").items()}


def _initial_params(kw):
    setup = trainer.build(model_config=kw["model_config"], task_name=kw["mixture_or_task_name"], prompt=kw["prompt"],
                          initial_checkpoint_path=kw["initial_checkpoint_path"],
                          trainable_regex=kw.get("trainable_regex", trainer.PROMPT_REGEX), seed=0,
                          mesh=partitioning.make_mesh())
    return _flat(setup.params)


def test_prompt_tuning_changes_only_the_prompt_and_keeps_state_only_for_it(tmp_path, frozen_ckpt):
    kw = _kwargs(tmp_path, frozen_ckpt)
    before = _initial_params(kw)
    out = trainer.train_and_evaluate(**kw)
    after = _flat(out["params"])
    assert set(after) == set(before)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed == {PROMPT_KEY}, "every frozen array must be bit-identical after training"
    # The checkpoint holds only the prompt and its optimizer state.
    with ocp.CheckpointManager(os.path.join(kw["model_dir"], "checkpoints")) as mngr:
        state = mngr.restore(3, args=ocp.args.StandardRestore())
    assert list(_flat(state["params"])) == [PROMPT_KEY]
    assert sum(np.size(x) for x in jax.tree.leaves(state["opt_state"])) < 2 * after[PROMPT_KEY].size + 20
    np.testing.assert_array_equal(np.load(os.path.join(kw["model_dir"], "prompts", "step_3.npy")), after[PROMPT_KEY])


def test_model_tuning_changes_the_weights(tmp_path, frozen_ckpt):
    tx = functools.partial(optimizer.adafactor, learning_rate=1e-3, multiply_by_parameter_scale=True,
                           weight_decay_rate=None)
    kw = _kwargs(tmp_path, frozen_ckpt, prompt=None, trainable_regex=trainer.ALL_REGEX, optimizer_factory=tx)
    before = _initial_params(kw)
    after = _flat(trainer.train_and_evaluate(**kw)["params"])
    unchanged = {k for k in before if np.array_equal(before[k], after[k])}
    assert not unchanged, f"model tuning left {sorted(unchanged)} unchanged"


def _count_dots(regex, prompt):
    model = t5.T5(CONFIG, prompt.module(prompts.random_uniform()) if prompt else None)
    tokens = jnp.ones((2, 5), jnp.int32)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), tokens, tokens, tokens)["params"])
    trainable, frozen = trainer.split_params(params, regex)
    tx = optimizer.adafactor()
    state = {"step": jnp.zeros((), jnp.int32), "params": trainable, "opt_state": tx.init(trainable)}
    batch = {"encoder_input_tokens": tokens, "decoder_input_tokens": tokens, "decoder_target_tokens": tokens,
             "decoder_loss_weights": jnp.ones((2, 5))}
    step = functools.partial(trainer.train_step, model=model, tx=tx, z_loss=1e-4, loss_normalizing_factor=None)
    return str(jax.make_jaxpr(step)(state, frozen, batch, jax.random.PRNGKey(0))).count("dot_general")


def test_no_weight_gradients_are_computed_in_prompt_mode():
    spec = prompts.make_prompt(3, prompts.random_uniform)
    prompt_dots = _count_dots(trainer.PROMPT_REGEX, spec)
    model_dots = _count_dots(trainer.ALL_REGEX, None)
    # Every dense layer costs 3 matmuls when its weight is trained (forward, input and weight
    # gradients) and at most 2 when frozen; the test model has 2+2 layers with 7 or 11 kernels.
    assert prompt_dots < model_dots - 20, (prompt_dots, model_dots)


def test_resume_equals_uninterrupted_and_other_config_is_refused(tmp_path, frozen_ckpt):
    full = trainer.train_and_evaluate(**_kwargs(tmp_path / "a", frozen_ckpt, train_steps=4))
    kw = _kwargs(tmp_path / "b", frozen_ckpt, train_steps=2, checkpoint_period=1)
    trainer.train_and_evaluate(**kw)
    resumed = trainer.train_and_evaluate(**{**kw, "train_steps": 4})  # TRAIN_STEPS may grow
    np.testing.assert_array_equal(_flat(resumed["params"])[PROMPT_KEY], _flat(full["params"])[PROMPT_KEY])
    records = [json.loads(l) for l in open(os.path.join(kw["model_dir"], "metrics.jsonl"))]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    listing = sorted(os.listdir(kw["model_dir"]))
    gin.parse_config("train_and_evaluate.batch_size = 4")  # a different configuration
    with pytest.raises(run_dir.RunDirError, match="different configuration"):
        trainer.train_and_evaluate(**kw)
    assert sorted(os.listdir(kw["model_dir"])) == listing


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, frozen_ckpt):
    # The 4th update (optimizer count 3) gets a NaN learning rate: the state after step 4 is NaN.
    tx = functools.partial(optimizer.adafactor, learning_rate=lambda c: jnp.where(c >= 3, jnp.nan, 0.3))
    kw = _kwargs(tmp_path, frozen_ckpt, train_steps=6, checkpoint_period=1, optimizer_factory=tx)
    with pytest.raises(trainer.NonFiniteLossError, match="not finite at step 4.*checkpoint \\(step 3\\) is intact"):
        trainer.train_and_evaluate(**kw)
    steps = sorted(int(d) for d in os.listdir(os.path.join(kw["model_dir"], "checkpoints")) if d.isdigit())
    assert steps == [3]
    assert np.all(np.isfinite(np.load(os.path.join(kw["model_dir"], "prompts", "step_3.npy"))))
    assert not os.path.exists(os.path.join(kw["model_dir"], "prompts", "step_4.npy"))


def test_eval_generate_and_rank_keep_best_checkpoint(tmp_path, frozen_ckpt):
    labels = {st.TASK: list(st.LABELS)}
    kw = _kwargs(tmp_path, frozen_ckpt, eval_split="validation", eval_mode="rank", verbalizers=labels,
                 eval_period=2, train_steps=4, batch_size=4)
    out = trainer.train_and_evaluate(**kw)
    assert set(out["metrics_before"]) == {f"{st.TASK}/accuracy", f"{st.TASK}/loss"}
    best = json.load(open(os.path.join(kw["model_dir"], "best", "best.json")))
    evals = [r for r in map(json.loads, open(os.path.join(kw["model_dir"], "metrics.jsonl"))) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 2, 4]
    assert best["value"] == max(r[f"{st.TASK}/accuracy"] for r in evals)
    assert os.path.exists(os.path.join(kw["model_dir"], "prompts", "best.npy"))

    # Rank classification picks the label with the highest log-likelihood; greedy decoding runs.
    mesh = partitioning.make_mesh()
    setup = trainer.build(model_config=CONFIG, task_name=st.TASK, prompt=kw["prompt"], initial_checkpoint_path=frozen_ckpt,
                          trainable_regex=trainer.PROMPT_REGEX, seed=0, mesh=mesh)
    es = input_pipeline.load_eval_set(seqio_task(), "validation", st.LENGTHS)
    ranked = evaluation.rank(setup.model, setup.params, es, st.LABELS, batch_size=4, mesh=mesh)
    assert set(ranked) <= set(st.LABELS) and len(ranked) == len(es)
    targets = evaluation.verbalizer_targets(st.VOCAB, st.LABELS, st.LENGTHS["targets"])
    from prompt_tuning.models import decoding
    enc = jnp.asarray(es.features["encoder_input_tokens"][:1]).repeat(2, axis=0)
    dec_in = jnp.concatenate([jnp.zeros((2, 1), jnp.int32), jnp.asarray(targets[:, :-1])], axis=1)
    scores = decoding.sequence_log_likelihood(setup.model, setup.params, enc, dec_in, jnp.asarray(targets))
    assert ranked[0] == st.LABELS[int(np.argmax(scores))]
    generated = evaluation.generate(setup.model, setup.params, es, batch_size=4, mesh=mesh, max_decode_length=4)
    assert len(generated) == len(es) and all(isinstance(g, str) for g in generated)


def seqio_task():
    import seqio

    return seqio.get_mixture_or_task(st.TASK)


def test_training_order_is_a_function_of_the_step():
    data = input_pipeline.TrainData(st.TASK, st.LENGTHS, batch_size=8, seed=3)
    it = data.iterate(0)
    first = [next(it) for _ in range(10)]
    again = input_pipeline.TrainData(st.TASK, st.LENGTHS, batch_size=8, seed=3)
    for s in (0, 5, 9):
        for k in input_pipeline.FEATURES:
            np.testing.assert_array_equal(again.batch(s)[k], first[s][k])
    # One epoch (64 examples = 8 batches) visits every example exactly once.
    epoch = np.concatenate([b["encoder_input_tokens"] for b in first[:8]])
    rows = {tuple(r) for r in data._arrays["encoder_input_tokens"].astype(np.int32)}
    assert {tuple(r) for r in epoch} == rows and len(epoch) == 64
    other = input_pipeline.TrainData(st.TASK, st.LENGTHS, batch_size=8, seed=4)
    assert not np.array_equal(other.batch(0)["encoder_input_tokens"], first[0]["encoder_input_tokens"])


def test_partition_spec_rules_and_fallback():
    class FakeMesh:
        shape = {"data": 4, "model": 2}

    rules = partitioning.logical_axis_rules()
    assert partitioning._spec(("embed", "mlp"), (32, 64), FakeMesh, rules) == jax.sharding.PartitionSpec(None, "model")
    assert partitioning._spec(("vocab", "embed"), (320, 32), FakeMesh, rules) == jax.sharding.PartitionSpec("model", None)
    # 3 heads do not split over 2 devices: replicated instead of an error.
    assert partitioning._spec(("heads", "relpos_buckets"), (3, 8), FakeMesh, rules) == jax.sharding.PartitionSpec(None, None)
    assert partitioning._spec(("prompt", "embed"), (20, 32), FakeMesh, rules) == jax.sharding.PartitionSpec(None, None)
