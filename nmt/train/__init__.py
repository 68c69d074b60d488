"""Training: the loop and what it hands work to (see loop.py); `train` and `resume` start runs."""
