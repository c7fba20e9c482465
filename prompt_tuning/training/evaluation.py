"""Evaluation: generate (cached greedy decoding) or rank classification, then the task's metrics.

Both modes end the same way, as seqio's evaluator does: the prediction string
and the target (`targets_pretokenized`) go through the task's
`postprocess_fn(text, example=..., is_target=...)`, then every
`task.predict_metric_fns` is called as `fn(targets, predictions)`.

- 'generate': `decoding.greedy_decode` with a key/value cache, up to
  `max_decode_length` tokens (default: the targets feature length), decoded
  with the task's vocabulary up to the first EOS.
- 'rank': each verbalizer is scored as a target exactly as the task tokenizes
  its targets (`target_affixes`: `<extra_id_0> verbalizer EOS` for the
  `_sentinel` variants, `verbalizer EOS` otherwise), and the best one is the
  prediction. It can never produce an invalid label. Verbalizers come from
  `verbalizers` (gin: train_and_evaluate.verbalizers), else from the data
  package (`data.verbalizers`). Each input is encoded once and its encoding
  shared by all C verbalizers (only the decoder runs C times).

Score metrics (`task.score_metric_fns`) get the gold targets' log-likelihoods.

An eval set whose features hold `encoder_prompt_index` (its task's index, multi-task prompts:
input_pipeline.task_order) is decoded, ranked and scored with that index as the model's prompt_index.

With `packing` (a packing.Packing: gin train_and_evaluate.pack_width, the switch of packed
training) rank classification and the scores run on packed rows, a prompt per segment
(training/packed_eval.py; the same predictions and scores row for row); generation is not packed.
Packing and a task index are exclusive (the trainer refuses multi-task prompts with pack_width).

The early-stopping value is the mean of all metric values (the paper keeps
the checkpoint with the best dev metric, or the mean of a task's metrics)
unless `early_stopping_metric` names one ('task/metric').
"""
from __future__ import annotations

import json
import os
from typing import Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from prompt_tuning import data
from prompt_tuning.models import decoding
from prompt_tuning.training import input_pipeline, packed_eval, packing, partitioning

GENERATE, RANK = "generate", "rank"


class EvaluationError(ValueError):
    """An evaluation that cannot run as configured (one-line message)."""


def as_text(x) -> str:
    """A tf/numpy string feature (bytes) or any value as Python text (UTF-8)."""
    return x.decode("utf-8") if isinstance(x, (bytes, np.bytes_)) else str(x)


def _scalar(value) -> float:
    value = getattr(value, "value", value)  # seqio.metrics.Scalar
    return float(np.asarray(value))


def verbalizers_of(task_name: str, verbalizers: Optional[Mapping[str, Sequence[str]]] = None) -> Optional[list[str]]:
    """The verbalizers rank classification scores for a task: `verbalizers[task_name]` if given,
    else the data package's (`data.verbalizers`); None for a task that generates free text."""
    if verbalizers and verbalizers.get(task_name):
        return list(verbalizers[task_name])
    found = data.verbalizers(task_name)
    return list(found) if found else None


def decode_predictions(vocab, tokens: np.ndarray) -> list[str]:
    """Generated ids [B, L] -> B strings: each row cut at the first EOS, padding dropped, decoded."""
    out = []
    for row in tokens:
        row = [int(t) for t in row]
        if decoding.EOS_ID in row:
            row = row[: row.index(decoding.EOS_ID)]
        out.append(as_text(vocab.decode([t for t in row if t != decoding.PAD_ID])))
    return out


def _targets(task, examples: Sequence[dict]) -> list:
    vocab = task.output_features["targets"].vocabulary
    out = []
    for ex in examples:
        if "targets_pretokenized" in ex:
            text = as_text(ex["targets_pretokenized"])
        else:
            text = decode_predictions(vocab, np.asarray(ex["targets"])[None])[0]
        out.append(_postprocess(task, text, ex, is_target=True))
    return out


def _postprocess(task, text: str, example: dict, is_target: bool):
    fn = task.postprocess_fn
    return fn(text, example=example, is_target=is_target) if fn is not None else text


def _run_batched(fn: Callable, features: dict[str, np.ndarray], batch_size: int, mesh,
                 length_buckets: Optional[Sequence[int]] = None) -> np.ndarray:
    """fn over batches of `features`, results in the stored order. With length buckets the
    examples go through sorted by input length, each batch cut to its bucket."""
    order = input_pipeline.eval_order(features, length_buckets)
    ordered = {k: v[order] for k, v in features.items()} if length_buckets is not None else features
    outs = []
    for chunk, real in input_pipeline.eval_batches(ordered, batch_size, length_buckets):
        result = fn(partitioning.global_batch(chunk, mesh))
        outs.append(partitioning.fetch(result)[:real])
    out = np.concatenate(outs)
    if length_buckets is None:
        return out
    restored = np.empty_like(out)
    restored[order] = out
    return restored


def _with_index(features: Mapping, keys: Sequence[str]) -> dict:
    """`keys` of `features`, plus the task index when the eval set carries one."""
    keys = tuple(keys) + ((input_pipeline.TASK_INDEX,) if input_pipeline.TASK_INDEX in features else ())
    return {k: features[k] for k in keys}


def _buckets(eval_set, length_buckets):
    return input_pipeline.check_length_buckets(length_buckets, eval_set.features["encoder_input_tokens"].shape[1])


def generate(model, params, eval_set, *, batch_size: int, mesh, max_decode_length: int,
             length_buckets: Optional[Sequence[int]] = None) -> list[str]:
    """Greedy predictions (strings, before postprocessing) for every example."""
    fn = lambda b: decoding.greedy_decode(
        model, params, b["encoder_input_tokens"], max_decode_length=max_decode_length,
        prompt_index=b.get(input_pipeline.TASK_INDEX)
    )
    tokens = _run_batched(fn, _with_index(eval_set.features, ["encoder_input_tokens"]), batch_size, mesh,
                          _buckets(eval_set, length_buckets))
    return decode_predictions(eval_set.task.output_features["targets"].vocabulary, tokens)


def _score(model, params, features, batch_size, mesh, length_buckets=None,
           packing: Optional[packing.Packing] = None) -> np.ndarray:
    if packing is not None:
        return packed_eval.target_scores(model, params, features, spec=packing, batch_size=batch_size, mesh=mesh)
    fn = lambda b: decoding.sequence_log_likelihood(
        model, params, b["encoder_input_tokens"], b["decoder_input_tokens"], b["decoder_target_tokens"],
        prompt_index=b.get(input_pipeline.TASK_INDEX)
    )
    keys = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")
    return _run_batched(fn, _with_index(features, keys), batch_size, mesh, length_buckets)


def target_affixes(eval_set) -> tuple[list[int], list[int]]:
    """(prefix, suffix): the token ids the task puts around the encoded target text.

    Read from the task's own tokenized examples: e.g. ([<extra_id_0>], [EOS]) for the `_sentinel`
    variants, ([], [EOS]) for plain targets (also the answer when no example shows it).
    """
    vocab = eval_set.task.output_features["targets"].vocabulary
    for ex in eval_set.examples:
        if "targets_pretokenized" not in ex or "targets" not in ex:
            continue
        ids = [int(t) for t in np.asarray(ex["targets"]).reshape(-1) if int(t) != decoding.PAD_ID]
        text = list(vocab.encode(as_text(ex["targets_pretokenized"])))
        for i in range(len(ids) - len(text) + 1):
            if text and ids[i:i + len(text)] == text:
                return ids[:i], ids[i + len(text):]
    return [], [decoding.EOS_ID]


def verbalizer_targets(vocab, labels: Sequence[str], length: int, prefix: Sequence[int] = (),
                   suffix: Sequence[int] = (decoding.EOS_ID,)) -> np.ndarray:
    """[C, L] token ids of each verbalizer as the task tokenizes targets (prefix + verbalizer +
    suffix, by default verbalizer + EOS), 0-padded; EvaluationError if one does not fit."""
    out = np.zeros((len(labels), length), np.int32)
    for i, label in enumerate(labels):
        ids = list(prefix) + list(vocab.encode(label)) + list(suffix)
        if len(ids) > length:
            raise EvaluationError(f"verbalizer {label!r} needs {len(ids)} target tokens, targets length is {length}")
        out[i, : len(ids)] = ids
    return out


def rank_scores(model, params, eval_set, labels: Sequence[str], *, batch_size: int, mesh,
                length_buckets: Optional[Sequence[int]] = None,
                packing: Optional[packing.Packing] = None) -> np.ndarray:
    """[N, C] log p(label + EOS | input) of every example and label.

    Each input is encoded once per evaluation and its encoding shared by the C
    labels (`decoding.label_log_likelihoods`); `batch_size` counts examples,
    so a decoder batch holds batch_size * C rows. With `packing` each chunk of
    `batch_size` examples is packed into rows (packed_eval.rank_scores; `length_buckets` unused).
    """
    targets = verbalizer_targets(eval_set.task.output_features["targets"].vocabulary, labels,
                                 eval_set.features["decoder_target_tokens"].shape[1], *target_affixes(eval_set))
    dec_in = np.concatenate([np.zeros((len(labels), 1), np.int32), targets[:, :-1]], axis=1)  # shifted right, BOS = 0
    if packing is not None:
        return packed_eval.rank_scores(model, params, eval_set.features["encoder_input_tokens"], dec_in, targets,
                                       spec=packing, batch_size=batch_size, mesh=mesh)
    fn = lambda b: decoding.label_log_likelihoods(model, params, b["encoder_input_tokens"], dec_in, targets,
                                                  prompt_index=b.get(input_pipeline.TASK_INDEX))
    return _run_batched(fn, _with_index(eval_set.features, ["encoder_input_tokens"]), batch_size, mesh,
                        _buckets(eval_set, length_buckets))


def rank(model, params, eval_set, labels: Sequence[str], *, batch_size: int, mesh,
         length_buckets: Optional[Sequence[int]] = None,
         packing: Optional[packing.Packing] = None) -> list[str]:
    """The label with the highest log-likelihood for each example."""
    scores = rank_scores(model, params, eval_set, labels, batch_size=batch_size, mesh=mesh,
                         length_buckets=length_buckets, packing=packing)
    return [labels[j] for j in scores.argmax(axis=1)]


def task_metrics(task, examples: Sequence[dict], predictions: Sequence[str], scores=None) -> dict[str, float]:
    """The task's postprocessed predict (and score) metrics."""
    targets = _targets(task, examples)
    processed = [_postprocess(task, p, ex, is_target=False) for p, ex in zip(predictions, examples)]
    metrics: dict[str, float] = {}
    for fn in task.predict_metric_fns:
        for k, v in fn(targets, processed).items():
            metrics[k] = _scalar(v)
    if scores is not None:
        for fn in task.score_metric_fns:
            for k, v in fn(targets, list(scores)).items():
                metrics[k] = _scalar(v)
    return metrics


def evaluate(model, params, eval_sets, *, mode: str = GENERATE, batch_size: int, mesh,
             max_decode_length: Optional[int] = None,
             verbalizers: Optional[Mapping[str, Sequence[str]]] = None,
             length_buckets: Optional[Sequence[int]] = None,
             packing: Optional[packing.Packing] = None) -> tuple[dict[str, float], dict[str, list]]:
    """({'task/metric': value}, {'task': predictions}) over every eval set.

    mode GENERATE or RANK; `verbalizers` {task: [...]} overrides the data
    package's for RANK. Raises EvaluationError for an unknown mode or a rank
    evaluation of a task without verbalizers. `length_buckets` (input lengths,
    see input_pipeline) evaluates examples sorted by length in batches cut to a
    bucket; predictions and scores come back in the stored order. `packing`
    (packing.Packing) packs rank classification and the scores (packed_eval.py);
    generation then still uses `length_buckets`.
    """
    if mode not in (GENERATE, RANK):
        raise EvaluationError(f"eval mode must be {GENERATE!r} or {RANK!r}, got {mode!r}")
    metrics, predictions = {}, {}
    for es in eval_sets:
        if not es.task.predict_metric_fns and not es.task.score_metric_fns:
            continue  # e.g. a pretraining corpus: only its loss is reported (by the trainer)
        if mode == RANK:
            labels = verbalizers_of(es.name, verbalizers)
            if not labels:
                raise EvaluationError(
                    f"rank classification needs verbalizers for task {es.name!r}; set "
                    f"train_and_evaluate.verbalizers in gin or use eval mode 'generate'"
                )
            preds = rank(model, params, es, labels, batch_size=batch_size, mesh=mesh, length_buckets=length_buckets,
                         packing=packing)
        else:
            length = max_decode_length or es.features["decoder_target_tokens"].shape[1]
            preds = generate(model, params, es, batch_size=batch_size, mesh=mesh, max_decode_length=length,
                             length_buckets=length_buckets)
        scores = (_score(model, params, es.features, batch_size, mesh, _buckets(es, length_buckets), packing)
                  if es.task.score_metric_fns else None)
        for k, v in task_metrics(es.task, es.examples, preds, scores).items():
            metrics[f"{es.name}/{k}"] = v
        predictions[es.name] = preds
    return metrics, predictions


def early_stopping_value(metrics: Mapping[str, float], name: Optional[str] = None) -> Optional[float]:
    """The value to maximise: `metrics[name]`, or the mean of all of them."""
    if not metrics:
        return None
    if name is not None:
        if name not in metrics:
            raise EvaluationError(f"early_stopping_metric {name!r} is not among the metrics {sorted(metrics)}")
        return float(metrics[name])
    return float(np.mean(list(metrics.values())))


def write_predictions(path: str, eval_set, predictions: Sequence[str]) -> None:
    """One jsonl row per example, {'inputs', 'prediction'[, 'target']} (process 0 only), for later
    inspection and paired tests."""
    if jax.process_index() != 0:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for ex, pred in zip(eval_set.examples, predictions):
            row = {"inputs": as_text(ex.get("inputs_pretokenized", "")), "prediction": pred}
            if "targets_pretokenized" in ex:
                row["target"] = as_text(ex["targets_pretokenized"])
            f.write(json.dumps(row) + "\n")
