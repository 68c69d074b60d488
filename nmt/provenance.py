"""Where a measured figure comes from: the commit, whether the tree differed from it, the machine.

Every script that writes a record under benchmarks/ calls `provenance()`, so no figure carries a
commit typed by hand. The commit is read from git, unless the environment variable NMT_COMMIT is
set (with NMT_DIRTY): a copy of the working tree sent to another machine can carry a stale .git
(seen on the lent GPU machines: their .git still named the session's first commit), so the command
that sends the tree names the commit it sent. The record says which source it used.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def commit() -> dict:
    """{"commit": hash, "tree_dirty": bool (tracked files differ from the commit), "commit_source": ...}."""
    if os.environ.get("NMT_COMMIT"):
        return {"commit": os.environ["NMT_COMMIT"], "tree_dirty": os.environ.get("NMT_DIRTY", "0") not in ("", "0"),
                "commit_source": "NMT_COMMIT (named by the command that sent this tree)"}
    head = _git("rev-parse", "HEAD")
    if head:
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return {"commit": head, "tree_dirty": bool(dirty), "commit_source": "git"}
    return {"commit": "unknown", "tree_dirty": None, "commit_source": "none: no git metadata and no NMT_COMMIT"}


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and its instruction-set flags, from /proc/cpuinfo (Linux; elsewhere
    platform.processor(), which is empty on Linux, and no flags)."""
    model, flags = platform.processor() or "cpu", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return model, flags


def provenance() -> dict:
    """The commit (see `commit`), the command line, torch's version and the device that ran it
    (the GPU's name, or the CPU's model)."""
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_info()[0]
    return {**commit(), "command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "torch": torch.__version__,
            "device": device, "cpu_count": os.cpu_count(), "host": platform.node()}
