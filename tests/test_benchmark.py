"""The speed benchmark runs end to end on the CPU with tiny shapes, so that it cannot rot.

No timing is asserted: only that every case ran and reported its figures.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from scripts.benchmark_train import main


def test_benchmark_script_runs_every_case_on_cpu(toy_workspace, tmp_path):
    prepared = toy_workspace / "prepared"
    out = tmp_path / "speed.json"
    records = main(["--device", "cpu", "--tiny", "--shapes", "paper=4x6;attention=4x5", "--steps", "2",
                    "--warmup-steps", "2", "--tokenizers", str(prepared), "--corpus", f"toy={prepared}",
                    "--lengths-of", f"toy-lengths={toy_workspace / 'corpus' / 'test'}", "--src-lang", "src", "--tgt-lang", "tgt", "--max-tokens", "64",
                    "--profile-steps", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == records
    failed = [r for r in records if "error" in r]
    assert not failed, failed
    cases = {(r["kind"], r.get("case")) for r in records}
    assert ("ceiling", "4x6 eager") in cases and ("loop", "equal shapes 4x6 static") in cases
    assert ("loop", "toy 64 tok static") in cases and ("loop", "toy-lengths 128 sent dynamic") in cases
    for r in records[1:]:
        assert r["tgt_tokens_per_second"] > 0 and 0 <= r["mfu"] and r["commit"] and r["device"]
        if r["kind"] == "loop" and r["case"].startswith("equal"):
            assert r["ratio_to_graph_ceiling"] > 0
        if r["kind"] == "loop":
            profile = r["profile"]
            assert profile["steps"] == 2 and profile["wall_ms_per_step"] > 0 and profile["top_host_ops"]
            assert profile["gpu_busy_fraction"] is None and profile["top_kernels"] == []


def test_quality_table_rows_and_reproducing_commands(tmp_path):
    from scripts.quality_table import reproducing_command, rows

    trained = {"name": "m30k", "steps": 4051, "epochs_trained": 8.81, "train_wall_seconds": 458.0, "device": "GPU",
               "command": "python scripts/quality_run.py --commit abc --set train.max_minutes=6.5 --name m30k "
                          "--out /tmp/x/m30k.json --config configs/multi30k-en-de.yaml --beams 1,10",
               "tests": {"test": [{"beam": 1, "bleu": 35.5, "chrf": 61.2, "lowercased": {"bleu": 35.9}},
                                  {"beam": 10, "bleu": 37.3, "chrf": 62.4}]}}
    ensemble = {"name": "ens", "device": "GPU", "tests": {"test": [{"beam": 12, "bleu": 29.6, "chrf": 50.6}]},
                "command": "python scripts/quality_run.py --commit abc --set train.max_minutes=6 --name ens "
                           "--out o.json --config c.yaml --eval-only a/best b/best"}
    assert reproducing_command(trained) == (
        "python3 scripts/quality_run.py --set train.max_steps=4051 --name m30k --out runs/results/m30k.json "
        "--config configs/multi30k-en-de.yaml --beams 1,10")
    assert reproducing_command(ensemble) == (
        "python3 scripts/quality_run.py --name ens --out runs/results/o.json --config c.yaml --eval-only a/best b/best")
    table = rows([trained, ensemble])
    assert len(table) == 2 + 3
    assert "| m30k | `configs/multi30k-en-de.yaml` | 4,051 (8.8) | 7.6 min | GPU | test | 1 | 35.5 | 61.2 | 35.9 |" in table
    assert table[-1].startswith("| ens | `c.yaml` | ensemble of 2 (no training)") and table[-1].endswith("| 12 | 29.6 | 50.6 | - |")
    # a partial record (no epochs, no wall time; its averaged checkpoints counted, not named)
    partial = {**trained, "epochs_trained": None, "train_wall_seconds": None, "partial": "copied from the log",
               "averaged": {"checkpoints": None, "count": 5, "tests": {"test": [{"beam": 10, "bleu": 38.0, "chrf": 63.0}]}}}
    table = rows([partial])
    assert "| m30k | `configs/multi30k-en-de.yaml` | 4,051 | - | GPU | test | 1 | 35.5 | 61.2 | 35.9 |" in table
    assert table[-1].startswith("| m30k, mean of its 5 best checkpoints |")


def test_decoder_variants_run_on_cpu_and_agree():
    from dataclasses import replace

    import torch

    from benchmarks.decoder_variants import ARCHS, CellSteps, PrecomputedCellSteps, main as variants

    records = variants(["--device", "cpu", "--tiny", "--steps", "1", "--shape", "2x4"])
    assert {r["variant"] for r in records} == {"lstm-call", "cells", "cells-pre"}
    assert all(r["tgt_tokens_per_second"] > 0 for r in records)
    arch = replace(ARCHS["attention"], layers=2, hidden=16, embed=16, vocab=64)
    losses = []
    for model_class in (CellSteps, PrecomputedCellSteps):  # same initial weights: the same loss
        torch.manual_seed(0)
        ids = torch.randint(4, 64, (3, 5))
        losses.append(model_class(arch)(ids, ids, ids))
    assert torch.allclose(losses[0], losses[1], atol=1e-5)


def test_quickstart_benchmark_records_its_cases(tmp_path):
    from scripts.benchmark_quickstart import main as benchmark

    out = tmp_path / "qs.json"
    records = benchmark(["--threads", "1", "--neighbour", "none", "--set", "train.max_steps=60", "--set",
                         "train.log_every=10", "--set", "decode.beam=1", "--out", str(out)])
    assert json.loads(out.read_text()) == records and len(records) == 1
    record = records[0]
    assert record["returncode"] == 0 and record["wall_seconds"] > 0 and 0 <= record["bleu"] <= 100
    assert record["steps"] == 60 and record["eta_error_seconds"]["reports"] == 5 and record["commit"]  # from step 20


def random_sentences(path: Path, seed: int) -> Path:
    """80 lines of 1 to 12 words from a small vocabulary, for the decoding scripts' smoke tests."""
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "while", "dogs", "barked", "loudly", "outside"]
    path.write_text("".join(" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) + "\n"
                            for _ in range(80)), encoding="utf-8")
    return path


def test_decode_benchmark_runs_tiny_on_cpu(tmp_path):
    """scripts/benchmark_decode.py end to end with tiny models: every case ran and reported its rates."""
    from scripts.benchmark_decode import main as decode_benchmark

    src = random_sentences(tmp_path / "src.en", seed=0)
    out = tmp_path / "decode.json"
    records = decode_benchmark(["--src", str(src), "--tiny", "--device", "cpu", "--batch", "4", "--limit", "12",
                                "--beams", "1,3", "--ceiling-steps", "2", "--spm-vocab", "40", "--out", str(out)])
    assert json.loads(out.read_text()) == records
    assert not [r for r in records if "error" in r]
    assert {(r["kind"], r["arch"], r["beam"]) for r in records} == {
        (kind, arch, beam) for kind in ("ceiling", "model step", "search") for arch in ("paper", "attention")
        for beam in (1, 3)}
    for r in records:
        assert r["row_steps_per_second"] > 0 and r["commit"] and r["device"]
        if r["kind"] == "search":
            assert r["sentences"] == 12 and r["ratio_to_ceiling"] > 0 and r["row_steps"] >= r["steps"] > 0
            # against the stricter ceiling too: the model's step alone, without the pick
            assert r["ratio_to_model_step"] > 0 and r["live_ratio_to_model_step"] <= r["ratio_to_model_step"]
        if r["kind"] == "model step":
            assert set(r["output_layer_step_ms"]) == {"float32"}  # (bf16 and float16 on CUDA)


def test_decode_profile_runs_tiny_on_cpu_and_puts_the_search_back(tmp_path):
    """scripts/profile_decode.py end to end with tiny models: each part of the search timed, the
    operators' time measured, and the search's functions unwrapped afterwards."""
    from nmt.decode import beam as loop
    from nmt.decode import search as search_module
    from scripts.profile_decode import main as decode_profile

    run, collect = loop.run, search_module.collect
    src = random_sentences(tmp_path / "src.en", seed=1)
    out = tmp_path / "profile.json"
    records = decode_profile(["--src", str(src), "--tiny", "--device", "cpu", "--batch", "4", "--limit", "12",
                              "--archs", "attention", "--beams", "1,3", "--spm-vocab", "40", "--out", str(out)])
    assert json.loads(out.read_text()) == records and [r["beam"] for r in records] == [1, 3]
    for r in records:
        parts = r["host_parts"]
        batches = 3 + 1  # 12 sentences, 4 a batch, and the pass's warm-up batch
        assert parts["run"]["calls"] == parts["collect"]["calls"] == parts["start"]["calls"] == batches
        assert parts["steps"]["calls"] > r["steps"] > 0  # the warm-up batch's steps too
        assert 0 < parts["steps"]["seconds"] < parts["run"]["seconds"]
        assert 0 < r["busy_seconds"] and r["costliest"] and r["commit"]
    assert loop.run is run and search_module.collect is collect


def test_read_lag_benchmark_counts_more_work_for_a_later_read(trained_run, toy_workspace, tmp_path):
    """scripts/benchmark_read_lag.py on the toy model: a count read later never saves work, the
    hypotheses stay the same, and the CPU search's own DoneCount is back in place afterwards."""
    from nmt.decode import beam as loop
    from scripts.benchmark_read_lag import main as read_lag_benchmark

    plain = loop.DoneCount
    out = tmp_path / "lag.json"
    records = read_lag_benchmark(["--checkpoint", str(trained_run / "best"), "--input",
                                  str(toy_workspace / "corpus" / "test.src"), "--beams", "1,2", "--lags", "0,2,8",
                                  "--threads", "1", "--out", str(out)])
    assert loop.DoneCount is plain and json.loads(out.read_text()) == records
    for beam in (1, 2):
        rows = [r for r in records if r["beam"] == beam]
        assert [r["read_lag"] for r in rows] == [0, 2, 8]
        assert all(r["same_best_as_first_lag"] == r["sentences"] for r in rows)
        assert rows[0]["row_steps"] <= rows[1]["row_steps"] <= rows[2]["row_steps"]


def test_pick_benchmark_runs_tiny_on_cpu(tmp_path):
    """scripts/benchmark_pick.py end to end on the CPU: each case checked against torch's and timed."""
    from scripts.benchmark_pick import main as pick_benchmark

    out = tmp_path / "pick.json"
    records = pick_benchmark(["--device", "cpu", "--tiny", "--steps", "2", "--out", str(out)])
    assert [r["op"] for r in records] == ["extensions", "extensions", "argmax"]
    assert all(r["torch_us"] > 0 and r["pruned_us"] > 0 and not r["toolkit_prunes"] for r in records)
    assert json.loads(out.read_text()) == records


def test_normalizer_benchmark_runs_tiny_on_cpu(tmp_path):
    """scripts/benchmark_normalizer.py end to end on the CPU: every form timed, each log-sum-exp near float64's."""
    from scripts.benchmark_normalizer import main as normalizer_benchmark

    out = tmp_path / "normalizer.json"
    records = normalizer_benchmark(["--device", "cpu", "--tiny", "--steps", "2", "--out", str(out)])
    assert [r["dtype"] for r in records] == ["float16", "bfloat16"]
    assert all(r[f"{name}_us"] > 0 for r in records for name in ("log_softmax", "lse_float32", "lse_half"))
    assert all(r["lse_float32_max_error"] < 1e-4 and r["lse_half_max_error"] < 0.1 for r in records)
    assert json.loads(out.read_text()) == records
