"""User-facing errors: each carries one line that names the problem and the fix.

The CLI prints `error: <message>` on stderr and exits with `exit_code`; anything that
is not an `NmtError` is a bug and keeps its traceback.
"""

USAGE = 2  # bad input, bad config, bad arguments
RUNTIME = 1  # the run itself failed (disk full, too many bad steps, ...)


class NmtError(Exception):
    exit_code = USAGE
    prefix = "error: "  # how the command line introduces the message
    interrupt = False  # a stop by a signal: the process exits at once once the message is out


class ConfigError(NmtError):
    """An unknown key, a wrong type or an inconsistent value in a config or override."""


class DataError(NmtError):
    """A corpus file that is missing, empty, misaligned or not UTF-8."""


class CheckpointError(NmtError):
    """A checkpoint that is missing, corrupt or made for another model or tokenizer."""


class TrainingError(NmtError):
    """Training cannot go on (non-finite losses in a row, a disk that is full)."""

    exit_code = RUNTIME
