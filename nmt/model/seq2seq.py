"""The encoder-decoder of Sutskever, Vinyals & Le (2014), with the later options as switches.

The paper's model: the encoder reads the source (reversed), its final (h, c) of every layer
initialises the decoder, a conditional language model of the target:
    p(y_1..y_m | x) = prod_t softmax(W o_t)[y_t],   o_t = h_t = LSTM(embed(y_{t-1}), h_{t-1})

With attention (Luong et al. 2015) the output vector is o_t = tanh(W_c [c_t; h_t]), c_t the
attention-weighted encoder outputs for query h_t; with input feeding o_{t-1} joins the next
input. With `attention: additive` the query is the previous state h_{t-1} and c_t joins the
RNN's input (Bahdanau et al. 2015).

The model's API is what training and search use:
    encode(src, src_lens) -> DecoderState
    decode_step(prev_tokens, state) -> (log_probs, state)     one step, for search; the state's
                                                              select / reorder keep rows (DecoderState)
    decode_scores(prev_tokens, state)                         the same step, its logits too (search
        -> (log_probs, logits, state)                         ranks tokens in bf16 logits)
    forward(batch) -> summed loss                             teacher forcing: the task protocol
                                                              (nmt/tasks/base.py)
    target_log_probs(state, tgt_in, tgt_out) -> (B, T)        teacher forcing per position, for
                                                              scoring given translations
    attention_weights(state, tgt_in) -> (B, T, S)             teacher forcing, the attention of each
                                                              position (nmt/decode/attention.py)
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from nmt.data.batching import ParallelBatch
from nmt.data.tokenizer import PAD
from nmt.device import host_to_device
from nmt.model import output_loss
from nmt.model.attention import Attention
from nmt.model.pipeline import SplitOutput, spread, wavefront
from nmt.model.rnn import StackedRNN, sequence_dropout_mask


@dataclass
class DecoderState:
    """What the decoder carries from step to step.

    Rows: h and c (batch is dim 1) and feed (dim 0) hold one row per hypothesis. The attention
    memory (memory, keys, src_mask; batch is dim 0) holds one row per sentence, and the rows come
    in equal consecutive groups, one group per sentence: R = n * g rows for n memory rows. After
    `encode` g is 1; beam search makes it the beam size, so its K hypotheses of a sentence share
    one copy of the memory, and reordering them (`reorder`) never copies it.
    """

    h: torch.Tensor  # (layers, R, hidden); inside the decoder's loop (_step) a list of per-layer (R, hidden)
    c: Optional[torch.Tensor] = None  # the same layout as h; None for a GRU
    memory: Optional[torch.Tensor] = None  # (n, S, hidden) encoder outputs, for attention
    keys: Optional[torch.Tensor] = None  # (n, S, hidden) the attention's view of memory
    src_mask: Optional[torch.Tensor] = None  # (n, S) True at real source tokens
    feed: Optional[torch.Tensor] = None  # (R, hidden) the previous output vector (input feeding)

    SENTENCE_FIELDS = ("memory", "keys", "src_mask")

    @property
    def rows_per_sentence(self) -> int:
        return 1 if self.memory is None else self.h.size(1) // self.memory.size(0)

    def select(self, indices: torch.Tensor) -> "DecoderState":
        """Keep (and reorder) any rows; each keeps its own copy of its sentence's memory (g becomes 1)."""
        g = self.rows_per_sentence
        return self._picked(indices, indices if g == 1 else torch.div(indices, g, rounding_mode="floor"))

    def reorder(self, indices: torch.Tensor, sentences: Optional[torch.Tensor] = None) -> "DecoderState":
        """Keep (and reorder) rows that stay with their sentence: beam search's select.

        The caller promises that the new rows form equal consecutive groups and that group i's rows
        all come from sentence i (sentences None: the memory is kept as it is, never copied) or
        from sentence sentences[i] (the memory keeps those rows: sentences leave the batch).
        """
        return self._picked(indices, sentences)

    def padded_source(self, width: Callable[[int], int]) -> "DecoderState":
        """The attention memory padded with masked positions to width(S) (captured search steps
        want few distinct shapes); the same attention: padding gets no weight."""
        if self.memory is None:
            return self
        n, length = self.memory.shape[:2]
        extra = width(length) - length
        if not extra:
            return self
        mask = self.src_mask if self.src_mask is not None else self.memory.new_ones(n, length, dtype=torch.bool)
        return replace(self, memory=F.pad(self.memory, (0, 0, 0, extra)), keys=F.pad(self.keys, (0, 0, 0, extra)),
                       src_mask=F.pad(mask, (0, extra), value=False))

    def _picked(self, rows: torch.Tensor, sentences: Optional[torch.Tensor]) -> "DecoderState":
        picked = {}
        layer_rows = None
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (sentences is None and f.name in self.SENTENCE_FIELDS):
                picked[f.name] = value
            elif f.name in self.SENTENCE_FIELDS:
                picked[f.name] = value.index_select(0, sentences)
            elif f.name in ("h", "c"):  # (layers, R, H): every layer's rows at once, as rows of (layers * R, H)
                # Why not index_select(1, rows): along dim 1 torch runs its general gather kernel, 3x
                # slower for the paper's 4 x 1,536 x 1,000 bf16 state on an H200 (20.4 against 6.8 µs,
                # benchmarks/README.md), and slower on the CPU too.
                layers, width = value.size(0), value.size(1)
                if layer_rows is None:
                    layer_rows = (rows + width * torch.arange(layers, device=rows.device).unsqueeze(1)).view(-1)
                picked[f.name] = value.flatten(0, 1).index_select(0, layer_rows).view(layers, rows.numel(), -1)
            else:
                picked[f.name] = value.index_select(0, rows)
        return DecoderState(**picked)


def reverse_padded(tokens: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
    """Reverse each row's first `lengths[i]` tokens and leave the padding where it is.

    [[a, b, c, PAD], [d, e, PAD, PAD]] -> [[c, b, a, PAD], [e, d, PAD, PAD]]
    """
    if lengths is None:  # every row full length
        return tokens.flip(1)
    positions = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0)  # (1, S)
    lengths = lengths.to(tokens.device).unsqueeze(1)  # (B, 1)
    source_index = torch.where(positions < lengths, lengths - 1 - positions, positions)
    return tokens.gather(1, source_index)


class Seq2Seq(nn.Module):
    def __init__(self, *, src_vocab_size: int, tgt_vocab_size: int, embed: int, hidden: int, layers: int,
                 cell: str = "lstm", reverse_source: bool = True, init_range: float = 0.08,
                 bidirectional: bool = False, bridge: bool = False, attention: str = "none",
                 input_feeding: bool = False, dropout: float = 0.0, embed_dropout: float = 0.0,
                 variational_dropout: bool = False, residual: bool = False, tie_embeddings: bool = False,
                 per_layer: bool = False, output_parts: int = 1):
        super().__init__()
        self.reverse_source, self.attention_kind, self.input_feeding = reverse_source, attention, input_feeding
        self.layers, self.hidden, self.is_lstm = layers, hidden, cell == "lstm"
        self.dropout, self.embed_dropout, self.variational = dropout, embed_dropout, variational_dropout
        rnn = dict(cell=cell, hidden=hidden, layers=layers, dropout=dropout, variational=variational_dropout,
                   residual=residual, per_layer=per_layer)
        self.pipeline: Optional[tuple[list[torch.device], int]] = None  # set by place()

        self.src_embed = nn.Embedding(src_vocab_size, embed, padding_idx=PAD)
        self.encoder = StackedRNN(input_size=embed, bidirectional=bidirectional, **rnn)
        self.bridge_h = nn.Linear(hidden, hidden) if bridge else None
        self.bridge_c = nn.Linear(hidden, hidden) if bridge and self.is_lstm else None

        self.tgt_embed = nn.Embedding(tgt_vocab_size, embed, padding_idx=PAD)
        decoder_input = embed + (hidden if input_feeding or attention == "additive" else 0)
        self.decoder = StackedRNN(input_size=decoder_input, **rnn)
        if attention != "none":
            self.attention = Attention(attention, hidden, hidden)
            self.combine = nn.Linear(2 * hidden, hidden, bias=False)  # o_t = tanh(W_c [c_t; h_t])
        self.output = nn.Linear(hidden, tgt_vocab_size) if output_parts == 1 else SplitOutput(hidden, tgt_vocab_size,
                                                                                              output_parts)
        self.reset_parameters(init_range)
        if tie_embeddings:
            self.output.weight = self.tgt_embed.weight  # needs embed == hidden (checked by the config)

    def reset_parameters(self, init_range: float) -> None:
        """The paper: every parameter uniform in [-0.08, 0.08]; padding rows stay zero."""
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -init_range, init_range)
        with torch.no_grad():
            self.src_embed.weight[PAD].zero_()
            self.tgt_embed.weight[PAD].zero_()

    @property
    def steps_one_by_one(self) -> bool:
        """Whether teacher forcing must loop over time (the input depends on the last output)."""
        return self.input_feeding or self.attention_kind == "additive"

    # --- encoder ----------------------------------------------------------------------------
    def encode(self, src: torch.Tensor, src_lens: Optional[torch.Tensor]) -> DecoderState:
        """src (B, S) right-padded in reading order; src_lens (B,) on the CPU, or None if no padding."""
        # The lengths go to the device once, without a wait; packing keeps the CPU copy.
        lengths = None if src_lens is None else host_to_device(src_lens, src.device)
        if self.reverse_source:
            src = reverse_padded(src, lengths)
        embedded = self._drop(self.src_embed(src), self.embed_dropout)  # (B, S, E)
        # Packing keeps padding out: each row's final state is taken at its own last token.
        memory, (h, c) = self.encoder(embedded, src_lens)  # memory (B, S, H); h (layers*dirs, B, H/dirs)
        h, c = self._to_decoder_layout(h), self._to_decoder_layout(c)
        if self.bridge_h is not None:
            h = torch.tanh(self.bridge_h(h))
            c = self.bridge_c(c) if c is not None else None
        state = DecoderState(h, c)
        if self.attention_kind != "none":
            state.memory, state.keys = memory, self.attention.keys(memory)
            if lengths is not None:
                positions = torch.arange(src.size(1), device=src.device)
                state.src_mask = positions.unsqueeze(0) < lengths.unsqueeze(1)
            if self.input_feeding:
                state.feed = h.new_zeros(src.size(0), self.hidden)
        return state

    def _to_decoder_layout(self, x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """(layers * 2, B, H/2) of a bidirectional encoder -> (layers, B, H): [forward; backward]."""
        if x is None or self.encoder.directions == 1:
            return x
        layers2, batch, half = x.shape
        return x.view(layers2 // 2, 2, batch, half).permute(0, 2, 1, 3).reshape(layers2 // 2, batch, 2 * half)

    # --- decoder ----------------------------------------------------------------------------
    def _drop(self, x: torch.Tensor, p: float, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if mask is not None:
            return x * mask
        if not self.training or p == 0:
            return x
        if self.variational and x.dim() == 3:
            return x * sequence_dropout_mask(x.size(0), x.size(2), p, x)
        return F.dropout(x, p, True)

    def _output_vector(self, rnn_out: torch.Tensor, state: DecoderState, context=None) -> torch.Tensor:
        """o = h (no attention) or tanh(W_c [c; h]) with c the attention context; (B, T, H)."""
        if self.attention_kind == "none":
            return rnn_out
        if context is None:
            context, _ = self.attention(rnn_out, state.keys, state.memory, state.src_mask)
        return torch.tanh(self.combine(torch.cat([context, rnn_out], dim=-1)))

    def _step(self, embedded: torch.Tensor, state: DecoderState, masks=None, out_mask=None):
        """One decoder step: embedded (B, E) -> output vector (B, H), next state.

        Here the state's h and c are lists of per-layer (B, H) tensors: a loop over positions
        then never stacks and slices a (layers, B, H) tensor, in the forward or the backward pass.
        """
        context = None
        inputs = [embedded]
        if self.attention_kind == "additive":  # Bahdanau: attend with the previous state first
            context, _ = self.attention(state.h[-1].unsqueeze(1), state.keys, state.memory, state.src_mask)
            inputs.append(context.squeeze(1))
        elif self.input_feeding:
            inputs.append(state.feed)
        x = torch.cat(inputs, -1) if len(inputs) > 1 else embedded
        if self.pipeline is None:
            rnn_out, (h, c) = self.decoder.step(x, (state.h, state.c), masks)
        else:  # the layers sit on several devices: the stack's forward moves the tensors
            rnn_out, (h, c) = self.decoder(x.unsqueeze(1), state=_stacked(state.h, state.c), masks=masks)
            rnn_out, (h, c) = rnn_out.squeeze(1), _unstacked(h, c)
        out = self._output_vector(rnn_out.unsqueeze(1), replace(state, h=h, c=c), context).squeeze(1)
        out = self._drop(out, self.dropout, None if out_mask is None else out_mask.squeeze(1))
        return out, replace(state, h=h, c=c, feed=out if self.input_feeding else None)

    def decode_all(self, tgt_in: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Teacher forcing: tgt_in (B, T) -> output vectors (B, T, H)."""
        embedded = self._drop(self.tgt_embed(tgt_in), self.embed_dropout)  # (B, T, E)
        if not self.steps_one_by_one:  # the whole sequence in one cuDNN call
            rnn_out, _ = self.decoder(embedded, state=(state.h, state.c))
            return self._drop(self._output_vector(rnn_out, state), self.dropout)
        # One mask per sequence for every step, when dropout is variational.
        masks = self.decoder.sample_masks(tgt_in.size(0), embedded)
        out_mask = (sequence_dropout_mask(tgt_in.size(0), self.hidden, self.dropout, embedded)
                    if self.training and self.variational and self.dropout > 0 else None)
        h, c = _unstacked(state.h, state.c)
        state = replace(state, h=h, c=c)
        outputs = []
        for position in embedded.unbind(1):  # one unbind (its backward one stack), not a slice per step
            out, state = self._step(position, state, masks, out_mask)
            outputs.append(out)
        return torch.stack(outputs, dim=1)

    def decode_step(self, prev_tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """prev_tokens (B,) -> log-probabilities (B, V) in float32, and the next state."""
        log_probs, _, state = self.decode_scores(prev_tokens, state)
        return log_probs, state

    def decode_scores(self, prev_tokens: torch.Tensor, state: DecoderState):
        """decode_step's log-probabilities with the logits they come from (B, V), in the output
        layer's dtype (bf16 under autocast: search ranks tokens in them, nmt/decode/beam.py)."""
        h, c = _unstacked(state.h, state.c)
        out, state = self._step(self.tgt_embed(prev_tokens), replace(state, h=h, c=c))  # (B, H)
        h, c = _stacked(state.h, state.c)
        logits = self._step_logits(out)
        # float32 log-probabilities; bf16 logits are converted first (torch fuses the upcast for float16 only)
        return F.log_softmax(logits, dim=-1, dtype=torch.float32), logits, replace(state, h=h, c=c)

    def half_output(self) -> None:
        """Make the output layer float16, when it is a plain layer (not split over devices): what
        search's bf16 copy of the model does (nmt/decode/graphs.py's autocast_twin). Its logits are
        then float16, of which torch's float32 log-softmax is one kernel; of bf16 logits it is a
        float32 copy and then the log-softmax, which at beam 12 of the paper's model (1,536 rows
        of 32k) cost 0.30 ms of a 1.38 ms step on an H200 (305 µs against 134 µs for float16
        logits in `scripts/benchmark_normalizer.py`). float16 keeps 3 more bits of each logit
        than bf16, and no logit of a trained model comes near its limit of 65,504.

        A layer tied to the target embeddings keeps the shared weight in bf16 for the embedding
        and gets a float16 copy of it for the output alone (a buffer, `half_weight`, never saved;
        `sync_half_output` refreshes it, from the float32 weight of the model this one copies),
        its bias float16."""
        if not isinstance(self.output, nn.Linear):
            return
        tied = any(p is self.output.weight for name, p in self.named_parameters(remove_duplicate=False)
                   if not name.startswith("output."))
        if not tied:
            self.output.half()
            return
        if self.output.bias is not None:
            self.output.bias = nn.Parameter(self.output.bias.detach().half())
        self.register_buffer("half_weight", self.output.weight.detach().half(), persistent=False)

    def sync_half_output(self, weight: torch.Tensor) -> None:
        """The tied output layer's float16 copy (`half_output`), if any, set in place to `weight`
        (the output weight of the model this one is a copy of: float32, not this copy's bf16)."""
        if getattr(self, "half_weight", None) is not None:
            with torch.no_grad():
                self.half_weight.copy_(weight)

    def _step_logits(self, out: torch.Tensor) -> torch.Tensor:
        """The output layer on one step's outputs (B, H); a float16 layer or copy (`half_output`)
        runs outside autocast, on float16 inputs, so that its logits stay float16."""
        weight = getattr(self, "half_weight", None)
        if weight is None and isinstance(self.output, nn.Linear):  # (a split layer has no one weight)
            weight = self.output.weight
        if weight is None or weight.dtype != torch.float16:
            return self.output(out)
        with torch.autocast(out.device.type, enabled=False):
            return F.linear(out.to(torch.float16), weight, self.output.bias)

    def target_log_probs(self, state: DecoderState, tgt_in: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
        """Teacher forcing, kept per position: log p(tgt_out[b, t] | source, tgt_in[b, :t+1]) as (B, T)
        float32, 0 at padding, from `encode`'s state (selected to one row per target, as search
        selects it). `forward` sums one loss over the batch; scoring candidates
        (nmt/decode/score.py) needs each row's own sum, which this gives with `.sum(1)`."""
        hidden = self.decode_all(tgt_in, state)  # (B, T, H)
        real = tgt_out != PAD  # (B, T)
        # The output layer, the costliest, only at real positions, 4096 of them at a time (as many
        # rows as a big search step has), so the (N, V) logits stay small.
        hidden, targets = hidden[real], tgt_out[real]  # (N, H), (N,)
        picked = []
        for start in range(0, targets.size(0), 4096):
            logits = self.output(hidden[start:start + 4096]).float()  # (n, V); a split layer gathers its slices
            # log_softmax(z)[y] = z[y] - logsumexp(z), without a second (n, V) tensor
            picked.append(logits.gather(1, targets[start:start + 4096, None]).squeeze(1) - logits.logsumexp(-1))
        return torch.zeros_like(tgt_out, dtype=torch.float32).masked_scatter(real, torch.cat(picked))

    def attention_weights(self, state: DecoderState, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing, kept as attention: (B, T, S) float32, row [b, t] the weights over the
        encoder's positions with which the output at position t (the one that predicts tgt_out[b, t])
        was made, from `encode`'s state selected to one row per target. Columns are in the order the
        encoder read the source: reversed where reverse_source is on. Each row sums to one over its
        sentence's real tokens; padding gets 0.

        The decoder runs exactly as `decode_all` runs it, and the attention module's weights are
        recorded as it returns them: one call for the whole sequence, or one per step where the
        steps depend on each other (input feeding; additive attention, whose query h_{t-1} feeds
        step t's input); either way one query per target position.
        """
        if self.attention_kind == "none":
            raise ValueError("this model has no attention (model.attention: none)")
        recorded = []
        hook = self.attention.register_forward_hook(lambda module, args, output: recorded.append(output[1]))
        try:
            self.decode_all(tgt_in, state)
        finally:
            hook.remove()
        weights = torch.cat(recorded, dim=1)  # (B, T, S)
        assert weights.shape[:2] == tgt_in.shape, "one attention query per target position"
        return weights.float()

    def forward(self, batch: ParallelBatch, label_smoothing: float = 0.0) -> torch.Tensor:
        """The batch's summed cross-entropy over its real target tokens (batch.num_tokens of
        them; padding ignored), as a scalar tensor."""
        src, src_lens, tgt_in, tgt_out = batch.src, batch.src_lens, batch.tgt_in, batch.tgt_out
        if self.pipeline is not None and src_lens is None:  # static shapes: no packing, so a wavefront
            hidden = self._pipelined_hidden(src, tgt_in)
        else:
            hidden = self.decode_all(tgt_in, self.encode(src, src_lens))  # (B, T, H)
        if isinstance(self.output, SplitOutput):
            return self.output.loss(hidden.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD,
                                    label_smoothing=label_smoothing)
        if output_loss.applies(hidden, self.output.weight):  # the CPU: in row chunks (output_loss.py says why)
            return output_loss.output_cross_entropy(hidden.flatten(0, 1), self.output.weight, self.output.bias,
                                                    tgt_out.flatten(), ignore_index=PAD,
                                                    label_smoothing=label_smoothing)
        logits = self.output(hidden)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=PAD,
                               reduction="sum", label_smoothing=label_smoothing)

    # --- the paper's multi-GPU layout ---------------------------------------------------------
    def place(self, layer_devices: list[str], softmax_devices: list[str] = (), chunk: int = 8) -> "Seq2Seq":
        """Put encoder and decoder layer k on layer_devices' k-th device (the embeddings with the
        first layer) and the output slices on softmax_devices (default: the last layer's)."""
        if self.encoder.fused or self.attention_kind != "none" or self.encoder.directions != 1:
            raise ValueError("the layer pipeline takes the paper's model built with per_layer=True")
        devices = spread(list(layer_devices), self.layers)
        self.src_embed.to(devices[0])
        self.tgt_embed.to(devices[0])
        for k, device in enumerate(devices):
            self.encoder.layers[k].to(device)
            self.decoder.layers[k].to(device)
        out_devices = [torch.device(d) for d in softmax_devices] or [devices[-1]]
        slices = self.output.slices if isinstance(self.output, SplitOutput) else [self.output]
        for i, layer in enumerate(slices):
            layer.to(out_devices[i * len(out_devices) // len(slices)])
        self.pipeline = (devices, chunk)
        return self

    def _pipelined_hidden(self, src, tgt_in) -> torch.Tensor:
        """Encoder and decoder as wavefronts over the layers' devices; (B, T, H) on the last one.

        Batches with padded sources (evaluation) take the layer-by-layer path instead.
        """
        devices, chunk = self.pipeline
        src = reverse_padded(src, None) if self.reverse_source else src
        embedded = self._drop(self.src_embed(src), self.embed_dropout)
        options = dict(chunk=chunk, dropout=self.dropout, training=self.training)
        _, finals = wavefront(self.encoder.layers, devices, embedded, [None] * self.layers, **options)
        embedded = self._drop(self.tgt_embed(tgt_in), self.embed_dropout)
        out, _ = wavefront(self.decoder.layers, devices, embedded, finals, **options)
        return self._drop(out, self.dropout)


def _unstacked(h: torch.Tensor, c: Optional[torch.Tensor]) -> tuple[list, Optional[list]]:
    """(layers, B, H) states -> lists of per-layer (B, H) tensors."""
    return list(h.unbind(0)), list(c.unbind(0)) if c is not None else None


def _stacked(h: list, c: Optional[list]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    return torch.stack(h), torch.stack(c) if c is not None else None


def build_model(config, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    """The one place that maps a `Config` onto the model's keyword arguments.

    A config with a layer pipeline (train.devices) builds the layer-by-layer variant, and one
    with train.softmax_devices the split output layer, also when it is later loaded on one
    device to translate: the weights' names follow the structure.
    """
    m, t = config.model, config.train
    return Seq2Seq(
        src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, embed=m.embed, hidden=m.hidden,
        layers=m.layers, cell=m.cell, reverse_source=m.reverse_source, init_range=m.init_range,
        bidirectional=m.bidirectional, bridge=m.bridge, attention=m.attention, input_feeding=m.input_feeding,
        dropout=m.dropout, embed_dropout=m.embed_dropout, variational_dropout=m.variational_dropout,
        residual=m.residual, tie_embeddings=m.tie_embeddings,
        per_layer=bool(t.devices), output_parts=max(1, len(t.softmax_devices)),
    )
