"""Zero-shot recall probe: does a frozen checkpoint know the facts of the task's test people?

    python -m experiments.recall_world.recall_probe CHECKPOINT [CHECKPOINT ...] [--split test]

For every (person, relation) of the split's people and every corpus phrasing of the
relation that ends in the value (5 or 6 per relation), the checkpoint scores each value of
the relation as the completion, in both of T5's pretraining formats, and picks the
most likely one:

  span    inputs '<Name> lives in <extra_id_0>.'   targets '<extra_id_0> <value>' + EOS
  prefix  inputs '<Name> lives in'                 targets '<value>'

For every (person, trait) and every pair of corpus phrasings of the trait (3 per trait),
it scores the two completions after the name ('is left-handed' / 'is right-handed')
the same way. Accuracy per relation or trait and format, against chance (1 / number of
values; 1/2 for a trait) and the prior (always the relation's most frequent value among
all people; 50% for a trait, which every split balances). A probe
that rises with model size is the recall control of the issue's gate (b). The
model, loading and scoring are the package's (checkpoints.loading,
models.decoding); nothing here trains.
"""
from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import sentencepiece as spm

from prompt_tuning.checkpoints import loading
from prompt_tuning.data.recall_world import world as world_lib
from prompt_tuning.models import decoding, t5

VOCAB = "assets/recall_world/spm.model"
EXTRA_IDS = 100


def probe_prompts(relation: str) -> list[tuple[str, bool]]:
    """(prefix template, value takes an article) for every corpus phrasing of `relation` that ends in the value."""
    out = []
    for t in world_lib.FACT_TEMPLATES[relation]:
        for slot, article in (("{x}", False), ("{ax}", True)):
            if t.endswith(slot):
                out.append((t[: -len(slot)].rstrip(), article))
    return out


def _pad(rows: list[list[int]], length: int) -> np.ndarray:
    out = np.zeros((len(rows), length), np.int32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r[:length]
    return out


def questions(world, split: str):
    """(prefix text, candidate completions, index of the true one, relation or trait) for the split's people."""
    for person in world.split_people[split]:
        for rel in world_lib.RELATIONS:
            values = world_lib.VALUES[rel]
            for template, article in probe_prompts(rel):
                yield (world_lib.capitalize(template.format(n=person.name)),
                       [world_lib.a(v) if article else v for v in values], values.index(person.value(rel)), rel)
        for trait in world_lib.TRAITS:
            for yes, no in zip(world_lib.TRAIT_TEMPLATES[trait][True], world_lib.TRAIT_TEMPLATES[trait][False]):
                assert yes.startswith("{n} ") and no.startswith("{n} "), (yes, no)
                yield person.name, [yes[4:], no[4:]], 0 if person.has(trait) else 1, trait


def probe_rows(world, split: str, sp, fmt: str, vocab_size: int):
    """(inputs [N*C, T], targets [N*C, L], gold [N], C per question, relation or trait per question)."""
    sentinel = vocab_size - 1  # <extra_id_0>: seqio puts the extra ids at the top of the vocabulary
    inputs, targets, gold, relations, sizes = [], [], [], [], []
    for prefix_text, candidates, true, kind in questions(world, split):
        prefix = sp.encode(prefix_text)
        for c in candidates:
            value = sp.encode(c)
            if fmt == "span":
                inputs.append(prefix + [sentinel] + sp.encode(".") + [decoding.EOS_ID])
                targets.append([sentinel] + value + [decoding.EOS_ID])
            else:
                inputs.append(prefix + [decoding.EOS_ID])
                targets.append(value)
        gold.append(true)
        relations.append(kind)
        sizes.append(len(candidates))
    return _pad(inputs, 24), _pad(targets, 10), np.array(gold), sizes, relations


def prior_baseline(world, split: str) -> float:
    """Accuracy (%) of always answering each relation's most frequent value over all people: what a model
    that learned the corpus's value frequencies but no person's fact would score."""
    right = []
    for rel in world_lib.RELATIONS:
        values = [p.value(rel) for p in world.people]
        top = max(sorted(set(values)), key=values.count)  # ties: the first in sorted order (set order is hash-seeded)
        right += [p.value(rel) == top for p in world.split_people[split]]
    return 100 * float(np.mean(right))


def trait_prior(world, split: str) -> float:
    """The same for the traits: always the more frequent bit (50% on a balanced split)."""
    right = []
    for trait in world_lib.TRAITS:
        bits = [p.has(trait) for p in world.split_people[split]]
        right.append(max(sum(bits), len(bits) - sum(bits)) / len(bits))
    return 100 * float(np.mean(right))


def recall(checkpoint: str, split: str = "test", seed: int = 0, num_people: int = world_lib.DEFAULT_NUM_PEOPLE) -> dict:
    """{'<fmt>/<relation or trait>': accuracy %, '<fmt>/relations', '<fmt>/traits', 'chance/relations',
    'prior/relations', 'prior/traits'} (percent) for one native checkpoint."""
    config = loading.config_from_checkpoint(checkpoint)
    params, _ = loading.load_params(checkpoint, config)
    model = t5.T5(config)
    sp = spm.SentencePieceProcessor(model_file=VOCAB)
    vocab_size = sp.get_piece_size() + EXTRA_IDS
    world = world_lib.build_world(seed, num_people)
    score = jax.jit(lambda i, d, t: decoding.sequence_log_likelihood(model, params, i, d, t))
    out = {}
    for fmt in ("span", "prefix"):
        enc, tgt, gold, sizes, relations = probe_rows(world, split, sp, fmt, vocab_size)
        dec = np.concatenate([np.zeros((len(tgt), 1), np.int32), tgt[:, :-1]], axis=1)
        scores = np.concatenate([np.asarray(score(enc[i:i + 512], dec[i:i + 512], tgt[i:i + 512]))
                                 for i in range(0, len(enc), 512)])
        right, start = [], 0
        for g, c in zip(gold, sizes):
            right.append(int(np.argmax(scores[start:start + c]) == g))
            start += c
        right, relations_a = np.array(right), np.array(relations)
        for kind in world_lib.RELATIONS + world_lib.TRAITS:
            out[f"{fmt}/{kind}"] = 100 * float(right[relations_a == kind].mean())
        is_relation = np.isin(relations_a, world_lib.RELATIONS)
        out[f"{fmt}/relations"] = 100 * float(right[is_relation].mean())
        out[f"{fmt}/traits"] = 100 * float(right[~is_relation].mean())
    out["chance/relations"] = 100 * float(np.mean([1 / c for c, r in zip(sizes, relations)
                                                   if r in world_lib.RELATIONS]))
    out["prior/relations"] = prior_baseline(world, split)
    out["prior/traits"] = trait_prior(world, split)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help="native checkpoint directories (params.safetensors + config.json)")
    ap.add_argument("--split", default="test", choices=("train", "validation", "test"))
    args = ap.parse_args(argv)
    for path in args.checkpoints:
        print(json.dumps({"checkpoint": path, **{k: round(v, 1) for k, v in recall(path, args.split).items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
