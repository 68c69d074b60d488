"""Decoding speed side by side with OpenNMT-py's translator, in one process on one device (issue 14).

Both systems decode the same sentences with the same weights: our paper model (4 x 1000 LSTM, no
attention, 32k vocabularies; scripts/benchmark_decode.py's `random_model`: random weights, EOS's
output bias lowered by 30, so every hypothesis runs to its length limit) and an OpenNMT-py 3.5.1
model of the same shape (`rnn` encoder and decoder, LSTM, `global_attention none`, `input_feed 0`,
no bridge), into which OUR weights are copied. The OpenNMT-py model is written as an OpenNMT-py
checkpoint to a temporary folder and loaded back by `onmt.translate.translator.build_translator`,
the way `onmt_translate` loads a model, one translator per beam, with its own options.

Sentences: benchmark_decode's (`source_lengths`, `batches`): the source file's lengths in
SentencePiece pieces, random ids, 128 a batch, longest first. OpenNMT-py gets the same ids,
reversed (our model reverses the source inside `encode`; OpenNMT-py has no such switch), as its
batches are shaped ((B, S, 1) ids and `srclen`, on the device), and runs `Translator.translate_batch`
on them: its encoder, its `BeamSearch` (beam 1 included: onmt_translate uses BeamSearch unless it
samples), its reporting; then its best hypothesis per sentence is read to the host (`.tolist()`),
as our search returns host token lists. Not timed on either side: text (its TranslationBuilder,
our detokenisation) and file output.

Length limit: OpenNMT-py's is one per batch (`max_length`, or `max_length_ratio` x the batch's
padded source length + 5), ours one per sentence (decode.max_len_a x its length + max_len_b). So
both run one rule that both can express: a batch decodes at most 2 x (its longest source) + 10
steps, for every sentence of it: OpenNMT-py through its translator's `max_length` set per batch
(`max_length_ratio 0`), ours through per-batch options (max_len_a 0, max_len_b the batch's
limit). Ours is also timed under its own per-sentence rule (`rule: sentence`: less work, reported
for reference only). With EOS held down, both make exactly `limit` decoder steps for every row.

Timing: scripts/benchmark_decode.py's `timed_set`: one warm-up batch (the shortest), then the whole
set between two torch.cuda.synchronize calls. Per beam: sentences/s of both, ours in eager and (on
CUDA) with decode.cuda_graphs, the ratio ours / OpenNMT-py's, decoder row-steps of both (OpenNMT-py's
counted as the rows its decoder was called with, summed over calls), and the share of sentences
whose best hypothesis is the same in both.

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site python3 benchmarks/peers/onmt_translate.py \\
        --src .bench/newstest2014/newstest2014.en-fr.en --out $OUT/onmt-decode.json

`--layers/--hidden/--vocab` shrink the model for a CPU test (tests/test_onmt_translate.py).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from nmt.config import replace  # noqa: E402
from nmt.data.tokenizer import BOS, EOS, PAD, UNK  # noqa: E402
from nmt.decode.search import max_lengths  # noqa: E402
from nmt.device import autocast  # noqa: E402
from nmt.files import write_json  # noqa: E402
from nmt.model.seq2seq import reverse_padded  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from scripts.benchmark_decode import (arch_config, batches, random_model, source_lengths, timed_search,  # noqa: E402
                                      timed_set)
from scripts.benchmark_train import guarded  # noqa: E402

# OpenNMT-py's special tokens, put at our ids so that every id means the same in both.
SPECIALS = {PAD: "<blank>", UNK: "<unk>", BOS: "<s>", EOS: "</s>"}
# our parameter name -> OpenNMT-py's (the LSTMs' names are the same: nn.LSTM in both)
RENAMED = {"src_embed.weight": "encoder.embeddings.make_embedding.emb_luts.0.weight",
           "tgt_embed.weight": "decoder.embeddings.make_embedding.emb_luts.0.weight",
           "output.weight": "generator.weight", "output.bias": "generator.bias"}


def import_onmt():
    """OpenNMT-py imports every data transform at start-up; terminology.py imports spaCy, which is
    not carried (benchmarks/peers/README.md): the stand-in in stubs/ goes last on sys.path."""
    sys.path.append(str(Path(__file__).resolve().parent / "stubs"))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.cuda.amp deprecations in onmt/modules/sru.py
        import onmt
        import onmt.opts
        import onmt.translate.translator
        from onmt.model_builder import build_base_model
        from onmt.utils.parse import ArgumentParser
    return onmt, build_base_model, ArgumentParser


def onmt_model_opt(onmt, ArgumentParser, layers: int, hidden: int, embed: int):
    """OpenNMT-py's model options, parsed by its own training parser (as onmt_train would store them)."""
    parser = ArgumentParser()
    onmt.opts.train_opts(parser)
    args = ["-data", "{}", "-src_vocab", "unused", "-save_data", "unused", "-model_task", "seq2seq",
            "-encoder_type", "rnn", "-decoder_type", "rnn", "-rnn_type", "LSTM", "-layers", str(layers),
            "-hidden_size", str(hidden), "-word_vec_size", str(embed), "-global_attention", "none",
            "-input_feed", "0", "-dropout", "0", "-attention_dropout", "0", "-model_dtype", "fp32"]
    opt = parser.parse_args(args)  # no -bridge, no -brnn, no -share_*: their defaults are off
    ArgumentParser.update_model_opts(opt)
    ArgumentParser.validate_model_opts(opt)
    return opt


def vocab_tokens(size: int) -> list[str]:
    return [SPECIALS.get(i, f"p{i}") for i in range(size)]


def write_onmt_checkpoint(ours, config, path: Path) -> dict:
    """Build OpenNMT-py's model of our shape, copy our weights into it, save it as onmt_train saves a
    checkpoint (model without the generator, generator, vocab, opt). Returns a summary."""
    onmt, build_base_model, ArgumentParser = import_onmt()
    import pyonmttok
    from onmt.inputters.inputter import vocabs_to_dict

    m = config.model
    opt = onmt_model_opt(onmt, ArgumentParser, m.layers, m.hidden, m.embed)
    vocabs = {"src": pyonmttok.build_vocab_from_tokens(vocab_tokens(config.data.src_vocab_size)),
              "tgt": pyonmttok.build_vocab_from_tokens(vocab_tokens(config.data.tgt_vocab_size)),
              "data_task": "seq2seq", "decoder_start_token": SPECIALS[BOS]}
    for side in ("src", "tgt"):
        assert all(vocabs[side][token] == i for i, token in SPECIALS.items()), "OpenNMT-py moved a special token"
    theirs = build_base_model(opt, vocabs)
    target = theirs.state_dict()
    copied = {RENAMED.get(name, name): value.detach().float().cpu() for name, value in ours.state_dict().items()}
    if set(copied) != set(target) or any(copied[k].shape != target[k].shape for k in target):
        raise SystemExit(f"the models differ in shape: ours {sorted((k, tuple(v.shape)) for k, v in copied.items())} "
                         f"OpenNMT-py {sorted((k, tuple(v.shape)) for k, v in target.items())}")
    checkpoint = {"model": {k: v for k, v in copied.items() if not k.startswith("generator.")},
                  "generator": {k.split(".", 1)[1]: v for k, v in copied.items() if k.startswith("generator.")},
                  "vocab": vocabs_to_dict(vocabs), "opt": opt, "optim": None}
    torch.save(checkpoint, path)
    return {"parameters": sum(v.numel() for v in target.values()), "decoder": type(theirs.decoder).__name__,
            "encoder": type(theirs.encoder).__name__, "onmt_version": onmt.__version__}


def onmt_translator(checkpoint: Path, beam: int, device, precision: str):
    """OpenNMT-py's Translator, built by its build_translator from the checkpoint and translate options."""
    onmt, _, ArgumentParser = import_onmt()
    parser = ArgumentParser()
    onmt.opts.translate_opts(parser)
    gpu = ["-gpu", str(device.index or 0)] if device.type == "cuda" else []
    opt = parser.parse_args(["-model", str(checkpoint), "-src", "unused", "-beam_size", str(beam), "-n_best", "1",
                             "-min_length", "0", "-max_length", "1000", "-max_length_ratio", "0", "-ratio", "0",
                             "-length_penalty", "none", "-alpha", "0", "-beta", "0", "-coverage_penalty", "none",
                             "-block_ngram_repeat", "0", "-batch_size", "128", "-batch_type", "sents",
                             "-precision", "fp16" if precision == "fp16" else "fp32", "-seed", "0", *gpu])
    ArgumentParser.validate_translate_opts(opt)
    ArgumentParser.validate_translate_opts_dynamic(opt)
    # OpenNMT-py 3.5.1 predates torch 2.6's torch.load(weights_only=True) default, and its checkpoints
    # hold the options as an argparse.Namespace: allowed here, for the checkpoint this script wrote.
    with torch.serialization.safe_globals([argparse.Namespace]):
        translator = onmt.translate.translator.build_translator(opt, device_id=device.index or 0,
                                                                report_score=False, out_file=io.StringIO())
    assert not translator.replace_unk and translator.n_best == 1 and translator.beam_size == beam
    contiguous_hidden(translator.model.decoder.rnn)
    return translator


def contiguous_hidden(rnn) -> None:
    """OpenNMT-py 3.5.1's RNNDecoder.map_state reorders its (h, c) through a transpose and hands
    the non-contiguous result to nn.LSTM, which torch 2.11 refuses on CUDA ("rnn: hx is not
    contiguous"; older torch copied it). The copy is made here, in front of its LSTM, as older torch
    made it inside: the least change that lets its translator run (seen on the H200)."""
    forward = rnn.forward

    def with_contiguous_hidden(input, hx=None):
        if hx is not None:
            hx = tuple(h.contiguous() for h in hx) if isinstance(hx, tuple) else hx.contiguous()
        return forward(input, hx)

    rnn.forward = with_contiguous_hidden


def onmt_batches(data, limit_a: float, limit_b: int) -> list[dict]:
    """Our batches as OpenNMT-py's translator takes them: the reversed source as (B, S, 1) ids and
    srclen on the device, plus each batch's length limit (the rule of the module's docstring)."""
    out = []
    for src, lens in data:
        out.append({"src": reverse_padded(src, lens.to(src.device)).unsqueeze(-1), "srclen": lens.to(src.device),
                    "limit": int(max_lengths(lens.max().view(1), limit_a, limit_b)[0])})
    return out


class RowCounter:
    """Wraps the translator's _decode_and_generate: the rows of each decoder call, summed (no sync)."""

    def __init__(self, translator):
        self.row_steps, self.steps, inner = 0, 0, translator._decode_and_generate

        def counted(decoder_in, *args, **kwargs):
            self.row_steps += decoder_in.size(0)
            self.steps += 1
            return inner(decoder_in, *args, **kwargs)

        translator._decode_and_generate = counted


def timed_onmt(translator, data, theirs: list[dict], device, autocast_bf16: bool, outputs: list) -> dict:
    counter = RowCounter(translator)

    def translate(indices, measured):
        for i in indices:
            batch = theirs[i]
            translator.max_length = batch["limit"]
            with autocast(device, autocast_bf16):
                results = translator.translate_batch({"src": batch["src"], "srclen": batch["srclen"]}, attn_debug=False)
            best = [hyps[0].tolist() for hyps in results["predictions"]]
            if measured:
                outputs.extend(best)
            else:
                counter.row_steps = counter.steps = 0

    result = timed_set(translate, data, device)
    return {**result, "steps": counter.steps, "row_steps": counter.row_steps,
            "row_steps_per_second": counter.row_steps / result["seconds"]}


def without_eos(tokens: list[int]) -> list[int]:
    return tokens[:tokens.index(EOS)] if EOS in tokens else tokens


def agreement(ours: list, theirs: list[list[int]]) -> dict:
    """Sentences whose best hypotheses agree. At the limit L ours holds L - 1 tokens and EOS,
    OpenNMT-py's L tokens (it stops without writing EOS): so ours must be a prefix of theirs, at
    most one token shorter."""
    pairs = [(h.tokens, without_eos(t)) for h, t in zip(ours, theirs)]
    same = sum(1 for o, t in pairs if t[:len(o)] == o and len(t) - len(o) in (0, 1))
    lengths = sorted({len(t) - len(o) for o, t in pairs})
    return {"same_hypotheses": same, "compared": len(theirs), "length_differences": lengths}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="source text, one sentence per line")
    parser.add_argument("--spm", type=Path, default=None, help="SentencePiece model for the lengths [train one]")
    parser.add_argument("--spm-vocab", type=int, default=32000)
    parser.add_argument("--limit", type=int, default=None, help="only the first N sentences of --src")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--beams", default="1,5,12")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--layers", type=int, default=None, help="[the paper's 4]")
    parser.add_argument("--hidden", type=int, default=None, help="hidden and embedding size [1000]")
    parser.add_argument("--vocab", type=int, default=None, help="source and target vocabulary [32000]")
    parser.add_argument("--max-len-a", type=float, default=2.0)
    parser.add_argument("--max-len-b", type=int, default=10)
    parser.add_argument("--onmt-precision", choices=["autocast-bf16", "fp16", "fp32"], default="autocast-bf16",
                        help="OpenNMT-py's: torch.autocast(bfloat16) around its translate_batch, as ours runs "
                             "(on CUDA); or its own `-precision fp16` (model.half()); or fp32")
    parser.add_argument("--no-bf16", action="store_true", help="ours in fp32 (and OpenNMT-py unless --onmt-precision)")
    parser.add_argument("--eos-bias", type=float, default=-30.0, help="added to EOS's output bias [-30: no EOS]")
    parser.add_argument("--ours-modes", default=None, help="eager,graphs [both on CUDA, eager on the CPU]")
    parser.add_argument("--no-native", action="store_true", help="skip ours under its own per-sentence rule")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    bf16 = not args.no_bf16 and device.type == "cuda"
    onmt_bf16 = args.onmt_precision == "autocast-bf16" and not args.no_bf16 and device.type == "cuda"

    config = arch_config("paper", tiny=False)
    if args.layers or args.hidden:
        h = args.hidden or config.model.hidden
        config = replace(config, model={"layers": args.layers or config.model.layers, "hidden": h, "embed": h})
    if args.vocab:
        config = replace(config, data={"src_vocab_size": args.vocab, "tgt_vocab_size": args.vocab})
    lengths = source_lengths(args.src, args.spm, args.spm_vocab)[:args.limit]
    header, records = provenance(), []
    ours = random_model(config, device)
    with torch.no_grad():  # random_model lowered it by 30; --eos-bias sets the change
        ours.output.bias[EOS] += 30.0 + args.eos_bias
    data = batches(lengths, args.batch, config.data.src_vocab_size, device)
    theirs_data = onmt_batches(data, args.max_len_a, args.max_len_b)
    per_batch = [config.decode.override(max_len_a=0.0, max_len_b=b["limit"], min_len_a=0.0, min_len_b=0,
                                        length_penalty=0.0, n_best=1) for b in theirs_data]
    m = config.model
    common = {"arch": f"{m.layers} x {m.hidden} LSTM, no attention, {config.data.src_vocab_size}/"
                      f"{config.data.tgt_vocab_size} vocabularies, random weights (EOS bias {args.eos_bias:+g})",
              "sentences": len(lengths), "src": str(args.src), "batch": args.batch,
              "length_rule": f"per batch: floor({args.max_len_a:g} x longest source + {args.max_len_b}) decoder steps",
              "order": "longest first, as scripts/benchmark_decode.py", "bf16_ours": bf16,
              "onmt_precision": args.onmt_precision if device.type == "cuda" else "fp32"}
    print(f"{header['device']}, torch {torch.__version__}: {len(lengths)} sentences, "
          f"{sum(lengths) / len(lengths):.1f} pieces on average; {common['arch']}", flush=True)

    def add(record: dict) -> None:  # written after every measurement: a run cut short keeps its figures
        records.append({**common, **record, **header})
        if "error" in record:
            print(f"beam {record['beam']:2} {record['system']}: {record['error']}", flush=True)
        else:
            extra = f"  ours/onmt {record['ratio_to_onmt']:.2f}" if "ratio_to_onmt" in record else ""
            print(f"beam {record['beam']:2} {record['system']:8} {record.get('mode', ''):6} {record.get('rule', ''):8}"
                  f" {record['sentences_per_second']:9.1f} sent/s {record['row_steps_per_second']:12,.0f} row-steps/s"
                  f"{extra}", flush=True)
        if args.out:
            write_json(args.out, records)

    modes = args.ours_modes.split(",") if args.ours_modes else (["eager", "graphs"] if device.type == "cuda"
                                                               else ["eager"])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = write_onmt_checkpoint(ours, config, Path(tmp) / "onmt.pt")
        common.update(onmt={**summary, "checkpoint_seconds": round(time.perf_counter() - start, 2)},
                      parameters_ours=sum(p.numel() for p in ours.parameters()))
        beams = list(map(int, args.beams.split(",")))
        # The process's warm-up: both systems once on the longest batch at the first beam, untimed
        # (on the CPU the first measurement of the process was up to 10x slow after timed_set's
        # own warm-up batch, whichever system came first).
        start = time.perf_counter()
        warm = onmt_translator(Path(tmp) / "onmt.pt", beams[0], device, args.onmt_precision)
        guarded(timed_onmt, warm, data[:1], theirs_data[:1], device, onmt_bf16, [])
        del warm
        guarded(timed_search, ours, data[:1], per_batch[0].override(beam=beams[0], batch_size=args.batch), device,
                bf16)
        common["process_warmup_seconds"] = round(time.perf_counter() - start, 2)
        for beam in beams:
            translator = onmt_translator(Path(tmp) / "onmt.pt", beam, device, args.onmt_precision)
            onmt_out: list = []
            theirs = guarded(timed_onmt, translator, data, theirs_data, device, onmt_bf16, onmt_out)
            add({"system": "onmt", "beam": beam, "mode": "eager", "rule": "batch", **theirs})
            del translator
            runs = [(mode, "batch") for mode in modes] + ([] if args.no_native else [(modes[-1], "sentence")])
            for mode, rule in runs:
                options = per_batch if rule == "batch" else config.decode.override(
                    max_len_a=args.max_len_a, max_len_b=args.max_len_b, min_len_a=0.0, min_len_b=0,
                    length_penalty=0.0, n_best=1)
                graphs = mode == "graphs"
                options = [o.override(beam=beam, batch_size=args.batch, cuda_graphs=graphs) for o in options] \
                    if isinstance(options, list) else options.override(beam=beam, batch_size=args.batch,
                                                                        cuda_graphs=graphs)
                our_out: list = []
                result = guarded(timed_search, ours, data, options, device, bf16, our_out)
                if "error" not in result and "error" not in theirs:
                    result["ratio_to_onmt"] = round(result["sentences_per_second"] / theirs["sentences_per_second"], 3)
                    if rule == "batch":
                        result["agreement_with_onmt"] = agreement(our_out, onmt_out)
                add({"system": "ours", "beam": beam, "mode": mode, "rule": rule, **result})
    return records


if __name__ == "__main__":
    main()
