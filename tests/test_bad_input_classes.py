"""Bad inputs by class, each fixed where it arises (issue 18), through the real command line.

  - config values: one place checks type, finiteness and range (nmt/config.py `_coerce`,
    `validate`), and the YAML reader refuses duplicate keys and deep nesting, showing values short;
  - the JSON files of runs, checkpoints and prepared folders: one reader checks they are objects
    with the keys their reader needs (nmt/files.py `read_json`);
  - outputs: one writer refuses to replace its own input, writes into pipes and devices, and
    turns every OS error into one line (nmt/files.py `write_atomically`; preprocess's folder check);
  - run folders: one guard locks them and leaves nothing behind when a run fails before its
    first checkpoint (nmt/train/start.py `run_folder`); quickstart's work folder likewise;
  - signals: a second Ctrl-C never shows a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import tiny_config_dict, write_toy_corpus
from tests.test_bad_input import hidden_leftovers, run_nmt, snapshot, usage_error, write_config


@pytest.fixture
def toy(tmp_path) -> Path:
    """A folder with a toy corpus and its config (toy.yaml; prepared data in ./prepared)."""
    write_toy_corpus(tmp_path / "corpus", sizes=(40, 6, 6))
    write_config(tmp_path / "toy.yaml", tiny_config_dict(tmp_path, train={"max_steps": 2}))
    return tmp_path


# --- config values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("override, words", [
    ("train.clip_norm=.inf", ["train.clip_norm", "finite", "inf"]),
    ("train.label_smoothing=.nan", ["train.label_smoothing", "finite", "nan"]),
    ("decode.max_len_a=1.0e+999", ["decode.max_len_a", "finite"]),
    ("train.seed=-5", ["train.seed", "0 or more", "-5"]),
    ("train.threads=-1", ["train.threads", "or more", "got -1"]),
    ("train.batch_size=1000000000000000000000000", ["train.batch_size", "out of range"]),
    ("data.workers=-1", ["data.workers", "0 (one per core) or more", "got -1"]),
    ("train.cuda_graphs=always", ["train.cuda_graphs", "true, false or auto", "'always'"]),
    ("train.max_graphs=0", ["train.max_graphs", "positive", "got 0"]),
], ids=["inf", "nan", "huge-float", "negative-seed", "negative-threads", "huge-int", "negative-workers",
        "switch-not-auto", "zero-max-graphs"])
def test_config_numbers_must_be_finite_and_in_range(toy, override, words):
    before = snapshot(toy)
    usage_error(run_nmt("train", "--config", "toy.yaml", "--set", override, cwd=toy), *words)
    assert snapshot(toy) == before


@pytest.mark.parametrize("text, words", [
    ("decode: [1, 2]\n", ["section 'decode'", "mapping"]),
    ("data: just text\n", ["section 'data'", "mapping"]),
    ("model:\n  hidden: 32\n  layers: 2\n  hidden: 64\n", ["'hidden' is written twice", "line 4"]),
    ("train:\n  lr: 0.5\ntrain:\n  seed: 3\n", ["'train' is written twice", "line 3"]),
], ids=["section-a-list", "section-a-string", "key-twice", "section-twice"])
def test_config_file_shapes_are_refused(tmp_path, text, words):
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    usage_error(run_nmt("train", "--config", "c.yaml", cwd=tmp_path), "c.yaml" if "twice" in words[0] else "",
                *words)


def test_config_nested_thousands_deep_is_one_line(tmp_path):
    (tmp_path / "deep.yaml").write_text("model:\n  hidden: " + "[" * 4000 + "]" * 4000 + "\n", encoding="utf-8")
    usage_error(run_nmt("train", "--config", "deep.yaml", cwd=tmp_path), "deep.yaml", "too deeply")
    deep = "[" * 4000 + "1" + "]" * 4000
    usage_error(run_nmt("train", "--config", "deep.yaml", "--set", f"train.lr={deep}", cwd=tmp_path), "too deeply")


def test_config_alias_expansion_shows_a_short_value(tmp_path):
    """A few hundred bytes of nested YAML aliases name ten million values: the line stays short."""
    anchors = ["&a [" + ", ".join(["x"] * 10) + "]"]
    anchors += [f"&{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(6)]
    (tmp_path / "bomb.yaml").write_text(f"model:\n  hidden: [{', '.join(anchors)}]\n", encoding="utf-8")
    assert (tmp_path / "bomb.yaml").stat().st_size < 400
    line = usage_error(run_nmt("train", "--config", "bomb.yaml", cwd=tmp_path), "model.hidden", "whole number")
    assert len(line) < 300, len(line)


def test_a_model_too_large_for_memory_is_refused_before_allocating(toy):
    run_nmt("preprocess", "--config", "toy.yaml", cwd=toy)
    before = snapshot(toy)
    line = usage_error(run_nmt("train", "--config", "toy.yaml", "--set", "model.hidden=2000000", "--set",
                               "model.embed=2000000", cwd=toy), "parameters", "GiB", "free", "lower model.hidden")
    assert "cpu" in line
    assert snapshot(toy) == before  # no run folder left behind
    assert run_nmt("train", "--config", "toy.yaml", cwd=toy).returncode == 0  # and the next attempt runs



# --- JSON files of runs, checkpoints, prepared data ---------------------------------------------------


def _rewrite(path: Path, change) -> None:
    value = json.loads(path.read_text()) if path.exists() else None
    path.write_text(json.dumps(change(value)))


@pytest.mark.parametrize("name, change, words", [
    ("config.json", lambda v: {}, ["config.json", "'data' is missing"]),
    ("config.json", lambda v: {**v, "train": "fast"}, ["config.json", "'train'", "not a dict"]),
    ("trainer.json", lambda v: [v], ["trainer.json", "a JSON list, not an object"]),
    ("trainer.json", lambda v: {k: x for k, x in v.items() if k != "step"}, ["trainer.json", "'step' is missing"]),
    ("trainer.json", lambda v: {**v, "tgt_tokens": "many"}, ["trainer.json", "'tgt_tokens'", "not a int"]),
    ("meta.json", lambda v: None, ["meta.json", "a JSON NoneType, not an object"]),
    ("meta.json", lambda v: {**v, "tokenizers": {"../../secret": "0"}}, ["meta.json", "tokenizers"]),
], ids=["config-empty", "config-section-string", "trainer-list", "trainer-no-step", "trainer-string-count",
        "meta-null", "meta-tokenizer-path"])
def test_resume_refuses_damaged_json(tmp_path, copy_of_run, name, change, words):
    target = copy_of_run / "last" / name
    _rewrite(target, change)
    before = snapshot(copy_of_run)
    usage_error(run_nmt("train", "--resume", "run", cwd=tmp_path), *words, "use another")
    assert snapshot(copy_of_run) == before


@pytest.mark.parametrize("change, words", [
    (lambda v: {}, ["manifest.json", "'src_vocab_size' is missing", "nmt preprocess again"]),
    (lambda v: {**v, "tgt_vocab_size": "8000"}, ["manifest.json", "'tgt_vocab_size'", "nmt preprocess again"]),
], ids=["empty", "size-a-string"])
def test_train_refuses_a_damaged_manifest(toy, change, words):
    run_nmt("preprocess", "--config", "toy.yaml", cwd=toy)
    _rewrite(toy / "prepared" / "manifest.json", change)
    before = snapshot(toy)
    usage_error(run_nmt("train", "--config", "toy.yaml", cwd=toy), *words)
    assert snapshot(toy) == before


# --- outputs ----------------------------------------------------------------------------------------


def test_translate_never_writes_over_its_own_input(tmp_path, trained_run):
    text = "wa0 wb1\nwc2\n"
    (tmp_path / "text.txt").write_text(text)
    (tmp_path / "link.txt").symlink_to(tmp_path / "text.txt")
    for output in ("text.txt", "./text.txt", "link.txt"):
        usage_error(run_nmt("translate", "-m", trained_run, "text.txt", "-o", output, cwd=tmp_path),
                    "is the input text.txt", "another output")
    assert (tmp_path / "text.txt").read_text() == text


def test_translate_writes_into_a_named_pipe(tmp_path, trained_run):
    (tmp_path / "in.txt").write_text("wa0 wb1\n\nwc2\n")
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = run_nmt("translate", "-m", trained_run, "in.txt", "-o", "out.fifo", cwd=tmp_path)
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert received and received[0].count(b"\n") == 3  # the reader got the translation through the pipe
    assert fifo.is_fifo()  # and the pipe is still a pipe


def test_translate_to_dev_stdout(tmp_path, trained_run):
    (tmp_path / "in.txt").write_text("wa0 wb1\nwc2\n")
    result = run_nmt("translate", "-m", trained_run, "in.txt", "-o", "/dev/stdout", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.count(b"\n") == 2, result


def test_an_output_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    """(As root a read-only folder can still be written: the OS error is injected.)"""
    import errno
    import tempfile

    from nmt.errors import DataError
    from nmt.files import write_atomically

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(DataError, match="cannot write .*out.txt: Permission denied"):
        write_atomically(tmp_path / "out.txt", "text\n")
    assert list(tmp_path.iterdir()) == []


def test_preprocess_onto_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    import errno

    import numpy as np

    from nmt.config import config_from_dict
    from nmt.data.prepare import prepare
    from nmt.errors import DataError

    write_toy_corpus(tmp_path / "corpus", sizes=(40, 6, 6))
    config = config_from_dict(tiny_config_dict(tmp_path))

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(DataError, match="No space left on device; free space"):
        prepare(config.data, tmp_path / "prepared")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]  # no prepared folder, no temporary one


def test_preprocess_never_overwrites_the_corpus_it_reads(tmp_path):
    write_toy_corpus(tmp_path / "data" / "corpus", sizes=(40, 6, 6))
    raw = tiny_config_dict(tmp_path)
    raw["data"].update({split: str(tmp_path / "data" / "corpus" / split) for split in ("train", "valid", "test")})
    write_config(tmp_path / "toy.yaml", raw)
    before = snapshot(tmp_path)
    for out in ("data", "data/corpus"):
        usage_error(run_nmt("preprocess", "--config", "toy.yaml", "--out", out, "--overwrite", cwd=tmp_path),
                    out, "which preprocess reads", "another output folder")
    assert snapshot(tmp_path) == before


def test_preprocess_overwrite_replaces_only_a_prepared_folder(toy):
    (toy / "notes").mkdir()
    (toy / "notes" / "mine.txt").write_text("keep me\n")
    before = snapshot(toy)
    usage_error(run_nmt("preprocess", "--config", "toy.yaml", "--out", "notes", "--overwrite", cwd=toy),
                "notes", "not a prepared-data folder", "replaces only")
    assert snapshot(toy) == before
    assert run_nmt("preprocess", "--config", "toy.yaml", cwd=toy).returncode == 0
    assert run_nmt("preprocess", "--config", "toy.yaml", "--overwrite", cwd=toy).returncode == 0  # its own: fine


# --- run folders and work folders ---------------------------------------------------------------------


def test_two_trainings_cannot_share_a_run_folder(toy):
    run_nmt("preprocess", "--config", "toy.yaml", cwd=toy)
    write_config(toy / "long.yaml", tiny_config_dict(toy, train={"max_steps": 100000, "epochs": 10000,
                                                                 "eval_every": 100000, "save_every": 2}))
    first = subprocess.Popen([sys.executable, "-m", "nmt", "train", "--config", "long.yaml"], cwd=toy,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (toy / "run" / "last").exists() and time.time() < deadline:
            time.sleep(0.05)
        second = run_nmt("train", "--config", "toy.yaml", cwd=toy)
        usage_error(second, "run", "in use by another nmt train", f"process {first.pid}")
        usage_error(run_nmt("train", "--resume", "run", cwd=toy), "in use by another nmt train")
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 143
    assert run_nmt("train", "--resume", "run", "--set", f"train.max_steps={_saved_step(toy) + 1}",
                   cwd=toy).returncode == 0
    assert hidden_leftovers(toy / "run") == []  # the lock file goes with its run


def _saved_step(root: Path) -> int:
    return json.loads((root / "run" / "last" / "trainer.json").read_text())["step"]


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(toy, monkeypatch):
    run_nmt("preprocess", "--config", "toy.yaml", cwd=toy)
    (toy / "prepared" / "train.src.ids.npy").write_bytes(b"\x93NUMPY broken")  # fails as the Trainer loads it
    before = snapshot(toy)
    usage_error(run_nmt("train", "--config", "toy.yaml", cwd=toy), "train.src.ids.npy", "preprocess again")
    assert snapshot(toy) == before
    # A folder left by an attempt that was killed before it saved: the next attempt starts over.
    (toy / "run").mkdir()
    (toy / "run" / "log.jsonl").write_text('{"event": "epoch"}\n')
    (toy / "run" / "my-notes.txt").write_text("mine\n")
    run_nmt("preprocess", "--config", "toy.yaml", "--overwrite", cwd=toy)
    result = run_nmt("train", "--config", "toy.yaml", cwd=toy)
    assert result.returncode == 0, result.stderr.decode()
    assert "starting over" in result.stderr.decode()
    assert (toy / "run" / "my-notes.txt").read_text() == "mine\n"  # only its own files were replaced
    assert json.loads((toy / "run" / "log.jsonl").read_text().splitlines()[0])["event"] == "epoch"
    assert "batches" in (toy / "run" / "log.jsonl").read_text().splitlines()[0]


def test_quickstart_workdir_that_is_a_file(tmp_path):
    (tmp_path / "work").write_text("mine\n")
    before = snapshot(tmp_path)
    usage_error(run_nmt("quickstart", "--workdir", "work", cwd=tmp_path), "work", "is a file", "name a folder")
    assert snapshot(tmp_path) == before


def test_a_failed_quickstart_leaves_no_work_folder(tmp_path):
    before = snapshot(tmp_path)
    result = run_nmt("quickstart", "--workdir", "work", "--set", "data.src_vocab_size=5000", cwd=tmp_path)
    stderr = result.stderr.decode()  # its progress lines, then the error
    assert result.returncode == 2 and "Traceback" not in stderr, stderr
    assert stderr.splitlines()[-1].startswith("error: vocabulary size 5000"), stderr
    assert snapshot(tmp_path) == before  # the corpus it wrote went again: the next attempt can start
    usage_error(run_nmt("quickstart", "--workdir", "work", "--set", "train.lr=0", cwd=tmp_path), "train.lr")
    assert snapshot(tmp_path) == before  # a bad config is refused before anything is written


# --- nmt average ----------------------------------------------------------------------------------------


def test_average_of_a_run_folder_needs_best(tmp_path, trained_run):
    usage_error(run_nmt("average", trained_run, "-o", "avg", cwd=tmp_path), "is a run folder", "--best N")
    assert not (tmp_path / "avg").exists()


def test_average_of_two_runs_is_refused(tmp_path, workspace):
    from nmt.config import config_from_dict
    from nmt.train.start import train

    runs = []
    for seed in (1, 2):
        raw = tiny_config_dict(workspace, train={"run_dir": str(workspace / f"run{seed}"), "seed": seed,
                                                 "max_steps": 4, "eval_every": 2, "save_every": 2, "keep_best": 2})
        runs.append(train(config_from_dict(raw), stream=open(os.devnull, "w")))
    a, b = (sorted((r / "checkpoints").iterdir())[-1] for r in runs)
    usage_error(run_nmt("average", a, b, "-o", "avg", cwd=tmp_path), "another run", "run ids differ", "one run")
    result = run_nmt("average", runs[0], "--best", "5", "-o", "avg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert "averaged 2 checkpoints" in result.stdout.decode() and "asked for 5" in result.stdout.decode()


# --- signals and small things -----------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["run-folder-locked", "first-report"], ids=["while-starting", "while-training"])
def test_two_quick_ctrl_c_never_show_a_traceback(toy, moment):
    run_nmt("preprocess", "--config", "toy.yaml", cwd=toy)
    write_config(toy / "long.yaml", tiny_config_dict(toy, train={"max_steps": 100000, "epochs": 10000,
                                                                 "log_every": 2}))
    process = subprocess.Popen([sys.executable, "-m", "nmt", "train", "--config", "long.yaml"], cwd=toy,
                               stderr=subprocess.PIPE)
    # (Before the interpreter is up a SIGINT kills any program; nothing of nmt's runs yet.)
    ready = (lambda: (toy / "run" / ".lock").exists()) if moment == "run-folder-locked" else (
        lambda: (toy / "run" / "log.jsonl").exists() and '"train"' in (toy / "run" / "log.jsonl").read_text())
    deadline = time.time() + 120
    while not ready() and time.time() < deadline and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=120)[1].decode()
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted" or "stopped by SIGINT" in stderr, stderr


def test_version(tmp_path):
    import nmt

    result = run_nmt("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.decode().strip() == f"nmt {nmt.__version__}"


def test_a_missing_corpus_points_to_data_readme(tmp_path):
    usage_error(run_nmt("preprocess", "--config", "tatoeba-en-fr", cwd=tmp_path),
                "data/tatoeba-en-fr/train.en not found", "data/README.md")
