"""load_params: format detection, validation against the model, and readable one-line errors."""
import json
import os
import shutil

import numpy as np
import pytest
from safetensors import numpy as st_numpy

from prompt_tuning.checkpoints import loading, native
from prompt_tuning.checkpoints.errors import CheckpointError
from prompt_tuning.models import t5
from tests.checkpoints.test_huggingface import CONFIG, HF_CONFIG, random_hf_tensors, write_hf


def _error(path, config=CONFIG) -> str:
    with pytest.raises(CheckpointError) as info:
        loading.load_params(str(path), config)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_path(tmp_path):
    assert "checkpoint not found" in _error(tmp_path / "nope")


def test_unknown_format(tmp_path):
    (tmp_path / "weights.npz").write_bytes(b"x")
    assert "unknown checkpoint format" in _error(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    assert "PyTorch .bin" in _error(tmp_path)


def test_unreadable_files(tmp_path):
    (tmp_path / "t5x").mkdir()
    (tmp_path / "t5x" / "checkpoint").write_bytes(b"\xc1\xc1 not msgpack")
    assert "cannot read T5X checkpoint file" in _error(tmp_path / "t5x")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "model.safetensors").write_bytes(b"garbage")
    assert "cannot read safetensors file" in _error(tmp_path / "hf")
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "model.safetensors.index.json").write_text("{not json")
    assert "cannot read safetensors index" in _error(tmp_path / "idx")
    (tmp_path / "idx" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"shared.weight": "model-1.safetensors"}}))
    assert "shard listed in the index is missing" in _error(tmp_path / "idx")


def test_missing_key(tmp_path):
    tensors = random_hf_tensors()
    del tensors["decoder.block.2.layer.1.EncDecAttention.k.weight"]
    message = _error(write_hf(tmp_path / "hf", tensors))
    assert "missing decoder/layers_2/encoder_decoder_attention/key/kernel" in message
    assert "unexpected" not in message


def test_unexpected_and_unknown_keys(tmp_path):
    tensors = random_hf_tensors()
    message = _error(write_hf(tmp_path / "a", tensors), CONFIG.replace(num_decoder_layers=2))
    assert "unexpected decoder/layers_2/" in message and "(14 in all)" in message
    message = _error(write_hf(tmp_path / "b", dict(tensors, **{"encoder.block.0.adapter.weight": np.ones(2, np.float32)})))
    assert "unknown Hugging Face keys encoder.block.0.adapter.weight" in message


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    tensors = random_hf_tensors()
    message = _error(write_hf(tmp_path / "hf", tensors), CONFIG.replace(mlp_dim=9))
    assert ("shape mismatch for decoder/layers_0/mlp/wi_0/kernel (from decoder.block.0.layer.2.DenseReluDense.wi_0.weight)"
            in message)
    assert "model expects (6, 9), checkpoint has (6, 7)" in message


def test_shape_mismatch_t5x(tiny_t5x_checkpoint):
    message = _error(tiny_t5x_checkpoint, t5.get_config("tiny", vocab_size=32100))
    assert "decoder/logits_dense/kernel" in message and "model expects (4, 32100), checkpoint has (4, 32128)" in message


def test_prompted_t5x_checkpoint_is_refused_with_a_hint(tiny_t5x_checkpoint, tmp_path):
    # A prompt-tuning checkpoint holds encoder/prompt/prompt next to the frozen model.
    import flax.serialization
    import msgpack

    ckpt = tmp_path / "checkpoint_3"
    shutil.copytree(tiny_t5x_checkpoint, ckpt)
    os.chmod(ckpt / "checkpoint", 0o644)
    state = msgpack.unpackb((ckpt / "checkpoint").read_bytes(), raw=False, strict_map_key=False)
    state["optimizer"]["target"]["encoder"]["prompt"] = {
        "prompt": msgpack.unpackb(flax.serialization.msgpack_serialize(np.ones((3, 4), np.float32)), raw=False)}
    (ckpt / "checkpoint").write_bytes(msgpack.packb(state))
    message = _error(ckpt, t5.get_config("tiny"))
    assert "unexpected encoder/prompt/prompt" in message and "prompt-tuning checkpoint" in message
    from prompt_tuning.checkpoints import t5x
    np.testing.assert_array_equal(t5x.read_variable(str(ckpt), "encoder/prompt/prompt"), np.ones((3, 4)))


def test_native_format(tmp_path):
    params, _ = loading.load_params(str(write_hf(tmp_path / "hf", random_hf_tensors())), CONFIG)
    native.save(str(tmp_path / "native"), params, CONFIG)
    assert loading.detect_format(str(tmp_path / "native")) == "native"
    loaded, step = loading.load_params(str(tmp_path / "native"), CONFIG)
    assert step is None
    np.testing.assert_array_equal(loaded["decoder"]["logits_dense"]["kernel"], params["decoder"]["logits_dense"]["kernel"])
    assert loading.config_from_checkpoint(str(tmp_path / "native")) == CONFIG
    # The bare params file (T5X names) is read as the native format too.
    file = str(tmp_path / "native" / native.PARAMS_FILE)
    assert loading.detect_format(file) == "native"
    loaded, _ = loading.load_params(file, CONFIG)
    np.testing.assert_array_equal(loaded["token_embedder"]["embedding"], params["token_embedder"]["embedding"])
    message = _error(file, CONFIG.replace(emb_dim=8, head_dim=4))
    assert "shape mismatch for" in message


def test_validation_happens_before_reading(tmp_path, monkeypatch):
    # A wrong config must fail on shapes alone, without reading (possibly huge) arrays.
    path = write_hf(tmp_path / "hf", random_hf_tensors())
    from prompt_tuning.checkpoints import huggingface

    def no_read(self, name):
        raise AssertionError(f"read {name} before validation")

    monkeypatch.setattr(huggingface.SafetensorsReader, "read", no_read)
    _error(path, CONFIG.replace(vocab_size=41))


def test_native_safetensors_with_unknown_names(tmp_path):
    st_numpy.save_file({"foo": np.ones(2, np.float32)}, str(tmp_path / "x.safetensors"))
    message = _error(tmp_path / "x.safetensors")
    assert "native checkpoint" in message and "unexpected foo" in message and "missing" in message


def test_native_fingerprint_tells_builds_apart(tmp_path):
    params, _ = loading.load_params(str(write_hf(tmp_path / "hf", random_hf_tensors())), CONFIG)
    native.save(str(tmp_path / "a"), params, CONFIG)
    native.save(str(tmp_path / "b"), params, CONFIG)  # the same parameters saved again: the same bytes
    assert native.fingerprint(str(tmp_path / "a")) == native.fingerprint(str(tmp_path / "b"))
    kernel = np.array(params["decoder"]["logits_dense"]["kernel"], np.float32)
    kernel.flat[0] = np.nextafter(kernel.flat[0], np.float32(np.inf))  # one number moved by one ulp
    params["decoder"]["logits_dense"]["kernel"] = kernel
    native.save(str(tmp_path / "c"), params, CONFIG)
    assert native.fingerprint(str(tmp_path / "c")) != native.fingerprint(str(tmp_path / "a"))
    with pytest.raises(FileNotFoundError):
        native.fingerprint(str(tmp_path / "hf"))
