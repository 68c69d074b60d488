"""Stand-in for spaCy, put at the END of sys.path by peer_launch.py for OpenNMT-py only.

OpenNMT-py 3.5 imports all its data transforms at start-up, and onmt/transforms/terminology.py
does `import spacy` at module level. The benchmark uses no transform, and spaCy (35 MB plus a
dozen dependencies) does not fit the 64 MiB carried to the GPU machine. A real spaCy, if
installed, comes earlier on sys.path and wins. Any use of this stand-in fails loudly.
"""

IS_PEER_BENCHMARK_STUB = True


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"spacy.{name}: spaCy is not installed (benchmarks/peers/stubs stand-in)")
