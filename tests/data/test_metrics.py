"""Metrics and postprocessors on hand-computed cases."""
import numpy as np
import pytest

from prompt_tuning.data import metrics, postprocessors
from prompt_tuning.data.superglue import BENCHMARK_TASKS
from prompt_tuning.data.superglue_score import superglue_score


def test_accuracy_counts_invalid_as_wrong():
    assert metrics.accuracy([0, 1, 1, 0], [0, 1, -1, 1]) == {"accuracy": 50.0}


def test_cb_macro_f1_by_hand():
    # targets   0 0 0 1 1 2      predictions 0 0 1 1 -1 2
    # class 0: tp 2, fp 0, fn 1 -> F1 = 4/5
    # class 1: tp 1, fp 1, fn 1 -> F1 = 2/4
    # class 2: tp 1, fp 0, fn 0 -> F1 = 1
    # mean = (0.8 + 0.5 + 1) / 3 = 0.766666...
    t, p = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, -1, 2]
    assert metrics.macro_f1(3)(t, p)["f1_macro"] == pytest.approx(100 * 2.3 / 3)
    assert metrics.accuracy(t, p)["accuracy"] == pytest.approx(100 * 4 / 6)


def test_macro_f1_absent_class_scores_zero():
    # Class 2 never occurs nor is predicted: F1 0 (sklearn's zero_division=0), so the mean is 2/3.
    assert metrics.macro_f1(3)([0, 1], [0, 1])["f1_macro"] == pytest.approx(100 * 2 / 3)


def test_binary_f1_flips_invalid_predictions():
    # targets 1 1 0 0, predictions 1 -1 -1 0 -> invalid become 0 (for target 1) and 1 (for target 0):
    # 1 0 1 0 -> tp 1, fp 1, fn 1 -> F1 1/2
    assert metrics.f1_with_invalid([1, 1, 0, 0], [1, -1, -1, 0]) == {"f1": 50.0}


def test_matthews_corr():
    # tp 2 tn 1 fp 1 fn 0: (2*1 - 1*0) / sqrt(3*2*2*1) = 2 / sqrt(12)
    got = metrics.matthews_corr([1, 1, 0, 0], [1, 1, 1, 0])["matthews_corr"]
    assert got == pytest.approx(100 * 2 / np.sqrt(12))


def test_multirc_grouping_by_question():
    # Question (0, 1): answers all right. Question (0, 2): one wrong. Question (5, 1): an invalid generation.
    groups = [(0, 1), (0, 1), (0, 2), (0, 2), (0, 2), (5, 1)]
    t_values = [1, 0, 1, 1, 0, 1]
    p_values = [1, 0, 1, 0, 0, -1]
    targets = [{"value": v, "group": g} for v, g in zip(t_values, groups)]
    preds = [{"value": v, "group": None} for v in p_values]
    assert metrics.multirc_exact_match(targets, preds) == {"exact_match": pytest.approx(100 / 3)}
    # F1a over all 6 options: predictions after flipping invalid: 1 0 1 0 0 0 -> tp 2, fp 0, fn 2 -> 4/6.
    assert metrics.multirc_f1a(targets, preds) == {"f1a": pytest.approx(100 * 4 / 6)}


def test_record_max_over_answers_and_one_score_per_query():
    targets = [
        {"value": ["Shane Reeves", "Reeves"], "group": (1, 10)},
        {"value": ["Shane Reeves", "Reeves"], "group": (1, 10)},  # same query, second training copy
        {"value": ["the United States"], "group": (2, 20)},
    ]
    preds = [
        {"value": "Reeves", "group": (1, 10)},
        {"value": "Reeves", "group": (1, 10)},
        {"value": "States", "group": (2, 20)},
    ]
    # Query 10: EM 1 (matches 'Reeves'). Query 20: normalised gold 'united states' vs 'states':
    # EM 0, F1 = 2 * (1/1 * 1/2) / (1 + 1/2) = 2/3. Mean over 2 queries, not 3 rows.
    got = metrics.record(targets, preds)
    assert got["em"] == pytest.approx(50.0)
    assert got["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)


def test_squad_normalisation():
    assert metrics.normalize_answer("The  Cat's, hat!") == "cats hat"
    assert metrics.squad([["an apple"]], ["Apple."]) == {"em": 100.0, "f1": 100.0}


def test_superglue_score_averages_within_then_across_tasks():
    flat = {
        "taskless_super_glue_cb_v102/accuracy": 90.0,
        "taskless_super_glue_cb_v102/f1_macro": 80.0,
        "taskless_super_glue_rte_v102_jsonl/accuracy": 70.0,
        "taskless_super_glue_axb_v102/accuracy": 10.0,  # diagnostics do not count
    }
    out = superglue_score(flat)
    assert out["score"] == pytest.approx((85.0 + 70.0) / 2)
    assert out["tasks"] == ["cb", "rte"] and not out["complete"]
    assert "cb, rte" in out["report"] and "missing boolq" in out["report"]
    nested = {t: {"m": 50.0} for t in BENCHMARK_TASKS}
    nested["multirc"] = {"f1a": 80.0, "exact_match": 40.0}
    out = superglue_score(nested)
    assert out["complete"] and out["score"] == pytest.approx(50.0 + 10.0 / 8)
    assert "all 8" in out["report"]


def test_paper_table3_superglue_average():
    # Table 3 (T5-XXL, 5 prompts): the per-task means of the "average" and "ensemble" columns average to the
    # reported SuperGLUE 90.5 and 91.3. (The "best" column is a per-task maximum, not one run's score.)
    average = {"boolq": [91.1], "cb": [99.3, 99.0], "copa": [98.8], "multirc": [65.7, 88.7],
               "record": [92.7, 93.4], "rte": [92.6], "wic": [76.2], "wsc": [95.8]}
    ensemble = {"boolq": [91.7], "cb": [100, 100], "copa": [100], "multirc": [67.1, 89.4],
                "record": [93.2, 93.9], "rte": [93.5], "wic": [77.4], "wsc": [96.2]}
    for column, expected in ((average, 90.5), (ensemble, 91.3)):
        results = {t: {f"m{i}": v for i, v in enumerate(vals)} for t, vals in column.items()}
        assert round(superglue_score(results)["score"], 1) == expected


def test_class_id_postprocessor_maps_invalid_to_minus_one():
    post = postprocessors.class_id_postprocessor(("entailment", "not_entailment"))
    assert post(b"not_entailment", example={}, is_target=True) == 1
    assert post(" entailment ", example={}) == 0
    assert post("Entailment", example={}) == -1
    assert post("", example={}) == -1


def test_wsc_postprocessor():
    ex = {"targets_pretokenized": b"the demonstrators", "label": np.int64(1)}
    assert postprocessors.wsc_simple(b"the demonstrators", example=ex, is_target=True) == 1
    assert postprocessors.wsc_simple("The Demonstrators", example=ex) == 1
    assert postprocessors.wsc_simple("demonstrators", example=ex) == 1  # determiner ignored
    assert postprocessors.wsc_simple("the councilmen", example=ex) == 0
    assert postprocessors.wsc_simple("demonstrators' permit", example=ex) == 0  # possessive mismatch
    assert postprocessors.wsc_simple("", example=ex) == -1


def test_multirc_and_record_postprocessors_carry_groups():
    ex = {"idx/paragraph": np.int32(4), "idx/question": np.int32(9), "idx/passage": np.int32(4),
          "idx/query": np.int32(9), "answers": np.array([b"A", b"B"], dtype=object)}
    assert postprocessors.multirc("True", example=ex, is_target=True) == {"value": 1, "group": (4, 9)}
    assert postprocessors.multirc("maybe", example=ex)["value"] == -1
    assert postprocessors.record("x", example=ex, is_target=True) == {"value": ["A", "B"], "group": (4, 9)}
    assert postprocessors.record("B ", example=ex) == {"value": "B", "group": (4, 9)}


def test_sentinel_and_translation_wrappers():
    post = postprocessors.strip_sentinel(postprocessors.class_id_postprocessor(("False", "True")))
    assert post("<extra_id_0> True", example={}) == 1
    assert post("True", example={}) == 1
    mrpc = postprocessors.class_id_postprocessor(("not_equivalent", "equivalent"))
    post = postprocessors.translate_labels(mrpc, {"not_duplicate": "not_equivalent", "duplicate": "equivalent"})
    assert post("duplicate", example={}) == 1
    assert post("equivalent", example={}, is_target=True) == 1
    assert post("not_duplicate", example={}) == 0
