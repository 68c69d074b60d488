"""Decoding speed, in one process and one run: the toolkit's search against a bare decoder step.

Models: the paper's (4 x 1000 LSTM, 32k source and target pieces: configs/sutskever2014.yaml) and
the Multi30k attention model (configs/multi30k-en-de.yaml's model section and vocabularies), with
random weights and EOS's output bias lowered by 30, so that every hypothesis runs to its length
limit (the decode sections' a * source + b): the same work at every commit, and the worst case.
Sentences: the lengths of a source file (newstest2014's English side) in SentencePiece pieces, of
a model given with --spm or trained on the file itself; the ids are random. 128 sentences per
batch, longest first, as `Translator` batches them.

  search    beams 1, 5, 12; eager, and with decode.cuda_graphs on CUDA (graphs captured per call,
            their capture timed too): sentences/s and decoder row-steps/s (the rows in the
            decoder's batch at each step, summed over steps: the work the search made the GPU do)
  ceiling   one bare decoder step at 128 x beam rows, without the toolkit: embedding, an nn.LSTM
            step, (the attention and input feeding), the output layer, log_softmax and the top 2K
            of each sentence's K x V candidates; captured in a CUDA graph on CUDA: row-steps/s
  model step  the stricter ceiling (since `ebf20bc`; the goal's measure): the decoder's own step
            alone, from the previous tokens to the float32 log-probabilities, with its weights
            already in bf16 (the ceiling above runs under autocast, which recasts every float32
            weight inside its graph at every step) and no pick; the output layer once in bf16
            and once in float16 (whose float32 log-softmax is one kernel), the faster kept: what
            the issue's table calls one bare decoder step. A search adds its pick and its
            bookkeeping to it
  ratio     search row-steps/s over the ceiling's (one pass, its captures included); with
            graphs, `second_pass` times the set once more with every shape already captured, as
            a server or the next file of a run would see it. `live_`: the same with only the
            rows of sentences not done yet (a done sentence's rows stay in the batch a few
            steps, until the host reads the done count and enough are done to drop).
            `_to_model_step`: the same against the model step (the goal's figure)

    python scripts/benchmark_decode.py --src /work/shared/data/newstest2014/newstest2014.en-fr.en \\
        --out benchmarks/results/decode-speed-h200.json

`--tiny` shrinks the models and batches for a CPU smoke test (tests/test_benchmark.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmt.config import Config, load_config, replace  # noqa: E402
from nmt.data.corpus import read_lines  # noqa: E402
from nmt.data.tokenizer import BOS, EOS, PAD, UNK, Tokenizer  # noqa: E402
from nmt.decode import beam as loop  # noqa: E402
from nmt.decode.search import Counts, search_batches  # noqa: E402
from nmt.device import autocast  # noqa: E402
from nmt.files import write_json  # noqa: E402
from nmt.model.seq2seq import build_model  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from scripts.benchmark_train import captured, guarded, timed  # noqa: E402

CONFIGS = {"paper": ROOT / "configs" / "sutskever2014.yaml", "attention": ROOT / "configs" / "multi30k-en-de.yaml"}
TINY = dict(model={"layers": 1, "hidden": 16, "embed": 16}, data={"src_vocab_size": 64, "tgt_vocab_size": 64})


def arch_config(name: str, tiny: bool) -> Config:
    config = load_config(CONFIGS[name])
    return replace(config, **TINY) if tiny else config


def source_lengths(src: Path, spm_model: Path | None, vocab_size: int) -> list[int]:
    """Each line's length in pieces (empty lines dropped), with --spm or a model trained on the file."""
    lines = [line for line in read_lines(src, allow_empty=True) if line]
    if spm_model is None:
        with tempfile.TemporaryDirectory() as tmp:
            spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=f"{tmp}/spm",
                                           vocab_size=vocab_size, hard_vocab_limit=False, pad_id=PAD, unk_id=UNK,
                                           bos_id=BOS, eos_id=EOS, num_threads=2, minloglevel=2)
            return [len(ids) for ids in Tokenizer(Path(tmp) / "spm.model").encode(lines)]
    return [len(ids) for ids in Tokenizer(spm_model).encode(lines)]


def batches(lengths: list[int], batch: int, vocab: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random ids of these lengths, longest first, `batch` sentences each: (src (B, S), src_lens (B,))."""
    g = torch.Generator().manual_seed(0)
    ordered = sorted(lengths, reverse=True)
    out = []
    for i in range(0, len(ordered), batch):
        lens = torch.tensor(ordered[i:i + batch])
        src = torch.randint(4, vocab, (len(lens), int(lens[0])), generator=g)
        src.masked_fill_(torch.arange(src.size(1)) >= lens.unsqueeze(1), PAD)
        out.append((src.to(device), lens))
    return out


def random_model(config: Config, device) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(config, config.data.src_vocab_size, config.data.tgt_vocab_size).to(device).eval()
    with torch.no_grad():
        model.output.bias[EOS] -= 30.0  # EOS never wins: every hypothesis runs to its limit
    return model


def timed_set(translate, data, device) -> dict:
    """translate(batches, measured) once on the last batch (the shortest: the warm-up, measured
    False), then on every batch i in order, between two synchronisations; rates over the whole set."""
    translate([len(data) - 1], False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    translate(range(len(data)), True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    sentences = sum(len(lens) for _, lens in data)
    return {"sentences": sentences, "seconds": round(seconds, 4), "sentences_per_second": sentences / seconds}


def timed_search(model, data, options, device, bf16: bool, outputs: list | None = None) -> dict:
    """Our search over every batch (`timed_set`) as `Translator` runs it (nmt/decode/search.py's
    search_batches: each batch queued before the one before is read, the next encoder ahead). `options` is one
    DecodeOptions, or one per batch. `outputs`, if given, receives each measured sentence's best
    hypothesis, in batch order."""
    counts = Counts()

    def translate(indices, measured):
        with autocast(device, bf16):
            batch_options = [options[i] for i in indices] if isinstance(options, list) else options
            for found in search_batches(model, [data[i] for i in indices], batch_options,
                                        counts=counts if measured else None):
                if measured and outputs is not None:
                    outputs.extend(hyps[0] for hyps in found)

    result = timed_set(translate, data, device)
    return {**result, "steps": counts.steps, "row_steps": counts.row_steps, "live_row_steps": counts.live_row_steps,
            "captures": counts.captures, "capture_seconds": round(counts.capture_seconds, 4),
            "row_steps_per_second": counts.row_steps / result["seconds"],
            "live_row_steps_per_second": counts.live_row_steps / result["seconds"]}


@dataclass
class BareStep:
    """One decoder step in plain PyTorch for `sentences` x `beam` rows, on static tensors."""

    config: Config
    sentences: int
    beam: int
    src_len: int
    device: torch.device
    pick: bool = True  # the top 2K of each sentence's candidates too (`in_dtype` turns it off)

    def __post_init__(self):
        m, vocab = self.config.model, self.config.data.tgt_vocab_size
        rows, h = self.sentences * self.beam, m.hidden
        self.attention = m.attention != "none"
        self.embed = nn.Embedding(vocab, m.embed).to(self.device)
        self.lstm = nn.LSTM(m.embed + (h if m.input_feeding else 0), h, m.layers, batch_first=True).to(self.device)
        self.output = nn.Linear(h, vocab).to(self.device)
        self.prev = torch.randint(4, vocab, (rows,), device=self.device)
        self.state = tuple(torch.zeros(m.layers, rows, h, device=self.device) for _ in range(2))
        self.scores = torch.zeros(self.sentences, self.beam, 1, device=self.device)
        if self.attention:
            self.key_proj = nn.Linear(h, h, bias=False).to(self.device)
            self.combine = nn.Linear(2 * h, h, bias=False).to(self.device)
            self.memory = torch.randn(self.sentences, self.src_len, h, device=self.device)
            self.keys = self.key_proj(self.memory).detach()
            self.feed = torch.zeros(rows, h, device=self.device)

    def in_dtype(self, dtype: torch.dtype, output: torch.dtype) -> "BareStep":
        """The same step with its weights and inputs in `dtype` once (not recast at every step by
        autocast), the output layer's in `output`; called without autocast, without the pick."""
        for module in (self.embed, self.lstm, *((self.key_proj, self.combine) if self.attention else ())):
            module.to(dtype)
        self.output.to(output)
        self.pick = False
        self.state = tuple(s.to(dtype) for s in self.state)
        if self.attention:
            self.memory, self.keys, self.feed = (x.to(dtype) for x in (self.memory, self.keys, self.feed))
        return self

    @torch.no_grad()
    def __call__(self):
        x = self.embed(self.prev)
        if self.attention:
            x = torch.cat([x, self.feed], -1)
        out, _ = self.lstm(x.unsqueeze(1), self.state)  # (R, 1, H)
        if self.attention:  # a sentence's K queries against its one memory row: (n, K, S)
            query = out.view(self.sentences, self.beam, -1)
            weights = torch.softmax(query @ self.keys.transpose(1, 2), -1)
            out = torch.tanh(self.combine(torch.cat([weights.to(query.dtype) @ self.memory, query], -1)))
        out = out.reshape(-1, out.size(-1))
        if not self.pick:  # the model step alone: float32 log-probabilities, upcast inside the kernel
            return F.log_softmax(self.output(out.to(self.output.weight.dtype)), -1, dtype=torch.float32)
        log_probs = F.log_softmax(self.output(out).float(), -1)
        candidates = self.scores + log_probs.view(self.sentences, self.beam, -1)
        return candidates.view(self.sentences, -1).topk(2 * self.beam, dim=1)


def bare_ceiling(config, sentences, beam, src_len, device, *, steps: int, bf16: bool) -> dict:
    torch.manual_seed(0)
    step = BareStep(config, sentences, beam, src_len, device)
    use_amp = bf16 and device.type == "cuda"

    def run():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            return step()

    seconds = timed(captured(run) if device.type == "cuda" else run, device, steps)
    return {"rows": sentences * beam, "step_ms": 1000 * seconds, "row_steps_per_second": sentences * beam / seconds}


def model_step_ceiling(config, sentences, beam, src_len, device, *, steps: int, bf16: bool) -> dict:
    """The decoder's step alone (`BareStep.in_dtype`), its output layer in bf16 and in float16 (the
    faster kept; both recorded), in a CUDA graph on CUDA; float32 throughout without bf16."""
    outputs = (torch.bfloat16, torch.float16) if bf16 and device.type == "cuda" else (torch.float32,)
    found = {}
    for output in outputs:
        torch.manual_seed(0)
        step = BareStep(config, sentences, beam, src_len, device).in_dtype(outputs[0], output)
        found[str(output).removeprefix("torch.")] = timed(captured(step) if device.type == "cuda" else step,
                                                          device, steps)
    seconds = min(found.values())
    return {"rows": sentences * beam, "step_ms": 1000 * seconds, "row_steps_per_second": sentences * beam / seconds,
            "output_layer_step_ms": {name: round(1000 * s, 4) for name, s in found.items()}}


def ratios(timed: dict, bares: dict) -> dict:
    """A search's row-steps/s (all rows, and live ones) over each bare step's: {name: record}."""
    return {f"{prefix}ratio_to_{name}": round(timed[rate] / bare["row_steps_per_second"], 3)
            for name, bare in bares.items() if "error" not in bare
            for prefix, rate in (("", "row_steps_per_second"), ("live_", "live_row_steps_per_second"))}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="source text, one sentence per line")
    parser.add_argument("--spm", type=Path, default=None, help="SentencePiece model for the lengths [train one]")
    parser.add_argument("--spm-vocab", type=int, default=32000, help="pieces of the model trained on --src "
                                                                   "(fewer if the file is too small)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--archs", default="paper,attention")
    parser.add_argument("--beams", default="1,5,12")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--limit", type=int, default=None, help="only the first N sentences of --src")
    parser.add_argument("--ceiling-steps", type=int, default=50)
    parser.add_argument("--tiny", action="store_true", help="tiny models (a CPU smoke test)")
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device, bf16 = torch.device(args.device), not args.no_bf16
    lengths = source_lengths(args.src, args.spm, args.spm_vocab)[:args.limit]
    header, records = provenance(), []
    print(f"{header['device']}, torch {torch.__version__}: {len(lengths)} sentences, "
          f"{sum(lengths) / len(lengths):.1f} pieces on average")

    def add(record: dict) -> None:  # written after every measurement: a run cut short keeps its figures
        records.append({**record, **header})
        rate = f"{record['row_steps_per_second']:>12,.0f} row-steps/s" if "error" not in record else record["error"]
        extra = ""
        if record.get("kind") == "search" and "error" not in record:
            extra = f"  {record['sentences_per_second']:8.1f} sent/s" + "".join(
                f"  {record[key]:.2f} of the {name}" for key, name in (("ratio_to_ceiling", "ceiling"),
                                                                        ("ratio_to_model_step", "model step"))
                if key in record)
        if "second_pass" in record and "ratio_to_model_step" in record["second_pass"]:
            extra += f"  (a second pass: {record['second_pass']['ratio_to_model_step']:.2f})"
        print(f"{record['kind']:8} {record['arch']:9} beam {record['beam']:2} {record.get('mode', ''):7} {rate}{extra}")
        if args.out:
            write_json(args.out, records)

    modes = ["eager", "graphs"] if device.type == "cuda" else ["eager"]
    for arch in args.archs.split(","):
        config = arch_config(arch, args.tiny)
        model, data = random_model(config, device), batches(lengths, args.batch, config.data.src_vocab_size, device)
        src_len = round(sum(lengths) / len(lengths))
        for beam in map(int, args.beams.split(",")):
            common = {"arch": arch, "beam": beam, "batch": args.batch, "bf16": bf16 and device.type == "cuda",
                      "check_every": loop.CHECK_EVERY, "read_lag": loop.READ_LAG if device.type == "cuda" else 0}
            ceiling = guarded(bare_ceiling, config, args.batch, beam, src_len, device, steps=args.ceiling_steps,
                              bf16=bf16)
            add({"kind": "ceiling", **common, "mode": "graph" if device.type == "cuda" else "eager", **ceiling})
            strict = guarded(model_step_ceiling, config, args.batch, beam, src_len, device, steps=args.ceiling_steps,
                             bf16=bf16)
            add({"kind": "model step", **common, "mode": "graph" if device.type == "cuda" else "eager", **strict})
            for mode in modes:
                options = config.decode.override(beam=beam, n_best=1, batch_size=args.batch,
                                                 cuda_graphs=mode == "graphs")
                result = guarded(timed_search, model, data, options, device, bf16)
                if "error" not in result:
                    bares = {"ceiling": ceiling, "model_step": strict}
                    result.update(ratios(result, bares))
                    if mode == "graphs":  # the set again, every shape captured: what a server or a second file sees
                        again = timed_search(model, data, options, device, bf16)
                        result["second_pass"] = {**{key: again[key] for key in ("seconds", "captures",
                                                                                "sentences_per_second")},
                                                 **ratios(again, bares)}
                add({"kind": "search", **common, "mode": mode, **result})
    return records


if __name__ == "__main__":
    main()
