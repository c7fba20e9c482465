"""LoRA exported in Hugging Face PEFT's adapter format (methods.export.peft_lora_adapter).

`peft.PeftModel.from_pretrained` loads the written directory onto transformers' T5
holding the shared tiny T5X checkpoint (built through the independent name table of
tests/models/test_parity.py); its logits on a padded batch equal ours with the same
LoRA arrays (float32, max abs difference < 1e-4), every adapted module got its
arrays, and a LoRA restricted to the encoder exports only the encoder's modules.
"""
import json
import os

import jax
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning import methods
from prompt_tuning.checkpoints import loading
from prompt_tuning.methods import export
from prompt_tuning.models import t5
from tests.methods import test_peft_parity as peft_parity
from tests.models import test_parity as parity

torch = pytest.importorskip("torch", reason="parity tests need torch: pip install -e .[parity] torch")
peft = pytest.importorskip("peft", reason="PEFT parity tests need peft: pip install -e .[parity]")

pytestmark = pytest.mark.parity


@pytest.mark.parametrize("targets", ["default", "encoder_query"])
def test_peft_loads_the_exported_adapter_and_reproduces_the_logits(targets, tiny_t5x_checkpoint, tmp_path):
    config = t5.get_config("tiny")
    lora = (methods.LoRA(rank=2, alpha=6.0) if targets == "default"
            else methods.LoRA(rank=2, alpha=6.0, targets=r"encoder/layers_\d+/attention/query"))
    frozen, _ = loading.load_params(tiny_t5x_checkpoint, config)
    frozen_flat = traverse_util.flatten_dict(frozen, sep="/")
    model = t5.T5(config, methods=(lora,))
    enc, dec_in, dec_t = parity.batch(np.random.default_rng(4), config.vocab_size, enc_len=20, dec_len=10)
    shapes = traverse_util.flatten_dict(jax.eval_shape(lambda: model.init(
        jax.random.PRNGKey(0), enc[:1], dec_in[:1], dec_t[:1]))["params"], sep="/")
    rng = np.random.default_rng(5)
    values = {k: rng.normal(size=v.value.shape).astype(np.float32) for k, v in shapes.items() if k not in frozen_flat}
    params = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in {**frozen_flat, **values}.items()})
    ours = peft_parity._run_ours(model, params, enc, dec_in, dec_t)

    written = export.peft_lora_adapter(str(tmp_path), params, lora, base_model_name_or_path="t5x_t5_1_1_tiny")
    assert len(written) == len(values)
    with open(tmp_path / "adapter_config.json") as f:
        assert json.load(f)["r"] == 2
    assert os.path.exists(tmp_path / "adapter_model.safetensors")
    hf = parity.hf_model(frozen_flat, config)
    loaded = peft.PeftModel.from_pretrained(hf, str(tmp_path)).eval()
    base = loaded.base_model.model
    state = base.state_dict()
    lora_keys = {k for k in state if ".lora_" in k}
    assert len(lora_keys) == len(values)  # exactly the exported modules were adapted
    for key, tensor in written.items():  # and hold the exported arrays
        np.testing.assert_array_equal(state[key.replace("base_model.model.", "").replace(".weight", ".default.weight")]
                                      .numpy(), tensor)
    theirs = parity.run_hf(base, enc, dec_in, dec_t)
    enc_diff, logit_diff = parity.assert_parity(ours, theirs, dec_t)
    plain = peft_parity._run_ours(t5.T5(config), frozen, enc, dec_in, dec_t)
    assert np.abs(plain[2] - ours[2])[dec_t > 0].max() > 100 * parity.ATOL
    print(f"LoRA ({targets}) exported to PEFT: encoder {enc_diff:.2e}, logits {logit_diff:.2e}")


def test_export_without_lora_arrays_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no LoRA arrays"):
        export.peft_lora_adapter(str(tmp_path), {"encoder": {"x": np.zeros(2)}}, methods.LoRA())
