"""`nmt score` and `Translator.score`: the paper's rescoring of n-best lists.

The model's scores are checked against the search's own (a beam's output scores what the search
reported), the n-best reader on hand-made files, and reranking and tuning on hand-made lists whose
scores make the expected choice derivable on paper.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nmt.cli import app
from nmt.decode.nbest import NbestEntry, parse_line, read_nbest
from nmt.decode.rerank import best_positions, parse_weights, rerank, tune_weights
from nmt.errors import DataError

LINES = ["wa0 wb1 wc2", "wd3 we4", "wf5", "wg6 wh7 wi8 wj9"]


@pytest.fixture(scope="module")
def translator(trained_run):
    from nmt import Translator

    return Translator.load(trained_run, device="cpu")


def nmt(*args, cwd: Path):
    """The command in this process (no second torch import): exit code, stdout, stderr."""
    import os

    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(here)
    return result.exit_code, result.stdout, result.stderr


def write(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --- the model's scores ----------------------------------------------------------------------------

def test_a_beam_output_scores_what_the_search_reported(translator):
    """Every hypothesis of a beam's 3-best lists, scored by teacher forcing its tokens, gets the
    log-probability the search reported (the search steps cells; scoring runs the whole sequence)."""
    from nmt.decode.score import score_ids

    options = translator.options(beam=3, n_best=3, length_penalty=1.0)
    found = translator.translate(LINES, options)
    src_ids = translator.src_tokenizer.encode(LINES)
    pairs = [(ids, t) for ids, hyps in zip(src_ids, found) for t in hyps]
    scores = score_ids(translator.model, [ids for ids, _ in pairs], [list(t.tokens) for _, t in pairs],
                       device=translator.device, batch_size=4)
    assert len(scores) == 12
    for (_, translation), score in zip(pairs, scores):
        assert score.log_prob == pytest.approx(translation.log_prob, abs=1e-4)
        assert score.length == len(translation.tokens) + 1
        assert score.per_token == pytest.approx(translation.score, abs=1e-4)  # alpha 1: log_prob / length


def test_text_is_scored_as_the_tokenizer_segments_it(translator):
    """`Translator.score` takes text: a search's own text scores its log-probability where the
    tokenizer gives back the search's tokens (this toy model's junk output often does not)."""
    from nmt.decode.score import score_ids

    found = [hyps[0] for hyps in translator.translate(LINES, translator.options(beam=3))]
    scores = translator.score(LINES, [t.text for t in found])
    again = score_ids(translator.model, translator.src_tokenizer.encode(LINES),
                      translator.tgt_tokenizer.encode([t.text for t in found]), device=translator.device)
    assert [s.log_prob for s in scores] == pytest.approx([s.log_prob for s in again], abs=1e-6)
    for translation, score in zip(found, scores):
        if translator.tgt_tokenizer.encode([translation.text])[0] == list(translation.tokens):
            assert score.log_prob == pytest.approx(translation.log_prob, abs=1e-4)


def test_scores_do_not_depend_on_the_batch(translator):
    sources, candidates = LINES * 2, ["AW0 BW1", "", "CW2 DW3 EW4", "FW5"] * 2
    one_by_one = [translator.score([s], [c])[0] for s, c in zip(sources, candidates)]
    for alone, batched in zip(one_by_one, translator.score(sources, candidates, batch_size=3)):
        assert batched.log_prob == pytest.approx(alone.log_prob, abs=1e-5)


def test_an_ensemble_of_a_model_with_itself_scores_like_the_model(trained_run, translator):
    from nmt import Translator

    ensemble = Translator.load([trained_run, trained_run], device="cpu")
    candidates = ["AW0 BW1 CW2", "DW3", "", "GW6 HW7"]
    for alone, twice in zip(translator.score(LINES, candidates), ensemble.score(LINES, candidates)):
        assert twice.log_prob == pytest.approx(alone.log_prob, abs=1e-5)


def test_an_empty_source_has_only_the_empty_translation(translator):
    assert translator.score([""], [""])[0].log_prob == 0.0  # as translate reports it
    with pytest.raises(DataError, match="source 2 is empty but its candidate 'AW0' is not"):
        translator.score(["wa0", ""], ["AW0", "AW0"])


def test_nmt_score_candidates_prints_the_model_scores(tmp_path, trained_run, translator):
    found = [hyps[0] for hyps in translator.translate(LINES, translator.options(beam=3))]
    write(tmp_path / "src.txt", LINES)
    write(tmp_path / "hyp.txt", [t.text for t in found])
    code, out, err = nmt("score", "-m", trained_run, "--source", "src.txt", "--candidates", "hyp.txt", cwd=tmp_path)
    assert code == 0, err
    rows = [tuple(map(float, line.split("\t"))) for line in out.splitlines()]
    expected = translator.score(LINES, [t.text for t in found])
    assert rows == [pytest.approx((s.log_prob, s.per_token), abs=1e-6) for s in expected]


def test_nmt_score_nbest_appends_the_model_scores_and_reranks(tmp_path, trained_run, translator):
    write(tmp_path / "src.txt", LINES)
    write(tmp_path / "nbest.txt", ["0 ||| AW0 BW1 CW2 ||| -1.5", "0 ||| AW0 ||| -0.5 ||| kept",
                                   "1 ||| DW3 EW4 ||| -2", "2 ||| FW5 ||| -0.1", "2 |||  ||| -9",
                                   "3 ||| GW6 HW7 IW8 JW9 ||| -3"])
    candidates = [(0, "AW0 BW1 CW2"), (0, "AW0"), (1, "DW3 EW4"), (2, "FW5"), (2, ""), (3, "GW6 HW7 IW8 JW9")]
    expected = translator.score([LINES[i] for i, _ in candidates], [c for _, c in candidates])
    code, out, err = nmt("score", "-m", trained_run, "-s", "src.txt", "--nbest", "nbest.txt", cwd=tmp_path)
    assert code == 0, err
    scored = out.splitlines()
    original = (tmp_path / "nbest.txt").read_text().splitlines()
    for before, after, score in zip(original, scored, expected, strict=True):
        assert after.startswith(before + " ||| ")  # the list's own fields kept, one field appended
        assert tuple(map(float, after.rsplit(" ||| ", 1)[1].split())) == pytest.approx(
            (score.log_prob, score.per_token), abs=1e-6)

    def reranked(*options) -> list[str]:
        code, out, err = nmt("score", "-m", trained_run, "-s", "src.txt", "--nbest", "nbest.txt", *options,
                             cwd=tmp_path)
        assert code == 0, err
        return out.splitlines()

    model, listed = [s.log_prob for s in expected], [-1.5, -0.5, -2, -0.1, -9, -3]
    def best(weights):
        return [max((k for k, (i, _) in enumerate(candidates) if i == source),
                    key=lambda k: (weights[0] * model[k] + weights[1] * listed[k], -k)) for source in range(4)]
    assert reranked("--rerank") == [candidates[k][1] for k in best((0.5, 0.5))]  # the paper's average
    assert reranked("--weights", "0,1") == ["AW0", "DW3 EW4", "FW5", "GW6 HW7 IW8 JW9"]  # the list alone
    assert reranked("--weights", "1,0") == [candidates[k][1] for k in best((1, 0))]


def test_nmt_score_tunes_on_a_dev_list_and_reports_the_weights(tmp_path, trained_run):
    """The list's own scores pick every reference; the model's may not. Whatever the toy model
    prefers, some grid point (the list alone, at least) reaches BLEU 100, and tuning finds one."""
    write(tmp_path / "src.txt", ["wa0 wb1 wc2 wd3", "we4 wf5 wg6 wh7"])
    right = ["AW0 BW1 CW2 DW3", "EW4 FW5 GW6 HW7"]
    write(tmp_path / "ref.txt", right)
    write(tmp_path / "dev.txt", ["0 ||| AW0 AW0 AW0 AW0 ||| -6", f"0 ||| {right[0]} ||| -0.1", "0 ||| AW0 ||| -5",
                                 f"1 ||| {right[1]} ||| -0.2", "1 ||| HW7 GW6 FW5 EW4 ||| -7"])
    code, out, err = nmt("score", "-m", trained_run, "-s", "src.txt", "--nbest", "dev.txt", "--tune-on", "dev.txt",
                         "--tune-source", "src.txt", "--tune-ref", "ref.txt", cwd=tmp_path)
    assert code == 0, err
    assert out.splitlines() == right
    [report] = err.splitlines()
    assert report.startswith("tuned weights: model ") and "(dev BLEU 100.00;" in report


# --- the n-best reader -----------------------------------------------------------------------------

def test_nbest_lines_keep_their_fields_and_read_moses_features(tmp_path):
    path = write(tmp_path / "moses.txt", [
        "0 ||| das Haus ||| LM0= -20.5 TM0= -1 -2.5 ||| -7.25",
        "0 ||| ein Haus ||| LM0= -21 TM0= -1.5 -2 ||| -7.5",
        "1 |||  ||| LM0= -3 TM0= 0 0 ||| -0.5 ||| 0-0",
    ])
    groups = read_nbest(path, sources=2)
    assert [len(g) for g in groups] == [2, 1]
    first = groups[0][0]
    assert first == NbestEntry(0, "das Haus", ("LM0= -20.5 TM0= -1 -2.5", "-7.25"), (-20.5, -1.0, -2.5))
    assert groups[1][0].hypothesis == "" and groups[1][0].fields[-1] == "0-0"
    assert first.line("-9.0 -3.0") == "0 ||| das Haus ||| LM0= -20.5 TM0= -1 -2.5 ||| -7.25 ||| -9.0 -3.0"
    assert parse_line("3 ||| a b ||| -1.5", "x").features == (-1.5,)


@pytest.mark.parametrize("lines, words", [
    (["0 ||| a ||| -1", "0 ||| b"], ["bad.txt line 2", "expected 'index ||| hypothesis ||| score'"]),
    (["0 ||| a ||| -1", "2 ||| b ||| -1"], ["bad.txt line 2", "index 2 where 0 or 1 was expected"]),
    (["1 ||| a ||| -1"], ["bad.txt line 1", "index 1 where 0 was expected"]),
    (["0 ||| a ||| -1", "1 ||| b ||| -1", "0 ||| c ||| -1"], ["bad.txt line 3", "index 0 where 1 or 2"]),
    (["x ||| a ||| -1"], ["bad.txt line 1", "'x' is not a whole number"]),
    (["² ||| a ||| -1"], ["bad.txt line 1", "'²' is not a whole number"]),
    (["0 ||| a ||| high"], ["bad.txt line 1", "'high'"]),
    (["0 ||| a ||| LM0="], ["bad.txt line 1", "holds no number"]),
    (["0 ||| a ||| nan"], ["bad.txt line 1", "not a finite number"]),
    (["0 ||| a ||| -1 -2", "1 ||| b ||| -1"], ["bad.txt line 2 has 1 scores but line 1 has 2"]),
    (["0 ||| a ||| -1", ""], ["bad.txt line 2", "is not an n-best line"]),
    ([], ["bad.txt holds no candidates"]),
    (["0 ||| a ||| -1"], ["bad.txt has candidates for 1 sources but the source has 2 lines"]),
])
def test_bad_nbest_files_are_refused_with_file_and_line(tmp_path, lines, words):
    path = write(tmp_path / "bad.txt", lines)
    with pytest.raises(DataError) as error:
        read_nbest(path, sources=2 if "sources" in words[0] else None)
    for word in words:
        assert word in str(error.value)


# --- reranking and tuning on hand-made lists -------------------------------------------------------

def entry(index: int, hypothesis: str, *features: float) -> NbestEntry:
    return NbestEntry(index, hypothesis, (" ".join(map(str, features)),), features)


# (model, list) scores. Source 0: "the cat sat" (-1, -4), "a cat sat" (-3, -1): the model and the
# list disagree. Source 1: "on the mat" (-2, -2), "on a mat" (-1, -2.5).
GROUPS = [[entry(0, "the cat sat", -4.0), entry(0, "a cat sat", -1.0)],
          [entry(1, "on the mat", -2.0), entry(1, "on a mat", -2.5)]]
MODEL = [[-1.0, -3.0], [-2.0, -1.0]]


def test_rerank_picks_the_hand_derived_best():
    # source 0: -0.5 - 2 = -2.5 against -1.5 - 0.5 = -2.0; source 1: -1 - 1 = -2 against -0.5 - 1.25 = -1.75
    assert [e.hypothesis for e in rerank(GROUPS, MODEL, (0.5, 0.5))] == ["a cat sat", "on a mat"]
    assert best_positions(GROUPS, MODEL, (1.0, 0.0)) == (0, 1)  # the model alone
    assert best_positions(GROUPS, MODEL, (0.0, 1.0)) == (1, 0)  # the list alone
    assert best_positions(GROUPS, MODEL, (1.0, 1.0)) == (1, 1)  # -5 against -4; -4 against -3.5
    ties = [[entry(0, "first", -1.0), entry(0, "second", -1.0)]]
    assert best_positions(ties, [[-2.0, -2.0]], (0.5, 0.5)) == (0,)  # a tie keeps the first


# A dev set where the right candidates need the list's weight v between 2 and 4 times the model's w:
# source 0: right -3w - v beats -w - 2v iff v > 2w; source 1: right -w - 5v beats -5w - 4v iff v < 4w.
# The paper's average (v = w) gets source 0 wrong.
DEV = [[entry(0, "a cat sat on a mat", -2.0), entry(0, "the cat sat on the mat", -1.0)],
       [entry(1, "the dog barked at the postman", -5.0), entry(1, "a dog barked at a postman", -4.0)]]
DEV_MODEL = [[-1.0, -3.0], [-1.0, -5.0]]
DEV_REFERENCES = ["the cat sat on the mat", "the dog barked at the postman"]


def test_tuning_finds_the_weights_the_dev_set_makes_best():
    assert best_positions(DEV, DEV_MODEL, (0.5, 0.5)) == (0, 0)  # one wrong at the start
    tuned = tune_weights(DEV, DEV_MODEL, DEV_REFERENCES, start=(0.5, 0.5))
    w, v = tuned.weights
    assert w > 0 and 2 < v / w < 4  # the hand-derived region
    assert best_positions(DEV, DEV_MODEL, tuned.weights) == (1, 0)
    assert tuned.bleu == 100.0 and tuned.start_bleu < 100.0
    assert tuned.describe().startswith(f"tuned weights: model {w:g}, n-best score {v:g} (dev BLEU 100.00;")


def test_tuning_on_a_list_whose_own_scores_are_right_weights_the_list():
    groups = [[entry(0, "x y z", -1.0), entry(0, "the cat sat on the mat", -0.1)],
              [entry(1, "p q", -1.0), entry(1, "a dog barked loudly today", -0.2)]]
    model = [[-1.0, -5.0], [-1.0, -4.0]]  # the model prefers the wrong ones by far
    tuned = tune_weights(groups, model, ["the cat sat on the mat", "a dog barked loudly today"], start=(0.5, 0.5))
    assert best_positions(groups, model, tuned.weights) == (1, 1)
    # right at both: -5w - 0.1v > -w - v and -4w - 0.2v > -w - v, i.e. v > 4.44w and v > 3.75w;
    # the first grid value that does it, the smallest in size, is w = 0: the list alone
    assert tuned.weights == (0.0, 0.5)


def test_weights_are_checked():
    assert parse_weights("0.3,0.7") == (0.3, 0.7)
    with pytest.raises(DataError, match="not a comma-separated list of numbers"):
        parse_weights("0.3;0.7")
    with pytest.raises(DataError, match="needs the model's weight and at least one"):
        parse_weights("1")


# --- the command's bad inputs ----------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["-s", "src.txt"], ["exactly one of --candidates FILE and --nbest FILE"]),
    (["-s", "src.txt", "--candidates", "hyp.txt", "--nbest", "nbest.txt"], ["exactly one of"]),
    (["-s", "src.txt", "--candidates", "hyp.txt", "--rerank"], ["pass --nbest FILE"]),
    (["-s", "src.txt", "--nbest", "nbest.txt", "--tune-on", "nbest.txt"], ["needs all three of --tune-on"]),
    (["-s", "src.txt", "--nbest", "nbest.txt", "--weights", "a,b"], ["--weights 'a,b'"]),
    (["-s", "src.txt", "--nbest", "nbest.txt", "--weights", "1,2,3"], ["3 weights for nbest.txt", "give 2"]),
    (["-s", "src.txt", "--candidates", "missing.txt"], ["file missing.txt not found"]),
    (["-s", "src.txt", "--candidates", "short.txt"], ["src.txt has 2 lines but short.txt has 1"]),
    (["-s", "src.txt", "--candidates", "empty.txt"], ["empty.txt holds no candidates"]),
    (["-s", "src.txt", "--nbest", "gap.txt"], ["gap.txt line 2", "index 2 where 0 or 1"]),
    (["-s", "src.txt", "--nbest", "one.txt"], ["one.txt has candidates for 1 sources but src.txt has 2 lines"]),
    (["-s", "src.txt", "--nbest", "moses.txt", "--rerank"], ["moses.txt has 2 scores per line", "--weights"]),
    (["-s", "blank.txt", "--candidates", "hyp.txt"], ["blank.txt line 2 is empty but hyp.txt line 2 is not"]),
    (["-s", "src.txt", "--candidates", "hyp.txt", "--batch-size", "0"], ["--batch-size must be at least 1"]),
    (["-s", "src.txt", "--nbest", "nbest.txt", "--tune-on", "nbest.txt", "--tune-source", "src.txt", "--tune-ref",
      "short.txt"], ["short.txt has 1 lines but nbest.txt has candidates for 2 sources"]),
])
def test_bad_score_arguments_give_one_error_line(tmp_path, trained_run, args, words):
    write(tmp_path / "src.txt", ["wa0 wb1", "wc2"])
    write(tmp_path / "blank.txt", ["wa0 wb1", ""])
    write(tmp_path / "hyp.txt", ["AW0 BW1", "CW2"])
    write(tmp_path / "short.txt", ["AW0 BW1"])
    write(tmp_path / "empty.txt", [])
    write(tmp_path / "nbest.txt", ["0 ||| AW0 ||| -1", "1 ||| CW2 ||| -2"])
    write(tmp_path / "gap.txt", ["0 ||| AW0 ||| -1", "2 ||| CW2 ||| -2"])
    write(tmp_path / "one.txt", ["0 ||| AW0 ||| -1"])
    write(tmp_path / "moses.txt", ["0 ||| AW0 ||| a= -1 -2", "1 ||| CW2 ||| a= -2 -3"])
    code, out, err = nmt("score", "-m", trained_run, *args, cwd=tmp_path)
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith("error: ")
    for word in words:
        assert word in line


def test_the_readme_scoring_example_runs(trained_run, translator, capsys):
    import re

    from nmt import Translator

    section = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split("## From Python")[1]
    code = re.findall(r"```python\n(.*?)```", section.split("\n## ")[0], re.S)[1]  # the block after the first
    assert '"runs/quickstart/run"' in code and "translator.score(" in code
    exec(code.replace('"runs/quickstart/run"', repr(str(trained_run))), {"translator": translator,
                                                                          "Translator": Translator})
    [printed] = capsys.readouterr().out.splitlines()
    log_prob, per_token = map(float, printed.split())
    tokens = len(translator.tgt_tokenizer.encode(["quatre cent deux"])[0])
    assert log_prob < 0 and per_token == pytest.approx(log_prob / (tokens + 1), abs=1e-5)
