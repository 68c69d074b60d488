"""Translating stdin as its lines arrive: a terminal session or a pipe.

`nmt translate` reads a file (or stdin redirected from a regular file) whole and batches it for
throughput. A terminal or a pipe may send its next line only after it has read the answer to the
last one, so there the translator waits for one line, takes with it the lines that have already
arrived behind it (up to a batch), answers them and flushes stdout before it waits again: a
person typing gets each answer at once, and `cat big.txt | nmt translate` is still translated in
batches. A terminal also gets a `> ` prompt on stderr. Every group goes through the same
`Translator.translate` call and options as a file, so a line's translation is the one a file
gives (a batch never changes a sentence's result: tests/test_properties.py).
"""

from __future__ import annotations

import os
import select
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
    """One line of stdin (with or without its \\n) as `read_input` would give it: UTF-8 checked,
    its ending gone, cleaned (`clean_line` drops byte-order marks, the first line's too)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # the error that a whole-file read gives, at this line
        decode_utf8(b"\n" * (number - 1) + raw, "<stdin>")
        raise
    return clean_line(text.rstrip("\n").removesuffix("\r"))


class ArrivingLines:
    """The lines of a stream in groups, as they arrive, without their line endings.

    `next_group(limit)` waits until one complete line (or the end of input) is in, then takes,
    without waiting, the complete lines that have already arrived behind it: at most `limit`.
    A stream without a file descriptor (an in-memory one) gives one line at a time.
    """

    def __init__(self, stream: BinaryIO):
        self.stream, self.pending, self.ended = stream, b"", False
        try:
            self.fd = stream.fileno()
        except (OSError, ValueError):
            self.fd = None

    def _read(self) -> None:
        # os.read returns as soon as anything has arrived; a buffered read would wait for more
        data = os.read(self.fd, 1 << 16) if self.fd is not None else self.stream.readline()
        self.ended = not data
        self.pending += data

    def _more_arrived(self) -> bool:
        return self.fd is not None and bool(select.select([self.fd], [], [], 0)[0])

    def next_group(self, limit: int) -> list[bytes]:
        """The next 1 to `limit` lines; [] at the end of input."""
        while b"\n" not in self.pending and not self.ended:
            self._read()
        while not self.ended and self.pending.count(b"\n") < limit and self._more_arrived():
            self._read()
        *complete, rest = self.pending.split(b"\n")  # rest: a line still arriving, or b""
        if self.ended and rest:  # the last line needs no newline
            complete, rest = complete + [rest], b""
        self.pending = b"".join(line + b"\n" for line in complete[limit:]) + rest
        return complete[:limit]


def translate_stream(translator, options: DecodeOptions, source: BinaryIO, out: TextIO,
                     prompt: TextIO | None = None) -> int:
    """Answer the lines of `source` as they arrive; returns the number of lines. With `prompt`
    (a terminal's stderr) a prompt is shown before each wait for input."""
    from nmt.decode.translate import format_output  # translate.py calls this module

    lines, number = ArrivingLines(source), 0
    while True:
        if prompt is not None:
            prompt.write(PROMPT)
            prompt.flush()
        group = lines.next_group(options.batch_size)
        if not group:
            break
        texts = [read_line(raw, number + k) for k, raw in enumerate(group, 1)]
        out.write(format_output(translator.translate(texts, options), options.n_best, first_index=number))
        out.flush()
        number += len(group)
    if prompt is not None:
        prompt.write("\n")  # the end of input leaves the prompt's line
        prompt.flush()
    return number


def translate_stdin(translator, options: DecodeOptions) -> int:
    stdin = sys.stdin.buffer
    return translate_stream(translator, options, stdin, sys.stdout, sys.stderr if sys.stdin.isatty() else None)
