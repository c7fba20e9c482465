"""Hugging Face T5 checkpoints (safetensors + config.json) <-> this project's T5X names.

Read:  a directory with `model.safetensors` or a sharded `model.safetensors.index.json`
       (plus `config.json`), or a single `.safetensors` file. Read with
       `safetensors.numpy`, so torch is not needed at run time. PyTorch `.bin`
       pickles are refused (they execute code on load).
Write: `save(dir, params, config)` writes `model.safetensors` and a T5 `config.json`
       that `transformers.T5ForConditionalGeneration.from_pretrained` accepts.

Name and layout differences (torch Linear stores [out, in], T5X kernels [in, out]):

  shared.weight                     [V, H]       token_embedder/embedding       [V, H]
  {s}.block.{i}.layer.0.SelfAttention.{q,k,v}.weight [N*D, H]  -> .../{query,key,value}/kernel [H, N*D]
  {s}.block.{i}.layer.0.SelfAttention.o.weight       [H, N*D]  -> .../out/kernel [N*D, H]
  {s}.block.0.layer.0.SelfAttention.relative_attention_bias.weight [buckets, N]
                                                 -> {s}/relpos_bias/rel_embedding [N, buckets]
  lm_head.weight                    [V, H]       decoder/logits_dense/kernel    [H, V]
  layer norms `.weight` [H]                      `.../scale` [H]

`{encoder,decoder}.embed_tokens.weight` are tied copies of `shared.weight`
and are skipped.
"""
from __future__ import annotations

import json
import os
import re
from typing import Iterable, Optional

import numpy as np
from flax import traverse_util

from prompt_tuning.checkpoints.errors import CheckpointError
from prompt_tuning.models import t5

WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
CONFIG_FILE = "config.json"

# HF keys that carry no parameter of their own: tied copies of `shared.weight`,
# and a bias table old HF versions saved for cross-attention but never used.
_IGNORED = re.compile(
    r"(encoder|decoder)\.embed_tokens\.weight"
    r"|decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight"
)

_ATTN = {"q": "query", "k": "key", "v": "value", "o": "out"}
_MLP = ("wi", "wi_0", "wi_1", "wo")


def _rules() -> list[tuple[str, str, bool]]:
    """(HF name, T5X name, transpose) templates; `{i}` stands for a layer number."""
    rules = [
        ("shared.weight", "token_embedder/embedding", False),
        ("lm_head.weight", "decoder/logits_dense/kernel", True),
        ("encoder.final_layer_norm.weight", "encoder/encoder_norm/scale", False),
        ("decoder.final_layer_norm.weight", "decoder/decoder_norm/scale", False),
    ]
    for stack in ("encoder", "decoder"):
        rules.append((f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                      f"{stack}/relpos_bias/rel_embedding", True))
    # (stack, HF sub-layer index, HF module, T5X module, T5X layer-norm name)
    sublayers = [
        ("encoder", 0, "SelfAttention", "attention", "pre_attention_layer_norm"),
        ("encoder", 1, "DenseReluDense", "mlp", "pre_mlp_layer_norm"),
        ("decoder", 0, "SelfAttention", "self_attention", "pre_self_attention_layer_norm"),
        ("decoder", 1, "EncDecAttention", "encoder_decoder_attention", "pre_cross_attention_layer_norm"),
        ("decoder", 2, "DenseReluDense", "mlp", "pre_mlp_layer_norm"),
    ]
    for stack, j, hf_mod, mod, norm in sublayers:
        hf_prefix, prefix = f"{stack}.block.{{i}}.layer.{j}", f"{stack}/layers_{{i}}"
        rules.append((f"{hf_prefix}.layer_norm.weight", f"{prefix}/{norm}/scale", False))
        projections = _ATTN.items() if hf_mod != "DenseReluDense" else ((m, m) for m in _MLP)
        for hf_proj, proj in projections:
            rules.append((f"{hf_prefix}.{hf_mod}.{hf_proj}.weight", f"{prefix}/{mod}/{proj}/kernel", True))
    return rules


def _compile(rules, src: int, dst: int):
    out = []
    for rule in rules:
        pattern = re.escape(rule[src]).replace(r"\{i\}", r"(?P<i>\d+)")
        out.append((re.compile(pattern + "$"), rule[dst], rule[2]))
    return out


_HF_TO_T5X = _compile(_rules(), 0, 1)
_T5X_TO_HF = _compile(_rules(), 1, 0)


def _translate(name: str, table) -> Optional[tuple[str, bool]]:
    for pattern, template, transpose in table:
        m = pattern.match(name)
        if m:
            return template.replace("{i}", m.groupdict().get("i") or ""), transpose
    return None


def hf_to_t5x_name(name: str) -> Optional[tuple[str, bool]]:
    """'encoder.block.3.layer.0.SelfAttention.q.weight' -> ('encoder/layers_3/attention/query/kernel', True).

    None for a name with no T5X counterpart; the bool says whether to transpose.
    """
    return _translate(name, _HF_TO_T5X)


def t5x_to_hf_name(name: str) -> Optional[tuple[str, bool]]:
    """The inverse of hf_to_t5x_name: a T5X name -> (Hugging Face name, transpose?), or None."""
    return _translate(name, _T5X_TO_HF)


# ----------------------------------------------------------------------------- config

# transformers' feed_forward_proj -> our mlp_activations (same functions).
_HF_ACTIVATIONS = {
    "gated-gelu": ("gelu", "linear"),
    "gated-gelu_new": ("gelu", "linear"),
    "gated-relu": ("relu", "linear"),
    "gelu_new": ("gelu",),
    "relu": ("relu",),
}


def config_from_hf(cfg: dict) -> t5.T5Config:
    """A transformers T5 `config.json` dict -> T5Config (dropout taken over as is)."""
    proj = cfg.get("feed_forward_proj", "relu")
    # Our MLP's gelu is the tanh approximation, which transformers calls
    # gelu_new and uses for 'gated-gelu'; its plain 'gelu' is the exact erf form.
    acts = _HF_ACTIVATIONS.get(proj)
    if acts is None:
        raise CheckpointError(
            f"unsupported Hugging Face feed_forward_proj {proj!r} (supported: {sorted(_HF_ACTIVATIONS)})"
        )
    try:
        return t5.T5Config(
            vocab_size=cfg["vocab_size"],
            emb_dim=cfg["d_model"],
            num_heads=cfg["num_heads"],
            num_encoder_layers=cfg["num_layers"],
            num_decoder_layers=cfg.get("num_decoder_layers") or cfg["num_layers"],
            head_dim=cfg["d_kv"],
            mlp_dim=cfg["d_ff"],
            mlp_activations=acts,
            dropout_rate=float(cfg.get("dropout_rate", 0.1)),
            relative_attention_num_buckets=cfg.get("relative_attention_num_buckets", 32),
            relative_attention_max_distance=cfg.get("relative_attention_max_distance", 128),
            # Absent means tied in transformers (T5 1.0); T5 1.1 configs say false.
            logits_via_embedding=bool(cfg.get("tie_word_embeddings", True)),
        )
    except KeyError as e:
        raise CheckpointError(f"Hugging Face T5 config lacks field {e.args[0]!r}") from None


def config_to_hf(config: t5.T5Config) -> dict:
    """A Hugging Face T5 `config.json` dict for `config`; ValueError when its MLP activations have no HF name."""
    acts = tuple(config.mlp_activations)
    proj = {v: k for k, v in _HF_ACTIVATIONS.items() if k != "gated-gelu_new"}.get(acts)
    if proj is None:
        raise ValueError(f"mlp_activations {acts} have no Hugging Face T5 equivalent")
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": config.vocab_size,
        "d_model": config.emb_dim,
        "d_kv": config.head_dim,
        "d_ff": config.mlp_dim,
        "num_layers": config.num_encoder_layers,
        "num_decoder_layers": config.num_decoder_layers,
        "num_heads": config.num_heads,
        "relative_attention_num_buckets": config.relative_attention_num_buckets,
        "relative_attention_max_distance": config.relative_attention_max_distance,
        "dropout_rate": config.dropout_rate,
        "layer_norm_epsilon": 1e-6,
        "feed_forward_proj": proj,
        # False also turns off transformers' d_model**-0.5 output rescaling,
        # which T5 1.1 (untied logits) must not have.
        "tie_word_embeddings": bool(config.logits_via_embedding),
        "is_encoder_decoder": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }


# ----------------------------------------------------------------------------- files


def _weight_files(path: str) -> Optional[list[str]]:
    path = os.fspath(path)
    if os.path.isfile(path) and path.endswith(".safetensors"):
        return [path]
    if os.path.isfile(path) and path.endswith(".safetensors.index.json"):
        index_file = path
    elif os.path.isdir(path) and os.path.isfile(os.path.join(path, WEIGHTS_FILE)):
        return [os.path.join(path, WEIGHTS_FILE)]
    elif os.path.isdir(path) and os.path.isfile(os.path.join(path, INDEX_FILE)):
        index_file = os.path.join(path, INDEX_FILE)
    else:
        return None
    try:
        with open(index_file) as f:
            weight_map = json.load(f)["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"cannot read safetensors index {index_file}: {e!r}") from None
    base = os.path.dirname(index_file)
    return [os.path.join(base, shard) for shard in sorted(set(weight_map.values()))]


def is_hf_checkpoint(path: str) -> bool:
    """A directory with model.safetensors[.index.json], or a safetensors file with HF names."""
    try:
        files = _weight_files(path)
    except CheckpointError:
        return True  # an index is there but broken: it is meant as an HF checkpoint
    if not files:
        return False
    if os.path.isdir(path) or path.endswith(".index.json"):
        return True
    return any(hf_to_t5x_name(n) or _IGNORED.fullmatch(n) for n in SafetensorsReader(files).names())


def read_config(path: str) -> t5.T5Config:
    """T5Config from the `config.json` next to (or inside) `path`."""
    base = path if os.path.isdir(path) else os.path.dirname(path)
    file = os.path.join(base, CONFIG_FILE)
    try:
        with open(file) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read Hugging Face config {file}: {e}") from None
    return config_from_hf(cfg)


class SafetensorsReader:
    """Names, shapes and arrays of one or more safetensors files, read lazily."""

    def __init__(self, files: Iterable[str]):
        from safetensors import safe_open

        self._where: dict[str, str] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        for file in files:
            try:
                with safe_open(file, framework="np") as f:
                    for name in f.keys():
                        self._where[name] = file
                        self._shapes[name] = tuple(f.get_slice(name).get_shape())
            except Exception as e:  # safetensors raises its own SafetensorError / OSError
                raise CheckpointError(f"cannot read safetensors file {file}: {e}") from None

    def names(self) -> list[str]:
        """Every tensor name across the files."""
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of tensor `name`, from the file header (nothing is read)."""
        return self._shapes[name]

    def read(self, name: str) -> np.ndarray:
        """Tensor `name` as a numpy array (read from its file now)."""
        from safetensors import safe_open

        with safe_open(self._where[name], framework="np") as f:
            return f.get_tensor(name)

    def read_slice(self, name: str, index: tuple) -> np.ndarray:
        """`array[index]` (a tuple of slices), copying only that slice out of the memory-mapped file."""
        from safetensors import safe_open

        with safe_open(self._where[name], framework="np") as f:
            return f.get_slice(name)[index] if index else f.get_tensor(name)


class HFCheckpoint:
    """A Hugging Face T5 checkpoint seen through T5X names (transposes applied on read)."""

    def __init__(self, path: str):
        files = _weight_files(path)
        if not files:
            raise CheckpointError(f"no {WEIGHTS_FILE} or {INDEX_FILE} in {path}")
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise CheckpointError(f"safetensors shard listed in the index is missing: {missing[0]}")
        self.path = path
        self.reader = SafetensorsReader(files)
        self._hf_name: dict[str, tuple[str, bool]] = {}
        self.unmapped: list[str] = []  # HF names with no T5X counterpart
        for name in self.reader.names():
            if _IGNORED.fullmatch(name):
                continue
            mapped = hf_to_t5x_name(name)
            if mapped is None:
                self.unmapped.append(name)
            else:
                self._hf_name[mapped[0]] = (name, mapped[1])

    def names(self) -> list[str]:
        """The T5X names of every mapped tensor."""
        return list(self._hf_name)

    def drop(self, name: str) -> None:
        """Forgets one T5X-named entry (e.g. a tied lm_head the model does not have)."""
        self._hf_name.pop(name, None)

    def hf_name(self, name: str) -> str:
        """The Hugging Face name behind T5X name `name`."""
        return self._hf_name[name][0]

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of `name` in T5X layout (transposed where the mapping says so)."""
        hf, transpose = self._hf_name[name]
        shape = self.reader.shape(hf)
        return tuple(reversed(shape)) if transpose else shape

    def read(self, name: str) -> np.ndarray:
        """Tensor `name` as float32 in T5X layout (transposed where the mapping says so)."""
        hf, transpose = self._hf_name[name]
        arr = np.asarray(self.reader.read(hf), np.float32)
        return np.ascontiguousarray(arr.T) if transpose else arr

    def read_slice(self, name: str, index: tuple) -> np.ndarray:
        """`read(name)[index]` in the stored dtype, reading only the slice (transposed back)."""
        hf, transpose = self._hf_name[name]
        if not transpose:
            return self.reader.read_slice(hf, index)
        return np.ascontiguousarray(self.reader.read_slice(hf, tuple(reversed(index))).T)


def read_checkpoint(path: str) -> dict:
    """All mapped parameters as a nested dict of float32 arrays (T5X names), unvalidated."""
    ckpt = HFCheckpoint(path)
    flat = {tuple(n.split("/")): ckpt.read(n) for n in ckpt.names()}
    return traverse_util.unflatten_dict(flat)


def params_to_hf(params) -> dict[str, np.ndarray]:
    """Nested T5X-named params (no prompt) -> {HF name: float32 array}."""
    out = {}
    for name, value in traverse_util.flatten_dict(params, sep="/").items():
        mapped = t5x_to_hf_name(name)
        if mapped is None:
            raise ValueError(f"parameter {name!r} has no Hugging Face T5 counterpart (a prompt?)")
        hf, transpose = mapped
        arr = np.asarray(value, np.float32)
        out[hf] = np.ascontiguousarray(arr.T if transpose else arr)
    return out


def save(path: str, params, config: t5.T5Config) -> None:
    """Writes `model.safetensors` + `config.json` loadable by transformers' T5ForConditionalGeneration."""
    from safetensors import numpy as st_numpy

    tensors = params_to_hf(params)
    os.makedirs(path, exist_ok=True)
    tmp = os.path.join(path, WEIGHTS_FILE + ".tmp")
    st_numpy.save_file(tensors, tmp, metadata={"format": "pt"})
    os.replace(tmp, os.path.join(path, WEIGHTS_FILE))
    with open(os.path.join(path, CONFIG_FILE), "w") as f:
        json.dump(config_to_hf(config), f, indent=2, sort_keys=True)
