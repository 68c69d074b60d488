"""Data parallelism on the CPU: a two-process gloo run (through torchrun) ends with the same
parameters as one process training on the same global batches.

Tolerance: the two runs add the same numbers in another order (two half-batch losses and an
all-reduce against one sum), so they agree to float32 rounding, not bit for bit: after 12 SGD
steps every parameter is within 1e-5 of the other run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import tiny_config_dict


@pytest.mark.parametrize("static", [False, True], ids=["bucketed", "static-shapes"])
def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(workspace, static):
    settings = dict(max_steps=12, save_every=100, eval_every=100, log_every=4, batch_size=16,
                    static_shapes=static, tgt_multiple=4, eval_bleu_sentences=0, lr=0.5)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    runs = {}
    for name, launcher in [("one", [sys.executable, "-m", "nmt"]),
                           ("two", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node", "2", "-m", "nmt"])]:
        config = workspace / f"{name}.yaml"
        raw = tiny_config_dict(workspace, train={**settings, "run_dir": str(workspace / name)})
        config.write_text(yaml.safe_dump(raw))
        result = subprocess.run([*launcher, "train", "--config", str(config)], cwd=workspace, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = load_file(str(workspace / name / "last" / "model.safetensors"))
    for key, value in runs["one"].items():
        torch.testing.assert_close(runs["two"][key], value, rtol=0, atol=1e-5, msg=key)
    for name in runs:
        assert json.loads((workspace / name / "last" / "trainer.json").read_text())["step"] == 12
