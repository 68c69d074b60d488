"""The paper's rescoring on real data: one model's n-best lists rescored by other models.

The base model translates the dev and test sources into N-best lists (`nmt translate --beam N
--n-best N`); each rescorer (one checkpoint, or several as an ensemble, "B+C") scores every
candidate (`nmt score --nbest`), and the weights of (rescorer's log-probability, base model's list
score) are tuned on dev (`--tune-on`) and applied to test. Also the paper's untuned average
(`--rerank`, weights 0.5 / 0.5). One JSON record: test BLEU of the base model's own beam output
(each list's first candidate) and of every reranking, the tuned weights, the commands.

    python scripts/rescore_experiment.py --base runs/m30k-a --rescorer runs/m30k-b \\
        --rescorer runs/m30k-c --rescorer runs/m30k-b+runs/m30k-c \\
        --dev data/multi30k/val.en data/multi30k/val.de \\
        --test data/multi30k/test_2016_flickr.en data/multi30k/test_2016_flickr.de \\
        --nbest 50 --workdir runs/rescore --out benchmarks/results/rescore-multi30k-h200.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmt.data.corpus import read_lines  # noqa: E402
from nmt.decode.nbest import read_nbest  # noqa: E402
from nmt.evaluate import score as bleu_scores  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.provenance import provenance  # noqa: E402


def nmt(*args: str) -> tuple[str, float]:
    """Run one nmt command; its stderr (where `nmt score` reports tuned weights) and seconds."""
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "nmt", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"nmt {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stderr.strip(), round(time.time() - started, 1)


def bleu(path: Path, reference: Path) -> float:
    return bleu_scores(read_lines(path), read_lines(reference)).bleu


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the checkpoint or run whose n-best lists are rescored")
    parser.add_argument("--rescorer", action="append", required=True,
                        help="a checkpoint or run; join several with + for an ensemble; repeat for more")
    parser.add_argument("--dev", nargs=2, required=True, metavar=("SRC", "REF"))
    parser.add_argument("--test", nargs=2, required=True, metavar=("SRC", "REF"))
    parser.add_argument("--nbest", type=int, default=50)
    parser.add_argument("--workdir", default="runs/rescore")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    (dev_src, dev_ref), (test_src, test_ref) = [tuple(map(Path, pair)) for pair in (args.dev, args.test)]
    record = {"name": "rescore", **provenance(), "base": args.base, "nbest": args.nbest, "commands": [],
              "rerankings": []}

    lists = {}
    for split, src in (("dev", dev_src), ("test", test_src)):
        lists[split] = work / f"{split}.nbest"
        command = ["translate", "-m", args.base, str(src), "--beam", str(args.nbest), "--n-best", str(args.nbest),
                   "-o", str(lists[split])]
        _, seconds = nmt(*command)
        record["commands"].append({"command": "nmt " + " ".join(command), "seconds": seconds})
    own = work / "test.beam"  # the base model's own beam output: each list's first candidate
    firsts = [group[0].hypothesis for group in read_nbest(lists["test"], len(read_lines(test_src)))]
    own.write_text("".join(line + "\n" for line in firsts), encoding="utf-8")
    record["base_beam_bleu"] = bleu(own, test_ref)
    print(f"base model's beam-{args.nbest} output: test BLEU {record['base_beam_bleu']}", flush=True)

    for rescorer in args.rescorer:
        models = [word for name in rescorer.split("+") for word in ("-m", name)]
        runs = {"paper average 0.5/0.5": ["--rerank"],
                "tuned on dev": ["--tune-on", str(lists["dev"]), "--tune-source", str(dev_src),
                                 "--tune-ref", str(dev_ref)]}
        for how, extra in runs.items():
            output = work / f"test.{rescorer.replace('/', '_').replace('+', '-')}.{how.split()[0]}"
            command = ["score", *models, "-s", str(test_src), "--nbest", str(lists["test"]), *extra, "-o", str(output)]
            said, seconds = nmt(*command)
            row = {"rescorer": rescorer, "how": how, "test_bleu": bleu(output, test_ref),
                   "seconds": seconds, "command": "nmt " + " ".join(command)}
            if said:
                row["tuning"] = said.splitlines()[-1]
            row["gain"] = round(row["test_bleu"] - record["base_beam_bleu"], 2)
            record["rerankings"].append(row)
            print(json.dumps(row), flush=True)
            write_atomically(Path(args.out), json.dumps(record, indent=2) + "\n")
    write_atomically(Path(args.out), json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
