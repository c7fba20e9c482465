"""Each method's trainable parameters counted from its module tree equal the closed form, at the five
T5 1.1 sizes (abstract shapes, nothing allocated)."""
import pytest

from prompt_tuning import methods
from prompt_tuning.methods import counts
from prompt_tuning.models import t5


def closed_form(c: t5.T5Config, name: str) -> int:
    h, d, f, le, ld = c.emb_dim, c.num_heads * c.head_dim, c.mlp_dim, c.num_encoder_layers, c.num_decoder_layers
    attentions = le + 2 * ld
    if name == "lora":
        return 2 * attentions * 8 * (h + d)
    if name == "ia3":
        return 2 * attentions * d + (le + ld) * f
    if name == "adapters":
        return (2 * le + 3 * ld) * (2 * h * 64 + 64 + h)
    if name == "multitask_add":
        return (20 + 4 * 20) * h
    if name == "multitask_concat":
        return (10 + 4 * 20) * h
    if name == "prefix":
        return 2 * 20 * d * attentions
    return sum(20 * h + h * 512 + 512 + 513 * 2 * n * d for n in (le, ld, ld))  # prefix, MLP hidden 512


@pytest.mark.parametrize("size", ["small", "base", "large", "xl", "xxl"])
def test_counts_from_the_module_tree_equal_the_closed_forms(size):
    c = t5.get_config(size)
    for name, method in {"lora": methods.LoRA(rank=8), "ia3": methods.IA3(), "adapters": methods.Adapters(64),
                         "prefix": methods.Prefix(20), "prefix_mlp": methods.Prefix(20, mlp_hidden=512),
                         "multitask_add": methods.MultiTaskPrompt(num_tasks=4, length=20),
                         "multitask_concat": methods.MultiTaskPrompt(num_tasks=4, length=20, combine="concat",
                                                                     shared_length=10)}.items():
        assert counts.trainable_parameters(c, method) == closed_form(c, name), (size, name)


def test_known_values_at_base():
    # T5 1.1 base: H = d = 768, F = 2048, 12 + 12 layers (A = 36 attentions).
    c = t5.get_config("base")
    assert counts.trainable_parameters(c, methods.LoRA(rank=8)) == 2 * 36 * 8 * 1536 == 884_736
    assert counts.trainable_parameters(c, methods.IA3()) == 2 * 36 * 768 + 24 * 2048 == 104_448
