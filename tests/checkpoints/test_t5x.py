"""Legacy T5X checkpoints: the real tiny checkpoint and synthetic ones covering the format's corners."""
import os
import shutil

import flax.serialization
import jax
import jax.numpy as jnp
import ml_dtypes
import msgpack
import numpy as np
import pytest
import tensorstore as ts
from flax import traverse_util
from flax.linen import meta

from prompt_tuning.checkpoints import loading, t5x
from prompt_tuning.checkpoints.errors import CheckpointError
from prompt_tuning.models import t5
from tests.conftest import shared_path


def _reference_read(ckpt_dir):
    """An independent reading of the tiny checkpoint: flax's own msgpack decoder + tensorstore."""
    with open(os.path.join(ckpt_dir, "checkpoint"), "rb") as f:
        state = flax.serialization.msgpack_restore(f.read())
    flat = traverse_util.flatten_dict(state["optimizer"]["target"], is_leaf=lambda _, v: isinstance(v, dict) and "driver" in v)
    out = {}
    for key, leaf in flat.items():
        if isinstance(leaf, dict):
            spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": os.path.join(ckpt_dir, leaf["kvstore"]["path"])}}
            leaf = ts.open(spec).result().read().result()
        out["/".join(key)] = np.asarray(leaf)
    return out, int(state["optimizer"]["state"]["step"])


def test_tiny_checkpoint_loads_into_exactly_the_model_tree(tiny_t5x_checkpoint):
    config = t5.get_config("tiny")
    params, step = loading.load_params(tiny_t5x_checkpoint, config)
    reference, ref_step = _reference_read(tiny_t5x_checkpoint)
    assert step == ref_step == 3

    model = t5.T5(config)
    tokens = jnp.ones((1, 3), jnp.int32)
    abstract = meta.unbox(jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), tokens, tokens))["params"])
    flat = traverse_util.flatten_dict(params, sep="/")
    abstract_flat = traverse_util.flatten_dict(abstract, sep="/")
    assert set(flat) == set(abstract_flat) == set(reference)
    for name, value in flat.items():
        assert value.dtype == np.float32 and value.shape == abstract_flat[name].shape, name
        np.testing.assert_array_equal(value, reference[name], err_msg=name)

    # The loaded tree is usable as is: the model runs on it and is deterministic.
    logits = model.apply({"params": params}, jnp.array([[5, 6, 1, 0]]), jnp.array([[0, 7]]))
    assert logits.shape == (1, 2, config.vocab_size) and np.isfinite(np.asarray(logits)).all()


def test_tiny_token_embedder_equals_reference_npy(tiny_t5x_checkpoint):
    expected = np.load(shared_path("t5", "tiny_embeddings_32128x4.npy"))
    params, _ = t5x.read_checkpoint(tiny_t5x_checkpoint)
    np.testing.assert_array_equal(params["token_embedder"]["embedding"], expected)
    # The `checkpoint` file itself is accepted as the path too.
    single = t5x.read_variable(os.path.join(tiny_t5x_checkpoint, "checkpoint"), "token_embedder/embedding")
    np.testing.assert_array_equal(single, expected)


def test_read_variable_touches_only_that_array(tiny_t5x_checkpoint, tmp_path):
    # A copy holding only the msgpack file and the embedding's zarr directory:
    # a reader that loaded everything would fail on the absent arrays.
    partial = tmp_path / "checkpoint_3"
    partial.mkdir()
    shutil.copy(os.path.join(tiny_t5x_checkpoint, "checkpoint"), partial / "checkpoint")
    shutil.copytree(os.path.join(tiny_t5x_checkpoint, "target.token_embedder.embedding"),
                    partial / "target.token_embedder.embedding")
    emb = t5x.read_variable(str(partial), "token_embedder/embedding")
    np.testing.assert_array_equal(emb, np.load(shared_path("t5", "tiny_embeddings_32128x4.npy")))
    # Shapes come from metadata, so they too need no array files.
    assert t5x.read_shapes(str(partial))["encoder/layers_0/mlp/wo/kernel"] == (8, 4)
    with pytest.raises(CheckpointError, match="missing array directory .*target.decoder"):
        t5x.read_checkpoint(str(partial))
    with pytest.raises(CheckpointError, match="'encoder/nope' not in T5X checkpoint"):
        t5x.read_variable(str(partial), "encoder/nope")


def test_config_inferred_from_tiny_checkpoint(tiny_t5x_checkpoint):
    # Everything but the max distance is in the shapes (heads: rel_embedding is [heads, buckets]).
    config = loading.config_from_checkpoint(tiny_t5x_checkpoint, relative_attention_max_distance=8)
    assert config == t5.get_config("tiny")
    with pytest.raises(CheckpointError, match="not a multiple of num_heads=3"):
        loading.config_from_checkpoint(tiny_t5x_checkpoint, num_heads=3)


# ----------------------------------------------------------------------------- synthetic checkpoints


def _write_zarr(directory, array):
    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": str(directory)},
            "metadata": {"compressor": {"id": "gzip", "level": 1}, "shape": list(array.shape),
                         "chunks": list(array.shape), "dtype": "<f4"}}
    ts.open(spec, create=True, open=False).result().write(array).result()


def _write_checkpoint(ckpt_dir, target, step):
    """A version-3 T5X msgpack file (flax's encoder) with an Adafactor-like state."""
    os.makedirs(ckpt_dir, exist_ok=True)
    state = {"version": 3, "optimizer": {"target": target, "state": {
        "step": np.asarray(step, np.int32),
        "param_states": {"x": {"v": np.ones(3, np.float32)}}}}}
    with open(os.path.join(ckpt_dir, "checkpoint"), "wb") as f:
        f.write(flax.serialization.msgpack_serialize(state))


def test_format_corners(tmp_path):
    rng = np.random.default_rng(0)
    lazy_rel, lazy_abs, lazy_old = (rng.normal(size=s).astype(np.float32) for s in [(3, 5), (2, 2), (4,)])
    bf16 = rng.normal(size=(2, 3)).astype(ml_dtypes.bfloat16)
    chunked = np.arange(10, dtype=np.float32)
    model_dir = tmp_path / "model"
    ckpt = model_dir / "checkpoint_20"
    _write_zarr(ckpt / "target.a.rel", lazy_rel)
    _write_zarr(ckpt / "target.a.abs", lazy_abs)
    _write_zarr(ckpt / "target.a.old", lazy_old)
    target = {
        "a": {
            # T5X writes a gfile kvstore with a path relative to the checkpoint directory.
            "rel": {"driver": "zarr", "kvstore": {"driver": "gfile", "path": "target.a.rel"},
                    "metadata": {"shape": [3, 5]}},
            # A copied checkpoint may keep its original absolute (or gs://) location.
            "abs": {"driver": "zarr", "kvstore": "gs://bucket/run/checkpoint_20/target.a.abs"},
            # Older specs: directory in kvstore, array name in 'path'.
            "old": {"driver": "zarr", "kvstore": {"driver": "file", "path": "/elsewhere/"}, "path": "target.a.old"},
        },
        "b": {"bf16": bf16, "int": np.arange(3, dtype=np.int32),
              # flax's form for arrays above 2**30 bytes: flat chunks under a marker key.
              "chunked": {"__msgpack_chunked_array__": True, "shape": {"0": 2, "1": 5},
                          "chunks": {"0": chunked[:6], "1": chunked[6:]}}},
    }
    _write_checkpoint(ckpt, target, step=20)
    _write_checkpoint(model_dir / "checkpoint_5", {"a": {"x": np.zeros(1, np.float32)}}, step=5)

    # The model directory resolves to its latest checkpoint (20, not 5, not lexicographic).
    params, step = t5x.read_checkpoint(str(model_dir))
    assert step == 20
    np.testing.assert_array_equal(params["a"]["rel"], lazy_rel)
    np.testing.assert_array_equal(params["a"]["abs"], lazy_abs)
    np.testing.assert_array_equal(params["a"]["old"], lazy_old)
    np.testing.assert_array_equal(params["b"]["bf16"], bf16.astype(np.float32))
    np.testing.assert_array_equal(params["b"]["chunked"], chunked.reshape(2, 5))
    assert all(v.dtype == np.float32 for v in traverse_util.flatten_dict(params).values())
    assert t5x.read_shapes(str(ckpt)) == {"a/rel": (3, 5), "a/abs": (2, 2), "a/old": (4,), "b/bf16": (2, 3),
                                         "b/int": (3,), "b/chunked": (2, 5)}


def test_unreadable_checkpoint_file(tmp_path):
    (tmp_path / "checkpoint").write_bytes(b"\xc1 this is not msgpack")
    with pytest.raises(CheckpointError, match="cannot read T5X checkpoint file"):
        t5x.read_checkpoint(str(tmp_path))
    (tmp_path / "checkpoint").write_bytes(msgpack.packb({"version": 3, "params": {}}))
    with pytest.raises(CheckpointError, match="no 'optimizer.target'"):
        t5x.read_checkpoint(str(tmp_path))
