"""Search (greedy, beam, sampling) and translating files."""
