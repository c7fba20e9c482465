"""SuperGLUE / GLUE / SQuAD metrics on postprocessed targets and predictions.

All values are percentages (0-100), as the paper reports them. Each metric
function has seqio's predict-metric signature `fn(targets, predictions) ->
{name: float}` and expects the outputs of postprocessors.py: class ids
(-1 = invalid generation, always wrong), MultiRC / ReCoRD dicts with a
'group', or answer lists for QA.

  BoolQ, COPA, RTE, WiC, WSC   accuracy
  CB                           accuracy, f1_macro (mean of the 3 per-class F1)
  MultiRC                      f1a (binary F1 over all answer options),
                               exact_match (all options of a question right,
                               averaged over questions)
  ReCoRD                       em, f1 (SQuAD-normalised, max over the gold
                               answers; one score per query)
  AX-b                         matthews_corr, accuracy;  AX-g  accuracy
  MRPC, QQP                    f1 (positive class 1), accuracy
  SQuAD / MRQA                 em, f1 (max over the gold answers)

The SuperGLUE score over a run's metrics is in superglue_score.py.
"""
from __future__ import annotations

import collections
import re
import string
from typing import Any, Sequence

import numpy as np

INVALID = -1


def _ids(x: Sequence[Any]) -> np.ndarray:
    return np.asarray([int(v) for v in x], dtype=np.int64)


def accuracy(targets: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    """{'accuracy': % of class ids equal to the targets}; an invalid prediction (-1) is wrong."""
    t, p = _ids(targets), _ids(predictions)
    return {"accuracy": 100.0 * float(np.mean(t == p)) if len(t) else float("nan")}


def _f1(tp: int, fp: int, fn: int) -> float:
    # 0 when the class never occurs and is never predicted (sklearn's zero_division=0).
    denom = 2 * tp + fp + fn
    return 2.0 * tp / denom if denom else 0.0


def _per_class_counts(t: np.ndarray, p: np.ndarray, c: int) -> tuple[int, int, int]:
    tp = int(np.sum((p == c) & (t == c)))
    fp = int(np.sum((p == c) & (t != c)))
    fn = int(np.sum((p != c) & (t == c)))
    return tp, fp, fn


def macro_f1(num_classes: int):
    """Mean over classes 0..C-1 of each class's F1; an invalid prediction is a miss of the true class."""

    def f1_macro(targets, predictions) -> dict[str, float]:
        t, p = _ids(targets), _ids(predictions)
        scores = [_f1(*_per_class_counts(t, p, c)) for c in range(num_classes)]
        return {"f1_macro": 100.0 * float(np.mean(scores))}

    return f1_macro


def _flip_invalid(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    # A binary task's invalid prediction becomes the wrong class (T5's f1_score_with_invalid).
    p = p.copy()
    bad = (p != 0) & (p != 1)
    p[bad] = 1 - t[bad]
    return p


def binary_f1(targets, predictions, name: str = "f1") -> dict[str, float]:
    """{name: F1 x 100 of the positive class 1}; an invalid prediction counts as the wrong class."""
    t, p = _ids(targets), _ids(predictions)
    p = _flip_invalid(t, p)
    return {name: 100.0 * _f1(*_per_class_counts(t, p, 1))}


def f1_with_invalid(targets, predictions) -> dict[str, float]:
    """MRPC / QQP's F1 (binary_f1 named 'f1'), as T5's metrics.f1_score_with_invalid."""
    return binary_f1(targets, predictions, "f1")


def matthews_corr(targets, predictions) -> dict[str, float]:
    """Binary Matthews correlation x 100 (invalid predictions flipped to wrong)."""
    t, p = _ids(targets), _ids(predictions)
    p = _flip_invalid(t, p)
    tp, fp, fn = _per_class_counts(t, p, 1)
    tn = int(np.sum((p == 0) & (t == 0)))
    denom = np.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {"matthews_corr": 100.0 * ((tp * tn - fp * fn) / denom if denom else 0.0)}


def multirc_f1a(targets: Sequence[dict], predictions: Sequence[dict]) -> dict[str, float]:
    """MultiRC's F1a: binary F1 x 100 over every answer option of every question."""
    return binary_f1([t["value"] for t in targets], [p["value"] for p in predictions], "f1a")


def multirc_exact_match(targets: Sequence[dict], predictions: Sequence[dict]) -> dict[str, float]:
    """Share of questions (grouped by the targets' 'group') whose answer options are all right."""
    groups: dict[Any, bool] = collections.OrderedDict()
    for t, p in zip(targets, predictions):
        key = t["group"]
        groups[key] = groups.get(key, True) and int(p["value"]) == int(t["value"])
    return {"exact_match": 100.0 * float(np.mean(list(groups.values()))) if groups else float("nan")}


# ---------------------------------------------------------------------------
# SQuAD-style answer scoring (ReCoRD, SQuAD, MRQA)
# ---------------------------------------------------------------------------

_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD v1.1)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match_score(prediction: str, gold: str) -> float:
    """1.0 when the SQuAD-normalised prediction equals the gold answer, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1_score(prediction: str, gold: str) -> float:
    """SQuAD's token F1 (0-1) between the normalised prediction and gold answer."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict[str, float]:
    """EM and F1, each the max over an example's gold answers, averaged over examples."""
    em, f1 = [], []
    for golds, pred in zip(targets, predictions):
        golds = list(golds) or [""]
        em.append(max(exact_match_score(pred, g) for g in golds))
        f1.append(max(token_f1_score(pred, g) for g in golds))
    if not em:
        return {"em": float("nan"), "f1": float("nan")}
    return {"em": 100.0 * float(np.mean(em)), "f1": 100.0 * float(np.mean(f1))}


def record(targets: Sequence[dict], predictions: Sequence[dict]) -> dict[str, float]:
    """ReCoRD: one score per query, although training-style data repeats a query once per answer.

    The first row of each query ('group') is kept, as T5's `deduplicate_metric` does.
    """
    dedup: dict[Any, tuple] = collections.OrderedDict()
    for t, p in zip(targets, predictions):
        dedup.setdefault(t["group"], (t["value"], p["value"]))
    golds, preds = zip(*dedup.values()) if dedup else ((), ())
    return squad(golds, preds)
