"""Each row's task index for multi-task prompts (input_pipeline.task_order, encoder_prompt_index).

On a mixture of two tiny tasks (pt_test_digits, registered here, and pt_test_yesno) every training
row carries the index of its own task (read back from the row's text), in both data modes, batches
mix the tasks, and a batch is the same whether the stream starts at step 0 or resumes at its step;
each eval set carries its task's index; MULTITASK_TASKS reorders and is checked. Through the real gin
file (gin/methods/multitask_prompt.gin) a run on the mixture changes the shared prompt and both
task prompts while every frozen array stays bit-identical, and the run's evaluation of each task
uses that task's index: it equals evaluating the task's rows with the exported task prompt through
the plain prompt path (every prediction, accuracy, loss, per-example log-likelihoods), and differs
from scoring them with the other task's prompt. The eval command does the same on the mixture, and on
one task of it placed by MULTITASK_TASKS.
"""
import functools
import itertools
import json
import os

import gin
import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf
from flax import traverse_util

from prompt_tuning import eval as eval_main
from prompt_tuning import methods, prompts
from prompt_tuning.checkpoints import native
from prompt_tuning.models import t5
from prompt_tuning.training import cli, evaluation, input_pipeline, partitioning, steps, trainer
from tests.training import synthetic_tasks as st

DIGITS = "pt_test_digits"
MIX = "pt_test_two_tasks"
ORDER = (DIGITS, st.TASK)  # sorted by name: digits is task 0, yesno task 1
PREFIX = {DIGITS: "digits:", st.TASK: "letters:"}
SIZES = {"train": 48, "validation": 8}
WORLD = "tests/training/synthetic_world.gin"
REGEX = methods.MultiTaskPrompt.TRAINABLE_REGEX


def _digits(split, shuffle_files=False, seed=None):
    del shuffle_files, seed
    rng = np.random.default_rng(2 if split == "train" else 3)
    inputs, targets = [], []
    for _ in range(SIZES[split]):
        digits = "".join(rng.choice(list("0123456789"), size=int(rng.integers(4, 8))))
        inputs.append(f"digits: {digits}")
        targets.append("yes" if "7" in digits else "no")
    return tf.data.Dataset.from_tensor_slices({"inputs": inputs, "targets": targets})


def _register():
    if DIGITS not in seqio.TaskRegistry.names():
        seqio.TaskRegistry.add(
            DIGITS, source=seqio.FunctionDataSource(_digits, splits=tuple(SIZES)),
            preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
            output_features={k: seqio.Feature(st.VOCAB, add_eos=True) for k in ("inputs", "targets")},
            metric_fns=[st.accuracy])
    if MIX not in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.add(MIX, [(DIGITS, 1.0), (st.TASK, 1.0)])


_register()


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _task_of_row(tokens) -> str:
    text = st.VOCAB.decode([int(t) for t in tokens if t > 1])
    return next(name for name, prefix in PREFIX.items() if text.startswith(prefix))


def test_task_order_is_the_mixtures_sorted_tasks_or_multitask_tasks():
    assert input_pipeline.task_order(MIX) == ORDER
    assert input_pipeline.task_order(st.TASK) == (st.TASK,)  # a lone task is task 0
    assert input_pipeline.task_order(st.TASK, list(ORDER)) == ORDER  # ... or placed by MULTITASK_TASKS
    assert input_pipeline.task_order(MIX, [st.TASK, DIGITS]) == (st.TASK, DIGITS)
    with pytest.raises(input_pipeline.TaskError, match="lacks \\['pt_test_yesno'\\]"):
        input_pipeline.task_order(MIX, [DIGITS])
    with pytest.raises(input_pipeline.TaskError, match="distinct"):
        input_pipeline.task_order(MIX, [DIGITS, st.TASK, DIGITS])
    with pytest.raises(input_pipeline.TaskError, match="is a mixture"):
        input_pipeline.task_order(MIX, [DIGITS, st.TASK, MIX])
    with pytest.raises(input_pipeline.TaskError, match="unknown task"):
        input_pipeline.task_order(MIX, [DIGITS, st.TASK, "no_such_task"])


@pytest.mark.parametrize("mode", ["stream", "memory"])
def test_mixture_rows_carry_their_tasks_index_and_resume_the_same(mode):
    data = input_pipeline.TrainData(MIX, st.LENGTHS, 8, seed=0, mode=mode, task_order=input_pipeline.task_order(MIX))
    if mode == "memory":
        assert data.num_examples == st.SIZES["train"] + SIZES["train"]
    batches = list(itertools.islice(data.iterate(0), 6))
    mixed, seen = 0, set()
    for batch in batches:
        assert batch[input_pipeline.TASK_INDEX].shape == (8,) and batch[input_pipeline.TASK_INDEX].dtype == np.int32
        tasks = [_task_of_row(row) for row in batch["encoder_input_tokens"]]
        np.testing.assert_array_equal(batch[input_pipeline.TASK_INDEX], [ORDER.index(t) for t in tasks])
        mixed += len(set(tasks)) == 2
        seen |= set(tasks)
    assert seen == set(ORDER) and mixed >= 3, (seen, mixed)
    for step, batch in zip(range(3, 6), data.iterate(3)):  # a resumed run reads the same batches
        assert set(batch) == set(batches[step])
        for k in batch:
            np.testing.assert_array_equal(batch[k], batches[step][k])
    # MULTITASK_TASKS reversed: the same rows, the other index; a lone task placed second is task 1.
    flipped = input_pipeline.TrainData(MIX, st.LENGTHS, 8, seed=0, mode=mode, task_order=[st.TASK, DIGITS])
    batch = next(flipped.iterate(0))
    np.testing.assert_array_equal(batch["encoder_input_tokens"], batches[0]["encoder_input_tokens"])
    np.testing.assert_array_equal(batch[input_pipeline.TASK_INDEX], 1 - batches[0][input_pipeline.TASK_INDEX])
    alone = input_pipeline.TrainData(st.TASK, st.LENGTHS, 8, seed=0, mode=mode, task_order=list(ORDER))
    assert set(np.concatenate([b[input_pipeline.TASK_INDEX] for b in itertools.islice(alone.iterate(0), 3)])) == {1}


def test_each_eval_set_carries_its_tasks_index():
    sets = input_pipeline.load_eval_sets(MIX, "validation", st.LENGTHS, order=ORDER)
    assert [es.name for es in sets] == list(ORDER)
    for k, es in enumerate(sets):
        assert len(es) == (SIZES if es.name == DIGITS else st.SIZES)["validation"]
        np.testing.assert_array_equal(es.features[input_pipeline.TASK_INDEX], np.full(len(es), k))
        assert {_task_of_row(row) for row in es.features["encoder_input_tokens"]} == {es.name}
    assert all(input_pipeline.TASK_INDEX not in es.features
               for es in input_pipeline.load_eval_sets(MIX, "validation", st.LENGTHS))


def test_task_order_is_checked_against_the_methods():
    method = methods.MultiTaskPrompt(num_tasks=2, length=4)
    assert trainer.task_order((method,), MIX) == ORDER
    assert trainer.task_order((), MIX) is None  # no multi-task prompt: no index
    with pytest.raises(trainer.ConfigError, match="no METHOD reads a task index"):
        trainer.task_order((), MIX, list(ORDER))
    with pytest.raises(trainer.ConfigError, match="MULTITASK_NUM_TASKS = 1"):
        trainer.task_order((methods.MultiTaskPrompt(num_tasks=1, length=4),), MIX)


def _flat(tree):
    return {k: np.array(v) for k, v in traverse_util.flatten_dict(jax.device_get(tree), sep="/").items()}


def _unflat(flat):
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory):
    """gin/methods/multitask_prompt.gin on the two-task mixture, 10 steps, evaluated at 0 and 10."""
    run = str(tmp_path_factory.mktemp("multitask") / "run")
    result = {}

    def go(flags):
        result.update(trainer.train_and_evaluate(gin_files=flags["gin_files"], config_str=gin.config_str()))
        return 0

    args = ["--gin_file=gin/methods/multitask_prompt.gin", f"--gin_file={WORLD}", f"--gin.MODEL_DIR='{run}'",
            f"--gin.MIXTURE_OR_TASK_NAME='{MIX}'", "--gin.MULTITASK_LENGTH=4", "--gin.METHOD_LEARNING_RATE=1.0",
            "--gin.TRAIN_STEPS=10", "--gin.train_and_evaluate.checkpoint_period=10",
            "--gin.train_and_evaluate.eval_period=10"]
    assert cli.main(go, args, "test") == 0
    gin.clear_config()
    return result


def test_a_mixture_run_trains_every_tasks_prompt_and_keeps_the_frozen_model(mixture_run):
    after = _flat(mixture_run["params"])
    frozen_dir = os.path.join(mixture_run["model_dir"], trainer.FROZEN_COPY_DIR)
    frozen = _flat(native.load(frozen_dir))
    assert set(after) == set(frozen) | {f"encoder/multitask_prompt/{k}" for k in ("shared", "tasks")}
    for k, v in frozen.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)  # bit-identical
    method = methods.MultiTaskPrompt(num_tasks=2, length=4)
    config = t5.get_config("test", vocab_size=st.VOCAB_SIZE)
    setup = trainer.build(model_config=config, task_name=MIX, prompt=None, initial_checkpoint_path=frozen_dir,
                          trainable_regex=REGEX, seed=0, mesh=partitioning.make_mesh(), methods=(method,))
    before = _flat(setup.params)
    shared = "encoder/multitask_prompt/shared"
    tasks = "encoder/multitask_prompt/tasks"
    assert not np.allclose(after[shared], before[shared], atol=1e-3)
    for k in range(2):  # both tasks' rows were trained (each batch mixes them)
        assert np.abs(after[tasks][k] - before[tasks][k]).max() > 1e-2, k
    first, last = mixture_run["metrics_before"], mixture_run["metrics_after"]
    for name in ORDER:
        assert last[f"{name}/loss"] < first[f"{name}/loss"], (name, first, last)


def test_each_tasks_evaluation_uses_its_own_index(mixture_run):
    params = mixture_run["params"]
    flat = _flat(params)
    method = methods.MultiTaskPrompt(num_tasks=2, length=4)
    config = t5.get_config("test", vocab_size=st.VOCAB_SIZE)
    model = t5.T5(config, methods=(method,))
    exported = method.task_prompts(params)  # [K, P, H]: what `prompt_tuning.export` writes as task_<k>.npy
    mesh = partitioning.make_mesh()
    sets = input_pipeline.load_eval_sets(MIX, "validation", st.LENGTHS, order=ORDER)
    metrics, preds = evaluation.evaluate(model, params, sets, batch_size=8, mesh=mesh)
    for k, es in enumerate(sets):
        plain = {key: v for key, v in flat.items() if not key.startswith("encoder/multitask_prompt/")}
        rows = {key: v for key, v in es.features.items() if key != input_pipeline.TASK_INDEX}
        plain_set = input_pipeline.EvalSet(es.task, rows, es.examples)

        def served(prompt):
            plain_model = t5.T5(config, functools.partial(prompts.Prompt, length=prompt.shape[0],
                                                          prompt_init=prompts.from_array(prompt)))
            return plain_model, _unflat({**plain, "encoder/prompt/prompt": prompt})

        plain_model, plain_params = served(exported[k])
        plain_metrics, plain_preds = evaluation.evaluate(plain_model, plain_params, [plain_set], batch_size=8,
                                                         mesh=mesh)
        assert preds[es.name] == plain_preds[es.name]
        assert metrics[f"{es.name}/accuracy"] == plain_metrics[f"{es.name}/accuracy"]
        assert mixture_run["metrics_after"][f"{es.name}/accuracy"] == plain_metrics[f"{es.name}/accuracy"]
        ll = evaluation._score(model, params, es.features, 8, mesh)
        np.testing.assert_allclose(ll, evaluation._score(plain_model, plain_params, rows, 8, mesh), rtol=1e-5,
                                   atol=1e-4)
        sums = [steps.eval_step(plain_params, chunk, model=plain_model, z_loss=1e-4)
                for chunk, _ in input_pipeline.eval_batches(rows, 8)]
        loss = sum(float(s["nll_sum"]) for s in sums) / sum(float(s["tokens"]) for s in sums)
        np.testing.assert_allclose(mixture_run["metrics_after"][f"{es.name}/loss"], loss, rtol=1e-5)
        other_model, other_params = served(exported[1 - k])  # the other task's prompt scores these rows otherwise
        other = evaluation._score(other_model, other_params, rows, 8, mesh)
        assert np.abs(other - ll).max() > 1e-2, k


def _predictions(path):
    return [json.loads(line)["prediction"] for line in open(path)]


def test_the_eval_command_scores_each_task_with_its_index(mixture_run, tmp_path):
    run = mixture_run["model_dir"]
    common = ["--gin_file=gin/methods/multitask_prompt.gin", f"--gin_file={WORLD}", "--gin_file=gin/runs/eval.gin",
              "--gin.MULTITASK_LENGTH=4", f"--gin.CHECKPOINT_PATH='{run}'"]
    assert eval_main.main(common + [f"--gin.MIXTURE_OR_TASK_NAME='{MIX}'", f"--gin.OUTPUT_DIR='{tmp_path / 'mix'}'"]) == 0
    gin.clear_config()
    assert eval_main.main(common + [f"--gin.MIXTURE_OR_TASK_NAME='{st.TASK}'", f"--gin.MULTITASK_TASKS={list(ORDER)}",
                                    f"--gin.OUTPUT_DIR='{tmp_path / 'one'}'"]) == 0
    method = methods.MultiTaskPrompt(num_tasks=2, length=4)
    model = t5.T5(t5.get_config("test", vocab_size=st.VOCAB_SIZE), methods=(method,))
    mesh = partitioning.make_mesh()
    for es in input_pipeline.load_eval_sets(MIX, "validation", st.LENGTHS, order=ORDER):
        length = st.LENGTHS["targets"]
        want = evaluation.generate(model, mixture_run["params"], es, batch_size=8, mesh=mesh, max_decode_length=length)
        assert _predictions(tmp_path / "mix" / f"predictions_{es.name}.jsonl") == want, es.name
        if es.name == st.TASK:  # task 1: its own index, not task 0's prompt
            assert _predictions(tmp_path / "one" / f"predictions_{es.name}.jsonl") == want
            rows = input_pipeline.EvalSet(es.task, {k: v for k, v in es.features.items()
                                                    if k != input_pipeline.TASK_INDEX}, es.examples)
            assert evaluation.generate(model, mixture_run["params"], rows, batch_size=8, mesh=mesh,
                                       max_decode_length=length) != want
