"""scripts/benchmark_train_start.py end to end on the toy corpus: what it reports, not how fast."""

from __future__ import annotations

import json

from scripts.benchmark_train_start import main


def test_the_train_start_benchmark_reports_both_samplers_with_a_warm_and_a_cold_page_cache(toy_workspace, tmp_path):
    out = tmp_path / "start.json"
    main(["--prepared", str(toy_workspace / "prepared"), "--workdir", str(tmp_path / "w"), "--batch-size", "8",
          "--page-cache", "warm,cold", "--repeats", "2", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["commit"] and set(record["samplers"]) >= {"bucket", "static_shapes"}
    assert set(record["first_step"]) == {f"{mode}, {cache} cache" for mode in ("bucket", "static")
                                         for cache in ("warm", "cold")}
    for name, case in record["first_step"].items():  # each run in a run folder of its own
        assert case["page_cache"].startswith(name.split(", ")[1].split()[0])
        assert len(case["runs"]) == 2 and case["median_seconds_to_first_step"] in case["seconds_to_first_step"]
        for run in case["runs"]:
            assert run["returncode"] == 0 and run["seconds_to_first_step"] > 0, run
            assert 0 < run["peak_rss_to_first_step_mb"] <= run["peak_rss_mb"]
