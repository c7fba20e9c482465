"""Tiny in-memory SeqIO tasks for trainer tests (byte vocabulary, no files, no network).

    pt_test_yesno   inputs "letters: <5-10 random letters>", target "yes" if the letters hold an 'a'
                    else "no"; train 64, validation 12 examples; metric accuracy.

The model for these tasks is t5_config('test', vocab_size=VOCAB_SIZE). Importing this module
registers the tasks (idempotent); gin files of subprocess tests `import tests.training.synthetic_tasks`.
"""
import numpy as np
import seqio
import tensorflow as tf

TASK = "pt_test_yesno"
LABELS = ("yes", "no")
VOCAB = seqio.ByteVocabulary()
VOCAB_SIZE = 320  # >= 259 byte ids; a multiple of 8 shards evenly
LENGTHS = {"inputs": 16, "targets": 4}
SIZES = {"train": 64, "validation": 12}


def _examples(split: str):
    rng = np.random.default_rng(0 if split == "train" else 1)
    inputs, targets = [], []
    for _ in range(SIZES[split]):
        letters = "".join(rng.choice(list("abcdefgh"), size=int(rng.integers(5, 11))))
        inputs.append(f"letters: {letters}")
        targets.append("yes" if "a" in letters else "no")
    return {"inputs": inputs, "targets": targets}


def _dataset(split, shuffle_files=False, seed=None):
    del shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices(_examples(split))


def accuracy(targets, predictions):
    return {"accuracy": 100.0 * float(np.mean([t == p for t, p in zip(targets, predictions)]))}


def register() -> None:
    if TASK in seqio.TaskRegistry.names():
        return
    features = {k: seqio.Feature(VOCAB, add_eos=True) for k in ("inputs", "targets")}
    seqio.TaskRegistry.add(
        TASK,
        source=seqio.FunctionDataSource(_dataset, splits=tuple(SIZES)),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
        output_features=features,
        metric_fns=[accuracy],
    )


register()
