"""The project's own frozen-model format: one safetensors file plus config.json.

    <dir>/params.safetensors   flat T5X names ("encoder/layers_0/attention/query/kernel")
    <dir>/config.json          the `T5Config` fields

Used for models this project pretrains itself (the mini-world ladder). It is a
plain, pickle-free format that any safetensors reader can open; the names are
T5X's, so nothing is renamed on the way in or out.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
from flax import traverse_util
from safetensors import numpy as st_numpy

from prompt_tuning.models import t5

PARAMS_FILE = "params.safetensors"
CONFIG_FILE = "config.json"


def is_native_checkpoint(path: str) -> bool:
    """True for a directory holding this project's params.safetensors."""
    return os.path.isdir(path) and os.path.exists(os.path.join(path, PARAMS_FILE))


def save(path: str, params, config: t5.T5Config) -> None:
    """Writes params (nested dict of arrays, no prompt) and config atomically."""
    os.makedirs(path, exist_ok=True)
    flat = {k: np.ascontiguousarray(np.asarray(v, np.float32))
            for k, v in traverse_util.flatten_dict(params, sep="/").items()}
    tmp = os.path.join(path, PARAMS_FILE + ".tmp")
    st_numpy.save_file(flat, tmp)
    os.replace(tmp, os.path.join(path, PARAMS_FILE))
    cfg = dataclasses.asdict(config)
    with open(os.path.join(path, CONFIG_FILE + ".tmp"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    os.replace(os.path.join(path, CONFIG_FILE + ".tmp"), os.path.join(path, CONFIG_FILE))


def load_config(path: str) -> t5.T5Config:
    """The T5Config saved beside the parameters (config.json)."""
    with open(os.path.join(path, CONFIG_FILE)) as f:
        cfg = json.load(f)
    cfg["mlp_activations"] = tuple(cfg["mlp_activations"])
    return t5.T5Config(**cfg)


def load(path: str) -> dict:
    """Nested dict of float32 numpy arrays with T5X names."""
    flat = st_numpy.load_file(os.path.join(path, PARAMS_FILE))
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def fingerprint(path: str) -> str:
    """sha256 (hex) of the checkpoint's params.safetensors: equal fingerprints mean bit-identical parameters.

    Tells one build of a pretrained model from another: a ladder rebuilt by other code, another XLA
    version or another thread count trains to other numbers under the same path (save() writes the same
    bytes for the same parameters). Raises FileNotFoundError when path holds no params.safetensors.
    """
    digest = hashlib.sha256()
    with open(os.path.join(path, PARAMS_FILE), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
