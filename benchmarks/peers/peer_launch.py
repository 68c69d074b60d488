#!/usr/bin/env python3
"""Start a peer's own training entry point, unchanged, and print a few facts for parse_logs.py.

    peer_launch.py joeynmt train CONFIG --skip-test     -> joeynmt.__main__.main()
    peer_launch.py onmt -config CONFIG                  -> onmt.bin.train.main()

Before: prints PEER_INFO {"peer", "version", "torch", "device"}.
After (also on an error): prints PEER_PEAK_GPU_MEMORY_GIB (torch.cuda.max_memory_allocated).

JoeyNMT 2.3.0's RecurrentEncoder.forward always reads the backward direction of the top layer's
final state (hidden_layerwise[-1:, 1]), so `bidirectional: False` dies with an IndexError at the
first batch. For a unidirectional encoder this launcher swaps in the same computation without
that index (the top layer's final forward state, which is what the original returns for the
forward half); a bidirectional encoder keeps the original method.

JoeyNMT 2.3.0 with `fp16: True` clips the gradient norm BEFORE GradScaler unscales it, i.e. it
clips the loss-scaled gradients (scale 65536 at the start): with clip_grad_norm 5 every update
shrinks to about 5/scale, and the run barely learns. With AMP on, this launcher makes the clipper
call scaler.unscale_(optimizer) first (the order torch's AMP recipe prescribes and OpenNMT-py
follows); scaler.step then skips its own unscale. The fp32 path is untouched.

These two are the only changes made to JoeyNMT; each is printed in the log when it applies.

OpenNMT-py imports every data transform at start-up, and its `terminology` transform imports
spaCy (35 MB wheel plus a dozen dependencies) at module level. The benchmark uses no transform,
so stubs/ (a stand-in spaCy whose every use fails loudly) goes at the END of sys.path: a real
spaCy, where installed, still wins. Nothing else of either peer is touched.
"""

import atexit
import json
import sys
from importlib import metadata
from pathlib import Path


def _peak_memory() -> None:
    try:
        import torch
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            print(f"PEER_PEAK_GPU_MEMORY_GIB {torch.cuda.max_memory_allocated() / 2**30:.3f}", flush=True)
    except Exception:  # reporting only
        pass


def _fix_joey_unidirectional_encoder() -> None:
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    from joeynmt.encoders import RecurrentEncoder

    original = RecurrentEncoder.forward

    def forward(self, src_embed, src_length, mask, **kwargs):
        if self.rnn.bidirectional:
            return original(self, src_embed, src_length, mask, **kwargs)
        # RecurrentEncoder.forward of JoeyNMT 2.3.0, less the backward-direction lines
        self._check_shapes_input_forward(src_embed=src_embed, src_length=src_length, mask=mask)
        total_length = src_embed.size(1)
        src_embed = self.emb_dropout(src_embed)
        packed = pack_padded_sequence(src_embed, src_length.cpu(), batch_first=True)
        output, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):
            hidden, _memory_cell = hidden
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=total_length)
        # hidden: layers x batch x hidden; the top layer's final state feeds the decoder
        return output, hidden[-1]

    RecurrentEncoder.forward = forward
    print("peer_launch: patched joeynmt.encoders.RecurrentEncoder.forward for a unidirectional encoder "
          "(JoeyNMT 2.3.0 indexes the backward direction unconditionally)", flush=True)


def _fix_joey_amp_clipping() -> None:
    from joeynmt.training import TrainManager

    original = TrainManager.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        scaler, clip = self.scaler, self.clip_grad_fun
        if scaler is not None and scaler.is_enabled() and clip is not None:
            def clip_unscaled(parameters):
                scaler.unscale_(self.optimizer)
                return clip(parameters=parameters)

            self.clip_grad_fun = clip_unscaled
            print("peer_launch: JoeyNMT fp16: gradients are unscaled before clipping "
                  "(JoeyNMT 2.3.0 clips the loss-scaled gradients)", flush=True)

    TrainManager.__init__ = __init__


def main() -> None:
    peer, args = sys.argv[1], sys.argv[2:]
    import torch
    dist = {"joeynmt": "joeynmt", "onmt": "OpenNMT-py"}[peer]
    info = {"peer": dist, "version": metadata.version(dist), "torch": torch.__version__,
            "python": sys.version.split()[0],
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    print("PEER_INFO " + json.dumps(info), flush=True)
    atexit.register(_peak_memory)
    if peer == "joeynmt":
        _fix_joey_unidirectional_encoder()
        _fix_joey_amp_clipping()
        from joeynmt.__main__ import main as entry
        sys.argv = ["joeynmt"] + args
    else:
        sys.path.append(str(Path(__file__).resolve().parent / "stubs"))
        import spacy
        if getattr(spacy, "IS_PEER_BENCHMARK_STUB", False):
            print("peer_launch: spaCy is not installed; using the stand-in in benchmarks/peers/stubs", flush=True)
        from onmt.bin.train import main as entry
        sys.argv = ["onmt_train"] + args
    entry()


if __name__ == "__main__":
    main()
