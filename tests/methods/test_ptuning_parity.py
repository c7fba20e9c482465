"""P-tuning against PEFT's PromptEncoder (an independent implementation).

1. The prompt encoder alone, MLP and LSTM: PEFT's `PromptEncoder` (one transformer
   submodule, so it encodes exactly P positions) and ours, with PEFT's parameters
   copied through the name table below, produce the same prompt [P, H].
2. The whole model, MLP: PEFT's P-tuning (PromptEncoderConfig, SEQ_2_SEQ_LM) on the
   shared tiny T5X checkpoint against `T5(config, methods=(PTuning(...),))`, logits of
   a padded batch. PEFT's seq2seq model encodes 2P positions and uses the first P;
   the MLP treats positions independently, so copying the first P rows of its
   embedding is exact. (Its LSTM reads all 2P positions, which no P-position prompt
   encoder reproduces: the LSTM is checked at module level only.)

float32, max abs difference < 1e-5 (prompts) and < 1e-4 (logits at real positions).
"""
import jax
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning import methods
from prompt_tuning.checkpoints import loading
from prompt_tuning.methods import ptuning
from prompt_tuning.models import t5
from tests.methods import test_peft_parity as peft_parity
from tests.models import test_parity as parity

torch = pytest.importorskip("torch", reason="parity tests need torch: pip install -e .[parity] torch")
peft = pytest.importorskip("peft", reason="PEFT parity tests need peft: pip install -e .[parity]")

pytestmark = pytest.mark.parity
P, HIDDEN, H = 4, 6, 8


def name_table(encoder, peft_state):
    """Our PromptEncoder tree from PEFT's state dict (torch Linear stores [out, in]; LSTM biases are summed)."""
    flat = {"embedding": peft_state["embedding.weight"]}
    linears = [0, 2, 4] if encoder == "mlp" else [0, 2]
    for i, index in enumerate(linears):
        flat[f"mlp/dense_{i}/kernel"] = peft_state[f"mlp_head.{index}.weight"].T
        flat[f"mlp/dense_{i}/bias"] = peft_state[f"mlp_head.{index}.bias"]
    if encoder == "lstm":
        for layer in range(2):
            for direction, suffix in (("fwd", ""), ("bwd", "_reverse")):
                ours, theirs = f"lstm/l{layer}_{direction}", f"l{layer}{suffix}"
                flat[f"{ours}/w_ih"] = peft_state[f"lstm_head.weight_ih_{theirs}"].T
                flat[f"{ours}/w_hh"] = peft_state[f"lstm_head.weight_hh_{theirs}"].T
                flat[f"{ours}/bias"] = peft_state[f"lstm_head.bias_ih_{theirs}"] + peft_state[f"lstm_head.bias_hh_{theirs}"]
    return flat


def _peft_encoder(encoder, hidden_size, emb_dim, length, submodules=1):
    config = peft.PromptEncoderConfig(
        task_type="SEQ_2_SEQ_LM", num_virtual_tokens=length, token_dim=emb_dim, num_transformer_submodules=submodules,
        num_attention_heads=1, num_layers=1, encoder_reparameterization_type=encoder.upper(),
        encoder_hidden_size=hidden_size)
    torch.manual_seed(0)
    return peft.tuners.p_tuning.PromptEncoder(config).eval()


@pytest.mark.parametrize("encoder", ["mlp", "lstm"])
def test_prompt_encoder_matches_peft(encoder):
    theirs_module = _peft_encoder(encoder, HIDDEN, H, P)
    state = {k: v.detach().numpy() for k, v in theirs_module.state_dict().items()}
    ours_flat = name_table(encoder, state)
    module = ptuning.PromptEncoder(P, HIDDEN, encoder)
    shapes = traverse_util.flatten_dict(jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), H))["params"], sep="/")
    assert {k: v.value.shape for k, v in shapes.items()} == {k: v.shape for k, v in ours_flat.items()}
    with torch.no_grad():
        theirs = theirs_module(torch.arange(P)[None])[0].numpy()
    ours = np.asarray(module.apply({"params": traverse_util.unflatten_dict(
        {tuple(k.split("/")): v for k, v in ours_flat.items()})}, H))
    diff = np.abs(ours - theirs).max()
    assert diff < 1e-5 and np.abs(theirs).std() > 0.05, (diff, np.abs(theirs).std())
    print(f"P-tuning {encoder} prompt encoder vs PEFT: max abs diff {diff:.2e}")


def test_p_tuning_mlp_on_tiny_t5x_checkpoint_matches_peft(tiny_t5x_checkpoint):
    config = t5.get_config("tiny")
    frozen, _ = loading.load_params(tiny_t5x_checkpoint, config)
    frozen_flat = traverse_util.flatten_dict(frozen, sep="/")
    hf = parity.hf_model(frozen_flat, config)
    wrapped = peft.get_peft_model(hf, peft.PromptEncoderConfig(
        task_type="SEQ_2_SEQ_LM", num_virtual_tokens=P, encoder_hidden_size=HIDDEN,
        encoder_reparameterization_type="MLP")).eval()
    state = {k[len("prompt_encoder.default."):]: v.detach().numpy() for k, v in wrapped.state_dict().items()
             if k.startswith("prompt_encoder.default.")}
    assert state["embedding.weight"].shape == (2 * P, config.emb_dim)  # PEFT's 2P rows for seq2seq
    state["embedding.weight"] = state["embedding.weight"][:P]
    ours_tree = {f"encoder/p_tuning/{k}": v for k, v in name_table("mlp", state).items()}
    method = methods.PTuning(length=P, hidden=HIDDEN)
    model = t5.T5(config, methods=(method,))
    enc, dec_in, dec_t = parity.batch(np.random.default_rng(4), config.vocab_size, enc_len=20, dec_len=10)
    shapes = traverse_util.flatten_dict(jax.eval_shape(lambda: model.init(
        jax.random.PRNGKey(0), enc[:1], dec_in[:1], dec_t[:1]))["params"], sep="/")
    assert {k for k in shapes if k not in frozen_flat} == set(ours_tree)
    params = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in {**frozen_flat, **ours_tree}.items()})
    ours = peft_parity._run_ours(model, params, enc, dec_in, dec_t)
    with torch.no_grad():
        out = wrapped(input_ids=torch.from_numpy(enc).long(), attention_mask=torch.from_numpy(enc > 0).long(),
                      decoder_input_ids=torch.from_numpy(dec_in).long(),
                      decoder_attention_mask=torch.from_numpy(dec_t > 0).long())
        prompt = wrapped.get_prompt(batch_size=1)[0, :P].numpy()
    theirs = parity.run_hf(hf, enc, dec_in, dec_t, prompt=prompt)  # PEFT's prompt through the plain HF model
    enc_diff, logit_diff = parity.assert_parity(ours, theirs, dec_t)
    peft_diff = np.abs(ours[2] - out.logits.numpy())[dec_t > 0].max()
    assert peft_diff < parity.ATOL, peft_diff
    np.testing.assert_allclose(method.prompt(params, config.emb_dim), prompt, atol=1e-6)
    print(f"P-tuning (MLP) vs PEFT: encoder {enc_diff:.2e}, logits {logit_diff:.2e}, PEFT's own forward {peft_diff:.2e}")
