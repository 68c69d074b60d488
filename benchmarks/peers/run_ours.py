"""Our side of the peer comparison: `nmt train` with the peers' architecture, batch and optimiser.

    python3 benchmarks/peers/run_ours.py runs/prepared/tatoeba-en-fr OUT_DIR STEPS [--warmup 50]

Trains, on the prepared folder the peers read (run_peers.sh), the paper's model configured like
each peer run: 4 x 1000 LSTM encoder and decoder (unidirectional), 1000-dim embeddings, uniform
init 0.08, reversed source, SGD at a constant 0.7, clip 5, 128 sentences per batch (loss / 128),
bf16 autocast; `ours-attn` adds Luong general attention with input feeding (like `joeynmt` and
`onmt-attn`), `ours-noattn` has none (like `onmt-noattn`). Each trains WARMUP + STEPS updates and
computes dev perplexity once, at the end; tokens/s is the median of the log windows after the
warm-up. Every run is made twice: the eager loop, and static shapes with CUDA graphs (on a GPU).
Writes OUT_DIR/ours.json (and one log per run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from nmt.provenance import commit  # noqa: E402
from nmt.train.progress import read_log  # noqa: E402

ARCHS = {
    "ours-noattn": [],
    "ours-attn": ["model.attention=general", "model.input_feeding=true"],
}
MODES = {
    "eager": [],
    "graphs": ["train.static_shapes=true", "train.cuda_graphs=true"],
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared")
    parser.add_argument("out_dir")
    parser.add_argument("steps", type=int)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--runs", default="ours-noattn,ours-attn")
    parser.add_argument("--modes", default="eager,graphs")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run")
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    total = args.warmup + args.steps
    records, status = [], 0
    for name in args.runs.split(","):
        for mode in args.modes.split(","):
            run_dir = Path(tempfile.mkdtemp(prefix=f"{name}-{mode}-"))
            settings = [f"data.prepared={args.prepared}", f"train.run_dir={run_dir}", f"train.device={args.device}",
                        f"train.max_steps={total}", "train.epochs=1000", "train.decay_start_epoch=1000",
                        f"train.log_every={args.log_every}", f"train.eval_every={total}", f"train.save_every={total}",
                        "train.eval_bleu_sentences=0", *ARCHS[name], *MODES[mode]]
            command = [sys.executable, "-m", "nmt", "train", "--config", str(ROOT / "configs/tatoeba-en-fr.yaml")]
            for setting in settings:
                command += ["--set", setting]
            log = out / f"{name}-{mode}.log"
            started = time.time()
            try:
                with open(log, "w") as handle:
                    rc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                        timeout=args.timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            record = {"name": name, "mode": mode, "rc": rc, "wall_seconds": round(time.time() - started, 1),
                      "command": " ".join(command), **commit(), "steps": total}
            record.update(summarise_log(run_dir / "log.jsonl", args.warmup))
            records.append(record)
            status |= rc != 0
            print(json.dumps({k: v for k, v in record.items() if k != "command"}))
    (out / "ours.json").write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    return int(status)


def summarise_log(path: Path, warmup: int) -> dict:
    if not path.exists():
        return {}
    events = read_log(path)
    windows = [e for e in events if e["event"] == "train" and e["step"] > warmup]
    valid = [e for e in events if e["event"] == "valid"]
    return {
        "tgt_tokens_per_second_median": statistics.median(e["tgt_tokens_per_second"] for e in windows) if windows else None,
        "peak_memory_gib": max((e.get("peak_memory_gib", 0) for e in windows), default=None),
        "dev_ppl": valid[-1]["ppl"] if valid else None,
        "train_ppl_last_window": windows[-1]["ppl"] if windows else None,
    }


if __name__ == "__main__":
    sys.exit(main())
