"""Evaluation on packed rows, a prompt per segment: rank classification, gold-target scores, the loss.

Packed training (training/packing.py) puts several examples in a row, each
segment its own P prompt slots followed by its tokens, with attention kept
inside the segment. Evaluation packs the same way: the eval set is cut into
chunks of `batch_size` examples in the stored order, and each chunk is packed
first-fit decreasing into R rows (R rounded up to a multiple of
`Packing.row_multiple`; one compiled program per distinct R). Every segment
scores exactly as its example alone (tests/training/test_packed_eval.py:
float32, within 1e-5, row for row), so predictions, scores and the loss are
unpacked evaluation's.

- `rank_scores` (rank classification over C verbalizers): the encoder rows are
  packed once; the decoder gets C rows per encoder row, row r*C + c holding
  verbalizer c at every segment of row r (at the segment's decoder slots, with
  its segment id), so each input is encoded once for all C labels, as in
  `decoding.label_log_likelihoods`. -> [N, C].
- `target_scores` (score metrics): the gold targets packed with their inputs -> [N].
- `loss_sums`: the trainer's `eval_step` over packed rows; its sums over target
  tokens (nll_sum, tokens) do not depend on how examples are grouped.

Greedy decoding is not packed (the cached decoder takes one row per example).

Shape letters: N examples, T input length, C labels, L target length, R rows,
W packed encoder width, LW packed decoder width.
"""
from __future__ import annotations

from typing import Callable, Iterator, Mapping

import numpy as np

from prompt_tuning.models import decoding
from prompt_tuning.training import packing, partitioning

_ENCODER = ("encoder_input_tokens", "encoder_segment_ids", "encoder_prompt_slots", "encoder_prompt_index")


def _chunks(n: int, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, n, batch_size):
        yield np.arange(start, min(start + batch_size, n))


def _apply(fn: Callable, params, rows: Mapping[str, np.ndarray], mesh) -> np.ndarray:
    batch = partitioning.global_batch(dict(rows), mesh)
    return partitioning.fetch(fn(
        params, batch["encoder_input_tokens"], batch["decoder_input_tokens"], batch["decoder_target_tokens"],
        batch["encoder_segment_ids"], batch["encoder_prompt_slots"], batch["decoder_segment_ids"],
        batch["encoder_prompt_index"]))


def label_rows(packed: Mapping[str, np.ndarray], layout: packing.Layout, label_inputs: np.ndarray,
               label_targets: np.ndarray, target_width: int) -> dict[str, np.ndarray]:
    """Decoder rows [R*C, LW] scoring C labels in every segment of the packed encoder rows [R, W].

    label_inputs / label_targets [C, L] (inputs shifted right, 0-padded). Row r*C + c holds label c
    at each segment's decoder slots (layout.decoder_start), tagged with that segment's id.
    """
    c = len(label_targets)
    rows = layout.rows
    out = {k: np.zeros((rows * c, target_width), np.int32)
           for k in ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights", "decoder_segment_ids")}
    lengths = packing.token_lengths(label_targets)
    segment = packed["encoder_segment_ids"][layout.row, layout.encoder_start]
    for i, (row, start) in enumerate(zip(layout.row, layout.decoder_start)):
        for j in range(c):
            n, r = lengths[j], row * c + j
            out["decoder_input_tokens"][r, start:start + n] = label_inputs[j, :n]
            out["decoder_target_tokens"][r, start:start + n] = label_targets[j, :n]
            out["decoder_loss_weights"][r, start:start + n] = 1
            out["decoder_segment_ids"][r, start:start + n] = segment[i]
    return out


def rank_scores(model, params, encoder_input_tokens: np.ndarray, label_inputs: np.ndarray,
                label_targets: np.ndarray, *, spec: packing.Packing, batch_size: int, mesh) -> np.ndarray:
    """[N, C] log p(label c | input n), each input encoded once in a packed row.

    encoder_input_tokens [N, T]; label_inputs / label_targets [C, L] as
    `decoding.label_log_likelihoods` takes them (equal scores). Raises
    packing.PackingError for an input (with its prompt) or a label wider than the rows.
    """
    enc = np.asarray(encoder_input_tokens)
    label_targets, label_inputs = np.asarray(label_targets), np.asarray(label_inputs)
    c, longest = len(label_targets), int(packing.token_lengths(label_targets).max())
    slots = np.arange(longest)
    fn = lambda p, *a: decoding.packed_token_log_likelihood(model, p, *a)
    out = np.zeros((len(enc), c), np.float32)
    for idx in _chunks(len(enc), batch_size):
        # Every segment reserves the longest label's decoder slots; the plan packs on those.
        dummy = np.ones((len(idx), longest), np.int32)
        packed, layout = packing.pack({"encoder_input_tokens": enc[idx], "decoder_target_tokens": dummy,
                                       "decoder_input_tokens": dummy, "decoder_loss_weights": dummy}, spec)
        rows = {k: packed[k] for k in _ENCODER}
        rows.update(label_rows(packed, layout, label_inputs, label_targets, spec.target_width))
        ll = _apply(fn, params, rows, mesh)  # [R*C, LW]
        row_of = layout.row[:, None] * c + np.arange(c)[None, :]  # [n, C]
        at = layout.decoder_start[:, None] + slots[None, :]  # [n, longest]
        out[idx] = ll[row_of[:, :, None], at[:, None, :]].sum(axis=-1)
    return out


def target_scores(model, params, features: Mapping[str, np.ndarray], *, spec: packing.Packing, batch_size: int,
                  mesh) -> np.ndarray:
    """[N] log p(gold target | input), the sum over the target tokens, from packed rows.

    features: encoder_input_tokens [N, T], decoder_{input,target}_tokens [N, L] (and
    decoder_loss_weights, else targets > 0).
    """
    fn = lambda p, *a: decoding.packed_token_log_likelihood(model, p, *a)
    targets = np.asarray(features["decoder_target_tokens"])
    out = np.zeros(len(targets), np.float32)
    for idx in _chunks(len(targets), batch_size):
        packed, layout = packing.pack(_chunk(features, idx), spec)
        ll = _apply(fn, params, packed, mesh)  # [R, LW]
        out[idx] = packing.unpack(ll, layout, targets.shape[1]).sum(axis=1)
    return out


def loss_sums(loss_fn: Callable, params, features: Mapping[str, np.ndarray], *, spec: packing.Packing,
              batch_size: int, mesh) -> dict[str, float]:
    """{'nll_sum', 'tokens'} over the whole set: `loss_fn(params, batch)` (the trainer's jitted
    eval_step) on each chunk's packed rows, summed."""
    total = {"nll_sum": 0.0, "tokens": 0.0}
    n = len(features["decoder_target_tokens"])
    for idx in _chunks(n, batch_size):
        packed, _ = packing.pack(_chunk(features, idx), spec)
        sums = partitioning.fetch(loss_fn(params, partitioning.global_batch(packed, mesh)))
        for k in total:
            total[k] += float(sums[k])
    return total


def _chunk(features: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    out = {k: np.asarray(features[k])[idx] for k in ("encoder_input_tokens", "decoder_input_tokens",
                                                      "decoder_target_tokens")}
    weights = features.get("decoder_loss_weights")
    out["decoder_loss_weights"] = (np.asarray(weights)[idx] if weights is not None
                                   else (out["decoder_target_tokens"] > 0).astype(np.int32))
    return out
