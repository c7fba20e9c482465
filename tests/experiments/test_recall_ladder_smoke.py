"""Smoke-size recall ladder through the package's trainer: world, corpus, vocabulary, two rungs, exports."""
import json
import os
import time

import numpy as np
import pytest

from prompt_tuning.checkpoints import native
from prompt_tuning.data.recall_world import registry
from experiments.recall_world import build_ladder


@pytest.mark.slow
def test_two_rung_ladder_through_the_trainer(tmp_path, monkeypatch):
    t0 = time.time()
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    world = registry.prepare_recall_world(corpus_documents=3000, validation_documents=200, vocab_size=600,
                                          out_dir=str(tmp_path / "world"))  # world, corpus and a vocabulary
    bindings = [f"prepare_recall_world.out_dir='{world['dir']}'", f"prepare_recall_world.vocab_path='{world['vocab_path']}'",
                f"get_vocabulary.path='{world['vocab_path']}'"]
    out = str(tmp_path / "ladder")
    build_ladder.main(["--out_dir", out, "--rungs", "xs,s", "--scale", "0.005", "--rates", "0.02"]
                      + [a for b in bindings for a in ("--gin_binding", b)])
    info = {r: json.load(open(os.path.join(out, r, "ladder.json"))) for r in ("xs", "s")}
    assert info["xs"]["params"] < info["s"]["params"]
    for rung in ("xs", "s"):
        for ckpt in ("untrained", "sc", "lm_10", "lm_50", "lm", "sc_control"):
            assert native.is_native_checkpoint(os.path.join(out, rung, ckpt)), (rung, ckpt)
        trained, init = native.load(os.path.join(out, rung, "lm")), native.load(os.path.join(out, rung, "untrained"))
        assert not np.allclose(trained["token_embedder"]["embedding"], init["token_embedder"]["embedding"])
        sc, control = native.load(os.path.join(out, rung, "sc")), native.load(os.path.join(out, rung, "sc_control"))
        assert not np.allclose(sc["token_embedder"]["embedding"], control["token_embedder"]["embedding"])
    # Resumable at phase granularity: a finished rung is not rebuilt.
    stamp = os.path.getmtime(os.path.join(out, "xs", "lm", "params.safetensors"))
    build_ladder.main(["--out_dir", out, "--rungs", "xs", "--scale", "0.005", "--rates", "0.02"]
                      + [a for b in bindings for a in ("--gin_binding", b)])
    assert os.path.getmtime(os.path.join(out, "xs", "lm", "params.safetensors")) == stamp
    print(f"smoke ladder: {time.time() - t0:.0f} s")
