"""Where the model looked: the attention weights of given translations, by forced decoding.

    matrices = attention_matrices(model, src_ids, tgt_ids, device=device)
    matrices[i]   # (len(tgt_ids[i]) + 1, len(src_ids[i])) float32 on the CPU

Row t holds the weights with which the decoder produced target token t (the last row: EOS),
column j source token j in the source's own order: a model that reads the source reversed
(`reverse_source`) attends over reversed positions, which are mapped back here. Each row sums to
one; padding never gets weight. The output is teacher forced through the decoder as scoring
does (nmt/decode/score.py, the same batching), so the weights are those of the chosen output:
the search's own best translation, or any other.

`attention_maps` (also `Translator.attention`) does the same for text, with the pieces to label a
heatmap: what `nmt analyze attention` and `nmt translate --attention` use, and a server can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from nmt.decode.score import teacher_forced
from nmt.errors import NmtError
from nmt.model.ensemble import Ensemble

if TYPE_CHECKING:
    from nmt.decode.translate import Translator

END = "</s>"  # the label of the last row: the attention with which the decoder ended the sentence


@dataclass(frozen=True)
class AttentionMap:
    """One sentence's attention, ready to show: len(target) rows of len(source) weights."""

    source: list[str]  # the source's pieces, in reading order
    target: list[str]  # the translation's pieces, then END
    weights: list[list[float]]  # weights[t][j]: target piece t's attention to source piece j
    translation: str = ""  # the translation as text

    def as_dict(self, digits: int = 5) -> dict:
        return {"source": self.source, "target": self.target, "translation": self.translation,
                "weights": [[round(w, digits) for w in row] for row in self.weights]}


def require_attention(model, name: str = "the model") -> None:
    """An NmtError unless `model` is one translation model with attention; `name` says which."""
    if isinstance(model, Ensemble):
        raise NmtError(f"attention weights come from one model, but {name} is an ensemble of "
                       f"{len(model.models)}: pass a single --checkpoint")
    kind = getattr(model, "attention_kind", None)
    if kind is None:
        raise NmtError(f"{name} is not a translation model with an encoder to attend to (a language model?): "
                       f"attention weights need a seq2seq checkpoint trained with model.attention")
    if kind == "none":
        raise NmtError(f"{name} was trained without attention (model.attention: none), so it has no attention "
                       f"weights to show: train with model.attention: general (or dot, concat, additive)")


@torch.no_grad()
def attention_matrices(model, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], *,
                       device: torch.device, bf16: bool = False, batch_size: int = 64) -> list[torch.Tensor]:
    """For each pair i, the (len(tgt_ids[i]) + 1, len(src_ids[i])) attention weights, float32 on the CPU.

    `model` is a loaded Seq2Seq with attention (an NmtError otherwise); src_ids and tgt_ids are
    token ids without BOS and EOS, tgt_ids[i] the chosen output for src_ids[i]. Rows: the target
    tokens, then EOS; columns: the source tokens in their own order. An empty source gets a
    matrix with no columns.
    """
    require_attention(model)

    def weights(state, tgt_in, tgt_out):
        return list(model.attention_weights(state, tgt_in).cpu().unbind(0))  # B of (T, S)

    found = teacher_forced(model, src_ids, tgt_ids, weights, device=device, bf16=bf16, batch_size=batch_size)
    matrices = []
    for i, (src, tgt) in enumerate(zip(src_ids, tgt_ids)):
        if i not in found:  # an empty source
            matrices.append(torch.zeros(len(tgt) + 1, 0))
            continue
        matrix = found[i][:len(tgt) + 1, :len(src)].clone()  # the batch's padding cut off (it holds no weight)
        matrices.append(matrix.flip(1) if model.reverse_source else matrix)  # back to reading order
    return matrices


def attention_maps(translator: "Translator", sources: Sequence[str],
                   outputs: Sequence[Sequence[int]]) -> list[AttentionMap]:
    """The attention of translator's model for outputs[i] (target token ids, e.g. a Translation's
    `tokens`) as the translation of sources[i] (text, taken as `translate` takes it)."""
    require_attention(translator.model)
    if len(sources) != len(outputs):
        raise NmtError(f"{len(sources)} sources but {len(outputs)} outputs: pair each output with its source")
    if translator.config.data.lowercase:
        sources = [s.lower() for s in sources]
    src_ids = translator.src_tokenizer.encode(sources)
    matrices = attention_matrices(translator.model, src_ids, outputs, device=translator.device,
                                  bf16=translator.config.train.bf16, batch_size=translator.config.decode.batch_size)
    texts = translator.tgt_tokenizer.decode(outputs)
    return [AttentionMap(translator.src_tokenizer.pieces(src), translator.tgt_tokenizer.pieces(tgt) + [END],
                         matrix.tolist(), text)
            for src, tgt, matrix, text in zip(src_ids, outputs, matrices, texts)]
