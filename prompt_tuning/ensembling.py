"""Prompt ensembling and mixed-prompt serving on one frozen model (paper section 6).

K prompts [K, P, H] of the same length sit in a `prompts.PromptBank`; every
batch row b picks its prompt with `prompt_index[b]`. The frozen weights are
shared, so one forward pass serves

- an ensemble: each example replicated K times, row b*K + k under prompt k
  (the paper's "one forward pass with batch size N"), then a majority vote;
- a mixed batch: rows of different tasks, each under its own task's prompt.

Row independence is the invariant everything here relies on: a row's output
depends only on its tokens and its prompt, never on the other rows, so a
mixed batch gives the same answers as separate single-prompt batches
(tested bit for bit on tokens).

Majority vote and its tie rule (the paper does not state one):
  1. each prompt casts one vote for its answer; an answer equal to `abstain`
     (an invalid generation, class -1 in the paper) casts no vote;
  2. the answer with the most votes wins;
  3. among answers tied for the most votes, the one whose voters' summed
     log-likelihood of it is highest wins (with equal counts this is the
     higher mean confidence);
  4. if still tied (no scores given, or equal sums), the answer of the
     lowest-indexed prompt among the tied answers wins.
  If every prompt abstains, the ensemble answer is `abstain`.

Shape letters: B batch (examples), K prompts, T input length, P prompt length,
H hidden, L decoder length, C classes (verbalizers).
"""
from __future__ import annotations

import functools
from typing import Any, Hashable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning import prompts
from prompt_tuning.models import decoding, t5

Array = jax.Array


class EnsembleError(ValueError):
    """Prompts or inputs that cannot be served together (one-line message)."""


# ----------------------------------------------------------------- the bank


def stack_prompts(prompt_list: Sequence[Any]) -> np.ndarray:
    """K prompts, each [P, H] -> bank [K, P, H] float32; all must share one shape.

    Prompts of different lengths cannot share a batch: padding the shorter
    ones would shift every input position and change their outputs.
    """
    if not prompt_list:
        raise EnsembleError("no prompts to stack")
    arrays = [np.asarray(p, np.float32) for p in prompt_list]
    for i, a in enumerate(arrays):
        if a.ndim != 2:
            raise EnsembleError(f"prompt {i} has shape {a.shape}; a prompt is [P, H]")
        if a.shape != arrays[0].shape:
            raise EnsembleError(
                f"prompt {i} has shape {a.shape}, prompt 0 has {arrays[0].shape}; a bank needs one [P, H] shape"
            )
    return np.stack(arrays)


def bank_model(config: t5.T5Config, num_prompts: int, length: int) -> t5.T5:
    """T5 whose encoder prompt is a K-prompt bank indexed per row."""
    return t5.T5(config, functools.partial(prompts.PromptBank, num_prompts=num_prompts, length=length))


def bank_params(frozen_params: Mapping, bank: Any) -> dict:
    """Frozen (unboxed) params + bank [K, P, H] -> the params of `bank_model`.

    Any prompt already in `frozen_params` (a single-prompt run's tree) is
    replaced; the frozen arrays are shared, not copied.
    """
    bank = jnp.asarray(bank, jnp.float32)
    if bank.ndim != 3:
        raise EnsembleError(f"a prompt bank is [K, P, H]; got shape {bank.shape}")
    width = frozen_params["token_embedder"]["embedding"].shape[1]
    if bank.shape[2] != width:
        raise EnsembleError(f"prompt width {bank.shape[2]} != the model's embedding width {width}")
    params = dict(frozen_params)
    encoder = {k: v for k, v in frozen_params["encoder"].items() if k != "prompt"}
    encoder["prompt"] = {"prompt": bank}
    params["encoder"] = encoder
    return params


def bank_size(params: Mapping) -> tuple[int, int]:
    """(K, P) of a bank parameter tree."""
    try:
        k, p, _ = params["encoder"]["prompt"]["prompt"].shape
    except (KeyError, ValueError):
        raise EnsembleError("params have no [K, P, H] prompt bank at encoder/prompt/prompt; use bank_params") from None
    return int(k), int(p)


def _check_index(prompt_index, num_prompts: int, batch: int) -> jnp.ndarray:
    idx = np.asarray(prompt_index)
    if idx.shape != (batch,):
        raise EnsembleError(f"prompt_index has shape {idx.shape}, expected ({batch},)")
    if idx.size and (idx.min() < 0 or idx.max() >= num_prompts):
        raise EnsembleError(f"prompt_index must lie in [0, {num_prompts}); got [{idx.min()}, {idx.max()}]")
    return jnp.asarray(idx, jnp.int32)


# ------------------------------------------------------------ mixed batches


def serve_mixed(model: t5.T5, params: Mapping, encoder_input_tokens, prompt_index, *,
                max_decode_length: int) -> np.ndarray:
    """Greedy outputs [B, L] for a batch whose row b uses prompt prompt_index[b].

    The prompts may belong to different tasks: one frozen model serves them all.
    """
    k, _ = bank_size(params)
    tokens = jnp.asarray(encoder_input_tokens, jnp.int32)
    idx = _check_index(prompt_index, k, tokens.shape[0])
    return np.asarray(decoding.greedy_decode(model, params, tokens, max_decode_length=max_decode_length,
                                             prompt_index=idx))


def shift_right(targets) -> np.ndarray:
    """Decoder inputs for teacher forcing: targets [B, L] shifted right, BOS = 0."""
    targets = np.asarray(targets)
    return np.concatenate([np.zeros((targets.shape[0], 1), targets.dtype), targets[:, :-1]], axis=1)


def score_mixed(model: t5.T5, params: Mapping, encoder_input_tokens, decoder_target_tokens, prompt_index) -> np.ndarray:
    """log p(target row b | input row b, prompt prompt_index[b]) [B], summed over tokens."""
    k, _ = bank_size(params)
    tokens = jnp.asarray(encoder_input_tokens, jnp.int32)
    idx = _check_index(prompt_index, k, tokens.shape[0])
    targets = np.asarray(decoder_target_tokens, np.int32)
    return np.asarray(decoding.sequence_log_likelihood(
        model, params, tokens, jnp.asarray(shift_right(targets)), jnp.asarray(targets), idx
    ))


# ---------------------------------------------------------------- ensembles


def replicate(encoder_input_tokens, num_prompts: int) -> tuple[np.ndarray, np.ndarray]:
    """[B, T] -> tokens [B*K, T], prompt_index [B*K]: row b*K + k is example b under prompt k."""
    tokens = np.asarray(encoder_input_tokens)
    rows = np.repeat(tokens, num_prompts, axis=0)
    index = np.tile(np.arange(num_prompts, dtype=np.int32), tokens.shape[0])
    return rows, index


def ensemble_generate(model: t5.T5, params: Mapping, encoder_input_tokens, *,
                      max_decode_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Every example under every prompt, in one batch of B*K rows.

    Returns (tokens [B, K, L], scores [B, K]): each prompt's greedy output and
    its own log-likelihood of that output (the tie-break confidence), the
    latter from one teacher-forced pass over the same B*K rows.
    """
    k, _ = bank_size(params)
    tokens, index = replicate(encoder_input_tokens, k)
    out = serve_mixed(model, params, tokens, index, max_decode_length=max_decode_length)
    scores = score_mixed(model, params, tokens, out, index)
    b = tokens.shape[0] // k
    return out.reshape(b, k, -1), scores.reshape(b, k)


def ensemble_rank(model: t5.T5, params: Mapping, encoder_input_tokens, label_targets) -> np.ndarray:
    """Rank classification under every prompt: log p(label c | example b, prompt k) [B, K, C].

    label_targets [C, L] are the verbalizers' token ids (with EOS, 0-padded).
    One batch of B*K*C rows: row (b*K + k)*C + c.
    """
    k, _ = bank_size(params)
    labels = np.asarray(label_targets, np.int32)
    c = labels.shape[0]
    tokens, index = replicate(encoder_input_tokens, k)
    b = tokens.shape[0] // k
    scores = score_mixed(model, params, np.repeat(tokens, c, axis=0), np.tile(labels, (b * k, 1)),
                         np.repeat(index, c))
    return scores.reshape(b, k, c)


def majority_vote(answers: Sequence[Sequence[Hashable]], scores: Optional[Any] = None,
                  abstain: Hashable = None) -> list:
    """answers [B][K] (hashable), optional scores [B, K] -> the ensemble answer per example.

    The tie rule is the module docstring's: most votes, then the highest
    summed log-likelihood of the tied answer's voters, then the lowest
    prompt index. `abstain` answers do not vote.
    """
    out = []
    for b, row in enumerate(answers):
        votes: dict = {}  # answer -> [count, summed score, first prompt]
        for k, answer in enumerate(row):
            if answer == abstain:
                continue
            s = 0.0 if scores is None else float(np.asarray(scores[b][k]))
            if answer not in votes:
                votes[answer] = [0, 0.0, k]
            votes[answer][0] += 1
            votes[answer][1] += s
        if not votes:
            out.append(abstain)
            continue
        out.append(max(votes, key=lambda a: (votes[a][0], votes[a][1], -votes[a][2])))
    return out


def rank_vote(scores) -> tuple[np.ndarray, np.ndarray]:
    """Rank-classification ensemble: scores [B, K, C] -> (ensemble class [B], per-prompt class [B, K]).

    Each prompt votes for its argmax class; ties follow `majority_vote` with
    each voter's score of its own class.
    """
    scores = np.asarray(scores)
    per_prompt = scores.argmax(axis=-1)
    own = np.take_along_axis(scores, per_prompt[..., None], axis=-1)[..., 0]
    voted = majority_vote(per_prompt.tolist(), own)
    return np.asarray(voted, np.int64), per_prompt


# ----------------------------------------------------------------- reporting


def task_score(metrics: Mapping[str, float]) -> float:
    """A task's single score: the mean of its metrics (SuperGLUE convention)."""
    if not metrics:
        raise EnsembleError("no metrics to score")
    return float(np.mean([float(v) for v in metrics.values()]))


def summarize(per_prompt: Sequence[Mapping[str, float]], ensemble: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Table 3's three columns for one task.

    average: each metric's mean over the K prompts; best: the metrics of the
    prompt with the highest task score (first on ties); ensemble: the voted
    predictions' metrics.
    """
    if not per_prompt:
        raise EnsembleError("no per-prompt metrics")
    names = list(per_prompt[0])
    for i, m in enumerate(per_prompt):
        if list(m) != names:
            raise EnsembleError(f"prompt {i} reports metrics {sorted(m)}, prompt 0 reports {sorted(names)}")
    best = max(range(len(per_prompt)), key=lambda i: (task_score(per_prompt[i]), -i))
    return {
        "average": {n: float(np.mean([m[n] for m in per_prompt])) for n in names},
        "best": {n: float(per_prompt[best][n]) for n in names},
        "ensemble": {n: float(ensemble[n]) for n in names},
    }


def summary_rows(summaries: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[dict]:
    """{task: summarize(...)} -> tidy rows {task, metric, average, best, ensemble}.

    A final 'score' row per task is the mean of its metrics, and an 'overall'
    task averages those scores (the SuperGLUE score when the tasks are SuperGLUE).
    """
    rows, scores = [], {c: [] for c in ("average", "best", "ensemble")}
    for task, summary in summaries.items():
        for metric in summary["average"]:
            rows.append({"task": task, "metric": metric, **{c: summary[c][metric] for c in scores}})
        row = {"task": task, "metric": "score"}
        for c in scores:
            row[c] = task_score(summary[c])
            scores[c].append(row[c])
        rows.append(row)
    if summaries:
        rows.append({"task": "overall", "metric": "score", **{c: float(np.mean(v)) for c, v in scores.items()}})
    return rows


def format_table(rows: Sequence[Mapping[str, Any]], scale: float = 100.0) -> str:
    """Markdown table of `summary_rows` (values x `scale`, one decimal)."""
    lines = ["| task | metric | average | best | ensemble |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['metric']} | " + " | ".join(
            f"{scale * r[c]:.1f}" for c in ("average", "best", "ensemble")) + " |")
    return "\n".join(lines)
