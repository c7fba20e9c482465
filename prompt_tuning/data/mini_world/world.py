"""A small synthetic world of people, places, jobs, pets, events and ambiguous words.

Everything is drawn deterministically from one seed (`build_world(seed)`), so
the corpus, the vocabulary, the tasks and the models built from them can be
reproduced anywhere without downloading anything.

Design (experiments/mini_world/RESULTS.md has the measurements: at this compute the models learn
to look a person's fact up in a passage, which mini ReCoRD needs, but not the comparisons and
closed-book facts the classification tasks need):
- Few entities, each fact repeated many times in many templates: a tiny model
  stores facts only when it sees each one often and in varied wording.
- Two levels of knowledge: person facts (person -> city, job, pet; the number
  of people is the knob that makes bigger models know measurably more) and
  small, heavily repeated "encyclopedia" facts (city -> country, job ->
  workplace, animal -> kind), which the tasks use as one-hop inferences.
- Causal event pairs (COPA) and two-sense words (WiC) are fixed lists with
  person slots, so their knowledge is also learnt from repetition.
"""
from __future__ import annotations

import dataclasses
import random

# Invented proper names: no prior knowledge can help, only the corpus.
_NAMES = (
    "Anna Bruno Clara Dario Elena Felix Greta Hugo Irene Jonas Karla Lukas Mira Nico Olga Pavel "
    "Rosa Simon Tara Umar Vera Walter Yara Zeno Alba Boris Cecil Dora Emil Flora Gideon Hanna "
    "Ivo Jana Kurt Lena Marek Nora Oskar Petra Quinn Rudy Selma Timo Ursa Viktor Wanda Xenia "
    "Yusuf Zora Adam Bela Cora Dean Edda Fritz Gina Hector Ilse Jules"
).split()
_CITIES = (
    "Olvia Marden Tessaly Brunok Quillon Astera Fenwick Galdor Hesper Lindau Morvan Pelora "
    "Ravenna Sitka Torvik Umbria"
).split()
_COUNTRIES = "Norland Estavia Kelmar Durovia Sarnia Valdor".split()
# job -> workplace
_JOBS = {
    "baker": "bakery", "farmer": "farm", "doctor": "hospital", "teacher": "school",
    "pilot": "airport", "sailor": "harbor", "miner": "mine", "chef": "kitchen",
    "judge": "court", "nurse": "clinic", "banker": "bank", "gardener": "garden",
}
# animal -> kind
_ANIMALS = {
    "dog": "mammal", "cat": "mammal", "horse": "mammal", "rabbit": "mammal",
    "parrot": "bird", "owl": "bird", "crow": "bird", "goose": "bird",
    "snake": "reptile", "turtle": "reptile", "lizard": "reptile", "frog": "amphibian",
}
# (cause, effect); {p} is a person. Effects are distinct so a COPA distractor is always wrong.
_CAUSAL = (
    ("{p} was very hungry", "{p} ate a big meal"),
    ("{p} dropped the glass", "the glass broke"),
    ("{p} forgot the umbrella", "{p} got wet in the rain"),
    ("the night was very cold", "{p} wore a warm coat"),
    ("{p} ran for an hour", "{p} was tired"),
    ("{p} missed the bus", "{p} was late for work"),
    ("{p} told a funny joke", "everyone laughed"),
    ("{p} left the door open", "the cat ran outside"),
    ("{p} watered the plants", "the plants grew tall"),
    ("{p} studied all week", "{p} passed the exam"),
    ("the lamp was broken", "the room was dark"),
    ("{p} lost the key", "{p} could not open the door"),
    ("{p} drank a lot of coffee", "{p} could not sleep"),
    ("{p} won the race", "{p} got a medal"),
    ("{p} touched the hot stove", "{p} burned a finger"),
    ("the river flooded", "the road was closed"),
    ("{p} planted seeds", "flowers grew in the garden"),
    ("{p} saved money", "{p} bought a new bike"),
    ("the phone battery died", "{p} could not call home"),
    ("{p} caught a cold", "{p} stayed in bed"),
    ("{p} cut the rope", "the boat drifted away"),
    ("the wind was strong", "the tree fell down"),
    ("{p} burned the bread", "the kitchen smelled of smoke"),
    ("{p} painted the fence", "the fence was white"),
)
# word -> two senses, each a list of sentence templates ({w} the word, {p} a person).
_SENSES = {
    "bat": (("the {w} flew out of the cave", "a {w} sleeps upside down", "{p} saw a {w} at night"),
            ("{p} swung the {w} at the ball", "the {w} was made of wood", "{p} bought a new {w} for the game")),
    "bank": (("{p} put money in the {w}", "the {w} gave {p} a loan", "the {w} opens at nine"),
             ("{p} sat on the {w} of the river", "grass grew on the {w}", "the boat reached the {w}")),
    "spring": (("flowers bloom in {w}", "{p} likes the warm {w}", "the birds return in {w}"),
               ("the {w} in the clock broke", "{p} pressed the metal {w}", "the {w} jumped back")),
    "bark": (("the {w} of the tree was rough", "{p} touched the {w} of the oak", "moss grew on the {w}"),
             ("{p} heard the dog {w}", "the loud {w} woke everyone", "the {w} of the dog scared {p}")),
    "ring": (("{p} wore a gold {w}", "the {w} fit on the finger", "{p} lost a silver {w}"),
             ("{p} heard the bell {w}", "the phone began to {w}", "the {w} of the bell was loud")),
    "light": (("the {w} in the room was bright", "{p} turned on the {w}", "the {w} of the sun was warm"),
              ("the bag was {w} to carry", "{p} packed a {w} box", "the feather was very {w}")),
    "match": (("{p} lit a {w}", "the {w} burned quickly", "{p} struck a {w} in the dark"),
              ("{p} won the {w}", "the {w} ended in a draw", "the football {w} was long")),
    "seal": (("the {w} swam in the sea", "a {w} lay on the rocks", "{p} fed fish to the {w}"),
             ("{p} broke the {w} on the letter", "the wax {w} was red", "the {w} kept the jar closed")),
    "pitcher": (("the {w} was full of water", "{p} poured milk from the {w}", "the glass {w} broke"),
                ("the {w} threw the ball", "{p} was the best {w} on the team", "the {w} won the game")),
    "palm": (("{p} climbed the {w} tree", "the {w} grew by the beach", "coconuts fell from the {w}"),
             ("{p} read the lines on the {w}", "the coin lay in the {w} of the hand", "{p} hurt a {w}")),
}


@dataclasses.dataclass(frozen=True)
class Person:
    name: str
    city: str
    job: str
    pet: str


@dataclasses.dataclass(frozen=True)
class World:
    seed: int
    people: tuple[Person, ...]
    city_country: dict
    job_place: dict
    animal_kind: dict
    causal: tuple[tuple[str, str], ...]
    senses: dict

    @property
    def cities(self) -> list[str]:
        return sorted(self.city_country)

    @property
    def jobs(self) -> list[str]:
        return sorted(self.job_place)

    @property
    def animals(self) -> list[str]:
        return sorted(self.animal_kind)

    @property
    def countries(self) -> list[str]:
        return sorted(set(self.city_country.values()))

    def person(self, name: str) -> Person:
        return next(p for p in self.people if p.name == name)

    def value(self, person: Person, relation: str) -> str:
        """The true value of a direct (city, job, pet) or one-hop (country, place, kind) relation."""
        return {
            "city": person.city, "job": person.job, "pet": person.pet,
            "country": self.city_country[person.city], "place": self.job_place[person.job],
            "kind": self.animal_kind[person.pet],
        }[relation]

    def values(self, relation: str) -> list[str]:
        """All values a relation can take in this world."""
        return {
            "city": self.cities, "job": self.jobs, "pet": self.animals, "country": self.countries,
            "place": sorted(set(self.job_place.values())), "kind": sorted(set(self.animal_kind.values())),
        }[relation]


def build_world(seed: int = 0, num_people: int = 24, num_cities: int = 12, num_countries: int = 4) -> World:
    """A world drawn from `seed`. num_people <= 60, num_cities <= 16, num_countries <= 6."""
    if not (1 <= num_people <= len(_NAMES) and 2 <= num_cities <= len(_CITIES)
            and 2 <= num_countries <= min(num_cities, len(_COUNTRIES))):
        raise ValueError(f"world size out of range: people={num_people} cities={num_cities} countries={num_countries}")
    rng = random.Random(seed)
    names = rng.sample(_NAMES, num_people)
    cities = rng.sample(_CITIES, num_cities)
    countries = rng.sample(_COUNTRIES, num_countries)
    # Every country gets at least one city.
    city_country = {c: countries[i % num_countries] for i, c in enumerate(cities)}
    jobs, animals = sorted(_JOBS), sorted(_ANIMALS)
    people = tuple(
        Person(n, rng.choice(cities), rng.choice(jobs), rng.choice(animals)) for n in names
    )
    return World(seed, people, city_country, dict(_JOBS), dict(_ANIMALS), _CAUSAL, dict(_SENSES))


# ---- Sentence realisers: several templates per relation, chosen by the caller's rng. ----

CITY_TEMPLATES = ("{n} lives in {x}", "{n} is from {x}", "the home of {n} is in {x}", "{n} has a house in {x}")
JOB_TEMPLATES = ("{n} works as {ax}", "{n} is {ax}", "the job of {n} is {x}", "{n} earns a living as {ax}")
PET_TEMPLATES = ("{n} has a pet {x}", "{n} owns {ax}", "the pet of {n} is {ax}", "{n} takes care of {ax}")
COUNTRY_TEMPLATES = ("{c} is a city in {x}", "{c} lies in {x}", "the city of {c} is part of {x}")
PLACE_TEMPLATES = ("{aj} works at the {x}", "every {j} goes to the {x} to work", "the workplace of {aj} is the {x}")
KIND_TEMPLATES = ("{aa} is {ax}", "the {a} is a kind of {x}", "every {a} is {ax}")

RELATIONS = {"city": CITY_TEMPLATES, "job": JOB_TEMPLATES, "pet": PET_TEMPLATES}


def a(word: str) -> str:
    """The word with its indefinite article: 'an owl', 'a dog'."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def person_fact(rng: random.Random, name: str, relation: str, value: str) -> str:
    return rng.choice(RELATIONS[relation]).format(n=name, x=value, ax=a(value))


def country_fact(rng: random.Random, city: str, country: str) -> str:
    return rng.choice(COUNTRY_TEMPLATES).format(c=city, x=country)


def place_fact(rng: random.Random, job: str, place: str) -> str:
    return rng.choice(PLACE_TEMPLATES).format(j=job, aj=a(job), x=place)


def kind_fact(rng: random.Random, animal: str, kind: str) -> str:
    return rng.choice(KIND_TEMPLATES).format(a=animal, aa=a(animal), x=kind, ax=a(kind))


# Relations a yes/no question or a hypothesis can be about; the last three are one-hop
# inferences (person -> city -> country, person -> job -> workplace, person -> pet -> kind).
QUESTIONS = {
    "city": "does {n} live in {x}?", "job": "is {n} {ax}?", "pet": "does {n} have a pet {x}?",
    "country": "does {n} live in {x}?", "place": "does {n} work at the {x}?",
    "kind": "does {n} have {ax} as a pet?",
}
STATEMENTS = {
    "city": "{n} lives in {x}.", "job": "{n} is {ax}.", "pet": "{n} has a pet {x}.",
    "country": "{n} lives in {x}.", "place": "{n} works at the {x}.",
    "kind": "{n} has {ax} as a pet.",
}


def question(relation: str, name: str, value: str) -> str:
    """A yes/no question, e.g. 'does Anna live in Olvia?'."""
    return QUESTIONS[relation].format(n=name, x=value, ax=a(value))


def statement(relation: str, name: str, value: str) -> str:
    """A declarative sentence, e.g. 'Anna lives in Norland.'."""
    return STATEMENTS[relation].format(n=name, x=value, ax=a(value))


def capitalize(s: str) -> str:
    return s[:1].upper() + s[1:]
