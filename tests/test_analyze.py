"""nmt analyze: every plot is a real 800 x 500 PNG, and the numbers behind each are the ones
derived by hand from tiny inputs (bucket BLEU of perfect and garbage output, frequency ranks of a
six-word corpus, the PCA of points on a line)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from matplotlib.image import imread
from typer.testing import CliRunner

from nmt.analyze import buckets
from nmt.analyze.cli import analyze_app
from nmt.analyze.outputs import read_csv
from nmt.analyze.plots import PIXELS
from nmt.analyze.vectors import pca_2d, read_phrases, shipped_phrases
from nmt.errors import NmtError

app = typer.Typer()  # stands in for nmt/cli.py, which mounts the sub-app the same way
app.add_typer(analyze_app, name="analyze")


def nmt_analyze(*args) -> object:
    return CliRunner().invoke(app, ["analyze", *map(str, args)])


def ok(result) -> None:
    assert result.exit_code == 0, result.output + repr(result.exception)


def one_error_line(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


def assert_png(path: Path) -> None:
    """A PNG of the fixed size that is not one flat colour."""
    image = imread(path)  # (height, width, channels)
    assert (image.shape[1], image.shape[0]) == PIXELS
    assert len(np.unique(image.reshape(-1, image.shape[2]), axis=0)) > 10


def write(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --- curves -------------------------------------------------------------------------------------

def write_log(folder: Path, events: list[dict]) -> Path:
    folder.mkdir(parents=True)
    write(folder / "log.jsonl", [json.dumps(e) for e in events])
    return folder


def train_event(step, time, loss, lr=0.7):
    return {"event": "train", "step": step, "epoch": step / 10, "lr": lr, "loss": loss, "ppl": math.exp(loss),
            "tgt_tokens_per_second": 1000.0 + step, "time": time}


def test_curves_of_the_trained_run_and_a_second_run(trained_run, tmp_path):
    other = write_log(tmp_path / "other", [train_event(2, 100.0, 3.0), train_event(4, 160.0, 2.0),
                                           {"event": "valid", "step": 4, "ppl": 8.0, "time": 170.0}])
    ok(nmt_analyze("curves", trained_run, other, "--out", tmp_path / "out"))
    for panel in ("loss", "ppl", "bleu", "lr", "speed"):
        for axis in ("steps", "time"):
            assert_png(tmp_path / "out" / f"{panel}_{axis}.png")
    runs = {row[0] for row in read_csv(tmp_path / "out" / "curves.csv")[1:]}
    assert runs == {"run", "other"}  # the legend's names: the run folders'


def test_curves_numbers_from_a_hand_written_log(tmp_path):
    """Minutes count from the first event; a resumed run's repeated step keeps its later report;
    the dev loss is ln(dev ppl); a log without BLEU gets no BLEU plot."""
    run = write_log(tmp_path / "run", [
        {"event": "epoch", "epoch": 0, "time": 1000.0},
        train_event(10, 1060.0, 4.0), train_event(20, 1120.0, 3.0),
        {"event": "valid", "step": 20, "ppl": math.e ** 2, "time": 1130.0},
        train_event(20, 1300.0, 2.5, lr=0.35),  # resumed from step 10: step 20 again
    ])
    ok(nmt_analyze("curves", run, "--out", tmp_path / "out"))
    header, *rows = read_csv(tmp_path / "out" / "curves.csv")
    table = [dict(zip(header, row)) for row in rows]
    assert [(r["event"], r["step"], r["minutes"], r["loss"]) for r in table] == [
        ("train", "10", "1", "4"), ("train", "20", "5", "2.5"), ("valid", "20", "2.1667", "2")]
    assert not (tmp_path / "out" / "bleu_steps.png").exists()
    assert_png(tmp_path / "out" / "loss_time.png")
    summary = dict(zip(*read_csv(tmp_path / "out" / "curves_summary.csv")))
    assert summary["last step"] == "20" and summary["wall minutes"] == "5"


def test_curves_of_folders_without_a_usable_log(tmp_path):
    (tmp_path / "bare").mkdir()
    one_error_line(nmt_analyze("curves", tmp_path / "bare", "--out", tmp_path / "out"), "log.jsonl")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "log.jsonl").write_text("")
    one_error_line(nmt_analyze("curves", tmp_path / "empty", "--out", tmp_path / "out"), "no train or valid events")
    one_error_line(nmt_analyze("curves", tmp_path / "missing", "--out", tmp_path / "out"), "not found")


# --- lengths, frequency, significance -----------------------------------------------------------

SHORT = ["the cat sat on the mat", "a dog ran in the park", "we like green tea very much"]
LONG = ["one two three four five six seven eight nine ten eleven twelve",
        "red orange yellow green blue indigo violet black white grey pink brown",
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"]


@pytest.fixture
def test_set(tmp_path) -> dict:
    """Sources of 5 and 12 words; references equal to the sources (a copy task, easy to score by
    hand); a system perfect on the short sentences and garbage on the long ones, and a second one
    perfect everywhere."""
    short_src = [" ".join(s.split()[:5]) for s in SHORT]
    refs = short_src + LONG
    garbage = ["zz yy xx ww vv uu tt ss rr qq pp oo"] * 3
    return {"src": write(tmp_path / "test.src", refs), "ref": write(tmp_path / "test.ref", refs),
            "half": write(tmp_path / "half.hyp", short_src + garbage),
            "perfect": write(tmp_path / "perfect.hyp", refs)}


def test_length_buckets_of_perfect_and_garbage_output(test_set, tmp_path):
    out = tmp_path / "out"
    ok(nmt_analyze("lengths", "--src", test_set["src"], "--ref", test_set["ref"], "--hyp", f"half={test_set['half']}",
                   "--hyp", f"perfect={test_set['perfect']}", "--buckets", "5,10", "--out", out,
                   "--bootstrap-samples", "100"))
    table = read_csv(out / "lengths.csv")
    assert table[:4] == [["bucket", "sentences", "BLEU half", "BLEU perfect"],
                         ["1-5", "3", "100", "100"], ["6-10", "0", "", ""], ["11+", "3", "0", "100"]]
    assert table[4][:2] == ["all", "6"] and 0 < float(table[4][2]) < 100 and table[4][3] == "100"
    assert_png(out / "lengths.png")
    test = json.loads((out / "significance.json").read_text())
    assert [s["name"] for s in test["systems"]] == ["half", "perfect"] and test["baseline"] == "half"
    assert test["systems"][0]["p_value"] is None and 0 < test["systems"][1]["p_value"] <= 1
    assert test["systems"][1]["bleu"] == 100 and "bs:100" in test["signature"]


def test_one_system_has_no_significance_test(test_set, tmp_path):
    ok(nmt_analyze("lengths", "--src", test_set["src"], "--ref", test_set["ref"], "--hyp", test_set["perfect"],
                   "--out", tmp_path / "out"))
    assert not (tmp_path / "out" / "significance.json").exists()
    assert read_csv(tmp_path / "out" / "lengths.csv")[0] == ["bucket", "sentences", "BLEU perfect.hyp"]


def test_word_ranks_of_a_tiny_corpus():
    # counts: a 3, b 2, then c, d, e once each (equal counts in alphabetical order)
    ranks = buckets.word_ranks(["a b a c", "e a b", "d"])
    assert ranks == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
    assert buckets.average_rank("a c", ranks) == 2.0
    assert buckets.average_rank("b unseen", ranks) == (2 + 6) / 2  # unseen: vocabulary size + 1
    assert math.isnan(buckets.average_rank("", ranks))


def test_frequency_buckets_from_the_training_text(tmp_path):
    train = write(tmp_path / "train.src", ["a b a c", "e a b", "d"])
    src = ["a a a a", "b c b c", "", "e zz e zz"]  # average ranks 1, 2.5, none (empty), 5.5
    paths = {name: write(tmp_path / name, src) for name in ("test.src", "test.ref", "test.hyp")}
    out = tmp_path / "out"
    ok(nmt_analyze("frequency", "--src", paths["test.src"], "--ref", paths["test.ref"], "--hyp",
                   f"copy={paths['test.hyp']}", "--train", train, "--buckets", "2,4", "--out", out))
    assert read_csv(out / "frequency_sentences.csv")[1:] == [
        ["1", "4", "1", "≤2"], ["2", "4", "2.5", "2-4"], ["3", "0", "", ""], ["4", "4", "5.5", ">4"]]
    assert [row[:3] for row in read_csv(out / "frequency.csv")[1:]] == [
        ["≤2", "1", "100"], ["2-4", "1", "100"], [">4", "1", "100"], ["all", "4", "100"]]  # the empty line: in all
    assert_png(out / "frequency.png")


def test_bucket_edges_and_labels():
    assert buckets.labels([5, 10], whole_numbers=True) == ["1-5", "6-10", "11+"]
    assert buckets.labels(buckets.LENGTH_EDGES, whole_numbers=True)[-2:] == ["36-40", "41+"]
    assert buckets.labels([1.5, 20], whole_numbers=False) == ["≤1.5", "1.5-20", ">20"]
    assert buckets.assign([1, 5, 6, 10, 11], [5, 10]) == [0, 0, 1, 1, 2]
    assert buckets.parse_edges("5, 10,20", whole_numbers=True) == [5, 10, 20]
    for bad in ("10,5", "a,b", "0,5", ""):
        with pytest.raises(NmtError):
            buckets.parse_edges(bad, whole_numbers=False)
    with pytest.raises(NmtError):
        buckets.parse_edges("2.5", whole_numbers=True)
    assert buckets.quantile_edges([1, 2, 3, 4, 5, 6, 7, 8], 4) == [2, 4, 6]


def test_test_set_errors_are_one_line(test_set, tmp_path):
    base = ["--ref", test_set["ref"], "--hyp", test_set["half"], "--out", tmp_path / "out"]
    one_error_line(nmt_analyze("lengths", "--src", tmp_path / "nope.src", *base), "nope.src", "not found")
    short = write(tmp_path / "short.src", SHORT[:2])
    one_error_line(nmt_analyze("lengths", "--src", short, *base), "short.src", "line for line")
    one_error_line(nmt_analyze("frequency", "--src", test_set["src"], *base, "--train", tmp_path / "no.txt"),
                   "no.txt")
    one_error_line(nmt_analyze("lengths", "--src", test_set["src"], *base, "--buckets", "9,3"), "--buckets")


# --- vectors ------------------------------------------------------------------------------------

def test_pca_of_points_on_a_line():
    """Points p0 + t d lie on one axis: their first coordinates are t - mean(t) times |d|, up to
    one sign, and the second coordinates are zero."""
    direction = np.array([1.0, 2.0, 2.0, 0.0, 4.0])  # |d| = 5
    t = np.array([0.0, 1.0, 3.0, 6.0])
    points = np.array([3.0, -1.0, 0.5, 2.0, 7.0]) + t[:, None] * direction  # (4, 5)
    coords, ratio = pca_2d(points)
    expected = (t - t.mean()) * 5
    sign = np.sign(coords[0, 0])
    np.testing.assert_allclose(coords[:, 0] * sign, expected * np.sign(expected[0]), atol=1e-9)
    np.testing.assert_allclose(coords[:, 1], 0, atol=1e-9)
    np.testing.assert_allclose(ratio, [1, 0], atol=1e-12)
    np.testing.assert_allclose(pca_2d(points[::-1])[0][::-1], coords, atol=1e-9)  # the sign rule is stable


def test_vectors_of_the_trained_model(trained_run, tmp_path):
    phrases = write(tmp_path / "phrases.txt", ["wa0 wb1 wc2", "wc2 wb1 wa0", "wd3 we4", "", "wa0"])
    out = tmp_path / "out"
    ok(nmt_analyze("vectors", trained_run, phrases, "--out", out, "--state", "both"))
    assert_png(out / "vectors.png")
    rows = read_csv(out / "vectors.csv")
    assert [row[0] for row in rows[1:]] == ["wa0 wb1 wc2", "wc2 wb1 wa0", "wd3 we4", "wa0"]  # blank line left out
    info = json.loads((out / "vectors.json").read_text())
    assert info["dimensions"] == 2 * 32 and info["state"] == "both"  # h and c of the 32-cell top layer
    first, second = info["explained_variance_ratio"]
    assert 1 >= first >= second >= 0 and first + second <= 1 + 1e-9


def test_shipped_phrase_files():
    files = shipped_phrases()
    assert {"en", "de"} <= set(files)
    for language in ("en", "de"):
        phrases = read_phrases(language)
        assert 12 <= len(phrases) <= 20 and len(set(phrases)) == len(phrases)
    assert "Mary admires John." in read_phrases("en")


def test_vectors_errors(trained_run, tmp_path):
    (tmp_path / "empty").mkdir()
    one_error_line(nmt_analyze("vectors", tmp_path / "empty", "en", "--out", tmp_path / "out"), "empty")
    one_error_line(nmt_analyze("vectors", trained_run, tmp_path / "none.txt", "--out", tmp_path / "out"), "none.txt")
    one_error_line(nmt_analyze("vectors", trained_run, "en", "--out", tmp_path / "out", "--state", "x"), "--state")


def test_a_missing_matplotlib_is_a_user_error(test_set, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # `import matplotlib` now fails
    result = nmt_analyze("lengths", "--src", test_set["src"], "--ref", test_set["ref"], "--hyp", test_set["half"],
                         "--out", tmp_path / "out")
    one_error_line(result, "pip install matplotlib")


# --- report -------------------------------------------------------------------------------------

def test_report_embeds_plots_and_links_only_files_that_exist(trained_run, test_set, tmp_path):
    lengths = tmp_path / "lengths"
    ok(nmt_analyze("lengths", "--src", test_set["src"], "--ref", test_set["ref"], "--hyp", test_set["half"],
                   "--out", lengths))
    out = tmp_path / "report"
    ok(nmt_analyze("report", trained_run, lengths, "--out", out))
    page = (out / "report.html").read_text(encoding="utf-8")
    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    local = [r for r in references if not r.startswith("data:")]
    assert local and all((out / r).is_file() for r in local)
    pngs = sorted((out / "curves").glob("*.png")) + [lengths / "lengths.png"]
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert "<td>1-5</td>" in page and "<th>BLEU half.hyp</th>" in page
    one_error_line(nmt_analyze("report", tmp_path / "nothing", "--out", out), "not found")


def test_report_flag_writes_the_page_beside_the_plots(test_set, tmp_path):
    ok(nmt_analyze("lengths", "--src", test_set["src"], "--ref", test_set["ref"], "--hyp", test_set["half"],
                   "--out", tmp_path / "out", "--report"))
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 1 and 'href="lengths.csv"' in page
