"""The toolkit's messages: the standard `logging` module, under the logger named `nmt`.

Library code logs (`logging.getLogger("nmt")`); only the command line decides where messages
go (`configure`). A message clears a progress line being redrawn on the same terminal first.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("nmt")


class _LineHandler(logging.StreamHandler):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return "\r\033[K" + text if getattr(self.stream, "isatty", lambda: False)() else text


def configure(stream=None, level: int = logging.INFO) -> None:
    """Print the `nmt` logger's messages, one per line, on `stream` (stderr by default)."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = _LineHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
