"""scripts/benchmark_fast_path.py end to end on the CPU with the tiny config, so that the GPU slot
it is written for does not find it broken. No timing is asserted: only what each case reports."""

from __future__ import annotations

import json

import yaml

from scripts.benchmark_fast_path import main
from tests.conftest import tiny_config_dict


def test_the_fast_path_benchmark_reports_each_case(toy_workspace, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(toy_workspace, train={"log_every": 1, "eval_every": 100})))
    out = tmp_path / "fast.json"
    main(["--config", str(config), "--prepared", str(toy_workspace / "prepared"), "--workdir", str(tmp_path / "w"),
          "--steps", "4", "--out", str(out)])
    record = json.loads(out.read_text())
    assert set(record["cases"]) == {"eager", "auto"} and record["commit"]
    for name, case in record["cases"].items():
        assert case["returncode"] == 0, case["output_tail"]
        assert case["steps"] == 4 and case["seconds_to_first_step"] > 0 and case["wall_s"] > 0
        assert case["resolved"] == {"static_shapes": "false", "cuda_graphs": "false"}  # a CPU: auto is eager
        assert case["planned_steps"] > 4 and case["whole_recipe_train_s"]["how"].startswith("projected")


def test_a_case_that_ran_every_epoch_is_measured_and_a_record_can_be_read_again(toy_workspace, tmp_path):
    """The run ends at the planned step between two progress reports: the final evaluation's step
    says the recipe was done, so its time is measured, not projected; --reparse gives the same."""
    config = tmp_path / "tiny.yaml"
    settings = {"log_every": 3, "eval_every": 100, "epochs": 2}
    config.write_text(yaml.safe_dump(tiny_config_dict(toy_workspace, train=settings)))
    out = tmp_path / "fast.json"
    main(["--config", str(config), "--prepared", str(toy_workspace / "prepared"), "--workdir", str(tmp_path / "w"),
          "--cases", "eager", "--steps", "1000", "--out", str(out)])
    case = json.loads(out.read_text())["cases"]["eager"]
    assert case["returncode"] == 0, case["output_tail"]
    assert case["last_step"] == case["planned_steps"] and case["planned_steps"] % 3 != 0, case
    assert case["whole_recipe_train_s"] == {"seconds": case["wall_s"], "how": "measured (wall, evaluations included)"}
    main(["--out", str(out), "--reparse", f"eager={tmp_path / 'w' / 'run-eager' / 'log.jsonl'}"])
    again = json.loads(out.read_text())
    assert again["cases"]["eager"]["whole_recipe_train_s"] == case["whole_recipe_train_s"]
    assert again["reparsed"][0]["cases"] == ["eager"]
