"""Shifted copies of a recall task's test split (claim C6: robustness to domain shift, paper Tables 1-2).

Each shift maps the test split row for row: the same people, the same stored fact asked about, the same
gold answer, only the named field changed, so in-domain and shifted scores are *paired* by example.
Deterministic in (world.seed, task, shift); the other splits are untouched (their generators' random
streams are separate).

  test_paraphrase    the question / hypothesis / query in another wording a reader accepts as the same:
                       boolq   "is X left-handed"          -> "does X write with the left hand"
                       rte     "X is a vegetarian."        -> "X does not eat meat."
                       record  "X lives in @placeholder."  -> "The home of X is in @placeholder."
                               "X works as a @placeholder." -> "The job of X is @placeholder."
                               "X has a pet @placeholder." -> "X owns a pet @placeholder."
                     Tests: does what was learnt from one task wording transfer to another (the paper's
                     QQP <-> MRPC paraphrase transfer, in spirit). Caveat: these wordings are not in the
                     task's training split, but similar ones occur in the pretraining corpus (world.py's
                     FACT_TEMPLATES / TRAIT_TEMPLATES, corpus.py's "Does X write with the left hand?"), so
                     the shift is away from the task format, not out of the model's language.
  test_long_passage  the passage (ReCoRD: passage text; RTE: premise) lengthened by DISTRACTORS (3) true
                     sentences about three *other* test people (relation facts; for BoolQ and RTE the
                     second states the asked trait of its person), appended after the original passage. ReCoRD's candidates stay the same three values; their spans (entities,
                     answers) are recomputed on the longer text. Tests: whether a method relies on the passage
                     being short and about the asked person only (the paper's MRQA transfer across
                     passage sources, in spirit). Caveat: the distractor about the asked trait states another
                     person's bit, which a model that reads the passage instead of recalling may copy.
                     Inputs stay within 96 tokens: at most 84 with assets/recall_world/spm.model and
                     EOS (ReCoRD, mean 78; BoolQ 58, RTE 55), so no row is truncated (test_shifts.py checks it).
"""
from __future__ import annotations

import random
from typing import Callable

from prompt_tuning.data.recall_world import world as world_lib
from prompt_tuning.data.recall_world.world import RELATIONS, Person, World, capitalize

PARAPHRASE, LONG_PASSAGE = "test_paraphrase", "test_long_passage"
DISTRACTORS = 3

BOOLQ_PARAPHRASE = {"is {n} left-handed": "does {n} write with the left hand"}
RTE_PARAPHRASE = {"{n} is a vegetarian.": "{n} does not eat meat."}
RECORD_PARAPHRASE = {"{n} lives in @placeholder.": "The home of {n} is in @placeholder.",
                     "{n} works as a @placeholder.": "The job of {n} is @placeholder.",
                     "{n} has a pet @placeholder.": "{n} owns a pet @placeholder."}
_TRAIT_OF = {"boolq": "left_handed", "rte": "vegetarian"}


def _rephrase(text: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        head, tail = old.split("{n}")
        if text.startswith(head) and text.endswith(tail) and len(text) > len(head) + len(tail):
            return new.format(n=text[len(head):len(text) - len(tail)])
    raise ValueError(f"no paraphrase for {text!r}; known templates: {sorted(table)}")


def paraphrase(task: str, row: dict, rng: random.Random, world: World, **unused) -> dict:
    """The row with its question (boolq), hypothesis (rte) or query (record) reworded."""
    del rng, world, unused
    if task == "boolq":
        return {**row, "question": _rephrase(row["question"], BOOLQ_PARAPHRASE)}
    if task == "rte":
        return {**row, "hypothesis": _rephrase(row["hypothesis"], RTE_PARAPHRASE)}
    if task == "record":
        qas = [{**qa, "query": _rephrase(qa["query"], RECORD_PARAPHRASE)} for qa in row["qas"]]
        return {**row, "qas": qas}
    raise ValueError(f"unknown recall task {task!r}")


def _distractors(task: str, rng: random.Random, others: list[Person]) -> str:
    """DISTRACTORS true sentences about distinct people of `others` (never the asked person)."""
    out = []
    for i, person in enumerate(rng.sample(others, DISTRACTORS)):
        if i == 1 and task in _TRAIT_OF:
            out.append(world_lib.trait_fact(rng, person, _TRAIT_OF[task]))
        else:
            out.append(world_lib.fact(rng, person, rng.choice(RELATIONS)))
    return " ".join(capitalize(s) + "." for s in out)


def long_passage(task: str, row: dict, rng: random.Random, world: World, *, asked: Callable[[str, dict], str],
                 spans: Callable[[str, str], list]) -> dict:
    """The row with DISTRACTORS sentences about other test people appended to its passage / premise.

    asked(task, row): the person the row asks about; spans(text, value): [(start, end)] of value in text
    (tasks.py's helpers, passed in: tasks.py imports this module)."""
    person = asked(task, row)
    others = [p for p in world.split_people["test"] if p.name != person]
    extra = _distractors(task, rng, others)
    if task == "boolq":
        return {**row, "passage": f"{row['passage']} {extra}"}
    if task == "rte":
        return {**row, "premise": f"{row['premise']} {extra}"}
    if task == "record":
        old = row["passage"]["text"]
        options = sorted({old[e["start"]:e["end"] + 1] for e in row["passage"]["entities"]})
        text = f"{old} {extra}"
        true = row["qas"][0]["answers"][0]["text"]
        entities = sorted(sp for o in options for sp in spans(text, o))
        qas = [{**qa, "answers": [{"start": s, "end": e, "text": true} for s, e in spans(text, true)]}
               for qa in row["qas"]]
        return {**row, "passage": {"text": text, "entities": [{"start": s, "end": e} for s, e in entities]},
                "qas": qas}
    raise ValueError(f"unknown recall task {task!r}")


SHIFTS: dict[str, Callable[..., dict]] = {
    PARAPHRASE: paraphrase, LONG_PASSAGE: long_passage,
}
SHIFTED_FIELDS = {"boolq": {PARAPHRASE: "question", LONG_PASSAGE: "passage"},
                  "rte": {PARAPHRASE: "hypothesis", LONG_PASSAGE: "premise"},
                  "record": {PARAPHRASE: "qas", LONG_PASSAGE: "passage"}}


def shift(task: str, name: str, test_rows: list[dict], world: World, *, asked: Callable[[str, dict], str],
          spans: Callable[[str, str], list]) -> list[dict]:
    """The shifted copy `name` of `test_rows` (same order, same idx); ValueError for an unknown shift.

    asked, spans: as in long_passage (tasks.py passes its fact_asked person and spans)."""
    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}; known: {sorted(SHIFTS)}")
    rng = random.Random(f"{world.seed}/recall-shift/{task}/{name}")
    return [SHIFTS[name](task, row, rng, world, asked=asked, spans=spans) for row in test_rows]
