"""fp32 against int8 decoding on the CPU: sentences per second and, with references, BLEU.

Loads a checkpoint (or, without one, builds a random model of configs/quickstart.yaml's size and
random source ids: a speed figure only), translates the same input with the float32 model and
with `quantize="int8"` (same beam, batch size and threads), alternating the two `--repeats`
times, and keeps each one's fastest pass: on a shared machine the other jobs only ever slow a
pass down. Writes one JSON record with `nmt.provenance.provenance()`.

    python scripts/benchmark_quantize.py --checkpoint runs/multi30k-en-de/best \\
        --input data/multi30k/test_2016_flickr.en --ref data/multi30k/test_2016_flickr.de \\
        --beam 10 --threads 2 --out benchmarks/results/quantize-multi30k-en-de-cpu.json
    python scripts/benchmark_quantize.py --out /tmp/quantize-random.json     # no checkpoint: random model

`--kernels` also times the step's matrix products alone (each decoder cell, the output layer),
fp32 against int8: the ceiling of the whole search's speed-up on this CPU.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmt.config import load_config  # noqa: E402
from nmt.data.corpus import read_lines  # noqa: E402
from nmt.decode.quantize import quantize_model  # noqa: E402
from nmt.decode.translate import Translator  # noqa: E402
from nmt.evaluate import score  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.model.seq2seq import build_model  # noqa: E402
from nmt.provenance import cpu_info, provenance  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def random_translators(seed: int) -> tuple[Translator, Translator]:
    """fp32 and int8 copies of one random model of the quickstart config's size (no tokenizers)."""
    config = load_config(ROOT / "configs" / "quickstart.yaml", [])
    translators = []
    for quantize in (False, True):
        torch.manual_seed(seed)  # the same weights both times
        model = build_model(config, config.data.src_vocab_size, config.data.tgt_vocab_size).eval()
        if quantize:
            quantize_model(model)
        translators.append(Translator(model, None, None, config, torch.device("cpu")))
    return translators[0], translators[1]


def random_sources(count: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(4, vocab) for _ in range(rng.randint(5, 25))] for _ in range(count)]


def cpu_features() -> dict:
    """The CPU's model and what fbgemm's int8 kernels care about: AVX-512 VNNI multiplies int8 in
    one instruction (without it, through 16-bit intermediate sums: about 1.7x for the products
    here, against about 3x with it; benchmarks/README.md)."""
    model, flags = cpu_info()
    return {"model": model, "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "avx512_vnni": "avx512_vnni" in flags, "avx_vnni": "avx_vnni" in flags}


def kernels(fp32: Translator, int8: Translator, rows: int, repeats: int = 20) -> dict:
    """The search step's two matrix products, alone, fp32 against int8, on `rows` rows (beam x
    batch, a full step): each decoder layer's cell and the output layer, the fastest of `repeats`
    calls each, alternating. Their ratio bounds what int8 can give the whole search, whose other
    work (log-softmax, top-k, attention, bookkeeping) is the same in both. A split output layer
    (left in float32) and ensembles are not measured."""
    float_model, int8_model = fp32.model, int8.model
    if hasattr(float_model, "models") or not isinstance(float_model.output, torch.nn.Linear):
        return {}
    hidden = float_model.output.in_features
    generator = torch.Generator().manual_seed(0)
    pairs = {"output layer": (float_model.output, int8_model.output, (torch.randn(rows, hidden, generator=generator),))}
    for i, (cell, quantized) in enumerate(zip(float_model.decoder.cells(), int8_model.decoder.int8_cells)):
        x = torch.randn(rows, cell.input_size, generator=generator)
        h = tuple(torch.randn(rows, cell.hidden_size, generator=generator) for _ in range(2))
        pairs[f"decoder layer {i}"] = (cell, quantized, (x, h if isinstance(cell, torch.nn.LSTMCell) else h[0]))
    out = {}
    with torch.no_grad():
        for name, (a, b, inputs) in pairs.items():
            best = {"fp32": float("inf"), "int8": float("inf")}
            for _ in range(repeats):
                for kind, module in (("fp32", a), ("int8", b)):
                    start = time.perf_counter()
                    module(*inputs)
                    best[kind] = min(best[kind], time.perf_counter() - start)
            out[name] = {"fp32_ms": round(1e3 * best["fp32"], 3), "int8_ms": round(1e3 * best["int8"], 3),
                         "speedup": round(best["fp32"] / best["int8"], 3)}
    total = {kind: sum(v[f"{kind}_ms"] for v in out.values()) for kind in ("fp32", "int8")}
    out["all of them"] = {"fp32_ms": round(total["fp32"], 3), "int8_ms": round(total["int8"], 3),
                          "speedup": round(total["fp32"] / total["int8"], 3)}
    return {"rows": rows, "kernels": out}


def timed(run) -> tuple[float, list]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="Checkpoint or run folder [a random quickstart-sized model].")
    parser.add_argument("--input", type=Path, help="Source text, one sentence per line (needed with --checkpoint).")
    parser.add_argument("--ref", type=Path, help="References of --input, for BLEU.")
    parser.add_argument("--lines", type=int, help="Use the first N lines [all; 200 random ones without a checkpoint].")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="[the checkpoint's decode.batch_size]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="Passes of each variant, alternating.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kernels", action="store_true",
                        help="Also time the step's matrix products alone, fp32 against int8, in the same run.")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.checkpoint:
        if args.input is None:
            parser.error("--checkpoint needs --input")
        lines = read_lines(args.input)[:args.lines]
        fp32, int8 = Translator.load(args.checkpoint, "cpu"), Translator.load(args.checkpoint, "cpu", quantize="int8")
        options = fp32.options(beam=args.beam, batch_size=args.batch_size)
        runs = {name: (lambda t=t: [r[0].text for r in t.translate(lines, options)]) for name, t in
                (("fp32", fp32), ("int8", int8))}
    else:
        fp32, int8 = random_translators(args.seed)
        lines = random_sources(args.lines or 200, fp32.config.data.src_vocab_size, args.seed)
        options = fp32.options(beam=args.beam, batch_size=args.batch_size)
        runs = {name: (lambda t=t: [r[0].tokens for r in t.search_ids(lines, options)]) for name, t in
                (("fp32", fp32), ("int8", int8))}

    seconds: dict[str, list[float]] = {"fp32": [], "int8": []}
    outputs = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            elapsed, outputs[name] = timed(run)
            seconds[name].append(round(elapsed, 3))
            print(f"{name}: {elapsed:.1f} s", flush=True)

    record = {"what": "fp32 vs int8 dynamic quantization, CPU decoding", **provenance(),
              "checkpoint": args.checkpoint or "random model of configs/quickstart.yaml's size",
              "input": str(args.input) if args.input else "random source ids", "sentences": len(lines),
              "beam": options.beam, "batch_size": options.batch_size, "threads": torch.get_num_threads(),
              "repeats": args.repeats, "cpu": cpu_features(), "seconds": seconds}
    for name in runs:
        record[f"{name}_sentences_per_s"] = round(len(lines) / min(seconds[name]), 2)
    record["speedup"] = round(record["int8_sentences_per_s"] / record["fp32_sentences_per_s"], 3)
    same = sum(a == b for a, b in zip(outputs["fp32"], outputs["int8"]))
    record["identical_outputs"] = f"{same}/{len(lines)}"
    if args.kernels:
        record["step_kernels"] = kernels(fp32, int8, options.beam * options.batch_size)
    if args.ref and args.checkpoint:
        references = read_lines(args.ref)[:len(lines)]
        for name in runs:
            record[f"{name}_bleu"] = score(outputs[name], references).bleu
        record["bleu_signature"] = score(outputs["fp32"], references).bleu_signature
        record["bleu_lost"] = round(record["fp32_bleu"] - record["int8_bleu"], 2)
    write_atomically(args.out, json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k not in ("command", "host")}, indent=2))


if __name__ == "__main__":
    main()
