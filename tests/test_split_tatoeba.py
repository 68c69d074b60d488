"""scripts/split_tatoeba.py: the Tatoeba split, derived by hand on a tiny release, and its invariants.

The hand-made release below has 14 lines, 11 usable pairs and 8 components; with sizes 2,2,1
every expected file is written out literally and the comments say why each pair lands where it does.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from scripts.split_tatoeba import assign, components, parse_pairs, read_release, split_pairs

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "split_tatoeba.py"
ATTRIBUTION = "CC-BY 2.0 (France) Attribution: tatoeba.org #1 (a) & #2 (b)"

RELEASE = (
    f"Hi.\tSalut.\t{ATTRIBUTION}\n"              # p0
    f"Run!\tCours !\t{ATTRIBUTION}\n"            # p1  Run! has two translations
    "Run!\tCourez !\r\n"                          # p2  no attribution; "\r" stripped
    f"  Who? \t Qui ?  \t{ATTRIBUTION}\n"         # p3  spaces stripped
    f"Wow!\t\t{ATTRIBUTION}\n"                    # skipped: empty second column
    "Fire!\n"                                     # skipped: one column
    f"Wait!\tAttends !\t{ATTRIBUTION}\n"         # p4  Attends ! is shared with Hold on. ...
    "OK.\tD'accord.\n"                            # p5  English "OK." ...
    f"Help!\tÀ l'aide !\t{ATTRIBUTION}\n"        # p6
    "Hold on.\tAttends !\n"                       # p7
    f"Alright.\tOK.\t{ATTRIBUTION}\n"            # p8  ... and French "OK.": different nodes
    "Hold on.\tTiens bon !\n"                     # p9  ... so Wait! reaches Tiens bon ! (3 pairs)
    " \t Rien.\n"                                 # skipped: English only a space
    "Jump.\tSaute."                               # p10 no final newline
)
PAIRS = [("Hi.", "Salut."), ("Run!", "Cours !"), ("Run!", "Courez !"), ("Who?", "Qui ?"),
         ("Wait!", "Attends !"), ("OK.", "D'accord."), ("Help!", "À l'aide !"), ("Hold on.", "Attends !"),
         ("Alright.", "OK."), ("Hold on.", "Tiens bon !"), ("Jump.", "Saute.")]
# Components, in the order of their first pair:
COMPONENTS = [
    [("Hi.", "Salut.")],                                                             # C0 (p0)
    [("Run!", "Cours !"), ("Run!", "Courez !")],                                     # C1 (p1, p2)
    [("Who?", "Qui ?")],                                                             # C2 (p3)
    [("Wait!", "Attends !"), ("Hold on.", "Attends !"), ("Hold on.", "Tiens bon !")],  # C3 (p4, p7, p9)
    [("OK.", "D'accord.")],                                                          # C4 (p5)
    [("Help!", "À l'aide !")],                                                       # C5 (p6)
    [("Alright.", "OK.")],                                                           # C6 (p8)
    [("Jump.", "Saute.")],                                                           # C7 (p10)
]
# random.Random(2014).shuffle(list(range(8))) gives [7, 6, 0, 2, 1, 3, 4, 5] (printed once, and
# checked below). With sizes heldout 2, test 2, valid 1, the components go, in that order:
#   C7 (1 pair)  heldout holds 0 < 2           -> heldout (now 1)
#   C6 (1 pair)  heldout holds 1 < 2           -> heldout (now 2)
#   C0 (1 pair)  heldout full; test 0 < 2      -> test (now 1)
#   C2 (1 pair)  test 1 < 2                    -> test (now 2)
#   C1 (2 pairs) valid 0 < 1                   -> valid (now 2: a component is never cut)
#   C3, C4, C5   heldout, test and valid full  -> train, one component after another
EXPECTED = {
    "heldout": {"en": "Jump.\nAlright.\n", "fr": "Saute.\nOK.\n"},
    "test": {"en": "Hi.\nWho?\n", "fr": "Salut.\nQui ?\n"},
    "valid": {"en": "Run!\nRun!\n", "fr": "Cours !\nCourez !\n"},
    "train": {"en": "Wait!\nHold on.\nHold on.\nOK.\nHelp!\n",
              "fr": "Attends !\nAttends !\nTiens bon !\nD'accord.\nÀ l'aide !\n"},
}


def pairs_of(text: dict[str, str]) -> list[tuple[str, str]]:
    return list(zip(text["en"].splitlines(), text["fr"].splitlines()))


def run_script(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def release(tmp_path) -> Path:
    path = tmp_path / "fra.txt"
    path.write_bytes(RELEASE.encode("utf-8"))
    return path


# --- the hand-derived split ------------------------------------------------------------------------


def test_parse_keeps_stripped_pairs_with_two_non_empty_columns(release):
    assert parse_pairs(read_release(release)) == PAIRS


def test_components_in_first_pair_order_with_pairs_in_file_order():
    assert components(PAIRS) == COMPONENTS


def test_the_shuffle_the_derivation_relies_on():
    order = list(range(8))
    random.Random(2014).shuffle(order)
    assert order == [7, 6, 0, 2, 1, 3, 4, 5]


def test_assign_fills_heldout_test_valid_in_turn_with_whole_components():
    shuffled = [COMPONENTS[i] for i in (7, 6, 0, 2, 1, 3, 4, 5)]
    assert assign(shuffled, (2, 2, 1)) == {split: pairs_of(text) for split, text in EXPECTED.items()}


def test_split_of_the_hand_made_release():
    assert split_pairs(PAIRS, (2, 2, 1), seed=2014) == {split: pairs_of(text) for split, text in EXPECTED.items()}


def test_command_line_writes_the_expected_files(release, tmp_path):
    out = tmp_path / "data" / "tatoeba-en-fr"
    result = run_script(release, "--lang", "fr", "--out", out, "--sizes", "2,2,1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    written = {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()}
    assert written == {f"{split}.{side}": text for split, sides in EXPECTED.items() for side, text in sides.items()}
    assert result.stdout.splitlines()[1:] == [
        f"heldout: 2 pairs -> {out}/heldout.{{en,fr}}", f"test: 2 pairs -> {out}/test.{{en,fr}}",
        f"valid: 2 pairs -> {out}/valid.{{en,fr}}", f"train: 5 pairs -> {out}/train.{{en,fr}}"]
    again = run_script(release, "--lang", "fr", "--out", out, "--sizes", "2,2,1", "--overwrite", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()} == written


# --- invariants on random releases -----------------------------------------------------------------


def random_release(rng: random.Random, lines: int) -> str:
    """Lines drawn from few sentences, so components merge; some English and French strings coincide."""
    english = [f"s{i}" for i in range(150)]
    other = [f"s{i}" for i in range(100, 250)]  # s100..s149 are also English sentences: still other nodes
    rows = []
    for _ in range(lines):
        kind = rng.random()
        if kind < 0.05:
            rows.append(rng.choice(english))  # one column
        elif kind < 0.1:
            rows.append(f"{rng.choice(english)}\t  ")  # empty once stripped
        else:
            rows.append(f" {rng.choice(english)}\t{rng.choice(other)} \t#{rng.randint(1, 9)}")
    return "\n".join(rows) + "\n"


def connected_by_search(pairs: list[tuple[str, str]]) -> set[frozenset]:
    """The components by breadth-first search from each pair: a slow, obviously right oracle."""
    edges: dict[tuple[str, str], set[int]] = {}
    for i, (english, other) in enumerate(pairs):
        edges.setdefault(("en", english), set()).add(i)
        edges.setdefault(("other", other), set()).add(i)
    seen, found = set(), set()
    for start in range(len(pairs)):
        if start in seen:
            continue
        group, frontier = {start}, [start]
        while frontier:
            english, other = pairs[frontier.pop()]
            for j in edges[("en", english)] | edges[("other", other)]:
                if j not in group:
                    group.add(j)
                    frontier.append(j)
        seen |= group
        found.add(frozenset(group))
    return found


@pytest.mark.parametrize("seed", range(5))
def test_random_release_split_keeps_every_pair_once_and_no_sentence_in_two_splits(tmp_path, seed):
    path = tmp_path / "release.txt"
    path.write_text(random_release(random.Random(seed), 120), encoding="utf-8")
    pairs = parse_pairs(read_release(path))
    splits = split_pairs(pairs, (10, 10, 5), seed=2014)
    assert Counter(p for split in splits.values() for p in split) == Counter(pairs)
    sizes = dict(zip(("heldout", "test", "valid"), (10, 10, 5)))
    for earlier, later in (("heldout", "test"), ("test", "valid"), ("valid", "train")):
        assert not splits[later] or len(splits[earlier]) >= sizes[earlier], "filled out of turn"
    for column in (0, 1):
        owner = {}
        for split, members in splits.items():
            for pair in members:
                assert owner.setdefault(pair[column], split) == split, f"{pair[column]} is in two splits"
    by_index = {}
    for i, pair in enumerate(pairs):
        by_index.setdefault(pair, []).append(i)
    found = {frozenset(i for p in set(c) for i in by_index[p]) for c in components(pairs)}
    assert found == connected_by_search(pairs)


# --- bad input ---------------------------------------------------------------------------------------


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    shown = f"exit code {result.returncode}, stderr:\n{result.stderr}"
    assert result.returncode == 2, shown
    assert "Traceback" not in result.stderr, shown
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    for word in words:
        assert word in lines[0], f"{word!r} missing from: {lines[0]}"
    return lines[0]


def test_missing_release_file(tmp_path):
    result = run_script(tmp_path / "fra.txt", "--lang", "fr", "--out", tmp_path / "out", cwd=tmp_path)
    one_line_error(result, "fra.txt", "does not exist", "manythings.org")
    assert not (tmp_path / "out").exists()


def test_release_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_bytes(b"Hi.\tSalut.\nRun!\tCours !\nCaf\xe9.\tCaf\xe9.\n")  # latin-1 on line 3
    result = run_script(path, "--lang", "fr", "--out", tmp_path / "out", cwd=tmp_path)
    one_line_error(result, "fra.txt line 3", "not UTF-8")
    assert not (tmp_path / "out").exists()


def test_release_with_no_usable_line(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_text("Hi.\nRun!\t \n", encoding="utf-8")
    result = run_script(path, "--lang", "fr", "--out", tmp_path / "out", cwd=tmp_path)
    one_line_error(result, "fra.txt", "no line")
    assert not (tmp_path / "out").exists()


def test_existing_split_files_are_kept_without_overwrite(release, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "test.fr").write_text("ours\n", encoding="utf-8")
    result = run_script(release, "--lang", "fr", "--out", out, "--sizes", "2,2,1", cwd=tmp_path)
    one_line_error(result, "test.fr", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["test.fr"]
    assert (out / "test.fr").read_text(encoding="utf-8") == "ours\n"


def test_output_path_that_is_a_file(release, tmp_path):
    out = tmp_path / "out"
    out.write_text("not a folder\n", encoding="utf-8")
    result = run_script(release, "--lang", "fr", "--out", out, "--sizes", "2,2,1", cwd=tmp_path)
    one_line_error(result, "is a file")
    assert out.read_text(encoding="utf-8") == "not a folder\n"


@pytest.mark.parametrize("args, words", [(["--lang", "xx"], ["--sizes", "xx"]),
                                         (["--lang", "fr", "--sizes", "2,2"], ["--sizes", "HELDOUT,TEST,VALID"]),
                                         (["--lang", "en"], ["--lang"])])
def test_languages_without_sizes_and_bad_sizes(release, tmp_path, args, words):
    result = run_script(release, *args, "--out", tmp_path / "out", cwd=tmp_path)
    one_line_error(result, *words)
    assert not (tmp_path / "out").exists()
