"""Search (greedy, beam) and translating files."""
