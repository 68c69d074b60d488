"""Translating stdin line by line, as the lines arrive: a terminal session or a pipe.

`nmt translate` reads a file (or stdin redirected from a regular file) whole and batches it for
throughput. A terminal or a pipe may send its next line only after it has read the answer to the
last one, so there each line is answered as soon as it is read, and stdout is flushed after every
answer; a terminal also gets a `> ` prompt on stderr. Each line goes through the same
`Translator.translate` call with the same options as a batched file, one line at a time, so its
translation is the batched one (batches never change a sentence's result: tests/test_properties.py).
"""

from __future__ import annotations

import os
import stat
import sys
from typing import BinaryIO, TextIO

from nmt.config import DecodeOptions
from nmt.data.corpus import clean_line, decode_utf8

PROMPT = "> "


def is_stream(stream: BinaryIO) -> bool:
    """Whether `stream` is anything but a regular file (a terminal, a pipe, a socket...)."""
    try:
        return not stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):  # no file descriptor (a test's in-memory stream): read it whole
        return False


def read_line(raw: bytes, number: int) -> str:
    """One line of stdin as `read_input` would give it: UTF-8 checked, its ending gone, cleaned
    (`clean_line` drops byte-order marks, the first line's too)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # the error that a whole-file read gives, at this line
        decode_utf8(b"\n" * (number - 1) + raw, "<stdin>")
        raise
    return clean_line(text.rstrip("\n").removesuffix("\r"))


def translate_stream(translator, options: DecodeOptions, source: BinaryIO, out: TextIO,
                     prompt: TextIO | None = None) -> int:
    """Answer every line of `source` as it arrives; returns the number of lines. With `prompt`
    (a terminal's stderr) a prompt is shown before each line is read."""
    from nmt.decode.translate import format_output  # translate.py calls this module

    number = 0
    while True:
        if prompt is not None:
            prompt.write(PROMPT)
            prompt.flush()
        raw = source.readline()  # returns as soon as one line (or the end) has arrived
        if not raw:
            break
        number += 1
        line = read_line(raw, number)
        out.write(format_output(translator.translate([line], options), options.n_best, first_index=number - 1))
        out.flush()
    if prompt is not None:
        prompt.write("\n")  # the end of input leaves the prompt's line
        prompt.flush()
    return number


def translate_stdin(translator, options: DecodeOptions) -> int:
    stdin = sys.stdin.buffer
    return translate_stream(translator, options, stdin, sys.stdout, sys.stderr if sys.stdin.isatty() else None)
