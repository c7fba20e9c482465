"""Per-host input: a process gathers only its rows of the global batch, and they land where the full
batch would have put them. (Two real processes: tests/training/test_distributed.py.)"""
import numpy as np
import pytest

from prompt_tuning.training import input_pipeline, partitioning


class Preloaded(input_pipeline.TrainData):
    def __post_init__(self):  # arrays given, not converted from a SeqIO task
        self.mode = "memory"


def _data(n=37, batch=8):
    rng = np.random.default_rng(0)
    data = Preloaded("given", {"inputs": 5, "targets": 3}, batch, seed=2)
    data._arrays = {k: rng.integers(0, 500, (n, 5 if k == "encoder_input_tokens" else 3)).astype(np.uint16)
                    for k in input_pipeline.FEATURES}
    return data


def test_rows_of_a_batch_equal_the_global_batch_sliced():
    data = _data()
    for step in (0, 4, 5, 11):  # steps 4 and 5 straddle an epoch boundary (37 examples, batch 8)
        full = data.batch(step)
        for rows in (slice(0, 4), slice(4, 8), slice(2, 6)):
            part = data.batch(step, rows)
            for k in input_pipeline.FEATURES:
                np.testing.assert_array_equal(part[k], full[k][rows])
    it = data.iterate(3, slice(4, 8))
    np.testing.assert_array_equal(next(it)["encoder_input_tokens"], data.batch(3)["encoder_input_tokens"][4:])


def test_contiguous_rows():
    assert partitioning.contiguous_rows([slice(4, 6), slice(6, 8), slice(4, 6)], 8) == slice(4, 8)
    assert partitioning.contiguous_rows([slice(None)], 8) == slice(0, 8)
    with pytest.raises(partitioning.PartitioningError, match="not one contiguous range"):
        partitioning.contiguous_rows([slice(0, 2), slice(4, 6)], 8)


def test_local_rows_to_global_arrays():
    mesh = partitioning.make_mesh()
    data = _data()
    rows = partitioning.process_rows(8, mesh)
    assert rows == slice(0, 8)  # one process holds every row
    full = partitioning.global_batch(data.batch(2), mesh)
    local = partitioning.global_batch(data.batch(2, rows), mesh, rows, batch_size=8)
    for k in input_pipeline.FEATURES:
        assert local[k].shape == full[k].shape and local[k].sharding == full[k].sharding
        np.testing.assert_array_equal(np.asarray(local[k]), np.asarray(full[k]))
    # A process that read too few rows for its devices is told so, not handed misplaced rows.
    with pytest.raises(partitioning.PartitioningError, match="needs rows 0:8, this process read 0:4"):
        partitioning.global_batch(data.batch(2, slice(0, 4)), mesh, slice(0, 4), batch_size=8)


def test_rows_with_length_buckets_take_the_whole_batchs_bucket():
    data = _data(n=40)
    tokens = data._arrays["encoder_input_tokens"]
    tokens[:, 3:] = 0  # most inputs 3 tokens long ...
    tokens[7, 3:] = 9  # ... one 5 tokens long
    data.length_buckets, data.bucket_window = (3, 5), 2
    data._lengths = input_pipeline.input_lengths(tokens)
    for step in range(6):
        full = data.batch(step)
        for rows in (slice(0, 4), slice(4, 8)):
            part = data.batch(step, rows)
            for k in input_pipeline.FEATURES:
                np.testing.assert_array_equal(part[k], full[k][rows])
    assert {data.batch(s)["encoder_input_tokens"].shape[1] for s in range(6)} == {3, 5}  # both buckets seen
