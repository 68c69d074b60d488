"""`nmt analyze`: the paper's analyses as plots and tables.

curves.py    training and dev curves from run folders' log.jsonl
buckets.py   source-length and word-frequency buckets (pure functions)
systems.py   BLEU per bucket for one or more systems, and their paired bootstrap test
vectors.py   the encoder's final state of phrases, projected to 2-D with PCA
attention.py heatmaps of the attention weights of chosen sentences' translations
report.py    one HTML page with every plot and table of some output folders
plots.py     the figures' shared look and size; outputs.py: CSV/JSON files and the folder's index
cli.py       the Typer sub-app `analyze_app`
"""
