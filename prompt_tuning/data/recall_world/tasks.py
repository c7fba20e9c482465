"""BoolQ-, RTE- and ReCoRD-shaped recall tasks in SuperGLUE's jsonl schemas.

Each task writes `<out>/<task>/{train,val,test}.jsonl` plus `test_closed_book.jsonl`
(the test split with the passage / premise removed: the closed-book control) and the shifted
test splits `test_paraphrase.jsonl`, `test_long_passage.jsonl` (claim C6; shifts.py),
so SuperGLUE's SeqIO preprocessors, verbalizers and metrics apply unchanged:

  boolq  {question, passage, idx, label: bool}
         "is Zufin left-handed" over a passage of two true facts of Zufin's
         relations (never a trait). True iff Zufin is left-handed.
  rte    {premise, hypothesis, idx, label: entailment|not_entailment}
         premise: two true facts of the person's relations; hypothesis "Zufin is
         a vegetarian."; 'entailment' iff the person is one (recall, not reading:
         the premise never settles it).
  record {source, passage: {text, entities}, qas: [{query, answers, idx}], idx}
         "Zufin has been to Hesper, Olvia and Sitka this year." + query
         "Zufin lives in @placeholder." The three candidates are in the passage;
         which one is right only pretraining says (random candidate: 1/3).

BoolQ and RTE each ask about one trait (`BOOLQ_TRAITS`, `RTE_TRAITS`), always in the same
direction, so the label is the stored bit itself. One trait per task, and in the corpus each
answer vocabulary tied to one trait (yes/no questions only about left-handedness, judged
claims only about vegetarianism; corpus.py): a frozen model this small reads a stored bit
out through fixed answer words only when the bit is a function of the person alone. With
four traits behind one shared yes/no, session 5's l rung answered its own corpus question
"Is Zufin left-handed?" at 58% while completing "Zufin is ..." at 97% and "Where does Zufin
live?" at 100% (experiments/recall_world/RESULTS.md). Split s asks only about
`world.split_people[s]` (entity-disjoint), labels are balanced, and every split's inputs are
distinct.
"""
from __future__ import annotations

import json
import os
import random
from typing import Callable

from prompt_tuning.data.recall_world import shifts
from prompt_tuning.data.recall_world import world as world_lib
from prompt_tuning.data.recall_world.world import RELATIONS, VALUES, Person, World, a, capitalize

SPLIT_SIZES = {"train": 1000, "validation": 300, "test": 600}
CLOSED_BOOK_SPLIT = "test_closed_book"
# Shifted copies of the test split (claim C6; shifts.py): same rows, people and answers, one field changed.
SHIFTED_SPLITS = (shifts.PARAPHRASE, shifts.LONG_PASSAGE)
SPLIT_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl",
               CLOSED_BOOK_SPLIT: "test_closed_book.jsonl", **{s: f"{s}.jsonl" for s in SHIFTED_SPLITS}}

# The tasks' own phrasings (the corpus asks with capitalised questions and '?').
BOOLQ_TRAITS = {"left_handed": "is {n} left-handed"}
RTE_TRAITS = {"vegetarian": "{n} is a vegetarian."}
_RECORD_LEADS = {"city": "{n} has been to {o0}, {o1} and {o2} this year.",
                 "job": "{n} talked with {ao0}, {ao1} and {ao2} today.",
                 "pet": "{n} saw a {o0}, a {o1} and a {o2} at the market."}
_RECORD_QUERIES = {"city": "{n} lives in @placeholder.", "job": "{n} works as a @placeholder.",
                   "pet": "{n} has a pet @placeholder."}


def _context(rng: random.Random, person: Person, relation: str) -> str:
    """A true sentence about another of the person's relations (never `relation`)."""
    other = rng.choice([r for r in RELATIONS if r != relation])
    return capitalize(world_lib.fact(rng, person, other)) + "."


def _two_facts(rng: random.Random, person: Person) -> str:
    """Two true sentences about two of the person's relations (never a trait)."""
    return " ".join(capitalize(world_lib.fact(rng, person, r)) + "." for r in rng.sample(RELATIONS, 2))


def _trait(rng: random.Random, person: Person, traits, label: bool) -> str | None:
    """One of `traits` whose bit for `person` is `label` (None if there is none)."""
    matching = [t for t in traits if person.has(t) == label]
    return rng.choice(matching) if matching else None


def boolq_example(rng: random.Random, person: Person, label: bool) -> dict | None:
    trait = _trait(rng, person, sorted(BOOLQ_TRAITS), label)
    if trait is None:
        return None
    return {"question": BOOLQ_TRAITS[trait].format(n=person.name), "passage": _two_facts(rng, person),
            "label": label}


def rte_example(rng: random.Random, person: Person, label: bool) -> dict | None:
    trait = _trait(rng, person, sorted(RTE_TRAITS), label)
    if trait is None:
        return None
    return {"premise": _two_facts(rng, person), "hypothesis": RTE_TRAITS[trait].format(n=person.name),
            "label": "entailment" if label else "not_entailment"}


def _spans(text: str, word: str) -> list[tuple[int, int]]:
    """Inclusive (start, end) character spans of `word` as a whole word (SuperGLUE ReCoRD's convention)."""
    out, i = [], text.find(word)
    while i >= 0:
        j = i + len(word)
        if (i == 0 or not text[i - 1].isalnum()) and (j == len(text) or not text[j].isalnum()):
            out.append((i, j - 1))
        i = text.find(word, j)
    return out


spans = _spans  # public: [(start, end)] of a value in a text


def shifted(task: str, name: str, test_rows: list[dict], world: World) -> list[dict]:
    """shifts.shift with this module's asked-person and span helpers (shifts.py cannot import them: this
    module imports it)."""
    return shifts.shift(task, name, test_rows, world, asked=lambda t, r: fact_asked(t, r)[0], spans=_spans)


def record_example(rng: random.Random, person: Person, label: bool = True) -> dict:
    del label  # every ReCoRD query has an answer
    rel = rng.choice(RELATIONS)
    true = person.value(rel)
    options = [true] + rng.sample([v for v in VALUES[rel] if v != true], 2)
    rng.shuffle(options)
    lead = _RECORD_LEADS[rel].format(n=person.name, **{f"o{i}": o for i, o in enumerate(options)},
                                     **{f"ao{i}": a(o) for i, o in enumerate(options)})
    text = f"{lead} {_context(rng, person, rel)}"
    entities = sorted(sp for o in options for sp in _spans(text, o))
    answers = [{"start": s, "end": e, "text": true} for s, e in _spans(text, true)]
    return {"source": "recall_world",
            "passage": {"text": text, "entities": [{"start": s, "end": e} for s, e in entities]},
            "qas": [{"query": _RECORD_QUERIES[rel].format(n=person.name), "answers": answers, "idx": 0}]}


TASKS: dict[str, Callable[[random.Random, Person, bool], dict | None]] = {
    "boolq": boolq_example, "record": record_example, "rte": rte_example,
}
CLASSIFICATION_TASKS = ("boolq", "rte")


def fact_asked(task: str, row: dict) -> tuple[str, str]:
    """(person, relation or trait) a row asks about: the one stored fact its answer depends on.

    Raises ValueError for a row no template of the task produced.
    """
    if task == "record":
        query = row["qas"][0]["query"]
        for rel, template in _RECORD_QUERIES.items():
            head, tail = template.split("{n}")
            if query.startswith(head) and query.endswith(tail):
                return query[len(head):len(query) - len(tail)], rel
    elif task in ("boolq", "rte"):
        text = row["question"] if task == "boolq" else row["hypothesis"]
        for trait, template in (BOOLQ_TRAITS if task == "boolq" else RTE_TRAITS).items():
            head, tail = template.split("{n}")
            if text.startswith(head) and text.endswith(tail) and len(text) > len(head) + len(tail):
                return text[len(head):len(text) - len(tail)], trait
    raise ValueError(f"{task}: no recall template matches row {row!r:.200}")


def _key(ex: dict) -> str:
    return json.dumps({k: v for k, v in ex.items() if k != "label"}, sort_keys=True)


def closed_book(task: str, ex: dict) -> dict:
    """The example with its passage removed (ReCoRD: passage and entities, so only memory can answer)."""
    if task == "boolq":
        return {**ex, "passage": ""}
    if task == "rte":
        return {**ex, "premise": ""}
    if task == "record":
        return {**ex, "passage": {"text": "", "entities": []}}
    raise ValueError(f"unknown recall task {task!r}; known: {sorted(TASKS)}")


def generate(task: str, world: World, split_sizes: dict | None = None) -> dict[str, list[dict]]:
    """{split: records}: deterministic in (world.seed, task); split s asks about split s's people only."""
    if task not in TASKS:
        raise ValueError(f"unknown recall task {task!r}; known: {sorted(TASKS)}")
    sizes = split_sizes or SPLIT_SIZES
    out = {}
    for split, size in sizes.items():
        rng = random.Random(f"{world.seed}/recall-task/{task}/{split}")
        people = world.split_people[split]
        seen, records, tries = set(), [], 0
        while len(records) < size:
            tries += 1
            if tries > 100 * size + 1000:
                raise RuntimeError(f"{task}: cannot draw {size} distinct {split} examples from {len(people)} people")
            ex = TASKS[task](rng, rng.choice(people), len(records) % 2 == 0)
            if ex is None or _key(ex) in seen:
                continue
            seen.add(_key(ex))
            records.append({**ex, "idx": len(records)})
        out[split] = records
    if "test" in out:
        out[CLOSED_BOOK_SPLIT] = [closed_book(task, r) for r in out["test"]]
        for name in SHIFTED_SPLITS:
            out[name] = shifted(task, name, out["test"], world)
    return out


def write_tasks(out_dir: str, world: World, tasks=None, split_sizes: dict | None = None) -> dict[str, str]:
    """Writes <out_dir>/<task>/<split file> for each task (atomically); returns {task: task_dir}."""
    dirs = {}
    for task in tasks or sorted(TASKS):
        task_dir = os.path.join(out_dir, task)
        os.makedirs(task_dir, exist_ok=True)
        for split, records in generate(task, world, split_sizes).items():
            path = os.path.join(task_dir, SPLIT_FILES[split])
            tmp = f"{path}.tmp{os.getpid()}"  # per process: two commands may prepare one cache at once
            with open(tmp, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)
            os.replace(tmp, path)
        dirs[task] = task_dir
    return dirs
