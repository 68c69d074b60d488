"""Sentence vectors: the encoder's final state for each phrase, projected to 2-D with PCA
(the paper's Figure 2: phrases cluster by meaning, are sensitive to word order, and are fairly
insensitive to active or passive voice).

The vector is the state the decoder starts from (`model.encode`): by default the top layer's
final hidden state h, or its cell state c, or both concatenated.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from nmt.analyze.outputs import record, write_csv, write_json
from nmt.analyze.plots import TEXT_SIZE, fit_texts, new_figure, save, separate_texts
from nmt.data.corpus import read_lines
from nmt.errors import DataError, NmtError

STATES = ("h", "c", "both")


def load_translator(path: Path, device: str = "auto"):
    """The one place this package loads a checkpoint (a checkpoint folder or a run folder); a
    checkpoint that does not load is a CheckpointError naming the file and the problem."""
    from nmt.decode.translate import Translator

    return Translator.load(path, device)


def shipped_phrases() -> dict[str, Path]:
    """The phrase files in nmt/analyze/phrases/, by language code ('en', 'de')."""
    folder = resources.files("nmt.analyze") / "phrases"
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".txt")}


def read_phrases(name_or_path: str) -> list[str]:
    """The non-empty lines of a file, or of a shipped phrase file named by its language code."""
    path, shipped = Path(name_or_path), shipped_phrases()
    if not path.exists() and name_or_path in shipped:
        path = shipped[name_or_path]
    if not path.exists():
        raise DataError(f"phrase file {path} not found: pass a file with one phrase per line, "
                        f"or one of the shipped sets: {', '.join(sorted(shipped))}")
    phrases = [line for line in read_lines(path) if line]
    if len(phrases) < 2:
        raise DataError(f"{path} holds {len(phrases)} phrase(s): PCA needs at least 2, one per line")
    return phrases


def sentence_vectors(translator, phrases: Sequence[str], state: str = "h") -> np.ndarray:
    """(N, D) float64: the encoder's final top-layer state of each phrase."""
    import torch

    from nmt.data.batching import pad

    if state not in STATES:
        raise NmtError(f"--state {state!r}: choose one of {', '.join(STATES)}")
    if translator.config.data.lowercase:  # the model was trained on lowercased text
        phrases = [phrase.lower() for phrase in phrases]
    ids = translator.src_tokenizer.encode(phrases)
    src = pad(ids).to(translator.device)  # (N, S), right-padded
    src_lens = torch.tensor([len(sequence) for sequence in ids])
    with torch.no_grad():
        encoded = translator.model.encode(src, src_lens)  # h, c: (layers, N, hidden)
    top_h = encoded.h[-1]  # (N, hidden)
    if state == "h":
        chosen = top_h
    elif encoded.c is None:
        raise NmtError(f"--state {state}: this model's cells are GRUs, which have no cell state c; use --state h")
    else:
        chosen = encoded.c[-1] if state == "c" else torch.cat([top_h, encoded.c[-1]], dim=1)  # (N, 2 * hidden)
    return chosen.float().cpu().numpy().astype(np.float64)


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (N, 2) on the first two principal axes, and the share of variance of each (2,).

    A centred SVD: X - mean = U S V^T, coordinates U S = (X - mean) V. Each axis's sign is fixed so
    that its largest loading is positive: the picture does not flip between runs of the same
    checkpoint. Where there is less than two dimensions of spread the missing axis is zero.
    """
    centred = vectors - vectors.mean(axis=0, keepdims=True)  # (N, D)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)  # u (N, K), s (K,), vt (K, D), K = min(N, D)
    largest = np.argmax(np.abs(vt), axis=1)  # (K,)
    signs = np.sign(vt[np.arange(len(vt)), largest])
    signs[signs == 0] = 1
    coords = (u * s) * signs  # (N, K)
    total = float((s ** 2).sum())
    shares = (s ** 2) / total if total > 0 else np.zeros_like(s)
    padded = np.zeros((len(vectors), 2))
    padded[:, :min(2, coords.shape[1])] = coords[:, :2]
    ratio = np.zeros(2)
    ratio[:min(2, len(shares))] = shares[:2]
    return padded, ratio


def plot_vectors(coords: np.ndarray, phrases: Sequence[str], ratio: np.ndarray, title: str, path: Path) -> Path:
    """Each phrase a point with its text beside it, on the side facing the middle of the plot."""
    figure, axes = new_figure(title, f"first principal component ({100 * ratio[0]:.0f}% of variance)",
                              f"second principal component ({100 * ratio[1]:.0f}% of variance)")
    axes.scatter(coords[:, 0], coords[:, 1], s=25, color="C0", zorder=3)
    middle = float(np.mean([coords[:, 0].min(), coords[:, 0].max()]))
    texts = []
    for (x, y), phrase in zip(coords, phrases):
        right = x <= middle  # labels of the left half point right, and the other way round
        # The leader line shows which point a label belongs to once separate_texts has moved it.
        texts.append(axes.annotate(phrase, (x, y), xytext=(6 if right else -6, 3), textcoords="offset points",
                                   ha="left" if right else "right", va="bottom", fontsize=TEXT_SIZE,
                                   arrowprops=dict(arrowstyle="-", color="0.6", linewidth=0.6, shrinkA=0, shrinkB=3)))
    for _ in range(2):  # fitting the limits moves the points closer together: separate again
        fit_texts(figure, axes, texts)
        separate_texts(figure, texts)
    fit_texts(figure, axes, texts)
    return save(figure, path)


def analyze_vectors(checkpoint: Path, phrases_file: str, out: Path, *, state: str = "h",
                    device: str = "auto") -> list[Path]:
    """vectors.png, vectors.csv (each phrase's coordinates) and vectors.json (what was projected)."""
    phrases = read_phrases(phrases_file)
    translator = load_translator(checkpoint, device)
    vectors = sentence_vectors(translator, phrases, state)  # (N, D)
    coords, ratio = pca_2d(vectors)
    what = {"h": "final hidden state h", "c": "final cell state c", "both": "final h and c"}[state]
    written = [plot_vectors(coords, phrases, ratio, f"Encoder {what} of the top layer, PCA", out / "vectors.png"),
               write_csv(out / "vectors.csv", ["phrase", "pc1", "pc2"],
                         [[p, round(float(x), 6), round(float(y), 6)] for p, (x, y) in zip(phrases, coords)]),
               write_json(out / "vectors.json", {"checkpoint": str(checkpoint), "phrases": phrases_file,
                                                 "state": state, "layer": "top", "dimensions": vectors.shape[1],
                                                 "explained_variance_ratio": [round(float(r), 6) for r in ratio]})]
    record(out, "vectors", {"checkpoint": str(checkpoint), "phrases": phrases_file, "state": state}, written)
    return written
