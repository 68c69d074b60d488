"""Training speed, in one process: bare-model ceilings against the real `nmt train` loop.

(a) Ceilings: a bare PyTorch model (no toolkit code), random token ids, fixed shapes; one full
    step (forward, backward, norm clipping, SGD) eager and captured in one CUDA graph.
(b) The real loop: `nmt.train.loop.Trainer` on prepared data (the toolkit's sampler, collate,
    model, clipping, optimizer, logging), with and without static shapes and CUDA graphs.
    "equal shapes" data holds sentences of exactly the ceiling's length, so its rate divides by
    the ceiling's; real corpora report their padding fraction.
Printed: target tokens/s, ratios, padding fraction, peak GPU memory, and model FLOPs utilisation
against a bf16 matrix-multiply rate measured in the same run. `--out` writes JSON.
`--profile-steps N` runs N more steps of each loop case under torch.profiler, after its timed part, and
reports the GPU busy fraction, GPU ms per step and the top kernels and host ops (where the gap goes).

    python scripts/benchmark_train.py --out benchmarks/results/train_speed_h100.json \\
        --corpus tatoeba=runs/prepared/tatoeba-en-fr --corpus newstest-lengths=runs/prepared/newstest-lengths
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace as dc_replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmt.config import config_from_dict, replace  # noqa: E402
from nmt.data.prepare import write_ids  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from nmt.train.loop import Trainer  # noqa: E402
from nmt.train.stopping import StopRules  # noqa: E402


@dataclass(frozen=True)
class Arch:
    name: str
    layers: int
    hidden: int
    embed: int
    vocab: int
    attention: bool  # bi-LSTM encoder, Luong general attention with input feeding

    def model_config(self) -> dict:
        extra = dict(attention="general", input_feeding=True, bidirectional=True) if self.attention else {}
        return dict(layers=self.layers, hidden=self.hidden, embed=self.embed, **extra)


ARCHS = {
    "paper": Arch("paper 4x1000 LSTM, 32k vocab", 4, 1000, 1000, 32000, False),
    "attention": Arch("2x512 bi-LSTM + Luong attention with input feeding, 16k vocab", 2, 512, 512, 16000, True),
}


# --- (a) bare models --------------------------------------------------------------------------

class BareSeq2Seq(nn.Module):
    """The model in a few lines, without the toolkit: the ceiling the loop is measured against."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        h = arch.hidden
        self.src_embed, self.tgt_embed = nn.Embedding(arch.vocab, arch.embed), nn.Embedding(arch.vocab, arch.embed)
        enc_hidden = h // 2 if arch.attention else h
        self.encoder = nn.LSTM(arch.embed, enc_hidden, arch.layers, batch_first=True, bidirectional=arch.attention)
        if arch.attention:
            self.decoder = nn.LSTM(arch.embed + h, h, arch.layers, batch_first=True)
            self.attn_w = nn.Linear(h, h, bias=False)
            self.combine = nn.Linear(2 * h, h, bias=False)
        else:
            self.decoder = nn.LSTM(arch.embed, h, arch.layers, batch_first=True)
        self.output = nn.Linear(h, arch.vocab)

    def forward(self, src, tgt_in, tgt_out):
        memory, (h, c) = self.encoder(self.src_embed(src))
        if self.arch.attention:
            layers = self.arch.layers
            h = h.view(layers, 2, -1, h.size(2)).permute(0, 2, 1, 3).reshape(layers, -1, 2 * h.size(2))
            c = c.view(layers, 2, -1, c.size(2)).permute(0, 2, 1, 3).reshape(layers, -1, 2 * c.size(2))
            keys = self.attn_w(memory)
            inputs, state = self.start(self.tgt_embed(tgt_in), (h, c))
            feed, outs = memory.new_zeros(src.size(0), self.arch.hidden), []
            for t in range(tgt_in.size(1)):
                out, state = self.step(inputs[:, t], feed, state)
                weights = torch.softmax(out @ keys.transpose(1, 2), -1)
                feed = torch.tanh(self.combine(torch.cat([weights @ memory, out], -1))).squeeze(1)
                outs.append(feed)
            out = torch.stack(outs, 1)
        else:
            out, _ = self.decoder(self.tgt_embed(tgt_in), (h, c))
        logits = self.output(out)
        return F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), reduction="sum") / src.size(0)

    # The attention decoder's loop, in two hooks (benchmarks/decoder_variants.py steps it other ways).
    def start(self, embedded, state):
        """What the loop steps over (B, T, ...), and the decoder's first state."""
        return embedded, state

    def step(self, x, feed, state):
        """One target position with input feeding: the top layer's output (B, 1, H), the next state."""
        return self.decoder(torch.cat([x, feed], -1).unsqueeze(1), state)


def bare_ceiling(arch: Arch, batch: int, length: int, device, *, steps: int, graph: bool, bf16: bool,
                 model_class=BareSeq2Seq, autocast_cache: bool = True) -> dict:
    """One full step's target tokens/s. `autocast_cache` (on, as in the toolkit) keeps autocast's
    bf16 copies of the weights for the whole step instead of casting them at every use."""
    torch.manual_seed(0)
    model = model_class(arch).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ids = lambda: torch.randint(4, arch.vocab, (batch, length), device=device)  # noqa: E731
    src, tgt_in, tgt_out = ids(), ids(), ids()
    use_amp = bf16 and device.type == "cuda"

    def step():
        optimizer.zero_grad(set_to_none=False)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp, cache_enabled=autocast_cache):
            loss = model(src, tgt_in, tgt_out)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        return loss

    seconds = timed(captured(step) if graph else step, device, steps)
    return {"tgt_tokens_per_second": batch * length / seconds, "step_ms": 1000 * seconds}


def captured(fn):
    """`fn` captured as one CUDA graph (after three warm-up calls on a side stream): its replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def timed(fn, device, steps: int) -> float:
    """Median seconds per call over `steps` calls, after warm-up (device events on CUDA)."""
    for _ in range(3):
        fn()
    if device.type != "cuda":
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / steps


def matmul_rate(device) -> float:
    """Measured dense matrix-multiply FLOP/s: bf16 8192^3 on CUDA, fp32 512^3 on the CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (512, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n ** 3 / timed(lambda: a @ b, device, 20)


def train_flops_per_token(arch: Arch, src_len: int, tgt_len: int) -> float:
    """Matrix-multiply FLOPs of forward + backward (3x forward) per target position."""
    h, e, v, layers = arch.hidden, arch.embed, arch.vocab, arch.layers
    lstm = lambda inp, hid: 2 * 4 * hid * (inp + hid)  # noqa: E731  per position, one direction
    if arch.attention:
        enc = lstm(e, h // 2) * 2 + (layers - 1) * lstm(h, h // 2) * 2
        dec = lstm(e + h, h) + (layers - 1) * lstm(h, h)
        attn = 2 * h * h * src_len / tgt_len + 2 * 2 * src_len * h + 2 * 2 * h * h  # keys, scores+context, combine
    else:
        enc, dec, attn = lstm(e, h) + (layers - 1) * lstm(h, h), lstm(e, h) + (layers - 1) * lstm(h, h), 0
    forward = enc * src_len / tgt_len + dec + attn + 2 * h * v
    return 3 * forward


# --- (b) the real loop ------------------------------------------------------------------------

def finish_prepared(folder: Path, tokenizers: Path, src_vocab: int, tgt_vocab: int) -> Path:
    """What a prepared-data folder needs besides its ids: tokenizers, dev references, manifest.
    (The benchmark decodes nothing: the references are placeholders.)"""
    (folder / "valid.tgt.txt").write_text("x\n" * 64, encoding="utf-8")
    for name in ("src.model", "tgt.model"):
        (folder / name).write_bytes((tokenizers / name).read_bytes())
    manifest = {"src_vocab_size": src_vocab, "tgt_vocab_size": tgt_vocab, "splits": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def synthetic_prepared(folder: Path, *, pairs: int, src_len: int, tgt_len: int, vocab: int, tokenizers: Path) -> Path:
    """A prepared-data folder of random ids with every sentence the given length ("equal shapes")."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", pairs), ("valid", 64)):
        write_ids(folder, f"{split}.src", rng.integers(4, vocab, (count, src_len)).tolist(), vocab)
        write_ids(folder, f"{split}.tgt", rng.integers(4, vocab, (count, tgt_len)).tolist(), vocab)
    return finish_prepared(folder, tokenizers, vocab, vocab)


def guarded(fn, *args, **kwargs) -> dict:
    """Run one measurement; a failure is recorded (and the run goes on) rather than raised."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001  a benchmark reports every case it can
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}


def more_steps(trainer: Trainer, config, steps: int) -> None:
    """Train `steps` more updates, then read the loss (which waits for the device)."""
    trainer.config = replace(config, train={"max_steps": trainer.config.train.max_steps + steps})
    trainer.rules = StopRules(trainer.config.train, trainer.world)
    trainer.train_steps()
    trainer._window.take()


def profile_steps(trainer: Trainer, config, device, steps: int) -> dict:
    """`steps` more training steps under torch.profiler: how busy the GPU is, and with what."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()  # inside the profiler: its start-up and trace processing are not timed
        more_steps(trainer, config, steps)
        if cuda:
            torch.cuda.synchronize()
        wall_us = 1e6 * (time.perf_counter() - start)
    # GPU kernels, memcpys and memsets (not user-annotation ranges, which span gaps)
    on_gpu = lambda e: e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)  # noqa: E731
    device_events = [e for e in prof.events() if on_gpu(e)]
    busy_us, end = 0.0, float("-inf")
    for a, b in sorted((e.time_range.start, e.time_range.end) for e in device_events):  # union of intervals
        busy_us += max(0.0, b - max(a, end))
        end = max(end, b)

    def device_time(e):
        t = getattr(e, "self_device_time_total", None)
        return e.self_cuda_time_total if t is None else t

    def top(events, by):
        return [[e.key[:80], round(by(e) / 1000, 3), e.count] for e in sorted(events, key=by, reverse=True)[:8]]

    averages = prof.key_averages()
    seen = cuda and bool(device_events)
    return {
        "steps": steps,
        "wall_ms_per_step": round(wall_us / 1000 / steps, 3),
        # busy time over the perf_counter wall time of the profiled steps (synchronized at both ends)
        "gpu_busy_fraction": round(busy_us / wall_us, 4) if seen else None,
        "gpu_ms_per_step": round(busy_us / 1000 / steps, 3) if seen else None,
        "top_kernels": top([e for e in averages if on_gpu(e)], device_time) if cuda else [],
        "top_host_ops": top([e for e in averages if e.device_type == DeviceType.CPU], lambda e: e.self_cpu_time_total),
    }


def real_loop(arch: Arch, prepared: Path, device, *, batch: int, warmup_steps: int, steps: int,
              static: bool, graphs: bool, run_dir: Path, bf16: bool, max_tokens=None, profile: int = 0) -> dict:
    run_dir = Path(tempfile.mkdtemp(dir=run_dir))
    raw = {
        "data": {"prepared": str(prepared)},
        "model": arch.model_config(),
        "train": dict(run_dir=str(run_dir), device=str(device), bf16=bf16, batch_size=batch, max_tokens=max_tokens,
                      static_shapes=static, cuda_graphs=graphs, max_steps=warmup_steps, log_every=10 ** 9,
                      eval_every=10 ** 9, save_every=10 ** 9, eval_bleu_sentences=0, epochs=1000),
    }
    config = config_from_dict(raw)
    trainer = Trainer(config, stream=open("/dev/null", "w"))
    trainer.train_steps()  # warm-up: graph captures, cuDNN choices, allocator growth
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    tokens_before, start = trainer.state.tgt_tokens, time.perf_counter()
    more_steps(trainer, config, steps)
    seconds = time.perf_counter() - start
    batches = trainer.sampler.epoch(0)
    result = {
        "tgt_tokens_per_second": (trainer.state.tgt_tokens - tokens_before) / seconds,
        "step_ms": 1000 * seconds / steps,
        "padding_fraction": round(trainer.sampler.padding_fraction(batches), 4),
        "batch_shapes": len({trainer.sampler.shape(b) for b in batches}) if static else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if device.type == "cuda" else None,
    }
    if profile:  # after the timed part and the peak-memory reading: changes neither
        result["profile"] = profile_steps(trainer, config, device, profile)
    return result


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--archs", default="paper,attention")
    parser.add_argument("--shapes", default="paper=128x30,256x30,512x30,128x60;attention=128x25")
    parser.add_argument("--corpus", action="append", default=[], help="name=prepared folder (real data)")
    parser.add_argument("--tokenizers", default=None, help="folder with src.model/tgt.model for synthetic data")
    parser.add_argument("--src-lang", default="en")
    parser.add_argument("--tgt-lang", default="fr")
    parser.add_argument("--lengths-of", action="append", default=[],
                        help="name=PREFIX: random ids with the sentence lengths of PREFIX.en/PREFIX.fr "
                             "(encoded with --tokenizers), 128 x 400 pairs")
    parser.add_argument("--max-tokens", type=int, action="append", default=[], help="token-batch sizes to try")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--profile-steps", type=int, default=0,
                        help="profile N more steps of each loop case (GPU busy fraction, top kernels and host ops)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (a CPU smoke test)")
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device, bf16 = torch.device(args.device), not args.no_bf16
    archs = {k: ARCHS[k] for k in args.archs.split(",")}
    if args.tiny:
        archs = {k: dc_replace(a, layers=1, hidden=16, embed=16, vocab=64) for k, a in archs.items()}
    shapes = {}
    for part in args.shapes.split(";"):
        name, spec = part.split("=")
        shapes[name] = [tuple(map(int, s.split("x"))) for s in spec.split(",")]
    graph_ok = device.type == "cuda"
    header = provenance()
    rate = matmul_rate(device)
    records = [{"kind": "matmul", "flops_per_second": rate}]
    print(f"{header['device']}, torch {torch.__version__}: matmul {rate / 1e12:.0f} TFLOP/s")

    def save() -> None:  # after every measurement: a run cut short keeps what it measured
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            write_atomically(Path(args.out), json.dumps([{**r, **header} for r in records], indent=2) + "\n")

    def add(kind, arch_key, label, result, shape_len, ceiling=None, vocab=None):
        add_record(kind, arch_key, label, result, shape_len, ceiling, vocab)
        save()

    def add_record(kind, arch_key, label, result, shape_len, ceiling=None, vocab=None):
        if "error" in result:
            records.append({"kind": kind, "arch": archs[arch_key].name, "case": label, **result})
            print(f"{kind:9} {arch_key:9} {label:34} FAILED: {result['error']}")
            return
        arch = archs[arch_key] if vocab is None else dc_replace(archs[arch_key], vocab=vocab)
        flops = train_flops_per_token(arch, *shape_len) * result["tgt_tokens_per_second"]
        record = {"kind": kind, "arch": arch.name, "case": label, **result, "mfu": round(flops / rate, 4)}
        if ceiling:
            record["ratio_to_graph_ceiling"] = round(result["tgt_tokens_per_second"] / ceiling, 3)
        records.append(record)
        ratio = f"  {record['ratio_to_graph_ceiling']:.2f} of ceiling" if ceiling else ""
        print(f"{kind:9} {arch_key:9} {label:34} {result['tgt_tokens_per_second']:>11,.0f} tok/s  "
              f"{result['step_ms']:7.2f} ms  MFU {record['mfu']:.3f}{ratio}")
        if "profile" in result:
            prof = result["profile"]
            busy = ("GPU busy n/a" if prof["gpu_busy_fraction"] is None
                    else f"GPU busy {100 * prof['gpu_busy_fraction']:.1f}%")
            tops = [("top kernel", prof["top_kernels"]), ("top host op", prof["top_host_ops"])]
            top = "; ".join(f"{what} {rows[0][0]} {rows[0][1]:.2f} ms x{rows[0][2]}" for what, rows in tops if rows)
            print(f"  profile: {busy} of {prof['wall_ms_per_step']:.2f} ms/step; {top}")

    with tempfile.TemporaryDirectory() as tmp:
        for key, arch in archs.items():
            ceilings = {}
            for batch, length in shapes.get(key, []):
                for graph in ([False, True] if graph_ok else [False]):
                    result = guarded(bare_ceiling, arch, batch, length, device, steps=args.steps, graph=graph, bf16=bf16)
                    add("ceiling", key, f"{batch}x{length} {'graph' if graph else 'eager'}", result, (length, length))
                    ceilings[(batch, length, graph)] = result.get("tgt_tokens_per_second")
            tokenizers = Path(args.tokenizers) if args.tokenizers else None
            for batch, length in shapes.get(key, [])[:1] if tokenizers else []:  # the loop on equal shapes
                data = synthetic_prepared(Path(tmp) / f"{key}-{batch}x{length}", pairs=batch * 40, src_len=length,
                                          tgt_len=length - 1, vocab=arch.vocab, tokenizers=tokenizers)
                ceiling = ceilings.get((batch, length, graph_ok))
                for static in (False, True):
                    result = guarded(real_loop, arch, data, device, batch=batch, warmup_steps=args.warmup_steps,
                                       steps=args.steps, static=static, graphs=static and graph_ok,
                                       run_dir=Path(tmp), bf16=bf16, profile=args.profile_steps)
                    mode = "static+graphs" if static and graph_ok else ("static" if static else "dynamic")
                    add("loop", key, f"equal shapes {batch}x{length} {mode}", result, (length, length), ceiling)
            corpora = [c.split("=") for c in args.corpus]
            corpora += [(name, lengths_corpus(Path(tmp) / f"{key}-{name}", prefix, args.src_lang, args.tgt_lang,
                                              Path(args.tokenizers),
                                              pairs=128 * 400, vocab=arch.vocab))
                        for name, prefix in (e.split("=") for e in args.lengths_of)]
            for name, folder in corpora:
                mean_src, mean_tgt = corpus_lengths(Path(folder))
                vocab = json.loads((Path(folder) / "manifest.json").read_text())["tgt_vocab_size"]
                for static in (False, True):
                    for max_tokens in [None] + args.max_tokens:
                        if max_tokens and not static:
                            continue
                        result = guarded(real_loop, arch, Path(folder), device, batch=128, warmup_steps=args.warmup_steps,
                                           steps=args.steps, static=static, graphs=static and graph_ok,
                                           run_dir=Path(tmp), bf16=bf16, max_tokens=max_tokens,
                                           profile=args.profile_steps)
                        mode = ("static+graphs" if static and graph_ok else "static" if static else "dynamic")
                        size = f"{max_tokens} tok" if max_tokens else "128 sent"
                        add("loop", key, f"{name} {size} {mode}", result, (mean_src, mean_tgt), vocab=vocab)
    save()
    return [{**r, **header} for r in records]


def encoded_corpus(folder: Path, prefix: str, src_lang: str, tgt_lang: str, tokenizers: Path) -> Path:
    """A prepared-data folder of a raw parallel text encoded with existing tokenizers (e.g. newstest
    sentences with the Tatoeba vocabulary: real text of another length distribution)."""
    from nmt.data.corpus import read_parallel
    from nmt.data.tokenizer import Tokenizer

    src_tok, tgt_tok = Tokenizer(tokenizers / "src.model"), Tokenizer(tokenizers / "tgt.model")
    src, tgt = read_parallel(f"{prefix}.{src_lang}", f"{prefix}.{tgt_lang}")
    pairs = [(s, t) for s, t in zip(src_tok.encode(src), tgt_tok.encode(tgt)) if s and t]
    folder.mkdir(parents=True, exist_ok=True)
    for split, chosen in (("train", pairs), ("valid", pairs[:64])):
        write_ids(folder, f"{split}.src", [s for s, _ in chosen], src_tok.vocab_size)
        write_ids(folder, f"{split}.tgt", [t for _, t in chosen], tgt_tok.vocab_size)
    return finish_prepared(folder, tokenizers, src_tok.vocab_size, tgt_tok.vocab_size)


def lengths_corpus(folder: Path, prefix: str, src_lang: str, tgt_lang: str, tokenizers: Path, *, pairs: int,
                   vocab: int) -> Path:
    """Random ids whose (source, target) lengths are drawn from a real corpus's encoded lengths:
    the length profile of newstest2014, say, in a corpus large enough to batch like real data."""
    real = encoded_corpus(folder.with_name(folder.name + "-text"), prefix, src_lang, tgt_lang, tokenizers)
    src_lens = np.diff(np.load(real / "train.src.offsets.npy", allow_pickle=False))
    tgt_lens = np.diff(np.load(real / "train.tgt.offsets.npy", allow_pickle=False))
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(src_lens), pairs)
    folder.mkdir(parents=True, exist_ok=True)
    for split, chosen in (("train", picks), ("valid", picks[:64])):
        write_ids(folder, f"{split}.src", [rng.integers(4, vocab, src_lens[i]).tolist() for i in chosen], vocab)
        write_ids(folder, f"{split}.tgt", [rng.integers(4, vocab, tgt_lens[i]).tolist() for i in chosen], vocab)
    return finish_prepared(folder, tokenizers, vocab, vocab)


def corpus_lengths(folder: Path) -> tuple[float, float]:
    offsets = [np.load(folder / f"train.{side}.offsets.npy", allow_pickle=False) for side in ("src", "tgt")]
    return tuple(float(np.diff(o).mean()) + (side == 1) for side, o in enumerate(offsets))


if __name__ == "__main__":
    main()
