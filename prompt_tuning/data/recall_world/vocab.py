"""A SentencePiece vocabulary trained on a synthetic corpus (the recall world's), with T5's special ids.

pad=0, eos=1, unk=2 and no bos, like T5's `cc_all.32000` model; seqio's
`SentencePieceVocabulary(path, extra_ids=100)` appends the 100 sentinels
(<extra_id_0> is the last id) used by span corruption.

BPE rather than T5's unigram model: the corpus has only a few hundred distinct
words, and on it the unigram trainer stops at ~450 pieces that split common
words ("work" "s"), while BPE reaches whole-word pieces (~1,800 with
vocab_size=2000), which keeps sequences short and makes every label word
("True", "entailment") a single piece. `hard_vocab_limit=False` makes
`vocab_size` an upper bound: the result is what the corpus supports. Training is single-threaded and seeded, and the input paths are
cleared from the model proto, so the file is byte-identical for a given corpus.
"""
from __future__ import annotations

import io
import os

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_model

EXTRA_IDS = 100


def train_vocab(corpus_path: str, model_path: str, vocab_size: int = 2000) -> str:
    """Trains <model_path> (a .model file) on the corpus; returns its path."""
    os.makedirs(os.path.dirname(model_path) or ".", exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        input=corpus_path, model_writer=buf, model_type="bpe", vocab_size=vocab_size,
        hard_vocab_limit=False, character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        num_threads=1, shuffle_input_sentence=False, minloglevel=2,
    )
    # The proto records the input file names; clear them so the file depends on the corpus only.
    proto = sp_model.ModelProto()
    proto.ParseFromString(buf.getvalue())
    del proto.trainer_spec.input[:]
    tmp = f"{model_path}.tmp{os.getpid()}"  # per process: two commands may prepare one cache at once
    with open(tmp, "wb") as f:
        f.write(proto.SerializeToString())
    os.replace(tmp, model_path)
    return model_path


def model_vocab_size(model_path: str) -> int:
    """T5Config.vocab_size for this vocabulary: pieces + 100 extra ids, rounded up to 128."""
    n = spm.SentencePieceProcessor(model_file=model_path).get_piece_size() + EXTRA_IDS
    return -(-n // 128) * 128
