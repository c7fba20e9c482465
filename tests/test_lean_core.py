"""The lean core imports and runs without TensorFlow, SeqIO or gin.

A subprocess puts a finder at the front of sys.meta_path that refuses those
packages (as on an accelerator image with only JAX, Flax, Optax, Orbax,
safetensors and tensorstore), then imports the model, the prompts, the
methods (LoRA, IA3, adapters), the checkpoint loaders, the train step and benchmarks/, loads a checkpoint with the
sharded loader, trains a prompt for two steps, and runs the train benchmark at
toy shapes. A control run shows the blocker works: importing the trainer
(which needs gin and SeqIO) fails under it.
"""
import os
import subprocess
import sys

from tests.conftest import REPO

BLOCKER = r"""
import sys
BLOCKED = ("tensorflow", "tensorflow_datasets", "tensorflow_text", "seqio", "gin", "t5")


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked (lean-core test)")
        return None


sys.meta_path.insert(0, Blocker())
"""

LEAN = BLOCKER + r"""
import functools, pathlib, tempfile
import jax, jax.numpy as jnp, numpy as np, flax.linen as nn
from prompt_tuning import methods, prompts
from prompt_tuning.methods import counts, export as method_export
from prompt_tuning.models import decoding, t5
from prompt_tuning.checkpoints import huggingface, loading, native, sharded, t5x
from prompt_tuning.training import optimizer, partitioning, steps
import benchmarks.run, benchmarks.worker, benchmarks.flops, benchmarks.hlo, benchmarks.eval_bench
from benchmarks import train_bench
from benchmarks.spec import QUICK

config = t5.get_config("test", vocab_size=64, dropout_rate=0.0)
tokens = jnp.ones((1, 1), jnp.int32)
frozen_np = jax.tree.map(np.asarray, nn.meta.unbox(
    t5.T5(config).init(jax.random.PRNGKey(0), tokens, tokens, tokens)["params"]))
path = pathlib.Path(tempfile.mkdtemp()) / "hf"
huggingface.save(str(path), frozen_np, config)

model = t5.T5(config, functools.partial(prompts.Prompt, length=3, prompt_init=prompts.random_uniform()))
mesh = partitioning.make_mesh()
abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), tokens, tokens, tokens))["params"]
shardings = nn.meta.unbox(partitioning.param_shardings(abstract, mesh))
trainable_sh, frozen_sh = steps.split_params(shardings, steps.PROMPT_REGEX)
frozen, _ = sharded.load_sharded(str(path), config, frozen_sh, dtype=jnp.bfloat16)
params = nn.meta.unbox(model.init(jax.random.PRNGKey(1), tokens, tokens, tokens)["params"])
trainable, _ = steps.split_params(params, steps.PROMPT_REGEX)
tx = optimizer.adafactor()
state = {"step": jnp.zeros((), jnp.int32), "params": trainable, "opt_state": tx.init(trainable)}
rng = np.random.default_rng(0)
batch = {"encoder_input_tokens": rng.integers(2, 64, (2, 8)), "decoder_input_tokens": rng.integers(2, 64, (2, 4)),
         "decoder_target_tokens": rng.integers(2, 64, (2, 4)), "decoder_loss_weights": np.ones((2, 4))}
batch = partitioning.global_batch({k: np.asarray(v, np.int32) for k, v in batch.items()}, mesh)
step = jax.jit(functools.partial(steps.train_step, model=model, tx=tx, z_loss=1e-4, loss_normalizing_factor=None))
losses = []
for _ in range(2):
    state, metrics = step(state, frozen, batch, jax.random.PRNGKey(0))
    losses.append(float(metrics["loss"]))
assert all(np.isfinite(losses)) and losses[1] != losses[0], losses
bench = train_bench.run(QUICK, train_bench.PROMPT)
blocked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not blocked, blocked
print("LEAN OK", losses, sorted(bench)[:3])
"""

CONTROL = BLOCKER + r"""
try:
    from prompt_tuning.training import trainer
except ImportError as e:
    print("BLOCKED:", e)
"""


def _run(script):
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_core_imports_and_trains_without_tensorflow_seqio_gin():
    proc = _run(LEAN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LEAN OK" in proc.stdout


def test_the_blocker_blocks():
    proc = _run(CONTROL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BLOCKED:" in proc.stdout and "is blocked (lean-core test)" in proc.stdout
