"""The Python API: `from nmt import Translator`, typed results, options defaulted in one place."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from nmt.config import DecodeOptions
from nmt.data.batching import pad
from nmt.data.tokenizer import BOS, EOS
from nmt.errors import ConfigError
from tests.conftest import pair_batch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_translate_needs_no_arguments_and_returns_typed_results(trained_run):
    from nmt import Translation, Translator

    translator = Translator.load(trained_run, device="cpu")
    results = translator.translate(["wa0 wb1", "", "wc2"])
    assert len(results) == 3 and all(len(r) == translator.config.decode.n_best for r in results)
    best = results[0][0]
    assert isinstance(best, Translation) and isinstance(best.text, str) and isinstance(best.tokens, tuple)
    assert best.text == translator.tgt_tokenizer.decode([list(best.tokens)])[0]
    assert results[1] == [Translation("", 0.0, (), 0.0)]  # an empty line, an empty translation


def test_a_translation_scores_what_the_model_gives_its_tokens(trained_run):
    """The reported log-probability is the model's own, by teacher forcing its tokens and EOS."""
    from nmt import Translator

    translator = Translator.load(trained_run, device="cpu")
    options = translator.options(beam=3, n_best=3, length_penalty=1.0)
    line = "wa0 wb1 wc2"
    src_ids = translator.src_tokenizer.encode([line])[0]
    for hypothesis in translator.translate([line], options)[0]:
        tokens = list(hypothesis.tokens)
        batch = pair_batch(pad([src_ids]), torch.tensor([len(src_ids)]), torch.tensor([[BOS, *tokens]]),
                           torch.tensor([[*tokens, EOS]]))
        with torch.no_grad():
            log_prob = -float(translator.model(batch))
        assert hypothesis.log_prob == pytest.approx(log_prob, abs=1e-4)
        assert hypothesis.score == pytest.approx(log_prob / (len(tokens) + 1), abs=1e-4)


def test_options_come_from_the_checkpoint_and_are_checked(trained_run):
    from nmt import Translator

    translator = Translator.load(trained_run, device="cpu")
    saved = translator.config.decode
    assert translator.options() == saved and isinstance(saved, DecodeOptions)
    assert translator.options(beam=None, length_penalty=0.5) == dataclasses.replace(saved, length_penalty=0.5)
    assert translator.options(n_best=saved.beam + 2).beam == saved.beam + 2  # n-best above the beam widens it
    with pytest.raises(ConfigError, match="n_best 3 cannot exceed decode.beam 2"):
        translator.options(beam=2, n_best=3)
    with pytest.raises(ConfigError, match="unknown config key 'decode.bem'"):
        translator.options(bem=2)
    with pytest.raises(ConfigError, match="must be a whole number"):
        translator.options(beam=2.5)


def test_the_readme_python_example_runs(trained_run, capsys):
    section = README.read_text(encoding="utf-8").split("## From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert '"runs/quickstart/run"' in code
    exec(code.replace('"runs/quickstart/run"', repr(str(trained_run))), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 + 3  # the best translation, then the three of the n-best list


def test_samples_repeat_with_their_seed_and_n_best_lines_carry_token_scores(trained_run):
    from nmt import Translator
    from nmt.decode.translate import format_output

    translator = Translator.load(trained_run, device="cpu")
    lines = ["wa0 wb1", "wc2 wd3 we4", "wf5"]
    options = translator.options(sample=True, n_samples=4, n_best=4, seed=3, temperature=1.5)
    torch.manual_seed(99)  # the global random state plays no part
    first = translator.translate(lines, options)
    assert translator.translate(lines, options) == first and all(len(hyps) == 4 for hyps in first)
    assert translator.translate(lines, translator.options(sample=True, n_samples=4, n_best=4, seed=4,
                                                          temperature=1.5)) != first
    for hyps in first:
        for t in hyps:
            assert len(t.token_scores) == len(t.tokens) + 1 and sum(t.token_scores) == pytest.approx(t.log_prob, abs=1e-5)
    printed = format_output(first, 4).splitlines()
    index, text, score, per_token = printed[0].split(" ||| ")
    assert index == "0" and float(score) == pytest.approx(first[0][0].score, abs=1e-4)
    assert [float(s) for s in per_token.split()] == pytest.approx(first[0][0].token_scores, abs=1e-4)
    with pytest.raises(ConfigError, match="n_best 5 cannot exceed decode.n_samples 4"):
        translator.options(sample=True, n_samples=4, n_best=5)
    assert translator.options(sample=True, n_best=6).n_samples == 6  # as n_best widens the beam


def test_search_options_reach_the_search(trained_run):
    from nmt import Translator

    translator = Translator.load(trained_run, device="cpu")
    line = ["wa0 wb1 wc2 wd3"]
    [[long]] = translator.translate(line, translator.options(beam=2, min_len_b=7, max_len_a=3.0, max_len_b=10))
    assert len(long.tokens) >= 7
    [[short]] = translator.translate(line, translator.options(beam=2, max_len_a=0.0, max_len_b=3))
    assert len(short.tokens) <= 2
    [[plain]] = translator.translate(line, translator.options(beam=3))
    [[penalised]] = translator.translate(line, translator.options(beam=3, word_penalty=2.0))
    assert penalised.score == pytest.approx(plain.score - 2.0 * (len(plain.tokens) + 1), abs=1e-5) \
        or len(penalised.tokens) < len(plain.tokens)
    [[blocked]] = translator.translate(line, translator.options(beam=3, no_repeat_ngram=1))
    assert len(set(blocked.tokens)) == len(blocked.tokens)
