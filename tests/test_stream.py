"""`nmt translate` from a pipe or a terminal answers each line as it arrives; from a file it batches.

The pipe test is a conversation: it writes one line, waits for its answer, and only then writes
the next, which a translator that reads stdin to its end before answering can never pass.
"""

from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nmt.decode.stream import PROMPT, ArrivingLines, is_stream, read_line, translate_stream
from nmt.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
LINES = ["wa0 wb1 wc2", "", "wd3 we4", "wf5 wg6 wh7"]
WAIT = 60  # seconds for one answer: the first includes starting Python and loading the model


@pytest.fixture(scope="module")
def translator(trained_run):
    from nmt import Translator

    return Translator.load(trained_run, device="cpu")


@pytest.fixture(scope="module")
def batched(translator) -> list[str]:
    """Each line's translation, from one batched call: what a file gives."""
    return [hyps[0].text for hyps in translator.translate(LINES, translator.options(beam=2, batch_size=3))]


def nmt_process(trained_run, **streams) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "nmt", "translate", "-m", str(trained_run), "--beam", "2",
                             "--batch-size", "3"], env=env, **streams)


def line_reader(stream) -> queue.Queue:
    """Lines of `stream` as they come, through a thread, so that a read can time out."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in iter(stream.readline, b"")] + [lines.put(None)],
                     daemon=True).start()
    return lines


def test_a_pipe_gets_each_answer_before_it_sends_the_next_line(trained_run, batched):
    process = nmt_process(trained_run, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    answers = line_reader(process.stdout)
    try:
        received = []
        for line in LINES:
            process.stdin.write(line.encode() + b"\n")
            process.stdin.flush()
            try:  # the next line is written only once this answer is in
                received.append(answers.get(timeout=WAIT).decode().rstrip("\n"))
            except queue.Empty:
                pytest.fail(f"no answer to {line!r} within {WAIT} s: stdin is read to its end before translating?")
        process.stdin.close()
        assert answers.get(timeout=WAIT) is None  # nothing more after the end of input
        assert process.wait(timeout=WAIT) == 0, process.stderr.read().decode()
    finally:
        process.kill()
    assert received == batched  # the same translation as in a batch
    assert PROMPT not in process.stderr.read().decode()  # a pipe gets no prompt


def test_a_regular_file_as_stdin_is_batched_in_order(tmp_path, translator, batched, monkeypatch, capsys):
    from nmt.decode.translate import translate_file

    (tmp_path / "in.txt").write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    calls = []
    translate = translator.translate
    monkeypatch.setattr(translator, "translate", lambda lines, options: calls.append(len(lines)) or
                        translate(lines, options))
    with open(tmp_path / "in.txt", encoding="utf-8") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        translate_file(translator, None, None, translator.options(beam=2, batch_size=3))
    assert calls == [len(LINES)]  # one call: every line read before translating
    assert capsys.readouterr().out.splitlines() == batched


def test_lines_that_arrived_together_are_translated_together(translator, batched, monkeypatch):
    """`cat file | nmt translate` keeps batching: what is already in the pipe goes in one call."""
    calls = []
    translate = translator.translate
    monkeypatch.setattr(translator, "translate", lambda lines, options: calls.append(len(lines)) or
                        translate(lines, options))
    read, write = os.pipe()
    os.write(write, "".join(line + "\n" for line in LINES).encode())
    os.close(write)
    out = io.StringIO()
    with open(read, "rb") as pipe:
        assert translate_stream(translator, translator.options(beam=2, batch_size=3), pipe, out) == len(LINES)
    assert calls == [3, 1]  # batches of at most batch_size
    assert out.getvalue().splitlines() == batched


def test_arriving_lines_wait_for_a_whole_line_and_need_no_final_newline():
    read, write = os.pipe()
    with open(read, "rb") as pipe:
        lines = ArrivingLines(pipe)
        os.write(write, b"one\ntw")
        assert lines.next_group(5) == [b"one"]  # "tw" is still arriving
        os.write(write, b"o\nthree")
        os.close(write)
        assert lines.next_group(1) == [b"two"]
        assert lines.next_group(5) == [b"three"] and lines.next_group(5) == []


def test_a_pipe_as_stdin_is_a_stream_and_a_file_is_not(tmp_path):
    read, write = os.pipe()
    with open(read, "rb") as pipe, open(write, "wb"), open(tmp_path / "f", "wb") as plain:
        assert is_stream(pipe) and not is_stream(plain)
    assert not is_stream(io.BytesIO(b"no file descriptor"))


def test_streamed_lines_are_cleaned_as_a_file_is(tmp_path):
    from nmt.decode.translate import read_input

    # a BOM, CRLF, a tab, NUL, a BOM inside a line, a last line without \n
    raw = ["\ufeffwa0  wb1\r\n", "wc2\tw\x00d3\n", "\n", "we4 \ufeff wf5"]
    (tmp_path / "in.txt").write_bytes("".join(raw).encode("utf-8"))
    assert [read_line(line.encode("utf-8"), n) for n, line in enumerate(raw, 1)] == read_input(tmp_path / "in.txt")


def test_streamed_n_best_lists_keep_counting_and_a_terminal_gets_a_prompt(translator):
    options = translator.options(beam=2, n_best=2)
    out, prompt = io.StringIO(), io.StringIO()
    assert translate_stream(translator, options, io.BytesIO(b"wa0\nwb1 wc2\n"), out, prompt) == 2
    lines = out.getvalue().splitlines()
    assert [line.split(" ||| ")[0] for line in lines] == ["0", "0", "1", "1"]
    assert prompt.getvalue() == PROMPT * 3 + "\n"  # one before each read, the last one met the end


def test_bad_utf8_in_a_stream_names_its_line(translator):
    out = io.StringIO()
    with pytest.raises(DataError, match=r"<stdin> line 2 is not valid UTF-8 \(byte 0xff\)"):
        translate_stream(translator, translator.options(beam=1), io.BytesIO(b"wa0\nwb1 \xff\nwc2\n"), out)
    assert len(out.getvalue().splitlines()) == 1  # the line before it was answered


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_terminal_gets_a_prompt_on_stderr(trained_run, batched):
    leader, follower = os.openpty()
    process = nmt_process(trained_run, stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(follower)
    answers = line_reader(process.stdout)
    try:
        os.write(leader, LINES[0].encode() + b"\n")
        assert answers.get(timeout=WAIT).decode().rstrip("\n") == batched[0]
        os.write(leader, b"\x04")  # Ctrl-D: the end of input
        assert process.wait(timeout=WAIT) == 0
    finally:
        process.kill()
        os.close(leader)
    assert process.stderr.read().decode().count(PROMPT) == 2
