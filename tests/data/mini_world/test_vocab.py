"""The mini world's SentencePiece model: T5's special ids, whole-word label pieces, byte-identical rebuilds."""
import pytest
import sentencepiece as spm

from prompt_tuning.data.mini_world import corpus, vocab, world as world_lib


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("vocab")
    w = world_lib.build_world(0)
    paths = []
    for name in ("a", "b"):
        c = corpus.write_corpus(str(d / name / "corpus.txt"), w, 3000)
        paths.append(vocab.train_vocab(c, str(d / name / "spm.model"), vocab_size=1000))
    return paths


def test_special_ids_are_t5s(built):
    sp = spm.SentencePieceProcessor(model_file=built[0])
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    assert 500 < sp.get_piece_size() <= 1000


def test_rebuild_is_byte_identical(built):
    assert open(built[0], "rb").read() == open(built[1], "rb").read()


def test_label_words_are_single_pieces(built):
    sp = spm.SentencePieceProcessor(model_file=built[0])
    for word in ("True", "False", "entailment", "contradiction"):
        assert len(sp.encode(word)) == 1, word


def test_model_vocab_size_leaves_room_for_100_extra_ids(built):
    sp = spm.SentencePieceProcessor(model_file=built[0])
    n = vocab.model_vocab_size(built[0])
    assert n % 128 == 0 and n >= sp.get_piece_size() + 100
