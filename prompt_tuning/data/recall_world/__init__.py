"""The recall world: a synthetic world whose tasks test what a frozen model stored in pretraining.

world.py    people with facts, entity-disjoint task splits
corpus.py   the pretraining corpus (facts and exercises in natural phrasings)
tasks.py    BoolQ-, RTE- and ReCoRD-shaped tasks in SuperGLUE's jsonl schemas
baselines.py majority, lookup-table, random-candidate and closed-book controls
registry.py the SeqIO tasks recall_world_<task> and the corpus tasks
"""
