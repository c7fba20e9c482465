"""Mini SuperGLUE: BoolQ-, CB-, COPA-, RTE- and WiC-shaped tasks over a `World`.

Each task writes `<out>/<task>/{train,val}.jsonl` (SuperGLUE's file names;
splits "train" and "validation") with the exact SuperGLUE jsonl record schema, so the same SeqIO preprocessors, verbalizers and metrics
as real SuperGLUE apply:

  boolq  {question, passage, idx, label: bool}
  cb     {premise, hypothesis, idx, label: entailment|contradiction|neutral}
  copa   {premise, choice1, choice2, question: cause|effect, idx, label: 0|1}
  rte    {premise, hypothesis, idx, label: entailment|not_entailment}
  wic    {word, sentence1, sentence2, idx, label: bool, start1, end1, start2, end2}
  record {source, passage: {text, entities: [{start, end}]}, qas: [{query, answers: [{start, end, text}], idx}], idx}

What each needs from pretraining: BoolQ, CB and RTE read a passage of person
facts and compare a question or hypothesis with it, partly through a one-hop
inference that only the corpus teaches (city -> country, job -> workplace,
pet -> kind; RTE leans on these). COPA needs the causal pairs, WiC the word
senses; both are learnt from the corpus only. ReCoRD is a cloze over the passage: the
query restates one person's fact with @placeholder for the value, and the answer
is copied from the passage, where the other people's values of the same relation
are distractors (the skill the corpus's wh-questions teach). The pretraining corpus
(`corpus.py`) contains natural-language exercises built by the same example
builders below, which is what lets a frozen pretrained model be steered to the
tasks by a prompt at this size.

The example builders take a `random.Random` and return one record without idx.
"""
from __future__ import annotations

import json
import os
import random
from typing import Callable

from prompt_tuning.data.mini_world import world as world_lib
from prompt_tuning.data.mini_world.world import World, capitalize

DIRECT = ("city", "job", "pet")
HOP = {"city": "country", "job": "place", "pet": "kind"}


def _sentence(s: str) -> str:
    return capitalize(s) + "."


def passage(rng: random.Random, world: World, num_people: int = 3, max_relations: int = 2):
    """A few true person facts in random templates.

    Returns (text, people, stated) with stated the set of (name, direct relation) pairs.
    """
    people = rng.sample(world.people, num_people)
    facts, stated = [], set()
    for p in people:
        for rel in rng.sample(DIRECT, rng.randint(1, max_relations)):
            facts.append(_sentence(world_lib.person_fact(rng, p.name, rel, world.value(p, rel))))
            stated.add((p.name, rel))
    rng.shuffle(facts)
    return " ".join(facts), people, stated


# Share of negatives whose wrong value is stated elsewhere in the passage (for another
# person): those defeat the lexical shortcut "is the value mentioned at all?", the others
# do not. A tiny model learns the shortcut first (experiments/mini_world/RESULTS.md).
HARD_NEGATIVE_PROB = 0.3


def _wrong_value(rng: random.Random, world: World, relation: str, true_value: str, prefer=(),
                 hard_prob: float = HARD_NEGATIVE_PROB) -> str:
    """A value other than true_value; with probability hard_prob one seen elsewhere in the text."""
    prefer = [v for v in prefer if v != true_value]
    if prefer and rng.random() < hard_prob:
        return rng.choice(prefer)
    return rng.choice([v for v in world.values(relation) if v != true_value and v not in prefer])


def claim(rng, world, people, stated, label: str, hop_prob: float):
    """(relation, name, value) for a claim about the passage with the given label."""
    if label in ("entailment", "contradiction"):
        name, rel = rng.choice(sorted(stated))
        if rng.random() < hop_prob:
            rel = HOP[rel]
        person = world.person(name)
        true = world.value(person, rel)
        if label == "entailment":
            return rel, name, true
        others = [world.value(q, rel) for q in people if q.name != name]
        return rel, name, _wrong_value(rng, world, rel, true, others)
    # neutral: a relation the passage does not settle (absent person, or unstated relation).
    names = {p.name for p in people}
    candidates = [(p.name, r) for p in world.people for r in DIRECT
                  if (p.name, r) not in stated and (p.name not in names or rng.random() < 0.5)]
    name, rel = rng.choice(candidates)
    if rng.random() < hop_prob:
        rel = HOP[rel]
    return rel, name, rng.choice(world.values(rel))


def boolq_example(rng: random.Random, world: World, hop_prob: float = 0.2) -> dict:
    text, people, stated = passage(rng, world, num_people=rng.randint(1, 3))
    label = rng.random() < 0.5
    rel, name, value = claim(rng, world, people, stated, "entailment" if label else "contradiction", hop_prob)
    return {"question": world_lib.question(rel, name, value), "passage": text, "label": label}


def nli_example(rng: random.Random, world: World, label: str, hop_prob: float) -> dict:
    text, people, stated = passage(rng, world, num_people=rng.randint(1, 2))
    rel, name, value = claim(rng, world, people, stated, label, hop_prob)
    return {"premise": text, "hypothesis": world_lib.statement(rel, name, value), "label": label}


def cb_example(rng: random.Random, world: World) -> dict:
    label = rng.choices(("entailment", "contradiction", "neutral"), (0.4, 0.4, 0.2))[0]
    return nli_example(rng, world, label, hop_prob=0.2)


def rte_example(rng: random.Random, world: World) -> dict:
    if rng.random() < 0.5:
        return nli_example(rng, world, "entailment", hop_prob=0.5)
    ex = nli_example(rng, world, rng.choice(("contradiction", "neutral")), hop_prob=0.5)
    return {**ex, "label": "not_entailment"}


def fill_person(template: str, name: str) -> str:
    return template.replace("{p}", name)


def copa_example(rng: random.Random, world: World) -> dict:
    i, j = rng.sample(range(len(world.causal)), 2)
    name = rng.choice(world.people).name
    question = rng.choice(("cause", "effect"))
    k = 0 if question == "effect" else 1  # premise is the cause when asking for the effect
    premise = world.causal[i][k]
    right, wrong = world.causal[i][1 - k], world.causal[j][1 - k]
    label = rng.randint(0, 1)
    choices = (right, wrong) if label == 0 else (wrong, right)
    s = lambda t: _sentence(fill_person(t, name))
    return {"premise": s(premise), "choice1": s(choices[0]), "choice2": s(choices[1]),
            "question": question, "label": label}


def sense_sentence(rng: random.Random, world: World, word: str, sense: int, exclude: str | None = None):
    """(sentence, start, end, template): the word's characters are sentence[start:end]."""
    templates = [t for t in world.senses[word][sense] if t != exclude]
    template = rng.choice(templates)
    name = rng.choice(world.people).name
    before = fill_person(template.split("{w}")[0], name)
    text = _sentence(fill_person(template, name).replace("{w}", word))
    return text, len(before), len(before) + len(word), template


def wic_example(rng: random.Random, world: World) -> dict:
    word = rng.choice(sorted(world.senses))
    sense = rng.randint(0, 1)
    label = rng.random() < 0.5
    s1, a1, b1, t1 = sense_sentence(rng, world, word, sense)
    s2, a2, b2, _ = sense_sentence(rng, world, word, sense if label else 1 - sense, exclude=t1)
    return {"word": word, "sentence1": s1, "sentence2": s2, "label": label,
            "start1": a1, "end1": b1, "start2": a2, "end2": b2}


# Cloze forms of the direct relations; some repeat a corpus template, some do not.
RECORD_QUERIES = {
    "city": ("{n} lives in @placeholder.", "The home of {n} is in @placeholder.", "{n} is from @placeholder."),
    "job": ("The job of {n} is @placeholder.", "{n} has the job of @placeholder."),
    "pet": ("{n} has a pet @placeholder.", "The pet of {n} is @placeholder."),
}


def _spans(text: str, word: str) -> list[tuple[int, int]]:
    """Inclusive (start, end) character spans of `word` as a whole word (SuperGLUE ReCoRD's convention)."""
    out, i = [], text.find(word)
    while i >= 0:
        j = i + len(word)
        if (i == 0 or not text[i - 1].isalnum()) and (j == len(text) or not text[j].isalnum()):
            out.append((i, j - 1))
        i = text.find(word, j)
    return out


def record_example(rng: random.Random, world: World) -> dict:
    text, people, stated = passage(rng, world, num_people=rng.randint(1, 3))
    name, rel = rng.choice(sorted(stated))
    answer = world.value(world.person(name), rel)
    mentions = {p.name for p in people} | {world.value(p, r) for p in people for r in DIRECT}
    entities = sorted(sp for w in mentions for sp in _spans(text, w))
    query = rng.choice(RECORD_QUERIES[rel]).format(n=name)
    answers = [{"start": a, "end": b, "text": answer} for a, b in _spans(text, answer)]
    return {"source": "mini_world", "passage": {"text": text, "entities": [{"start": a, "end": b} for a, b in entities]},
            "qas": [{"query": query, "answers": answers, "idx": 0}]}


# SuperGLUE task name -> example builder; the SeqIO tasks are named mini_world_<task> (registry.py).
TASKS: dict[str, Callable[[random.Random, World], dict]] = {
    "boolq": boolq_example,
    "cb": cb_example,
    "copa": copa_example,
    "record": record_example,
    "rte": rte_example,
    "wic": wic_example,
}
SPLIT_SIZES = {"train": 1000, "validation": 300}
SPLIT_FILES = {"train": "train.jsonl", "validation": "val.jsonl"}


def _key(ex: dict) -> str:
    return json.dumps({k: v for k, v in ex.items() if k != "label"}, sort_keys=True)


def generate(task: str, world: World, split_sizes: dict | None = None) -> dict[str, list[dict]]:
    """{split: records}; deterministic in (world.seed, task); validation inputs never occur in train."""
    sizes = split_sizes or SPLIT_SIZES
    rng = random.Random(f"{world.seed}/{task}")
    seen, out = set(), {}
    for split in sorted(sizes, key=lambda s: s != "train"):  # train first
        records = []
        tries = 0
        while len(records) < sizes[split]:
            tries += 1
            if tries > 50 * sizes[split] + 1000:
                raise RuntimeError(f"{task}: cannot draw {sizes[split]} distinct {split} examples")
            ex = TASKS[task](rng, world)
            k = _key(ex)
            if k in seen:
                continue
            seen.add(k)
            records.append({**ex, "idx": len(records)})
        out[split] = records
    return out


def write_tasks(out_dir: str, world: World, tasks=None, split_sizes: dict | None = None) -> dict[str, str]:
    """Writes <out_dir>/<task>/<split>.jsonl for each task; returns {task: task_dir}."""
    dirs = {}
    for task in tasks or sorted(TASKS):
        task_dir = os.path.join(out_dir, task)
        os.makedirs(task_dir, exist_ok=True)
        for split, records in generate(task, world, split_sizes).items():
            path = os.path.join(task_dir, SPLIT_FILES.get(split, f"{split}.jsonl"))
            with open(path + ".tmp", "w") as f:
                for r in records:
                    f.write(json.dumps(r) + "\n")
            os.replace(path + ".tmp", path)
        dirs[task] = task_dir
    return dirs
