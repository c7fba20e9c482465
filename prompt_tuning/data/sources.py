"""Where SuperGLUE examples come from: TFDS builders or the official jsonl files.

Both sources yield the TFDS `super_glue/*:1.0.2` schema (FEATURE_SPECS: the
same keys, dtypes and shapes), so every task runs the same preprocessors
whichever source it reads:

- TFDS: `TfdsSource('super_glue/<config>:1.0.2')` (a `seqio.TfdsDataSource`), config
  `wsc.fixed` for WSC as in T5 (prepared TFDS data; `tfds_data_dir` optional).
- jsonl: the official SuperGLUE download, one directory per task
  (`<superglue_dir>/RTE/train.jsonl`, `.../RTE/val.jsonl`, `AX-b/AX-b.jsonl`),
  or any directory of files in a task's schema (synthetic data). The file of
  each split is configurable (DEFAULT_SPLIT_FILES). Rows are converted the
  way the TFDS builder converts them: MultiRC is flattened to one example per
  answer, ReCoRD to one example per query with its sorted unique entity and
  answer strings (ReCoRD's `end` offsets are inclusive), labels become class
  ids, missing labels -1, WSC spans get the builder's `wsc.fixed` repairs.

WSC's train split is filtered to label True (T5's `correct_referent_only`;
259 of 554 examples) in both sources, since the model is trained to generate
the correct referent; other splits keep every example.

Files are read when a dataset is built, never at registration, through
`tf.io.gfile` (local paths or gs://); `.gz` files are decompressed.
"""
from __future__ import annotations

import gzip
import json
import os
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import seqio
import tensorflow as tf

from prompt_tuning.data import superglue

TFDS_VERSION = "1.0.2"
TFDS_CONFIG = {t: t for t in superglue.TASKS} | {"wsc": "wsc.fixed"}

SPLITS = {t: ("test",) if t in superglue.DIAGNOSTIC_TASKS else ("train", "validation", "test") for t in superglue.TASKS}

# Directory names of the official download.
JSONL_DIRS = {
    "boolq": "BoolQ", "cb": "CB", "copa": "COPA", "multirc": "MultiRC", "record": "ReCoRD",
    "rte": "RTE", "wic": "WiC", "wsc": "WSC", "axb": "AX-b", "axg": "AX-g",
}
SUPERGLUE_DIR_ENV = "SUPERGLUE_DATA_DIR"

# Train splits filtered to positive examples (see module docstring).
POSITIVE_ONLY_SPLITS = {"wsc": ("train",)}

_S, _I32, _I64 = tf.string, tf.int32, tf.int64


def _spec(**kinds) -> dict:
    out = {}
    for key, kind in kinds.items():
        if isinstance(kind, dict):
            out[key] = _spec(**kind)
        elif kind == "strings":
            out[key] = tf.TensorSpec([None], _S)
        else:
            out[key] = tf.TensorSpec([], kind)
    return out


FEATURE_SPECS: Mapping[str, dict] = {
    "boolq": _spec(question=_S, passage=_S, idx=_I32, label=_I64),
    "cb": _spec(premise=_S, hypothesis=_S, idx=_I32, label=_I64),
    "copa": _spec(premise=_S, choice1=_S, choice2=_S, question=_S, idx=_I32, label=_I64),
    "multirc": _spec(paragraph=_S, question=_S, answer=_S,
                     idx={"paragraph": _I32, "question": _I32, "answer": _I32}, label=_I64),
    "record": _spec(passage=_S, query=_S, entities="strings", answers="strings",
                    idx={"passage": _I32, "query": _I32}),
    "rte": _spec(premise=_S, hypothesis=_S, idx=_I32, label=_I64),
    "wic": _spec(word=_S, sentence1=_S, sentence2=_S, start1=_I32, start2=_I32, end1=_I32, end2=_I32,
                 idx=_I32, label=_I64),
    "wsc": _spec(text=_S, span1_index=_I32, span2_index=_I32, span1_text=_S, span2_text=_S, idx=_I32,
                 label=_I64),
    "axb": _spec(sentence1=_S, sentence2=_S, idx=_I32, label=_I64),
    "axg": _spec(premise=_S, hypothesis=_S, idx=_I32, label=_I64),
}


def default_split_files(task: str) -> dict[str, str]:
    """The official file names: train.jsonl / val.jsonl (AX-b.jsonl / AX-g.jsonl for the diagnostics)."""
    superglue.check_task(task)
    if task in superglue.DIAGNOSTIC_TASKS:
        return {"test": f"{JSONL_DIRS[task]}.jsonl"}
    return {"train": "train.jsonl", "validation": "val.jsonl"}


# ---------------------------------------------------------------------------
# Reading and converting rows
# ---------------------------------------------------------------------------


class DataFileError(ValueError):
    """A data file that is missing or does not match its schema (one-line message)."""


# DataFileErrors raised inside tf.data (from_generator) reach the caller wrapped in a TensorFlow
# error whose text is a traceback; the original is kept here so that `unwrap` can return it.
_RAISED_IN_TF_DATA: list = []


def unwrap(error: BaseException) -> "DataFileError | None":
    """The DataFileError behind a TensorFlow error raised by a generator of this module, if any."""
    text = str(error)
    for e in reversed(_RAISED_IN_TF_DATA):
        if str(e) in text:
            return e
    return None


def _recording_errors(rows: Iterator[dict], path: str, where: list) -> Iterator[dict]:
    """Yields `rows`; a DataFileError (or a decoding error) is given `path:line` and recorded for `unwrap`."""
    try:
        yield from rows
    except DataFileError as e:
        err = e if str(e).startswith(path) else DataFileError(f"{path}:{where[0]}: {e}")
        _RAISED_IN_TF_DATA[:] = _RAISED_IN_TF_DATA[-9:] + [err]
        raise err from None


def read_jsonl(path: str, where: Optional[list] = None) -> Iterator[dict]:
    """JSON objects, one per non-empty line; `.gz` files are decompressed.

    DataFileError `path:line: ...` for a line that is not UTF-8 or not a JSON object. `where[0]`,
    if given, is kept at the current line number (for errors raised by the rows' consumer).
    """
    with tf.io.gfile.GFile(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
        for lineno, line in enumerate(stream, 1):
            if where is not None:
                where[0] = lineno
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise DataFileError(f"{path}:{lineno}: not UTF-8 (byte {e.object[e.start]:#x} at column "
                                    f"{e.start + 1})") from None
            except json.JSONDecodeError as e:
                raise DataFileError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataFileError(f"{path}:{lineno}: not a JSON object")
            yield row


def label_id(task: str, value: Any) -> int:
    """A jsonl label as the TFDS class id (-1 when absent, as in test files)."""
    if value is None:
        return -1
    names = superglue.LABEL_NAMES[task]
    if task == "copa":  # 0 / 1 = which choice is right
        return 1 if value else 0
    if isinstance(value, bool) or (names == ("False", "True") and value in (0, 1)):
        value = "True" if value else "False"
    if value in names:
        return names.index(value)
    raise DataFileError(f"{task}: label {value!r} is not one of {names}")


_UNFIXABLE_WSC_SPANS = ("Kamenev and Zinoviev", "Kamenev, Zinoviev, and Stalin")


def fix_wsc_spans(ex: dict) -> dict:
    """The TFDS `wsc.fixed` repairs of span texts that are not substrings of the text.

    The span's first letter takes the case of the word at its index, a trailing
    full stop and newlines are removed. Reproduced with the builder's quirks: its
    'theyscold' text repair is a no-op (only span2_index changes to 10).
    """
    ex = dict(ex)
    for k in ("span1", "span2"):
        text, index = ex[f"{k}_text"], ex[f"{k}_index"]
        if not text or text in ex["text"] or text in _UNFIXABLE_WSC_SPANS:
            continue
        if "theyscold" in text:
            ex["span2_index"] = 10
        words = ex["text"].split()
        if 0 <= index < len(words) and words[index]:
            first = words[index][0]
            text = (text[0].lower() if first.islower() else text[0].upper()) + text[1:]
        ex[f"{k}_text"] = text.rstrip(".").replace("\n", " ")
    return ex


def _record_strings(passage: dict) -> list[str]:
    text = passage["text"]
    return sorted({text[e["start"]: e["end"] + 1] for e in passage.get("entities", [])})


def convert_rows(task: str, rows: Iterable[dict]) -> Iterator[dict]:
    """Official SuperGLUE jsonl rows -> examples in the TFDS schema of `task`."""
    superglue.check_task(task)
    for row in rows:
        try:
            yield from _convert_row(task, row)
        except (KeyError, TypeError) as e:
            raise DataFileError(f"{task}: row idx={row.get('idx', '?')} lacks or mistypes field {e}") from None


def _convert_row(task: str, row: dict) -> Iterator[dict]:
    if task == "multirc":
        passage = row["passage"]
        for q in passage["questions"]:
            for a in q["answers"]:
                label = a.get("label")
                yield {
                    "paragraph": passage["text"], "question": q["question"], "answer": a["text"],
                    "idx": {"paragraph": int(row["idx"]), "question": int(q["idx"]), "answer": int(a["idx"])},
                    "label": -1 if label is None else label_id(task, bool(label)),
                }
    elif task == "record":
        passage = row["passage"]
        entities = _record_strings(passage)
        for qa in row["qas"]:
            yield {
                "passage": passage["text"], "query": qa["query"], "entities": entities,
                "answers": sorted({a["text"] for a in qa.get("answers", [])}),
                "idx": {"passage": int(row["idx"]), "query": int(qa["idx"])},
            }
    else:
        if task == "wsc":
            row = {**row, **row["target"]}
        keys = [k for k in FEATURE_SPECS[task] if k not in ("idx", "label")]
        ex = {k: row[k] for k in keys}
        if task == "wsc":
            ex = fix_wsc_spans(ex)
        ex["idx"] = int(row["idx"])
        ex["label"] = label_id(task, row.get("label"))
        yield ex


# ---------------------------------------------------------------------------
# Data sources
# ---------------------------------------------------------------------------

PathLike = Union[str, Callable[[], Optional[str]], None]


class JsonlDataSource(seqio.DataSource):
    """Examples converted from jsonl files, one file per split, read lazily.

    `data_dir` may be a callable resolved when a dataset is built (so gin or
    environment settings made after registration apply). A split's file name
    may be a tuple of alternatives (e.g. `.jsonl.gz`, `.jsonl`): the first that
    exists is read. `convert` maps an iterator of rows to examples matching
    `output_signature`.
    """

    def __init__(self, data_dir: PathLike, split_files: Mapping[str, Union[str, Sequence[str]]],
                 convert: Callable[[Iterable[dict]], Iterator[dict]], output_signature: Mapping,
                 what: str = "jsonl data", missing_hint: str = ""):
        super().__init__(splits=tuple(split_files), caching_permitted=True)
        self._data_dir = data_dir
        self._split_files = dict(split_files)
        self._convert = convert
        self._signature = output_signature
        self._what = what
        self._hint = missing_hint

    @property
    def supports_arbitrary_sharding(self) -> bool:
        """False: one file per split (sharded by example in get_dataset)."""
        return False

    @property
    def output_signature(self) -> Mapping:
        """The tf.TensorSpec of each feature of an example."""
        return self._signature

    def path(self, split: str) -> str:
        """The file of `split` (the first candidate that exists); DataFileError naming what is missing."""
        if split not in self._split_files:
            raise DataFileError(f"{self._what} has no split {split!r}; it has {sorted(self._split_files)}")
        data_dir = self._data_dir() if callable(self._data_dir) else self._data_dir
        names = self._split_files[split]
        names = (names,) if isinstance(names, str) else tuple(names)
        if not data_dir and not all(os.path.isabs(n) for n in names):
            raise DataFileError(f"{self._what}: no data directory is set{self._hint}")
        candidates = [os.path.join(data_dir or "", n) for n in names]
        for c in candidates:
            if tf.io.gfile.exists(c):
                return c
        raise DataFileError(f"{self._what}: split {split!r} file not found: {' or '.join(candidates)}{self._hint}")

    def list_shards(self, split: str) -> Sequence[str]:
        """[the split's one file]."""
        return [self.path(split)]

    def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                    shard_info: Optional[seqio.ShardInfo] = None, *, sequence_length=None,
                    use_cached: bool = False, num_epochs: Optional[int] = 1) -> tf.data.Dataset:
        """The split's examples, converted to the output signature, in file order."""
        del shuffle, seed, sequence_length, use_cached, num_epochs  # one file per split; seqio shuffles examples
        path = self.path(split)
        convert = self._convert
        def rows():
            where = [0]
            return _recording_errors(convert(read_jsonl(path, where)), path, where)

        ds = tf.data.Dataset.from_generator(rows, output_signature=self._signature)
        if shard_info and shard_info.num_shards > 1:
            ds = ds.shard(shard_info.num_shards, shard_info.index)
        return ds


class PositiveOnlySplits(seqio.DataSource):
    """Wraps a source so that some splits keep only examples with label 1."""

    def __init__(self, inner: seqio.DataSource, splits_to_filter: Sequence[str]):
        super().__init__(splits=inner.splits, caching_permitted=inner.caching_permitted)
        self.inner = inner
        self._filtered = tuple(splits_to_filter)

    @property
    def supports_arbitrary_sharding(self) -> bool:
        """As the wrapped source."""
        return self.inner.supports_arbitrary_sharding

    def list_shards(self, split: str) -> Sequence[str]:
        """As the wrapped source."""
        return self.inner.list_shards(split)

    def num_input_examples(self, split: str) -> Optional[int]:
        """The wrapped source's count, or None for a filtered split (unknown until read)."""
        return None if split in self._filtered else self.inner.num_input_examples(split)

    def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                    shard_info: Optional[seqio.ShardInfo] = None, **kwargs) -> tf.data.Dataset:
        """The wrapped source's examples; on a filtered split only those with label 1."""
        ds = self.inner.get_dataset(split=split, shuffle=shuffle, seed=seed, shard_info=shard_info, **kwargs)
        if split in self._filtered:
            ds = ds.filter(lambda x: tf.equal(x["label"], 1))
        return ds


class TfdsSource(seqio.TfdsDataSource):
    """`seqio.TfdsDataSource` whose size lookup tolerates unknown split sizes.

    seqio asks for the split size to decide on in-memory caching; TFDS raises
    when the dataset's metadata has no split info (mocked data, or a builder
    not prepared yet), which would fail `get_dataset` for an optional
    optimisation. The size is then reported unknown.
    """

    def num_input_examples(self, split: str) -> Optional[int]:
        """The split's size from the TFDS metadata, or None when the metadata has none."""
        try:
            return super().num_input_examples(split)
        except (KeyError, ValueError):
            return None

    def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                    shard_info: Optional[seqio.ShardInfo] = None, **kwargs) -> tf.data.Dataset:
        """The TFDS split; DataFileError (one line saying how to prepare it) when the data is not prepared."""
        # seqio's loader calls tfds.load(download=True): offline, an unprepared dataset fails deep
        # inside TFDS's download code with an unrelated error. Say what is missing instead.
        try:
            return super().get_dataset(split=split, shuffle=shuffle, seed=seed, shard_info=shard_info, **kwargs)
        except Exception as e:  # noqa: BLE001 -- re-raised unless the dataset is simply not there
            builder = self.tfds_dataset.builder
            if builder.is_prepared():
                raise
            raise DataFileError(
                f"TFDS dataset {self.tfds_dataset.name} is not prepared in {builder.data_dir!r} and could not be "
                f"downloaded ({type(e).__name__}); prepare it where there is network (tfds build) and copy it "
                f"there (or set tfds_data_dir), or use the official jsonl files (the '_jsonl' tasks)") from e


def tfds_source(task: str, version: str = TFDS_VERSION, tfds_data_dir: Optional[str] = None) -> seqio.DataSource:
    """The TFDS builder of `task` (super_glue/wsc.fixed for WSC)."""
    superglue.check_task(task)
    src = TfdsSource(
        tfds_name=f"super_glue/{TFDS_CONFIG[task]}:{version}", tfds_data_dir=tfds_data_dir, splits=SPLITS[task]
    )
    return _wrap(task, src)


def jsonl_source(task: str, data_dir: PathLike, split_files: Optional[Mapping[str, Any]] = None,
                 missing_hint: str = "") -> seqio.DataSource:
    """jsonl files of `task` in `data_dir` (the task's own directory), one per split."""
    superglue.check_task(task)
    src = JsonlDataSource(
        data_dir, split_files or default_split_files(task), lambda rows: convert_rows(task, rows),
        FEATURE_SPECS[task], what=f"SuperGLUE {task} jsonl", missing_hint=missing_hint,
    )
    return _wrap(task, src)


def benchmark_jsonl_dir(task: str, superglue_dir: Optional[str]) -> Callable[[], Optional[str]]:
    """A lazily resolved `<superglue_dir or $SUPERGLUE_DATA_DIR>/<Task>` directory."""
    def resolve():
        root = superglue_dir or os.environ.get(SUPERGLUE_DIR_ENV)
        return os.path.join(root, JSONL_DIRS[task]) if root else None
    return resolve


def _wrap(task: str, src: seqio.DataSource) -> seqio.DataSource:
    splits = [s for s in POSITIVE_ONLY_SPLITS.get(task, ()) if s in src.splits]
    return PositiveOnlySplits(src, splits) if splits else src
