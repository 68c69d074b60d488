"""Validation during training: dev perplexity of the task's valid batches and, for tasks that
translate, BLEU of greedy output on the first dev sentences."""

from __future__ import annotations

import math

import torch

from nmt.config import Config
from nmt.decode.translate import Translator
from nmt.device import autocast
from nmt.evaluate import score
from nmt.tasks import DevReferences, Task


@torch.no_grad()
def perplexity(model, batches, device: torch.device, bf16: bool) -> float:
    """exp(summed loss / summed tokens) over `batches` (each model(batch) is a summed loss)."""
    total_loss, total_tokens = 0.0, 0
    for batch in batches:
        with autocast(device, bf16):
            total_loss += model(batch.to(device)).item()
        total_tokens += batch.num_tokens
    return math.exp(min(total_loss / max(total_tokens, 1), 50))


def dev_bleu(model, dev: DevReferences, config: Config, device: torch.device) -> float:
    """BLEU of the model's greedy translations of the dev sources against their references."""
    d = config.decode
    # Greedy search holds one row per sentence: as many sentences per batch as beam search holds
    # rows (decode.batch_size x decode.beam), so evaluation costs few launches.
    greedy = d.override(beam=1, n_best=1, sample=False, batch_size=d.batch_size * d.beam)  # even if decode samples
    translator = Translator(model, None, dev.tokenizer, config, device)
    found = translator.search_ids(dev.sources, greedy)
    hypotheses = dev.tokenizer.decode([hyps[0].tokens for hyps in found])
    return score(hypotheses, list(dev.references)).bleu


def evaluate(task: Task, model, config: Config, device: torch.device) -> dict:
    """{"ppl": dev perplexity, and "bleu" where the task has dev references}; the model is left in training mode."""
    model.eval()
    try:
        result = {"ppl": perplexity(model, task.valid_batches(), device, config.train.bf16)}
        dev = task.dev_references()
        if dev is not None:
            result["bleu"] = dev_bleu(model, dev, config, device)
    finally:
        model.train()
    return result
