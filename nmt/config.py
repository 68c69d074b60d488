"""The one typed configuration, and the only home of defaults.

A config is a YAML file with four sections (`data`, `model`, `train`, `decode`) that map onto
the frozen dataclasses below. Loading rejects unknown keys with a "did you mean" hint, checks
every value's type, and checks cross-field rules, so a typo fails when the file is read and not
an hour into training. The defaults are the paper's recipe (Sutskever et al. 2014).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import yaml

from nmt.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    src_lang: str = "src"
    tgt_lang: str = "tgt"
    # Corpus prefixes: `train: data/tatoeba-en-fr/train` reads train.en and train.fr.
    train: Optional[str] = None
    valid: Optional[str] = None
    test: Optional[str] = None
    prepared: str = "runs/prepared"  # where `nmt preprocess` writes and `nmt train` reads
    # SentencePiece stands in for the paper's word vocabularies (160k source, 80k target).
    joint_vocab: bool = False
    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    spm_model_type: Literal["unigram", "bpe", "char", "word"] = "unigram"
    character_coverage: float = 1.0
    # SentencePiece trains on at most this many lines (a fixed sample of them when there are more).
    # Its memory grows with the characters it is given: measured, 3.7 GB for 1M lines of 168
    # characters, most of preprocess's peak and 92% of its time at 1M pairs (benchmarks/README.md).
    spm_max_sentences: int = 500_000
    # Filters for training pairs only; valid and test are never filtered.
    max_len: int = 100  # subword tokens per side
    max_len_ratio: float = 3.0  # longer side over shorter side, in tokens
    dedupe_train: bool = True
    lowercase: bool = False
    workers: int = 0  # processes that encode the training split in preprocess; 0: one per core
    # Language models (task: lm): the token units. "subword" trains SentencePiece (tgt_vocab_size
    # pieces); "word" takes exactly the training split's words; "char" its characters.
    units: Literal["subword", "word", "char"] = "subword"


@dataclass(frozen=True)
class ModelConfig:
    cell: Literal["lstm", "gru"] = "lstm"
    layers: int = 4
    hidden: int = 1000
    embed: int = 1000
    reverse_source: bool = True  # the paper's biggest single gain
    init_range: float = 0.08  # uniform in [-init_range, init_range]
    # Later additions (Luong et al. 2015 and after), all off in the paper's model:
    bidirectional: bool = False  # encoder layers read both ways (hidden/2 per direction)
    bridge: bool = False  # a learned layer from the encoder's final state to the decoder's initial one
    attention: Literal["none", "dot", "general", "concat", "additive"] = "none"
    input_feeding: bool = False  # feed the previous attentional vector back into the decoder
    dropout: float = 0.0  # between layers and before the softmax
    embed_dropout: float = 0.0  # on the source and target embeddings
    variational_dropout: bool = False  # one dropout mask per sequence, reused at every time step
    residual: bool = False  # layers 2.. add their input to their output
    tie_embeddings: bool = False  # the softmax reuses the target embedding matrix (needs embed == hidden)
    # Language models (AWD-LSTM, Merity et al. 2017): DropConnect on the recurrent matrices, one
    # mask per window; and dropping whole words' embeddings (not single units).
    weight_drop: float = 0.0
    word_dropout: float = 0.0
    # The last layer's size, when it differs from `hidden`: AWD-LSTM's 1150, 1150, 400, whose last
    # layer has the size of the tied embedding. (A linear projection from 1150 to the embedding
    # instead diverged at lr 30.) None: `hidden`.
    last_hidden: Optional[int] = None
    # Which kernels run a language model's LSTM windows on CUDA: "triton" (nmt/model/lstm_kernel.py,
    # one fused kernel per time step and layer), "cudnn" (nn.LSTM), or "auto": Triton's in training
    # steps that are CUDA graphs, where Triton is installed; cuDNN's in eager steps and in scoring.
    # On a CPU, and for translation models, it is always cuDNN's.
    lstm_kernel: Literal["auto", "cudnn", "triton"] = "auto"


@dataclass(frozen=True)
class TrainConfig:
    run_dir: str = "runs/default"
    seed: int = 1
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    threads: int = 0  # CPU threads for PyTorch's operators; 0: on the CPU, the cores idle when training starts
    bf16: bool = True  # autocast to bfloat16 on CUDA; ignored on CPU
    optimizer: Literal["sgd", "adam"] = "sgd"  # the paper: SGD without momentum
    lr: float = 0.7
    adam_betas: tuple[float, ...] = (0.9, 0.999)
    # Learning-rate schedule: "halving" is the paper's (constant, then halved every
    # decay_every_epochs from decay_start_epoch on); "plateau" multiplies the rate by
    # decay_factor whenever the dev score has not improved for plateau_patience evaluations.
    schedule: Literal["halving", "plateau"] = "halving"
    warmup_steps: int = 0  # linear warm-up from 0 to lr over this many updates
    epochs: float = 7.5
    decay_start_epoch: float = 5.0
    decay_every_epochs: float = 0.5
    decay_factor: float = 0.5
    plateau_patience: int = 2
    min_lr: float = 0.0  # the plateau schedule never goes below this
    batch_size: int = 128  # sentences per batch
    max_tokens: Optional[int] = None  # if set, batches hold up to this many padded tokens
    bucket_pool: int = 100  # sort this many batches' worth of sentences by length at a time
    # Static shapes: each batch holds one exact source length, `batch_size` rows (filler rows
    # pad the last one) and a target width rounded up to a multiple of tgt_multiple. Fewer
    # distinct shapes, no packing; with cuda_graphs each shape's whole step is a CUDA graph,
    # captured the first time a batch of that shape comes up. `auto` (both): on when training
    # on CUDA, off on the CPU (`resolve_auto`); the run's config.yaml records what they became.
    static_shapes: bool | Literal["auto"] = "auto"
    tgt_multiple: int = 2
    cuda_graphs: bool | Literal["auto"] = "auto"  # needs static_shapes; ignored on the CPU
    max_graphs: int = 512  # captured shapes at most; a batch of a shape beyond them steps eagerly
    # The paper's layer pipeline: encoder and decoder layer k on devices[k] (or the layers spread
    # in blocks over fewer devices); the softmax split by vocabulary over softmax_devices.
    devices: tuple[str, ...] = ()
    softmax_devices: tuple[str, ...] = ()
    pipeline_chunk: int = 8  # time steps per chunk of the wavefront
    # The paper divides the summed gradient by the batch size (128 sentences).
    loss_normalization: Literal["sentences", "tokens"] = "sentences"
    label_smoothing: float = 0.0
    clip_norm: float = 5.0
    max_nonfinite_in_a_row: int = 10  # stop after this many NaN/inf updates in a row (each is skipped)
    max_steps: Optional[int] = None  # stop early after this many updates
    max_minutes: Optional[float] = None  # stop early after this much training time
    early_stopping_patience: Optional[int] = None  # stop after this many evaluations without a better dev score
    keep_best: int = 1  # checkpoints kept besides `last`, best dev scores first
    log_every: int = 50
    # Also write what log.jsonl gets as TensorBoard scalars, into run_dir/tensorboard/ (view them
    # with `tensorboard --logdir RUN_DIR`); needs the optional tensorboard package: pip install 'nmt[tensorboard]'.
    tensorboard: bool = False
    eval_every: int = 1000
    save_every: int = 1000
    eval_bleu_sentences: int = 500  # dev sentences decoded greedily for BLEU at each eval (0: rank by perplexity)
    # Language models (task: lm): truncated BPTT over windows of `bptt` tokens of the stream, the
    # state carried (detached) from window to window; or whole sentences ("sentences").
    lm_batching: Literal["stream", "sentences"] = "stream"
    bptt: int = 35
    bptt_variable: bool = False  # AWD-LSTM: a window of about N(bptt, 5) tokens, or of bptt / 2 one time in 20
    eval_batch_size: int = 10  # parallel rows of the dev stream (language models)
    ar_alpha: float = 0.0  # activation regularisation: alpha * mean(h_t^2) of the top layer's dropped output
    tar_beta: float = 0.0  # temporal activation regularisation: beta * mean((h_t - h_(t-1))^2)
    # Non-monotonically triggered averaged SGD (Merity et al.): once the dev score has not improved
    # for asgd_patience evaluations, the weights are averaged from then on and evaluated averaged.
    averaging: Literal["none", "nt-asgd"] = "none"
    asgd_patience: int = 5


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode: the config's `decode` section, and what search takes whole.

    A checkpoint's section gives the defaults; `override` changes some of them (from the command
    line or the Python API) and checks the result like the config is checked.
    """

    beam: int = 12
    batch_size: int = 64  # sentences per search batch
    length_penalty: float = 0.0  # score / length**alpha; 0 is the paper's plain log-probability
    # Subtracted from a finished hypothesis's score once per output token (EOS included), after
    # the length normalisation: positive favours shorter translations, negative longer (Marian's).
    word_penalty: float = 0.0
    max_len_a: float = 2.0  # the output stops at max_len_a * source_length + max_len_b tokens (EOS included)
    max_len_b: int = 10
    min_len_a: float = 0.0  # no EOS before min_len_a * source_length + min_len_b tokens (EOS not counted)
    min_len_b: int = 0
    n_best: int = 1  # hypotheses returned per sentence, best first
    no_repeat_ngram: int = 0  # n > 0: no hypothesis holds the same n tokens in a row twice
    # How an ensemble combines its members' next-token distributions: the mean of the
    # probabilities (the paper) or of the log-probabilities, renormalised.
    ensemble_mode: Literal["mean", "log_linear"] = "mean"
    # Sampling instead of search: n_samples draws per sentence from the softmax at `temperature`
    # (0: greedy), kept to the top_k most likely tokens (0: all) and then to the smallest set
    # whose probability reaches top_p (1: all); the n_best most likely samples are returned.
    sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    n_samples: int = 1
    seed: int = 1  # of the samples' random stream (one per translate call)
    cuda_graphs: bool = False  # replay beam and greedy steps as CUDA graphs (one per row count); CUDA only

    def override(self, *, option_name: Callable[[str], str] = lambda key: f"decode.{key}",
                 **changes) -> "DecodeOptions":
        """A checked copy with the given values; None leaves a value as it is. An n_best above the
        beam (above n_samples when sampling) raises it to n_best unless it was given too. Errors
        name a value by `option_name(key)` (the command line passes its flags' names)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        widened = "n_samples" if changes.get("sample", self.sample) else "beam"
        if widened not in changes and changes.get("n_best", 0) > getattr(self, widened):
            changes[widened] = changes["n_best"]
        options = dataclasses.replace(self, **{k: _coerce(option_name(k), v, _hint(DecodeOptions, k))
                                               for k, v in changes.items()})
        check_decode(options, option_name)
        return options


TASKS = ("translation", "lm")


@dataclass(frozen=True)
class Config:
    task: Literal["translation", "lm"] = "translation"  # a top-level key: `task: lm`
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeOptions = field(default_factory=DecodeOptions)

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists (tuples become lists), for JSON and YAML."""
        return dataclasses.asdict(self, dict_factory=lambda items: {k: list(v) if isinstance(v, tuple) else v
                                                                    for k, v in items})


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "task"}
_SECTION_CLASSES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "decode": DecodeOptions}


def _closest(name: str, choices) -> str:
    """A ' (did you mean ...?)' hint: the most similar valid key, else one that the name contains."""
    choices = list(choices)
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if not match:
        match = sorted((c for c in choices if len(c) >= 2 and (c in name or name in c)), key=len, reverse=True)
    if not match:
        match = difflib.get_close_matches(name, choices, n=1, cutoff=0.4)
    return f" (did you mean '{match[0]}'?)" if match else f" (valid keys: {', '.join(choices)})"


def shown(value: Any, limit: int = 80) -> str:
    """A value as an error message shows it: its repr, cut short (a YAML of nested aliases can
    expand to millions of characters)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 60, 60, 6, 6, 3


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check `value` against a field's type; return it converted (int -> float where allowed).

    The one place where every config value's type is checked; numbers must also be finite (no
    config value means anything as inf or NaN).
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if inner == [bool, Literal["auto"]]:  # a switch: true, false or auto
            if not (isinstance(value, bool) or value == "auto"):
                raise ConfigError(f"config key '{key}' must be true, false or auto, got {shown(value)}")
            return value
        (only,) = inner
        return _coerce(key, value, only)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, args))}, got {shown(value)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {shown(value)}")
        return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {shown(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be a whole number, got {shown(value)}")
        if abs(value) >= 2 ** 63:
            raise ConfigError(f"config key '{key}' is out of range: {shown(value)}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {shown(value)}")
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"config key '{key}' must be a finite number, got {shown(value)}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {shown(value)}")
        return value
    raise TypeError(f"unsupported config annotation {annotation!r} for {key}")


def _hint(cls, key: str) -> Any:
    """The type of field `key` of a config section class; an unknown key is a ConfigError."""
    hints = _type_hints(cls)
    if key not in hints:
        name = next(n for n, c in _SECTION_CLASSES.items() if c is cls)
        raise ConfigError(f"unknown config key '{name}.{key}'{_closest(str(key), list(hints))}")
    return hints[key]


@functools.cache
def _type_hints(cls) -> dict[str, Any]:
    """typing.get_type_hints, once per class: it evaluates every annotation's string anew on each
    call (about 0.5 ms per DecodeOptions.override), which `nmt serve` pays per request on its
    event loop. Callers only read the dict."""
    return typing.get_type_hints(cls)


def _build_section(name: str, values: Any):
    cls = _SECTION_CLASSES[name]
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{name}' must be a mapping of keys to values, got {shown(values)}")
    return cls(**{key: _coerce(f"{name}.{key}", value, _hint(cls, key)) for key, value in values.items()})


def config_from_dict(raw: Any) -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a mapping with the sections data, model, train, decode")
    for name in raw:
        if name not in _SECTION_CLASSES and name != "task":
            raise ConfigError(f"unknown config section '{name}'{_closest(str(name), [*_SECTION_CLASSES, 'task'])}")
    task = _coerce("task", raw.get("task", "translation"), Literal["translation", "lm"])
    try:
        config = Config(task=task, **{name: _build_section(name, raw.get(name)) for name in _SECTION_CLASSES})
    except RecursionError:
        raise ConfigError("a config value is nested too deeply: a config holds sections of keys and plain values") from None
    validate(config)
    return config


def parse_override(text: str) -> tuple[str, str, Any]:
    """'train.lr=0.5' -> ('train', 'lr', 0.5); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value, e.g. train.lr=0.5")
    path, raw_value = text.split("=", 1)
    if path.count(".") != 1:
        raise ConfigError(f"override '{text}' must name section.key, e.g. train.lr=0.5")
    section, key = path.strip().split(".")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else None
    except yaml.YAMLError:
        value = raw_value
    except RecursionError:
        raise ConfigError(f"override {shown(text)} nests its value too deeply: give a plain value") from None
    return section, key, value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for name, section in raw.items():
        if name == "task":
            continue
        if name not in _SECTION_CLASSES:
            raise ConfigError(f"unknown config section {shown(name)}{_closest(str(name)[:100], _SECTION_CLASSES)}")
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"config section '{name}' must be a mapping of keys to values, got {shown(section)}")
    raw = {name: section if name == "task" else dict(section or {}) for name, section in raw.items()}
    for text in overrides:
        if text.split("=", 1)[0].strip() == "task":  # the one top-level key
            raw["task"] = text.split("=", 1)[1].strip()
            continue
        section, key, value = parse_override(text)
        if section not in _SECTION_CLASSES:
            raise ConfigError(f"unknown config section '{section}' in override '{text}'{_closest(section, _SECTION_CLASSES)}")
        raw.setdefault(section, {})[key] = value
    return raw


def _refuse_duplicate_keys(text: str) -> None:
    """A key written twice in one mapping is an error (yaml.safe_load keeps the last one silently:
    a section written twice would lose half its keys). Checked on the composed node tree, which
    builds no Python objects; each node once, so aliases cannot make the walk explode."""
    seen, todo = set(), [yaml.compose(text, Loader=yaml.SafeLoader)]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in keys:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"{shown(key.value)} is written twice in one mapping", key.start_mark)
                    keys.add(key.value)
                todo.append(value)
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)


SHIPPED = Path(__file__).resolve().parent / "configs"  # inside the package: there in every install


def config_path(path: str | Path) -> Path:
    """A config file, or the name of a shipped one ("quickstart" -> nmt/configs/quickstart.yaml)."""
    path = Path(path)
    shipped = SHIPPED / f"{path.name}.yaml"
    if not path.exists() and path.parent == Path(".") and path.suffix == "" and shipped.is_file():
        return shipped
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder: pass a YAML file, e.g. configs/quickstart.yaml")
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.yaml")))
        raise ConfigError(f"config file {path} not found: pass an existing YAML file, or the name of a shipped "
                          f"config ({names})")
    return path


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    raw: Any = {}
    if path is not None:
        path = config_path(path)
        try:
            text = path.read_text(encoding="utf-8")
            _refuse_duplicate_keys(text)
            raw = yaml.safe_load(text) or {}
        except RecursionError:
            raise ConfigError(f"config file {path} nests its values too deeply: a config holds sections of "
                              f"keys and plain values") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not UTF-8 text: save it as UTF-8") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"config file {path} is not valid YAML{where} ({problem}): fix the syntax there") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping with the sections data, model, train, decode")
    return config_from_dict(apply_overrides(raw, list(overrides)))


def replace(config: Config, **sections: dict) -> Config:
    """A copy of `config` with some keys changed: replace(c, train={"lr": 0.1})."""
    raw = config.to_dict()
    for name, values in sections.items():
        raw[name].update(values)
    return config_from_dict(raw)


def resolve_auto(config: Config, device_type: str, processes: int = 1) -> Config:
    """`config` with `auto` in train.static_shapes and train.cuda_graphs made true or false, for a
    run on `device_type` ("cuda", "cpu") in `processes` torchrun processes: on for CUDA, where they
    are several times faster, and wherever the run can take them; off on the CPU. Explicit
    values are kept (and checked as before)."""
    t = config.train
    if "auto" not in (t.static_shapes, t.cuda_graphs):
        return config
    cuda = device_type == "cuda"
    static = t.static_shapes
    if static == "auto":
        static = bool(t.devices) or (cuda and not (config.task == "lm" and t.lm_batching == "sentences")
                                     and t.batch_size % processes == 0)
    graphs = t.cuda_graphs
    if graphs == "auto":
        graphs = cuda and static and not t.devices and processes == 1
    return replace(config, train={"static_shapes": static, "cuda_graphs": graphs})


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(config: Config) -> None:
    """Cross-field and range checks, run whenever a config is built."""
    d, m, t, dec = config.data, config.model, config.train, config.decode
    for key, value in [("data.src_vocab_size", d.src_vocab_size), ("data.tgt_vocab_size", d.tgt_vocab_size),
                       ("data.max_len", d.max_len), ("model.layers", m.layers), ("model.hidden", m.hidden),
                       ("model.embed", m.embed), ("train.batch_size", t.batch_size), ("train.log_every", t.log_every),
                       ("train.eval_every", t.eval_every), ("train.save_every", t.save_every),
                       ("train.bucket_pool", t.bucket_pool), ("train.tgt_multiple", t.tgt_multiple),
                       ("train.max_nonfinite_in_a_row", t.max_nonfinite_in_a_row)]:
        _require(value > 0, f"config key '{key}' must be positive, got {value}")
    _require(d.src_vocab_size >= 8 and d.tgt_vocab_size >= 8, "data vocabulary sizes must be at least 8 (4 special tokens and some pieces)")
    _require(d.max_len_ratio >= 1.0, f"config key 'data.max_len_ratio' must be at least 1, got {d.max_len_ratio}")
    _require(0 < d.character_coverage <= 1, "config key 'data.character_coverage' must be in (0, 1]")
    _require(d.src_lang != d.tgt_lang, f"data.src_lang and data.tgt_lang must differ, both are '{d.src_lang}'")
    _require(m.init_range > 0, f"config key 'model.init_range' must be positive, got {m.init_range}")
    _require(t.lr > 0, f"config key 'train.lr' must be positive, got {t.lr}")
    _require(t.seed >= 0, f"config key 'train.seed' must be 0 or more, got {t.seed}")
    _require(t.threads >= 0, f"config key 'train.threads' must be 0 (the idle cores) or more, got {t.threads}")
    _require(d.spm_max_sentences > 0, f"config key 'data.spm_max_sentences' must be positive, got {d.spm_max_sentences}")
    _require(d.workers >= 0, f"config key 'data.workers' must be 0 (one per core) or more, got {d.workers}")
    _require(t.epochs > 0, f"config key 'train.epochs' must be positive, got {t.epochs}")
    _require(t.decay_every_epochs > 0, "config key 'train.decay_every_epochs' must be positive")
    _require(0 < t.decay_factor <= 1, "config key 'train.decay_factor' must be in (0, 1]")
    _require(t.clip_norm > 0, f"config key 'train.clip_norm' must be positive, got {t.clip_norm}")
    _require(t.max_tokens is None or t.max_tokens > 0, "config key 'train.max_tokens' must be positive")
    _require(t.max_steps is None or t.max_steps > 0, "config key 'train.max_steps' must be positive")
    _require(t.max_minutes is None or t.max_minutes > 0, "config key 'train.max_minutes' must be positive")
    _require(t.eval_bleu_sentences >= 0, "config key 'train.eval_bleu_sentences' must be 0 or more")
    check_decode(dec)
    for key, value in [("model.dropout", m.dropout), ("model.embed_dropout", m.embed_dropout),
                       ("train.label_smoothing", t.label_smoothing)]:
        _require(0 <= value < 1, f"config key '{key}' must be in [0, 1), got {value}")
    _require(not m.input_feeding or m.attention in ("dot", "general", "concat"),
             "model.input_feeding needs Luong attention: set model.attention to dot, general or concat")
    _require(not m.bidirectional or m.hidden % 2 == 0,
             f"a bidirectional encoder splits model.hidden in two: make it even, got {m.hidden}")
    _require(not m.tie_embeddings or m.embed == m.hidden or config.task == "lm",  # a language model projects
             f"model.tie_embeddings needs model.embed == model.hidden, got {m.embed} and {m.hidden}")
    _require(len(t.adam_betas) == 2 and all(0 <= b < 1 for b in t.adam_betas),
             "config key 'train.adam_betas' must be two numbers in [0, 1), e.g. [0.9, 0.999]")
    _require(not (t.cuda_graphs is True and t.static_shapes is False),
             "train.cuda_graphs needs train.static_shapes: true (or auto)")
    _require(t.max_graphs > 0, f"config key 'train.max_graphs' must be positive, got {t.max_graphs}")
    if t.devices or t.softmax_devices:
        _require(m.attention == "none" and not m.bidirectional and not m.bridge and not m.tie_embeddings,
                 "the layer pipeline (train.devices) takes the paper's model: no attention, bidirectional "
                 "encoder, bridge or tied embeddings")
        _require(not t.devices or t.static_shapes is not False, "train.devices needs train.static_shapes: true (one source "
                 "length per batch, so the wavefront needs no packing)")
        _require(t.cuda_graphs is not True, "train.devices and train.cuda_graphs cannot be combined yet")
        _require(t.pipeline_chunk > 0, "config key 'train.pipeline_chunk' must be positive")
        _require(bool(t.devices), "train.softmax_devices needs train.devices (the layer pipeline)")
    _require(t.warmup_steps >= 0, "config key 'train.warmup_steps' must be 0 or more")
    for key, value in [("model.weight_drop", m.weight_drop), ("model.word_dropout", m.word_dropout)]:
        _require(0 <= value < 1, f"config key '{key}' must be in [0, 1), got {value}")
    for key, value in [("train.bptt", t.bptt), ("train.eval_batch_size", t.eval_batch_size),
                       ("train.asgd_patience", t.asgd_patience)]:
        _require(value > 0, f"config key '{key}' must be positive, got {value}")
    _require(t.ar_alpha >= 0 and t.tar_beta >= 0, "train.ar_alpha and train.tar_beta must be 0 or more")
    _require(m.last_hidden is None or 0 < m.last_hidden <= m.hidden,
             f"config key 'model.last_hidden' must be positive and at most model.hidden ({m.hidden}), got {m.last_hidden}")
    _require(m.last_hidden in (None, m.hidden) or not m.residual,
             "model.last_hidden smaller than model.hidden cannot be combined with model.residual (the last layer "
             "would add an input of another size): drop one of them")
    if config.task == "lm":
        _require(m.attention == "none" and not m.bidirectional and not m.input_feeding and not t.devices,
                 "a language model (task: lm) has no encoder: drop model.attention, model.bidirectional, "
                 "model.input_feeding and train.devices")
        _require(t.lm_batching == "sentences" or not t.max_tokens, "train.max_tokens needs train.lm_batching: sentences")
        _require(t.label_smoothing == 0, "train.label_smoothing is for translation: a language model's perplexity "
                 "needs the plain cross-entropy")
        _require(m.lstm_kernel != "triton" or m.cell == "lstm", "model.lstm_kernel: triton is for LSTMs: "
                 "set model.cell: lstm, or model.lstm_kernel: auto")
        _require(t.static_shapes is not True or t.lm_batching == "stream", "train.static_shapes: a language model's stream "
                 "windows have static shapes already; with lm_batching: sentences it is not supported yet")
    else:
        _require(m.weight_drop == 0 and m.word_dropout == 0 and t.ar_alpha == 0 and t.tar_beta == 0
                 and t.averaging == "none" and m.lstm_kernel != "triton" and m.last_hidden in (None, m.hidden),
                 "model.weight_drop, model.word_dropout, model.last_hidden, model.lstm_kernel: triton, train.ar_alpha, "
                 "train.tar_beta and train.averaging are for language models (task: lm) yet")
    _require(t.plateau_patience > 0, "config key 'train.plateau_patience' must be positive")
    _require(t.keep_best > 0, "config key 'train.keep_best' must be positive")
    _require(t.early_stopping_patience is None or t.early_stopping_patience > 0,
             "config key 'train.early_stopping_patience' must be positive")


def check_decode(dec: DecodeOptions, name: Callable[[str], str] = lambda key: f"decode.{key}") -> None:
    """The decode section's rules, for a config and for options overridden at decode time; a value
    is named `name(key)` in the message."""
    for key in ("beam", "batch_size", "n_best", "n_samples"):
        _require(getattr(dec, key) > 0, f"{name(key)} must be positive, got {getattr(dec, key)}")
    for key in ("length_penalty", "word_penalty", "max_len_a", "min_len_a", "temperature", "top_p"):
        _require(math.isfinite(getattr(dec, key)), f"{name(key)} must be a finite number, got {getattr(dec, key)}")
    if dec.sample:
        _require(dec.n_best <= dec.n_samples, f"{name('n_best')} {dec.n_best} cannot exceed {name('n_samples')} "
                 f"{dec.n_samples} when sampling")
    else:
        _require(dec.n_best <= dec.beam, f"{name('n_best')} {dec.n_best} cannot exceed {name('beam')} {dec.beam}")
    _require(dec.max_len_a >= 0 and dec.max_len_b >= 0,
             f"{name('max_len_a')} and {name('max_len_b')} must be 0 or more")
    _require(dec.max_len_a > 0 or dec.max_len_b > 0, f"{name('max_len_a')} and {name('max_len_b')} cannot both be 0")
    _require(dec.min_len_a >= 0 and dec.min_len_b >= 0,
             f"{name('min_len_a')} and {name('min_len_b')} must be 0 or more")
    # The minimum counts tokens before EOS, the maximum counts EOS: this keeps min + 1 <= max for
    # every source length (at the maximum EOS is forced anyway).
    _require((dec.min_len_a == 0 and dec.min_len_b == 0) or (dec.min_len_a <= dec.max_len_a
                                                              and dec.min_len_b < dec.max_len_b),
             f"the minimum length must stay below the maximum: {name('min_len_a')} {dec.min_len_a} can be at most "
             f"{name('max_len_a')} {dec.max_len_a}, and {name('min_len_b')} {dec.min_len_b} must be below "
             f"{name('max_len_b')} {dec.max_len_b}")
    _require(dec.length_penalty >= 0, f"{name('length_penalty')} must be 0 or more, got {dec.length_penalty}")
    _require(dec.no_repeat_ngram >= 0, f"{name('no_repeat_ngram')} must be 0 (off) or more, got {dec.no_repeat_ngram}")
    _require(dec.temperature >= 0, f"{name('temperature')} must be 0 (greedy) or more, got {dec.temperature}")
    _require(dec.top_k >= 0, f"{name('top_k')} must be 0 (all tokens) or more, got {dec.top_k}")
    _require(0 < dec.top_p <= 1, f"{name('top_p')} must be in (0, 1] (1: all tokens), got {dec.top_p}")
    _require(0 <= dec.seed < 2 ** 63, f"{name('seed')} must be a whole number from 0 to 2**63 - 1, got {dec.seed}")
