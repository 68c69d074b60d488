"""A run stopped and resumed ends with the same parameters as an uninterrupted one (CPU, bit-exact)."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from nmt.train.start import resume, train
from tests.conftest import tiny_config

# Short epochs with the halving schedule inside the run, so the position in the data and the
# learning rate both have to be restored exactly.
# threads=1: train.threads 0 takes the cores idle at the start, which differ between runs under load
SETTINGS = dict(threads=1, epochs=3, decay_start_epoch=1.0, decay_every_epochs=0.5, max_steps=30,
                eval_every=100, save_every=100, log_every=5)


def weights(run_dir):
    return load_file(str(run_dir / "last" / "model.safetensors"))


def test_stopped_and_resumed_run_equals_uninterrupted(workspace):
    quiet = open("/dev/null", "w")
    whole = tiny_config(workspace, train={**SETTINGS, "run_dir": str(workspace / "whole")})
    train(whole, stream=quiet)

    parts = tiny_config(workspace, train={**SETTINGS, "run_dir": str(workspace / "parts"), "max_steps": 7})
    train(parts, stream=quiet)
    resume(workspace / "parts", ["train.max_steps=23"], stream=quiet)  # crosses an epoch boundary
    resume(workspace / "parts", ["train.max_steps=30"], stream=quiet)

    state = json.loads((workspace / "parts" / "last" / "trainer.json").read_text())
    assert state["step"] == 30 and state["epoch"] >= 1
    a, b = weights(workspace / "whole"), weights(workspace / "parts")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"


def test_resume_is_exact_with_static_shapes_too(workspace):
    quiet = open("/dev/null", "w")
    static = {**SETTINGS, "static_shapes": True, "tgt_multiple": 4, "max_steps": 16}
    train(tiny_config(workspace, train={**static, "run_dir": str(workspace / "whole")}), stream=quiet)
    train(tiny_config(workspace, train={**static, "run_dir": str(workspace / "parts"), "max_steps": 5}), stream=quiet)
    resume(workspace / "parts", ["train.max_steps=16"], stream=quiet)
    a, b = weights(workspace / "whole"), weights(workspace / "parts")
    assert all(torch.equal(a[k], b[k]) for k in a)
