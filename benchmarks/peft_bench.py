"""The same prompt-tuning step in Hugging Face transformers + peft (PyTorch, CPU).

A `T5ForConditionalGeneration` with the T5 1.1 shape of the spec (gated GELU,
untied logits without output scaling, random weights: the same parameter count as ours) wrapped by `peft.get_peft_model` with
`PromptTuningConfig(task_type=SEQ_2_SEQ_LM, num_virtual_tokens=P,
num_transformer_submodules=1)`: one prompt, on the encoder only, as ours.
The step is forward with labels (HF's cross entropy), backward, and
transformers' Adafactor with the paper's prompt-tuning settings (learning
rate 0.3, no parameter scaling, clipping 1.0, decay exponent 0.8, weight
decay 1e-5). Dropout is the spec's, in train mode, as ours.

torch, transformers and peft are optional: `available()` says whether they
are installed, and the runner skips this comparison with a message if not.
"""
from __future__ import annotations

import importlib.util
import os
import statistics
import time

import numpy as np

from benchmarks import flops, machine
from benchmarks.spec import Spec
from benchmarks.train_bench import model_config

POOL = 256  # examples held as tensors; each step takes B of them

REQUIRED = ("torch", "transformers", "peft")


def missing() -> list[str]:
    """The optional packages this comparison needs that are not installed."""
    return [m for m in REQUIRED if importlib.util.find_spec(m) is None]


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _torch_matmul_peak(n: int, device, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / min(times)


def build(spec: Spec):
    """(peft model in train mode, its Adafactor, trainable parameters, device, our T5Config)."""
    import torch
    import transformers
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
    from transformers.optimization import Adafactor

    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = model_config(spec)
    if cfg.mlp_activations != ("gelu", "linear"):
        raise ValueError(f"the HF comparison assumes T5 1.1's gated GELU, got {cfg.mlp_activations}")
    hf_config = transformers.T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.emb_dim, d_kv=cfg.head_dim, d_ff=cfg.mlp_dim,
        num_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers, num_heads=cfg.num_heads,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance, dropout_rate=spec.dropout_rate,
        feed_forward_proj="gated-gelu", tie_word_embeddings=cfg.logits_via_embedding, decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=1,
    )
    model = transformers.T5ForConditionalGeneration(hf_config)
    if not cfg.logits_via_embedding and model.lm_head.weight is model.shared.weight:
        # transformers 5 always ties T5's output layer to the embedding (the config keeps only
        # "no output scaling" from tie_word_embeddings=False); T5 1.1 has its own [H, V] layer.
        model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    peft_config = PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=spec.prompt_len, num_transformer_submodules=1,
        token_dim=cfg.emb_dim, num_attention_heads=cfg.num_heads, num_layers=cfg.num_encoder_layers,
        prompt_tuning_init=PromptTuningInit.RANDOM,
    )
    model = get_peft_model(model, peft_config).to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = Adafactor(trainable, lr=0.3, scale_parameter=False, relative_step=False, warmup_init=False,
                    clip_threshold=1.0, decay_rate=-0.8, weight_decay=1e-5)
    return model, opt, trainable, device, cfg


def run(spec: Spec) -> dict:
    import torch

    rss_start = machine.rss_mb()
    model, opt, trainable, device, cfg = build(spec)

    rng = np.random.default_rng(0)
    inputs = torch.as_tensor(rng.integers(3, cfg.vocab_size, (POOL, spec.input_len)), dtype=torch.long,
                             device=device)
    targets = rng.integers(3, cfg.vocab_size, (POOL, spec.target_len))
    targets[:, -1] = 1
    labels = torch.as_tensor(targets, dtype=torch.long, device=device)
    dec_in = torch.as_tensor(np.concatenate([np.zeros((POOL, 1), int), targets[:, :-1]], 1), dtype=torch.long,
                             device=device)
    mask = torch.ones_like(inputs)
    rss_setup = machine.rss_mb()

    times, losses = [], []
    for i in range(spec.peft_warmup + spec.peft_steps):
        idx = torch.as_tensor(np.random.default_rng([0, i]).permutation(POOL)[: spec.batch], device=device)
        t0 = time.perf_counter()
        out = model(input_ids=inputs[idx], attention_mask=mask[idx], decoder_input_ids=dec_in[idx],
                    labels=labels[idx])
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))  # waits for the step (a CUDA sync too)
        if i >= spec.peft_warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    analytic = flops.step_flops(cfg, flops.PROMPT, batch=spec.batch, encoder_len=spec.encoder_len,
                                target_len=spec.target_len)
    return {
        "trainable_params": int(sum(p.numel() for p in trainable)),
        "frozen_params": int(sum(p.numel() for p in model.parameters() if not p.requires_grad)),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "step_s": times,
        "median_step_s": median,
        "examples_per_s": spec.batch / median,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "finite": bool(np.all(np.isfinite(losses))),
        "flops_analytic": analytic,
        "achieved_flops": analytic["total"] / median,
        "torch_matmul_peak_flops": _torch_matmul_peak(spec.matmul_size, device),
        "rss_mb": {"start": rss_start, "after_setup": rss_setup, "peak": machine.peak_rss_mb()},
    }
