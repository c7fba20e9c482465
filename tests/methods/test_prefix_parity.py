"""Prefix tuning against Hugging Face on the shared tiny T5X checkpoint (independent implementations).

1. PEFT's prefix tuning (PrefixTuningConfig, SEQ_2_SEQ_LM), direct and with its
   MLP (prefix_projection=True). On T5 PEFT prefixes only the decoder
   self-attention, and decoder layer i reads key block (4i mod 2L) and value
   block (4i+1 mod 2L) of its [P, 2 L N*D] output (see methods/prefix.py); the
   name tables below copy PEFT's parameters into `Prefix(sites=('decoder',))`
   accordingly, and the logits must agree.
2. The paper's definition (prefixes in encoder self-, decoder self- and
   cross-attention) by hand on transformers' T5: an attention function
   registered with transformers prepends the prefix keys / values, marks them
   visible and takes the position bias from HF's own `compute_bias` with the
   prefix as P past positions.

float32, padded batch, compared at real positions (max abs difference < 1e-4).
"""
import jax
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning import methods
from prompt_tuning.checkpoints import loading
from prompt_tuning.models import t5
from tests.methods import test_peft_parity as peft_parity
from tests.models import test_parity as parity

torch = pytest.importorskip("torch", reason="parity tests need torch: pip install -e .[parity] torch")
peft = pytest.importorskip("peft", reason="PEFT parity tests need peft: pip install -e .[parity]")
from transformers import masking_utils  # noqa: E402  (after the skip)
from transformers.models.t5 import modeling_t5  # noqa: E402

pytestmark = pytest.mark.parity
P, HIDDEN = 3, 5


def _setup(tiny_t5x_checkpoint, method):
    config = t5.get_config("tiny")
    frozen, _ = loading.load_params(tiny_t5x_checkpoint, config)
    frozen_flat = traverse_util.flatten_dict(frozen, sep="/")
    enc, dec_in, dec_t = parity.batch(np.random.default_rng(4), config.vocab_size, enc_len=20, dec_len=10)
    model = t5.T5(config, methods=(method,))
    shapes = traverse_util.flatten_dict(jax.eval_shape(lambda: model.init(
        jax.random.PRNGKey(0), enc[:1], dec_in[:1], dec_t[:1]))["params"], sep="/")
    own = {k: v.value.shape for k, v in shapes.items() if k not in frozen_flat}
    return config, frozen, frozen_flat, model, own, (enc, dec_in, dec_t)


def _peft_block(i, n_layers, which):
    """The block of PEFT's [P, 2 L N*D] prefix that decoder layer i reads as key (0) or value (1)."""
    return (4 * i + which) % (2 * n_layers)


def _ours_from_peft(peft_state, config, mlp):
    """Our Prefix(sites=('decoder',)) parameters from PEFT's prompt encoder (the name table)."""
    inner, n = config.num_heads * config.head_dim, config.num_decoder_layers
    blocks = lambda x: [x[..., b * inner:(b + 1) * inner] for b in range(2 * n)]
    if not mlp:
        emb = blocks(peft_state["prompt_encoder.default.embedding.weight"])
        return {f"decoder/layers_{i}/self_attention/prefix_{name}": emb[_peft_block(i, n, which)]
                for i in range(n) for which, name in enumerate(("key", "value"))}
    w2 = blocks(peft_state["prompt_encoder.default.transform.2.weight"].T)  # [h, 2 L N*D] as ours
    b2 = blocks(peft_state["prompt_encoder.default.transform.2.bias"])
    order = [_peft_block(i, n, which) for i in range(n) for which in (0, 1)]  # our block 2i + which
    return {
        "decoder/prefix_mlp/embedding": peft_state["prompt_encoder.default.embedding.weight"],
        "decoder/prefix_mlp/hidden/kernel": peft_state["prompt_encoder.default.transform.0.weight"].T,
        "decoder/prefix_mlp/hidden/bias": peft_state["prompt_encoder.default.transform.0.bias"],
        "decoder/prefix_mlp/out/kernel": np.concatenate([w2[b] for b in order], axis=-1),
        "decoder/prefix_mlp/out/bias": np.concatenate([b2[b] for b in order], axis=-1),
    }


def _run_peft_prefix(wrapped, enc, dec_in, dec_t):
    with torch.no_grad():
        out = wrapped(input_ids=torch.from_numpy(enc).long(), attention_mask=torch.from_numpy(enc > 0).long(),
                      decoder_input_ids=torch.from_numpy(dec_in).long(),
                      decoder_attention_mask=torch.from_numpy(dec_t > 0).long())
        encoded = wrapped.base_model.encoder(input_ids=torch.from_numpy(enc).long(),
                                             attention_mask=torch.from_numpy(enc > 0).long()).last_hidden_state
    return encoded.numpy(), enc > 0, out.logits.numpy()


@pytest.mark.parametrize("mlp", [False, True], ids=["direct", "mlp"])
def test_decoder_prefix_matches_peft_prefix_tuning(mlp, tiny_t5x_checkpoint):
    method = methods.Prefix(length=P, sites=("decoder",), mlp_hidden=HIDDEN if mlp else None)
    config, frozen, frozen_flat, model, own, (enc, dec_in, dec_t) = _setup(tiny_t5x_checkpoint, method)
    hf = parity.hf_model(frozen_flat, config)
    wrapped = peft.get_peft_model(hf, peft.PrefixTuningConfig(
        task_type="SEQ_2_SEQ_LM", num_virtual_tokens=P, prefix_projection=mlp, encoder_hidden_size=HIDDEN)).eval()
    rng = np.random.default_rng(6)
    with torch.no_grad():  # random values of a visible size (PEFT's own init would do too)
        for name, tensor in wrapped.prompt_encoder.default.named_parameters():
            tensor.copy_(torch.from_numpy(rng.normal(size=tuple(tensor.shape)).astype(np.float32)))
    peft_state = {k: v.numpy() for k, v in wrapped.state_dict().items() if k.startswith("prompt_encoder.")}
    values = {k: np.asarray(v, np.float32) for k, v in _ours_from_peft(peft_state, config, mlp).items()}
    assert {k: v.shape for k, v in values.items()} == own, "the name table covers exactly the method's parameters"
    params = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in {**frozen_flat, **values}.items()})
    ours = peft_parity._run_ours(model, params, enc, dec_in, dec_t)
    theirs = _run_peft_prefix(wrapped, enc, dec_in, dec_t)
    enc_diff, logit_diff = parity.assert_parity(ours, theirs, dec_t)
    plain = peft_parity._run_ours(t5.T5(config), frozen, enc, dec_in, dec_t)
    assert np.abs(plain[2] - ours[2])[dec_t > 0].max() > 100 * parity.ATOL
    print(f"prefix ({'mlp' if mlp else 'direct'}) vs PEFT: encoder {enc_diff:.2e}, logits {logit_diff:.2e}")


HF_SITES = {  # our attention -> transformers' module, per layer i
    "encoder": ("encoder/layers_{i}/attention", "encoder.block.{i}.layer.0.SelfAttention"),
    "decoder": ("decoder/layers_{i}/self_attention", "decoder.block.{i}.layer.0.SelfAttention"),
    "cross": ("decoder/layers_{i}/encoder_decoder_attention", "decoder.block.{i}.layer.1.EncDecAttention"),
}


def _prefixed_attention(prefixes):
    """An attention function for transformers' T5 that inserts `prefixes[id(module)]` by hand."""
    def attend(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_bias=None, **kw):
        if id(module) not in prefixes:
            return modeling_t5.eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout,
                                                       position_bias, **kw)
        k_prefix, v_prefix, bias_module = prefixes[id(module)]  # [1, N, P, D]
        b, p = key.shape[0], k_prefix.shape[2]
        key = torch.cat([k_prefix.expand(b, -1, -1, -1), key], dim=2)
        value = torch.cat([v_prefix.expand(b, -1, -1, -1), value], dim=2)
        if attention_mask is not None:
            attention_mask = torch.cat([torch.zeros(attention_mask.shape[:-1] + (p,)), attention_mask], dim=-1)
        if bias_module is not None:  # self-attention: HF's bias with the prefix as P past positions
            position_bias = bias_module.compute_bias(query.shape[2], key.shape[2], past_seen_tokens=p)
        else:  # cross-attention: T5 has no position bias there (HF passes zeros)
            position_bias = torch.zeros(position_bias.shape[:-1] + (key.shape[2],))
        return modeling_t5.eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout,
                                                   position_bias, **kw)
    return attend


def test_the_papers_three_sites_match_prefixes_inserted_by_hand_in_transformers(tiny_t5x_checkpoint):
    method = methods.Prefix(length=P)
    config, frozen, frozen_flat, model, own, (enc, dec_in, dec_t) = _setup(tiny_t5x_checkpoint, method)
    rng = np.random.default_rng(8)
    values = {k: rng.normal(size=s).astype(np.float32) for k, s in own.items()}
    params = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in {**frozen_flat, **values}.items()})
    ours = peft_parity._run_ours(model, params, enc, dec_in, dec_t)

    hf = parity.hf_model(frozen_flat, config)
    modules = dict(hf.named_modules())
    n, d = config.num_heads, config.head_dim
    to_hf = lambda x: torch.from_numpy(x.reshape(P, n, d).transpose(1, 0, 2)[None].copy())
    prefixes, covered = {}, set()
    for kind, (ours_name, hf_name) in HF_SITES.items():
        layers = config.num_encoder_layers if kind == "encoder" else config.num_decoder_layers
        for i in range(layers):
            o = ours_name.format(i=i)
            bias_module = None if kind == "cross" else modules[hf_name.format(i=0)]
            prefixes[id(modules[hf_name.format(i=i)])] = (
                to_hf(values[f"{o}/prefix_key"]), to_hf(values[f"{o}/prefix_value"]), bias_module)
            covered |= {f"{o}/prefix_key", f"{o}/prefix_value"}
    assert covered == set(own)
    modeling_t5.ALL_ATTENTION_FUNCTIONS.register("prefix_by_hand", _prefixed_attention(prefixes))
    masking_utils.ALL_MASK_ATTENTION_FUNCTIONS.register("prefix_by_hand", masking_utils.eager_mask)  # additive masks
    hf.set_attn_implementation("prefix_by_hand")
    theirs = parity.run_hf(hf, enc, dec_in, dec_t)
    enc_diff, logit_diff = parity.assert_parity(ours, theirs, dec_t)
    plain = peft_parity._run_ours(t5.T5(config), frozen, enc, dec_in, dec_t)
    assert np.abs(plain[0] - ours[0])[ours[1]].max() > 100 * parity.ATOL  # the encoder prefixes act
    assert np.abs(plain[2] - ours[2])[dec_t > 0].max() > 100 * parity.ATOL
    print(f"prefix (paper's sites) vs by hand in transformers: encoder {enc_diff:.2e}, logits {logit_diff:.2e}")
