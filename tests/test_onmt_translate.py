"""benchmarks/peers/onmt_translate.py: the side-by-side decode benchmark against OpenNMT-py 3.5.1.

OpenNMT-py is not a dependency of the project: the tests that run it are skipped unless it imports
(benchmarks/peers/README.md, "Decoding speed against OpenNMT-py's translator", says how to install it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from benchmarks.peers import onmt_translate as ot
from nmt.config import replace
from nmt.data.tokenizer import EOS, PAD
from nmt.decode.search import Hypothesis, search
from scripts.benchmark_decode import arch_config, batches, random_model


def tiny_config(vocab: int = 50):
    return replace(arch_config("paper", False), model={"layers": 1, "hidden": 32, "embed": 32},
                   data={"src_vocab_size": vocab, "tgt_vocab_size": vocab})


def needs_onmt():
    try:
        ot.import_onmt()
    except ImportError as e:
        pytest.skip(f"OpenNMT-py is not installed ({e})")


def test_onmt_batches_reverse_the_source_and_take_the_longest_sentence_s_limit():
    data = batches([5, 3], 2, 50, torch.device("cpu"))
    (src, lens), = data
    batch, = ot.onmt_batches(data, 2.0, 10)
    assert batch["limit"] == 20 and batch["srclen"].tolist() == [5, 3]
    assert batch["src"].shape == (2, 5, 1)
    assert batch["src"][1, :, 0].tolist() == src[1, :3].flip(0).tolist() + [PAD, PAD]


def test_agreement_allows_onmt_s_one_token_more_at_the_limit():
    ours = [Hypothesis(0.0, [5, 6], 0.0), Hypothesis(0.0, [7], 0.0)]
    assert ot.agreement(ours, [[5, 6, 9], [8, EOS]]) == {"same_hypotheses": 1, "compared": 2,
                                                          "length_differences": [0, 1]}


@pytest.mark.parametrize("beam", [1, 2, 5])
def test_copied_weights_give_onmt_our_beams(beam):
    """fp32 on the CPU: with our weights OpenNMT-py's translator keeps the same K hypotheses.

    OpenNMT-py stops at max_length without writing EOS, and ranks its finished hypotheses by their
    score; ours writes EOS at the limit, so ours gets one step more and its K hypotheses (ranked
    with EOS's score) must be, as a set, OpenNMT-py's K."""
    needs_onmt()
    config, device = tiny_config(), torch.device("cpu")
    ours = random_model(config, device)
    data = batches([9, 7, 7, 4], 4, 50, device)
    theirs, = ot.onmt_batches(data, 0.0, 6)
    with tempfile.TemporaryDirectory() as tmp:
        summary = ot.write_onmt_checkpoint(ours, config, Path(tmp) / "m.pt")
        translator = ot.onmt_translator(Path(tmp) / "m.pt", beam, device, "fp32")
    assert summary["parameters"] == sum(p.numel() for p in ours.parameters())
    translator.max_length, translator.n_best = 6, beam
    found = translator.translate_batch({"src": theirs["src"], "srclen": theirs["srclen"]}, attn_debug=False)
    mine = search(ours, *data[0], config.decode.override(beam=beam, max_len_a=0.0, max_len_b=7, n_best=beam))
    for hyps, predictions in zip(mine, found["predictions"]):
        assert sorted(h.tokens for h in hyps) == sorted(p.tolist() for p in predictions)


def test_main_tiny_on_the_cpu(tmp_path):
    needs_onmt()
    import random
    rng = random.Random(0)
    src = tmp_path / "src.txt"
    src.write_text("".join(" ".join(rng.choice("abcdefgh") * rng.randint(1, 3) for _ in range(rng.randint(2, 12)))
                           + "\n" for _ in range(24)))
    out = tmp_path / "onmt.json"
    records = ot.main(["--src", str(src), "--spm-vocab", "40", "--device", "cpu", "--layers", "1", "--hidden", "16",
                       "--vocab", "40", "--batch", "8", "--beams", "1,3", "--no-bf16", "--out", str(out)])
    assert out.exists() and [(r["system"], r["beam"], r["rule"]) for r in records] == [
        ("onmt", 1, "batch"), ("ours", 1, "batch"), ("ours", 1, "sentence"),
        ("onmt", 3, "batch"), ("ours", 3, "batch"), ("ours", 3, "sentence")]
    assert not any("error" in r for r in records)
    for theirs, ours in zip(records[0::3], records[1::3]):  # the same work: every row, every step
        assert (ours["steps"], ours["row_steps"]) == (theirs["steps"], theirs["row_steps"])
        assert ours["ratio_to_onmt"] > 0 and ours["agreement_with_onmt"]["compared"] == 24
    assert records[1]["agreement_with_onmt"]["same_hypotheses"] == 24  # greedy: the same tokens
