"""Reading learned prompts (paper section 7): nearest vocabulary neighbours by cosine.

Each prompt position [H] is compared with every row of the frozen embedding
table [V, H] by cosine similarity; its top-k rows are its neighbours. The
paper finds semantic clusters among them and, with class-label
initialization, the class labels among the neighbours of their positions.

Only rows that are real tokens should compete: T5 1.1 pads its table to
32,128 rows, of which ids >= 32,100 are never produced by the vocabulary, so
`num_candidates` (default: the vocabulary's size when one is given) cuts
them off. Rows of zero norm have no direction and are never neighbours.

Shape letters: P prompt length, H hidden, V vocabulary rows, k neighbours.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np


class InterpretError(ValueError):
    """Inputs that cannot be compared (one-line message)."""


def _unit_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(x, axis=-1)
    safe = np.where(norms > 0, norms, 1.0)
    return x / safe[:, None], norms > 0


def cosine_similarities(prompt, embeddings) -> np.ndarray:
    """prompt [P, H], embeddings [V, H] -> cosine [P, V] (float64; -inf for zero-norm rows)."""
    p = np.asarray(prompt, np.float64)
    e = np.asarray(embeddings, np.float64)
    if p.ndim != 2 or e.ndim != 2:
        raise InterpretError(f"expected prompt [P, H] and embeddings [V, H]; got {p.shape} and {e.shape}")
    if p.shape[1] != e.shape[1]:
        raise InterpretError(f"prompt width {p.shape[1]} != embedding width {e.shape[1]}")
    pu, _ = _unit_rows(p)
    eu, valid = _unit_rows(e)
    sims = pu @ eu.T
    sims[:, ~valid] = -np.inf
    return sims


def vocabulary_size(vocabulary) -> Optional[int]:
    """Number of ids a vocabulary can produce (seqio, sentencepiece, or anything with vocab_size)."""
    if vocabulary is None:
        return None
    if hasattr(vocabulary, "get_piece_size"):  # a sentencepiece processor (vocab_size is a method there)
        return int(vocabulary.get_piece_size())
    size = getattr(vocabulary, "vocab_size", None)
    return int(size) if isinstance(size, (int, np.integer)) else None


def nearest_neighbours(prompt, embeddings, k: int = 5, *, num_candidates: Optional[int] = None,
                       vocabulary=None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows by cosine for each prompt position: (ids [P, k], similarities [P, k]), best first.

    Candidates are ids < num_candidates (default: the vocabulary's size, else all rows).
    Ties are broken by the lower id, so results are deterministic.
    """
    table = np.asarray(embeddings)
    limit = num_candidates if num_candidates is not None else vocabulary_size(vocabulary)
    if limit is not None:
        table = table[: min(int(limit), table.shape[0])]
    sims = cosine_similarities(prompt, table)
    k = min(int(k), sims.shape[1])
    if k < 1:
        raise InterpretError("k must be >= 1")
    # Stable sort on -sim: equal similarities keep id order.
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def piece(vocabulary, token_id: int) -> str:
    """The readable form of one id: its SentencePiece piece when available, else its decoding."""
    tid = int(token_id)
    sp = getattr(vocabulary, "tokenizer", vocabulary)
    if hasattr(sp, "id_to_piece") and hasattr(sp, "get_piece_size") and tid < sp.get_piece_size():
        out = sp.id_to_piece(tid)
    elif hasattr(vocabulary, "decode"):
        out = vocabulary.decode([tid])
    elif callable(vocabulary):
        out = vocabulary(tid)
    else:
        raise InterpretError("vocabulary needs id_to_piece, decode, or to be callable id -> str")
    return out.decode("utf-8") if isinstance(out, bytes) else str(out)


def neighbour_pieces(ids, vocabulary) -> list[list[str]]:
    """ids [P, k] -> the pieces, position by position."""
    return [[piece(vocabulary, t) for t in row] for row in np.asarray(ids)]


def label_token_ids(labels: Union[Sequence[str], Mapping[str, Sequence[int]]], vocabulary=None) -> dict[str, list[int]]:
    """{label: its token ids}; a mapping is taken as given, strings are encoded with `vocabulary`."""
    if isinstance(labels, Mapping):
        return {str(k): [int(t) for t in v] for k, v in labels.items()}
    if vocabulary is None:
        raise InterpretError("encoding label strings needs a vocabulary (or pass {label: ids})")
    encode = getattr(vocabulary, "encode", None)
    if encode is None:
        raise InterpretError("vocabulary has no encode()")
    return {label: [int(t) for t in encode(label)] for label in labels}


def label_report(ids, labels, vocabulary=None) -> list[dict[str, Any]]:
    """Where each class label's tokens appear among the neighbours.

    ids [P, k] from `nearest_neighbours`. For label i (class-label init puts
    it at position i) the entry holds: its token ids; `positions`, every
    position whose neighbours contain at least one of them; `at_own_position`,
    whether position i is among those; `rank_at_own_position`, the best rank
    (0 = nearest) of a label token at position i, or None.
    """
    ids = np.asarray(ids)
    report = []
    for i, (label, tokens) in enumerate(label_token_ids(labels, vocabulary).items()):
        token_set = set(tokens)
        positions = [p for p in range(ids.shape[0]) if token_set.intersection(ids[p].tolist())]
        rank = None
        if i < ids.shape[0]:
            hits = [r for r, t in enumerate(ids[i].tolist()) if t in token_set]
            rank = hits[0] if hits else None
        report.append({
            "label": label, "token_ids": tokens, "positions": positions,
            "at_own_position": rank is not None, "rank_at_own_position": rank,
        })
    return report


def summary(ids, report: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A few numbers for a prompt: distinct nearest neighbours and label coverage."""
    ids = np.asarray(ids)
    labelled = sorted({p for r in report for p in r["positions"]})
    return {
        "positions": int(ids.shape[0]),
        "k": int(ids.shape[1]),
        # The paper notes many positions share their nearest neighbours.
        "distinct_top1": int(len(set(ids[:, 0].tolist()))),
        "positions_with_a_label_neighbour": len(labelled),
        "labels_at_own_position": sum(bool(r["at_own_position"]) for r in report),
        "labels": len(report),
    }


def format_neighbours(ids, sims, pieces: Sequence[Sequence[str]], positions: Optional[Sequence[int]] = None) -> str:
    """Plain-text table: one line per position, `piece (cosine)` best first."""
    ids, sims = np.asarray(ids), np.asarray(sims)
    rows = range(ids.shape[0]) if positions is None else positions
    lines = []
    for p in rows:
        cells = ", ".join(f"{pieces[p][j]!r} ({sims[p, j]:.2f})" for j in range(ids.shape[1]))
        lines.append(f"{p:>4}: {cells}")
    return "\n".join(lines)
