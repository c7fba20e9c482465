"""P-tuning attached to a frozen T5 (methods/ptuning.py), MLP and LSTM prompt encoders.

It adds exactly its own parameters; training steps leave every frozen array
bit-identical, update every encoder array and lower the loss; the compiled step
forms no gradient for a frozen weight; cached greedy decoding equals
recomputation; the exported prompt (the encoder dropped) served by plain prompt
tuning gives the same logits. Parity with PEFT: test_ptuning_parity.py.
"""
import functools

import jax
import numpy as np
import pytest

from benchmarks import hlo
from prompt_tuning import methods, prompts
from prompt_tuning.models import t5
from prompt_tuning.training import trainer
from tests.methods import delta_training
from tests.methods import test_methods as tm

P, HIDDEN = 5, 6
VARIANTS = {"mlp": methods.PTuning(P, HIDDEN, "mlp"), "lstm": methods.PTuning(P, HIDDEN, "lstm")}
C = tm.CONFIG
H = C.emb_dim
EXPECTED = {  # parameters the prompt encoder adds
    "mlp": P * H + (H + 1) * HIDDEN + (HIDDEN + 1) * HIDDEN + (HIDDEN + 1) * H,
    "lstm": P * H + 2 * ((H + HIDDEN + 1) * 4 * HIDDEN) + 2 * ((2 * HIDDEN + HIDDEN + 1) * 4 * HIDDEN)
            + (2 * HIDDEN + 1) * 2 * HIDDEN + (2 * HIDDEN + 1) * H,
}


@functools.lru_cache(maxsize=None)
def _params(name):
    return tm._init(t5.T5(C, methods=(VARIANTS[name],)))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_adds_only_its_encoder_and_prepends_p_positions(name):
    model, params = _params(name)
    trainable, frozen = trainer.split_params(params, methods.PTuning.TRAINABLE_REGEX)
    assert sum(v.size for v in tm._flat(trainable).values()) == EXPECTED[name]
    assert set(tm._flat(frozen)) == tm._plain_keys()
    b = tm._batch()
    encoded, mask = model.apply({"params": params}, b["encoder_input_tokens"], method=t5.T5.encode)
    assert encoded.shape[1] == P + tm.T and np.asarray(mask[:, :P]).all()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_training_changes_only_the_encoder_and_lowers_the_loss(name):
    model, params = _params(name)
    batch = tm._batch()
    # Measured: the LSTM encoder plateaus near 4.42 from 5.23 (0.85) in 30 steps at this rate.
    step, state, frozen = delta_training.train_only_the_delta(model, params, methods.PTuning.TRAINABLE_REGEX, batch,
                                                              lr=3e-2, loss_ratio=0.9)
    text = step.lower(state, frozen, batch, jax.random.PRNGKey(0)).compile().as_text()
    weights = list(hlo.kernel_shapes(frozen).values())
    assert hlo.ambiguous_dims(weights, [tm.B * tm.T, tm.B * tm.L, tm.B * (P + tm.T), P + tm.T, P, HIDDEN]) == set()
    assert hlo.weight_gradient_ops(text, weights) == []
    assert any(op.backward for op in hlo.matmul_ops(text))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_cached_decoding_and_the_exported_prompt_give_the_same_outputs(name):
    model, params = _params(name)
    params = tm._assert_cached_decoding_matches_recompute(model, tm._flat(params))
    flat = tm._flat(params)
    # Export: the produced prompt [P, H] as a plain prompt; the encoder is dropped.
    prompt = VARIANTS[name].prompt(params, H)
    assert prompt.shape == (P, H)
    plain = {k: v for k, v in flat.items() if not k.startswith("encoder/p_tuning/")}
    plain["encoder/prompt/prompt"] = prompt
    plain_model = t5.T5(C, functools.partial(prompts.Prompt, length=P, prompt_init=prompts.from_array(prompt)))
    batch = tm._batch()
    ours = tm._logits(model, params, batch)
    theirs = tm._logits(plain_model, tm._unflat(plain), batch)
    assert np.abs(ours - theirs).max() < 1e-5, np.abs(ours - theirs).max()


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="P-tuning length must be a positive int"):
        methods.PTuning(length=0)
    with pytest.raises(ValueError, match="P-tuning encoder must be one of"):
        methods.PTuning(encoder="gru")
