"""Table 3's evaluation on a real frozen model: the recall world's shipped default (assets/recall_world).

Replaces the first mini world's test on its committed prompts (retired with that world). Three prompts made
the way the paper's sampled-vocabulary init makes them (rows of the frozen embedding table), so each answers
differently: served in one mixed batch, every row gets exactly what a batch of its own prompt gives, and
`ensemble.evaluate_task` scores each prompt and the vote on the task's own metrics.
"""
import functools

import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import REPO

ASSETS = REPO / "assets" / "recall_world"
LENGTHS = {"inputs": 96, "targets": 8}
K, P, N = 3, 5, 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not (ASSETS / "default" / "params.safetensors").exists():
        pytest.skip("recall-world default not shipped (python -m experiments.recall_world.build_default)")
    from prompt_tuning.checkpoints import loading
    from prompt_tuning.data.recall_world import registry

    # The tasks depend on the world only; a 20-document corpus keeps the setup to seconds.
    info = registry.prepare_recall_world(corpus_documents=20, validation_documents=20,
                                         vocab_path=str(ASSETS / "spm.model"),
                                         out_dir=str(tmp_path_factory.mktemp("recall")))
    config = loading.config_from_checkpoint(str(ASSETS / "default"))
    params, _ = loading.load_params(str(ASSETS / "default"), config)
    table = np.asarray(params["token_embedder"]["embedding"])
    rng = np.random.default_rng(0)
    prompt_list = [table[rng.integers(3, 1000, size=P)] for _ in range(K)]
    return info, config, params, prompt_list


def test_mixed_batch_on_the_shipped_model_equals_single_prompt_batches(setup):
    from prompt_tuning import ensembling, prompts
    from prompt_tuning.data.recall_world import registry
    from prompt_tuning.models import decoding, t5
    from prompt_tuning.training import input_pipeline

    _, config, params, prompt_list = setup
    es = input_pipeline.load_eval_set(input_pipeline.get_task_or_mixture(registry.task_name("record")),
                                      "validation", LENGTHS, max_examples=N)
    tokens = es.features["encoder_input_tokens"]
    index = np.arange(len(tokens)) % K  # every prompt serves two rows, interleaved
    bank = ensembling.stack_prompts(prompt_list)
    mixed = ensembling.serve_mixed(ensembling.bank_model(config, K, P), ensembling.bank_params(params, bank),
                                   tokens, index, max_decode_length=LENGTHS["targets"])
    single = t5.T5(config, functools.partial(prompts.Prompt, length=P))
    for j in range(K):
        rows = np.flatnonzero(index == j)
        one = {**params, "encoder": {**params["encoder"], "prompt": {"prompt": jnp.asarray(bank[j])}}}
        alone = np.asarray(decoding.greedy_decode(single, one, jnp.asarray(tokens[rows]),
                                                  max_decode_length=LENGTHS["targets"]))
        np.testing.assert_array_equal(mixed[rows], alone)
    assert (mixed[:, 0] > 1).all(), "the pretrained model answers something on every row"


def test_evaluate_task_scores_each_prompt_and_the_vote(setup):
    from experiments import ensemble
    from prompt_tuning import ensembling
    from prompt_tuning.data.recall_world import registry
    from prompt_tuning.training import evaluation, input_pipeline

    _, config, params, prompt_list = setup
    name = registry.task_name("record")
    result = ensemble.evaluate_task(config, params, prompt_list, name, LENGTHS, max_examples=N)
    assert len(result["predictions"]) == N and all(len(a) == K for a in result["predictions"])
    task = input_pipeline.get_task_or_mixture(name)
    examples = input_pipeline.load_eval_set(task, "validation", LENGTHS, N).examples
    for j in range(K):
        assert result["per_prompt"][j] == evaluation.task_metrics(task, examples, [a[j] for a in result["predictions"]])
    assert result["ensemble"] == evaluation.task_metrics(
        task, examples, [v if v is not None else "" for v in result["ensemble_predictions"]])
    assert result["summary"] == ensembling.summarize(result["per_prompt"], result["ensemble"])
    assert len({tuple(a) for a in zip(*result["predictions"])}) > 1, "the prompts answer differently"
