"""The vocabulary: default path, overrides, laziness, sentinels."""
import gin

from prompt_tuning.data import vocab as vocab_lib


def test_default_and_env_override(monkeypatch):
    monkeypatch.delenv(vocab_lib.VOCAB_ENV_VAR, raising=False)
    assert vocab_lib.DEFAULT_VOCAB_PATH == "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"
    assert vocab_lib.resolve_vocab_path() == vocab_lib.DEFAULT_VOCAB_PATH
    monkeypatch.setenv(vocab_lib.VOCAB_ENV_VAR, "/tmp/other.model")
    assert vocab_lib.resolve_vocab_path() == "/tmp/other.model"
    assert vocab_lib.resolve_vocab_path("/x.model") == "/x.model"


def test_lazy_no_file_access_until_used(monkeypatch, tmp_path):
    monkeypatch.delenv(vocab_lib.VOCAB_ENV_VAR, raising=False)
    v = vocab_lib.get_vocabulary(str(tmp_path / "does_not_exist.model"))  # no error: nothing read yet
    assert v is vocab_lib.get_vocabulary(str(tmp_path / "does_not_exist.model"))  # shared per settings
    v2 = vocab_lib.get_vocabulary()  # the GCS default: constructing it must not touch the network
    assert v2.extra_ids == 100


def test_gin_path(t5_vocab_path):
    with gin.unlock_config():
        gin.parse_config([f"get_vocabulary.path = '{t5_vocab_path}'"])
    try:
        v = vocab_lib.get_vocabulary()
        assert v.vocab_size == 32100 and v.eos_id == 1
        assert vocab_lib.sentinel_id(v) == 32099 and v.decode([32099]) == "<extra_id_0>"
        assert vocab_lib.sentinel_id(v, 99) == 32000
    finally:
        gin.clear_config()
