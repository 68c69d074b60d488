"""`nmt average`: a checkpoint whose weights are the mean of several checkpoints of one run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nmt.decode.translate import Translator
from nmt.checkpoint import average_checkpoints, best_checkpoints
from nmt.train.start import train
from tests.conftest import tiny_config
from tests.test_bad_input import run_nmt


@pytest.fixture(scope="module")
def run_with_three_best(toy_workspace, tmp_path_factory):
    root = tmp_path_factory.mktemp("average")
    for name in ("corpus", "prepared"):
        (root / name).symlink_to(toy_workspace / name)
    config = tiny_config(root, train={"max_steps": 12, "eval_every": 4, "save_every": 4, "keep_best": 3})
    train(config, stream=open("/dev/null", "w"))
    return root / "run"


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_average_is_the_mean_and_translates(run_with_three_best, tmp_path):
    folders = best_checkpoints(run_with_three_best, 3)
    assert len(folders) == 3
    scores = [json.loads((f / "trainer.json").read_text())["score"] for f in folders]
    assert scores == sorted(scores, reverse=True)
    out = average_checkpoints(folders, tmp_path / "avg")
    mean, parts = weights(out), [weights(f) for f in folders]
    assert mean.keys() == parts[0].keys()
    for name, tensor in mean.items():
        expected = sum(p[name].double() for p in parts) / 3
        assert torch.allclose(tensor.double(), expected, atol=1e-6), name
    assert not torch.equal(parts[0][next(iter(mean))], parts[1][next(iter(mean))])  # really different inputs
    translator = Translator.load(out, "cpu")
    assert len(translator.translate(["wa0 wb1"], translator.options(beam=2, batch_size=4))) == 1


def test_averaging_one_checkpoint_changes_nothing(run_with_three_best, tmp_path):
    folder = best_checkpoints(run_with_three_best, 1)[0]
    out = average_checkpoints([folder], tmp_path / "same")
    a, b = weights(folder), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_average_best(run_with_three_best, tmp_path):
    result = run_nmt("average", run_with_three_best, "--best", "2", "--output", tmp_path / "avg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert "averaged 2 checkpoints" in result.stdout.decode()
    assert (tmp_path / "avg" / "model.safetensors").is_file()


def test_quality_run_scores_the_best_and_the_averaged_checkpoint(workspace, tmp_path):
    import yaml

    from scripts.quality_run import main
    from tests.conftest import tiny_config_dict

    raw = tiny_config_dict(workspace, train={"max_steps": 8, "eval_every": 4, "save_every": 4, "keep_best": 2})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "results" / "toy.json"
    main(["--config", str(tmp_path / "c.yaml"), "--name", "toy", "--out", str(out), "--beams", "1,2",
          "--lowercase-too", "--average", "2"])
    record = json.loads(out.read_text())
    assert record["steps"] == 8 and len(record["dev"]) == 2
    for tests in (record["tests"], record["averaged"]["tests"]):
        assert [r["beam"] for r in tests["test"]] == [1, 2]
        assert all("bleu" in r and "lowercased" in r for r in tests["test"])
    assert len(record["averaged"]["checkpoints"]) == 2
    assert (out.parent / "toy.averaged.test.beam2.hyp").is_file()


def test_quality_ensemble_trains_members_side_by_side_and_scores_their_ensemble(workspace, tmp_path):
    import yaml

    from tests.conftest import tiny_config_dict

    root = Path(__file__).resolve().parents[1]
    raw = tiny_config_dict(workspace, train={"max_steps": 6, "eval_every": 3, "save_every": 3, "keep_best": 2})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    members = [f"train.run_dir={tmp_path / 'm1'} train.seed=1", f"train.run_dir={tmp_path / 'm2'} train.seed=2 model.dropout=0.2"]
    env = {**os.environ, "QUALITY_ARGS": "--beams 2", "PYTHONPATH": str(root)}
    result = subprocess.run(["bash", str(root / "scripts" / "quality_ensemble.sh"), "toy", str(tmp_path / "c.yaml"),
                             *members], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    results = tmp_path / "runs" / "results"
    member = json.loads((results / "toy-member-2.json").read_text())
    assert member["config"]["model"]["dropout"] == 0.2 and member["config"]["train"]["seed"] == 2
    averaged = json.loads((results / "toy-averaged.json").read_text())
    assert [Path(p).parent.name for p in averaged["command"].split("--eval-only")[1].split()[:2]] == ["m1", "m2"]
    assert averaged["tests"]["test"][0]["beam"] == 2
    assert json.loads((results / "toy-best.json").read_text())["command"].count("/best") == 2

    missing = subprocess.run(["bash", str(root / "scripts" / "quality_ensemble.sh"), "toy", str(tmp_path / "c.yaml"),
                              "train.seed=3"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "train.run_dir" in missing.stderr
