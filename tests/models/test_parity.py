"""Numerical parity with Hugging Face transformers' PyTorch T5 (an independent implementation).

The weights reach transformers through a T5X -> HF table written here, not
through prompt_tuning/checkpoints/huggingface.py, so a mapping bug there cannot
cancel out; one extra test then checks that module's export against
`from_pretrained`. Everything runs in float32 with dropout off; outputs are
compared at real (unpadded) positions only.
"""
import functools
import json

import jax
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning import prompts
from prompt_tuning.checkpoints import huggingface, loading
from prompt_tuning.models import t5

torch = pytest.importorskip("torch", reason="parity tests need torch: pip install -e .[parity] torch")
transformers = pytest.importorskip("transformers", reason="parity tests need transformers: pip install -e .[parity]")

pytestmark = pytest.mark.parity
ATOL = 1e-4

# A non-trivial size: inner width N*D = 48 differs from H = 64; 8 buckets with max
# distance 32 and inputs longer than 32, so the log-spaced and clipped buckets are used.
MID = t5.T5Config(
    vocab_size=128, emb_dim=64, num_heads=4, head_dim=12, mlp_dim=128, num_encoder_layers=2,
    num_decoder_layers=2, relative_attention_num_buckets=8, relative_attention_max_distance=32,
)


def hf_state_dict(flat, c):
    """T5X-named arrays -> transformers T5ForConditionalGeneration state dict (torch Linear is [out, in])."""
    sd = {
        "shared.weight": flat["token_embedder/embedding"],
        "lm_head.weight": flat["decoder/logits_dense/kernel"].T,
        "encoder.final_layer_norm.weight": flat["encoder/encoder_norm/scale"],
        "decoder.final_layer_norm.weight": flat["decoder/decoder_norm/scale"],
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": flat["encoder/relpos_bias/rel_embedding"].T,
        "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": flat["decoder/relpos_bias/rel_embedding"].T,
    }

    def attn(hf, ours):
        for a, b in zip("qkvo", ("query", "key", "value", "out")):
            sd[f"{hf}.{a}.weight"] = flat[f"{ours}/{b}/kernel"].T

    def mlp(hf, ours):
        for name in ("wi_0", "wi_1", "wo"):
            sd[f"{hf}.{name}.weight"] = flat[f"{ours}/{name}/kernel"].T

    for i in range(c.num_encoder_layers):
        hf, ours = f"encoder.block.{i}.layer", f"encoder/layers_{i}"
        attn(f"{hf}.0.SelfAttention", f"{ours}/attention")
        sd[f"{hf}.0.layer_norm.weight"] = flat[f"{ours}/pre_attention_layer_norm/scale"]
        mlp(f"{hf}.1.DenseReluDense", f"{ours}/mlp")
        sd[f"{hf}.1.layer_norm.weight"] = flat[f"{ours}/pre_mlp_layer_norm/scale"]
    for i in range(c.num_decoder_layers):
        hf, ours = f"decoder.block.{i}.layer", f"decoder/layers_{i}"
        attn(f"{hf}.0.SelfAttention", f"{ours}/self_attention")
        sd[f"{hf}.0.layer_norm.weight"] = flat[f"{ours}/pre_self_attention_layer_norm/scale"]
        attn(f"{hf}.1.EncDecAttention", f"{ours}/encoder_decoder_attention")
        sd[f"{hf}.1.layer_norm.weight"] = flat[f"{ours}/pre_cross_attention_layer_norm/scale"]
        mlp(f"{hf}.2.DenseReluDense", f"{ours}/mlp")
        sd[f"{hf}.2.layer_norm.weight"] = flat[f"{ours}/pre_mlp_layer_norm/scale"]
    assert len(sd) == len(flat), "every T5X array is mapped exactly once"
    return {k: torch.from_numpy(np.array(v, np.float32)) for k, v in sd.items()}


def hf_config(c):
    return transformers.T5Config(
        vocab_size=c.vocab_size, d_model=c.emb_dim, d_kv=c.head_dim, d_ff=c.mlp_dim,
        num_layers=c.num_encoder_layers, num_decoder_layers=c.num_decoder_layers, num_heads=c.num_heads,
        relative_attention_num_buckets=c.relative_attention_num_buckets,
        relative_attention_max_distance=c.relative_attention_max_distance,
        dropout_rate=0.0, layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )


def assert_untied(model, sd=None):
    """T5 1.1 has its own logits matrix and no d_model**-0.5 output rescaling.

    transformers 5 forces config.tie_word_embeddings=True for T5 and ties lm_head to
    `shared` at construction; `tie_word_embeddings=False` only switches off the rescaling.
    """
    assert getattr(model.config, "scale_decoder_outputs", False) is False
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    if sd is not None:
        assert torch.equal(model.lm_head.weight, sd["lm_head.weight"])
        assert torch.equal(model.shared.weight, sd["shared.weight"])


def hf_model(flat, c):
    sd = hf_state_dict(flat, c)
    model = transformers.T5ForConditionalGeneration(hf_config(c)).eval()
    model.lm_head.weight = torch.nn.Parameter(torch.empty_like(sd["lm_head.weight"]))  # untie
    result = model.load_state_dict(sd, strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) <= {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
    assert model.encoder.embed_tokens.weight.data_ptr() == model.shared.weight.data_ptr()
    assert_untied(model, sd)
    return model


def batch(rng, vocab, b=3, enc_len=40, dec_len=12):
    """Token ids with right padding of various lengths (row 0 unpadded); decoder inputs shifted targets."""
    enc = rng.integers(2, vocab, size=(b, enc_len))
    dec_t = rng.integers(2, vocab, size=(b, dec_len))
    for row, (n_enc, n_dec) in enumerate([(enc_len, dec_len), (enc_len - 13, dec_len - 4), (5, 3)][:b]):
        enc[row, n_enc:] = 0
        dec_t[row, n_dec - 1] = 1  # EOS
        dec_t[row, n_dec:] = 0
    dec_in = np.concatenate([np.zeros((b, 1), dec_t.dtype), dec_t[:, :-1]], axis=1)
    return enc.astype(np.int32), dec_in.astype(np.int32), dec_t.astype(np.int32)


def run_ours(params, c, enc, dec_in, dec_t, prompt_factory=None):
    model = t5.T5(c, prompt_factory)

    @jax.jit  # one compile is several times faster than op-by-op dispatch here
    def forward(params, enc, dec_in, dec_t):
        variables = {"params": params}
        encoded, mask = model.apply(variables, enc, method=t5.T5.encode)
        return encoded, mask, model.apply(variables, enc, dec_in, dec_t)

    return tuple(np.asarray(x) for x in forward(params, enc, dec_in, dec_t))


def run_hf(model, enc, dec_in, dec_t, prompt=None):
    enc_t, mask = torch.from_numpy(enc).long(), torch.from_numpy(enc > 0).long()
    kwargs = {"input_ids": enc_t}
    if prompt is not None:  # the prompt as a prefix of the input embeddings, always visible
        embedded = model.shared(enc_t)
        p = torch.from_numpy(prompt)[None].expand(enc.shape[0], -1, -1)
        kwargs = {"inputs_embeds": torch.cat([p, embedded], dim=1)}
        mask = torch.cat([torch.ones(enc.shape[0], prompt.shape[0], dtype=torch.long), mask], dim=1)
    with torch.no_grad():
        encoded = model.encoder(attention_mask=mask, **kwargs).last_hidden_state
        logits = model(attention_mask=mask, decoder_input_ids=torch.from_numpy(dec_in).long(),
                       decoder_attention_mask=torch.from_numpy(dec_t > 0).long(), **kwargs).logits
    return encoded.numpy(), mask.numpy().astype(bool), logits.numpy()


def assert_parity(ours, theirs, dec_t):
    (enc_o, mask_o, logits_o), (enc_h, mask_h, logits_h) = ours, theirs
    np.testing.assert_array_equal(mask_o, mask_h)
    assert enc_o.shape == enc_h.shape and logits_o.shape == logits_h.shape
    enc_diff = np.abs(enc_o - enc_h)[mask_o].max()
    logit_diff = np.abs(logits_o - logits_h)[dec_t > 0].max()
    assert enc_diff < ATOL, f"encoder max abs diff {enc_diff}"
    assert logit_diff < ATOL, f"logits max abs diff {logit_diff}"
    # Guard against vacuous agreement (e.g. everything zero).
    assert np.abs(enc_o[mask_o]).mean() > 0.1 and np.abs(logits_o[dec_t > 0]).std() > 0.1
    return enc_diff, logit_diff


def random_params(c, seed, prompt_length=0):
    """Random values for every parameter, layer-norm scales away from 1 so a swapped norm shows."""
    rng = np.random.default_rng(seed)
    flat = {}
    for name, shape in loading.abstract_param_shapes(c).items():
        if name.endswith("/scale"):
            value = 1.0 + 0.3 * rng.normal(size=shape)
        elif name.endswith("rel_embedding") or name == "token_embedder/embedding":
            value = rng.normal(size=shape)
        else:
            value = rng.normal(size=shape) / np.sqrt(shape[0])
        flat[name] = value.astype(np.float32)
    if prompt_length:
        flat["encoder/prompt/prompt"] = rng.uniform(-0.5, 0.5, size=(prompt_length, c.emb_dim)).astype(np.float32)
    return flat


def test_tiny_t5x_checkpoint_matches_transformers(tiny_t5x_checkpoint):
    config = t5.get_config("tiny")
    params, _ = loading.load_params(tiny_t5x_checkpoint, config)
    flat = traverse_util.flatten_dict(params, sep="/")
    enc, dec_in, dec_t = batch(np.random.default_rng(0), config.vocab_size, enc_len=20, dec_len=10)
    assert_parity(run_ours(params, config, enc, dec_in, dec_t), run_hf(hf_model(flat, config), enc, dec_in, dec_t), dec_t)


def test_random_weights_mid_size_matches_transformers():
    flat = random_params(MID, seed=1)
    params = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})
    enc, dec_in, dec_t = batch(np.random.default_rng(1), MID.vocab_size)
    assert_parity(run_ours(params, MID, enc, dec_in, dec_t), run_hf(hf_model(flat, MID), enc, dec_in, dec_t), dec_t)


def test_prompted_encoder_matches_transformers_on_prefixed_embeddings():
    # Our prompt path == transformers run on inputs_embeds = [prompt; embed(tokens)] with the prompt visible.
    length = 5
    flat = random_params(MID, seed=2, prompt_length=length)
    prompt = flat.pop("encoder/prompt/prompt")
    params = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})
    params["encoder"]["prompt"] = {"prompt": prompt}
    factory = functools.partial(prompts.Prompt, length=length)
    enc, dec_in, dec_t = batch(np.random.default_rng(2), MID.vocab_size, enc_len=36)
    ours = run_ours(params, MID, enc, dec_in, dec_t, factory)
    assert ours[0].shape[1] == length + enc.shape[1]
    assert_parity(ours, run_hf(hf_model(flat, MID), enc, dec_in, dec_t, prompt=prompt), dec_t)


def test_exported_checkpoint_loads_in_transformers(tmp_path):
    # huggingface.save + config_to_hf, checked against transformers' own from_pretrained.
    flat = random_params(MID, seed=3)
    params = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})
    huggingface.save(str(tmp_path), params, MID)
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is False
    model = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
    assert_untied(model)
    enc, dec_in, dec_t = batch(np.random.default_rng(3), MID.vocab_size)
    assert_parity(run_ours(params, MID, enc, dec_in, dec_t), run_hf(model, enc, dec_in, dec_t), dec_t)
