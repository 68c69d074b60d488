"""Global attention over the encoder's outputs (Luong et al. 2015; Bahdanau et al. 2015).

Scores of a decoder query q against encoder outputs s_j:
  dot        q . s_j
  general    q . W s_j
  concat     v . tanh(W [q; s_j])         (Luong's concat)
  additive   v . tanh(W_q q + W_s s_j)    (Bahdanau's score; the decoder uses it with the
                                           previous state as query, see seq2seq.Decoder)
Padding positions get no weight: the weights of each query sum to one over the real tokens.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

KINDS = ("dot", "general", "concat", "additive")


class Attention(nn.Module):
    def __init__(self, kind: str, query_size: int, key_size: int):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown attention {kind!r}")
        self.kind = kind
        if kind == "dot" and query_size != key_size:
            raise ValueError("dot attention needs equal query and key sizes")
        if kind == "general":
            self.key_proj = nn.Linear(key_size, query_size, bias=False)
        elif kind in ("concat", "additive"):
            # concat's W [q; s] is W_q q + W_s s with W split in two: one computation, two names
            # for where the query comes from (see the module docstring).
            self.query_proj = nn.Linear(query_size, query_size, bias=kind == "concat")
            self.key_proj = nn.Linear(key_size, query_size, bias=False)
            self.v = nn.Linear(query_size, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """What the scores need from the encoder outputs, computed once per sentence: (B, S, q)."""
        return memory if self.kind == "dot" else self.key_proj(memory)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor,
                mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """query (R, T, q), keys (n, S, q), memory (n, S, k), mask (n, S) True at real tokens.

        R = n * g: the queries come in groups of g consecutive rows per memory row (beam search's
        hypotheses of one sentence share its memory; g is 1 in training). Returns the context
        (R, T, k) and the attention weights (R, T, S).
        """
        rows, steps = query.shape[:2]
        query = query.reshape(keys.size(0), -1, query.size(2))  # (n, g*T, q): a sentence's queries side by side
        if self.kind in ("dot", "general"):
            scores = query @ keys.transpose(1, 2)  # (n, g*T, S)
        else:
            hidden = torch.tanh(self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))  # (n, g*T, S, q)
            scores = self.v(hidden).squeeze(3)  # (n, g*T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(memory.dtype)
        context = weights @ memory  # (n, g*T, k)
        return context.view(rows, steps, -1), weights.view(rows, steps, -1)
