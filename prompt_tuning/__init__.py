"""Prompt tuning (Lester et al., 2021) on a self-contained T5 1.1 in JAX/Flax."""
__version__ = "0.1.0"
