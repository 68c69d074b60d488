"""Training: the paper's SGD schedule, clipping, checkpoints, and the loop itself."""
