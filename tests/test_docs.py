"""docs/bad-inputs.md and the tests it lists stay in step: one row per test, one test per row."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bad-inputs.md"
COVERED = ["tests/test_bad_input.py", "tests/test_text_inputs.py", "tests/test_reliability.py",
           "tests/test_properties.py", "tests/test_bad_input_classes.py", "tests/test_serve_refusals.py"]
TEST_ID = re.compile(r"`(tests/[\w/]+\.py::[^`\s]+)`")


def documented_rows() -> list[str]:
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            ids = TEST_ID.findall(line)
            assert len(ids) <= 1, f"a row names more than one test: {line}"
            rows.extend(ids)
    return rows


def collected_tests() -> set[str]:
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-o", "addopts=",
                             "-p", "no:cacheprovider", *COVERED], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return {line.strip() for line in result.stdout.splitlines() if "::" in line}


def test_bad_input_table_matches_the_tests():
    rows = documented_rows()
    twice = [test for test, count in Counter(rows).items() if count > 1]
    assert not twice, f"tests listed in more than one row of {DOC.name}: {twice}"
    tests = collected_tests()
    assert len(tests) >= 25
    assert sorted(set(rows) - tests) == [], f"rows of {DOC.name} whose test does not exist (renamed?)"
    assert sorted(tests - set(rows)) == [], f"tests missing from {DOC.name}: add a row for each"


def test_table_rows_are_numbered_in_order():
    numbers = [int(m.group(1)) for line in DOC.read_text(encoding="utf-8").splitlines()
               if (m := re.match(r"\| (\d+) \|", line))]
    assert numbers == list(range(1, len(numbers) + 1))


def test_known_gaps_are_marked_in_the_table():
    """A row that describes a known gap names an xfail test, and every xfail test is such a row."""
    gaps = {TEST_ID.search(line).group(1) for line in DOC.read_text(encoding="utf-8").splitlines()
            if line.startswith("|") and "**known gap**" in line}
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-o", "addopts=",
                             "-p", "no:cacheprovider", "-m", "xfail", *COVERED], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    xfails = {line.strip() for line in result.stdout.splitlines() if "::" in line}
    assert gaps == xfails
