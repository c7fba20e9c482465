"""Zero-shot BoolQ in the corpus formats: python experiments/mini_world/zeroshot.py <checkpoint dir> <probe out_dir>."""
import sys, json, numpy as np
import os; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from experiments.mini_world import probe
from prompt_tuning.checkpoints import native
from prompt_tuning.models import t5
ckpt = sys.argv[1]
tok = probe.Tok(''+sys.argv[2]+'/spm.model')
recs = [json.loads(l) for l in open(sys.argv[2]+'/tasks/boolq/val.jsonl')]
config, params = native.load_config(ckpt), native.load(ckpt)
score = probe.score_fn(t5.T5(config), 0)
y = np.array([int(r['label']) for r in recs])
for fmt in ["{p} Question: {q} Answer:", "{p} {Q}", "{p} Q: {q} A:", "passage: {p} question: {q}"]:
    ins = probe._pad([tok.encode(fmt.format(p=r['passage'], q=r['question'], Q=r['question'][0].upper()+r['question'][1:])) + [1] for r in recs], 80)
    for cands in [("False", "True"), ("No", "Yes"), ("no", "yes")]:
        c = probe._pad([tok.encode(w) for w in cands], 4)
        pred = probe.rank_classify(score, params, ins, c)
        print(fmt[:30], cands, round(float((pred == y).mean()), 3), "pred mean", pred.mean())
