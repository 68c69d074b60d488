"""Property tests (hypothesis): invariants that must hold for any input, not only the examples we thought of.

  - the tokenizer gives back the text it was given (after the toolkit's own line cleaning);
  - the bucketing samplers use every example exactly once per epoch, keep their batches within
    the size limits, and rebuild the same epoch from the same seed (what resume relies on);
  - translate writes exactly one line per input line, in input order, whatever the lines hold.
Examples are few and there is no deadline, so the suite stays fast and steady on a CI machine.
"""

from __future__ import annotations

import random
import unicodedata

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmt.data.samplers import BucketSampler, StaticShapeSampler
from nmt.data.corpus import clean_line, split_lines
from nmt.data.tokenizer import Tokenizer, train_sentencepiece
from tests.conftest import WORDS

FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- tokenizer round trip --------------------------------------------------------------------------

# Letters of several scripts, digits and punctuation: all unchanged by SentencePiece's NFKC
# normalisation, so a round trip must give back exactly the (cleaned) text.
ALPHABET = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()-%&/"
            "éèêàâçëïîôûüöäßñÉÀÇ" "αβγδεζηθλμπσω" "абвгдежзийклмнопрст" "的一是不了人我在有他" "😀🎉")
# What cleaning removes or turns into a space: it may appear anywhere in the input.
NOISE = " \t\r\x00\x07\x1b\x7f\x85\x9b\xa0\u2028\u3000\ufeff\x0b\x0c"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    rng = random.Random(5)
    words = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 7))) for _ in range(3000)]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(3000)]
    lines.append(" ".join(ALPHABET))  # every character at least once
    path = tmp_path_factory.mktemp("spm") / "spm.model"
    train_sentencepiece(lines, path, vocab_size=400)
    return Tokenizer(path)


@FEW
@given(text=st.text(alphabet=ALPHABET + NOISE, max_size=80))
def test_tokenizer_round_trip(tokenizer, text):
    line = clean_line(text)
    ids = tokenizer.encode([line])[0]
    assert all(3 < i < tokenizer.vocab_size for i in ids)  # no special ids, no unknown pieces
    assert tokenizer.decode([ids]) == [line]


@FEW
@given(text=st.text(max_size=80))
def test_tokenizer_takes_any_text(tokenizer, text):
    """Unseen scripts, surrogate-free noise, lone combining marks: encoding never fails, decoding gives one line."""
    ids = tokenizer.encode([clean_line(text)])[0]
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    (decoded,) = tokenizer.decode([ids])
    assert "\n" not in decoded


@FEW
@given(text=st.text(max_size=200))
def test_clean_line_is_idempotent_and_single_line(text):
    for line in split_lines(text):
        cleaned = clean_line(line)
        assert clean_line(cleaned) == cleaned
        assert cleaned == cleaned.strip() and "  " not in cleaned
        assert not any(ch.isspace() and ch != " " for ch in cleaned)
        assert "\ufeff" not in cleaned and not any(unicodedata.category(ch) == "Cc" for ch in cleaned)


# --- batching -----------------------------------------------------------------------------------


@st.composite
def corpora(draw):
    n = draw(st.integers(1, 300))
    lengths = st.lists(st.integers(1, 120), min_size=n, max_size=n)
    return np.array(draw(lengths)), np.array(draw(lengths))


@SOME
@given(corpus=corpora(), batch_size=st.integers(1, 64), max_tokens=st.one_of(st.none(), st.integers(1, 3000)),
       pool=st.integers(1, 20), seed=st.integers(0, 2**31 - 1), epoch=st.integers(0, 50))
def test_bucket_sampler_invariants(corpus, batch_size, max_tokens, pool, seed, epoch):
    src, tgt = corpus
    sampler = BucketSampler(src, tgt, batch_size=batch_size, max_tokens=max_tokens, pool=pool, seed=seed)
    batches = sampler.epoch(epoch)

    assert all(len(b) > 0 for b in batches)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(src)))  # every example exactly once
    for b in batches:
        if max_tokens is None:
            assert len(b) <= batch_size
        elif len(b) > 1:  # a single sentence longer than max_tokens still forms its own batch
            assert len(b) * max(int(src[b].max()), int(tgt[b].max()) + 1) <= max_tokens
    # The same seed and epoch give the same batches (resume rebuilds the epoch this way).
    again = BucketSampler(src, tgt, batch_size=batch_size, max_tokens=max_tokens, pool=pool, seed=seed).epoch(epoch)
    assert len(again) == len(batches) and all(np.array_equal(a, b) for a, b in zip(again, batches))


@SOME
@given(corpus=corpora(), batch_size=st.integers(1, 64), max_tokens=st.one_of(st.none(), st.integers(1, 3000)),
       tgt_multiple=st.integers(1, 8), seed=st.integers(0, 2**31 - 1), epoch=st.integers(0, 50))
def test_static_shape_sampler_invariants(corpus, batch_size, max_tokens, tgt_multiple, seed, epoch):
    src, tgt = corpus
    sampler = StaticShapeSampler(src, tgt, batch_size=batch_size, max_tokens=max_tokens, tgt_multiple=tgt_multiple,
                                 seed=seed)
    batches = sampler.epoch(epoch)

    assert sorted(np.concatenate(batches).tolist()) == list(range(len(src)))
    for b in batches:
        rows, length, width = sampler.shape(b)
        assert len(set(src[b].tolist())) == 1 and length == int(src[b[0]])  # one source length per batch
        assert 0 < len(b) <= rows and width % tgt_multiple == 0 and width >= int(tgt[b].max()) + 1
        full = sampler.rows(length)
        assert rows <= full and (rows == full or rows % 8 == 0)
        if len(b) < rows:  # a source length's last batch: no smaller allowed row count holds it
            smaller = -(-(rows // 2) // 8) * 8
            assert smaller < len(b) or smaller >= rows
    again = StaticShapeSampler(src, tgt, batch_size=batch_size, max_tokens=max_tokens, tgt_multiple=tgt_multiple,
                               seed=seed).epoch(epoch)
    assert all(np.array_equal(a, b) for a, b in zip(again, batches))


# --- translate: one line out per line in --------------------------------------------------------


@pytest.fixture(scope="module")
def translator(trained_run):
    from nmt.decode.translate import Translator

    return Translator.load(trained_run, device="cpu")


@pytest.fixture(scope="module")
def alone(translator):
    """Each line translated on its own (memoised): the reference for input order."""
    cache = {}

    def translate(line: str, beam: int) -> str:
        if (line, beam) not in cache:
            cache[line, beam] = translator.translate([line], translator.options(beam=beam, batch_size=1))[0][0].text
        return cache[line, beam]

    return translate


toy_lines = st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join)
blank_lines = st.text(alphabet=" \t\r\x00\x0b\x0c\u2028\xa0\ufeff", max_size=6)
any_lines = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=30)


@FEW
@given(lines=st.lists(st.one_of(toy_lines, blank_lines, any_lines), max_size=8),
       beam=st.sampled_from([1, 2]), batch_size=st.integers(1, 4))
def test_translate_gives_one_line_per_line_in_input_order(translator, alone, tmp_path_factory, lines, beam, batch_size):
    from nmt.decode.translate import format_output, read_input

    path = tmp_path_factory.mktemp("lines", numbered=True) / "in.txt"
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    read = read_input(path)
    assert len(read) == len(lines)

    results = translator.translate(read, translator.options(beam=beam, batch_size=batch_size))
    assert len(results) == len(lines)
    output = format_output(results, n_best=1)
    assert output.count("\n") == len(lines) and (output == "" or output.endswith("\n"))
    for line, text in zip(read, output.split("\n")):
        if line == "":
            assert text == ""
        assert text == alone(line, beam), f"line {line!r} translated differently in a batch: input order lost?"
