"""A non-editable install works on its own: the wheel carries the configs and phrase files, and
`nmt quickstart` runs from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_install_runs_the_quickstart_from_another_folder(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(dist), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("nmt-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "nmt/configs/quickstart.yaml" in names and "nmt/analyze/phrases/en.txt" in names
    assert not any(name.startswith(("tests/", "scripts/", "configs/")) for name in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The dependencies (torch, sentencepiece, ...) come from this environment; nmt only from the wheel.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([python, "-c", "import nmt; print(nmt.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where  # the installed copy, not the repository
    version = subprocess.run([venv / "bin" / "nmt", "--version"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("nmt "), version
    result = subprocess.run([venv / "bin" / "nmt", "quickstart", "--workdir", "qs", "--set", "train.max_steps=1",
                             "--set", "decode.beam=1", "--set", "train.threads=1"], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test BLEU" in result.stdout and (elsewhere / "qs" / "run" / "last").exists()
