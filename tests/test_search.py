"""Beam search and greedy search: hand-derived expectations, invariants, and a reference."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from nmt.data.tokenizer import BOS, EOS
from nmt.decode.beam import best_extensions, first_non_eos, only_eos_at_limit
from nmt.decode.search import beam_search, greedy_search, length_normalize
from nmt.model import Seq2Seq

A, B, C = 4, 5, 6
VOCAB = 7


@dataclass
class ScriptedState:
    prefixes: list[tuple[int, ...]]

    def select(self, indices):
        return ScriptedState([self.prefixes[i] for i in indices.tolist()])

    def reorder(self, indices, sentences=None):  # no attention memory: any rows, as select
        return self.select(indices)


class ScriptedDecoder:
    """A 'model' whose next-token probabilities are written by hand, keyed by the prefix so far.

    A prefix missing from the table ends the sentence with certainty.
    """

    def __init__(self, table):
        self.table = table

    def encode(self, src, src_lens):
        return ScriptedState([() for _ in range(src.size(0))])

    def decode_step(self, prev, state):
        prefixes = [p if t == BOS else p + (t,) for p, t in zip(state.prefixes, prev.tolist())]
        log_probs = torch.full((len(prefixes), VOCAB), -math.inf)
        for row, prefix in enumerate(prefixes):
            for token, p in self.table.get(prefix, {EOS: 1.0}).items():
                log_probs[row, token] = math.log(p)
        return log_probs, ScriptedState(prefixes)


# Greedy follows A (0.6) -> C (0.45) -> A (0.7) -> EOS: probability 0.189.
# Beam 2 keeps B (0.4) alive, and B EOS (0.4 * 0.9 = 0.36) wins.
TABLE = {
    (): {A: 0.6, B: 0.4},
    (A,): {C: 0.45, A: 0.35, EOS: 0.2},
    (B,): {EOS: 0.9, C: 0.1},
    (A, C): {A: 0.7, EOS: 0.3},
    (A, A): {EOS: 0.6, B: 0.4},
    (A, C, A): {EOS: 1.0},
}
ONE_SOURCE = (torch.tensor([[A]]), torch.tensor([1]))


def test_scripted_greedy_follows_the_locally_best_token():
    [found] = greedy_search(ScriptedDecoder(TABLE), *ONE_SOURCE, max_len_a=0, max_len_b=10)
    assert found.tokens == [A, C, A]
    assert found.log_prob == pytest.approx(math.log(0.6 * 0.45 * 0.7), abs=1e-6)  # A, then C, then A-EOS


def test_scripted_beam_two_finds_the_better_sentence_with_hand_derived_scores():
    # Step 1: A .6, B .4 alive. Step 2: candidates B-EOS .36, AC .27, AA .21, A-EOS .12:
    #   B-EOS (rank 0) finishes; AC and AA continue.
    # Step 3: ACA .189, AA-EOS .126, AAB .084, AC-EOS .081: AA-EOS (rank 1) finishes -> 2 done.
    [hyps] = beam_search(ScriptedDecoder(TABLE), *ONE_SOURCE, beam=2, max_len_a=0, max_len_b=10, n_best=2)
    assert [h.tokens for h in hyps] == [[B], [A, A]]
    assert hyps[0].log_prob == pytest.approx(math.log(0.36), abs=1e-6)
    assert hyps[1].log_prob == pytest.approx(math.log(0.6 * 0.35 * 0.6), abs=1e-6)


def test_scripted_beam_one_equals_greedy():
    [hyps] = beam_search(ScriptedDecoder(TABLE), *ONE_SOURCE, beam=1, max_len_a=0, max_len_b=10)
    assert hyps[0].tokens == [A, C, A]
    assert hyps[0].log_prob == pytest.approx(math.log(0.6 * 0.45 * 0.7), abs=1e-6)


def test_length_penalty_divides_by_length_with_eos():
    [hyps] = beam_search(ScriptedDecoder(TABLE), *ONE_SOURCE, beam=2, max_len_a=0, max_len_b=10,
                         length_penalty=1.0, n_best=2)
    assert hyps[0].rank_score == pytest.approx(math.log(0.36) / 2, abs=1e-6)
    assert hyps[1].rank_score == pytest.approx(math.log(0.126) / 3, abs=1e-6)


def test_length_limit_forces_eos():
    # With room for 2 tokens (EOS included) greedy must stop after one real token.
    [found] = greedy_search(ScriptedDecoder(TABLE), *ONE_SOURCE, max_len_a=0, max_len_b=2)
    assert found.tokens == [A] and found.log_prob == pytest.approx(math.log(0.12), abs=1e-6)
    [hyps] = beam_search(ScriptedDecoder(TABLE), *ONE_SOURCE, beam=2, max_len_a=0, max_len_b=2, n_best=2)
    # B EOS (.36) finishes on its own at step 2; A is forced to end: A EOS = .6 * .2.
    assert [h.tokens for h in hyps] == [[B], [A]]
    assert hyps[1].log_prob == pytest.approx(math.log(0.12), abs=1e-6)


def test_top_candidates_and_first_non_eos_helpers():
    log_probs = torch.tensor([[[0.0, -1.0, -5.0, -0.5], [-0.5, -3.25, -4.25, -6.25]]])  # (1, K=2, V=4)
    scores = torch.tensor([[0.0, 0.25]])  # each hypothesis's score so far
    best, beams, tokens = best_extensions(log_probs, scores)  # the 2K best of scores + log_probs
    assert best.tolist() == [[0.0, -0.25, -0.5, -1.0]]
    assert beams.tolist() == [[0, 1, 0, 0]] and tokens.tolist() == [[0, 0, 3, 1]]
    # Out of room, the candidates that may finish are the group's hypotheses ending, best first.
    first = (best[:, :2], beams[:, :2], tokens[:, :2], torch.tensor([[0.0, -1.0]]))
    at_limit = torch.tensor([True])
    forced = only_eos_at_limit(log_probs, scores, at_limit, first)
    assert forced[0].tolist() == [[-0.5, -6.0]]  # + EOS (token 3): 0 - 0.5, 0.25 - 6.25
    assert forced[1].tolist() == [[0, 1]] and forced[2].tolist() == [[EOS, EOS]]
    assert forced[3].tolist() == [[-0.5, -6.25]]  # EOS's own log-probability in each row
    kept = only_eos_at_limit(log_probs, scores, ~at_limit, first)
    assert all(torch.equal(a, b) for a, b in zip(kept, first))
    assert first_non_eos(torch.tensor([[EOS, 7, EOS, 9]]), beam=2).tolist() == [[1, 3]]
    assert length_normalize(-6.0, 3, 0.0) == -6.0 and length_normalize(-6.0, 3, 1.0) == -2.0


# --- small random models -------------------------------------------------------------------

def random_model(seed: int, vocab: int = 11, **options) -> Seq2Seq:
    """A small Seq2Seq; `options` are its later switches (cell="gru", attention="general", ...)."""
    torch.manual_seed(seed)
    # A wide init makes the distributions peaked, so the search makes real choices.
    options = {"embed": 6, **options}  # (a tied model needs embed == hidden: embed=8)
    return Seq2Seq(src_vocab_size=vocab, tgt_vocab_size=vocab, hidden=8, layers=2, init_range=1.0, **options).eval()


def random_batch(seed: int, vocab: int = 11, size: int = 5):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, 7, (size,), generator=g)
    src = torch.zeros(size, int(lens.max()), dtype=torch.long)
    for i, n in enumerate(lens.tolist()):
        src[i, :n] = torch.randint(4, vocab, (n,), generator=g)
    return src, lens


@pytest.mark.parametrize("seed", range(5))
def test_beam_one_equals_greedy_on_random_models(seed):
    model, (src, lens) = random_model(seed), random_batch(seed)
    greedy = greedy_search(model, src, lens, max_len_a=1.0, max_len_b=3, length_penalty=0.6)
    beam = beam_search(model, src, lens, beam=1, max_len_a=1.0, max_len_b=3, length_penalty=0.6)
    assert [h[0].tokens for h in beam] == [h.tokens for h in greedy]
    # (beam search drops finished sentences from its batch: other matrix shapes, other rounding)
    assert [h[0].rank_score for h in beam] == pytest.approx([h.rank_score for h in greedy], abs=1e-5)
    assert [h[0].log_prob for h in beam] == pytest.approx([h.log_prob for h in greedy], abs=1e-5)


def reference_beam(model, src_tokens: list[int], *, beam: int, max_len: int, alpha: float):
    """One sentence, one hypothesis at a time, candidates in a plain sorted list."""
    state = model.encode(torch.tensor([src_tokens]), torch.tensor([len(src_tokens)]))
    alive = [([], torch.tensor(0.0), state)]
    finished = []
    for t in range(max_len):
        candidates = []
        for tokens, score, hyp_state in alive:
            prev = torch.tensor([tokens[-1] if tokens else BOS])
            log_probs, next_state = model.decode_step(prev, hyp_state)
            allowed = [EOS] if t + 1 >= max_len else range(log_probs.size(1))
            candidates += [(score + log_probs[0, token], tokens + [token], next_state) for token in allowed]
        candidates.sort(key=lambda c: -float(c[0]))
        alive = []
        for rank, (score, tokens, next_state) in enumerate(candidates[:2 * beam]):
            if tokens[-1] == EOS:
                if rank < beam and len(finished) < beam:
                    finished.append((length_normalize(float(score), len(tokens), alpha), tokens[:-1], float(score)))
            elif len(alive) < beam:
                alive.append((tokens, score, next_state))
        if len(finished) >= beam:
            break
    return sorted(finished, key=lambda f: -f[0])


@pytest.mark.parametrize("seed,beam,alpha", [(0, 2, 0.0), (1, 3, 0.0), (2, 4, 1.0), (3, 5, 0.6), (4, 3, 1.0)])
def test_batched_beam_agrees_with_unbatched_reference(seed, beam, alpha):
    model, (src, lens) = random_model(seed), random_batch(seed + 100)
    with torch.no_grad():
        batched = beam_search(model, src, lens, beam=beam, max_len_a=1.0, max_len_b=2, length_penalty=alpha,
                              n_best=beam)
        for row, hyps in enumerate(batched):
            n = int(lens[row])
            expected = reference_beam(model, src[row, :n].tolist(), beam=beam, max_len=n + 2, alpha=alpha)
            assert [h.tokens for h in hyps] == [e[1] for e in expected]
            assert [h.log_prob for h in hyps] == pytest.approx([e[2] for e in expected], abs=1e-5)


# --- the search features, on hand-written tables -------------------------------------------------

def test_hypotheses_carry_their_per_token_scores():
    [hyps] = beam_search(ScriptedDecoder(TABLE), *ONE_SOURCE, beam=2, max_len_a=0, max_len_b=10, n_best=2)
    assert hyps[0].token_scores == pytest.approx([math.log(0.4), math.log(0.9)], abs=1e-6)  # B, EOS
    assert hyps[1].token_scores == pytest.approx([math.log(0.6), math.log(0.35), math.log(0.6)], abs=1e-6)
    for h in hyps:
        assert sum(h.token_scores) == pytest.approx(h.log_prob, abs=1e-6)
    [found] = greedy_search(ScriptedDecoder(TABLE), *ONE_SOURCE, max_len_a=0, max_len_b=10)
    assert found.token_scores == pytest.approx([math.log(p) for p in (0.6, 0.45, 0.7, 1.0)], abs=1e-6)


@pytest.mark.parametrize("word_penalty, first", [(-2.0, [A, A]), (1.0, [B])])
def test_word_penalty_is_subtracted_once_per_token_with_eos(word_penalty, first):
    # Beam 2 finishes B-EOS (2 tokens, .36) and A-A-EOS (3 tokens, .126); a penalty below 0 is a
    # bonus per token: log .36 + 4 = 2.978 < log .126 + 6 = 3.929, so the longer one wins.
    [hyps] = beam_search(ScriptedDecoder(TABLE), *ONE_SOURCE, beam=2, max_len_a=0, max_len_b=10, n_best=2,
                         word_penalty=word_penalty)
    scores = {tuple(h.tokens): h.rank_score for h in hyps}
    assert scores == pytest.approx({(B,): math.log(0.36) - 2 * word_penalty,
                                    (A, A): math.log(0.126) - 3 * word_penalty}, abs=1e-6)
    assert hyps[0].tokens == first
    [alpha] = beam_search(ScriptedDecoder(TABLE), *ONE_SOURCE, beam=2, max_len_a=0, max_len_b=10, n_best=2,
                          word_penalty=0.5, length_penalty=1.0)
    assert alpha[0].rank_score == pytest.approx(math.log(0.36) / 2 - 0.5 * 2, abs=1e-6)  # normalised, then penalised


@pytest.mark.parametrize("minimum", [dict(min_len_b=2), dict(min_len_a=2.0)], ids=["absolute", "ratio"])
def test_minimum_length_forbids_eos_before_it(minimum):
    # No EOS before 2 tokens. Step 2: A-C .27, A-A .21, B-C .04 (the EOS of A and B forbidden).
    # Step 3: A-C-A .189, A-A-EOS .126 (finishes), A-A-B .084, A-C-EOS .081. Step 4: both live
    # ones must end (missing prefixes): A-C-A-EOS .189 finishes second, A-A-B-EOS is the third.
    [hyps] = beam_search(ScriptedDecoder(TABLE), *ONE_SOURCE, beam=2, max_len_a=0, max_len_b=10, n_best=2,
                         **minimum)  # the source has 1 token: 2.0 * 1 = 2 as well
    assert [h.tokens for h in hyps] == [[A, C, A], [A, A]]
    assert [h.log_prob for h in hyps] == pytest.approx([math.log(0.189), math.log(0.126)], abs=1e-6)
    eos_first = {(): {EOS: 0.5, A: 0.3, B: 0.2}}
    [found] = greedy_search(ScriptedDecoder(eos_first), *ONE_SOURCE, max_len_a=0, max_len_b=10)
    assert found.tokens == [] and found.log_prob == pytest.approx(math.log(0.5))
    [found] = greedy_search(ScriptedDecoder(eos_first), *ONE_SOURCE, max_len_a=0, max_len_b=10, min_len_b=1)
    assert found.tokens == [A] and found.log_prob == pytest.approx(math.log(0.3))  # then (A,) ends surely


def test_maximum_length_wins_over_the_minimum():
    [found] = greedy_search(ScriptedDecoder(TABLE), *ONE_SOURCE, max_len_a=0, max_len_b=2, min_len_b=5)
    assert found.tokens == [A] and found.log_prob == pytest.approx(math.log(0.12), abs=1e-6)


# Greedy repeats itself: A B A B EOS (.9 * .8 * .7 * .6 = .3024).
REPEATS = {
    (): {A: 0.9, B: 0.1},
    (A,): {B: 0.8, EOS: 0.2},
    (A, B): {A: 0.7, EOS: 0.3},
    (A, B, A): {B: 0.6, C: 0.3, EOS: 0.1},
}


@pytest.mark.parametrize("n, tokens, probability", [
    (0, [A, B, A, B], 0.9 * 0.8 * 0.7 * 0.6),
    (3, [A, B, A, B], 0.9 * 0.8 * 0.7 * 0.6),  # B-A-B is a new trigram
    (2, [A, B, A, C], 0.9 * 0.8 * 0.7 * 0.3),  # A-B again is blocked: C instead
    (1, [A, B], 0.9 * 0.8 * 0.3),  # A again is blocked: EOS instead
])
def test_no_repeat_ngram_blocks_an_ngram_the_hypothesis_holds(n, tokens, probability):
    for search in (greedy_search, lambda *a, **k: beam_search(*a, beam=1, **k)[0]):
        [found] = search(ScriptedDecoder(REPEATS), *ONE_SOURCE, max_len_a=0, max_len_b=10, no_repeat_ngram=n)
        found = found[0] if isinstance(found, list) else found
        assert found.tokens == tokens and found.log_prob == pytest.approx(math.log(probability), abs=1e-6)


def test_repeated_ngrams_helpers():
    from nmt.decode.beam import block_repeats, repeated_ngrams

    history = torch.tensor([[A, B, A, C, A, 0, 0], [A, A, B, A, A, 0, 0]])  # 5 tokens so far, then room

    def banned(t, n):
        tokens, repeats = repeated_ngrams(history, torch.tensor(t), n)
        return [sorted(set(row[hit].tolist())) for row, hit in zip(tokens, repeats)]

    assert banned(5, 2) == [[B, C], [A, B]]  # after A: row 0 holds A-B and A-C, row 1 A-A and A-B
    assert banned(5, 3) == [[], [B]]  # after C-A nothing; after A-A, A-A-B exists
    assert banned(1, 2) == [[], []]  # one token: no bigram yet
    log_probs = block_repeats(torch.zeros(2, VOCAB), history, torch.tensor(5), 2)
    assert (log_probs == -math.inf).nonzero().tolist() == [[0, B], [0, C], [1, A], [1, B]]


def test_search_stops_at_the_first_check_after_every_sentence_is_done(monkeypatch):
    from nmt.decode import beam as loop
    from nmt.decode.search import Counts

    for check_every, steps in ((1, 3), (2, 4), (8, 8)):  # beam 2 is done after step 3 of at most 10
        monkeypatch.setattr(loop, "CHECK_EVERY", check_every)
        counts = Counts()
        [hyps] = beam_search(ScriptedDecoder(TABLE), *ONE_SOURCE, beam=2, max_len_a=0, max_len_b=10, n_best=2,
                             counts=counts)
        assert [h.tokens for h in hyps] == [[B], [A, A]] and counts.steps == steps and counts.row_steps == 2 * steps
        assert counts.live_row_steps == 2 * 3  # done after its third step: the rest waited for the check


@pytest.mark.parametrize("beam", [1, 3])
def test_live_row_steps_count_each_sentence_until_it_is_done(monkeypatch, beam):
    """K rows per sentence for each step until its K-th hypothesis finished or its length limit:
    fewer than the rows in the batch, which keeps done sentences until a check drops them."""
    from nmt.decode import beam as loop
    from nmt.decode.search import Counts

    monkeypatch.setattr(loop, "CHECK_EVERY", 4)
    model, (src, lens) = random_model(7), random_batch(8, size=9)
    counts = Counts()
    found = beam_search(model, src, lens, beam=beam, n_best=beam, max_len_a=1.0, max_len_b=4, counts=counts)
    limits = (lens * 1.0 + 4).long()
    expected = beam * sum(min(max(len(h.tokens) for h in hyps) + 1, int(limit)) for hyps, limit in zip(found, limits))
    assert counts.live_row_steps == expected < counts.row_steps


def test_a_sentence_whose_hypotheses_all_die_gets_an_empty_one():
    # Only EOS is possible after A, and EOS is forbidden for 3 tokens: every hypothesis dies.
    [found] = greedy_search(ScriptedDecoder({(): {A: 1.0}}), *ONE_SOURCE, max_len_a=0, max_len_b=10, min_len_b=3)
    assert found.tokens == [] and found.log_prob == -math.inf


def test_batches_searched_in_turn_find_what_one_search_per_batch_finds():
    """search_batches queues each batch before reading the one before: the same results, in order,
    with one options for all or one per batch."""
    from nmt.config import DecodeOptions
    from nmt.decode.search import search, search_batches
    model = random_model(3)
    batches = [random_batch(seed, size=4) for seed in (1, 2, 3)]
    options = DecodeOptions(beam=2, n_best=2, max_len_a=1.0, max_len_b=4)
    per_batch = [options, options.override(beam=1, n_best=1), options.override(length_penalty=1.0)]
    for given in (options, per_batch):
        expected = [search(model, src, lens, given if given is options else given[i])
                    for i, (src, lens) in enumerate(batches)]
        found = list(search_batches(model, iter(batches), given))
        assert [[[(h.tokens, h.log_prob) for h in s] for s in b] for b in found] == \
            [[[(h.tokens, h.log_prob) for h in s] for s in b] for b in expected]
    assert list(search_batches(model, iter([]), options)) == []


def test_picks_ranked_by_bf16_logits_find_the_log_probabilities_own_best():
    """Under autocast the search ranks each row's tokens in the bf16 logits (beam.ranking_of): the
    candidates' scores are those that ranking the float32 log-probabilities gives, ties included."""
    from nmt.decode.beam import most_likely, ranking_of
    g = torch.Generator().manual_seed(0)
    for k in (1, 3, 5):
        logits = (torch.randn(4, k, 50, generator=g) * 3).to(torch.bfloat16)
        logits[0, 0, :10] = logits[0, 0, 10]  # ties at the top of one row
        logits[1, :, 7] = -math.inf  # a token not allowed
        log_probs = torch.log_softmax(logits, dim=-1, dtype=torch.float32)
        scores = torch.randn(4, k, generator=g)
        assert ranking_of(logits) is logits and ranking_of(log_probs) is None
        plain, ranked = best_extensions(log_probs, scores), best_extensions(log_probs, scores, logits)
        assert torch.equal(ranked[0], plain[0])  # the same 2K best scores, in order
        rows = ranked[1] + k * torch.arange(4).unsqueeze(1)
        assert torch.equal(ranked[0], scores.view(-1)[rows] + log_probs.view(4 * k, -1)[rows, ranked[2]])
        if k == 1:
            assert torch.equal(most_likely(log_probs, scores, logits), most_likely(log_probs, scores))


def test_allowed_masks_a_ranking_where_it_masks_the_log_probabilities():
    """The bf16 ranking beside the log-probabilities gets -inf at the same places: EOS too early,
    and tokens that would repeat an n-gram."""
    from nmt.decode.beam import allowed, start
    g = torch.Generator().manual_seed(3)
    n, k, vocab, width = 3, 2, 12, 8
    history = torch.randint(4, 7, (n * k, width), generator=g)  # few tokens: repeats are likely
    beam = start(None, 1, torch.tensor([6, 0, 6]), torch.tensor([8, 8, 6]), width)  # group 0: EOS too early
    beam.history, t = history, torch.tensor(5)
    logits = torch.randn(n, k, vocab, generator=g).to(torch.bfloat16)
    log_probs = torch.log_softmax(logits, dim=-1, dtype=torch.float32)
    allowed(log_probs, t, beam, 2, also=(logits,))
    assert torch.isneginf(log_probs[0, :, EOS]).all() and not torch.isneginf(log_probs[1:, :, EOS]).any()
    assert torch.isneginf(log_probs[1:]).any()  # some repeats blocked
    assert torch.equal(torch.isneginf(logits), torch.isneginf(log_probs))


def test_collect_ranks_finished_slots_best_first_with_empty_slots_last(recwarn):
    """collect's ranking, by hand: log_prob / (length + 1)**alpha - word_penalty * (length + 1);
    equal scores keep the order they finished in; empty slots (length -1) are never returned, and
    cost no warning under length normalisation; a sentence with none gets one empty hypothesis."""
    from nmt.decode.beam import Finished
    from nmt.decode.search import collect
    finished = Finished.empty(2, 3, 5, "cpu")  # 2 sentences, K = 3 slots each (+ the sink)
    finished.length[0, :3] = torch.tensor([1, -1, 3])  # slot 1 empty
    finished.log_prob[0, :3] = torch.tensor([-2.0, 0.0, -4.0])
    finished.tokens[0, 0, :1], finished.tokens[0, 2, :3] = torch.tensor([7]), torch.tensor([8, 9, 10])
    finished.token_scores[0, 2, :4] = torch.tensor([-1.0, -1.0, -1.0, -1.0])
    [first, second] = collect(finished, groups_per_sentence=1, n_best=3, length_penalty=1.0, word_penalty=0.5)
    # slot 0: -2 / 2 - 0.5 * 2 = -2; slot 2: -4 / 4 - 0.5 * 4 = -3
    assert [(h.tokens, h.rank_score, h.log_prob) for h in first] == [([7], -2.0, -2.0), ([8, 9, 10], -3.0, -4.0)]
    assert first[1].token_scores == [-1.0] * 4
    assert [(h.tokens, h.rank_score) for h in second] == [([], -math.inf)]
    finished.length[1, :3] = torch.tensor([2, 2, 2])  # three equal scores: the order they finished in
    finished.tokens[1, :3, 0] = torch.tensor([4, 5, 6])
    [_, tied] = collect(finished, groups_per_sentence=1, n_best=2, length_penalty=0.0, word_penalty=0.0)
    assert [h.tokens[0] for h in tied] == [4, 5]
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
