"""The SentencePiece trainer (the recall world's vocabulary): T5's special ids, whole-word label pieces,
byte-identical rebuilds, room for the 100 extra ids. On a small seeded corpus written here."""
import random

import pytest
import sentencepiece as spm

from prompt_tuning.data.recall_world import vocab

LABELS = ("True", "False", "entailment", "contradiction")


def _corpus(path, lines=3000):
    rng = random.Random(0)
    syllables = "ba de fi go ku la me ni po ru sa te vi zo".split()
    names = sorted({"".join(rng.choice(syllables) for _ in range(3)).capitalize() for _ in range(300)})
    places = sorted({"".join(rng.choice(syllables) for _ in range(2)).capitalize() for _ in range(100)})
    with open(path, "w") as f:
        for _ in range(lines):
            n, x = rng.choice(names), rng.choice(places)
            f.write(f"{n} lives in {x}. Does {n} live in {x}? {rng.choice(LABELS[:2])}. "
                    f"{n} is from {x}: {rng.choice(LABELS[2:])}.\n")
    return str(path)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("vocab")
    paths = []
    for name in ("a", "b"):
        (d / name).mkdir()
        paths.append(vocab.train_vocab(_corpus(d / name / "corpus.txt"), str(d / name / "spm.model"), vocab_size=600))
    return paths


def test_special_ids_are_t5s_and_vocab_size_is_an_upper_bound(built):
    sp = spm.SentencePieceProcessor(model_file=built[0])
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    assert 100 < sp.get_piece_size() <= 600


def test_rebuild_is_byte_identical(built):
    assert open(built[0], "rb").read() == open(built[1], "rb").read()


def test_label_words_are_single_pieces(built):
    sp = spm.SentencePieceProcessor(model_file=built[0])
    for word in LABELS:
        assert len(sp.encode(word)) == 1, word


def test_model_vocab_size_leaves_room_for_100_extra_ids(built):
    sp = spm.SentencePieceProcessor(model_file=built[0])
    n = vocab.model_vocab_size(built[0])
    assert n % 128 == 0 and n >= sp.get_piece_size() + 100
