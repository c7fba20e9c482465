"""Paper Fig 4 ("parameters"): task-specific parameters as a % of the model, vs model size (log-log).

Claim tested: prompt tuning needs the fewest task parameters of the learned
methods, under 0.01% of the model for most sizes (Table 4: an XXL prompt of
length 100 is 409,600 parameters, 0.0037%), and the share falls as models grow.

Computed from each method's definition, no training. Model sizes are counted
exactly from the model's abstract parameter shapes (`jax.eval_shape`, nothing
allocated): the real T5 1.1 sizes and, optionally, any ladder of configs.
Notation: H = emb_dim, d = num_heads * head_dim (attention width), L_e / L_d
encoder / decoder layers, P prompt or prefix length, C classes.

  model tuning       every parameter: N (100%).
  prefix tuning,     P activations (a key and a value, width d) prepended in every
  inference          attention module (Li & Liang 2021, ACL, section 4): an
                     encoder-decoder has L_e encoder self-attentions, L_d decoder
                     self-attentions and L_d cross-attentions, so
                     2 * P * d * (L_e + 2 L_d).
  prefix tuning,     Li & Liang train the prefix through a reparameterisation: an
  training           embedding P x H and an MLP H -> m -> 2 d L_g per group of layers
                     (m = 512 in their code; biases included), one per group
                     (encoder self, decoder self, cross): sum over g of
                     P*H + (H*m + m) + (m * 2 d L_g + 2 d L_g).
  WARP               (Hambardzumyan et al. 2021) tunes input prompt embeddings P x H
                     and an output layer of C class embeddings (C x H, plus C biases) on
                     a masked LM; applied here as if to a model of width H, with C = 2
                     (an assumption: binary tasks; C = 3 for CB adds H + 1):
                     P*H + C*H + C.
  prompt tuning      P x H (this paper).
  prompt design      no learned parameters; the paper plots the prompt's token ids
                     (500-2,000 tokens of GPT-3-style few-shot prompts) as its cost.

  LoRA, IA3,         the other methods of prompt_tuning/methods/ at their defaults, one
  adapters           count per size (not in the paper's figure): LoRA r = 8 on query and
                     value, 2 * A * r * (H + d) with A = L_e + 2 L_d attentions; IA3
                     2 * A * d + (L_e + L_d) * F; Houlsby adapters of size 64,
                     (2 L_e + 3 L_d) * (2 * 64 * H + 64 + H).

Counted from the modules: model tuning, prefix tuning (prompt_tuning.methods.Prefix,
direct for inference, with its MLP of width 512 for training), prompt tuning
(prompts.Prompt), LoRA, IA3 and adapters are counted from the parameter tree of
the model they attach to (methods.counts, abstract shapes) and each count is
checked against the closed form above (a mismatch stops the command). WARP and
prompt design have no module here: formulas.

The learned-prompt methods are bands over P in [1, 100] (the paper's range);
the CSV also holds the intermediate lengths. Command (569 s here at load 12-14 on 2 cores: one
abstract trace of the model per size, method and length):

    python -m experiments.parameters --out experiments/results/parameters
    python -m experiments.parameters --ladder tiny,test --out /tmp/params   # add a ladder of named configs
    python -m experiments.parameters --ladder-json ladder.json ...          # {name: T5Config fields}
    python -m experiments.parameters --backend recall --out experiments/results/mini   # + the recall ladder

Writes parameters.csv (columns: model_set, size, model_params, method,
prompt_length, task_params, percent) and parameters.png / .pdf.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Iterable, Optional, Sequence


from experiments import plots, tables
from prompt_tuning import methods
from prompt_tuning.methods import counts
from prompt_tuning.models import t5

REAL_SIZES = ("small", "base", "large", "xl", "xxl")
PROMPT_LENGTHS = (1, 5, 10, 20, 50, 100)
PREFIX_MLP_HIDDEN = 512         # Li & Liang's reparameterisation width (mid_dim)
WARP_CLASSES = 2
PROMPT_DESIGN_TOKENS = (500, 2000)
LORA_RANK, ADAPTER_SIZE = 8, 64
METHODS = ("model_tuning", "prefix_tuning_train", "prefix_tuning_inference", "warp", "prompt_tuning", "prompt_design",
           "lora", "ia3", "adapters")
COLUMNS = ("model_set", "size", "model_params", "method", "prompt_length", "task_params", "percent")


def prefix_inference(config: t5.T5Config, p: int) -> int:
    d = config.num_heads * config.head_dim
    return 2 * p * d * (config.num_encoder_layers + 2 * config.num_decoder_layers)


def prefix_training(config: t5.T5Config, p: int, hidden: int = PREFIX_MLP_HIDDEN) -> int:
    h, d = config.emb_dim, config.num_heads * config.head_dim
    total = 0
    for layers in (config.num_encoder_layers, config.num_decoder_layers, config.num_decoder_layers):
        out = 2 * d * layers
        total += p * h + (h * hidden + hidden) + (hidden * out + out)
    return total


def warp(config: t5.T5Config, p: int, classes: int = WARP_CLASSES) -> int:
    return p * config.emb_dim + classes * config.emb_dim + classes


def prompt_tuning(config: t5.T5Config, p: int) -> int:
    return p * config.emb_dim


def lora(config: t5.T5Config, rank: int = LORA_RANK) -> int:
    attentions = config.num_encoder_layers + 2 * config.num_decoder_layers
    return 2 * attentions * rank * (config.emb_dim + config.num_heads * config.head_dim)


def ia3(config: t5.T5Config) -> int:
    attentions = config.num_encoder_layers + 2 * config.num_decoder_layers
    layers = config.num_encoder_layers + config.num_decoder_layers
    return 2 * attentions * config.num_heads * config.head_dim + layers * config.mlp_dim


def adapters(config: t5.T5Config, size: int = ADAPTER_SIZE) -> int:
    sublayers = 2 * config.num_encoder_layers + 3 * config.num_decoder_layers
    return sublayers * (2 * size * config.emb_dim + size + config.emb_dim)


def counted(config: t5.T5Config, method: str, p=None) -> int:
    """The method's trainable parameters counted from its module's parameter tree, checked against the closed form.

    Raises AssertionError when the two differ.
    """
    tree, closed = {
        "prefix_tuning_train": (lambda: counts.trainable_parameters(config, methods.Prefix(p, mlp_hidden=PREFIX_MLP_HIDDEN)),
                                lambda: prefix_training(config, p)),
        "prefix_tuning_inference": (lambda: counts.trainable_parameters(config, methods.Prefix(p)),
                                    lambda: prefix_inference(config, p)),
        "prompt_tuning": (lambda: counts.prompt_parameters(config, p), lambda: prompt_tuning(config, p)),
        "lora": (lambda: counts.trainable_parameters(config, methods.LoRA(rank=LORA_RANK)), lambda: lora(config)),
        "ia3": (lambda: counts.trainable_parameters(config, methods.IA3()), lambda: ia3(config)),
        "adapters": (lambda: counts.trainable_parameters(config, methods.Adapters(ADAPTER_SIZE)),
                     lambda: adapters(config)),
    }[method]
    got, expected = tree(), closed()
    assert got == expected, f"{method} (P = {p}): {got} parameters in the module tree, closed form {expected}"
    return got


def method_rows(model_set: str, size: str, config: t5.T5Config,
                lengths: Sequence[int] = PROMPT_LENGTHS) -> list[dict]:
    n = t5.num_parameters(config)
    rows = [("model_tuning", "", n)]
    for p in lengths:
        rows += [("prefix_tuning_train", p, counted(config, "prefix_tuning_train", p)),
                 ("prefix_tuning_inference", p, counted(config, "prefix_tuning_inference", p)),
                 ("warp", p, warp(config, p)), ("prompt_tuning", p, counted(config, "prompt_tuning", p))]
    rows += [("prompt_design", t, t) for t in PROMPT_DESIGN_TOKENS]
    rows += [(m, "", counted(config, m)) for m in ("lora", "ia3", "adapters")]
    return [{"model_set": model_set, "size": size, "model_params": n, "method": m, "prompt_length": p,
             "task_params": c, "percent": 100.0 * c / n} for m, p, c in rows]


def table(ladders: Iterable[tuple[str, Sequence[tuple[str, t5.T5Config]]]]) -> list[dict]:
    """[(model_set, [(size, config), ...]), ...] -> rows for every method and length."""
    rows = []
    for model_set, configs in ladders:
        for size, config in configs:
            rows += method_rows(model_set, size, config)
    return rows


def real_sizes() -> list[tuple[str, t5.T5Config]]:
    return [(s, t5.get_config(s)) for s in REAL_SIZES]


def load_ladder_json(path: str) -> list[tuple[str, t5.T5Config]]:
    """{name: {T5Config fields}} or [{"name": ..., fields...}] -> [(name, config)]."""
    with open(path) as f:
        data = json.load(f)
    items = data.items() if isinstance(data, dict) else [(d.pop("name"), d) for d in data]
    out = []
    for name, fields in items:
        fields = dict(fields)
        if "mlp_activations" in fields:
            fields["mlp_activations"] = tuple(fields["mlp_activations"])
        out.append((str(name), t5.T5Config(**fields)))
    return out


def write_csv(rows: Sequence[dict], path: str) -> None:
    """Fig 4's table (COLUMNS; percent to 6 significant digits)."""
    tables.write_csv(path, [{**r, "percent": f"{r['percent']:.6g}"} for r in rows], COLUMNS)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.parameters", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="experiments/results/parameters", help="output directory")
    ap.add_argument("--ladder", default=None, help="comma-separated names of prompt_tuning.models.t5 CONFIGS")
    ap.add_argument("--ladder-json", default=None, help="a JSON file of {name: T5Config fields}")
    ap.add_argument("--ladder-name", default="ladder", help="model_set name of the ladder")
    ap.add_argument("--backend", default=None,
                    help="add a sweep backend's sizes as a ladder named after it (e.g. recall: its rungs' gin files)")
    args = ap.parse_args(argv)
    ladders = [("t5_1_1", real_sizes())]
    if args.backend:
        from experiments import spec as S
        from experiments.backends import get_backend

        try:
            backend = get_backend(args.backend)
        except S.SpecError as e:  # an unknown name
            ap.error(str(e))
        ladders.append((backend.name, [(size, backend.size_config(size)) for size in backend.sizes]))
    extra = []
    if args.ladder:
        extra += [(n, t5.get_config(n)) for n in args.ladder.split(",") if n]
    if args.ladder_json:
        extra += load_ladder_json(args.ladder_json)
    if extra:
        ladders.append((args.ladder_name, extra))
    rows = table(ladders)
    csv_path = os.path.join(args.out, "parameters.csv")
    write_csv(rows, csv_path)
    _, written = plots.plot_parameters(plots.read_csv(csv_path), os.path.join(args.out, "parameters"))
    print("\n".join([csv_path] + written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
