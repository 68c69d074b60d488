#!/usr/bin/env python3
"""Read a peer's training log and add its record to OUT_DIR/peers.json.

    parse_logs.py record --out OUT_DIR/peers.json --name NAME --log OUT_DIR/NAME.log ...
    parse_logs.py reparse OUT_DIR          # re-read every record's log (same options as stored)
    parse_logs.py show OUT_DIR             # one line per record

What each peer counts (all three count the same tokens: the target side's real tokens with the
end-of-sentence token, without the start token and without padding, which is also what our
`nmt` reports as "tgt tok/s"):
  * JoeyNMT 2.3.0 logs every `logging_freq` updates "Tokens per Sec: N" = target tokens
    (batch.ntokens = non-pad tokens of trg, which holds </s> and not <s>) trained on since the
    last log line / host wall-clock seconds since that line (validation time excluded; an epoch
    boundary restarts the window).
  * OpenNMT-py 3.5.1 logs every `report_every` steps "A/B tok/s" = source/target tokens since the
    last report / wall-clock seconds since that report; B counts the target's non-pad tokens
    (</s> included, <s> not).
The record's `tgt_tokens_per_second` is the MEDIAN of the windows that start after the warm-up
(the same statistic as our benchmark's `tgt_tokens_per_second_median`); the mean of the windows
is there too, and for OpenNMT-py also the token-weighted rate (sum of tokens / sum of seconds,
from its per-batch target size times the window's steps).
`dev_ppl` is the peer's own validation perplexity after the last step, exp(summed target NLL /
target tokens with </s>): JoeyNMT's validations.txt (5 decimals; its log rounds to 2), OpenNMT-py's
"Validation perplexity" line.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path

JOEY_STEP = re.compile(
    r"Epoch\s+(\d+), Step:\s+(\d+), Batch Loss:\s+(\S+), Batch Acc: (\S+), Tokens per Sec:\s+(\S+), Lr: (\S+)")
JOEY_EVAL = re.compile(r"Evaluation result \((?:greedy|beam search)\):.*?\bppl:\s+(\S+?),")
JOEY_VALID_FILE = re.compile(r"Steps: (\d+)\t.*?\bppl: ([0-9.eE+-]+|nan|inf)")
ONMT_STEP = re.compile(
    r"Step\s+(\d+)(?:/\s*(\d+))?; acc:\s*(\S+); ppl:\s*(\S+); xent:\s*(\S+); lr:\s*(\S+); sents:\s*(\d+); "
    r"bsz:\s*(\d+)/\s*(\d+)/\s*(\d+); (\d+)/\s*(\d+) tok/s;\s*(\d+) sec")
ONMT_VALID = re.compile(r"Validation perplexity: (\S+)")
INFO = re.compile(r"^PEER_INFO (\{.*\})\s*$", re.M)
PEAK = re.compile(r"^PEER_PEAK_GPU_MEMORY_GIB (\S+)", re.M)
PARAMS = {"joeynmt": re.compile(r"Total params: (\d+)"), "OpenNMT-py": re.compile(r"\* number of parameters: (\d+)")}
TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.M)

DEFINITIONS = {
    "joeynmt": "JoeyNMT 'Tokens per Sec' per logging window: target tokens (</s> included, <s> and padding "
               "not) since the previous log line / host wall-clock seconds since it; median over the "
               "windows after the warm-up",
    "OpenNMT-py": "OpenNMT-py 'tgt tok/s' per report window: target non-pad tokens (</s> included, <s> not) "
                  "since the previous report / wall-clock seconds since it; median over the windows after "
                  "the warm-up",
}


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def parse_joeynmt(text: str, validations: Path | None) -> dict:
    windows = [(int(m.group(2)), _num(m.group(5))) for m in JOEY_STEP.finditer(text)]
    out = {"windows": windows, "dev_ppl": None, "dev_ppl_source": None, "dev_ppl_step": None}
    if validations is not None and validations.is_file():
        rows = JOEY_VALID_FILE.findall(validations.read_text(encoding="utf-8"))
        if rows:
            out.update(dev_ppl=_num(rows[-1][1]), dev_ppl_step=int(rows[-1][0]),
                       dev_ppl_source="validations.txt (ppl, 5 decimals)")
    if out["dev_ppl"] is None:
        evals = JOEY_EVAL.findall(text)
        if evals:
            out.update(dev_ppl=_num(evals[-1]), dev_ppl_source="log 'Evaluation result' (ppl, 2 decimals)")
    return out


def parse_onmt(text: str) -> dict:
    windows, weighted = [], []
    for m in ONMT_STEP.finditer(text):
        step, tgt_rate, tgt_per_batch = int(m.group(1)), _num(m.group(12)), int(m.group(9))
        windows.append((step, tgt_rate))
        weighted.append((step, tgt_rate, tgt_per_batch))
    valid = ONMT_VALID.findall(text)
    return {"windows": windows, "weighted": weighted,
            "dev_ppl": _num(valid[-1]) if valid else None,
            "dev_ppl_source": "log 'Validation perplexity' (%g)" if valid else None}


def summarise(args: argparse.Namespace, text: str) -> dict:
    peer = "joeynmt" if args.peer == "joeynmt" else "OpenNMT-py"
    info = {}
    infos = INFO.findall(text)
    if infos:
        info = json.loads(infos[-1])
    if peer == "joeynmt":
        parsed = parse_joeynmt(text, Path(args.validations) if args.validations else None)
    else:
        parsed = parse_onmt(text)
    measured = [(s, r) for s, r in parsed["windows"] if s > args.warmup and math.isfinite(r)]
    rates = [r for _, r in measured]
    record = {
        "name": args.name,
        "peer": peer,
        "version": info.get("version"),
        "architecture": json.loads(args.architecture),
        "batch": {"sentences": args.batch, "type": "sentences"},
        "precision": args.precision,
        "warmup_steps": args.warmup,
        "steps": args.steps,
        "total_steps": args.warmup + args.steps,
        "log_every": args.log_every,
        "last_logged_step": parsed["windows"][-1][0] if parsed["windows"] else None,
        "tgt_tokens_per_second": round(statistics.median(rates), 1) if rates else None,
        "tgt_tokens_per_second_mean": round(statistics.fmean(rates), 1) if rates else None,
        "tgt_tokens_per_second_windows": [[s, r] for s, r in measured],
        "tgt_tokens_per_second_definition": DEFINITIONS[peer],
        "dev_ppl": parsed["dev_ppl"],
        "dev_ppl_source": parsed["dev_ppl_source"],
        "parameters": int(PARAMS[peer].findall(text)[-1]) if PARAMS[peer].findall(text) else None,
        "peak_gpu_memory_gib": _num(PEAK.findall(text)[-1]) if PEAK.findall(text) else None,
        "wall_seconds": args.wall_seconds,
        "exit_code": args.rc,
        "torch": info.get("torch"),
        "python": info.get("python"),
        "device": info.get("device"),
        "command": args.command,
        "log": Path(args.log).name,
        "config": Path(args.config).read_text(encoding="utf-8") if args.config and Path(args.config).is_file() else None,
    }
    if peer == "OpenNMT-py":
        tokens = seconds = 0.0
        previous = 0
        for step, rate, tgt_per_batch in parsed["weighted"]:
            n = tgt_per_batch * (step - previous)
            if step > args.warmup and rate > 0:
                tokens += n
                seconds += n / rate
            previous = step
        record["tgt_tokens_per_second_token_weighted"] = round(tokens / seconds, 1) if seconds else None
    if args.data_stats and Path(args.data_stats).is_file():
        record["data"] = json.loads(Path(args.data_stats).read_text(encoding="utf-8"))
        record["data"].pop("manifest_splits", None)
    record["replay"] = {k: getattr(args, k) for k in
                        ("peer", "name", "warmup", "steps", "log_every", "batch", "precision", "architecture",
                         "command", "rc", "wall_seconds", "validations", "data_stats")}
    problems = []
    if args.rc != 0:
        problems.append(f"exit code {args.rc}")
    if TRACEBACK.search(text):
        problems.append("traceback in log")
    if record["dev_ppl"] is None:
        problems.append("no dev perplexity in log")
    if not rates:
        problems.append("no throughput window after the warm-up")
    if record["last_logged_step"] != record["total_steps"]:
        problems.append(f"last logged step {record['last_logged_step']} != {record['total_steps']}")
    record["status"] = "ok" if not problems else "problem: " + "; ".join(problems)
    return record


def upsert(out: Path, record: dict) -> None:
    records = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else []
    records = [r for r in records if r.get("name") != record["name"]] + [record]
    out.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")


def show(records: list[dict]) -> None:
    for r in records:
        ppl = f"{r['dev_ppl']:.3f}" if isinstance(r.get("dev_ppl"), float) else r.get("dev_ppl")
        print(f"{r['name']:<22} {r['peer']} {r['version']}  {r['precision']}  steps {r['warmup_steps']}+{r['steps']}  "
              f"tgt tok/s median {r['tgt_tokens_per_second']} (mean {r['tgt_tokens_per_second_mean']})  "
              f"dev ppl {ppl}  params {r.get('parameters')}  peak GiB {r['peak_gpu_memory_gib']}  {r['status']}")


def add_record_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out", required=True)
    ap.add_argument("--peer", required=True, choices=["joeynmt", "onmt"])
    ap.add_argument("--name", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--config")
    ap.add_argument("--validations", help="JoeyNMT's model_dir/validations.txt")
    ap.add_argument("--data-stats", help="stats.json of prepare_data.py")
    ap.add_argument("--warmup", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--log-every", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--precision", required=True)
    ap.add_argument("--architecture", required=True, help="JSON object")
    ap.add_argument("--command", required=True)
    ap.add_argument("--rc", type=int, default=0)
    ap.add_argument("--wall-seconds", type=float)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    add_record_args(sub.add_parser("record"))
    sub.add_parser("reparse").add_argument("out_dir", type=Path)
    sub.add_parser("show").add_argument("out_dir", type=Path)
    args = ap.parse_args()
    if args.mode == "record":
        text = Path(args.log).read_text(encoding="utf-8", errors="replace") if Path(args.log).is_file() else ""
        record = summarise(args, text)
        upsert(Path(args.out), record)
        show([record])
    elif args.mode == "reparse":
        path = args.out_dir / "peers.json"
        records = json.loads(path.read_text(encoding="utf-8"))
        for old in records:
            replay = dict(old["replay"])
            ns = argparse.Namespace(**replay, out=str(path), log=str(args.out_dir / old["log"]), config=None)
            text = Path(ns.log).read_text(encoding="utf-8", errors="replace")
            new = summarise(ns, text)
            new["config"] = old.get("config")
            if "data" not in new and "data" in old:
                new["data"] = old["data"]
            upsert(path, new)
        show(json.loads(path.read_text(encoding="utf-8")))
    else:
        show(json.loads((args.out_dir / "peers.json").read_text(encoding="utf-8")))


if __name__ == "__main__":
    sys.exit(main())
