"""The recall world's pretraining corpus: facts about every person, restated, asked and checked.

Document kinds (weights in `KIND_WEIGHTS`), all about the people of the world
(every split's people alike, uniformly):

  bio      facts and traits of 1-3 people in varied phrasings (`world.FACT_TEMPLATES`,
           `world.TRAIT_TEMPLATES`)
  qa       questions answered from memory: wh-questions about relations, yes/no
           questions about left-handedness ("Is X left-handed?", "Does X write with
           the left hand?"), answered with yes/no or true/false
  choice   a person linked to three values of a relation, then the true one named
  claims   a claim that X is a vegetarian judged correct or incorrect (also with the words
           'entailment' / 'not_entailment', so that the RTE verbalizers are
           ordinary words of the language, as they are in C4)

The tasks' SuperGLUE input formats (`question: ... passage: ...`,
`premise: ... hypothesis: ...`, `query: ... entities: ...`) never occur: a
prompt has to map them onto these skills, as in the paper.

`document(world, i)` is a pure function of (world.seed, i): the corpus is an
infinite deterministic stream; the validation corpus is documents from
`VALIDATION_START` on, which the training corpus never reaches.
"""
from __future__ import annotations

import os
import random

from prompt_tuning.data.recall_world import world as world_lib
from prompt_tuning.data.recall_world.world import RELATIONS, TRAITS, VALUES, World, a, capitalize

KIND_WEIGHTS = {"bio": 5.0, "qa": 4.0, "choice": 1.0, "claims": 2.0}
VALIDATION_START = 10_000_000

_YES_NO = (("Yes", "No"), ("yes", "no"), ("True", "False"), ("true", "false"))
WH = {"city": ("Where does {n} live?", "Which city is {n} from?"),
      "job": ("What does {n} do for a living?", "What is the job of {n}?"),
      "pet": ("What pet does {n} have?", "Which animal does {n} keep?")}
# Yes/no questions (with the trait bit for which the answer is yes) are asked only about left-handedness,
# and claims are judged only about vegetarianism, both always in the direction "has the trait" (a question
# asked the other way would make the answer the bit XOR the direction): each answer vocabulary is tied to
# one trait, so that the answer is a function of the person alone. Session 5's corpus asked all four
# traits with one shared yes/no vocabulary; its l rung completed "Zufin is ..." correctly for 96.9% of the
# test traits but answered its own "Is Zufin left-handed?" at 58%, and "Where does Zufin live?" at 100%
# (a relation selects its own answer words): reading a (person x trait) bit out through shared words is a
# skill this scale did not learn (experiments/recall_world/RESULTS.md).
TRAIT_QUESTIONS = {
    "left_handed": (("Is {n} left-handed?", True), ("Does {n} write with the left hand?", True),
                    ("Is {n} a left-hander?", True)),
}
CLAIM_TRAITS = ("vegetarian",)


def _s(text: str) -> str:
    return capitalize(text) + "."


def _bio(rng: random.Random, world: World) -> str:
    out = []
    for p in rng.sample(world.people, rng.randint(1, 3)):
        for kind in rng.sample(RELATIONS + TRAITS, rng.randint(1, 4)):
            sentence = world_lib.fact(rng, p, kind) if kind in RELATIONS else world_lib.trait_fact(rng, p, kind)
            out.append(_s(sentence))
    return " ".join(out)


def _qa(rng: random.Random, world: World) -> str:
    out = []
    for _ in range(rng.randint(2, 4)):
        p = rng.choice(world.people)
        if rng.random() < 0.4:
            rel = rng.choice(RELATIONS)
            out.append(f"{rng.choice(WH[rel]).format(n=p.name)} {_s(world_lib.fact(rng, p, rel))}")
            continue
        trait = rng.choice(sorted(TRAIT_QUESTIONS))
        question, yes_bit = rng.choice(TRAIT_QUESTIONS[trait])
        yes, no = rng.choice(_YES_NO)
        said = yes if p.has(trait) == yes_bit else no
        answer = f"{said}." if rng.random() < 0.5 else f"{said}, {world_lib.trait_fact(rng, p, trait)}."
        q = question.format(n=p.name)
        out.append(f"{q} {answer}" if rng.random() < 0.6 else f"Q: {q} A: {answer}")
    return " ".join(out)


def _choice(rng: random.Random, world: World) -> str:
    p, rel = rng.choice(world.people), rng.choice(RELATIONS)
    options = [p.value(rel)] + rng.sample([v for v in VALUES[rel] if v != p.value(rel)], 2)
    rng.shuffle(options)
    listed = f"{options[0]}, {options[1]} and {options[2]}"
    lead = {"city": f"{p.name} has visited {listed}", "job": f"{p.name} once thought of being {a(options[0])}, "
            f"{a(options[1])} or {a(options[2])}", "pet": f"{p.name} likes the {options[0]}, the {options[1]} "
            f"and the {options[2]}"}[rel]
    return f"{_s(lead)} Of these, {world_lib.fact(rng, p, rel)}."


def _claims(rng: random.Random, world: World) -> str:
    out = []
    for _ in range(rng.randint(1, 3)):
        p, trait = rng.choice(world.people), rng.choice(CLAIM_TRAITS)
        label = p.has(trait)  # the claim says the person has the trait; the verdict is the stored bit
        claim = _s(world_lib.trait_fact(rng, p, trait, True))
        form = rng.randrange(3)
        if form == 0:
            out.append(f"Claim: {claim} That is {'correct' if label else 'incorrect'}.")
        elif form == 1:
            out.append(f"Text: {_s(world_lib.fact(rng, p, rng.choice(RELATIONS)))} Statement: {claim} "
                       f"Result: {'entailment' if label else 'not_entailment'}.")
        else:
            out.append(f"Someone said: {claim} {'That is right' if label else 'That is wrong'}.")
    return " ".join(out)


_KINDS = {"bio": _bio, "qa": _qa, "choice": _choice, "claims": _claims}


def document(world: World, index: int) -> str:
    """Document number `index`: a pure function of (world.seed, index)."""
    rng = random.Random(f"{world.seed}/recall-doc/{index}")
    kinds = sorted(KIND_WEIGHTS)
    kind = rng.choices(kinds, [KIND_WEIGHTS[k] for k in kinds])[0]
    return _KINDS[kind](rng, world)


def write_corpus(path: str, world: World, num_documents: int, start: int = 0) -> str:
    """Writes documents [start, start + num_documents) to `path`, one per line (atomically)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"  # per process: two commands may prepare one cache at once
    with open(tmp, "w") as f:
        for i in range(start, start + num_documents):
            f.write(document(world, i) + "\n")
    os.replace(tmp, path)
    return path
