"""A stack of recurrent layers (LSTM or GRU) with the regularisers the later literature added.

Options, all off for the paper's model:
  bidirectional   each layer reads both ways; its output is [forward; backward] (hidden/2 each)
  dropout         between layers (Zaremba et al.: never on the recurrent connection)
  variational     the dropout mask is drawn once per sequence and reused at every time step
                  (Gal & Ghahramani); the recurrent connection itself stays cuDNN's
  residual        layer k >= 2 adds its input to its output
  weight_drop     DropConnect on each layer's hidden-to-hidden matrix (AWD-LSTM, Merity et al. 2017):
                  one mask per call of `forward`, i.e. per window of a language model
  top             the last layer's size, when it is not `hidden` (AWD-LSTM: 1150, 1150, then the
                  400 of the tied embedding); a state still holds `hidden` units per layer, the
                  last layer's in its first `top` of them and zeros after
  kernel          "cudnn", "triton" or "auto": an LSTM's unpacked `forward` on CUDA as the Triton
                  kernels of nmt/model/lstm_kernel.py (one fused kernel per time step and layer)
                  instead of cuDNN's; "auto" takes them where they apply and gradients are taken
                  (see `uses_kernel`); the trainer sets "cudnn" where its step is not a CUDA graph

Without residual connections or variational dropout the whole stack is one cuDNN call; otherwise
it runs layer by layer (as it must when its layers sit on different GPUs). States use torch's layout: (layers * directions, B, hidden / directions).

`step` runs one time step with the same weights through torch's cell functions (lstm_cell,
gru_cell): a decoder that must loop over time (input feeding, search) pays two matrix multiplies
and one fused kernel per layer instead of a cuDNN call's setup at every position.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from nmt.device import host_to_device
from nmt.model import lstm_kernel

State = tuple[torch.Tensor, Optional[torch.Tensor]]  # (h, c); c is None for a GRU


def sequence_dropout_mask(batch: int, size: int, p: float, like: torch.Tensor) -> torch.Tensor:
    """One inverted-dropout mask per sequence: (B, 1, size), broadcast over time."""
    keep = torch.empty(batch, 1, size, device=like.device, dtype=like.dtype).bernoulli_(1 - p)
    return keep / (1 - p)


class StackedRNN(nn.Module):
    def __init__(self, *, cell: str, input_size: int, hidden: int, layers: int, bidirectional: bool = False,
                 dropout: float = 0.0, variational: bool = False, residual: bool = False, per_layer: bool = False,
                 weight_drop: float = 0.0, top: Optional[int] = None, kernel: str = "cudnn"):
        super().__init__()
        self.top = top or hidden
        if self.top != hidden and (bidirectional or residual or self.top > hidden):
            raise ValueError("a smaller last layer (top) reads one way, with no residual connection")
        self.kernel = kernel
        rnn_class = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.is_lstm = cell == "lstm"
        self.directions = 2 if bidirectional else 1
        self.hidden, self.num_layers = hidden, layers
        self.dropout, self.variational, self.residual, self.weight_drop = dropout, variational, residual, weight_drop
        # per_layer: for the layer pipeline; weight drop replaces each layer's recurrent matrix
        self.fused = not residual and not variational and not per_layer and not weight_drop and self.top == hidden
        self.int8_cells: Optional[nn.ModuleList] = None  # one quantized cell per layer, for `step` (CPU decoding)
        per_direction = hidden // self.directions
        if self.fused:
            self.rnn = rnn_class(input_size, per_direction, layers, batch_first=True, bidirectional=bidirectional,
                                 dropout=dropout if layers > 1 else 0.0)
        else:
            self.layers = nn.ModuleList(
                rnn_class(input_size if i == 0 else hidden, self.size(i) // self.directions, 1, batch_first=True,
                          bidirectional=bidirectional) for i in range(layers))

    def size(self, i: int) -> int:
        """Layer i's output size (both directions)."""
        return self.top if i == self.num_layers - 1 else self.hidden

    def _padded(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Layer i's state (..., size) widened with zeros to the stack's state width, `hidden`."""
        gap = self.hidden // self.directions - h.size(-1)
        return nn.functional.pad(h, (0, gap)) if gap else h

    def _narrowed(self, i: int, h: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Layer i's own units of a state slice in the stack's width (the inverse of `_padded`)."""
        units = self.size(i) // self.directions
        return h[..., :units] if h is not None and h.size(-1) != units else h

    def sample_masks(self, batch: int, like: torch.Tensor) -> list[Optional[torch.Tensor]]:
        """Masks for the inputs of layers 2..L, drawn once per sequence (variational dropout)."""
        if not (self.training and self.variational and self.dropout > 0):
            return [None] * (self.num_layers - 1)
        return [sequence_dropout_mask(batch, self.hidden, self.dropout, like) for _ in range(self.num_layers - 1)]

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None, state: Optional[State] = None,
                masks: Optional[list] = None) -> tuple[torch.Tensor, State]:
        """x (B, S, input) -> outputs (B, S, top), final (h, c) (layers * directions, B, hidden / directions).

        `lengths` (B,) on the CPU keeps padding out of the final state (packed sequences);
        None means every row is full length. `masks` (from sample_masks) fixes the
        variational masks, so a step-by-step decoder uses one mask for the whole sequence.
        """
        kernel = self.uses_kernel(x, lengths)
        if self.fused and not kernel:
            return self._run(self.rnn, x, lengths, state)
        masks = masks if masks is not None else self.sample_masks(x.size(0), x)
        finals_h, finals_c = [], []
        per_layer = self.directions
        for i in range(self.num_layers):
            layer_state = None
            if state is not None:
                h, c = state
                layer_state = (self._narrowed(i, h[i * per_layer:(i + 1) * per_layer]),
                               self._narrowed(i, c[i * per_layer:(i + 1) * per_layer] if c is not None else None))
            if i > 0:
                x = self._drop_between(x, masks[i - 1])
            if kernel:
                out, (h_i, c_i) = self._run_kernel(i, x, layer_state)
            else:
                layer = self.layers[i]
                # A layer pipeline puts layers on several devices; a quantized layer (no float weights) runs on the CPU.
                device = layer.weight_hh_l0.device if hasattr(layer, "weight_hh_l0") else x.device
                x = x.to(device)
                if layer_state is not None:
                    layer_state = tuple(s.to(device) if s is not None else None for s in layer_state)
                out, (h_i, c_i) = self._run(self._weight_dropped(layer), x, lengths, layer_state)
            x = out + x if self.residual and i > 0 else out
            finals_h.append(self._padded(i, h_i))
            finals_c.append(self._padded(i, c_i) if c_i is not None else None)
        home = finals_h[0].device
        c_all = torch.cat([c.to(home) for c in finals_c]) if self.is_lstm else None
        return x, (torch.cat([h.to(home) for h in finals_h]), c_all)

    def uses_kernel(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> bool:
        """Whether `forward` runs the Triton recurrence: asked for ("triton", or "auto" with
        gradients on: without them, in evaluation and scoring, cuDNN's one call per window beats a
        launch per step), an LSTM read one way, full-length rows (no packing), every layer's
        weights on x's device and in float (not a layer pipeline or an int8 model), and Triton there."""
        if self.kernel == "cudnn" or not self.is_lstm or self.directions != 1 or lengths is not None:
            return False
        if self.kernel == "auto" and not torch.is_grad_enabled():
            return False
        if not lstm_kernel.available(x):
            return False
        return all(w.device == x.device and w.is_floating_point()
                   for i in range(self.num_layers) for w in self._cell_weights(i)[:2])

    def _run_kernel(self, i: int, x: torch.Tensor, state: Optional[State]) -> tuple[torch.Tensor, State]:
        """Layer i through lstm_kernel.recurrence (weight drop included): out, (h, c) as `_run` gives them."""
        w_ih, w_hh, b_ih, b_hh = self._cell_weights(i)
        if self.training and self.weight_drop:
            w_hh = self._dropped(w_hh)
        if state is None:
            h0 = c0 = x.new_zeros(x.size(0), w_hh.size(1), dtype=torch.float32)
        else:
            h0, c0 = state[0][0].contiguous(), state[1][0].contiguous()
        out, h, c = lstm_kernel.recurrence(nn.functional.linear(x, w_ih, b_ih + b_hh), w_hh, h0, c0)
        return out, (h.unsqueeze(0), c.unsqueeze(0))

    def step(self, x: torch.Tensor, state: tuple[list, Optional[list]],
             masks: Optional[list] = None) -> tuple[torch.Tensor, tuple[list, Optional[list]]]:
        """One time step of a one-directional stack on one device: x (B, input) -> (B, top).

        The state is a list of per-layer h (B, hidden) and one of c (None for a GRU; a smaller
        last layer's in its first `top` units, as in `forward`); so is the
        state returned. The same computation as `forward` on a length-1 sequence (dropout between
        layers, residual connections and variational masks included), on the same parameters.
        """
        masks = masks if masks is not None else self.sample_masks(x.size(0), x)
        h_in, c_in = state
        hs, cs = [], []
        for i in range(self.num_layers):
            if i > 0:
                x = self._drop_between(x, masks[i - 1].squeeze(1) if masks[i - 1] is not None else None)
            h, c = self._cell(i, x, self._narrowed(i, h_in[i]), self._narrowed(i, c_in[i]) if self.is_lstm else None)
            hs.append(self._padded(i, h))
            cs.append(self._padded(i, c) if c is not None else None)
            x = h + x if self.residual and i > 0 else h
        return x, (hs, cs if self.is_lstm else None)

    def _cell(self, i: int, x: torch.Tensor, h: torch.Tensor, c: Optional[torch.Tensor]) -> State:
        """Layer i's cell on one step: torch's fused cell on the layer's weights, or the int8 cell
        that nmt/decode/quantize.py put in `int8_cells` (a quantized layer keeps no float weights)."""
        if self.int8_cells is not None:
            cell = self.int8_cells[i]
            return cell(x, (h, c)) if self.is_lstm else (cell(x, h), None)
        weights = self._cell_weights(i)
        if self.is_lstm:
            return torch.lstm_cell(x, (h, c), *weights)
        return torch.gru_cell(x, h, *weights), None

    def cells(self) -> nn.ModuleList:
        """nn.LSTMCell (or nn.GRUCell) copies of the layers' weights, one per layer: what `step`
        computes, as modules that torch's quantization can convert."""
        cell_class = nn.LSTMCell if self.is_lstm else nn.GRUCell
        cells = nn.ModuleList()
        for i in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._cell_weights(i)
            cell = cell_class(w_ih.size(1), w_hh.size(1)).to(w_ih.device)
            with torch.no_grad():
                for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (w_ih, w_hh, b_ih, b_hh)):
                    getattr(cell, name).copy_(value)
            cells.append(cell)
        return cells

    def _cell_weights(self, i: int) -> tuple[torch.Tensor, ...]:
        """Layer i's (w_ih, w_hh, b_ih, b_hh), wherever nn.LSTM / nn.GRU keeps them."""
        rnn, k = (self.rnn, i) if self.fused else (self.layers[i], 0)
        return tuple(getattr(rnn, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _weight_dropped(self, layer: nn.Module):
        """The layer, or (training with weight drop) a call of it with a dropped-out copy of its
        hidden-to-hidden matrix: the gradient flows to the layer's own weight through the mask."""
        if not (self.training and self.weight_drop):
            return layer
        names = [name for name, _ in layer.named_parameters() if name.startswith("weight_hh")]
        dropped = {name: self._dropped(getattr(layer, name)) for name in names}
        return lambda *args: torch.func.functional_call(layer, dropped, args)

    def _dropped(self, matrix: torch.Tensor) -> torch.Tensor:
        """DropConnect: a dropped-out copy of a recurrent matrix (the gradient flows to the matrix)."""
        return nn.functional.dropout(matrix, self.weight_drop, True)

    def _drop_between(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        if mask is not None:
            return x * mask
        return nn.functional.dropout(x, self.dropout, self.training) if not self.variational else x

    def _run(self, rnn: nn.Module, x, lengths, state) -> tuple[torch.Tensor, State]:
        if state is not None and not self.is_lstm:
            state = state[0]
        elif state is not None:
            state = (state[0].contiguous(), state[1].contiguous())
        if lengths is None:
            out, final = rnn(x, state)
        else:
            out, final = rnn(pack(x, lengths), state)
            out = unpack(out, x.size(1))
        return (out, final) if self.is_lstm else (out, (final, None))


def pack(x: torch.Tensor, lengths: torch.Tensor) -> PackedSequence:
    """x (B, S, I) batch-first with CPU `lengths` -> a packed sequence, as torch's
    pack_padded_sequence(enforce_sorted=False) builds it, without waiting for the device.

    torch's version copies its sort order to the device from pageable memory (a stream
    synchronisation at every call); here the order goes through `host_to_device`.
    """
    sorted_lengths, order = torch.sort(lengths, descending=True)
    order = host_to_device(order, x.device)
    packed = pack_padded_sequence(x.index_select(0, order), sorted_lengths, batch_first=True, enforce_sorted=True)
    return PackedSequence(packed.data, packed.batch_sizes, order)  # computes the inverse order too


def unpack(packed: PackedSequence, total_length: int) -> torch.Tensor:
    """The padded (B, total_length, H) outputs of `pack`'s sequence, rows in the original order.

    (pad_packed_sequence also returns the lengths, reordered with a device-to-host copy.)
    """
    plain = PackedSequence(packed.data, packed.batch_sizes)
    out, _ = pad_packed_sequence(plain, batch_first=True, total_length=total_length)
    return out.index_select(0, packed.unsorted_indices)
