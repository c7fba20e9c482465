"""Table 3 on the mini world: the committed prompts, served in mixed batches, reproduce the committed table.

Reads the five committed mini ReCoRD prompts (experiments/results/mini/runs/pt-s-record-p20-...-s{0..4})
and the shipped frozen model (assets/mini_world/default, byte-identical to the ladder's 's' rung they
were trained on); skips when the prompts are not committed.
"""
import csv
import functools

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import backends, ensemble
from experiments import spec as S
from tests.conftest import REPO

MINI = backends.MINI
RESULTS = REPO / "experiments" / "results" / "mini"
MODEL = REPO / "assets" / "mini_world" / "default"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    specs = ensemble.specs(MINI)
    try:
        paths = ensemble.prompt_files(str(RESULTS), specs)
    except S.SpecError as e:
        pytest.skip(f"mini ensemble prompts not committed: {e}")
    from prompt_tuning.checkpoints import loading
    from prompt_tuning.data.mini_world import default

    default.ensure_default_assets("record", data_dir=str(tmp_path_factory.mktemp("mini_tasks")))
    config = MINI.size_config(MINI.ensemble_size)
    params, _ = loading.load_params(str(MODEL), config)
    return specs, [np.load(p, allow_pickle=False) for p in paths], config, params


def test_mixed_batch_of_real_prompts_equals_single_prompt_batches(setup):
    from prompt_tuning import ensembling, prompts
    from prompt_tuning.models import decoding, t5
    from prompt_tuning.training import input_pipeline

    specs, prompt_list, config, params = setup
    o = dict(specs[0].overrides)
    es = input_pipeline.load_eval_set(input_pipeline.get_task_or_mixture(o["MIXTURE_OR_TASK_NAME"]), "validation",
                                      o["TASK_FEATURE_LENGTHS"], max_examples=10)
    tokens = es.features["encoder_input_tokens"]
    k, length = len(prompt_list), es.features["decoder_target_tokens"].shape[1]
    index = np.arange(len(tokens)) % k  # every prompt serves two rows, interleaved
    bank = ensembling.stack_prompts(prompt_list)
    model = ensembling.bank_model(config, k, bank.shape[1])
    mixed = ensembling.serve_mixed(model, ensembling.bank_params(params, bank), tokens, index,
                                   max_decode_length=length)
    single = t5.T5(config, functools.partial(prompts.Prompt, length=bank.shape[1]))
    for j in range(k):
        rows = np.flatnonzero(index == j)
        one = {**params, "encoder": {**params["encoder"], "prompt": {"prompt": jnp.asarray(bank[j])}}}
        alone = np.asarray(decoding.greedy_decode(single, one, jnp.asarray(tokens[rows]), max_decode_length=length))
        np.testing.assert_array_equal(mixed[rows], alone)
    assert (mixed[:, 0] > 1).all(), "trained prompts answer something on every row"


def test_committed_table_is_what_the_prompts_give(setup):
    specs, prompt_list, config, params = setup
    table = RESULTS / "ensemble" / "ensemble.csv"
    if not table.exists():
        pytest.skip(f"{table} not committed")
    o = dict(specs[0].overrides)
    result = ensemble.evaluate_task(config, params, prompt_list, o["MIXTURE_OR_TASK_NAME"],
                                    o["TASK_FEATURE_LENGTHS"], mode="generate")
    from prompt_tuning import ensembling

    rows = ensembling.summary_rows({"record": result["summary"]})
    with open(table, newline="") as f:
        committed = list(csv.DictReader(f))
    assert [r["metric"] for r in committed] == [r["metric"] for r in rows]
    for got, want in zip(rows, committed):
        for col in ("average", "best", "ensemble"):
            assert got[col] == pytest.approx(float(want[col]), abs=1e-6), (got["metric"], col)
