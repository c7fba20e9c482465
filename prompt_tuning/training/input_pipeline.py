"""SeqIO data for the trainer: a training order that is a pure function of the step, and eval sets.

Features after `seqio.EncDecFeatureConverter(pack=False)` (the reference code
does not pack when a prompt is used):

    encoder_input_tokens  [B, T]   decoder_input_tokens  [B, L]
    decoder_target_tokens [B, L]   decoder_loss_weights  [B, L]

Training order. Preemption safety needs the batch of step s to be known from
s alone, so a run resumed at step s sees exactly the batches an uninterrupted
run would have seen:

- 'memory' (default for tasks): the split is converted once, in order, and
  kept as int arrays (uint16 while the vocabulary allows: 2 bytes a token;
  ReCoRD's train split at 512+ tokens is ~150 MB). Epoch e is the permutation
  `numpy.random.default_rng([seed, e])` of the N examples; batch s holds
  positions s*B ... s*B+B-1 of the concatenated epochs. Resuming is O(1).
- 'stream' (mixtures, or splits too large to hold): seqio's shuffle with a
  fixed seed, repeated, batched, then `skip(s)`. Resuming re-reads s batches
  (tf.data skip still runs the pipeline), which costs time, not correctness.

Length bucketing (opt-in, memory mode; `length_buckets`, e.g. gin/runs/length_buckets.gin).
Real inputs are short and uneven (RTE: mean 79, p95 173 tokens), so padding
every batch to TASK_FEATURE_LENGTHS['inputs'] wastes most of the encoder.
With buckets (b_1 < ... < b_k; the inputs length is always the last), the
positions of `bucket_window` consecutive batches (W*B examples of the order
above) are sorted by input length and cut into W batches of B, which are
taken in the order `numpy.random.default_rng([seed, window, 1]).permutation(W)`;
each batch's encoder_input_tokens are cut to the smallest bucket that holds
its longest input (nothing real is ever cut). Every example is still seen once
per epoch position, batch s is still a function of (seed, s) alone (resume is
bit-identical), and the train step compiles once per bucket: at most
len(buckets) (+1 for the inputs length) shapes. Evaluation sorts each eval set
by length the same way (`eval_order`) and restores the order of the results.


Per-host input. In a multi-process run each process asks for its own rows
of the global batch (`rows`, from `partitioning.process_rows`): in 'memory'
mode it gathers and casts only those rows, so the host work per step is
B / processes rows (with length buckets, cut to the bucket of the whole global batch). The rows of step s are still a pure function of (seed, s),
so preemption safety and the trajectory are unchanged. In 'stream' mode
tf.data still produces the global batch on every process (the shuffle order
is global) and each process keeps its rows.

Task index (multi-task prompts, methods/multitask.py). With `task_order` (a
tuple of task names, see `task_order`), every training batch and every eval set
also carries `encoder_prompt_index` [B] int32: the position of each row's task
in that order, which the train / eval step passes to the model as its
prompt_index. The default order is the leaf tasks of the mixture sorted by name
(seqio's `Mixture.tasks` order; a lone task is task 0); MULTITASK_TASKS gives
it explicitly, e.g. to evaluate one task of a run trained on a mixture with its
own index. In 'stream' mode each task's examples are converted and tagged with
its index before they are mixed at the mixture's rates (tf.data's
sample_from_datasets with the fixed seed, as seqio mixes them), so batch s is
still the seeded pipeline skipped s batches. The order only labels rows: the
data order is the same whatever MULTITASK_TASKS says. In 'memory' mode the tasks' splits
are concatenated (sorted by name) with an index column and epochs are
permutations of the union: each example once an epoch, i.e. the mixture's
rates are not applied (examples-proportional mixing). Eval sets hold one task
each, so each is scored with its task's index.

SeqIO is imported on first use: `TrainData` over given arrays (the
benchmarks) runs without SeqIO or TensorFlow.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np


class _DeferredSeqio:
    """`seqio`, imported on first attribute access."""

    def __getattr__(self, name: str):
        import seqio as module

        return getattr(module, name)


seqio = _DeferredSeqio()

FEATURES = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights")
TASK_INDEX = "encoder_prompt_index"  # [B] int32: each row's task in the task order (multi-task prompts)


class TaskError(ValueError):
    """An unknown task, split or feature length (one-line message)."""


def get_task_or_mixture(name: str):
    try:
        return seqio.get_mixture_or_task(name)
    except ValueError:
        known = sorted(seqio.TaskRegistry.names()) + sorted(seqio.MixtureRegistry.names())
        shown = ", ".join(known[:12]) + (f", ... ({len(known)} in all)" if len(known) > 12 else "")
        raise TaskError(f"unknown task or mixture {name!r}; registered: {shown or 'none'}") from None


def leaf_tasks(name: str) -> list:
    """The tasks of a mixture (each evaluated with its own metrics), or [task]."""
    obj = get_task_or_mixture(name)
    return list(obj.tasks) if isinstance(obj, seqio.Mixture) else [obj]


def task_order(name: str, tasks: Optional[Sequence[str]] = None) -> tuple[str, ...]:
    """The fixed order of tasks whose position is a row's task index (multi-task prompts).

    `tasks` (gin MULTITASK_TASKS) if given, else the leaf tasks of `name` sorted by name (a lone task:
    `(name,)`, task 0). Raises TaskError when `tasks` is not a list of distinct registered task names or
    lacks a leaf task of `name`.
    """
    leaves = [t.name for t in leaf_tasks(name)]
    if tasks is None:
        return tuple(leaves)
    if isinstance(tasks, str) or not all(isinstance(t, str) for t in tasks) or len(set(tasks)) != len(tasks):
        raise TaskError(f"MULTITASK_TASKS must be a list of distinct task names, got {tasks!r}")
    for t in tasks:
        if isinstance(get_task_or_mixture(t), seqio.Mixture):
            raise TaskError(f"MULTITASK_TASKS lists tasks, not mixtures: {t!r} is a mixture")
    missing = [t for t in leaves if t not in tasks]
    if missing:
        raise TaskError(f"MULTITASK_TASKS {list(tasks)} lacks {missing} of {name!r}: every task needs an index")
    return tuple(tasks)


def _with_task_index(arrays: dict, index: int) -> dict:
    """`arrays` [N, ...] with encoder_prompt_index [N] = `index` added."""
    n = len(arrays[FEATURES[0]])
    return {**arrays, TASK_INDEX: np.full((n,), index, np.int32)}


def check_split(name: str, split: str) -> None:
    obj = get_task_or_mixture(name)
    splits = list(obj.splits) if obj.splits is not None else []
    if splits and split not in splits:
        raise TaskError(f"task {name!r} has no split {split!r}; it has {sorted(splits)}")


def check_feature_lengths(name: str, lengths: Mapping[str, int]) -> None:
    obj = get_task_or_mixture(name)
    if not isinstance(lengths, Mapping):
        raise TaskError(f"TASK_FEATURE_LENGTHS must be a dict like {{'inputs': 512, 'targets': 16}}, got {lengths!r}")
    missing = [k for k in ("inputs", "targets") if k not in lengths]
    if missing:
        raise TaskError(f"TASK_FEATURE_LENGTHS lacks {missing} (task {name!r} has {sorted(obj.output_features)})")
    bad = {k: v for k, v in lengths.items() if not isinstance(v, int) or v <= 0}
    if bad:
        raise TaskError(f"TASK_FEATURE_LENGTHS values must be positive ints, got {bad}")


def input_lengths(tokens: np.ndarray) -> np.ndarray:
    """[N, T] token ids (0 = padding) -> [N] tokens up to and including the last non-padding one."""
    nonzero = np.asarray(tokens) != 0
    return np.where(nonzero.any(axis=1), tokens.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)


def check_length_buckets(buckets: Optional[Sequence[int]], max_length: int) -> Optional[tuple[int, ...]]:
    """The sorted buckets with `max_length` (TASK_FEATURE_LENGTHS['inputs']) as the last; None stays None.

    Raises TaskError for a bucket that is not a positive int or exceeds `max_length`.
    """
    if buckets is None:
        return None
    if isinstance(buckets, (int, str)) or not all(isinstance(b, int) and b > 0 for b in buckets):
        raise TaskError(f"length_buckets must be a list of positive ints, got {buckets!r}")
    if any(b > max_length for b in buckets):
        raise TaskError(f"length_buckets {list(buckets)} exceed the inputs length {max_length}")
    return tuple(sorted(set(buckets) | {max_length}))


def bucket_length(longest: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= `longest` (buckets sorted, the last one the inputs length)."""
    return int(buckets[int(np.searchsorted(buckets, longest))])


def _cut_inputs(batch: dict, buckets: Optional[Sequence[int]]) -> dict:
    """encoder_input_tokens cut to the bucket of the batch's longest input (no-op without buckets)."""
    if buckets is None:
        return batch
    tokens = batch["encoder_input_tokens"]
    length = bucket_length(int(input_lengths(tokens).max(initial=1)), buckets)
    return {**batch, "encoder_input_tokens": tokens[:, :length]}


def _converter():
    return seqio.EncDecFeatureConverter(pack=False)


def _stack(rows: list[dict], dtype) -> dict[str, np.ndarray]:
    return {k: np.stack([r[k] for r in rows]).astype(dtype) for k in FEATURES}


def _token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max else np.int32


def convert_split(name: str, split: str, lengths: Mapping[str, int], seed: int = 0,
                  max_examples: Optional[int] = None) -> dict[str, np.ndarray]:
    """All examples of `split`, in seqio order, as [N, ...] int arrays (no shuffle)."""
    obj = get_task_or_mixture(name)
    ds = seqio.get_dataset(
        obj, task_feature_lengths=dict(lengths), feature_converter=_converter(), dataset_split=split,
        shuffle=False, num_epochs=1, seed=seed, verbose=False,
    )
    if max_examples is not None:
        ds = ds.take(max_examples)
    rows = list(ds.as_numpy_iterator())
    if not rows:
        raise TaskError(f"task {name!r} split {split!r} is empty")
    vocab = obj.output_features["targets"].vocabulary
    return _stack(rows, _token_dtype(vocab.vocab_size))


@dataclasses.dataclass
class TrainData:
    """Batches of a training split; `batch(step)` is a pure function of (seed, step)."""

    task_name: str
    lengths: Mapping[str, int]
    batch_size: int
    seed: int = 0
    split: str = "train"
    mode: str = "auto"  # 'memory', 'stream', or 'auto' (memory for tasks, stream for mixtures)
    length_buckets: Optional[Sequence[int]] = None  # input lengths to pad to (see the module docstring)
    bucket_window: int = 50  # W: batches whose examples are sorted by length together
    packing: Any = None  # a packing.Packing: each step's B examples packed into rows (training/packing.py)
    task_order: Optional[Sequence[str]] = None  # rows carry encoder_prompt_index (see the module docstring)
    _arrays: Optional[dict] = dataclasses.field(default=None, init=False, repr=False)
    _lengths: Optional[np.ndarray] = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.mode == "auto":
            self.mode = "stream" if isinstance(get_task_or_mixture(self.task_name), seqio.Mixture) else "memory"
        if self.mode not in ("memory", "stream"):
            raise TaskError(f"TrainData.mode must be 'memory', 'stream' or 'auto', got {self.mode!r}")
        self.length_buckets = check_length_buckets(self.length_buckets, self.lengths["inputs"])
        if self.packing is not None and (self.length_buckets is not None or self.mode != "memory"):
            raise TaskError("packing and length_buckets are alternatives, and packing needs the in-memory "
                            "training order (a task, data_mode 'memory'); choose one")
        if self.length_buckets is not None:
            if self.mode != "memory":
                raise TaskError("length_buckets needs the in-memory training order (data_mode 'memory'; "
                                "mixtures stream)")
            if not isinstance(self.bucket_window, int) or self.bucket_window < 1:
                raise TaskError(f"bucket_window must be a positive int, got {self.bucket_window!r}")
        if self.task_order is not None:
            if self.packing is not None:
                raise TaskError("packed rows take a task index per segment; multi-task indices need unpacked rows")
            self.task_order = task_order(self.task_name, self.task_order)
        if self.mode == "memory":
            if self.task_order is None:
                self._arrays = convert_split(self.task_name, self.split, self.lengths, self.seed)
            else:
                self._arrays = self._indexed_arrays()
            self._lengths = input_lengths(self._arrays["encoder_input_tokens"])

    def _tasks(self) -> list:
        """The leaf tasks that have the split (seqio's mixtures skip the others), sorted by name whatever the
        task order (which only labels the rows: the data order does not depend on it)."""
        tasks = [t for t in leaf_tasks(self.task_name) if t.splits is None or self.split in t.splits]
        if not tasks:
            raise TaskError(f"no task of {self.task_name!r} has a split {self.split!r}")
        return tasks

    def _indexed_arrays(self) -> dict:
        """Each task's split (seqio order) with its task index, concatenated (tasks sorted by name)."""
        parts = [_with_task_index(convert_split(t.name, self.split, self.lengths, self.seed),
                                  self.task_order.index(t.name)) for t in self._tasks()]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _indexed_stream(self):
        """tf.data: each task's converted examples tagged with its index, mixed at the mixture's rates."""
        import tensorflow as tf

        obj = get_task_or_mixture(self.task_name)
        datasets, rates = [], []
        for task in self._tasks():
            ds = task.get_dataset(dict(self.lengths), split=self.split, shuffle=True, seed=self.seed, num_epochs=None)
            ds = _converter()(ds, dict(self.lengths))
            index = tf.constant(self.task_order.index(task.name), tf.int32)
            datasets.append(ds.map(lambda ex, i=index: {**{k: ex[k] for k in FEATURES}, TASK_INDEX: i}))
            rates.append(float(obj.get_rate(task)) if isinstance(obj, seqio.Mixture) else 1.0)
        if len(datasets) == 1:
            return datasets[0]
        return tf.data.Dataset.sample_from_datasets(datasets, weights=rates, seed=self.seed,
                                                    stop_on_empty_dataset=True)

    @property
    def num_examples(self) -> Optional[int]:
        return None if self._arrays is None else len(self._arrays[FEATURES[0]])

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def _examples_at(self, positions: np.ndarray) -> np.ndarray:
        """Example indices at `positions` of the concatenated epoch orders."""
        n = self.num_examples
        epochs, offsets = positions // n, positions % n
        orders = {e: self._epoch_order(int(e)) for e in np.unique(epochs)}
        return np.array([orders[e][o] for e, o in zip(epochs, offsets)])

    def batch_indices(self, step: int) -> np.ndarray:
        """[B] example indices of the batch of `step` (memory mode)."""
        b = self.batch_size
        if self.length_buckets is None:
            return self._examples_at(np.arange(step * b, (step + 1) * b))
        w = self.bucket_window
        window, k = divmod(step, w)
        idx = self._examples_at(np.arange(window * w * b, (window + 1) * w * b))
        idx = idx[np.argsort(self._lengths[idx], kind="stable")]
        which = np.random.default_rng([self.seed, window, 1]).permutation(w)[k]
        return idx[which * b:(which + 1) * b]

    def batch(self, step: int, rows: Optional[slice] = None) -> dict[str, np.ndarray]:
        """The global batch of `step` (memory mode): int32 [B, ...] arrays; with length buckets
        encoder_input_tokens is [B, bucket]; with packing, the same B examples as packing.PACKED_FEATURES
        [R, W] / [R, LW] (R a multiple of packing.row_multiple). With `rows`, only those rows are gathered:
        `batch(s, rows)` equals `batch(s)[rows]` (cut to the whole batch's bucket)."""
        idx = self.batch_indices(step)
        if self.packing is not None:  # the step's B examples (the unpacked step's) packed into R <= B rows
            from prompt_tuning.training import packing

            if rows is not None and (rows.start or 0, rows.stop) != (0, self.batch_size):
                raise TaskError("packed batches are read whole (one process); per-host rows are not supported")
            return packing.pack({k: v[idx] for k, v in self._arrays.items()}, self.packing)[0]
        if rows is None:
            return _cut_inputs({k: v[idx].astype(np.int32) for k, v in self._arrays.items()}, self.length_buckets)
        out = {k: v[idx[rows]].astype(np.int32) for k, v in self._arrays.items()}
        if self.length_buckets is not None:  # every process cuts to the global batch's bucket: one shape
            tokens = self._arrays["encoder_input_tokens"][idx]
            length = bucket_length(int(input_lengths(tokens).max(initial=1)), self.length_buckets)
            out["encoder_input_tokens"] = out["encoder_input_tokens"][:, :length]
        return out

    def iterate(self, start_step: int, rows: Optional[slice] = None) -> Iterator[dict[str, np.ndarray]]:
        """Batches of steps start_step, start_step + 1, ... (only `rows` of each, if given)."""
        if self.mode == "memory":
            step = start_step
            while True:
                yield self.batch(step, rows)
                step += 1
        if self.task_order is None:
            ds = seqio.get_dataset(
                get_task_or_mixture(self.task_name), task_feature_lengths=dict(self.lengths),
                feature_converter=_converter(), dataset_split=self.split, shuffle=True, num_epochs=None,
                seed=self.seed, verbose=False,
            )
        else:
            ds = self._indexed_stream()
        ds = ds.batch(self.batch_size, drop_remainder=True).skip(start_step)
        rows = rows if rows is not None else slice(None)
        keys = FEATURES if self.task_order is None else FEATURES + (TASK_INDEX,)
        for batch in ds.as_numpy_iterator():
            yield {k: np.asarray(batch[k][rows], np.int32) for k in keys}


@dataclasses.dataclass
class EvalSet:
    """One task's eval split: model features [N, ...] and the preprocessed examples (for metrics).

    With a task order, `features` also holds encoder_prompt_index [N] (the task's index on every row).
    """

    task: Any
    features: dict[str, np.ndarray]
    examples: list[dict]

    @property
    def name(self) -> str:
        return self.task.name

    def __len__(self) -> int:
        return len(self.examples)


def load_eval_sets(name: str, split: str, lengths: Mapping[str, int],
                   max_examples: Optional[int] = None, order: Optional[Sequence[str]] = None) -> list:
    """An EvalSet per leaf task of `name` for `split`, each with its task's index when `order` (a
    `task_order`) is given; TaskError when a length or the split is wrong."""
    check_feature_lengths(name, lengths)
    sets = []
    for task in leaf_tasks(name):
        check_split(task.name, split)
        index = None if order is None else list(order).index(task.name)
        sets.append(load_eval_set(task, split, lengths, max_examples, prompt_index=index))
    return sets


def load_eval_set(task, split: str, lengths: Mapping[str, int], max_examples: Optional[int] = None,
                  seed: int = 0, prompt_index: Optional[int] = None) -> EvalSet:
    """Preprocessed examples (with *_pretokenized strings) and the same examples converted; with
    `prompt_index`, features['encoder_prompt_index'] [N] holds it on every row."""
    ds = task.get_dataset(dict(lengths), split=split, shuffle=False, num_epochs=1, seed=seed)
    if max_examples is not None:
        ds = ds.take(max_examples)
    examples = list(ds.as_numpy_iterator())
    if not examples:
        raise TaskError(f"task {task.name!r} split {split!r} is empty")
    converted = _converter()(ds, dict(lengths))
    features = _stack(list(converted.as_numpy_iterator()), np.int32)
    if prompt_index is not None:
        features = _with_task_index(features, prompt_index)
    return EvalSet(task, features, examples)


def eval_order(features: dict[str, np.ndarray], length_buckets: Optional[Sequence[int]] = None) -> np.ndarray:
    """The order to evaluate examples in: by input length with buckets (stable), else as stored."""
    tokens = features["encoder_input_tokens"]
    if length_buckets is None:
        return np.arange(len(tokens))
    return np.argsort(input_lengths(tokens), kind="stable")


def eval_batches(features: dict[str, np.ndarray], batch_size: int,
                 length_buckets: Optional[Sequence[int]] = None) -> Iterator[tuple[dict, int]]:
    """(batch padded with all-zero rows to `batch_size`, number of real rows).

    With `length_buckets` (checked, see check_length_buckets) each batch's
    encoder_input_tokens are cut to the bucket of its longest input; sort the
    features by `eval_order` first so that batches hold similar lengths.
    """
    n = len(next(iter(features.values())))
    for start in range(0, n, batch_size):
        chunk = {k: v[start:start + batch_size] for k, v in features.items()}
        real = len(next(iter(chunk.values())))
        if real < batch_size:
            chunk = {k: np.concatenate([v, np.zeros((batch_size - real,) + v.shape[1:], v.dtype)])
                     for k, v in chunk.items()}
        yield (_cut_inputs(chunk, length_buckets) if "encoder_input_tokens" in chunk else chunk), real
