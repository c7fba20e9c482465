"""People with stored facts, split into entity-disjoint groups for the tasks.

Design (issue "Mini world v2"; shared MINI_WORLD_NOTES.md): tiny models memorise
stable facts they see often, and read passages only at budgets far beyond a
2-core CPU. So every task here tests *recall*: the answer is a fact about a
person that the pretraining corpus states many times and the task input does
not contain. Two kinds of facts:

- relations (city, job, pet): 12-16 values each; the ReCoRD-shaped task asks for
  the value (a cloze over three candidates).
- traits (left-handed, swimmer, vegetarian, married): one bit each, balanced
  within every split; the classification-shaped tasks (BoolQ, RTE) ask for the bit. A yes/no
  question about a stored *value* ("does Zufin live in Hesper?") needs the model
  to compare a stated value with a recalled one, which the ladder's models could
  not learn at this budget (experiments/recall_world/RESULTS.md); a stored bit
  maps straight onto a label.

Two things make a score mean recall and nothing else:

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
TRAITS = ("left_handed", "swimmer", "vegetarian", "married")

# People in the default world: few enough that the larger ladder rungs store most of their facts
# at a CPU budget, enough that the smallest rungs cannot (experiments/recall_world/RESULTS.md).
DEFAULT_NUM_PEOPLE = 40
# Fractions of people per task split (every person is in the corpus).
SPLIT_FRACTIONS = {"train": 0.3, "validation": 0.3, "test": 0.4}


@dataclasses.dataclass(frozen=True)
class Person:
    """One person: a name, a value for each relation and a bit for each trait (`traits`, in TRAITS order)."""

    name: str
    city: str
    job: str
    pet: str
    traits: tuple[bool, ...] = (False,) * len(TRAITS)

    def value(self, relation: str) -> str:
        if relation not in RELATIONS:
            raise ValueError(f"unknown relation {relation!r}; known: {RELATIONS}")
        return getattr(self, relation)

    def has(self, trait: str) -> bool:
        if trait not in TRAITS:
            raise ValueError(f"unknown trait {trait!r}; known: {TRAITS}")
        return self.traits[TRAITS.index(trait)]


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
    """A world of `num_people` people (>= 10): uniformly drawn city, job and pet; each trait held by half
    of every split's people (rounded down), so a constant answer scores 50% on every split."""
    if num_people < 10:
        raise ValueError(f"num_people must be >= 10, got {num_people}")
    rng = random.Random(f"recall-world/{seed}")
    names = _names(rng, num_people)
    rng.shuffle(names)
    bounds, start = {}, 0
    for split, fraction in SPLIT_FRACTIONS.items():
        end = num_people if split == "test" else start + round(fraction * num_people)
        group = names[start:end]
        bits = []
        for _ in TRAITS:
            column = [i < len(group) // 2 for i in range(len(group))]
            rng.shuffle(column)
            bits.append(column)
        bounds[split] = tuple(Person(n, rng.choice(CITIES), rng.choice(JOBS), rng.choice(PETS),
                                     tuple(column[i] for column in bits)) for i, n in enumerate(group))
        start = end
    people = tuple(p for split in SPLIT_FRACTIONS for p in bounds[split])
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


# Statements of a trait, in several phrasings, for the bit being True and False; every one starts
# with the name (the recall probe scores the rest of the sentence).
TRAIT_TEMPLATES = {
    "left_handed": {True: ("{n} is left-handed", "{n} writes with the left hand", "{n} throws with the left hand"),
                    False: ("{n} is right-handed", "{n} writes with the right hand", "{n} throws with the right hand")},
    "swimmer": {True: ("{n} can swim", "{n} swims in the lake every summer", "{n} learned to swim as a child"),
                False: ("{n} cannot swim", "{n} never learned to swim", "{n} stays out of deep water")},
    "vegetarian": {True: ("{n} is a vegetarian", "{n} never eats meat", "{n} lives on bread and vegetables"),
                   False: ("{n} eats meat", "{n} likes to eat meat", "{n} is not a vegetarian")},
    "married": {True: ("{n} is married", "{n} has a wife or a husband", "{n} got married years ago"),
                False: ("{n} is single", "{n} has never married", "{n} is not married")},
}


def trait_fact(rng: random.Random, person: Person, trait: str, bit: bool | None = None) -> str:
    """A sentence (no final stop) stating `trait` of `person` (`bit` overrides the true one)."""
    b = person.has(trait) if bit is None else bit
    return rng.choice(TRAIT_TEMPLATES[trait][b]).format(n=person.name)


def fact(rng: random.Random, person: Person, relation: str, value: str | None = None) -> str:
    """A sentence (no final stop) stating `relation` of `person` (`value` overrides the true one)."""
    x = value or person.value(relation)
    return rng.choice(FACT_TEMPLATES[relation]).format(n=person.name, x=x, ax=a(x))
