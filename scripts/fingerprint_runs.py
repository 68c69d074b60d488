"""Fingerprint what the toolkit produces, to show that a change leaves every number as it was.

Runs seeded CPU jobs through the command line of a source tree (`--tree`, default this one) and
writes, per job, the training losses and dev scores from log.jsonl, a SHA-256 of every weight
tensor of the last checkpoint (and the tensors themselves into an .npz beside the JSON, to
measure differences), and the test translations (beam and n-best). Jobs, on the quickstart's
generated number-words corpus with the quickstart config:
  paper       the quickstart model for --steps steps
  attention   the same with bidirectional encoder, general attention and input feeding
  resumed     the paper job stopped half way and resumed with `nmt train --resume`

    python scripts/fingerprint_runs.py --tree /tmp/nmt-before --out runs/fp/before.json
    python scripts/fingerprint_runs.py --out runs/fp/after.json
    python scripts/fingerprint_runs.py --compare runs/fp/before.json runs/fp/after.json [--out CMP.json]

`--compare` prints, per job, whether losses, weights and translations are bit-identical, and
otherwise the largest differences and the first logged step whose loss differs. Only the command
line is used, so any two commits compare.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

JOBS = {
    "paper": [],
    "attention": ["model.bidirectional=true", "model.attention=general", "model.input_feeding=true"],
}


def nmt(tree: Path, *args: str, cwd: Path, stdin: str | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "nmt", *args], cwd=cwd, env=env, input=stdin,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"nmt {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout


def sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def fingerprint(run_dir: Path, work: Path, tree: Path, tensors_out: Path) -> dict:
    from safetensors.numpy import load_file

    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    losses = [[e["step"], e["loss"]] for e in log if e["event"] == "train"]
    dev = [{k: v for k, v in e.items() if k != "time"} for e in log if e["event"] == "valid"]
    weights = load_file(str(run_dir / "last" / "model.safetensors"))
    np.savez(tensors_out, **weights)
    test = str(work / "corpus" / "test.en")
    beam = nmt(tree, "translate", "-m", str(run_dir / "last"), test, "--beam", "5", cwd=work)
    nbest = nmt(tree, "translate", "-m", str(run_dir / "last"), test, "--beam", "4", "--n-best", "3",
                "--length-penalty", "1.0", cwd=work)
    greedy = nmt(tree, "translate", "-m", str(run_dir / "last"), test, "--beam", "1", cwd=work)
    return {
        "losses": losses, "dev": dev,
        "weights": {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in sorted(weights.items())},
        "tensors": str(tensors_out),
        "translations": {"beam5": beam, "beam4_nbest3_lp1": nbest, "greedy": greedy},
    }


def tree_commit(tree: Path) -> dict:
    """The commit of the tree that ran the jobs, and whether its tracked files differed from it."""
    git = lambda *args: subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True).stdout.strip()  # noqa: E731
    return {"tree_commit": git("rev-parse", "HEAD") or "unknown",
            "tree_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def run_all(tree: Path, out: Path, steps: int) -> None:
    from nmt.quickstart import make_corpus

    work = out.with_suffix("")
    work.mkdir(parents=True, exist_ok=False)
    prefixes = make_corpus(work / "corpus")
    data = [f"data.train={prefixes['train']}", f"data.valid={prefixes['valid']}", f"data.test={prefixes['test']}",
            f"data.prepared={work / 'prepared'}"]
    config = str(ROOT / "configs" / "quickstart.yaml")
    nmt(tree, "preprocess", "--config", config, *sets(data), cwd=work)
    common = data + ["train.device=cpu", f"train.max_steps={steps}", "train.log_every=10",
                     f"train.eval_every={steps // 3}", f"train.save_every={steps // 3}"]
    result = {"tree": str(tree), **tree_commit(tree), "steps": steps, "jobs": {}}
    for name, extra in JOBS.items():
        run_dir = work / name
        nmt(tree, "train", "--config", config, *sets(common + extra + [f"train.run_dir={run_dir}"]), cwd=work)
        result["jobs"][name] = fingerprint(run_dir, work, tree, work / f"{name}.npz")
        print(f"{name}: done", flush=True)
    run_dir = work / "resumed"
    half = [f"train.max_steps={steps // 2}"]
    nmt(tree, "train", "--config", config, *sets(common + half + [f"train.run_dir={run_dir}"]), cwd=work)
    nmt(tree, "train", "--resume", str(run_dir), *sets([f"train.max_steps={steps}"]), cwd=work)
    result["jobs"]["resumed"] = fingerprint(run_dir, work, tree, work / "resumed.npz")
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


def compare(a_path: Path, b_path: Path, out: Path | None = None) -> bool:
    """Print (and with `out` write as JSON) how the two fingerprints differ, job by job."""
    a, b = json.loads(a_path.read_text()), json.loads(b_path.read_text())
    report = {"a": str(a_path), "a_tree_commit": a.get("tree_commit"), "a_tree_dirty": a.get("tree_dirty"),
              "b": str(b_path), "b_tree_commit": b.get("tree_commit"), "b_tree_dirty": b.get("tree_dirty"),
              "steps": a["steps"], "jobs": {}}
    for name in a["jobs"]:
        ja, jb = a["jobs"][name], b["jobs"][name]
        gaps = [(x[0], abs(x[1] - y[1])) for x, y in zip(ja["losses"], jb["losses"])]
        ta, tb = np.load(ja["tensors"]), np.load(jb["tensors"])
        weight_diff = max(float(np.abs(ta[k].astype(np.float64) - tb[k].astype(np.float64)).max()) for k in ta.files)
        same = {"losses": ja["losses"] == jb["losses"], "dev": ja["dev"] == jb["dev"],
                "weights": ja["weights"] == jb["weights"],
                "translations": ja["translations"] == jb["translations"]}
        first = next((step for step, gap in gaps if gap > 0), None)
        report["jobs"][name] = {"identical": same, "largest_loss_difference": max((g for _, g in gaps), default=0.0),
                                "first_logged_step_whose_loss_differs": first,
                                "loss_difference_by_step": gaps, "largest_weight_difference": weight_diff,
                                "translations_that_differ": [k for k in ja["translations"]
                                                             if ja["translations"][k] != jb["translations"][k]]}
        job = report["jobs"][name]
        print(f"{name}: " + ", ".join(f"{k} {'identical' if v else 'DIFFER'}" for k, v in same.items())
              + f"; largest loss difference {job['largest_loss_difference']:.3g} (losses logged to 5 decimals"
              + (f", first at step {first}" if first else "") + f"), largest weight difference {weight_diff:.3g}"
              + (f"; translations that differ: {job['translations_that_differ']}" if job["translations_that_differ"]
                 else ""))
    report["bit_identical"] = all(all(j["identical"].values()) for j in report["jobs"].values())
    print("bit-identical" if report["bit_identical"] else "NOT bit-identical")
    if out is not None:
        from nmt.provenance import commit

        out.write_text(json.dumps({**commit(), **report}, indent=1) + "\n")
    return report["bit_identical"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree whose nmt runs the jobs")
    parser.add_argument("--out", type=Path, help="JSON fingerprint to write (its work folder beside it)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"),
                        help="compare two fingerprints (with --out, write the comparison there as JSON)")
    args = parser.parse_args()
    if args.compare:
        raise SystemExit(0 if compare(*args.compare, args.out) else 1)
    if args.out is None:
        parser.error("--out is needed (or --compare A B)")
    run_all(args.tree.resolve(), args.out.resolve(), args.steps)


if __name__ == "__main__":
    main()
