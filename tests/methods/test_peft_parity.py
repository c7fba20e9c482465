"""LoRA and IA3 against Hugging Face PEFT on the shared tiny T5X checkpoint (an independent implementation).

The real T5X tiny checkpoint is loaded into this model and into transformers'
T5 (through the independent T5X -> HF name table of tests/models/test_parity.py),
PEFT wraps the latter (LoraConfig / IA3Config with T5's default targets), and
the method's parameters, drawn at random so that they matter, are copied across
through the name table below. Encoder outputs and logits are compared in
float32 at real positions of a padded batch (max abs difference < 1e-4).

Definitions: PEFT's LoRA on T5 (`target_modules=['q', 'v']`, scaling
lora_alpha / r) is the paper's; PEFT's IA3 on T5 (`['k', 'v', 'wo']`, `wo` as a
feed-forward module: its input is scaled) is T-Few's l_k, l_v, l_ff, as here.
"""
import jax
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning import methods
from prompt_tuning.checkpoints import loading
from prompt_tuning.models import t5
from tests.models import test_parity as parity

torch = pytest.importorskip("torch", reason="parity tests need torch: pip install -e .[parity] torch")
peft = pytest.importorskip("peft", reason="PEFT parity tests need peft: pip install -e .[parity]")

pytestmark = pytest.mark.parity

# Our attention module -> transformers' T5 attention module, per layer i.
ATTENTIONS = {
    "encoder/layers_{i}/attention": "encoder.block.{i}.layer.0.SelfAttention",
    "decoder/layers_{i}/self_attention": "decoder.block.{i}.layer.0.SelfAttention",
    "decoder/layers_{i}/encoder_decoder_attention": "decoder.block.{i}.layer.1.EncDecAttention",
}
MLPS = {"encoder/layers_{i}/mlp": "encoder.block.{i}.layer.1.DenseReluDense",
        "decoder/layers_{i}/mlp": "decoder.block.{i}.layer.2.DenseReluDense"}
PROJ = {"query": "q", "key": "k", "value": "v"}


def lora_table(c):
    """Our LoRA array -> (PEFT state-dict key, how to convert): A, B stored transposed in torch."""
    table = {}
    for i in range(c.num_encoder_layers):
        for ours, hf in ATTENTIONS.items():
            if ours.startswith("decoder") and i >= c.num_decoder_layers:
                continue
            for proj in ("query", "value"):
                o, h = f"{ours.format(i=i)}/{proj}", f"{hf.format(i=i)}.{PROJ[proj]}"
                table[f"{o}/lora_a"] = (f"{h}.lora_A.default.weight", np.transpose)
                table[f"{o}/lora_b"] = (f"{h}.lora_B.default.weight", np.transpose)
    return table


def ia3_table(c):
    """Our IA3 vector -> (PEFT key, reshape): k, v outputs are [out, 1], the wo input is [1, in]."""
    table = {}
    for i in range(c.num_encoder_layers):
        for ours, hf in ATTENTIONS.items():
            for proj in ("key", "value"):
                table[f"{ours.format(i=i)}/{proj}/ia3_scale"] = (
                    f"{hf.format(i=i)}.{PROJ[proj]}.ia3_l.default", lambda v: v.reshape(-1, 1))
        for ours, hf in MLPS.items():
            table[f"{ours.format(i=i)}/wo/ia3_scale"] = (f"{hf.format(i=i)}.wo.ia3_l.default", lambda v: v.reshape(1, -1))
    return table


CASES = {
    "lora": (methods.LoRA(rank=2, alpha=6.0), lambda: peft.LoraConfig(
        r=2, lora_alpha=6.0, target_modules=["q", "v"], lora_dropout=0.0, task_type="SEQ_2_SEQ_LM"), lora_table),
    "ia3": (methods.IA3(), lambda: peft.IA3Config(
        target_modules=["k", "v", "wo"], feedforward_modules=["wo"], task_type="SEQ_2_SEQ_LM"), ia3_table),
}


def _run_ours(model, params, enc, dec_in, dec_t):
    @jax.jit
    def forward(params, enc, dec_in, dec_t):
        variables = {"params": params}
        encoded, mask = model.apply(variables, enc, method=t5.T5.encode)
        return encoded, mask, model.apply(variables, enc, dec_in, dec_t)

    return tuple(np.asarray(x) for x in forward(params, enc, dec_in, dec_t))


@pytest.mark.parametrize("name", sorted(CASES))
def test_method_on_tiny_t5x_checkpoint_matches_peft(name, tiny_t5x_checkpoint):
    method, peft_config, table_of = CASES[name]
    config = t5.get_config("tiny")
    frozen, _ = loading.load_params(tiny_t5x_checkpoint, config)
    frozen_flat = traverse_util.flatten_dict(frozen, sep="/")
    table = table_of(config)
    # The method's parameters: every one mapped, random values so that the method changes the output.
    model = t5.T5(config, methods=(method,))
    enc, dec_in, dec_t = parity.batch(np.random.default_rng(4), config.vocab_size, enc_len=20, dec_len=10)
    shapes = traverse_util.flatten_dict(jax.eval_shape(lambda: model.init(
        jax.random.PRNGKey(0), enc[:1], dec_in[:1], dec_t[:1]))["params"], sep="/")
    own = {k: v.value.shape for k, v in shapes.items() if k not in frozen_flat}
    assert set(own) == set(table), "the name table covers exactly the method's parameters"
    rng = np.random.default_rng(5)
    values = {k: (1.0 + 0.5 * rng.normal(size=s) if name == "ia3" else rng.normal(size=s)).astype(np.float32)
              for k, s in own.items()}
    params = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in {**frozen_flat, **values}.items()})
    ours = _run_ours(model, params, enc, dec_in, dec_t)

    hf = parity.hf_model(frozen_flat, config)
    wrapped = peft.get_peft_model(hf, peft_config()).eval()
    base = wrapped.base_model.model
    method_keys = {k for k in base.state_dict() if ".lora_" in k or ".ia3_l" in k}
    assert method_keys == {hf_key for hf_key, _ in table.values()}
    result = base.load_state_dict(
        {hf_key: torch.from_numpy(np.ascontiguousarray(convert(values[k]))) for k, (hf_key, convert) in table.items()},
        strict=False)
    assert not result.unexpected_keys
    theirs = parity.run_hf(base, enc, dec_in, dec_t)
    enc_diff, logit_diff = parity.assert_parity(ours, theirs, dec_t)
    # Not vacuous: the method moves the logits by far more than the tolerance.
    plain = _run_ours(t5.T5(config), frozen, enc, dec_in, dec_t)
    assert np.abs(plain[2] - ours[2])[dec_t > 0].max() > 100 * parity.ATOL
    print(f"{name}: encoder max abs diff {enc_diff:.2e}, logits {logit_diff:.2e}")
