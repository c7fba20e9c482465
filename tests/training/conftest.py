"""Trainer tests compile the same small train and eval steps many times (each run builds its own
jitted functions); a persistent compilation cache in a per-session temporary directory lets the
later runs reuse the first run's executables."""
import jax
import pytest


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
