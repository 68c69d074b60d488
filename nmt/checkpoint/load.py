"""Reading checkpoints: every file is checked before it is trusted, and nothing is unpickled.

`open_checkpoint` resolves a path and reads what describes the checkpoint (meta.json, config.json);
`Checkpoint` then hands out its tokenizers, weights and trainer state, each verified against
meta.json's checksums; `load_model(path, device)` is the model ready to decode. `check_compatible`
is the one rule for "same model, same vocabularies" (ensembles, averaging, resuming).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

import nmt
from nmt import files
from nmt.checkpoint.store import FORMAT, sha256, unique_state
from nmt.config import Config, config_from_dict
from nmt.data.monolingual import load_tokenizer
from nmt.data.tokenizer import Tokenizer
from nmt.errors import CheckpointError, ConfigError

# What each JSON file of a checkpoint must hold (key -> type) before anything reads it.
META_KEYS = {"format": int, "tokenizers": dict, "weights_sha256": str}
CONFIG_KEYS = {"data": dict, "model": dict, "train": dict, "decode": dict}
TRAINER_KEYS = {"step": int, "epoch": int, "batch_in_epoch": int, "tgt_tokens": int, "train_seconds": float,
                "optimizer": dict}
# A joint model or one per side (translation); a language model's one vocabulary.
TOKENIZER_NAMES = ({"spm.model"}, {"src.model", "tgt.model"}, {"tgt.model"}, {"tgt.vocab"})


def read_json(path: Path, required: Optional[dict] = None) -> dict:
    """A checkpoint's JSON file, checked (nmt.files.read_json) for the keys its reader needs."""
    return files.read_json(path, required, error=CheckpointError,
                           fix="the checkpoint is incomplete or damaged, use another one")


def resolve(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (its `best`, else its `last`)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found: pass a run folder or a checkpoint folder such as runs/x/best")
    if path.is_file():
        raise CheckpointError(f"{path} is a file, but a checkpoint is a folder (with model.safetensors): "
                              f"pass the folder, e.g. runs/x/best")
    if (path / "model.safetensors").exists() or (path / "config.json").exists():
        return path
    for link in ("best", "last"):
        if (path / link).exists():
            return (path / link).resolve()
    raise CheckpointError(f"{path} holds no checkpoint (no best or last): train first, or pass a checkpoint folder")


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing: the checkpoint is incomplete, use another one")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file ({str(e).splitlines()[0][:80]}): "
                              f"the checkpoint is corrupt, use another one") from None


def load_weights_into(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Load `weights` (read from `source`) into `model`, naming every tensor that does not fit."""
    expected = unique_state(model)
    problems = [f"missing {k}" for k in expected if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in expected]
    problems += [f"{k} is {tuple(weights[k].shape)} but the model has {tuple(v.shape)}"
                 for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise CheckpointError(f"{source} was made for another architecture: {shown}")
    model.load_state_dict(weights, strict=False)  # the aliases of tied weights follow their owner


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder whose meta.json and config.json have been read and checked."""

    folder: Path
    meta: dict
    config: Config

    @property
    def tokenizer_files(self) -> tuple[Path, Path]:
        names = sorted(self.meta["tokenizers"])  # one name: a joint model, or a language model's vocabulary
        return (self.folder / names[0], self.folder / names[-1])  # src.model sorts before tgt.model

    def identity(self) -> dict:
        """What two checkpoints must share to be averaged or resumed into each other."""
        return {"tokenizers": self.meta["tokenizers"], "model": self.config.to_dict()["model"]}

    def tokenizers(self) -> tuple[Tokenizer, Tokenizer]:
        """(source, target) tokenizers, each checked against the checksum in meta.json."""
        loaded = {path: load_tokenizer(path) for path in set(self.tokenizer_files)}
        for path, tokenizer in loaded.items():
            if self.meta["tokenizers"][path.name] != tokenizer.checksum:
                raise CheckpointError(f"{path} is not the tokenizer this model was trained with "
                                      f"(checksum differs from meta.json): restore the checkpoint's own file")
        return loaded[self.tokenizer_files[0]], loaded[self.tokenizer_files[1]]

    def weights(self) -> dict[str, torch.Tensor]:
        """model.safetensors, after checking it is the file meta.json describes (bit for bit)."""
        path = self.folder / "model.safetensors"
        if path.is_file() and sha256(path) != self.meta["weights_sha256"]:
            raise CheckpointError(f"{path} is corrupt or not this checkpoint's (its SHA-256 differs from the one in "
                                  f"meta.json): restore it, or use another checkpoint")
        return load_tensors(path)

    def load_into(self, model: torch.nn.Module) -> None:
        """Load the weights into `model`, naming every tensor that does not fit."""
        load_weights_into(model, self.weights(), self.folder)

    def trainer_state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """trainer.json and trainer.safetensors (optimizer tensors, random states): what resumes a run."""
        state = read_json(self.folder / "trainer.json", TRAINER_KEYS)
        return state, load_tensors(self.folder / "trainer.safetensors")


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], settings: dict) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, param_id, key = name.split(".", 2)
            state.setdefault(int(param_id), {})[key] = value
    for name, value in settings.get("scalars", {}).items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    return {"state": state, "param_groups": settings["param_groups"]}


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def open_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint at `path` (a checkpoint or run folder), refused unless this nmt can read it."""
    folder = resolve(path)
    meta = read_json(folder / "meta.json", META_KEYS)
    if meta["format"] != FORMAT:
        raise CheckpointError(f"{folder} was written by nmt {meta.get('nmt_version', '?')} in checkpoint format "
                              f"{meta['format']}; this nmt {nmt.__version__} reads format {FORMAT}: "
                              f"use a matching version of nmt")
    if set(meta["tokenizers"]) not in TOKENIZER_NAMES or not all(isinstance(v, str) for v in meta["tokenizers"].values()):
        raise CheckpointError(f"{folder / 'meta.json'} is corrupt (its tokenizers entry): use another checkpoint")
    try:
        config = config_from_dict(read_json(folder / "config.json", CONFIG_KEYS))
    except ConfigError as e:
        raise CheckpointError(f"{folder}/config.json does not fit this version of nmt ({e})") from None
    return Checkpoint(folder, meta, config)


def check_compatible(expected: dict, found: dict, *, found_name: str, expected_name: str, fix: str,
                     same_model: bool = True) -> None:
    """The one compatibility rule: the same tokenizers (so the same vocabularies and ids) and,
    unless only the vocabularies matter (an ensemble), the same model section.

    `expected` and `found` are `Checkpoint.identity()`-shaped dicts; the error names what differs.
    """
    if found["tokenizers"] != expected["tokenizers"]:
        raise CheckpointError(f"{found_name} was trained with other tokenizers than {expected_name}: {fix}")
    if not same_model:
        return
    changed = [f"model.{k}={v!r} (was {expected['model'].get(k)!r})"
               for k, v in found["model"].items() if expected["model"].get(k) != v]
    if changed:
        raise CheckpointError(f"{found_name} is another model than {expected_name}: {', '.join(changed)}; {fix}")


@dataclass
class LoadedModel:
    model: torch.nn.Module  # in eval mode, on the device it was loaded to
    checkpoint: Checkpoint
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer


def load_model(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """A checkpoint's model, rebuilt from its config.json, its weights verified and loaded."""
    from nmt.tasks import build_model  # the task that the config names knows its model

    checkpoint = open_checkpoint(path)
    src_tok, tgt_tok = checkpoint.tokenizers()
    model = build_model(checkpoint.config, src_tok.vocab_size, tgt_tok.vocab_size)
    checkpoint.load_into(model)
    return LoadedModel(model.to(device).eval(), checkpoint, src_tok, tgt_tok)
