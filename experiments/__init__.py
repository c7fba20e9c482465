"""Experiments of the paper: sweeps, runner, collector, plots (see experiments/README.md)."""
