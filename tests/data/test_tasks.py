"""Registration: the name grammar, idempotency, labels, sentinel variants, and what the trainer consumes."""
import gin
import numpy as np
import pytest
import seqio
import tensorflow_datasets as tfds

from prompt_tuning import data
from prompt_tuning.data import sources, tasks
from tests.data.conftest import LENGTHS, examples

SG = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc", "axb", "axg")


def test_register_tasks_names_follow_the_grammar(vocab):
    names = tasks.register_tasks(vocab)
    expected = set()
    for t in SG:
        for source in ("", "_tfds", "_jsonl"):
            for sentinel in ("", "_sentinel", "_1_sentinel"):
                expected.add(f"taskless_super_glue_{t}_v102{source}{sentinel}")
    expected |= {"taskless_glue_mrpc_v100", "taskless_glue_qqp_v100", "taskless_glue_mrpc_from_qqp_v100",
                 "taskless_glue_qqp_from_mrpc_v100", "c4_v301_span_corruption", "c4_v301_prefix_lm"}
    expected |= {f"mrqa_{n}" for n in ("squad", "bioasq", "drop", "duorc", "race", "relation_extraction",
                                       "textbookqa")}
    assert set(names) == expected and len(names) == len(expected)
    assert expected <= set(seqio.TaskRegistry.names())
    for name in names:
        info = tasks.parse_task_name(name)
        if info["family"] == "superglue":
            assert tasks.superglue_task_name(info["task"], info["source"], info["sentinel"]) == name


def test_register_tasks_is_idempotent_and_reads_no_data(vocab, tmp_path):
    missing = str(tmp_path / "nowhere")
    first = tasks.register_tasks(vocab, superglue_data_dir=missing, tfds_data_dir=missing, mrqa_data_dir=missing,
                                 default_source="jsonl")
    count = len(seqio.TaskRegistry.names())
    second = tasks.register_tasks(vocab)
    assert first == second and len(seqio.TaskRegistry.names()) == count
    # The second call's settings replaced the first's.
    assert isinstance(seqio.get_mixture_or_task("taskless_super_glue_rte_v102").source, sources.TfdsSource)
    # Nothing was read: the missing directory only fails when a dataset is built.
    tasks.register_tasks(vocab, superglue_data_dir=missing)
    with pytest.raises(sources.DataFileError, match="nowhere"):
        seqio.get_mixture_or_task("taskless_super_glue_rte_v102_jsonl").get_dataset(LENGTHS, split="train")
    tasks.register_tasks(vocab)


def test_default_source_by_gin(vocab, tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "val.jsonl").write_text(
        '{"premise": "p", "hypothesis": "h", "idx": 0, "label": "entailment"}\n')
    with gin.unlock_config():
        gin.parse_config([f"register_tasks.default_source = 'jsonl'",
                          f"register_tasks.superglue_data_dir = '{tmp_path}'"])
    try:
        tasks.register_tasks(vocab)
        task = seqio.get_mixture_or_task("taskless_super_glue_rte_v102")
        assert isinstance(task.source, sources.JsonlDataSource)
        assert [e["inputs_pretokenized"] for e in examples(task, "validation")] == ["hypothesis: h premise: p"]
        assert isinstance(seqio.get_mixture_or_task("taskless_super_glue_rte_v102_tfds").source, sources.TfdsSource)
    finally:
        gin.clear_config()
        tasks.register_tasks(vocab)
    assert isinstance(seqio.get_mixture_or_task("taskless_super_glue_rte_v102").source, sources.TfdsSource)


def test_bad_names_and_arguments():
    with pytest.raises(ValueError, match="not a task name"):
        tasks.parse_task_name("super_glue_rte_v102")
    with pytest.raises(ValueError, match="unknown SuperGLUE task"):
        tasks.superglue_task_name("mnli")
    with pytest.raises(ValueError, match="sentinel must be"):
        tasks.superglue_task_name("rte", sentinel="_2_sentinel")
    with pytest.raises(ValueError, match="default_source"):
        tasks.register_tasks(default_source="hf")


def test_class_labels_for_prompt_init_and_rank():
    assert data.superglue.VERBALIZERS["rte"] == ("entailment", "not_entailment")
    assert data.label_words("taskless_super_glue_rte_v102") == ("entailment", "not_entailment")
    assert data.label_words("taskless_super_glue_boolq_v102_jsonl_sentinel") == ("False", "True")
    assert data.label_words("taskless_super_glue_cb_v102") == ("entailment", "contradiction", "neutral")
    assert data.label_words("taskless_super_glue_record_v102") == (
        "commonsense", "reasoning", "reading", "comprehension")
    assert data.label_words("taskless_super_glue_wsc_v102") == ("commonsense", "pronoun", "resolution")
    assert data.label_words("taskless_glue_mrpc_from_qqp_v100") == ("not_duplicate", "duplicate")
    assert data.verbalizers("taskless_super_glue_wsc_v102") is None
    assert data.verbalizers("taskless_super_glue_copa_v102") == ("choice1", "choice2")
    with pytest.raises(KeyError):
        data.label_words("mrqa_squad")
    with pytest.raises(KeyError):
        data.label_words("no_such_task")


def test_rank_evaluation_reads_the_package_verbalizers_unless_overridden():
    from prompt_tuning.training import evaluation

    assert evaluation.verbalizers_of("taskless_super_glue_rte_v102") == ["entailment", "not_entailment"]
    assert evaluation.verbalizers_of("taskless_super_glue_rte_v102", {"taskless_super_glue_rte_v102": ["y", "n"]}) == [
        "y", "n"]
    assert evaluation.verbalizers_of("taskless_super_glue_record_v102") is None


def test_features_convert_for_the_encoder_decoder(shared_task):
    task = shared_task("multirc")
    ds = task.get_dataset(LENGTHS, split="train", shuffle=False)
    converted = seqio.EncDecFeatureConverter(pack=False)(ds, LENGTHS)
    row = next(converted.as_numpy_iterator())
    assert set(row) == {"encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
                        "decoder_loss_weights"}
    assert row["encoder_input_tokens"].shape == (LENGTHS["inputs"],) and row["encoder_input_tokens"].dtype == np.int32
    assert task.predict_metric_fns and not task.score_metric_fns


@pytest.mark.parametrize("sentinel, in_inputs", [("_sentinel", False), ("_1_sentinel", True)])
def test_sentinel_variants(shared_task, vocab, sentinel, in_inputs):
    plain = examples(shared_task("rte"))[:3]
    task = tasks.register_jsonl_task(
        f"test_rte{sentinel}", "rte", str(shared_task("rte").source._data_dir),
        split_files={"train": "train32.jsonl"}, vocabulary=vocab, sentinel=sentinel)
    lengths = {"inputs": 40, "targets": 8}
    out = examples(task, lengths=lengths)[:3]
    for a, b in zip(plain, out):
        assert b["targets"].tolist() == [32099] + a["targets"].tolist()
        assert b["targets_pretokenized"] == a["targets_pretokenized"]
        if in_inputs:  # long inputs: trimmed, then the sentinel, then EOS
            assert b["inputs"].tolist() == a["inputs"].tolist()[:38] + [32099, 1]
        else:
            assert b["inputs"].tolist()[:39] == a["inputs"].tolist()[:39] and 32099 not in b["inputs"].tolist()
    # The postprocessor removes the sentinel the model was trained to emit.
    assert task.postprocess_fn("<extra_id_0> not_entailment", example=out[0]) == 1


def _task_metrics(task, exs, predictions):
    """What seqio's evaluator (and the trainer) do: postprocess targets and predictions, then each metric."""
    targets = [task.postprocess_fn(e["targets_pretokenized"], example=e, is_target=True) for e in exs]
    processed = [task.postprocess_fn(p, example=e, is_target=False) for p, e in zip(predictions, exs)]
    out = {}
    for fn in task.predict_metric_fns:
        out.update(fn(targets, processed))
    return out


def test_task_metrics_end_to_end_on_gold_predictions(shared_task):
    """Gold target strings as predictions score 100 on every metric; nonsense scores less."""
    for name in ("cb", "multirc", "record", "wsc", "boolq"):
        task = shared_task(name)
        exs = list(task.get_dataset(LENGTHS, split="validation", shuffle=False).as_numpy_iterator())
        golds = [e["targets_pretokenized"].decode() for e in exs]
        got = _task_metrics(task, exs, golds)
        if name == "wsc":  # a gold referent is right only for the label-True candidates
            labels = np.array([e["label"] for e in exs])
            assert got == {"accuracy": pytest.approx(100 * labels.mean())}
        else:
            assert all(v == pytest.approx(100.0) for v in got.values()), (name, got)
        assert set(got) == {"cb": {"accuracy", "f1_macro"}, "multirc": {"f1a", "exact_match"},
                            "record": {"em", "f1"}, "wsc": {"accuracy"}, "boolq": {"accuracy"}}[name]
        wrong = _task_metrics(task, exs, ["nonsense"] * len(exs))
        assert all(v < 100.0 for v in wrong.values()), (name, wrong)


@pytest.mark.parametrize("name", ["taskless_glue_mrpc_v100", "taskless_glue_qqp_v100",
                                  "taskless_glue_mrpc_from_qqp_v100", "taskless_glue_qqp_from_mrpc_v100"])
def test_glue_tasks_on_mock_data(vocab, name):
    tasks.register_tasks(vocab)
    task = seqio.get_mixture_or_task(name)
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        exs = examples(task, "validation")
    evaluated = name.split("_")[2]
    keys = {"mrpc": ("sentence1", "sentence2"), "qqp": ("question1", "question2")}[evaluated]
    words = {"mrpc": ("not_equivalent", "equivalent"), "qqp": ("not_duplicate", "duplicate")}
    for ex in exs:
        assert ex["inputs_pretokenized"].startswith(f"{keys[0]}: ") and f" {keys[1]}: " in ex["inputs_pretokenized"]
        assert ex["targets_pretokenized"] in words[evaluated]
    if "_from_" in name:
        trained_on = name.split("_")[4]
        assert task.splits == ("validation",)
        # A prediction in the training task's words scores against the evaluated task's gold label.
        gold = task.postprocess_fn(exs[0]["targets_pretokenized"], example=exs[0], is_target=True)
        pred = task.postprocess_fn(words[trained_on][gold], example=exs[0])
        assert pred == gold
