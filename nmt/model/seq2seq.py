"""The model of Sutskever, Vinyals & Le (2014): two deep LSTMs, no attention.

The encoder reads the source (reversed, by default) and its final (h, c) of every layer
initialises the decoder, a conditional language model of the target:
    p(y_1..y_m | x) = prod_t softmax(W h_t)[y_t],   h_t = LSTM(embed(y_{t-1}), h_{t-1})

The model's API is what training and search use:
    encode(src, src_lens) -> DecoderState
    decode_step(prev_tokens, state) -> (log_probs, state)     one step, for search
    forward(batch) -> summed token cross-entropy               teacher forcing, for training
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from nmt.data.tokenizer import PAD


@dataclass
class DecoderState:
    """What the decoder carries from one step to the next; batch is dim 1 of h and c."""

    h: torch.Tensor  # (layers, B, hidden)
    c: torch.Tensor  # (layers, B, hidden)

    def select(self, indices: torch.Tensor) -> "DecoderState":
        """Keep (and reorder) batch rows: search calls this after every beam step."""
        return DecoderState(self.h.index_select(1, indices), self.c.index_select(1, indices))


def reverse_padded(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first `lengths[i]` tokens and leave the padding where it is.

    [[a, b, c, PAD], [d, e, PAD, PAD]] -> [[c, b, a, PAD], [e, d, PAD, PAD]]
    """
    positions = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0)  # (1, S)
    lengths = lengths.to(tokens.device).unsqueeze(1)  # (B, 1)
    source_index = torch.where(positions < lengths, lengths - 1 - positions, positions)
    return tokens.gather(1, source_index)


class Seq2Seq(nn.Module):
    def __init__(self, *, src_vocab_size: int, tgt_vocab_size: int, embed: int, hidden: int, layers: int,
                 reverse_source: bool = True, init_range: float = 0.08):
        super().__init__()
        self.reverse_source = reverse_source
        self.src_embed = nn.Embedding(src_vocab_size, embed, padding_idx=PAD)
        self.encoder = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, embed, padding_idx=PAD)
        self.decoder = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.output = nn.Linear(hidden, tgt_vocab_size)
        self.reset_parameters(init_range)

    def reset_parameters(self, init_range: float) -> None:
        """The paper: every parameter uniform in [-0.08, 0.08]; padding rows stay zero."""
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -init_range, init_range)
        with torch.no_grad():
            self.src_embed.weight[PAD].zero_()
            self.tgt_embed.weight[PAD].zero_()

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> DecoderState:
        """src (B, S) right-padded in reading order; src_lens (B,) on the CPU."""
        if self.reverse_source:
            src = reverse_padded(src, src_lens)
        embedded = self.src_embed(src)  # (B, S, E)
        # Packing keeps padding out: each row's final state is taken at its own last token.
        packed = pack_padded_sequence(embedded, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, c) = self.encoder(packed)  # (layers, B, H) each, in the batch's own order
        return DecoderState(h, c)

    def decode_step(self, prev_tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """prev_tokens (B,) -> log-probabilities (B, V) in float32, and the next state."""
        embedded = self.tgt_embed(prev_tokens).unsqueeze(1)  # (B, 1, E)
        out, (h, c) = self.decoder(embedded, (state.h, state.c))  # out (B, 1, H)
        logits = self.output(out.squeeze(1))  # (B, V)
        return F.log_softmax(logits.float(), dim=-1), DecoderState(h, c)

    def forward(self, src, src_lens, tgt_in, tgt_out) -> torch.Tensor:
        """Summed cross-entropy over the real target tokens (padding ignored), as a scalar."""
        state = self.encode(src, src_lens)
        out, _ = self.decoder(self.tgt_embed(tgt_in), (state.h, state.c))  # (B, T, H)
        logits = self.output(out)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=PAD, reduction="sum")


def build_model(model_config, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    """The one place that maps a `ModelConfig` onto the model's keyword arguments."""
    return Seq2Seq(
        src_vocab_size=src_vocab_size,
        tgt_vocab_size=tgt_vocab_size,
        embed=model_config.embed,
        hidden=model_config.hidden,
        layers=model_config.layers,
        reverse_source=model_config.reverse_source,
        init_range=model_config.init_range,
    )
