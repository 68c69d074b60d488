"""The recurrent language model of the lecture: P(w_1..w_n) = prod_t softmax(W h_t)[w_t], h_t = RNN(embed(w_(t-1)), h_(t-1)).

The same stack as the translation decoder (rnn.StackedRNN), with the regularisers of Zaremba et
al. (2014: dropout between layers, never on the recurrent connection), Gal & Ghahramani
(variational: one mask per sequence) and Merity et al. (2017, AWD-LSTM: DropConnect on the
recurrent matrices, whole words dropped from the embedding, tied input and output embeddings,
activation regularisation AR and its temporal form TAR).

Truncated BPTT: the model keeps, per batch row count, the state its last window ended in, and
starts the next window from it, detached (no gradient crosses a window boundary); a batch's
`first` flag (1 at a stream's first window) starts from zeros instead. The carried state lives in
fixed tensors updated in place, so a whole window is one CUDA graph.

API: forward(batch) -> summed loss (training, the task protocol); encode(prompts, lens) and
decode_step(prev, state) for generation, as the translation model has them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from nmt.data.tokenizer import BOS, PAD
from nmt.model import output_loss
from nmt.model.rnn import StackedRNN, sequence_dropout_mask


@dataclass
class LMState:
    """h and c (layers, B, hidden); `pending` (B, V): the next-token log-probabilities after a
    prompt, which the first decode_step returns."""

    h: torch.Tensor
    c: Optional[torch.Tensor]
    pending: Optional[torch.Tensor] = None

    def select(self, indices: torch.Tensor) -> "LMState":
        pick = lambda x, dim: None if x is None else x.index_select(dim, indices)  # noqa: E731
        return LMState(pick(self.h, 1), pick(self.c, 1), pick(self.pending, 0))

    def reorder(self, indices: torch.Tensor, sentences: Optional[torch.Tensor] = None) -> "LMState":
        """Beam search's select: a language model holds nothing per sentence to spare copying."""
        return self.select(indices)


class LanguageModel(nn.Module):
    def __init__(self, *, vocab_size: int, embed: int, hidden: int, layers: int, cell: str = "lstm",
                 init_range: float = 0.1, dropout: float = 0.0, embed_dropout: float = 0.0,
                 word_dropout: float = 0.0, variational_dropout: bool = False, weight_drop: float = 0.0,
                 residual: bool = False, tie_embeddings: bool = False, ar_alpha: float = 0.0, tar_beta: float = 0.0,
                 last_hidden: Optional[int] = None, lstm_kernel: str = "auto"):
        super().__init__()
        self.dropout, self.embed_dropout, self.word_dropout = dropout, embed_dropout, word_dropout
        self.variational, self.ar_alpha, self.tar_beta = variational_dropout, ar_alpha, tar_beta
        self.layers, self.hidden, self.is_lstm = layers, hidden, cell == "lstm"
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=PAD)
        self.rnn = StackedRNN(cell=cell, input_size=embed, hidden=hidden, layers=layers, dropout=dropout,
                              variational=variational_dropout, residual=residual, weight_drop=weight_drop,
                              top=last_hidden, kernel=lstm_kernel)
        top = self.rnn.top
        # Tied embeddings with a hidden size other than the embedding's: a projection between.
        self.project = nn.Linear(top, embed, bias=False) if tie_embeddings and embed != top else None
        self.output = nn.Linear(embed if self.project is not None else top, vocab_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -init_range, init_range)
        with torch.no_grad():
            self.embed.weight[PAD].zero_()
        if tie_embeddings:
            self.output.weight = self.embed.weight
        # PAD and BOS are never the next token; a buffer, so no host tensor is made inside a graph.
        self.register_buffer("never_next", torch.tensor([PAD, BOS]), persistent=False)
        self.carried: dict[int, tuple] = {}  # batch rows -> (h, c) the last window of that many rows ended in

    # --- training: the task protocol --------------------------------------------------------
    def forward(self, batch, label_smoothing: float = 0.0) -> torch.Tensor:
        """The batch's summed cross-entropy over its real tokens, plus AR/TAR (training) scaled to
        the same sum: after division by the token count they are alpha * AR + beta * TAR."""
        tokens_in, tokens_out = batch.tokens_in, batch.tokens_out  # (B, T)
        h0, c0 = self._start(tokens_in.size(0), batch.first, tokens_in.device)
        raw, dropped, (h, c) = self._hidden(tokens_in, (h0, c0))  # (B, T, H) before and after dropout
        self._carry(tokens_in.size(0), h, c)
        loss = self._loss(dropped, tokens_out, label_smoothing)
        if self.training and (self.ar_alpha or self.tar_beta):
            real = (tokens_out != PAD).unsqueeze(2).to(raw.dtype)  # (B, T, 1)
            count = real.sum().clamp(min=1)
            reg = self.ar_alpha * (dropped.pow(2) * real).sum() / (count * dropped.size(2))
            if raw.size(1) > 1:
                both = real[:, 1:] * real[:, :-1]
                step = (raw[:, 1:] - raw[:, :-1]).pow(2) * both
                reg = reg + self.tar_beta * step.sum() / (both.sum().clamp(min=1) * raw.size(2))
            loss = loss + reg.float() * count.float()
        return loss

    def _carried(self, rows: int, device) -> tuple:
        """The fixed tensors that carry the state of batches of `rows` rows (allocated once)."""
        if rows not in self.carried:
            self.carried[rows] = self._zeros(rows, device)
        return self.carried[rows]

    def _start(self, rows: int, first: torch.Tensor, device) -> tuple:
        """The state to start a window from: the carried one, or zeros at a stream's first window."""
        h, c = self._carried(rows, device)
        keep = 1.0 - first.to(h.dtype)
        return h * keep, (c * keep if c is not None else None)

    def _carry(self, rows: int, h: torch.Tensor, c: Optional[torch.Tensor]) -> None:
        carried_h, carried_c = self.carried[rows]
        carried_h.copy_(h.detach())  # in place: a captured graph's next replay reads it
        if carried_c is not None:
            carried_c.copy_(c.detach())

    def _hidden(self, tokens: torch.Tensor, state: tuple):
        """tokens (B, T) -> the top layer's outputs before and after dropout (B, T, H), the final state."""
        weight = self.embed.weight
        if self.training and self.word_dropout:  # drop whole words: rows of the embedding matrix
            keep = torch.empty(weight.size(0), 1, device=weight.device, dtype=weight.dtype).bernoulli_(1 - self.word_dropout)
            weight = weight * keep / (1 - self.word_dropout)
        x = self._drop(F.embedding(tokens, weight, padding_idx=PAD), self.embed_dropout)
        raw, state = self.rnn(x, state=state)
        return raw, self._drop(raw, self.dropout), state

    def _drop(self, x: torch.Tensor, p: float) -> torch.Tensor:
        if not self.training or p == 0:
            return x
        if self.variational:  # one mask per sequence ("locked" dropout)
            return x * sequence_dropout_mask(x.size(0), x.size(2), p, x)
        return F.dropout(x, p, True)

    def _loss(self, out: torch.Tensor, tokens_out: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        """The summed cross-entropy of the outputs (B, T, H) against the next tokens (B, T)."""
        if output_loss.applies(out, self.output.weight) and not label_smoothing:  # the CPU: in row chunks
            out = self.project(out) if self.project is not None else out
            return output_loss.output_cross_entropy(out.flatten(0, 1), self.output.weight, self.output.bias,
                                                    tokens_out.flatten(), ignore_index=PAD, excluded=self.never_next)
        logits = self._logits(out)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), tokens_out.flatten(), ignore_index=PAD,
                               reduction="sum", label_smoothing=label_smoothing)

    def _logits(self, out: torch.Tensor) -> torch.Tensor:
        logits = self.output(self.project(out) if self.project is not None else out)
        return logits.index_fill(-1, self.never_next, float("-inf"))  # no probability mass on PAD, BOS

    def training_state(self) -> dict[str, torch.Tensor]:
        """The carried states, for a checkpoint: a resumed run goes on from exactly where it stopped."""
        tensors = {}
        for rows, (h, c) in self.carried.items():
            tensors[f"carried.{rows}.h"] = h.detach().cpu()
            if c is not None:
                tensors[f"carried.{rows}.c"] = c.detach().cpu()
        return tensors

    def load_training_state(self, tensors: dict[str, torch.Tensor], device) -> None:
        for name, value in tensors.items():
            _, rows, which = name.split(".")
            h, c = self._carried(int(rows), device)
            (h if which == "h" else c).copy_(value)

    # --- generation ------------------------------------------------------------------------
    def encode(self, prompts: torch.Tensor, lengths: torch.Tensor) -> LMState:
        """prompts (B, S) right-padded token ids -> the state after each row's last prompt token,
        with the next-token distribution pending (the first decode_step returns it)."""
        # Packed: each row's final state is taken at its own last token, not after its padding.
        out, (h, c) = self.rnn(self.embed(prompts), lengths, self._zeros(prompts.size(0), prompts.device))
        last = out[torch.arange(prompts.size(0), device=prompts.device), lengths.to(prompts.device) - 1]  # (B, H)
        return LMState(h, c, F.log_softmax(self._logits(last).float(), dim=-1))

    def _zeros(self, rows: int, device) -> tuple:
        zeros = lambda: torch.zeros(self.layers, rows, self.hidden, device=device)  # noqa: E731
        return zeros(), zeros() if self.is_lstm else None

    def decode_step(self, prev_tokens: torch.Tensor, state: LMState) -> tuple[torch.Tensor, LMState]:
        """prev_tokens (B,) -> next-token log-probabilities (B, V) in float32, and the next state."""
        if state.pending is not None:
            return state.pending, replace(state, pending=None)
        h_list, c_list = list(state.h.unbind(0)), list(state.c.unbind(0)) if state.c is not None else None
        out, (h_list, c_list) = self.rnn.step(self.embed(prev_tokens), (h_list, c_list))
        h = torch.stack(h_list)
        c = torch.stack(c_list) if c_list is not None else None
        return F.log_softmax(self._logits(out).float(), dim=-1), LMState(h, c)


def build_language_model(config, vocab_size: int) -> LanguageModel:
    """The one place that maps a `Config` (task: lm) onto the language model's keyword arguments."""
    m, t = config.model, config.train
    return LanguageModel(vocab_size=vocab_size, embed=m.embed, hidden=m.hidden, layers=m.layers, cell=m.cell,
                         init_range=m.init_range, dropout=m.dropout, embed_dropout=m.embed_dropout,
                         word_dropout=m.word_dropout, variational_dropout=m.variational_dropout,
                         weight_drop=m.weight_drop, residual=m.residual, tie_embeddings=m.tie_embeddings,
                         ar_alpha=t.ar_alpha, tar_beta=t.tar_beta, last_hidden=m.last_hidden, lstm_kernel=m.lstm_kernel)
