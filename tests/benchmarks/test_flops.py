"""The analytic matmul count (the compiled programs' own dot count is compared in test_train_bench.py)."""
import pytest

from benchmarks import flops
from prompt_tuning.models import t5

SMALL = t5.get_config("small")


def test_model_tuning_is_three_forwards():
    f = flops.step_flops(SMALL, flops.MODEL, batch=8, encoder_len=256, target_len=4)
    assert f["backward"] == 2 * f["forward"]


def test_prompt_tuning_needs_no_weight_gradients():
    pt = flops.step_flops(SMALL, flops.PROMPT, batch=8, encoder_len=356, target_len=4)
    mt = flops.step_flops(SMALL, flops.MODEL, batch=8, encoder_len=356, target_len=4)
    weight_grads = sum(m.weight_grad for m in flops.matmuls(SMALL, batch=8, encoder_len=356, target_len=4))
    assert pt["forward"] == mt["forward"]
    # Dropping the weight gradients and decoder layer 0's prompt-independent gradients:
    assert pt["backward"] < mt["backward"] - weight_grads
    # The ideal time ratio at equal shapes is not 2/3: attention's two activation operands both need gradients.
    assert 0.66 < pt["total"] / mt["total"] < 0.72


def test_forward_count_by_hand_for_one_layer():
    c = t5.get_config("test", num_encoder_layers=1, num_decoder_layers=1, vocab_size=100)
    b, s, l = 2, 7, 3
    h, nd, f, n, d = c.emb_dim, c.num_heads * c.head_dim, c.mlp_dim, c.num_heads, c.head_dim
    enc = 2 * b * s * (4 * h * nd + 3 * h * f) + 2 * 2 * b * n * s * s * d
    dec = 2 * b * l * (4 * h * nd + 3 * h * f) + 2 * 2 * b * n * l * l * d
    cross = 2 * b * l * 2 * h * nd + 2 * b * s * 2 * h * nd + 2 * 2 * b * n * l * s * d
    logits = 2 * b * l * h * 100
    got = flops.step_flops(c, flops.FORWARD, batch=b, encoder_len=s, target_len=l)
    assert got == {"forward": enc + dec + cross + logits, "backward": 0, "total": enc + dec + cross + logits}


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        flops.step_flops(SMALL, "lora", batch=1, encoder_len=1, target_len=1)
