"""int8 dynamic quantization for decoding on the CPU, with torch's own quantized kernels.

"Dynamic": weights are stored as int8 once; each matrix product quantizes its input on the fly
(per call, from its range), multiplies in int8 with int32 accumulation (fbgemm / onednn on x86)
and returns float32. Quantized here:
  - every nn.Linear: the output layer, the attention's projections, the combine layer W_c, the
    bridge (torch.ao.quantization.quantize_dynamic);
  - the encoder's nn.LSTM / nn.GRU: torch's dynamic quantized LSTM / GRU, packed sequences and
    both directions included;
  - the decoder: its nn.LSTM / GRU (teacher forcing: what `nmt score` runs) and, for the search,
    which steps one cell per layer through `StackedRNN.step` and so never calls the nn.LSTM
    module that quantize_dynamic converts, one quantized LSTMCell / GRUCell per layer made from
    the same float weights (torch.ops.quantized.quantized_lstm_cell_dynamic), in `int8_cells`.
Left in float32: the embeddings (a lookup, no product), the attention's scores and softmax over
the source, the log-softmax, and a split output layer (a model trained with softmax_devices:
its slices are placed by device, which a quantized layer has not).

torch 2.13 still ships torch.ao.quantization.quantize_dynamic, deprecated in favour of the
separate torchao package (not a dependency here); the deprecation warnings are silenced around
the call, since the command line prints one line per translation and nothing else.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from nmt.device import pick_device
from nmt.errors import NmtError
from nmt.model.pipeline import SplitOutput

KINDS = ("int8",)


def quantize_device(kind: str, device: str) -> torch.device:
    """The device a quantized model runs on: the CPU (auto picks it); any other is refused."""
    if kind not in KINDS:
        raise NmtError(f"unknown quantization '{kind}': use {', '.join(KINDS)} (or leave --quantize out)")
    if device == "auto":
        return torch.device("cpu")  # torch's int8 kernels are CPU kernels
    try:
        asked = torch.device(device)
    except RuntimeError:
        return pick_device(device)  # its error names the valid devices
    if asked.type != "cpu":  # the same answer whether or not this machine has a GPU
        raise NmtError(f"--quantize {kind} runs on the CPU only, but --device {device} was asked for: "
                       f"use --device cpu (or leave --quantize out on a GPU)")
    return asked


def quantize_model(model) -> None:
    """Make a Seq2Seq model's (or every ensemble member's) weights int8, in place; for decoding only."""
    from torch.ao.quantization import quantize_dynamic

    for member in getattr(model, "models", [model]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)  # "quantized tensor creation ... deprecated"
            # The cells first: they copy the decoder's float weights, which the conversion below removes.
            member.decoder.int8_cells = quantize_dynamic(member.decoder.cells(), {nn.LSTMCell, nn.GRUCell},
                                                         dtype=torch.qint8)
            quantize_dynamic(member, quantizable(member), dtype=torch.qint8, inplace=True)


def quantizable(model: nn.Module) -> set[str]:
    """Names of the modules quantize_dynamic should convert: Linear, LSTM and GRU, except the
    slices of a split output layer and the cells made above."""
    split = [name + "." for name, module in model.named_modules() if isinstance(module, SplitOutput)]
    return {name for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.LSTM, nn.GRU)) and not name.startswith(tuple(split))}
