"""The models a server holds: each a Translator, a name to ask for it by, and its own batcher.

`--checkpoint NAME=PATH` names a model; a bare PATH is named after its run folder (`runs/en-fr`
and `runs/en-fr/best` are both `en-fr`). Loading happens before the server binds its port, so a
checkpoint that does not load stops the server with one line before any client can connect.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from nmt.errors import NmtError
from nmt.serve.batcher import Batcher
from nmt.serve.limits import RequestError, ServeSettings, check_cost
from nmt.serve.metrics import Metrics

logger = logging.getLogger("nmt")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def parse_checkpoint(spec: str) -> tuple[str, Path]:
    """`NAME=PATH` or `PATH` -> (name, path); checked before anything loads."""
    name, sep, path = spec.partition("=")
    if not sep:
        path, name = spec, run_name(Path(spec))
    if not NAME.fullmatch(name):
        given = "" if sep else f" (named after the path {spec})"
        raise NmtError(f"model name {name!r}{given} must be 1 to 64 letters, digits, '.', '_' or '-': "
                       f"name it with --checkpoint NAME=PATH")
    return name, Path(path)


def run_name(path: Path) -> str:
    """The run folder's name: a checkpoint inside a run (`best`, `checkpoints/step-...`) is named
    after the run."""
    path = path.resolve()  # `best` and `last` are links into checkpoints/
    if path.name in ("best", "last"):
        path = path.parent
    if path.parent.name == "checkpoints":
        path = path.parent.parent
    return path.name


@dataclass
class ServedModel:
    name: str
    path: Path  # the checkpoint folder that was loaded
    translator: Any  # nmt.decode.translate.Translator
    batcher: Batcher
    # Held by whatever runs the model: the batcher's search, and the forced decoding of attention
    # weights (which hooks the attention module for its duration, so it must run alone).
    lock: threading.Lock = field(default_factory=threading.Lock)

    def options(self, changes: dict, settings: ServeSettings):
        """The checkpoint's decoding settings with the request's changes, checked like the command
        line's; every batch the server searches holds up to max_batch sentences."""
        from nmt.errors import ConfigError

        try:
            options = self.translator.options(**changes, cuda_graphs=settings.cuda_graphs, batch_size=settings.max_batch,
                                              option_name=str)
        except ConfigError as e:
            raise RequestError(422, str(e).replace("config key ", "")) from None
        check_cost(options, settings)
        return options

    def info(self) -> dict:
        config, translator = self.translator.config, self.translator
        decode = dataclasses.asdict(config.decode)
        return {"name": self.name, "checkpoint": str(self.path), "task": config.task,
                "source_language": config.data.src_lang, "target_language": config.data.tgt_lang,
                "source_vocab_size": translator.src_tokenizer.vocab_size,
                "target_vocab_size": translator.tgt_tokenizer.vocab_size, "lowercase": config.data.lowercase,
                "model": {key: getattr(config.model, key) for key in ("cell", "layers", "hidden", "embed",
                                                                      "attention", "bidirectional", "reverse_source")},
                "decode": decode, "device": str(translator.device)}

    def pieces(self, tokens) -> list[str]:
        return [self.translator.tgt_tokenizer.processor.id_to_piece(token) for token in tokens]

    def check_attention(self) -> None:
        """Attention weights are asked of a model that has attention, before anything is searched."""
        if self.translator.config.model.attention == "none":
            raise RequestError(422, f"model {self.name} has no attention (model.attention: none): attention "
                                    f"weights come only from attention models", field="attention")


def attention_for(model: ServedModel, texts: Sequence[str], results: list[list[Any]]) -> list[list[dict]]:
    """The attention weights of each text's hypotheses, for `"attention": true`.

    Answers, for texts[i] and its hypothesis results[i][k], a dict
        {"source_pieces": [...],   # the source's pieces, in reading order
         "target_pieces": [...],   # the hypothesis's pieces, then "</s>"
         "weights": [[...], ...]}  # one row per target piece, one column per source piece; rows sum to 1
    which `answer` puts into the hypothesis as its "attention" field and the page draws as a heatmap.
    The weights come from forced decoding of each hypothesis (nmt/decode/attention.py), under the
    model's lock; call it off the event loop.
    """
    sources = [text for text, found in zip(texts, results) for _ in found]
    outputs = [hypothesis.tokens for found in results for hypothesis in found]
    try:
        with model.lock:
            maps = iter(model.translator.attention(sources, outputs))
    except NmtError as e:  # not an attention model: refused before any search (check_request), kept as a guard
        raise RequestError(422, str(e), field="attention") from None
    return [[{"source_pieces": m.source, "target_pieces": m.target,
              "weights": [[round(w, 4) for w in row] for row in m.weights]} for m in (next(maps) for _ in found)]
            for found in results]


def load_models(specs: list[tuple[str, Path]], settings: ServeSettings, metrics: Metrics) -> dict[str, ServedModel]:
    """Every checkpoint loaded and checked against the limits; batchers made, not started."""
    from nmt.checkpoint.load import resolve
    from nmt.decode.translate import Translator

    models: dict[str, ServedModel] = {}
    for name, path in specs:
        folder = resolve(path).resolve()  # the step folder itself, not the `best` link: which checkpoint this is
        translator = Translator.load(folder, settings.device, quantize=settings.quantize)
        check_servable(name, translator.config, settings)
        lock = threading.Lock()

        def search(lines, options, t=translator, lock=lock):
            with lock:
                return t.translate(lines, options)

        batcher = Batcher(search, max_batch=settings.max_batch, max_wait=settings.max_wait_ms / 1000,
                          max_queue=settings.max_queue, name=name)
        batcher.on_batch = metrics.watch_model(name, lambda b=batcher: b.queued)
        models[name] = ServedModel(name, folder, translator, batcher, lock)
        logger.info(f"loaded {name}: {folder} ({config_summary(translator.config)}) on {translator.device}")
    return models


def check_servable(name: str, config, settings: ServeSettings) -> None:
    """A model the server could not answer with its own defaults is refused at start-up."""
    decode = config.decode
    if config.task != "translation":
        raise NmtError(f"model {name} is a language model (task: {config.task}): nmt serve serves translation "
                       f"models")
    if decode.sample and decode.n_samples > settings.max_samples:
        raise NmtError(f"model {name} draws {decode.n_samples} samples by default, above --max-samples "
                       f"{settings.max_samples}: raise --max-samples")
    if not decode.sample and decode.beam > settings.max_beam:
        raise NmtError(f"model {name} decodes with beam {decode.beam} by default, above --max-beam "
                       f"{settings.max_beam}: raise --max-beam")


def config_summary(config) -> str:
    model = config.model
    return (f"{config.data.src_lang}->{config.data.tgt_lang}, {model.layers} x {model.hidden} {model.cell}, "
            f"beam {config.decode.beam}")
