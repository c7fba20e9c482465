"""Packing several examples per row, each segment with its own soft prompt (host side, numpy).

T5X packs examples into rows with segment ids so that attention never crosses
examples; the reference prompt-tuning code does not pack ("Prompt Tuning does
not currently support packing of examples") because its prompt is one block
in front of the row. Here every segment carries its own P prompt slots,
placed in front of its tokens exactly as `prompts.prepend_prompt` places the
prompt in front of an unpacked example:

    encoder row   [p0 .. pP-1 x1 .. xn | p0 .. pP-1 y1 .. ym | 0 ...]     width W
    segment ids   [1  ..  1   1  ..  1 | 2  ..  2   2  ..  2 | 0 ...]
    prompt slots  [0  ..  P-1 -1 .. -1 | 0  ..  P-1 -1 .. -1 | -1 ...]
    decoder row   [targets of x | targets of y | 0 ...]                   width L
    segment ids   [1 ........ 1 | 2 ........ 2 | 0 ...]

The model (`t5.T5(..., encoder_segment_ids=, encoder_prompt_slots=,
decoder_segment_ids=)`) writes the prompt vectors into the slots
(`prompts.place_prompts`; with a PromptBank, `encoder_prompt_index` picks each
segment's prompt), masks attention to the segment (encoder self-attention,
decoder self- and cross-attention) and keeps the row's relative position
bias, which inside a contiguous segment is the segment's own. Every segment
therefore gets the logits its example gets alone, and the batch loss (a sum
over target tokens over their count) is the unpacked batch's.

The decoder rows keep each example's own `decoder_input_tokens` (already
shifted right per example: a segment starts with the start id 0), so no
position of one segment is fed a token of another.

Packing is first-fit decreasing on the encoder width (P + input tokens), a
pure function of the examples given, and pads the row count up to a multiple
of `row_multiple` so that a run compiles only a few shapes.

Shape letters: N examples, T input length, L target length, P prompt length,
R packed rows, W packed encoder width, LW packed decoder width.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

import numpy as np

PACKED_FEATURES = ("encoder_input_tokens", "encoder_segment_ids", "encoder_prompt_slots", "encoder_prompt_index",
                   "decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights", "decoder_segment_ids")
# The features the model takes as keyword arguments (besides the three token arrays).
MODEL_KWARGS = {"encoder_segment_ids": "encoder_segment_ids", "encoder_prompt_slots": "encoder_prompt_slots",
                "decoder_segment_ids": "decoder_segment_ids", "encoder_prompt_index": "prompt_index"}


class PackingError(ValueError):
    """Packing settings that cannot hold the examples (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Packing:
    """How to pack: rows of `width` encoder slots (prompts included) and `target_width` decoder slots.

    prompt_length  P, the slots each segment's prompt takes (0: an unprompted model)
    row_multiple   the row count is padded up to a multiple of this (fewer compiled shapes)
    """

    width: int
    target_width: int
    prompt_length: int
    row_multiple: int = 1

    def __post_init__(self):
        for name in ("width", "target_width", "row_multiple"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PackingError(f"packing {name} must be a positive int, got {value!r}")
        if not isinstance(self.prompt_length, int) or self.prompt_length < 0:
            raise PackingError(f"packing prompt_length must be an int >= 0, got {self.prompt_length!r}")
        if self.prompt_length >= self.width:
            raise PackingError(f"packing width {self.width} leaves no room after a prompt of {self.prompt_length}")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each of the N examples went: its row, first encoder slot (its prompt's) and first decoder
    slot, its input and target token counts; all [N] int arrays."""

    row: np.ndarray
    encoder_start: np.ndarray
    decoder_start: np.ndarray
    input_length: np.ndarray
    target_length: np.ndarray
    rows: int


def token_lengths(tokens: np.ndarray) -> np.ndarray:
    """[N, T] -> [N] tokens up to and including the last non-zero one."""
    nonzero = np.asarray(tokens) != 0
    return np.where(nonzero.any(axis=1), tokens.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)


def plan(input_lengths: np.ndarray, target_lengths: np.ndarray, packing: Packing) -> Layout:
    """First-fit decreasing placement of N examples (by P + input length, ties in index order).

    Raises PackingError for an example that does not fit an empty row.
    """
    inputs, targets = np.asarray(input_lengths, np.int64), np.asarray(target_lengths, np.int64)
    need = inputs + packing.prompt_length
    too_wide = np.flatnonzero((need > packing.width) | (targets > packing.target_width))
    if too_wide.size:
        i = int(too_wide[0])
        raise PackingError(f"example {i} needs {need[i]} encoder slots (prompt {packing.prompt_length} + "
                           f"{inputs[i]} tokens) and {targets[i]} decoder slots; rows have {packing.width} and "
                           f"{packing.target_width} (raise the packing widths)")
    n = len(inputs)
    row, enc_start, dec_start = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    enc_used, dec_used = [], []
    for i in np.argsort(-need, kind="stable"):
        for r in range(len(enc_used)):
            if enc_used[r] + need[i] <= packing.width and dec_used[r] + targets[i] <= packing.target_width:
                break
        else:
            r = len(enc_used)
            enc_used.append(0)
            dec_used.append(0)
        row[i], enc_start[i], dec_start[i] = r, enc_used[r], dec_used[r]
        enc_used[r] += need[i]
        dec_used[r] += targets[i]
    rows = -(-max(len(enc_used), 1) // packing.row_multiple) * packing.row_multiple
    return Layout(row, enc_start, dec_start, inputs, targets, rows)


def pack(features: Mapping[str, np.ndarray], packing: Packing,
         prompt_index: Optional[np.ndarray] = None) -> tuple[dict[str, np.ndarray], Layout]:
    """Unpacked features (encoder_input_tokens [N, T], decoder_* [N, L]) -> packed int32 features
    (PACKED_FEATURES: encoder ones [R, W], decoder ones [R, LW]) and the Layout.

    `prompt_index` [N] (PromptBank rows, one per example) fills encoder_prompt_index at each
    segment's slots (0 elsewhere, and everywhere when None).
    """
    enc = np.asarray(features["encoder_input_tokens"])
    targets = np.asarray(features["decoder_target_tokens"])
    layout = plan(token_lengths(enc), token_lengths(targets), packing)
    p, r = packing.prompt_length, layout.rows
    out = {k: np.zeros((r, packing.width), np.int32) for k in PACKED_FEATURES if k.startswith("encoder")}
    out["encoder_prompt_slots"][:] = -1
    out.update({k: np.zeros((r, packing.target_width), np.int32) for k in PACKED_FEATURES if k.startswith("decoder")})
    segment = np.zeros(r, np.int64)
    index = np.zeros(len(enc), np.int64) if prompt_index is None else np.asarray(prompt_index, np.int64)
    for i in np.lexsort((layout.encoder_start, layout.row)):  # in row order, so segment ids count up
        row, e, d = layout.row[i], layout.encoder_start[i], layout.decoder_start[i]
        n_in, n_t = layout.input_length[i], layout.target_length[i]
        segment[row] += 1
        out["encoder_segment_ids"][row, e:e + p + n_in] = segment[row]
        out["encoder_prompt_slots"][row, e:e + p] = np.arange(p)
        out["encoder_prompt_index"][row, e:e + p] = index[i]
        out["encoder_input_tokens"][row, e + p:e + p + n_in] = enc[i, :n_in]
        out["decoder_segment_ids"][row, d:d + n_t] = segment[row]
        for k in ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights"):
            out[k][row, d:d + n_t] = np.asarray(features[k])[i, :n_t]
    return out, layout


def unpack(values: np.ndarray, layout: Layout, length: int) -> np.ndarray:
    """Per-decoder-slot values [R, LW, ...] (e.g. token log-likelihoods) -> [N, length, ...] per
    example, zero after each example's targets."""
    values = np.asarray(values)
    out = np.zeros((len(layout.row), length) + values.shape[2:], values.dtype)
    for i, (row, start, n) in enumerate(zip(layout.row, layout.decoder_start, layout.target_length)):
        out[i, :n] = values[row, start:start + n]
    return out


def model_kwargs(batch: Mapping) -> dict:
    """The packed features of `batch` as `t5.T5` keyword arguments ({} for an unpacked batch)."""
    return {arg: batch[k] for k, arg in MODEL_KWARGS.items() if k in batch}


def slot_use(layout: Layout, packing: Packing) -> float:
    """Share of the R * W encoder slots holding a prompt vector or a real token."""
    used = int(np.sum(layout.input_length + packing.prompt_length))
    return used / float(layout.rows * packing.width)


def from_settings(width: Optional[int], target_width: Optional[int], row_multiple: int, *, prompt_length: int,
                  targets_length: int, data_axis: int = 1, processes: int = 1) -> Optional[Packing]:
    """The trainer's Packing from gin's train_and_evaluate.pack_* (None when `width` is None).

    `target_width` defaults to 4 x TASK_FEATURE_LENGTHS['targets']. Raises PackingError when the
    row count cannot split over the mesh's data axis (`row_multiple` must be a multiple of it) or
    the run has several processes (packed batches are read whole).
    """
    if width is None:
        return None
    if processes > 1:
        raise PackingError("packing reads whole batches on one process; multi-process runs are not supported")
    if not isinstance(row_multiple, int) or row_multiple < 1 or row_multiple % data_axis:
        raise PackingError(f"pack_row_multiple={row_multiple!r} must be a positive multiple of the mesh's data "
                           f"axis ({data_axis})")
    return Packing(width, target_width or 4 * targets_length, prompt_length, row_multiple)
