"""Real SuperGLUE examples (../shared/data/superglue/<Task>/train32.jsonl) through the tasks.

Expected strings are written from the definitions (T5's `glue`, `record` and
`wsc_simple` formats, task-name prefix removed; TFDS label names as targets),
reading the raw jsonl rows quoted in each test.
"""
import json

import numpy as np
import tensorflow as tf

from prompt_tuning.data import superglue
from tests.conftest import shared_path
from tests.data.conftest import examples


def _by(exs, **idx):
    found = [e for e in exs if all(e[k] == v for k, v in idx.items())]
    assert len(found) == 1, (idx, len(found))
    return found[0]


def _check_tokens(ex, vocab):
    # Targets / inputs are the vocabulary's ids of the strings, then EOS (1).
    assert list(ex["targets"]) == list(vocab.encode(ex["targets_pretokenized"])) + [1]
    assert list(ex["inputs"]) == list(vocab.encode(ex["inputs_pretokenized"])) + [1]
    assert ex["targets"].dtype == np.int32 and ex["inputs"].dtype == np.int32


def test_boolq(shared_task, vocab):
    exs = examples(shared_task("boolq"))
    assert len(exs) == 32
    # {"question": "is northwest florida state college a 4 year college", "passage": "Northwest Florida
    #  State College -- The school voted ...", "idx": 2747, "label": true}
    ex = _by(exs, idx=2747)
    assert ex["inputs_pretokenized"] == (
        "passage: Northwest Florida State College -- The school voted to change its name to Okaloosa-Walton "
        "Community College in 1988, and gained four-year status in 2003, thus changing its name to "
        "Okaloosa-Walton College. question: is northwest florida state college a 4 year college")
    assert ex["targets_pretokenized"] == "True"
    ex = _by(exs, idx=8897)
    assert ex["inputs_pretokenized"] == (
        "passage: Peace bond -- The use of peace bonds is rather uncommon in the U.S. justice system, but a "
        "deferred prosecution has a similar effect. Since there is no conviction or admission of any guilt, "
        "signing a peace bond in Canada does not usually result in U.S. inadmissibility under INA § 212 (a) "
        "(2). question: is a peace bond an admission of guilt")
    assert ex["targets_pretokenized"] == "False"
    _check_tokens(ex, vocab)


def test_cb(shared_task, vocab):
    exs = examples(shared_task("cb"))
    ex = _by(exs, idx=29)
    assert ex["inputs_pretokenized"] == (
        "hypothesis: Jed should ask premise: Jed wondered. He 'd scarcely set eyes on him since the night they "
        "'d had dinner together at the house in Westwood. Nobody had mentioned him either and Jed didn't feel "
        "he should ask.")
    assert ex["targets_pretokenized"] == "contradiction"
    ex = _by(exs, idx=98)
    assert ex["inputs_pretokenized"] == (
        "hypothesis: Emma would have been all congratulations and the joys of womanhood premise: ``That's "
        "good.'' Ruth stood looking at her. Rachaela could imagine Emma would have been all congratulations "
        "and the joys of womanhood.")
    assert ex["targets_pretokenized"] == "entailment"
    ex = _by(exs, idx=222)
    assert ex["inputs_pretokenized"].startswith("hypothesis: they're a security threat premise: B: when you've")
    assert ex["targets_pretokenized"] == "neutral"
    _check_tokens(ex, vocab)


def test_copa(shared_task):
    exs = examples(shared_task("copa"))
    # label 1 -> the second choice; 0 -> the first.
    ex = _by(exs, idx=198)
    assert ex["inputs_pretokenized"] == (
        "choice1: I stenciled it. choice2: I glued it back together. premise: The vase broke. question: effect")
    assert ex["targets_pretokenized"] == "choice2"
    ex = _by(exs, idx=364)
    assert ex["inputs_pretokenized"] == (
        "choice1: She lost a tooth. choice2: She swallowed her gum. premise: The girl's mouth ached. "
        "question: cause")
    assert ex["targets_pretokenized"] == "choice1"


def test_rte(shared_task, vocab):
    exs = examples(shared_task("rte"))
    ex = _by(exs, idx=299)
    assert ex["inputs_pretokenized"] == (
        "hypothesis: Kerry shot Bush. premise: Kerry hit Bush hard on his conduct on the war in Iraq.")
    assert ex["targets_pretokenized"] == "not_entailment"
    ex = _by(exs, idx=819)
    assert ex["inputs_pretokenized"] == (
        "hypothesis: Non-authorized personnel illegally entered into computer networks. premise: The "
        "university server containing the information relating to Mason's ID cards was illegally entered by "
        "computer hackers.")
    assert ex["targets_pretokenized"] == "entailment"
    _check_tokens(ex, vocab)


def test_wic(shared_task):
    exs = examples(shared_task("wic"))
    ex = _by(exs, idx=507)
    assert ex["inputs_pretokenized"] == "sentence1: Catch fire. sentence2: Catch the mood. word: catch"
    assert ex["targets_pretokenized"] == "True"
    ex = _by(exs, idx=1253)
    assert ex["inputs_pretokenized"] == (
        "sentence1: Have, throw, or make a party. sentence2: Throw a javelin. word: throw")
    assert ex["targets_pretokenized"] == "False"


def test_multirc_one_example_per_answer(shared_task):
    exs = examples(shared_task("multirc"))
    rows = [json.loads(l) for l in open(shared_path("superglue", "MultiRC", "train32.jsonl"))]
    assert len(exs) == sum(len(q["answers"]) for r in rows for q in r["passage"]["questions"])
    # Row idx 427, question 4810: "What looks different about this futuristic train?", answers
    # 25663 "The train has no conductor" (0) and 25665 "The  train has no wheels. It uses ..." (1).
    paragraph = (
        "Take a look at this train in Figure 1.11. It looks very futuristic. What do you notice about it? Did "
        "you notice that the train has no wheels? How can a train have no wheels? It doesn't need wheels. It "
        "actually floats, or levitates, just above the track. Magnets enable the train to do this. This is not "
        "a normal train. This is a maglev train. The word maglev stands for magnetic levitation. Because it has "
        "no wheels, there is no friction. Some magnets hold the train up. Other magnets are used to move the "
        "train forward. This train can go very fast. It can reach speeds up to 480 kilometers (300 miles) per "
        "hour! Magnets are pretty cool. What exactly is a magnet? How is it able to exert such force? ")
    ex = _by(exs, **{"idx/question": 4810, "idx/answer": 25663})
    assert ex["inputs_pretokenized"] == (
        "question: What looks different about this futuristic train? answer: The train has no conductor "
        "paragraph: " + paragraph)
    assert ex["targets_pretokenized"] == "False" and ex["idx/paragraph"] == 427
    ex = _by(exs, **{"idx/question": 4810, "idx/answer": 25665})
    assert ex["inputs_pretokenized"] == (
        "question: What looks different about this futuristic train? answer: The  train has no wheels. It "
        "uses magnets to levitate above the tracks paragraph: " + paragraph)
    assert ex["targets_pretokenized"] == "True"


def test_record_one_example_per_answer(shared_task):
    exs = examples(shared_task("record"))
    rows = [json.loads(l) for l in open(shared_path("superglue", "ReCoRD", "train32.jsonl"))]
    # One example per distinct answer string of each query.
    assert len(exs) == sum(len({a["text"] for a in q["answers"]}) for r in rows for q in r["qas"])
    # Query 45067 (passage 29280): answers Shane Reeves (twice, one string); entities at inclusive
    # offsets: Leon Watson, Peter Roberts x3, Shane Reeves x3, Roberts, Northampton x2 -> sorted set.
    ex = _by(exs, **{"idx/query": 45067})
    assert ex["inputs_pretokenized"] == (
        "query: After undergoing surgery, Mr @placeholder spent a month recovering from his injuries. "
        "entities: Leon Watson, Northampton, Peter Roberts, Roberts, Shane Reeves "
        "passage: By Leon Watson PUBLISHED: 12:24 EST, 15 October 2012 | UPDATED: 01:47 EST, 16 October 2012 "
        "A thug who stabbed his friend 11 times and left him for dead after a row over a game of darts has been "
        "jailed for eight years. Peter Roberts, 46, from Northampton, launched a 'frenzied and determined' "
        "attack on Shane Reeves, 22, after they fell out on July 5 this year. Roberts plunged a kitchen knife "
        "into his friend's chest, abdomen, shoulder and arm before dumping him on a landing. Peter Roberts, "
        "from Northampton, stabbed his friend 11 times and left him for dead after a row over a game of darts. "
        # '\n@highlight\n' after a word -> '. '
        "He has been jailed for eight years. Peter Roberts, from Northampton, jailed for attack on Shane "
        "Reeves. The pair, aged 46 and 22, were friends but fell out on July 5 this year")
    assert ex["targets_pretokenized"] == "Shane Reeves"
    assert [a.decode() for a in ex["answers"]] == ["Shane Reeves"]
    # Query 56541: '\n@highlight\n' after a full stop -> ' '.
    ex = _by(exs, **{"idx/query": 56541})
    assert ex["inputs_pretokenized"].startswith(
        "query: Pope Francis' pared back humble demeanour has taken locals in status-conscious, ostentatious, "
        "@placeholder by surprise. entities: Daejeon, Deajeon, Francis, Kia Soul, Korea, Mass, Pope Francis, "
        "Seoul passage: Pope Francis surprised hundreds of commuters when he rode on a train")
    assert ex["inputs_pretokenized"].endswith(
        "he held a service at a football stadium in the city. Pope Francis took train to Daejeon, where he led "
        "service at football stadium. He was seen in fourth car of train in first-class, with 500 other "
        "passengers. Had already refused a Popemobile and arrived from airport in black Kia Soul")
    assert ex["targets_pretokenized"] == "Korea"
    # A query with several answers yields one example per answer, each keeping all answers.
    multi = [e for e in exs if len(e["answers"]) > 1]
    assert multi and all(e["targets_pretokenized"] in [a.decode() for a in e["answers"]] for e in multi)


def test_wsc_marks_pronoun_and_generates_referent(shared_task):
    exs = examples(shared_task("wsc"))
    # {"text": "John hired Bill to take care of him .", span2_index 7 ("him"), span1_text "John"}
    ex = _by(exs, idx=461)
    assert ex["inputs_pretokenized"] == "John hired Bill to take care of *him* ."
    assert ex["targets_pretokenized"] == "John"
    ex = _by(exs, idx=9)
    assert ex["inputs_pretokenized"] == "Billy cried because Toby wouldn't share *his* toy."
    assert ex["targets_pretokenized"] == "Toby"
    # span1_text "The demonstrators" is not in the text: wsc.fixed matches the case of word 4 ("the").
    ex = _by(exs, idx=16)
    assert ex["inputs_pretokenized"] == (
        "The city councilmen refused the demonstrators a permit because *they* advocated violence.")
    assert ex["targets_pretokenized"] == "the demonstrators"
    # One of T5's two special cases: span2_index points at 'him,"'.
    ex = _by(exs, idx=137)
    assert ex["inputs_pretokenized"] == (
        'The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite '
        'loud. "Good for *him* ," he said.')
    assert ex["targets_pretokenized"] == "pony"


def test_wsc_trains_on_true_labels_only_and_evaluates_on_all(shared_task, vocab, tmp_path):
    from prompt_tuning.data import tasks

    full = shared_path("superglue", "WSC", "train.jsonl")
    rows = [json.loads(l) for l in open(full)]
    task = tasks.register_jsonl_task("test_wsc_full", "wsc", str(full.parent),
                                     split_files={"train": "train.jsonl", "validation": "train.jsonl"},
                                     vocabulary=vocab)
    train, val = examples(task, "train"), examples(task, "validation")
    assert len(rows) == 554 and len(train) == 259 == sum(r["label"] for r in rows)
    assert len(val) == 554 and sorted(set(e["label"] for e in val)) == [0, 1]
    # T5 asserts that the marked word is span2_text: true for every row but its special case.
    by_idx = {r["idx"]: r for r in rows}
    for e in val:
        r = by_idx[e["idx"]]
        assert f"*{r['target']['span2_text']}*" in e["inputs_pretokenized"]


def test_remove_first_text_token_gives_the_taskless_string():
    x = {"inputs": tf.constant("rte hypothesis: a premise: b")}
    out = next(iter(superglue.remove_first_text_token(tf.data.Dataset.from_tensors(x))))
    assert out["inputs"].numpy().decode() == "hypothesis: a premise: b"


def test_prefix_reproduces_t5_with_task_name():
    x = {"premise": tf.constant("P"), "hypothesis": tf.constant("H"), "idx": tf.constant(0), "label": tf.constant(1, tf.int64)}
    with_prefix = superglue.format_classification(x, "rte", prefix="rte")
    plain = superglue.format_classification(x, "rte")
    assert with_prefix["inputs"].numpy().decode() == "rte hypothesis: H premise: P"
    assert plain["inputs"].numpy().decode() == "hypothesis: H premise: P"
    assert plain["targets"].numpy().decode() == "not_entailment"


def test_multirc_html_is_stripped_and_unlabelled_rows_get_unk(vocab, tmp_path):
    from prompt_tuning.data import tasks

    row = {"idx": 3, "passage": {"text": "Line one.<br>Line <b>two</b>.", "questions": [
        {"question": "Which <b>line</b>?", "idx": 7, "answers": [{"text": "two", "idx": 70, "label": 1},
                                                                  {"text": "one", "idx": 71}]}]}}
    (tmp_path / "val.jsonl").write_text(json.dumps(row) + "\n")
    task = tasks.register_jsonl_task("test_multirc_html", "multirc", str(tmp_path),
                                     split_files={"validation": "val.jsonl"}, vocabulary=vocab)
    exs = examples(task, "validation")
    assert [e["inputs_pretokenized"] for e in exs] == [
        "question: Which line? answer: two paragraph: Line one. Line two.",
        "question: Which line? answer: one paragraph: Line one. Line two.",
    ]
    assert [e["targets_pretokenized"] for e in exs] == ["True", "<unk>"]
