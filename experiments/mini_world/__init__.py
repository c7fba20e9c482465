"""The mini world: probes, the default model and the ladder builder."""
