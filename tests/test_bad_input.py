"""Bad input through the real command line: one clear line on stderr, exit code 2, nothing lost.

Every case runs `python -m nmt ...` in a subprocess (cwd a fresh tmp folder) and checks that
  - the exit code is 2 (a usage or input error, not a crash and not a runtime failure);
  - stderr is exactly one non-empty line, `error: ...`, that names the offending file or key
    and says what to do about it;
  - there is no traceback;
  - nothing that was on disk before is overwritten or lost, and no half-written output appears.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_config_dict, write_toy_corpus

# --- helpers -----------------------------------------------------------------------------------


def run_nmt(*args, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmt", *map(str, args)], cwd=cwd, input=stdin,
                          capture_output=True, timeout=300)


def usage_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """Assert `result` is a clean usage error whose one line contains every word; return the line."""
    stderr = result.stderr.decode("utf-8", errors="replace")
    shown = f"exit code {result.returncode}, stderr:\n{stderr}"
    assert "Traceback" not in stderr, shown
    assert result.returncode == 2, shown
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr; {shown}"
    line = lines[0]
    assert line.startswith("error: ") and line[len("error: "):].strip(), shown
    for word in words:
        assert word in line, f"{word!r} missing from the message: {line}"
    return line


def snapshot(root: Path) -> dict:
    """Every entry under `root` (symbolic links not followed) with its bytes and mtime."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                state[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                state[rel] = ("dir",)
            else:
                state[rel] = ("file", path.read_bytes(), path.stat().st_mtime_ns)
    return state


def write_config(path: Path, raw) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def hidden_leftovers(folder: Path) -> list[str]:
    """Temporary files or folders (dot-names) that a failed command left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- preprocess --------------------------------------------------------------------------------


def _break_missing(corpus: Path):
    (corpus / "train.src").unlink()
    return ["train.src", "not found"]


def _break_empty(corpus: Path):
    (corpus / "train.src").write_bytes(b"")
    return ["train.src", "empty", "one sentence per line"]


def _break_counts(corpus: Path):
    lines = (corpus / "train.tgt").read_text(encoding="utf-8").splitlines(keepends=True)
    (corpus / "train.tgt").write_text("".join(lines[:-3]), encoding="utf-8")
    return ["train.src", "train.tgt", "30 lines", "has 27", "line N"]


def _break_utf8(corpus: Path):
    lines = (corpus / "train.src").read_bytes().splitlines(keepends=True)
    lines[6] = b"caf\xe9 " + lines[6]  # latin-1 e-acute on line 7
    (corpus / "train.src").write_bytes(b"".join(lines))
    return ["train.src", "line 7", "UTF-8", "convert"]


def _break_folder(corpus: Path):
    (corpus / "train.src").unlink()
    (corpus / "train.src").mkdir()
    return ["train.src", "folder", "text file"]


@pytest.mark.parametrize("damage", [_break_missing, _break_empty, _break_counts, _break_utf8, _break_folder],
                         ids=["missing-source", "empty-source", "line-counts-differ", "invalid-utf8",
                              "folder-instead-of-file"])
def test_preprocess_bad_corpus(tmp_path, damage):
    write_toy_corpus(tmp_path / "corpus", sizes=(30, 5, 5))
    words = damage(tmp_path / "corpus")
    config = write_config(tmp_path / "toy.yaml", tiny_config_dict(tmp_path))
    before = snapshot(tmp_path)

    line = usage_error(run_nmt("preprocess", "--config", config, cwd=tmp_path), *words)
    if damage is _break_counts:  # both files, each with its own count (the folder's own name may hold digits)
        named = line.replace(str(tmp_path), "")
        assert named.index("train.src") < named.index("30") < named.index("train.tgt") < named.index("27"), line
    assert snapshot(tmp_path) == before  # no prepared folder, no temporary folder, corpus untouched


def test_preprocess_config_is_a_folder(tmp_path):
    (tmp_path / "toy.yaml").mkdir()
    usage_error(run_nmt("preprocess", "--config", "toy.yaml", cwd=tmp_path), "toy.yaml", "folder")
    assert not (tmp_path / "prepared").exists()


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_preprocess_existing_output_is_kept(tmp_path, kind):
    write_toy_corpus(tmp_path / "corpus", sizes=(30, 5, 5))
    config = write_config(tmp_path / "toy.yaml", tiny_config_dict(tmp_path))
    out = tmp_path / "prepared"
    if kind == "folder":
        out.mkdir()
        (out / "manifest.json").write_text('{"precious": true}\n')
        (out / "train.src.ids.npy").write_bytes(b"\x93NUMPY old bytes")
    else:
        out.write_text("not a folder, but mine\n")
    before = snapshot(tmp_path)

    words = ["already exists", "--overwrite"] if kind == "folder" else ["is a file", "name a folder"]
    usage_error(run_nmt("preprocess", "--config", config, cwd=tmp_path), "prepared", *words)
    if kind == "file":  # --overwrite replaces only a prepared-data folder, never a file
        usage_error(run_nmt("preprocess", "--config", config, "--overwrite", cwd=tmp_path), "prepared", *words)
    assert snapshot(tmp_path) == before


def test_preprocess_vocabulary_too_large(tmp_path):
    write_toy_corpus(tmp_path / "corpus", sizes=(60, 5, 5))
    config = write_config(tmp_path / "toy.yaml",
                          tiny_config_dict(tmp_path, data={"src_vocab_size": 5000, "tgt_vocab_size": 5000}))
    before = snapshot(tmp_path)

    usage_error(run_nmt("preprocess", "--config", config, cwd=tmp_path),
                "5000", "vocabulary size", "data.src_vocab_size")
    assert snapshot(tmp_path) == before
    assert hidden_leftovers(tmp_path) == []


# --- config ------------------------------------------------------------------------------------


def _unknown_key(raw):
    raw["train"]["lr_rate"] = 0.1
    return ["train.lr_rate", "did you mean 'lr'"]


def _unknown_section(raw):
    raw["trian"] = {"lr": 0.1}
    return ["'trian'", "section", "did you mean 'train'"]


def _wrong_type(raw):
    raw["model"]["layers"] = "four"
    return ["model.layers", "whole number", "'four'"]


def _negative_size(raw):
    raw["model"]["hidden"] = -5
    return ["model.hidden", "positive", "-5"]


@pytest.mark.parametrize("change", [_unknown_key, _unknown_section, _wrong_type, _negative_size],
                         ids=["unknown-key", "unknown-section", "wrong-type", "negative-size"])
def test_config_bad_value(tmp_path, change):
    raw = tiny_config_dict(tmp_path)
    words = change(raw)
    config = write_config(tmp_path / "toy.yaml", raw)
    before = snapshot(tmp_path)

    usage_error(run_nmt("train", "--config", config, cwd=tmp_path), *words)
    assert snapshot(tmp_path) == before  # no run folder


@pytest.mark.parametrize("override, words", [
    ("train.lr_rate=0.1", ["train.lr_rate", "did you mean 'lr'"]),
    ("modle.layers=2", ["'modle'", "did you mean 'model'"]),
    ("model.layers=four", ["model.layers", "whole number"]),
], ids=["unknown-key", "unknown-section", "wrong-type"])
def test_config_bad_override(tmp_path, override, words):
    config = write_config(tmp_path / "toy.yaml", tiny_config_dict(tmp_path))
    before = snapshot(tmp_path)

    usage_error(run_nmt("train", "--config", config, "--set", override, cwd=tmp_path), *words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("task", ["translation", "lm"])
def test_config_lstm_kernel_where_it_cannot_run(tmp_path, task):
    """model.lstm_kernel: triton is for language models, on a CUDA GPU with Triton."""
    raw = tiny_config_dict(tmp_path)
    if task == "lm":  # a prepared corpus: the refusal is about the kernels, not the data
        from nmt.config import config_from_dict
        from nmt.tasks import prepare_data
        from tests.test_lm import lm_config_dict, write_lm_corpus

        write_lm_corpus(tmp_path / "text")
        raw = lm_config_dict(tmp_path)
        prepare_data(config_from_dict(raw))
    config = write_config(tmp_path / "toy.yaml", raw)
    before = snapshot(tmp_path)

    result = run_nmt("train", "--config", config, "--set", "model.lstm_kernel=triton", cwd=tmp_path)
    usage_error(result, "model.lstm_kernel", *(["language models"] if task == "translation" else ["CUDA", "auto"]))
    assert snapshot(tmp_path) == before


def test_config_file_missing(tmp_path):
    usage_error(run_nmt("train", "--config", "nope.yaml", cwd=tmp_path), "nope.yaml", "not found", "existing")
    assert list(tmp_path.iterdir()) == []


def test_config_not_yaml(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("model:\n  layers: 2\n  hidden: [32, 64\ntrain:\n  lr: 0.5\n", encoding="utf-8")
    before = snapshot(tmp_path)

    line = usage_error(run_nmt("train", "--config", "broken.yaml", cwd=tmp_path), "broken.yaml", "not valid YAML")
    assert "line " in line, f"the message should say where the syntax error is: {line}"
    assert snapshot(tmp_path) == before


# --- train -------------------------------------------------------------------------------------


def test_resume_without_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {layers: 2}\n")
    before = snapshot(tmp_path)

    usage_error(run_nmt("train", "--resume", "run", cwd=tmp_path), "run", "no checkpoint", "nmt train --config")
    assert snapshot(tmp_path) == before


def test_resume_missing_folder(tmp_path):
    line = usage_error(run_nmt("train", "--resume", "runs/typo", cwd=tmp_path), "runs/typo", "no such run folder")
    assert "check the path" in line or "nmt train --config" in line, f"no fix in: {line}"
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_run_folder_with_checkpoints(workspace, copy_of_run):
    assert copy_of_run == workspace / "run"
    config = write_config(workspace / "toy.yaml", tiny_config_dict(workspace))
    before = snapshot(copy_of_run)

    usage_error(run_nmt("train", "--config", config, cwd=workspace),
                "run", "already holds checkpoints", "--resume", "train.run_dir")
    assert snapshot(copy_of_run) == before


@pytest.mark.parametrize("prepared", ["empty", "corpus", "missing"])
def test_train_with_unprepared_data(workspace, prepared):
    folder = {"empty": workspace / "empty", "corpus": workspace / "corpus", "missing": workspace / "missing"}[prepared]
    if prepared == "empty":
        folder.mkdir()
    config = write_config(workspace / "toy.yaml", tiny_config_dict(workspace, data={"prepared": str(folder)}))
    before = snapshot(workspace)

    usage_error(run_nmt("train", "--config", config, cwd=workspace),
                folder.name, "not a prepared-data folder", "nmt preprocess")
    assert snapshot(workspace) == before  # in particular, no run folder was started


# --- translate ---------------------------------------------------------------------------------

OLD_OUTPUT = b"an earlier translation\nthat must survive\n"


@pytest.fixture
def old_output(tmp_path) -> Path:
    """An existing output file that a failed translate must leave alone."""
    path = tmp_path / "out.txt"
    path.write_bytes(OLD_OUTPUT)
    return path


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("wa0 wb1\nwc2\n", encoding="utf-8")
    return path


def _translate_fails(cwd: Path, checkpoint, *extra, stdin=None, words=()):
    before = snapshot(cwd)
    line = usage_error(run_nmt("translate", "--checkpoint", checkpoint, "--output", "out.txt", *extra,
                               cwd=cwd, stdin=stdin), *words)
    assert snapshot(cwd) == before  # out.txt keeps its bytes and mtime; no temporary file is left
    return line


def test_translate_checkpoint_missing(tmp_path, source, old_output):
    _translate_fails(tmp_path, "runs/nope", "in.txt", words=["runs/nope", "not found", "checkpoint folder"])


def _no_weights(ckpt: Path):
    (ckpt / "model.safetensors").unlink()
    return ["model.safetensors", "missing", "use another"]


def _truncated_weights(ckpt: Path):
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    return ["model.safetensors", "corrupt", "use another"]


def _random_weights(ckpt: Path):
    size = (ckpt / "model.safetensors").stat().st_size
    (ckpt / "model.safetensors").write_bytes(os.urandom(size))
    return ["model.safetensors", "corrupt", "use another"]


class _Payload:
    """Unpickling this creates a file: proof that a checkpoint was unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _pickled_weights(ckpt: Path):
    marker = ckpt.parent.parent / "UNPICKLED"
    (ckpt / "model.safetensors").write_bytes(pickle.dumps({"encoder.weight": _Payload(marker)}))
    return ["model.safetensors", "corrupt", "SHA-256", "use another"]


def _torch_saved_weights(ckpt: Path):
    import torch

    torch.save({"encoder.weight": torch.zeros(3)}, ckpt / "model.safetensors")
    return ["model.safetensors", "corrupt", "SHA-256", "use another"]


def _corrupt_config(ckpt: Path):
    text = (ckpt / "config.json").read_text()
    (ckpt / "config.json").write_text(text[: len(text) // 2])
    return ["config.json", "corrupt", "use another"]


def _corrupt_tokenizer(ckpt: Path):
    (ckpt / "src.model").write_bytes(os.urandom(2000))
    return ["src.model", "corrupt"]


def _other_tokenizer(ckpt: Path):
    shutil.copyfile(ckpt / "tgt.model", ckpt / "src.model")
    return ["src.model", "not the tokenizer", "checksum", "restore"]


@pytest.mark.parametrize("damage", [_no_weights, _truncated_weights, _random_weights, _pickled_weights,
                                    _torch_saved_weights, _corrupt_config, _corrupt_tokenizer, _other_tokenizer],
                         ids=["weights-missing", "weights-truncated", "weights-random-bytes", "weights-pickle",
                              "weights-torch-save", "config-json-corrupt", "tokenizer-corrupt",
                              "tokenizer-replaced"])
def test_translate_damaged_checkpoint(tmp_path, copy_of_run, source, old_output, damage):
    ckpt = copy_of_run / "best"
    assert (ckpt / "src.model").exists() and (ckpt / "tgt.model").exists()  # separate vocabularies
    words = damage(ckpt)
    _translate_fails(tmp_path, "run/best", "in.txt", words=words)
    assert not (tmp_path / "UNPICKLED").exists()


@pytest.mark.parametrize("options, words", [
    (["--beam", "0"], ["--beam", "at least 1", "got 0"]),
    (["--batch-size", "0"], ["--batch-size", "at least 1", "got 0"]),
    (["--beam", "2", "--n-best", "3"], ["--n-best 3", "--beam 2"]),
], ids=["beam-0", "batch-size-0", "n-best-above-beam"])
def test_translate_bad_options(tmp_path, trained_run, source, old_output, options, words):
    _translate_fails(tmp_path, trained_run, "in.txt", *options, words=words)


def test_translate_output_folder_missing(tmp_path, trained_run, source):
    before = snapshot(tmp_path)
    usage_error(run_nmt("translate", "-m", trained_run, "in.txt", "--output", "nowhere/out.txt", cwd=tmp_path),
                "nowhere", "does not exist", "create it")
    assert snapshot(tmp_path) == before  # no folder made, no partial file


def test_translate_output_is_a_folder(tmp_path, trained_run, source):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    usage_error(run_nmt("translate", "-m", trained_run, "in.txt", "--output", "out", cwd=tmp_path),
                "out", "is a folder", "name a file")
    assert snapshot(tmp_path) == before


def test_translate_input_missing(tmp_path, trained_run, old_output):
    _translate_fails(tmp_path, trained_run, "missing.txt", words=["missing.txt", "not found"])


def test_translate_input_is_a_folder(tmp_path, trained_run, old_output):
    (tmp_path / "in.txt").mkdir()
    _translate_fails(tmp_path, trained_run, "in.txt", words=["in.txt", "folder"])


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_translate_input_not_utf8(tmp_path, trained_run, old_output, via):
    data = b"wa0 wb1\nwc2\nwd3 caf\xe9\nwe4\n"  # latin-1 on line 3
    if via == "file":
        (tmp_path / "in.txt").write_bytes(data)
        _translate_fails(tmp_path, trained_run, "in.txt", words=["in.txt", "line 3", "UTF-8", "convert"])
    else:
        _translate_fails(tmp_path, trained_run, stdin=data, words=["<stdin>", "line 3", "UTF-8", "convert"])


def test_translate_writes_one_line_per_input_line_atomically(tmp_path, copy_of_run):
    sentences = ["wa0 wb1 wc2 wd3 we4 wf5 wg6", "", "wh7", "wi8 wj9 wk10", "", "wl11 wm12", "wn13 wo14 wp15 wq16"]
    (tmp_path / "in.txt").write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    (tmp_path / "reversed.txt").write_text("".join(s + "\n" for s in reversed(sentences)), encoding="utf-8")
    out = tmp_path / "out.txt"
    out.write_bytes(OLD_OUTPUT)
    os.link(out, tmp_path / "old-link.txt")  # a second name for the old file's inode
    common = ["--checkpoint", "run", "--beam", "1", "--batch-size", "2"]

    result = run_nmt("translate", *common, "in.txt", "--output", "out.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    # Replaced by a rename, never written in place: the old inode still holds the old bytes.
    assert (tmp_path / "old-link.txt").read_bytes() == OLD_OUTPUT
    assert out.stat().st_ino != (tmp_path / "old-link.txt").stat().st_ino
    assert hidden_leftovers(tmp_path) == []

    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = text.split("\n")[:-1]
    assert len(lines) == len(sentences)
    for sentence, line in zip(sentences, lines):
        assert (line == "") == (sentence == ""), (sentence, line)

    # Input order: the reversed input gives the reversed output, and a batch of one gives the same lines.
    backwards = run_nmt("translate", *common, "reversed.txt", cwd=tmp_path)
    assert backwards.returncode == 0, backwards.stderr.decode()
    assert backwards.stdout.decode("utf-8").split("\n")[:-1] == lines[::-1]
    one_by_one = run_nmt("translate", "--checkpoint", "run", "--beam", "1", "--batch-size", "1", "in.txt",
                         cwd=tmp_path)
    assert one_by_one.stdout.decode("utf-8").split("\n")[:-1] == lines
    assert len(set(lines) - {""}) > 1, f"the model gives one output for everything, order is untested: {lines}"


# --- bleu --------------------------------------------------------------------------------------


def test_bleu_line_counts_differ(tmp_path):
    (tmp_path / "hyp.txt").write_text("a b c\nd e f\ng h\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("a b c\nd e f\ng h\ni j\n", encoding="utf-8")
    before = snapshot(tmp_path)
    line = usage_error(run_nmt("bleu", "hyp.txt", "--ref", "ref.txt", cwd=tmp_path),
                       "hyp.txt", "ref.txt", "3 lines", "has 4", "line for line")
    assert line.index("hyp.txt") < line.index("3") < line.index("ref.txt") < line.index("4"), line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("missing", ["ref", "hyp"])
def test_bleu_missing_file(tmp_path, missing):
    present = {"ref": "hyp.txt", "hyp": "ref.txt"}[missing]
    (tmp_path / present).write_text("a b c\n", encoding="utf-8")
    name = {"ref": "ref.txt", "hyp": "hyp.txt"}[missing]
    usage_error(run_nmt("bleu", "hyp.txt", "--ref", "ref.txt", cwd=tmp_path), name, "not found")


# --- average -----------------------------------------------------------------------------------


def test_average_refuses_a_checkpoint_of_another_model(tmp_path, trained_run):
    other = tmp_path / "other"
    shutil.copytree(trained_run / "last", other)
    config = json.loads((other / "config.json").read_text())
    config["model"]["hidden"] += 1
    (other / "config.json").write_text(json.dumps(config))
    usage_error(run_nmt("average", trained_run / "last", other, "-o", "avg", cwd=tmp_path),
                "other", "another model", "one run")
    assert not (tmp_path / "avg").exists() and not list(tmp_path.glob(".avg*"))


def test_average_keeps_an_existing_output(tmp_path, trained_run):
    (tmp_path / "avg").mkdir()
    (tmp_path / "avg" / "mine.txt").write_text("keep me", encoding="utf-8")
    before = snapshot(tmp_path)
    usage_error(run_nmt("average", trained_run, "--best", "2", "-o", "avg", cwd=tmp_path), "avg", "already exists")
    assert snapshot(tmp_path) == before


def test_average_run_without_evaluated_checkpoints(tmp_path):
    (tmp_path / "run").mkdir()
    usage_error(run_nmt("average", "run", "--best", "2", "-o", "avg", cwd=tmp_path),
                "run", "no evaluated checkpoints", "train.eval_every")


def test_average_best_with_several_folders(tmp_path, trained_run):
    usage_error(run_nmt("average", trained_run, trained_run, "--best", "2", "-o", "avg", cwd=tmp_path),
                "--best", "one run folder")
