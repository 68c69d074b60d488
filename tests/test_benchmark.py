"""The speed benchmark runs end to end on the CPU with tiny shapes, so that it cannot rot.

No timing is asserted: only that every case ran and reported its figures.
"""

from __future__ import annotations

import json

from scripts.benchmark_train import main


def test_benchmark_script_runs_every_case_on_cpu(toy_workspace, tmp_path):
    prepared = toy_workspace / "prepared"
    out = tmp_path / "speed.json"
    records = main(["--device", "cpu", "--tiny", "--shapes", "paper=4x6;attention=4x5", "--steps", "2",
                    "--warmup-steps", "2", "--tokenizers", str(prepared), "--corpus", f"toy={prepared}",
                    "--lengths-of", f"toy-lengths={toy_workspace / 'corpus' / 'test'}", "--src-lang", "src", "--tgt-lang", "tgt", "--max-tokens", "64",
                    "--out", str(out)])
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
