"""Hugging Face T5 safetensors checkpoints: names, transposes, config.json, shards, export.

The HF side is written here from the transformers T5 state-dict layout, by
hand, so a mistake in huggingface.py's table cannot cancel out.
"""
import json

import numpy as np
import pytest
from flax import traverse_util
from safetensors import numpy as st_numpy

from prompt_tuning.checkpoints import huggingface, loading
from prompt_tuning.checkpoints.errors import CheckpointError
from prompt_tuning.models import t5

# Every dimension distinct, so a missed transpose is also a shape error.
CONFIG = t5.T5Config(
    vocab_size=40, emb_dim=6, num_heads=2, head_dim=5, mlp_dim=7, num_encoder_layers=2,
    num_decoder_layers=3, relative_attention_num_buckets=4, relative_attention_max_distance=8,
    dropout_rate=0.0,
)
HF_CONFIG = {
    "architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "vocab_size": 40, "d_model": 6,
    "d_kv": 5, "d_ff": 7, "num_layers": 2, "num_decoder_layers": 3, "num_heads": 2,
    "relative_attention_num_buckets": 4, "relative_attention_max_distance": 8, "dropout_rate": 0.0,
    "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "layer_norm_epsilon": 1e-6,
}


def hf_layout(c):
    """{HF name: (shape, T5X name, transposed)} for a gated T5 1.1 with untied logits."""
    H, ND, F, V = c.emb_dim, c.num_heads * c.head_dim, c.mlp_dim, c.vocab_size
    out = {
        "shared.weight": ((V, H), "token_embedder/embedding", False),
        "lm_head.weight": ((V, H), "decoder/logits_dense/kernel", True),
        "encoder.final_layer_norm.weight": ((H,), "encoder/encoder_norm/scale", False),
        "decoder.final_layer_norm.weight": ((H,), "decoder/decoder_norm/scale", False),
    }
    for s in ("encoder", "decoder"):
        out[f"{s}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
            (c.relative_attention_num_buckets, c.num_heads), f"{s}/relpos_bias/rel_embedding", True)

    def attention(hf, ours):
        for p, q in (("q", "query"), ("k", "key"), ("v", "value")):
            out[f"{hf}.{p}.weight"] = ((ND, H), f"{ours}/{q}/kernel", True)
        out[f"{hf}.o.weight"] = ((H, ND), f"{ours}/out/kernel", True)

    def mlp(hf, ours):
        out[f"{hf}.wi_0.weight"] = ((F, H), f"{ours}/wi_0/kernel", True)
        out[f"{hf}.wi_1.weight"] = ((F, H), f"{ours}/wi_1/kernel", True)
        out[f"{hf}.wo.weight"] = ((H, F), f"{ours}/wo/kernel", True)

    for i in range(c.num_encoder_layers):
        b, o = f"encoder.block.{i}", f"encoder/layers_{i}"
        attention(f"{b}.layer.0.SelfAttention", f"{o}/attention")
        out[f"{b}.layer.0.layer_norm.weight"] = ((H,), f"{o}/pre_attention_layer_norm/scale", False)
        mlp(f"{b}.layer.1.DenseReluDense", f"{o}/mlp")
        out[f"{b}.layer.1.layer_norm.weight"] = ((H,), f"{o}/pre_mlp_layer_norm/scale", False)
    for i in range(c.num_decoder_layers):
        b, o = f"decoder.block.{i}", f"decoder/layers_{i}"
        attention(f"{b}.layer.0.SelfAttention", f"{o}/self_attention")
        out[f"{b}.layer.0.layer_norm.weight"] = ((H,), f"{o}/pre_self_attention_layer_norm/scale", False)
        attention(f"{b}.layer.1.EncDecAttention", f"{o}/encoder_decoder_attention")
        out[f"{b}.layer.1.layer_norm.weight"] = ((H,), f"{o}/pre_cross_attention_layer_norm/scale", False)
        mlp(f"{b}.layer.2.DenseReluDense", f"{o}/mlp")
        out[f"{b}.layer.2.layer_norm.weight"] = ((H,), f"{o}/pre_mlp_layer_norm/scale", False)
    return out


def random_hf_tensors(c=CONFIG, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape).astype(np.float32) for name, (shape, _, _) in hf_layout(c).items()}


def write_hf(directory, tensors, config=HF_CONFIG):
    directory.mkdir(parents=True, exist_ok=True)
    st_numpy.save_file(tensors, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def assert_matches_hf(params, tensors, c=CONFIG):
    flat = traverse_util.flatten_dict(params, sep="/")
    layout = hf_layout(c)
    assert set(flat) == {ours for _, ours, _ in layout.values()}
    for hf, (_, ours, transposed) in layout.items():
        expected = tensors[hf].T if transposed else tensors[hf]
        assert flat[ours].dtype == np.float32
        np.testing.assert_array_equal(flat[ours], expected, err_msg=f"{hf} -> {ours}")


def test_layout_matches_the_model_tree():
    # The hand-written HF layout covers exactly the model's parameters with the right shapes.
    expected = loading.abstract_param_shapes(CONFIG)
    layout = hf_layout(CONFIG)
    assert {ours for _, ours, _ in layout.values()} == set(expected)
    for shape, ours, transposed in layout.values():
        assert (tuple(reversed(shape)) if transposed else shape) == expected[ours], ours


def test_load_hf_checkpoint_values_and_transposes(tmp_path):
    tensors = random_hf_tensors()
    # transformers may also store the tied copies of the embedding; they are skipped.
    stored = dict(tensors, **{"encoder.embed_tokens.weight": tensors["shared.weight"],
                              "decoder.embed_tokens.weight": tensors["shared.weight"]})
    path = write_hf(tmp_path / "hf", stored)
    assert loading.detect_format(str(path)) == "huggingface"
    params, step = loading.load_params(str(path), CONFIG)
    assert step is None
    assert_matches_hf(params, tensors)
    # A single .safetensors file with HF names works too.
    params, _ = loading.load_params(str(path / "model.safetensors"), CONFIG)
    assert_matches_hf(params, tensors)


def test_bfloat16_tensors_are_cast_to_float32(tmp_path):
    import ml_dtypes

    tensors = {k: v.astype(ml_dtypes.bfloat16) for k, v in random_hf_tensors().items()}
    params, _ = loading.load_params(str(write_hf(tmp_path / "bf16", tensors)), CONFIG)
    assert_matches_hf(params, {k: v.astype(np.float32) for k, v in tensors.items()})


def test_sharded_index(tmp_path):
    tensors = random_hf_tensors(seed=1)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    path = tmp_path / "sharded"
    path.mkdir()
    for file, keys in shards.items():
        st_numpy.save_file({k: tensors[k] for k in keys}, str(path / file))
    index = {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    (path / "config.json").write_text(json.dumps(HF_CONFIG))
    params, _ = loading.load_params(str(path), CONFIG)
    assert_matches_hf(params, tensors)
    params, _ = loading.load_params(str(path / "model.safetensors.index.json"), CONFIG)
    assert_matches_hf(params, tensors)


def test_config_json():
    assert huggingface.config_from_hf(HF_CONFIG) == CONFIG
    # T5 1.0: plain ReLU, tied logits (tie_word_embeddings absent means tied in transformers).
    v10 = dict(HF_CONFIG, feed_forward_proj="relu")
    del v10["tie_word_embeddings"]
    c10 = huggingface.config_from_hf(v10)
    assert c10.mlp_activations == ("relu",) and c10.logits_via_embedding
    # transformers' plain 'gelu' is the exact erf GELU, which our tanh-approximate MLP is not.
    with pytest.raises(CheckpointError, match="unsupported Hugging Face feed_forward_proj 'gelu'"):
        huggingface.config_from_hf(dict(HF_CONFIG, feed_forward_proj="gelu"))
    assert huggingface.config_from_hf(huggingface.config_to_hf(CONFIG)) == CONFIG
    assert huggingface.config_from_hf(huggingface.config_to_hf(c10)) == c10


def test_config_from_hf_checkpoint(tmp_path):
    path = write_hf(tmp_path / "hf", random_hf_tensors())
    assert loading.config_from_checkpoint(str(path)) == CONFIG
    assert loading.config_from_checkpoint(str(path), dropout_rate=0.1) == CONFIG.replace(dropout_rate=0.1)


def test_name_mapping_both_ways():
    for hf, (_, ours, transposed) in hf_layout(CONFIG).items():
        assert huggingface.hf_to_t5x_name(hf) == (ours, transposed)
        assert huggingface.t5x_to_hf_name(ours) == (hf, transposed)
    assert huggingface.hf_to_t5x_name("encoder.block.11.layer.1.DenseReluDense.wi.weight") == (
        "encoder/layers_11/mlp/wi/kernel", True)
    assert huggingface.hf_to_t5x_name("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight") is None
    assert huggingface.t5x_to_hf_name("encoder/prompt/prompt") is None


def test_export_roundtrip(tmp_path):
    tensors = random_hf_tensors(seed=2)
    params, _ = loading.load_params(str(write_hf(tmp_path / "in", tensors)), CONFIG)
    huggingface.save(str(tmp_path / "out"), params, CONFIG)
    written = st_numpy.load_file(str(tmp_path / "out" / "model.safetensors"))
    assert set(written) == set(tensors)
    for k in tensors:
        np.testing.assert_array_equal(written[k], tensors[k], err_msg=k)
    assert loading.config_from_checkpoint(str(tmp_path / "out")) == CONFIG


def test_tied_t5_1_0_checkpoint(tmp_path):
    # Plain-ReLU MLP ('wi') and tied logits: lm_head.weight, if present, is ignored.
    config = CONFIG.replace(mlp_activations=("relu",), logits_via_embedding=True)
    expected = loading.abstract_param_shapes(config)
    rng = np.random.default_rng(3)
    tensors = {}
    for ours, shape in expected.items():
        hf, transposed = huggingface.t5x_to_hf_name(ours)
        tensors[hf] = rng.normal(size=tuple(reversed(shape)) if transposed else shape).astype(np.float32)
    assert "encoder.block.0.layer.1.DenseReluDense.wi.weight" in tensors and "lm_head.weight" not in tensors
    hf_config = dict(HF_CONFIG, feed_forward_proj="relu", tie_word_embeddings=True)
    path = write_hf(tmp_path / "tied", dict(tensors, **{"lm_head.weight": tensors["shared.weight"]}), hf_config)
    params, _ = loading.load_params(str(path), config)
    flat = traverse_util.flatten_dict(params, sep="/")
    assert set(flat) == set(expected)
    np.testing.assert_array_equal(flat["encoder/layers_0/mlp/wi/kernel"],
                                  tensors["encoder.block.0.layer.1.DenseReluDense.wi.weight"].T)
    assert loading.config_from_checkpoint(str(path)) == config
