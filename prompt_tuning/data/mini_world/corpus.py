"""The mini world's pretraining corpus: documents of English-like sentences.

Document kinds (weights in `KIND_WEIGHTS`):
  bio        true facts about a few people, several templates per relation
  atlas      encyclopedia facts: city -> country, job -> workplace, animal -> kind
  reading    a passage, then wh-questions answered by copying and yes/no questions
  inference  a passage, then a claim and a verdict (it follows / it is false / unknown)
  story      causal event pairs ("X, so Y." / "Y because X.") and cause/effect questions
  senses     sentences using two-sense words, and same/different-meaning judgements

The exercise kinds are built by the task example builders (`tasks.py`) with
different surface forms than the SuperGLUE inputs: they teach the skills
(reading, comparing, one-hop recall, cause and effect, word sense) in natural
language, and a prompt has to map the SuperGLUE format onto them. Answer words
include the tasks' label words in some documents ("True", "entailment", ...)
so that the verbalizers are ordinary pieces of the language, as they are in C4.

`document(world, i)` is a pure function of (world.seed, i): the corpus is an
infinite deterministic stream, and `write_corpus` writes its first N documents.
"""
from __future__ import annotations

import os
import random

from prompt_tuning.data.mini_world import tasks
from prompt_tuning.data.mini_world import world as world_lib
from prompt_tuning.data.mini_world.world import World, capitalize

# Exercise-heavy: a first design with bio 3, reading 2, inference 2 left a 460K-parameter model
# at chance on its own reading questions after 3,000 steps; reading at 6 with copy-answer
# wh-questions is what made in-context lookup appear (RESULTS.md, trial 4).
KIND_WEIGHTS = {"bio": 1.5, "atlas": 1, "reading": 6, "inference": 3, "story": 1.5, "senses": 1.5}


def _s(text: str) -> str:
    return capitalize(text) + "."


def _bio(rng: random.Random, world: World) -> str:
    out = []
    for p in rng.sample(world.people, rng.randint(1, 3)):
        for rel in rng.sample(tasks.DIRECT, rng.randint(1, 3)):
            out.append(_s(world_lib.person_fact(rng, p.name, rel, world.value(p, rel))))
        if rng.random() < 0.3:  # the one-hop facts also appear next to the person
            out.append(_s(world_lib.country_fact(rng, p.city, world.city_country[p.city])))
    return " ".join(out)


def _atlas(rng: random.Random, world: World) -> str:
    out = []
    for _ in range(rng.randint(2, 5)):
        kind = rng.randrange(3)
        if kind == 0:
            c = rng.choice(world.cities)
            out.append(_s(world_lib.country_fact(rng, c, world.city_country[c])))
        elif kind == 1:
            j = rng.choice(world.jobs)
            out.append(_s(world_lib.place_fact(rng, j, world.job_place[j])))
        else:
            a = rng.choice(world.animals)
            out.append(_s(world_lib.kind_fact(rng, a, world.animal_kind[a])))
    return " ".join(out)


_YES_NO = (("Yes", "No"), ("True", "False"), ("yes", "no"), ("true", "false"))


# Wh-questions whose answer is copied from the passage: a dense copying signal (every answer
# token is a target under both objectives) that teaches the model to look a person's fact up
# in the text, which the yes/no questions then compare against.
WH_QUESTIONS = {"city": "where does {n} live?", "job": "what is the job of {n}?", "pet": "what pet does {n} have?"}


def _reading(rng: random.Random, world: World) -> str:
    text, people, stated = tasks.passage(rng, world, num_people=rng.randint(1, 3))
    out = [text]
    for _ in range(rng.randint(3, 5)):
        if rng.random() < 0.4:
            name, rel = rng.choice(sorted(stated))
            q, answer = WH_QUESTIONS[rel].format(n=name), world.value(world.person(name), rel)
        else:
            label = rng.random() < 0.5
            rel, name, value = tasks.claim(rng, world, people, stated, "entailment" if label else "contradiction", 0.2)
            q = world_lib.question(rel, name, value)
            yes, no = rng.choice(_YES_NO)
            answer = yes if label else no
        form = rng.randrange(3)
        if form == 0:
            out.append(f"Question: {q} Answer: {answer}.")
        elif form == 1:
            out.append(f"{capitalize(q)} {answer}.")
        else:
            out.append(f"Q: {q} A: {answer}.")
    return " ".join(out)


def _inference(rng: random.Random, world: World) -> str:
    label = rng.choice(("entailment", "contradiction", "neutral"))
    ex = tasks.nli_example(rng, world, label, hop_prob=0.5)
    hyp = ex["hypothesis"]
    form = rng.randrange(4)
    if form == 0:
        verdict = {"entailment": f"So it is true that {hyp}", "contradiction": f"So it is false that {hyp}",
                   "neutral": f"We cannot tell whether {hyp[:-1]}."}[label]
        return f"{ex['premise']} {verdict}"
    if form == 1:
        return f"{ex['premise']} Claim: {hyp} Verdict: {label}."
    if form == 2:
        rte = "entailment" if label == "entailment" else "not_entailment"
        return f"Text: {ex['premise']} Statement: {hyp} Result: {rte}."
    verdict = {"entailment": "true", "contradiction": "false", "neutral": "unknown"}[label]
    return f"{ex['premise']} Is it true that {hyp[:-1]}? That is {verdict}."


def _story(rng: random.Random, world: World) -> str:
    out = []
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(world.people).name
        cause, effect = (tasks.fill_person(t, name) for t in rng.choice(world.causal))
        form = rng.randrange(5)
        if form == 0:
            out.append(_s(f"{cause}, so {effect}"))
        elif form == 1:
            out.append(_s(f"{effect} because {cause}"))
        elif form == 2:
            out.append(f"{_s(cause)} What happened as a result? {_s(effect)}")
        elif form == 3:
            out.append(f"{_s(effect)} What was the cause? {_s(cause)}")
        else:
            ex = tasks.copa_example(rng, world)
            right = ex["choice1"] if ex["label"] == 0 else ex["choice2"]
            ask = "What happened as a result?" if ex["question"] == "effect" else "What was the cause?"
            which = rng.choice((("the first", "the second"), ("choice1", "choice2")))[ex["label"]]
            out.append(f"{ex['premise']} {ask} Either {ex['choice1'][:-1]}, or {ex['choice2'][:-1]}. "
                       f"The answer is {which}: {right}")
    return " ".join(out)


def _senses(rng: random.Random, world: World) -> str:
    if rng.random() < 0.4:
        word = rng.choice(sorted(world.senses))
        sense = rng.randint(0, 1)
        return " ".join(tasks.sense_sentence(rng, world, word, sense)[0] for _ in range(rng.randint(2, 3)))
    ex = tasks.wic_example(rng, world)
    w, same = ex["word"], ex["label"]
    form = rng.randrange(3)
    if form == 0:
        verdict = "the same meaning" if same else "different meanings"
        return f"{ex['sentence1']} {ex['sentence2']} Here the word {w} has {verdict}."
    if form == 1:
        return (f"First: {ex['sentence1']} Second: {ex['sentence2']} Does {w} mean the same in both? "
                f"{'True' if same else 'False'}.")
    return f"In \"{ex['sentence1']}\" and \"{ex['sentence2']}\", is {w} used the same way? {'Yes' if same else 'No'}."


_KINDS = {"bio": _bio, "atlas": _atlas, "reading": _reading, "inference": _inference,
          "story": _story, "senses": _senses}


def document(world: World, index: int, kind_weights: dict | None = None) -> str:
    """Document number `index` of the corpus: a pure function of (world.seed, index)."""
    rng = random.Random(f"{world.seed}/doc/{index}")
    weights = kind_weights or KIND_WEIGHTS
    kind = rng.choices(sorted(weights), [weights[k] for k in sorted(weights)])[0]
    return _KINDS[kind](rng, world)


def write_corpus(path: str, world: World, num_documents: int, start: int = 0) -> str:
    """Writes documents [start, start + num_documents), one per line."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        for i in range(start, start + num_documents):
            f.write(document(world, i) + "\n")
    os.replace(path + ".tmp", path)
    return path
