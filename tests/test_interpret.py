"""Nearest-neighbour reading of prompts on tables where the answer is known."""
import numpy as np
import pytest

from prompt_tuning import interpret
from tests.conftest import shared_path


class FakeVocab:
    """ids 0..V-1 <-> 'w<id>'; a label 'a+b' encodes to the ids of its parts."""

    def __init__(self, names):
        self.names = list(names)
        self.vocab_size = len(self.names)

    def encode(self, text):
        return [self.names.index(part) for part in text.split("+")]

    def decode(self, ids):
        return " ".join(self.names[i] for i in ids)


def _table(v=40, h=16, seed=0):
    return np.random.default_rng(seed).normal(size=(v, h)).astype(np.float32)


def test_neighbours_are_the_rows_a_prompt_was_built_from_whatever_their_scale():
    table = _table()
    rng = np.random.default_rng(1)
    picks = [7, 3, 31]
    # Scaled copies plus small noise: cosine ignores the scale, Euclid would not.
    prompt = np.stack([s * table[i] for i, s in zip(picks, (10.0, 0.1, 3.0))])
    prompt += 0.01 * rng.normal(size=prompt.shape)
    ids, sims = interpret.nearest_neighbours(prompt, table, k=4)
    assert ids.shape == sims.shape == (3, 4)
    assert ids[:, 0].tolist() == picks
    assert (sims[:, 0] > 0.99).all() and (np.diff(sims, axis=1) <= 0).all()
    # Agrees with a brute-force cosine.
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    brute = np.argsort(-(prompt / np.linalg.norm(prompt, axis=1, keepdims=True)) @ unit.T, axis=1)[:, :4]
    np.testing.assert_array_equal(ids, brute)


def test_candidates_are_limited_to_the_vocabulary_and_zero_rows_never_win():
    table = _table(v=12)
    table[5] = 0.0
    table[11] = table[2] * 4  # a padding row parallel to id 2, beyond the vocabulary
    prompt = table[[2]] + 1e-3
    ids, _ = interpret.nearest_neighbours(prompt, table, k=12, num_candidates=11)
    assert 11 not in ids[0] and ids[0, -1] == 5 and ids[0, 0] == 2
    ids, _ = interpret.nearest_neighbours(prompt, table, k=3, vocabulary=FakeVocab([f"w{i}" for i in range(11)]))
    assert ids.shape == (1, 3) and 11 not in ids[0]
    with pytest.raises(interpret.InterpretError, match="width"):
        interpret.nearest_neighbours(np.ones((1, 3)), table)


def test_label_report_finds_labels_at_their_init_positions():
    names = [f"w{i}" for i in range(40)]
    vocab = FakeVocab(names)
    table = _table()
    # Position 0: the label 'w4' itself; position 1: the mean of 'w8+w9' (class-label init of a
    # two-piece label); position 2: far from every label token.
    far = -table[[4, 8, 9]].sum(0)
    prompt = np.stack([table[4], table[[8, 9]].mean(0), far])
    ids, _ = interpret.nearest_neighbours(prompt, table, k=3, vocabulary=vocab)
    report = interpret.label_report(ids, ["w4", "w8+w9", "w20"], vocab)
    assert report[0]["at_own_position"] and report[0]["rank_at_own_position"] == 0 and report[0]["positions"] == [0]
    assert report[1]["token_ids"] == [8, 9] and report[1]["at_own_position"] and 2 not in report[1]["positions"]
    assert not report[2]["at_own_position"] and report[2]["rank_at_own_position"] is None
    s = interpret.summary(ids, report)
    assert s["labels_at_own_position"] == 2 and s["labels"] == 3 and s["distinct_top1"] == 3
    pieces = interpret.neighbour_pieces(ids, vocab)
    assert pieces[0][0] == "w4"
    assert interpret.format_neighbours(ids, _, pieces).splitlines()[0].startswith("   0: 'w4' (1.00)")
    # {label: ids} needs no vocabulary.
    assert interpret.label_report(ids, {"x": [4]})[0]["positions"] == [0]


def test_smoke_on_the_shared_tiny_embeddings_and_t5_vocabulary():
    import sentencepiece as spm

    table = np.load(shared_path("t5", "tiny_embeddings_32128x4.npy"))
    sp = spm.SentencePieceProcessor(model_file=str(shared_path("t5", "spiece.model")))
    labels = ["▁True", "▁False"]
    ids_of = {lab: [sp.piece_to_id(lab)] for lab in labels}
    prompt = np.stack([table[ids_of[lab][0]] for lab in labels])
    ids, sims = interpret.nearest_neighbours(prompt, table, k=5, vocabulary=sp)
    assert ids.max() < sp.get_piece_size()
    report = interpret.label_report(ids, ids_of)
    assert all(r["at_own_position"] for r in report)
    assert interpret.neighbour_pieces(ids, sp)[0].count("▁True") == 1
