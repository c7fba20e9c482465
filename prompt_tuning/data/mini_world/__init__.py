"""What remains of the first mini world: its SentencePiece trainer (vocab.py), which the recall world uses.

The rest of the first mini world (its world, corpus, tasks, shipped default, ladder builder and the
experiments' 'mini' backend) is retired: its tasks could be solved by shortcuts
(experiments/mini_world/RESULTS.md says which claims that retires and why).
"""
