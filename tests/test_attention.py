"""Attention weights (nmt/decode/attention.py), their heatmaps (nmt analyze attention), nmt translate
--attention, and TensorBoard event files (train.tensorboard).

The weights are checked by invariants that hold for any weights: every row sums to one over the
real source tokens, padding gets exactly nothing, a sentence gets the same weights alone as in a
padded batch, and a model that reads the source reversed gives the weights of one that reads a
reversed source forwards, with the columns mapped back to reading order.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from typer.testing import CliRunner

from nmt.analyze.attention import heatmap_size
from nmt.cli import app
from nmt.data.batching import pad
from nmt.data.tokenizer import BOS
from nmt.decode.attention import attention_matrices, require_attention
from nmt.errors import NmtError
from nmt.model.ensemble import Ensemble
from nmt.model.seq2seq import Seq2Seq
from tests.conftest import tiny_config

KINDS = {"dot": dict(attention="dot"), "general": dict(attention="general"), "concat": dict(attention="concat"),
         "additive": dict(attention="additive"), "general+feed": dict(attention="general", input_feeding=True),
         "gru+dot+bi": dict(cell="gru", attention="dot", bidirectional=True)}
SOURCES = [[5, 6, 7, 8, 9, 10], [4, 5], [9], [6, 7, 8, 4]]
TARGETS = [[4, 5, 6], [7], [], [8, 9, 10, 4, 5]]


def random_model(seed: int = 0, **options) -> Seq2Seq:
    torch.manual_seed(seed)
    # A wide init makes the weights far from uniform, so a misplaced column shows.
    return Seq2Seq(src_vocab_size=11, tgt_vocab_size=11, embed=6, hidden=8, layers=2, init_range=1.0,
                   **options).eval()


def nmt(*args, cwd: Path):
    """The command in this process (no second torch import)."""
    import os

    here = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(here)


def ok(result) -> None:
    assert result.exit_code == 0, result.output + repr(result.exception)


# --- the weights ---------------------------------------------------------------------------------

@pytest.mark.parametrize("options", KINDS.values(), ids=KINDS.keys())
def test_rows_sum_to_one_and_padding_gets_nothing(options):
    model = random_model(**options)
    src, lens = pad(SOURCES), torch.tensor([len(s) for s in SOURCES])
    with torch.no_grad():
        weights = model.attention_weights(model.encode(src, lens), pad(TARGETS, prefix=BOS))  # (B, T, S)
    assert weights.shape == (4, 6, 6)
    for row, length in enumerate(lens.tolist()):
        assert torch.all(weights[row, :, length:] == 0)  # padding columns: exactly zero
        assert torch.allclose(weights[row, :, :length].sum(-1), torch.ones(6), atol=1e-6)


@pytest.mark.parametrize("options", KINDS.values(), ids=KINDS.keys())
def test_a_sentence_gets_the_same_weights_alone_as_in_a_padded_batch(options):
    model = random_model(**options)
    together = attention_matrices(model, SOURCES, TARGETS, device=torch.device("cpu"), batch_size=4)
    alone = attention_matrices(model, SOURCES, TARGETS, device=torch.device("cpu"), batch_size=1)
    for src, tgt, a, b in zip(SOURCES, TARGETS, together, alone):
        assert a.shape == (len(tgt) + 1, len(src))  # the target tokens, then EOS
        assert torch.allclose(a, b, atol=1e-6)
        assert torch.allclose(a.sum(1), torch.ones(len(tgt) + 1), atol=1e-6)


def test_columns_are_in_the_sources_reading_order():
    """A model that reverses its source reads [a, b, c] as c, b, a: so does a copy of it that does
    not reverse, given [c, b, a]. Their attention is the same, and mapped back to reading order the
    first model's column j is source token j, the copy's column j the reversed source's token j."""
    reversing = random_model(3, attention="general")
    forwards = copy.deepcopy(reversing)
    forwards.reverse_source = False
    cpu = torch.device("cpu")
    read = attention_matrices(reversing, SOURCES, TARGETS, device=cpu)
    reversed_read = attention_matrices(forwards, [s[::-1] for s in SOURCES], TARGETS, device=cpu)
    for a, b in zip(read, reversed_read):
        assert torch.allclose(a, b.flip(1), atol=1e-6)
    assert any(not torch.allclose(a, a.flip(1), atol=1e-3) for a in read if a.size(1) > 1)  # not symmetric


def test_an_empty_source_has_no_columns():
    matrices = attention_matrices(random_model(attention="dot"), [[], [5, 6]], [[], [7]], device=torch.device("cpu"))
    assert matrices[0].shape == (1, 0) and matrices[1].shape == (2, 2)


def test_models_without_attention_are_refused():
    with pytest.raises(NmtError, match=r"trained without attention \(model.attention: none\)"):
        require_attention(random_model(), "run")
    with pytest.raises(NmtError, match="an ensemble of 2: pass a single --checkpoint"):
        require_attention(Ensemble([random_model(attention="dot"), random_model(attention="dot")]), "run")
    with pytest.raises(NmtError, match="trained without attention"):
        attention_matrices(random_model(), [[5]], [[6]], device=torch.device("cpu"))


# --- heatmaps ------------------------------------------------------------------------------------

def test_heatmap_size_grows_with_the_sentence():
    assert heatmap_size(7, 8) == (800, 500)  # a short sentence: the usual size
    assert heatmap_size(40, 16) == (1500, 740)  # 3 + 0.3 * 40 inches by 2.6 + 0.3 * 16, at 100 dpi
    assert heatmap_size(1000, 5) == (6000, 500)  # at most 60 inches: smaller cells


def assert_heatmap(path: Path, size: tuple[int, int]) -> None:
    """A PNG of `size` that is not one flat colour."""
    image = imread(path)  # (height, width, channels)
    assert (image.shape[1], image.shape[0]) == size
    assert len(np.unique(image.reshape(-1, image.shape[2]), axis=0)) > 10


def test_analyze_attention_draws_each_sentence(attention_run, tmp_path):
    from nmt import Translator

    (tmp_path / "in.txt").write_text("wa0 wb1 wc2\n\nwd3\n", encoding="utf-8")
    long = " ".join(f"w{letter}{i}" for i, letter in zip(range(20), "abcdefghijklmnopqrst"))
    ok(nmt("analyze", "attention", attention_run, "in.txt", "--sentence", long, "--out", "out", "--report",
           "--beam", "2", cwd=tmp_path))
    numbers = json.loads((tmp_path / "out" / "attention.json").read_text(encoding="utf-8"))
    sentences = numbers["sentences"]
    assert [s["sentence"] for s in sentences] == [1, 2, 3] and numbers["beam"] == 2  # the empty line skipped
    translator = Translator.load(attention_run, device="cpu")
    for shown, text in zip(sentences, [long, "wa0 wb1 wc2", "wd3"]):
        assert shown["source"] == translator.src_tokenizer.pieces(translator.src_tokenizer.encode([text])[0])
        assert shown["target"][-1] == "</s>" and len(shown["weights"]) == len(shown["target"])
        assert all(len(row) == len(shown["source"]) and abs(sum(row) - 1) < 1e-3 for row in shown["weights"])
        assert_heatmap(tmp_path / "out" / shown["image"], heatmap_size(len(shown["source"]), len(shown["target"])))
    assert imread(tmp_path / "out" / sentences[0]["image"]).shape[1] > 800  # the long one grew
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3 and 'href="attention.json"' in page

    ok(nmt("analyze", "attention", attention_run, "--sentence", "wa0", "--out", "out", cwd=tmp_path))  # fewer now
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["attention-1.png"]


def test_translate_writes_the_attention_of_each_line(attention_run, tmp_path):
    from nmt import Translator

    lines = ["wa0 wb1 wc2", "", "wd3 we4"]
    (tmp_path / "in.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    ok(nmt("translate", "-m", attention_run, "in.txt", "-o", "out.txt", "--attention", "att.jsonl", "--beam", "2",
           cwd=tmp_path))
    outputs = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in (tmp_path / "att.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3] and [r["translation"] for r in records] == outputs
    assert records[1] == {"line": 2, "source": [], "target": ["</s>"], "translation": "", "weights": [[]]}
    translator = Translator.load(attention_run, device="cpu")
    found = translator.translate(lines, translator.options(beam=2))
    src_ids = translator.src_tokenizer.encode(lines)
    expected = attention_matrices(translator.model, src_ids, [hyps[0].tokens for hyps in found],
                                  device=torch.device("cpu"))
    for record, ids, hyps, matrix in zip(records, src_ids, found, expected):
        assert record["source"] == translator.src_tokenizer.pieces(ids)
        assert record["target"] == translator.tgt_tokenizer.pieces(hyps[0].tokens) + ["</s>"]
        assert np.allclose(np.array(record["weights"]).reshape(matrix.shape), matrix.numpy(), atol=1e-5)


# --- TensorBoard ---------------------------------------------------------------------------------

def test_training_writes_tensorboard_events_beside_the_log(workspace):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nmt.train.progress import read_log
    from nmt.train.start import resume, train

    config = tiny_config(workspace, train={"max_steps": 4, "log_every": 2, "eval_every": 4, "save_every": 4,
                                           "tensorboard": True})
    run = train(config, stream=open("/dev/null", "w"))
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    board = EventAccumulator(str(run / "tensorboard"))
    board.Reload()
    logged = [e for e in read_log(run / "log.jsonl") if e["event"] == "train"]
    scalars = board.Scalars("train/loss")
    assert [s.step for s in scalars] == [e["step"] for e in logged] == [2, 4]
    assert [s.value for s in scalars] == pytest.approx([e["loss"] for e in logged], abs=1e-5)
    assert {"train/lr", "train/ppl", "valid/ppl", "epoch/batches"} <= set(board.Tags()["scalars"])

    resume(run, ["train.max_steps=6"], stream=open("/dev/null", "w"))  # a second event file, the steps go on
    board = EventAccumulator(str(run / "tensorboard"))
    board.Reload()
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert [s.step for s in board.Scalars("train/loss")] == [2, 4, 6]


def test_a_run_without_tensorboard_writes_no_events(trained_run):
    assert not (trained_run / "tensorboard").exists()
    assert not any(re.match(r"events\.out", p.name) for p in trained_run.rglob("*"))
