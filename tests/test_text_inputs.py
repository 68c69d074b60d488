"""Awkward text: what each command does with it, and the bad inputs not covered in test_bad_input.py.

Text that is awkward but usable is handled the same way everywhere (nmt/data/corpus.py):
  - a line ends at \\n; a \\r before it (Windows) is part of the line ending; the last line
    needs no final newline;
  - a byte-order mark at the start of a file, or anywhere in a line, is ignored;
  - every white-space character (tab, stray \\r, U+2028, no-break space ...) separates words like
    a space; other control characters (NUL, ESC, DEL, C1) are removed; runs of spaces fold;
  - a line that is empty after that stays a line: preprocess drops a training pair with an
    empty side and counts it; translate writes an empty line for it;
so a corpus with Windows line endings, a BOM or stray control characters prepares exactly the
same data as the clean one, and translate and bleu give exactly the same output. Text that is
not UTF-8 is refused with the file and the line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from nmt.data.corpus import BOM
from tests.conftest import tiny_config_dict, toy_translation, write_toy_corpus
from tests.test_bad_input import hidden_leftovers, run_nmt, snapshot, usage_error, write_config

# --- text transformations that must not change the result ---------------------------------------

SEPARATORS = ["\t", " \x00", "\x1b ", "\r", "\u2028", "\x0b", "\x7f ", "\x85", "\xa0", "\x0c", " \x9b", "\u3000"]


def lines_of(data: bytes) -> list[str]:
    return data.decode("utf-8").split("\n")[:-1]


def join(lines: list[str], ending: str = "\n") -> bytes:
    return "".join(line + ending for line in lines).encode("utf-8")


def windows_line_endings(name: str, data: bytes) -> bytes:
    return join(lines_of(data), "\r\n")


def mixed_endings_no_final_newline(name: str, data: bytes) -> bytes:
    lines = lines_of(data)
    text = "".join(line + ("\r\n" if i % 2 else "\n") for i, line in enumerate(lines))
    return text.rstrip("\r\n").encode("utf-8")  # the last line has no line ending at all


def byte_order_marks(name: str, data: bytes) -> bytes:
    lines = lines_of(data)
    lines[len(lines) // 2] = BOM + lines[len(lines) // 2]  # where a second file with a BOM was appended
    return BOM.encode("utf-8") + join(lines)


def control_characters(name: str, data: bytes) -> bytes:
    changed = []
    for i, line in enumerate(lines_of(data)):
        line = line.replace(" ", SEPARATORS[i % len(SEPARATORS)], 1)
        changed.append(("\x07" if i % 3 == 0 else "") + line + ("\x00" if i % 2 else ""))
    return join(changed)


def extra_white_space(name: str, data: bytes) -> bytes:
    return join([f" \t{line.replace(' ', '   ')}  " for line in lines_of(data)])


TEXT_VARIANTS = [windows_line_endings, mixed_endings_no_final_newline, byte_order_marks, control_characters,
                 extra_white_space]
VARIANT_IDS = ["windows-line-endings", "mixed-endings-no-final-newline", "byte-order-mark", "control-characters",
               "white-space-runs"]


# --- preprocess ----------------------------------------------------------------------------------


def write_corpus(tmp_path: Path, toy_workspace: Path, change: Callable[[str, bytes], bytes] | None = None,
                 extra: dict[str, list[str]] | None = None) -> Path:
    """The toy corpus in tmp_path/corpus, each file passed through `change`, `extra` lines appended;
    and tmp_path/toy.yaml, the tiny config that reads it."""
    write_config(tmp_path / "toy.yaml", tiny_config_dict(tmp_path))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for source in sorted((toy_workspace / "corpus").iterdir()):
        data = source.read_bytes() + join((extra or {}).get(source.name, []))
        (corpus / source.name).write_bytes(change(source.name, data) if change else data)
    return corpus


def preprocess(tmp_path: Path, *extra_args):
    return run_nmt("preprocess", "--config", "toy.yaml", *extra_args, cwd=tmp_path)


def succeeded(result) -> str:
    stderr = result.stderr.decode("utf-8", errors="replace")
    assert result.returncode == 0 and stderr == "", f"exit code {result.returncode}, stderr:\n{stderr}"
    return result.stdout.decode("utf-8")


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("change", TEXT_VARIANTS, ids=VARIANT_IDS)
def test_preprocess_awkward_text_prepares_the_same_data(tmp_path, toy_workspace, change):
    write_corpus(tmp_path, toy_workspace, change)
    succeeded(preprocess(tmp_path))

    clean, prepared = toy_workspace / "prepared", tmp_path / "prepared"
    names = sorted(p.name for p in clean.iterdir())
    assert sorted(p.name for p in prepared.iterdir()) == names
    for name in names:
        if name != "manifest.json":  # the manifest records paths and seconds
            assert (prepared / name).read_bytes() == (clean / name).read_bytes(), f"{name} differs"
    assert manifest(prepared)["splits"] == manifest(clean)["splits"]


def small_corpus(tmp_path: Path, extra: dict[str, list[str]]) -> None:
    """80 distinct toy pairs (so no pair is a duplicate or too long by chance), `extra` appended, and toy.yaml."""
    write_toy_corpus(tmp_path / "generated", sizes=(200, 5, 5), seed=7)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split in ("train", "valid", "test"):
        src = lines_of((tmp_path / "generated" / f"{split}.src").read_bytes())
        pairs = list(dict.fromkeys(zip(src, map(toy_translation, src))))[:80]
        for side, lines in zip(("src", "tgt"), zip(*pairs)):
            name = f"{split}.{side}"
            (corpus / name).write_bytes(join(list(lines) + extra.get(name, [])))
    shutil.rmtree(tmp_path / "generated")
    write_config(tmp_path / "toy.yaml", tiny_config_dict(tmp_path, data={"max_len": 200}))


def test_preprocess_drops_and_counts_pairs_with_an_empty_side(tmp_path):
    small_corpus(tmp_path, extra={
        "train.src": ["", "wa0 wb1", "", " \t ", "\x00\x07"],
        "train.tgt": ["0AW", "", "", "0AW 1BW", "\u2028"],
        "valid.src": ["", "wc2"],
        "valid.tgt": ["2CW", ""],
    })
    stdout = succeeded(preprocess(tmp_path))

    splits = manifest(tmp_path / "prepared")["splits"]
    assert splits["train"]["dropped"] == {"empty side": 5}
    assert splits["train"]["pairs"] == 80 and splits["train"]["pairs_read"] == 85
    assert splits["valid"]["pairs"] == splits["valid"]["pairs_read"] == 7  # valid and test are never filtered
    assert "dropped {'empty side': 5}" in stdout
    refs = (tmp_path / "prepared" / "valid.tgt.txt").read_text(encoding="utf-8").split("\n")
    assert refs[-3:] == ["2CW", "", ""]  # the references keep the empty line, line for line


def test_preprocess_drops_and_counts_pairs_longer_than_max_len(tmp_path, toy_workspace):
    long_src = " ".join(f"w{c}{i}" for i, c in zip(range(20), "abcdefghijklmnopqrst")) * 15  # 300 words
    endless_word = "wa0" * 25_000  # 75,000 characters without a space
    write_corpus(tmp_path, toy_workspace, extra={
        "train.src": [long_src, endless_word, "wb1 wc2"],
        "train.tgt": [toy_translation(long_src), "0AW", "1BW 2CW"],
    })
    stdout = succeeded(preprocess(tmp_path))

    # The long lines change the vocabulary (and so some token counts): compare with the data itself.
    clean = manifest(toy_workspace / "prepared")["splits"]["train"]
    train = manifest(tmp_path / "prepared")["splits"]["train"]
    key = "longer than max_len=30 tokens"
    assert train["pairs_read"] == clean["pairs_read"] + 3
    assert train["dropped"][key] >= 2 and key in stdout
    assert train["pairs"] + sum(train["dropped"].values()) == train["pairs_read"]
    for side in ("src", "tgt"):
        lengths = np.diff(np.load(tmp_path / "prepared" / f"train.{side}.offsets.npy", allow_pickle=False))
        assert len(lengths) == train["pairs"] and lengths.max() <= 30


def test_preprocess_drops_and_counts_pairs_with_a_length_ratio_above_the_limit(tmp_path):
    small_corpus(tmp_path, extra={"train.src": ["wa0", "wb1 " * 9], "train.tgt": ["0AW " * 9, "1BW"]})
    succeeded(preprocess(tmp_path))
    train = manifest(tmp_path / "prepared")["splits"]["train"]
    assert train["dropped"] == {"length ratio above max_len_ratio=3.0": 2} and train["pairs"] == 80


def test_preprocess_drops_and_counts_duplicate_pairs(tmp_path):
    small_corpus(tmp_path, extra={})
    src = lines_of((tmp_path / "corpus" / "train.src").read_bytes())[5]
    tgt = lines_of((tmp_path / "corpus" / "train.tgt").read_bytes())[5]
    for name, lines in (("train.src", [src, src + "\r", BOM + src.replace(" ", "  ")]),
                        ("train.tgt", [tgt, " " + tgt, tgt + "\t"])):
        with open(tmp_path / "corpus" / name, "ab") as f:
            f.write(join(lines))
    stdout = succeeded(preprocess(tmp_path))
    train = manifest(tmp_path / "prepared")["splits"]["train"]
    assert train["dropped"] == {"duplicate pair": 3} and train["pairs"] == 80  # duplicates after cleaning too
    assert "'duplicate pair': 3" in stdout


def test_preprocess_training_side_with_only_empty_lines(tmp_path, toy_workspace):
    corpus = write_corpus(tmp_path, toy_workspace)
    (corpus / "train.tgt").write_bytes(b" \n\t\n\x00\n" * 100)  # 300 lines, as many as train.src
    before = snapshot(tmp_path)
    usage_error(preprocess(tmp_path), "train.tgt", "no text", "300 empty line", "one sentence per line")
    assert snapshot(tmp_path) == before


def test_preprocess_every_training_pair_filtered_out(tmp_path, toy_workspace):
    write_corpus(tmp_path, toy_workspace)
    before = snapshot(tmp_path)
    usage_error(preprocess(tmp_path, "--max-len", "1"), "every training pair was filtered out", "data.max_len")
    assert snapshot(tmp_path) == before
    assert hidden_leftovers(tmp_path) == []


def test_preprocess_output_in_a_missing_folder_is_created(tmp_path, toy_workspace):
    write_corpus(tmp_path, toy_workspace)
    stdout = succeeded(preprocess(tmp_path, "--out", "new/deeper/prepared"))
    assert "wrote new/deeper/prepared" in stdout
    assert (tmp_path / "new" / "deeper" / "prepared" / "manifest.json").is_file()
    assert hidden_leftovers(tmp_path / "new" / "deeper") == []


# --- translate -----------------------------------------------------------------------------------

SENTENCES = ["wa0 wb1 wc2", "wd3", "", "we4 wf5 wg6 wh7", "wi8 wj9", "", "wk10 wl11 wm12"]


def translate(checkpoint: Path, source: Path, output: Path) -> bytes:
    from nmt.decode.translate import Translator, translate_file

    translator = Translator.load(checkpoint, device="cpu")
    translate_file(translator, source, output, translator.options(beam=2, batch_size=3))
    return output.read_bytes()


@pytest.fixture(scope="module")
def clean_translation(trained_run, tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("clean-translation")
    (folder / "in.txt").write_bytes(join(SENTENCES))
    output = translate(trained_run, folder / "in.txt", folder / "out.txt")
    assert output.count(b"\n") == len(SENTENCES)
    return output


def blank_lines_with_white_space(name: str, data: bytes) -> bytes:
    return join([line if line else " \t\x00\u2028 " for line in lines_of(data)])


@pytest.mark.parametrize("change", TEXT_VARIANTS + [blank_lines_with_white_space],
                         ids=VARIANT_IDS + ["blank-lines-with-white-space"])
def test_translate_awkward_text_gives_the_same_output(tmp_path, trained_run, clean_translation, change):
    (tmp_path / "in.txt").write_bytes(change("in.txt", join(SENTENCES)))
    assert translate(trained_run, tmp_path / "in.txt", tmp_path / "out.txt") == clean_translation


def test_translate_stdin_with_bom_and_windows_line_endings(tmp_path, trained_run, clean_translation):
    data = BOM.encode() + join(SENTENCES, "\r\n")
    result = run_nmt("translate", "-m", trained_run, "--beam", "2", "--batch-size", "3", cwd=tmp_path, stdin=data)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == clean_translation


def test_translate_empty_input_gives_empty_output(tmp_path, trained_run):
    (tmp_path / "in.txt").write_bytes(b"")
    assert translate(trained_run, tmp_path / "in.txt", tmp_path / "out.txt") == b""


def test_translate_source_longer_than_max_len(tmp_path, trained_run):
    """Longer than anything trained on (data.max_len=30): still one line, as long as the decode limit allows."""
    import torch

    from nmt.decode.search import max_lengths
    from nmt.decode.translate import Translator

    words = [f"w{c}{i}" for i, c in zip(range(20), "abcdefghijklmnopqrst")]
    long_line = " ".join(words * 15)  # 300 words, 900 source tokens
    lines = ["wa0 wb1", long_line, "wc2"]
    (tmp_path / "in.txt").write_bytes(join(lines))
    output = translate(trained_run, tmp_path / "in.txt", tmp_path / "out.txt").decode("utf-8")
    assert output.count("\n") == 3 and output.split("\n")[1] != ""

    translator = Translator.load(trained_run, device="cpu")
    d = translator.config.decode
    ids = translator.src_tokenizer.encode([long_line])
    assert len(ids[0]) > 30 * 10
    found = translator.search_ids(ids, translator.options(beam=2, batch_size=1))
    limit = int(max_lengths(torch.tensor([len(ids[0])]), d.max_len_a, d.max_len_b)[0])
    assert 0 < len(found[0][0].tokens) < limit  # the limit counts EOS


# --- bleu ----------------------------------------------------------------------------------------

HYPOTHESES = ["the cat sat on the mat", "a dog barked", "", "it is raining today", "hello world"]
REFERENCES = ["the cat sat on a mat", "the dog barked", "nothing came out", "it rains today", "hello , world"]


def bleu(cwd: Path, hyp: bytes, ref: bytes, *extra) -> subprocess.CompletedProcess:
    (cwd / "hyp.txt").write_bytes(hyp)
    (cwd / "ref.txt").write_bytes(ref)
    return run_nmt("bleu", "hyp.txt", "--ref", "ref.txt", "--json", *extra, cwd=cwd)


@pytest.fixture(scope="module")
def clean_scores(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("clean-bleu")
    return json.loads(succeeded(bleu(folder, join(HYPOTHESES), join(REFERENCES))))


@pytest.mark.parametrize("change", TEXT_VARIANTS, ids=VARIANT_IDS)
def test_bleu_awkward_text_scores_the_same(tmp_path, clean_scores, change):
    scores = json.loads(succeeded(bleu(tmp_path, change("hyp.txt", join(HYPOTHESES)),
                                       change("ref.txt", join(REFERENCES)))))
    assert scores == clean_scores


def test_bleu_empty_hypothesis_lines_are_scored(tmp_path, clean_scores):
    assert clean_scores["sentences"] == 5 and HYPOTHESES[2] == ""
    emptier = json.loads(succeeded(bleu(tmp_path, join(["", *HYPOTHESES[1:]]), join(REFERENCES))))
    assert emptier["sentences"] == 5 and emptier["bleu"] < clean_scores["bleu"]


@pytest.mark.parametrize("hyp, words", [
    (b"the cat\ncaf\xe9 au lait\n\n\n\n", ["hyp.txt", "line 2", "UTF-8", "byte 0xe9", "convert"]),
    ("the cat\nsat\n\n\n\n".encode("utf-16"), ["hyp.txt", "line 1", "UTF-8", "byte 0xff"]),
], ids=["latin-1-byte", "utf-16-file"])
def test_bleu_input_not_utf8(tmp_path, hyp, words):
    usage_error(bleu(tmp_path, hyp, join(REFERENCES)), *words)


def test_bleu_input_is_a_folder(tmp_path):
    (tmp_path / "hyp.txt").mkdir()
    (tmp_path / "ref.txt").write_bytes(join(REFERENCES))
    usage_error(run_nmt("bleu", "hyp.txt", "--ref", "ref.txt", cwd=tmp_path), "hyp.txt", "folder", "text file")


def test_bleu_reference_file_empty(tmp_path):
    usage_error(bleu(tmp_path, join(HYPOTHESES), b""), "ref.txt", "empty", "one sentence per line")


def test_bleu_hypothesis_file_empty(tmp_path):
    usage_error(bleu(tmp_path, b"", join(REFERENCES)), "hyp.txt", "0 lines", "ref.txt", "has 5", "line for line")


def test_bleu_unknown_tokenizer(tmp_path):
    usage_error(bleu(tmp_path, join(HYPOTHESES), join(REFERENCES), "--tokenize", "13b"),
                "'13b'", "unknown BLEU tokenizer", "13a", "intl")


# --- more bad arguments and files ----------------------------------------------------------------


def test_config_not_utf8(tmp_path):
    (tmp_path / "toy.yaml").write_bytes(b"model:\n  layers: 2  # caf\xe9\n")
    usage_error(run_nmt("train", "--config", "toy.yaml", cwd=tmp_path), "toy.yaml", "not UTF-8", "save it as UTF-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.yaml"]


def test_config_not_a_mapping(tmp_path):
    (tmp_path / "toy.yaml").write_text("- data\n- model\n", encoding="utf-8")
    usage_error(run_nmt("preprocess", "--config", "toy.yaml", cwd=tmp_path), "toy.yaml", "must hold a mapping")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.yaml"]


def test_config_zero_size(tmp_path):
    write_config(tmp_path / "toy.yaml", tiny_config_dict(tmp_path, data={"max_len": 0}))
    usage_error(run_nmt("preprocess", "--config", "toy.yaml", cwd=tmp_path), "data.max_len", "positive", "got 0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.yaml"]


@pytest.mark.parametrize("args, words", [
    ([], ["nmt train needs --config", "--resume"]),
    (["--config", "toy.yaml", "--resume", "run"], ["--resume takes the config from the checkpoint", "drop --config"]),
], ids=["neither-config-nor-resume", "config-and-resume"])
def test_train_bad_arguments(tmp_path, args, words):
    write_config(tmp_path / "toy.yaml", tiny_config_dict(tmp_path))
    before = snapshot(tmp_path)
    usage_error(run_nmt("train", *args, cwd=tmp_path), *words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("options, words", [
    (["--length-penalty", "-1"], ["--length-penalty", "0 or more", "-1"]),
    (["--n-best", "0"], ["--n-best", "at least 1", "got 0"]),
], ids=["negative-length-penalty", "n-best-0"])
def test_translate_more_bad_options(tmp_path, trained_run, options, words):
    (tmp_path / "in.txt").write_text("wa0\n", encoding="utf-8")
    before = snapshot(tmp_path)
    usage_error(run_nmt("translate", "-m", trained_run, "in.txt", *options, cwd=tmp_path), *words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("options, words", [
    (["--sample", "--top-p", "0"], ["--top-p", "(0, 1]", "got 0.0"]),
    (["--sample", "--temperature", "-1"], ["--temperature", "0 (greedy) or more", "-1"]),
    (["--min-len-b", "3"], ["--min-len-b 3", "below", "--max-len-b 3"]),
    (["--word-penalty", "nan"], ["--word-penalty", "finite", "nan"]),
    (["--sample", "--n-samples", "2", "--n-best", "3"], ["--n-best 3", "--n-samples 2", "sampling"]),
    (["--ensemble-mode", "median"], ["--ensemble-mode", "mean, log_linear", "median"]),
], ids=["top-p-0", "negative-temperature", "minimum-not-below-maximum", "word-penalty-nan",
        "n-best-above-n-samples", "unknown-ensemble-mode"])
def test_translate_bad_search_options(tmp_path, trained_run, options, words):
    (tmp_path / "in.txt").write_text("wa0\n", encoding="utf-8")
    before = snapshot(tmp_path)
    usage_error(run_nmt("translate", "-m", trained_run, "in.txt", *options, cwd=tmp_path), *words)
    assert snapshot(tmp_path) == before


def test_translate_ensemble_with_another_target_vocabulary(tmp_path, trained_run):
    """A member whose target pieces differ (here: the source model as its target tokenizer, the
    same size, its checksum made consistent so that the checkpoint itself loads)."""
    import hashlib

    other = tmp_path / "other"
    shutil.copytree(trained_run / "best", other, symlinks=False)
    (other / "tgt.model").write_bytes((other / "src.model").read_bytes())
    meta = json.loads((other / "meta.json").read_text())
    meta["tokenizers"]["tgt.model"] = hashlib.sha256((other / "tgt.model").read_bytes()).hexdigest()
    (other / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "in.txt").write_text("wa0\n", encoding="utf-8")
    usage_error(run_nmt("translate", "-m", trained_run, "-m", "other", "in.txt", cwd=tmp_path),
                "ensemble member other", "another target vocabulary", "same size, other pieces",
                "same prepared data")


def test_translate_checkpoint_is_a_file(tmp_path, trained_run):
    shutil.copyfile(trained_run / "last" / "model.safetensors", tmp_path / "model.safetensors")
    (tmp_path / "in.txt").write_text("wa0\n", encoding="utf-8")
    before = snapshot(tmp_path)
    usage_error(run_nmt("translate", "-m", "model.safetensors", "in.txt", cwd=tmp_path),
                "model.safetensors", "is a file", "checkpoint is a folder")
    assert snapshot(tmp_path) == before


# --- attention: translate --attention, analyze attention, train.tensorboard ----------------------

@pytest.mark.parametrize("case", ["model-without-attention", "ensemble", "same-file-as-output"])
def test_translate_attention_refusals(tmp_path, trained_run, attention_run, case):
    """Refused before anything is translated: no output file, no weights file."""
    (tmp_path / "in.txt").write_text("wa0\n", encoding="utf-8")
    before = snapshot(tmp_path)
    models, output, words = {
        "model-without-attention": (["-m", trained_run], "out.txt",
                                    ["trained without attention", "model.attention: none"]),
        "ensemble": (["-m", attention_run, "-m", attention_run], "out.txt",
                     ["an ensemble of 2", "a single --checkpoint"]),
        "same-file-as-output": (["-m", attention_run], "att.jsonl", ["--attention att.jsonl", "--output file"]),
    }[case]
    usage_error(run_nmt("translate", *models, "in.txt", "-o", output, "--attention", "att.jsonl", cwd=tmp_path),
                *words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", ["model-without-attention", "no-sentences", "too-many-sentences"])
def test_analyze_attention_refusals(tmp_path, trained_run, attention_run, case):
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    (tmp_path / "many.txt").write_text("wa0\n" * 101, encoding="utf-8")
    before = snapshot(tmp_path)
    arguments, words = {
        "model-without-attention": ([trained_run, "--sentence", "wa0"], ["trained without attention"]),
        "no-sentences": ([attention_run, "empty.txt"], ["no sentences", "--sentence TEXT"]),
        "too-many-sentences": ([attention_run, "many.txt"], ["101 sentences", "at most 100"]),
    }[case]
    usage_error(run_nmt("analyze", "attention", *arguments, "--out", "out", cwd=tmp_path), *words)
    assert snapshot(tmp_path) == before  # no output folder either


def test_train_tensorboard_without_the_package(workspace):
    """A tensorboard package that cannot be imported (as when it is not installed) stops the run
    before its first step, and leaves no run folder."""
    import os
    import sys

    missing = workspace / "no-tensorboard" / "tensorboard"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text('raise ImportError("No module named \'tensorboard\'")\n')
    config = write_config(workspace / "toy.yaml", tiny_config_dict(workspace, train={"tensorboard": True}))
    before = snapshot(workspace)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(missing.parent), str(Path(__file__).parents[1])])}
    result = subprocess.run([sys.executable, "-m", "nmt", "train", "--config", config], cwd=workspace, env=env,
                            capture_output=True, timeout=300)
    usage_error(result, "train.tensorboard: true", "pip install 'nmt[tensorboard]'", "train.tensorboard: false")
    assert snapshot(workspace) == before
