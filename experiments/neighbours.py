"""Paper section 7 ("neighbours"): the nearest vocabulary neighbours of a learned prompt.

Claim tested: learned prompt positions have semantically coherent nearest
neighbours (cosine, over the frozen embedding table), and with class-label
initialization the class labels stay among the neighbours of their positions.

    python -m experiments.neighbours --prompt RUN/model/prompts/best.npy --checkpoint CKPT \
        --vocab spm.model [--labels entailment,not_entailment] [-k 5] [--positions 0-9]

CKPT is anything the project loads (T5X, native, Hugging Face; only the
embedding table is read from a T5X checkpoint) or a .npy table [V, H]. Prints
one line per position (`piece (cosine)`, nearest first), then where each label
appears. Seconds for a Base-size table. The library is prompt_tuning/interpret.py;
notebooks/neighbours.ipynb walks through it.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

import numpy as np


def load_embeddings(path: str) -> np.ndarray:
    """The frozen token embedding table [V, H] of a checkpoint, or a .npy table."""
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    from prompt_tuning.checkpoints import loading, t5x

    if t5x.is_t5x_checkpoint(path):
        return np.asarray(t5x.read_variable(path, "token_embedder/embedding"))
    params, _ = loading.load_params(path, loading.config_from_checkpoint(path))
    return np.asarray(params["token_embedder"]["embedding"])


def load_vocabulary(path: str):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=path)


def _positions(text: Optional[str], length: int) -> Sequence[int]:
    if not text:
        return range(length)
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return [p for p in out if 0 <= p < length]


def main(argv: Optional[Sequence[str]] = None) -> int:
    from prompt_tuning import interpret

    ap = argparse.ArgumentParser(prog="python -m experiments.neighbours", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", required=True, help="a prompt .npy [P, H]")
    ap.add_argument("--checkpoint", required=True, help="the frozen model, or an embedding table .npy")
    ap.add_argument("--vocab", required=True, help="the SentencePiece model")
    ap.add_argument("--labels", default="", help="comma-separated class labels (position i = label i)")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--positions", default="", help="e.g. 0-9,50 (default: all)")
    args = ap.parse_args(argv)
    prompt = np.load(args.prompt, allow_pickle=False)
    table = load_embeddings(args.checkpoint)
    vocab = load_vocabulary(args.vocab)
    try:
        ids, sims = interpret.nearest_neighbours(prompt, table, args.k, vocabulary=vocab)
    except interpret.InterpretError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    pieces = interpret.neighbour_pieces(ids, vocab)
    print(interpret.format_neighbours(ids, sims, pieces, _positions(args.positions, len(ids))))
    labels = [x for x in args.labels.split(",") if x]
    if labels:
        report = interpret.label_report(ids, labels, vocab)
        for r in report:
            print(f"label {r['label']!r} (ids {r['token_ids']}): at its own position: {r['at_own_position']} "
                  f"(rank {r['rank_at_own_position']}); among the neighbours of positions {r['positions']}")
        print(interpret.summary(ids, report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
