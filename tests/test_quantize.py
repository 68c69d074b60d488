"""int8 dynamic quantization on the CPU: what is quantized, that it translates like fp32, the options' errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nmt.cli import app
from nmt.errors import NmtError
from tests.conftest import WORDS

ROOT = Path(__file__).resolve().parents[1]


def toy_lines(count: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in range(count)]


@pytest.fixture(scope="module")
def pair(trained_run):
    from nmt import Translator

    return Translator.load(trained_run, "cpu"), Translator.load(trained_run, "cpu", quantize="int8")


def test_the_products_are_int8_and_the_embeddings_stay_float(pair):
    from torch.ao.nn.quantized import dynamic as quantized

    _, int8 = pair
    model = int8.model
    assert isinstance(model.output, quantized.Linear)
    assert isinstance(model.encoder.rnn, quantized.LSTM) and isinstance(model.decoder.rnn, quantized.LSTM)
    assert all(isinstance(cell, quantized.LSTMCell) for cell in model.decoder.int8_cells)  # what the search steps
    assert len(model.decoder.int8_cells) == model.decoder.num_layers
    assert model.src_embed.weight.dtype == torch.float32


def test_int8_translations_are_close_to_fp32(pair):
    fp32, int8 = pair
    lines = toy_lines(40)
    for beam in (1, 3):
        options = fp32.options(beam=beam)
        a, b = fp32.translate(lines, options), int8.translate(lines, options)
        same = sum(x[0].text == y[0].text for x, y in zip(a, b))
        assert same >= 0.8 * len(lines), f"beam {beam}: only {same} of {len(lines)} lines as in fp32"
        for x, y in zip(a, b):
            if x[0].tokens == y[0].tokens:
                assert y[0].log_prob == pytest.approx(x[0].log_prob, abs=0.05 * (len(x[0].tokens) + 1))


def test_int8_scores_are_close_to_fp32(pair):
    fp32, int8 = pair
    lines = toy_lines(10)
    candidates = [hyps[0].text for hyps in fp32.translate(lines)]
    for a, b in zip(fp32.score(lines, candidates), int8.score(lines, candidates)):
        assert b.log_prob == pytest.approx(a.log_prob, abs=0.05 * a.length)


def test_an_int8_ensemble_translates(trained_run, pair):
    from nmt import Translator

    fp32, _ = pair
    ensemble = Translator.load([trained_run, trained_run], "cpu", quantize="int8")
    lines = toy_lines(10)
    same = sum(x[0].text == y[0].text for x, y in zip(fp32.translate(lines), ensemble.translate(lines)))
    assert same >= 8


def test_quantize_refuses_other_kinds_and_devices(trained_run):
    from nmt import Translator

    with pytest.raises(NmtError, match="unknown quantization 'int4': use int8"):
        Translator.load(trained_run, "cpu", quantize="int4")
    for device in ("cuda", "cuda:1"):  # the same answer with or without a GPU here
        with pytest.raises(NmtError, match=f"--quantize int8 runs on the CPU only, but --device {device}"):
            Translator.load(trained_run, device, quantize="int8")
    assert Translator.load(trained_run, "auto", quantize="int8").device == torch.device("cpu")


def nmt(*args, cwd: Path):
    import os

    here = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(here)


@pytest.mark.parametrize("args, words", [
    (["--quantize", "int8", "--device", "cuda"], ["--quantize int8 runs on the CPU only", "--device cpu"]),
    (["--quantize", "fp8"], ["unknown quantization 'fp8': use int8"]),
    (["--threads", "0"], ["--threads must be at least 1, got 0"]),
])
def test_translate_option_errors_are_one_line(tmp_path, trained_run, args, words):
    (tmp_path / "in.txt").write_text("wa0\n", encoding="utf-8")
    result = nmt("translate", "-m", trained_run, "in.txt", *args, cwd=tmp_path)
    assert result.exit_code == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and all(word in line for word in words)


def test_translate_int8_with_threads(tmp_path, trained_run, pair):
    fp32, _ = pair
    lines = toy_lines(8)
    (tmp_path / "in.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    threads = torch.get_num_threads()
    try:
        result = nmt("translate", "-m", trained_run, "in.txt", "-o", "out.txt", "--quantize", "int8", "--threads", "1",
                     "--beam", "2", cwd=tmp_path)
        assert result.exit_code == 0, result.stderr
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    out = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    expected = [hyps[0].text for hyps in fp32.translate(lines, fp32.options(beam=2))]
    assert sum(a == b for a, b in zip(out, expected)) >= 6 and len(out) == len(lines)


def test_the_benchmark_writes_its_record(tmp_path, trained_run):
    lines = toy_lines(6)
    (tmp_path / "in.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (tmp_path / "ref.txt").write_text("".join(line.upper() + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "record.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark_quantize.py"), "--checkpoint", str(trained_run),
                    "--input", str(tmp_path / "in.txt"), "--ref", str(tmp_path / "ref.txt"), "--beam", "2",
                    "--threads", "1", "--repeats", "1", "--kernels", "--out", str(out)],
                   check=True, capture_output=True, timeout=300)
    record = json.loads(out.read_text())
    kernels = record["step_kernels"]["kernels"]
    assert record["step_kernels"]["rows"] == 2 * record["batch_size"]
    assert {"output layer", "decoder layer 0", "all of them"} <= set(kernels)
    assert all(v["fp32_ms"] > 0 and v["int8_ms"] > 0 and v["speedup"] > 0 for v in kernels.values())
    assert record["sentences"] == 6 and record["threads"] == 1 and record["beam"] == 2
    assert record["speedup"] == pytest.approx(record["int8_sentences_per_s"] / record["fp32_sentences_per_s"],
                                              rel=0.01)
    assert {"commit", "torch", "fp32_bleu", "int8_bleu", "bleu_lost", "identical_outputs"} <= set(record)
