"""People with stored facts, split into entity-disjoint groups for the tasks.

Design (issue "Mini world v2"; shared MINI_WORLD_NOTES.md): tiny models memorise
stable facts they see often, and read passages only at budgets far beyond a
2-core CPU. So every task here tests *recall*: the answer is a fact about a
person that the pretraining corpus states many times and the task input does
not contain. Two things make a score mean recall and nothing else:

- Entity-disjoint splits: each person belongs to exactly one of the task
  splits (train / validation / test). A test question is never about a person
  of the task's training split, so a lookup table built from the task's
  training data cannot help; the answer has to come from what pretraining
  stored. Every person, of every split, appears equally in the corpus.
- Many people: `num_people` x 3 facts is more than the smallest ladder rungs
  can store, so bigger rungs know measurably more.

Everything is a pure function of the seed.
"""
from __future__ import annotations

import dataclasses
import random

# Syllables for invented names: no prior knowledge can help, only the corpus.
_ONSETS = "b d f g k l m n p r s t v z".split()
_VOWELS = "a e i o u".split()
_CODAS = ("", "", "n", "r", "l", "s")

CITIES = ("Olvia Marden Tessaly Brunok Quillon Astera Fenwick Galdor Hesper Lindau Morvan Pelora "
          "Ravenna Sitka Torvik Umbria").split()
JOBS = ("baker farmer doctor teacher pilot sailor miner chef judge nurse banker gardener").split()
PETS = ("dog cat horse rabbit parrot owl crow goose snake turtle lizard frog").split()
RELATIONS = ("city", "job", "pet")
VALUES = {"city": CITIES, "job": JOBS, "pet": PETS}

# People in the default world: few enough that the larger ladder rungs store most of their facts
# at a CPU budget, enough that the smallest rungs cannot (experiments/recall_world/RESULTS.md).
DEFAULT_NUM_PEOPLE = 40
# Fractions of people per task split (every person is in the corpus).
SPLIT_FRACTIONS = {"train": 0.4, "validation": 0.2, "test": 0.4}


@dataclasses.dataclass(frozen=True)
class Person:
    """One person: a name (1-2 pieces) and a value for each relation."""

    name: str
    city: str
    job: str
    pet: str

    def value(self, relation: str) -> str:
        if relation not in RELATIONS:
            raise ValueError(f"unknown relation {relation!r}; known: {RELATIONS}")
        return getattr(self, relation)


@dataclasses.dataclass(frozen=True)
class World:
    """`people` in a seeded order; `split_people[split]` are the people a task split asks about."""

    seed: int
    people: tuple[Person, ...]
    split_people: dict

    def split_of(self, name: str) -> str:
        for split, people in self.split_people.items():
            if any(p.name == name for p in people):
                return split
        raise KeyError(name)


def _names(rng: random.Random, n: int) -> list[str]:
    names: set[str] = set()
    while len(names) < n:
        syllables = rng.choice((2, 2, 3))
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CODAS)
        names.add(word.capitalize())
    return sorted(names)


def build_world(seed: int = 0, num_people: int = DEFAULT_NUM_PEOPLE) -> World:
    """A world of `num_people` people (>= 10) with uniformly drawn city, job and pet."""
    if num_people < 10:
        raise ValueError(f"num_people must be >= 10, got {num_people}")
    rng = random.Random(f"recall-world/{seed}")
    names = _names(rng, num_people)
    rng.shuffle(names)
    people = tuple(Person(n, rng.choice(CITIES), rng.choice(JOBS), rng.choice(PETS)) for n in names)
    bounds, start = {}, 0
    for split, fraction in SPLIT_FRACTIONS.items():
        end = num_people if split == "test" else start + round(fraction * num_people)
        bounds[split] = people[start:end]
        start = end
    return World(seed, people, bounds)


def a(word: str) -> str:
    """The word with its indefinite article: 'an owl', 'a dog'."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def capitalize(s: str) -> str:
    return s[:1].upper() + s[1:]


# Statements of a fact, in several phrasings (the corpus's; the tasks use a few of their own).
FACT_TEMPLATES = {
    "city": ("{n} lives in {x}", "{n} is from {x}", "the home of {n} is in {x}", "{n} has a house in {x}",
             "{n} grew up in {x}", "{x} is where {n} lives"),
    "job": ("{n} works as {ax}", "{n} is {ax}", "the job of {n} is {x}", "{n} earns a living as {ax}",
            "{n} trained as {ax}", "by trade {n} is {ax}"),
    "pet": ("{n} has a pet {x}", "{n} owns {ax}", "the pet of {n} is {ax}", "{n} takes care of {ax}",
            "{n} keeps {ax} at home", "{n} walks with a pet {x}"),
}


def fact(rng: random.Random, person: Person, relation: str, value: str | None = None) -> str:
    """A sentence (no final stop) stating `relation` of `person` (`value` overrides the true one)."""
    x = value or person.value(relation)
    return rng.choice(FACT_TEMPLATES[relation]).format(n=person.name, x=x, ax=a(x))
