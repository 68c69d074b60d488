"""Language models (task: lm): the stream's windows, the carried state, weight drop, perplexity by
hand, preprocessing, and a resumed run that equals an uninterrupted one."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from nmt.config import config_from_dict, load_config
from nmt.data.tokenizer import EOS, PAD, UNK
from nmt.model.lm import LanguageModel, LMState
from nmt.tasks.lm import InMemoryLines, WindowSampler, stream_rows, token_stream, window_batch

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "far", "and", "<unk>"]


def write_lm_corpus(folder: Path, sizes=(200, 30, 30), seed: int = 0) -> dict[str, Path]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, size in zip(("train", "valid", "test"), sizes):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) for _ in range(size)]
        paths[split] = folder / f"{split}.txt"
        paths[split].write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return paths


def lm_config_dict(root: Path, **sections) -> dict:
    paths = {split: str(root / "text" / f"{split}.txt") for split in ("train", "valid", "test")}
    raw = {"task": "lm",
           "data": {**paths, "prepared": str(root / "prepared"), "units": "word"},
           "model": {"layers": 2, "hidden": 16, "embed": 16, "init_range": 0.1},
           "train": {"run_dir": str(root / "run"), "device": "cpu", "lr": 1.0, "epochs": 3, "batch_size": 4,
                     "bptt": 7, "max_steps": 12, "log_every": 4, "eval_every": 6, "save_every": 3,
                     "eval_bleu_sentences": 0, "eval_batch_size": 3}}
    for name, values in sections.items():
        raw[name].update(values)
    return raw


@pytest.fixture(scope="module")
def lm_workspace(tmp_path_factory) -> Path:
    from nmt.tasks import prepare_data

    root = tmp_path_factory.mktemp("lm")
    write_lm_corpus(root / "text")
    prepare_data(config_from_dict(lm_config_dict(root)))
    return root


def test_word_vocabulary_is_exactly_the_training_split(lm_workspace):
    from nmt.data.monolingual import Vocabulary

    vocab = Vocabulary(lm_workspace / "prepared" / "tgt.vocab")
    train_words = {w for line in (lm_workspace / "text" / "train.txt").read_text().split("\n") for w in line.split()}
    assert set(vocab.tokens[4:]) == train_words - {"<unk>"}  # the text's own <unk> is the unknown id
    assert vocab.encode(["the <unk> zebra cat"]) == [[vocab.ids["the"], UNK, UNK, vocab.ids["cat"]]]
    manifest = json.loads((lm_workspace / "prepared" / "manifest.json").read_text())
    assert manifest["task"] == "lm" and manifest["tgt_vocab_size"] == vocab.vocab_size


def test_characters_as_units(tmp_path):
    from nmt.data.monolingual import Vocabulary

    vocab = Vocabulary.build(["abba", "cab"], "char", tmp_path / "tgt.vocab")
    assert vocab.tokens[4:] == ["a", "b", "c"]  # most frequent first
    assert vocab.decode(vocab.encode(["cab", "bad"])) == ["cab", "ba"] or vocab.encode(["d"]) == [[UNK]]


@pytest.mark.parametrize("variable", [False, True])
def test_windows_cover_the_stream_exactly_once_per_epoch(variable):
    stream = np.arange(1000) + 4
    rows = stream_rows(stream, 6)  # 166 positions a row; the last 4 tokens left out
    sampler = WindowSampler(rows.shape[1], bptt=13, variable=variable, seed=3)
    for epoch in range(3):
        predicted = np.zeros_like(rows)
        for window in sampler.epoch(epoch):
            batch = window_batch(rows, int(window[0]), int(window[1]))
            start, length = int(window[0]), int(window[1])
            assert torch.equal(batch.tokens_out[:, :-1], batch.tokens_in[:, 1:])  # next-token targets
            predicted[:, start + 1:start + 1 + length] += 1
            assert float(batch.first) == (start == 0)
        assert (predicted[:, 1:] == 1).all() and (predicted[:, 0] == 0).all()
    if variable:
        assert len({len(sampler.epoch(e)) for e in range(3)}) > 1 or sampler.epoch(0) != sampler.epoch(1)


def tiny_lm(**options) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(**{"vocab_size": 12, "embed": 8, "hidden": 8, "layers": 2, **options})


def test_the_carried_state_changes_the_loss_and_no_gradient_crosses_a_window():
    model = tiny_lm().eval()
    rows = stream_rows(np.arange(200) % 8 + 4, 2)
    first, second = window_batch(rows, 0, 10), window_batch(rows, 10, 10)
    model(first)
    carried = model(second)
    model.carried.clear()
    reset = model(window_batch(rows, 10, 10).__class__(**{**second.__dict__, "first": torch.tensor(1.0)}))
    assert not torch.allclose(carried, reset)  # the state from the first window matters
    model.train()
    model.carried.clear()
    inputs = []  # what the stack reads in each window
    hook = model.rnn.register_forward_hook(lambda module, args, out: inputs.append(args[0]))
    model(first)
    loss = model(second)
    hook.remove()
    assert all(not t.requires_grad for t in model.carried[2])  # the carried state is detached
    # The second window's loss reaches its own inputs, and nothing of the first window's.
    own, earlier = torch.autograd.grad(loss, [inputs[1], inputs[0]], allow_unused=True)
    assert own is not None and earlier is None


def test_weight_drop_uses_one_mask_per_window():
    model = tiny_lm(weight_drop=0.5).train()
    rows = stream_rows(np.arange(100) % 8 + 4, 2)
    masks = []
    layer = model.rnn.layers[0]
    original = torch.func.functional_call

    def spy(module, weights, args):
        masks.append((weights["weight_hh_l0"] == 0).clone())
        return original(module, weights, args)

    torch.func.functional_call = spy
    try:
        model(window_batch(rows, 0, 20))
        model(window_batch(rows, 20, 20))
    finally:
        torch.func.functional_call = original
    assert len(masks) == 2 * model.layers  # one dropped matrix per layer per window, not per step
    assert not torch.equal(masks[0], masks[2]) and 0.3 < masks[0].float().mean() < 0.7
    assert layer.weight_hh_l0.shape == masks[0].shape


def test_a_smaller_last_layer_as_awd_lstm_has_it():
    """model.last_hidden: layers of 10, 10 and 6 (the tied embedding's size, so no projection); the
    state keeps 10 units a layer with the last layer's in its first 6 and zeros after; generation
    step by step equals a window's forward, carried state included."""
    model = tiny_lm(embed=6, hidden=10, layers=3, last_hidden=6, tie_embeddings=True).eval()
    assert model.project is None and model.rnn.layers[2].weight_hh_l0.shape == (24, 6)
    assert model.output.weight is model.embed.weight
    rows = stream_rows(np.arange(60) % 8 + 4, 2)
    first = window_batch(rows, 0, 5)
    model(first)
    h, c = model.carried[2]
    assert h.shape == (3, 2, 10) and not h[2, :, 6:].any() and not c[2, :, 6:].any() and h[2, :, :6].any()
    second = window_batch(rows, 5, 5)
    want = model(second).detach()  # from the carried state
    model.carried.clear()
    model(first)  # the same carried state again
    state = LMState(*[t.clone() for t in model.carried[2]])
    got = 0.0
    for t in range(5):
        logp, state = model.decode_step(second.tokens_in[:, t], state)
        got = got - logp.detach().gather(1, second.tokens_out[:, t:t + 1]).sum()
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    assert not state.h[2, :, 6:].any()
    with pytest.raises(ValueError, match="smaller last layer"):
        tiny_lm(hidden=10, last_hidden=6, residual=True)


@pytest.mark.parametrize("change, message", [
    ({"model": {"last_hidden": 20}}, "model.last_hidden' must be positive and at most model.hidden"),
    ({"model": {"last_hidden": 8, "residual": True}}, "cannot be combined with model.residual"),
    ({"task": "translation", "model": {"last_hidden": 8}}, "are for language models"),
])
def test_last_hidden_rules(tmp_path, change, message):
    from nmt.errors import ConfigError

    raw = lm_config_dict(tmp_path)
    for section, values in change.items():
        if isinstance(values, dict):
            raw[section].update(values)
        else:
            raw[section] = values
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_perplexity_of_a_hand_built_model_equals_the_hand_computed_value():
    """Zero weights leave only the output bias: p(EOS) = .5, p(a) = .25, p(b) = p(<unk>) = .125."""
    from nmt.tasks.lm import score_text

    model = LanguageModel(vocab_size=6, embed=4, hidden=4, layers=1)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.output.bias.copy_(torch.log(torch.tensor([1.0, 0.125, 1.0, 0.5, 0.25, 0.125])))

    class Words:
        def encode(self, lines):
            return [[{"a": 4, "b": 5}.get(w, UNK) for w in line.split()] for line in lines]

    config = config_from_dict({"task": "lm", "train": {"bptt": 2, "device": "cpu"}})
    result = score_text(model, Words(), ["a b", "a"], config, torch.device("cpu"), rows=1)
    # The stream EOS a b EOS a EOS predicts a, b, EOS, a, EOS.
    expected = -(math.log(0.25) + math.log(0.125) + math.log(0.5) + math.log(0.25) + math.log(0.5))
    assert result["tokens_scored"] == 5 and result["words"] == 5
    assert result["loss_sum"] == pytest.approx(expected, abs=1e-5)
    assert result["ppl_per_word"] == pytest.approx(math.exp(expected / 5), rel=1e-5)
    assert result["bits_per_character"] == pytest.approx(expected / math.log(2) / (3 + 1 + 1 + 1), rel=1e-5)


def test_stream_of_lines_puts_eos_between_and_before():
    data = InMemoryLines([[4, 5], [6]])
    assert token_stream(data).tolist() == [EOS, 4, 5, EOS, 6, EOS]
    grid = stream_rows(token_stream(data), 4, keep_tail=True)
    assert grid.tolist() == [[EOS, 4], [5, EOS], [6, EOS], [PAD, PAD]]


def test_a_resumed_lm_run_equals_an_uninterrupted_one(lm_workspace, tmp_path):
    from nmt.train.start import resume, train

    for name in ("text", "prepared"):
        (tmp_path / name).symlink_to(lm_workspace / name)
    options = dict(model={"dropout": 0.3, "variational_dropout": True, "weight_drop": 0.3, "word_dropout": 0.1,
                          "tie_embeddings": True},
                   train={"ar_alpha": 1.0, "tar_beta": 1.0, "averaging": "nt-asgd", "asgd_patience": 1,
                          "eval_every": 3, "max_steps": 14, "bptt_variable": True,
                          "threads": 1})  # not the idle cores, which differ between runs on a loaded machine
    quiet = open("/dev/null", "w")
    whole = lm_config_dict(tmp_path, **options)
    whole["train"]["run_dir"] = str(tmp_path / "whole")
    train(config_from_dict(whole), stream=quiet)
    parts = lm_config_dict(tmp_path, **options)
    parts["train"].update(run_dir=str(tmp_path / "parts"), max_steps=6)  # at an evaluation: no extra one
    train(config_from_dict(parts), stream=quiet)
    resume(tmp_path / "parts", ["train.max_steps=14"], stream=quiet)
    a = load_file(str(tmp_path / "whole" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "parts" / "last" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    state = json.loads((tmp_path / "whole" / "last" / "trainer.json").read_text())
    assert state["average_count"] > 0  # the averaging started, and survived the resume too


def nmt_env() -> dict:
    """The environment for `python -m nmt` in a subprocess: this checkout importable even where the
    package is not installed (the GPU machine runs the tests from a copy of the tree)."""
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def test_train_then_score_through_the_command_line(tmp_path):
    write_lm_corpus(tmp_path / "text")
    raw = lm_config_dict(tmp_path, train={"max_steps": 20, "eval_every": 10, "save_every": 10})
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(raw))
    run = lambda *args: subprocess.run([sys.executable, "-m", "nmt", *args], cwd=tmp_path,  # noqa: E731
                                       capture_output=True, text=True, timeout=300, env=nmt_env())
    for args in (("preprocess", "--config", "lm.yaml"), ("train", "--config", "lm.yaml")):
        result = run(*args)
        assert result.returncode == 0, result.stderr
    result = run("perplexity", "-m", "run", "text/test.txt", "--json")
    assert result.returncode == 0, result.stderr
    scored = json.loads(result.stdout)
    assert 1 < scored["ppl_per_word"] < 12  # better than uniform over the 12 ids, far from perfect
    result = run("perplexity", "-m", "run", "missing.txt")
    assert result.returncode == 2 and result.stderr.startswith("error: file missing.txt not found")


def test_shipped_lm_configs_load():
    for name in ("ptb-zaremba-large", "ptb-zaremba-large-tied", "ptb-awd", "wikitext2-awd", "masnavi-char"):
        assert load_config(name).task == "lm"


@pytest.fixture(scope="module")
def trained_lm(lm_workspace, tmp_path_factory) -> Path:
    from nmt.train.start import train

    root = tmp_path_factory.mktemp("trained-lm")
    for name in ("text", "prepared"):
        (root / name).symlink_to(lm_workspace / name)
    return train(config_from_dict(lm_config_dict(root, train={"max_steps": 30, "eval_every": 15})),
                 stream=open("/dev/null", "w"))


def test_sampling_is_seeded_and_a_cold_temperature_is_greedy(trained_lm):
    from nmt.checkpoint import load_model
    from nmt.tasks.lm import sample_text

    loaded = load_model(trained_lm, "cpu")
    base = loaded.checkpoint.config.decode.override(max_len_a=0.0, max_len_b=12)
    sampled = lambda **o: sample_text(loaded, ["the cat", ""], base.override(sample=True, **o))  # noqa: E731
    assert sampled(seed=5, n_samples=3, n_best=3) == sampled(seed=5, n_samples=3, n_best=3)
    assert sampled(seed=5, n_samples=3, n_best=3) != sampled(seed=6, n_samples=3, n_best=3)
    greedy = sample_text(loaded, ["the cat", ""], base.override(beam=1))
    assert sampled(temperature=0.0) == greedy
    assert sampled(temperature=1e-4, seed=9) == greedy  # as the temperature goes to 0, sampling becomes greedy
    words = set(WORDS) - {"<unk>"}
    for texts in sampled(seed=3, n_samples=4, n_best=4, top_k=1):
        assert all(set(text.split()) <= words | {"<unk>"} for text in texts)


def test_sample_through_the_command_line(trained_lm, tmp_path):
    result = subprocess.run([sys.executable, "-m", "nmt", "sample", "-m", str(trained_lm), "--prompt", "the dog",
                             "-n", "3", "--seed", "4", "--max-len", "8"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env=nmt_env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("the dog") for line in lines)
    assert all(len(line.split()) <= 2 + 7 for line in lines)  # at most max-len tokens, EOS one of them
