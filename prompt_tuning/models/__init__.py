"""T5 1.1 and the prompted encoder. Imports nothing from training/ or checkpoints/."""
