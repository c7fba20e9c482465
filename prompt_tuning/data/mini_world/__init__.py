"""The mini world: a synthetic corpus, mini SuperGLUE tasks, a vocabulary and a model ladder built offline."""
