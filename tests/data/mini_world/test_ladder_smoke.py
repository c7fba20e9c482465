"""Smoke-size ladder: world, corpus, vocabulary, two sizes pretrained a few steps, checkpoints loadable."""
import json
import os

import numpy as np
import pytest

from prompt_tuning.checkpoints import native

ladder = pytest.importorskip("experiments.mini_world.build_ladder")


@pytest.mark.slow
def test_smoke_ladder_builds_and_resumes(tmp_path):
    out = str(tmp_path)
    summary = ladder.build(out, sizes=("xs", "s"), sc_steps=4, lm_steps=10, batch=4, quiet=True)
    assert summary["xs"]["params"] < summary["s"]["params"]
    for size in ("xs", "s"):
        run = os.path.join(out, f"model_{size}")
        for ckpt in ("untrained", "sc", "lm_1", "lm_5", "lm"):
            assert native.is_native_checkpoint(os.path.join(run, ckpt)), (size, ckpt)
        trained, init = native.load(os.path.join(run, "lm")), native.load(os.path.join(run, "untrained"))
        assert not np.allclose(trained["token_embedder"]["embedding"], init["token_embedder"]["embedding"])
    # Resumable: a finished size is not rebuilt.
    stamp = os.path.getmtime(os.path.join(out, "model_xs", "lm", "params.safetensors"))
    again = ladder.build(out, sizes=("xs",), sc_steps=4, lm_steps=10, batch=4, quiet=True)
    assert os.path.getmtime(os.path.join(out, "model_xs", "lm", "params.safetensors")) == stamp
    assert {k: v for k, v in again["xs"].items() if k != "tokens"} == json.load(
        open(os.path.join(out, "model_xs", "pretrain.json")))
    # 100-token chunks, 15 noise tokens in 5 spans: inputs 85 + 5 sentinels + EOS, targets 15 + 5 + EOS.
    assert again["xs"]["tokens"]["span_corruption"] == 4 * 4 * (91 + 21)
    assert summary["xs"]["tokens"] == summary["s"]["tokens"]  # every rung trains on the same batches
