"""An ensemble with the model's search API: it combines the members' next-token distributions.

The paper's best result averaged 5 reversed LSTMs (34.81 BLEU against 30.59 for one). Two ways to
combine M members' distributions p_1..p_M at every step:
  mean        log((p_1 + ... + p_M) / M): the mean of the probabilities (the paper)
  log_linear  the mean of the log-probabilities, renormalised: log(prod_m p_m^(1/M) / Z), a
              normalised geometric mean (a token must be likely under every member)
Both give a model's own distribution back when every member is the same model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from nmt.errors import NmtError

MODES = ("mean", "log_linear")


@dataclass
class EnsembleState:
    states: list

    def select(self, indices: torch.Tensor) -> "EnsembleState":
        return EnsembleState([state.select(indices) for state in self.states])

    def reorder(self, indices: torch.Tensor, sentences: Optional[torch.Tensor] = None) -> "EnsembleState":
        """The members' `reorder` (rows that stay with their sentence; see DecoderState.reorder)."""
        return EnsembleState([state.reorder(indices, sentences) for state in self.states])

    def padded_source(self, width) -> "EnsembleState":
        return EnsembleState([state.padded_source(width) for state in self.states])


class Ensemble:
    def __init__(self, models: list, mode: str = "mean"):
        if mode not in MODES:
            raise ValueError(f"unknown ensemble mode {mode!r}: use one of {', '.join(MODES)}")
        self.models, self.mode = models, mode

    def with_mode(self, mode: str) -> "Ensemble":
        """The same members, combined another way."""
        return self if mode == self.mode else Ensemble(self.models, mode)

    def encode(self, src: torch.Tensor, src_lens) -> EnsembleState:
        return EnsembleState([model.encode(src, src_lens) for model in self.models])

    def decode_step(self, prev_tokens: torch.Tensor, state: EnsembleState):
        """The combined log-probabilities (B, V) and the members' next states."""
        steps = [model.decode_step(prev_tokens, s) for model, s in zip(self.models, state.states)]
        log_probs = torch.stack([lp for lp, _ in steps])  # (M, B, V)
        if self.mode == "mean":
            combined = torch.logsumexp(log_probs, dim=0) - math.log(len(steps))
        else:
            mean = log_probs.mean(dim=0)
            combined = mean - torch.logsumexp(mean, dim=-1, keepdim=True)
        return combined, EnsembleState([s for _, s in steps])

    def target_log_probs(self, state: EnsembleState, tgt_in, tgt_out) -> torch.Tensor:
        """Per position, log of the members' mean probability of the target token (B, T): the mean
        that decode_step takes, so a candidate scores what the search gave it; 0 at padding."""
        if self.mode != "mean":
            raise NmtError("scoring given translations combines an ensemble by the mean of probabilities; "
                           "ensemble_mode log_linear is not supported for scoring yet")
        stacked = torch.stack([model.target_log_probs(member_state, tgt_in, tgt_out)
                               for model, member_state in zip(self.models, state.states)])
        return torch.logsumexp(stacked, dim=0) - math.log(len(self.models))  # padding: log(n * e^0) - log n = 0
