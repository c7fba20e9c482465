"""A tiny in-memory SeqIO task for the experiments' end-to-end test (byte vocabulary, no files).

    pt_exp_yesno   inputs "letters: <4-8 letters>", target "yes" if they hold an 'a', else "no";
                   train 48, validation 10 examples; metric accuracy (0-100).

Importing this module registers the task (idempotent); tests/experiments/tiny.gin imports it.
"""
import numpy as np
import seqio
import tensorflow as tf

TASK = "pt_exp_yesno"
VOCAB = seqio.ByteVocabulary()
VOCAB_SIZE = 320
SIZES = {"train": 48, "validation": 10}


def _dataset(split, shuffle_files=False, seed=None):
    del shuffle_files, seed
    rng = np.random.default_rng(0 if split == "train" else 1)
    letters = ["".join(rng.choice(list("abcdefg"), size=int(rng.integers(4, 9)))) for _ in range(SIZES[split])]
    return tf.data.Dataset.from_tensor_slices({"inputs": [f"letters: {x}" for x in letters],
                                               "targets": ["yes" if "a" in x else "no" for x in letters]})


def accuracy(targets, predictions):
    return {"accuracy": 100.0 * float(np.mean([t == p for t, p in zip(targets, predictions)]))}


if TASK not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add(
        TASK,
        source=seqio.FunctionDataSource(_dataset, splits=tuple(SIZES)),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
        output_features={k: seqio.Feature(VOCAB, add_eos=True) for k in ("inputs", "targets")},
        metric_fns=[accuracy],
    )
