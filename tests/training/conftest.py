"""Fixtures the trainer tests share.

Trainer tests compile the same small train and eval steps many times (each run builds its own
jitted functions); a persistent compilation cache in a per-session temporary directory lets the
later runs reuse the first run's executables. Every test starts and ends with an empty gin config.
`frozen_ckpt` is the frozen model of the synthetic task (tests/training/synthetic_tasks.py);
`kill_at` injects a kill at a fault point (prompt_tuning/fault_points.py); `real_rte_task` registers
32 real RTE examples (../shared/data) as a task.
"""
import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import pytest

from prompt_tuning import fault_points
from prompt_tuning.checkpoints import native
from prompt_tuning.models import t5
from tests.training import synthetic_tasks as st

CONFIG = t5.get_config("test", vocab_size=st.VOCAB_SIZE)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache_dir(tmp_path_factory):
    """The session's cache directory (subprocess tests pass it on as JAX_COMPILATION_CACHE_DIR)."""
    previous = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    path = str(tmp_path_factory.mktemp("jax_cache"))
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    yield path
    jax.config.update("jax_compilation_cache_dir", previous[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture(scope="module")
def frozen_ckpt(tmp_path_factory):
    """A native checkpoint of a random 'test'-size T5 (CONFIG) for the byte-vocabulary task."""
    path = str(tmp_path_factory.mktemp("frozen"))
    tokens = jnp.ones((1, 1), jnp.int32)
    native.save(path, nn.meta.unbox(t5.T5(CONFIG).init(jax.random.PRNGKey(7), tokens, tokens, tokens)["params"]), CONFIG)
    return path


RTE_LENGTHS = {"inputs": 512, "targets": 8}  # real RTE inputs padded as fixed-padding runs read them


def real_rte_task(name: str, split: str, split_file: str):
    """A SeqIO task `name` whose `split` is ../shared/data/superglue/RTE/`split_file` (train32.jsonl or
    dev32.jsonl: 32 real examples) in the taskless T5 format with the real T5 vocabulary; skips the test
    when the shared data is absent."""
    from prompt_tuning.data import tasks, vocab
    from tests.conftest import shared_path

    voc = vocab.get_vocabulary(str(shared_path("t5", "spiece.model")))
    return tasks.register_jsonl_task(name, "rte", str(shared_path("superglue", "RTE")),
                                     split_files={split: split_file}, vocabulary=voc)


class Killed(BaseException):
    """Raised at a fault point; not an Exception, so no handler of the trainer sees it (as with SIGKILL)."""


@pytest.fixture
def kill_at(monkeypatch):
    """kill_at(point, nth): the nth time fault point `point` is reached, Killed is raised; kill_at(None): no kill."""

    def arm(point, nth=1):
        seen = {"n": 0}

        def reached(name):
            if name == point:
                seen["n"] += 1
                if seen["n"] == nth:
                    raise Killed(name)

        monkeypatch.setattr(fault_points, "reached", reached if point else lambda name: None)

    return arm
