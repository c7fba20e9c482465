"""Model tuning on a mini task (is it learnable at this size?): python experiments/mini_world/modeltune.py <checkpoint> <probe out_dir> <task> <steps>."""
import sys, json, numpy as np, jax, jax.numpy as jnp, optax, time
import os; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from experiments.mini_world import probe
from prompt_tuning.checkpoints import native
from prompt_tuning.models import t5
ckpt, out, task, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tok = probe.Tok(out + '/spm.model')
data, cands = probe.load_task(out + '/tasks', task, tok, 64)
config, params = native.load_config(ckpt), native.load(ckpt)
model = t5.T5(config)
score = probe.score_fn(model, 0)
opt = optax.adam(1e-3); state = opt.init(params)
@jax.jit
def step(p, s, x, y):
    def lf(p):
        d = jnp.concatenate([jnp.zeros_like(y[:, :1]), y[:, :-1]], 1)
        return probe.xent(model.apply({"params": p}, x, d, y), y)
    l, g = jax.value_and_grad(lf)(p); u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, l
(xtr, ytr), (xva, yva) = data["train"], data["validation"]
rng = np.random.default_rng(0); t0 = time.time()
for i in range(steps):
    b = rng.integers(0, len(xtr), 32)
    params, state, l = step(params, state, jnp.asarray(xtr[b]), jnp.asarray(cands[ytr[b]]))
    if (i + 1) % 100 == 0:
        acc = float((probe.rank_classify(score, params, xva, cands) == yva).mean())
        print(task, ckpt.split('/')[-1], i + 1, round(float(l), 3), acc, round(time.time() - t0), flush=True)
