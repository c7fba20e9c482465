"""The recall probe's rows and controls (no model: the scoring itself is models.decoding's, tested there)."""
import numpy as np
import sentencepiece as spm

from experiments.recall_world import recall_probe
from prompt_tuning.data.recall_world import world as world_lib


def test_every_phrasing_that_ends_in_the_value_is_probed():
    prompts = {rel: recall_probe.probe_prompts(rel) for rel in world_lib.RELATIONS}
    assert {rel: len(p) for rel, p in prompts.items()} == {"city": 5, "job": 6, "pet": 5}
    assert ("{n} lives in", False) in prompts["city"] and ("{n} works as", True) in prompts["job"]


def test_rows_score_every_value_and_mark_the_true_one():
    world = world_lib.build_world()
    sp = spm.SentencePieceProcessor(model_file=recall_probe.VOCAB)
    enc, tgt, gold, sizes, relations = recall_probe.probe_rows(world, "test", sp, "prefix", 1100)
    people = world.split_people["test"]
    assert len(gold) == len(people) * (16 + 12) and sum(sizes) == len(enc) == len(tgt)
    first = people[0]
    assert world_lib.VALUES["city"][gold[0]] == first.city and relations[0] == "city"
    assert sp.decode(tgt[gold[0]][tgt[gold[0]] > 0].tolist()) == first.city
    span, span_tgt, *_ = recall_probe.probe_rows(world, "test", sp, "span", 1100)
    assert (span[:, :].max() == 1099) and np.all(span_tgt[:, 0] == 1099)  # <extra_id_0> in both


def test_trait_questions_pair_the_two_bits_and_mark_the_persons():
    world = world_lib.build_world()
    person = world.split_people["test"][0]
    rows = [q for q in recall_probe.questions(world, "test") if q[0] == person.name]
    assert len(rows) == 12  # 4 traits x 3 phrasings
    prefix, candidates, true, trait = rows[0]
    assert trait == "left_handed" and candidates == ["is left-handed", "is right-handed"]
    assert true == (0 if person.has("left_handed") else 1)
    sp = spm.SentencePieceProcessor(model_file=recall_probe.VOCAB)
    enc, tgt, gold, sizes, kinds = recall_probe.probe_rows(world, "test", sp, "prefix", 1100)
    first_trait = kinds.index("left_handed")
    assert sizes[first_trait] == 2 and gold[first_trait] == true


def test_prior_is_the_most_frequent_value_everywhere():
    world = world_lib.build_world()
    prior = recall_probe.prior_baseline(world, "test")
    assert 100 / 16 <= prior < 100
    assert recall_probe.trait_prior(world, "test") == 50.0  # every split balances every trait
    # Independent of set order (hash-seeded): ties between equally frequent values go to the first in sorted order.
    right = []
    for rel in world_lib.RELATIONS:
        values = [p.value(rel) for p in world.people]
        top = sorted(values, key=lambda v: (-values.count(v), v))[0]
        right += [p.value(rel) == top for p in world.split_people["test"]]
    assert prior == 100 * sum(right) / len(right)
