"""The T5 SentencePiece vocabulary (32,000 pieces + 100 extra ids = 32,100).

Path resolution, first match wins:
  1. the `path` argument (or gin: `get_vocabulary.path = '...'`),
  2. the environment variable `PROMPT_TUNING_VOCAB`,
  3. `DEFAULT_VOCAB_PATH`, the standard `cc_all.32000.100extra` model on GCS.

Nothing is read at import or construction: `seqio.SentencePieceVocabulary`
loads the model on first use (`encode`, `vocab_size`, ...), so registering
tasks never touches the file. Vocabularies are cached per (path, extra_ids)
so every task built from the same settings shares one object (seqio compares
features by vocabulary when mixing tasks).

The extra ids are T5's sentinels: `<extra_id_0>` is id vocab_size - 1,
`<extra_id_1>` is vocab_size - 2, and so on (see `sentinel_id`).
"""
from __future__ import annotations

import functools
import os
from typing import Optional

import gin
import seqio

DEFAULT_VOCAB_PATH = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"
DEFAULT_EXTRA_IDS = 100
VOCAB_ENV_VAR = "PROMPT_TUNING_VOCAB"


def resolve_vocab_path(path: Optional[str] = None) -> str:
    """The path that `get_vocabulary(path)` will use (argument > env var > default)."""
    if path:
        return str(path)
    return os.environ.get(VOCAB_ENV_VAR) or DEFAULT_VOCAB_PATH


@functools.lru_cache(maxsize=None)
def _cached(path: str, extra_ids: int) -> seqio.SentencePieceVocabulary:
    return seqio.SentencePieceVocabulary(path, extra_ids=extra_ids)


@gin.configurable
def get_vocabulary(path: Optional[str] = None, extra_ids: int = DEFAULT_EXTRA_IDS) -> seqio.SentencePieceVocabulary:
    """The T5 SentencePiece vocabulary with `extra_ids` sentinels (lazy; shared per settings)."""
    if extra_ids < 0:
        raise ValueError(f"extra_ids must be >= 0, got {extra_ids}")
    return _cached(resolve_vocab_path(path), int(extra_ids))


def sentinel_id(vocabulary: seqio.Vocabulary, index: int = 0) -> int:
    """Id of `<extra_id_{index}>`: T5 takes sentinels from the end of the vocabulary."""
    return vocabulary.vocab_size - 1 - index
