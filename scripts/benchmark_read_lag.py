"""What reading the search's done count late costs in work: row-steps of a trained model's search
with the count read 0, 1, 2, 4 and 8 steps after it is asked for, on the CPU.

On CUDA the search reads how many groups are done READ_LAG steps after asking
(nmt/decode/beam.py's DoneCount), so that the host does not wait for the device; a batch's end and
its shrinks then come that many steps late. On the CPU the count is read at once. This script
makes the CPU search read it as CUDA would, `lag` steps late, and counts the decoder's rows summed
over steps (the work) and the steps, for each lag; the hypotheses must not change.

    python scripts/benchmark_read_lag.py --checkpoint runs/multi30k-en-de/best \\
        --input data/multi30k/test_2016_flickr.en --out benchmarks/results/read-lag-work-cpu.json
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmt.data.corpus import read_lines  # noqa: E402
from nmt.decode import beam as loop  # noqa: E402
from nmt.decode.search import Counts  # noqa: E402
from nmt.decode.translate import Translator  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.provenance import provenance  # noqa: E402


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--input", type=Path, required=True, help="source text, one sentence per line")
    parser.add_argument("--lines", type=int, default=None, help="only the first N lines")
    parser.add_argument("--beams", default="1,5")
    parser.add_argument("--lags", default="0,1,2,4,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines = read_lines(args.input)[:args.lines]
    translator = Translator.load(args.checkpoint, "cpu")
    header, records, plain = provenance(), [], loop.DoneCount
    try:
        for beam in map(int, args.beams.split(",")):
            first = None
            for lag in map(int, args.lags.split(",")):
                loop.DoneCount = functools.partial(plain, lag=lag)  # read on the CPU as CUDA reads it
                counts = Counts()
                found = [h[0].tokens for h in translator.search_ids(translator.src_tokenizer.encode(lines),
                                                                    translator.options(beam=beam), counts=counts)]
                first = first if first is not None else found
                records.append({"beam": beam, "read_lag": lag, "sentences": len(lines), "steps": counts.steps,
                                "row_steps": counts.row_steps,
                                "same_best_as_first_lag": sum(a == b for a, b in zip(found, first)), **header})
                print(f"beam {beam} lag {lag}: {counts.steps} steps, {counts.row_steps} row-steps", flush=True)
    finally:
        loop.DoneCount = plain
    if args.out:
        write_atomically(args.out, json.dumps(records, indent=2) + "\n")
    return records


if __name__ == "__main__":
    main()
