"""The recurrent encoder-decoder."""

from nmt.model.seq2seq import DecoderState, Seq2Seq, build_model

__all__ = ["DecoderState", "Seq2Seq", "build_model"]
