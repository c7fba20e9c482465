"""Generated text -> what the metrics compare (seqio postprocess_fn signature).

Every function has seqio's signature `fn(text, example=None, is_target=False)`:
it is called once with the gold `targets_pretokenized` (is_target=True) and
once with the model's decoded output, both with the preprocessed example.
Strings may arrive as bytes (numpy iterators); they are decoded here.

Classification tasks map text to the class id, and anything that is not
exactly a verbalizer (after stripping surrounding whitespace) to -1, which
every metric counts as wrong.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

INVALID = -1
SENTINEL_TEXT = "<extra_id_0>"

# WSC referents are compared ignoring case and these determiners (T5's wsc_simple).
_DETERMINERS = frozenset(
    "a an few her his each every many much my our some that the their these this those which whose your".split()
)


def as_text(x: Any) -> str:
    """bytes (or a 0-d array of them) -> str; anything else through str()."""
    if isinstance(x, (bytes, np.bytes_)):
        return bytes(x).decode("utf-8")
    if isinstance(x, np.ndarray) and x.shape == ():
        return as_text(x.item())
    return str(x)


def _int(x: Any) -> int:
    return int(np.asarray(x).item())


def string_label_to_class_id(text: Any, label_classes: Sequence[str], example=None, is_target: bool = False) -> int:
    """Index of the text in `label_classes`, else -1."""
    del example, is_target
    text = as_text(text).strip()
    return list(label_classes).index(text) if text in label_classes else INVALID


def class_id_postprocessor(label_classes: Sequence[str]) -> Callable:
    """A postprocess_fn mapping a verbalizer string to its class id in `label_classes` (-1 otherwise)."""
    fn = functools.partial(string_label_to_class_id, label_classes=tuple(label_classes))
    fn.__name__ = "string_label_to_class_id"
    return fn


def multirc(text: Any, example=None, is_target: bool = False) -> dict:
    """{'value': class id, 'group': (paragraph, question)}: the metrics group answers by question."""
    group = None
    if example is not None:
        group = (_int(example["idx/paragraph"]), _int(example["idx/question"]))
    return {"value": string_label_to_class_id(text, ("False", "True")), "group": group}


def record(text: Any, example=None, is_target: bool = False) -> dict:
    """{'value': all gold answers (target) or the generation, 'group': (passage, query)}."""
    group = None
    if example is not None:
        group = (_int(example["idx/passage"]), _int(example["idx/query"]))
    if is_target:
        return {"value": [as_text(a) for a in np.asarray(example["answers"]).reshape(-1)], "group": group}
    return {"value": as_text(text).strip(), "group": group}


def _clean_referent(s: str) -> str:
    return " ".join(w for w in s.strip().lower().split(" ") if w not in _DETERMINERS)


def wsc_simple(text: Any, example=None, is_target: bool = False) -> int:
    """Target: the example's label. Prediction: 1 if the generation names the candidate referent.

    As T5: case and determiners are ignored; one word set containing the other
    counts as naming it ('fuzzy bunny' vs 'bunny'), unless exactly one of the
    two has a possessive apostrophe ('Bob' vs "Bob's hat"). An empty
    generation is invalid (-1).
    """
    if is_target:
        return _int(example["label"])
    prediction = _clean_referent(as_text(text))
    if not prediction:
        return INVALID
    referent = _clean_referent(as_text(example["targets_pretokenized"]))
    if ("'" in prediction) != ("'" in referent):
        return 0
    p, r = set(prediction.split(" ")), set(referent.split(" "))
    return int(p <= r or r <= p)


def qa(text: Any, example=None, is_target: bool = False):
    """Target: the list of gold answers; prediction: the generated text."""
    if is_target:
        return [as_text(a) for a in np.asarray(example["answers"]).reshape(-1)]
    return as_text(text).strip()


def strip_sentinel(postprocess_fn: Optional[Callable], sentinel: str = SENTINEL_TEXT) -> Callable:
    """Wraps a postprocessor for tasks whose targets start with a sentinel: drop it first."""

    def fn(text: Any, example=None, is_target: bool = False):
        text = as_text(text).strip()
        if text.startswith(sentinel):
            text = text[len(sentinel):].strip()
        return postprocess_fn(text, example=example, is_target=is_target) if postprocess_fn else text

    fn.__name__ = f"strip_sentinel_{getattr(postprocess_fn, '__name__', 'identity')}"
    return fn


def translate_labels(postprocess_fn: Callable, mapping: Mapping[str, str]) -> Callable:
    """Rename predicted verbalizers (e.g. QQP's 'duplicate' -> MRPC's 'equivalent') before `postprocess_fn`.

    Only predictions are translated: the targets are already in the
    evaluated task's label space.
    """

    def fn(text: Any, example=None, is_target: bool = False):
        if not is_target:
            text = as_text(text).strip()
            text = mapping.get(text, text)
        return postprocess_fn(text, example=example, is_target=is_target)

    fn.__name__ = f"translate_{getattr(postprocess_fn, '__name__', 'labels')}"
    return fn
