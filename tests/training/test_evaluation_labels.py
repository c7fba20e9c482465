"""Correctness fixes of issue 13: rank classification scores labels exactly as the task tokenizes its
targets (the `_sentinel` variants included), ReCoRD keeps the first row per question (as T5), and a
PromptBank index outside [0, K) is an error."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio

from prompt_tuning import prompts
from prompt_tuning.data import metrics, pretraining
from prompt_tuning.models import decoding
from prompt_tuning.training import evaluation, input_pipeline
from tests.training import synthetic_tasks as st

SENTINEL_TASK = f"{st.TASK}_sentinel_labels_test"


def _sentinel_task():
    if SENTINEL_TASK not in seqio.TaskRegistry.names():
        seqio.TaskRegistry.add(
            SENTINEL_TASK,
            source=seqio.FunctionDataSource(st._dataset, splits=tuple(st.SIZES)),
            preprocessors=[seqio.preprocessors.tokenize, functools.partial(pretraining.add_sentinels),
                           seqio.preprocessors.append_eos_after_trim],
            output_features={k: seqio.Feature(st.VOCAB, add_eos=True) for k in ("inputs", "targets")},
            metric_fns=[st.accuracy],
        )
    return seqio.get_mixture_or_task(SENTINEL_TASK)


@pytest.mark.parametrize("sentinel", [False, True])
def test_rank_labels_are_tokenized_as_the_task_tokenizes_its_targets(sentinel):
    task = _sentinel_task() if sentinel else seqio.get_mixture_or_task(st.TASK)
    lengths = {"inputs": 16, "targets": 8}
    es = input_pipeline.load_eval_set(task, "validation", lengths)
    prefix, suffix = evaluation.target_affixes(es)
    assert prefix == ([st.VOCAB.vocab_size - 1] if sentinel else []) and suffix == [decoding.EOS_ID]
    rows = evaluation.verbalizer_targets(st.VOCAB, st.LABELS, lengths["targets"], prefix, suffix)
    # Each label's row equals the decoder targets the task itself produced for an example with that label.
    for label, row in zip(st.LABELS, rows):
        i = next(i for i, ex in enumerate(es.examples) if ex["targets_pretokenized"].decode() == label)
        np.testing.assert_array_equal(row, es.features["decoder_target_tokens"][i])


def test_record_keeps_the_first_row_per_question_as_t5():
    targets = [{"value": ["A", "B"], "group": (0, 1)}] * 2
    got = metrics.record(targets, [{"value": "A", "group": (0, 1)}, {"value": "zzz", "group": (0, 1)}])
    assert got["em"] == 100.0  # T5's deduplicate_metric keeps the first row ('A'); the last gave 0


def test_prompt_bank_index_outside_range_is_an_error():
    bank = prompts.PromptBank(num_prompts=2, length=3)
    x = jnp.zeros((2, 4, 8))
    params = bank.init(jax.random.PRNGKey(0), x, jnp.array([0, 1]))
    for bad in ([0, 2], [-1, 0]):
        with pytest.raises(prompts.PromptError, match=r"prompt_index must lie in \[0, 2\)"):
            bank.apply(params, x, jnp.array(bad))
    # Under jit the index is traced: an out-of-range row becomes NaN, never another (clamped) prompt.
    out = jax.jit(lambda p, i: bank.apply(p, x, i))(params, jnp.array([1, 2]))
    assert np.isfinite(np.asarray(out[0])).all() and np.isnan(np.asarray(out[1])).all()
