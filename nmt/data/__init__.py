"""Text in, token ids out: reading corpora, SentencePiece, preprocessing, batching."""
