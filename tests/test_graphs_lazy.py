"""The fast path by default: `auto` for train.static_shapes and train.cuda_graphs, and each batch
shape's CUDA graph captured the first time it comes up.

On the CPU: how `auto` resolves, and the lazy capture's bookkeeping under the emulated capture of
tests/test_graphs.py (recorded operators replayed on static memory). With dropout on, a lazy run
must end with the eager loop's weights: the warm-ups draw dropout masks, and only if their draws
are undone does the replayed step see the random stream the eager step sees. On a GPU (skipped
here): real lazy capture against the eager loop and against capturing every shape up front.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from nmt.config import config_from_dict, load_config, resolve_auto
from nmt.errors import ConfigError
from nmt.train import graphs
from nmt.train.loop import Trainer
from tests.conftest import tiny_config, tiny_config_dict
from tests.test_graphs import ATTENTION, fake_cuda

SHIPPED = ["ablation-multi30k-en-de", "masnavi-char", "multi30k-de-en", "multi30k-en-de", "multi30k-en-fr",
           "ptb-awd", "ptb-zaremba-large", "ptb-zaremba-large-tied", "quickstart", "sutskever2014", "tatoeba-en-fa",
           "tatoeba-en-fr-attention", "tatoeba-en-fr", "wikitext2-awd"]


def switches(config) -> tuple:
    return config.train.static_shapes, config.train.cuda_graphs


# --- auto ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("train, device, processes, expected", [
    ({}, "cuda", 1, (True, True)),  # the default: the fast path on CUDA ...
    ({}, "cpu", 1, (False, False)),  # ... and the eager loop with bucketed batches on a CPU
    ({"static_shapes": False}, "cuda", 1, (False, False)),  # graphs need static shapes
    ({"cuda_graphs": False}, "cuda", 1, (True, False)),
    ({"static_shapes": True}, "cpu", 1, (True, False)),  # explicit values stay
    ({"static_shapes": True, "cuda_graphs": True}, "cpu", 1, (True, True)),  # (graphs ignored on a CPU, as before)
    ({}, "cuda", 2, (True, False)),  # torchrun: static shapes yes, graphs not yet
    ({"batch_size": 15}, "cuda", 2, (False, False)),  # rows that do not split over the processes
    ({"devices": ["cpu", "cpu"]}, "cpu", 1, (True, False)),  # the layer pipeline needs static shapes
], ids=["cuda", "cpu", "static-off", "graphs-off", "static-on-cpu", "both-on-cpu", "torchrun", "torchrun-odd-batch",
        "pipeline"])
def test_auto_resolves_by_device(tmp_path, train, device, processes, expected):
    config = tiny_config(tmp_path, train=train)
    assert switches(config) == tuple(train.get(k, "auto") for k in ("static_shapes", "cuda_graphs"))
    resolved = resolve_auto(config, device, processes)
    assert switches(resolved) == expected
    assert resolved.to_dict()["model"] == config.to_dict()["model"]  # nothing else changes
    assert {k: v for k, v in resolved.to_dict()["train"].items() if k not in ("static_shapes", "cuda_graphs")} == \
        {k: v for k, v in config.to_dict()["train"].items() if k not in ("static_shapes", "cuda_graphs")}


def test_a_language_model_of_sentences_has_no_static_shapes_on_cuda(tmp_path):
    from tests.test_lm import lm_config_dict

    stream = config_from_dict(lm_config_dict(tmp_path))
    sentences = config_from_dict(lm_config_dict(tmp_path, train={"lm_batching": "sentences"}))
    assert switches(resolve_auto(stream, "cuda")) == (True, True)
    assert switches(resolve_auto(sentences, "cuda")) == (False, False)


@pytest.mark.parametrize("value", ["always", 1, 0, "Auto", "off-please", None])
def test_a_switch_is_true_false_or_auto(tmp_path, value):
    with pytest.raises(ConfigError, match=r"config key 'train.cuda_graphs' must be true, false or auto, got"):
        tiny_config(tmp_path, train={"cuda_graphs": value})


def test_switches_from_the_command_line_and_their_rules(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tmp_path)))
    assert switches(load_config(path, ["train.cuda_graphs=auto", "train.static_shapes=true"])) == (True, "auto")
    assert switches(load_config(path, ["train.cuda_graphs=false"])) == ("auto", False)
    with pytest.raises(ConfigError, match=r"train.cuda_graphs needs train.static_shapes: true \(or auto\)"):
        load_config(path, ["train.cuda_graphs=true", "train.static_shapes=false"])
    with pytest.raises(ConfigError, match=r"'train.max_graphs' must be positive, got 0"):
        load_config(path, ["train.max_graphs=0"])


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_takes_the_fast_path_on_cuda_and_not_on_a_cpu(name):
    config = load_config(name)
    assert switches(config) == ("auto", "auto")
    on_cuda = switches(resolve_auto(config, "cuda"))
    assert on_cuda == (True, True), on_cuda
    assert switches(resolve_auto(config, "cpu")) == (False, False)


def test_the_run_folder_and_checkpoints_record_the_resolved_switches(workspace):
    from nmt.checkpoint import open_checkpoint
    from nmt.train.start import train

    run = train(tiny_config(workspace, train={"max_steps": 3, "save_every": 3}), stream=open("/dev/null", "w"))
    written = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (written["static_shapes"], written["cuda_graphs"]) == (False, False)  # a CPU run
    assert switches(open_checkpoint(run / "last").config) == (False, False)
    events = [yaml.safe_load(line) for line in (run / "log.jsonl").read_text().splitlines()]
    first = [e for e in events if e["event"] == "first_step"]
    assert len(first) == 1 and first[0]["step"] == 1 and first[0]["seconds"] > 0


def test_the_trainer_never_hands_auto_to_the_task(workspace):
    trainer = Trainer(tiny_config(workspace, train={"run_dir": str(workspace / "r")}))
    assert switches(trainer.config) == (False, False) and trainer.captured is None
    assert type(trainer.sampler).__name__ == "BucketSampler"


# --- lazy capture, emulated on the CPU ------------------------------------------------------------

DROPOUT = {"dropout": 0.3, "embed_dropout": 0.2}
SETTINGS = dict(static_shapes=True, tgt_multiple=4, max_steps=8, eval_every=100, save_every=100, log_every=100)


def _trainer(workspace, name, *, captured: bool, monkeypatch=None, model=None, **train):
    trainer = Trainer(tiny_config(workspace, model=model or DROPOUT,
                                  train={**SETTINGS, **train, "run_dir": str(workspace / name)}))
    trainer.run_dir.mkdir()
    if captured:
        fake_cuda(monkeypatch, trainer.model)
        trainer.captured = trainer.captured_steps()
    return trainer


def _weights(trainer) -> list[torch.Tensor]:
    return [w.detach().clone() for w in trainer.model.state_dict().values()]


def _assert_same(a, b, **tolerance):
    for x, y in zip(a, b):
        torch.testing.assert_close(y, x, **tolerance)


@pytest.fixture
def eager_weights(workspace, monkeypatch):
    # oneDNN's CPU LSTM keeps copies of its weights below the dispatcher (see tests/test_graphs.py)
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    eager = _trainer(workspace, "eager", captured=False)
    eager.train_steps()
    return _weights(eager)


def test_each_shape_is_captured_when_its_first_batch_comes_up(workspace, monkeypatch, eager_weights):
    trainer = _trainer(workspace, "lazy", captured=True, monkeypatch=monkeypatch)
    batches = trainer.sampler.epoch(0)  # (on the toy corpus each batch of an epoch has a shape of its own)
    captured_after = []
    step_on = trainer._step_on

    def counting(batch):
        step_on(batch)
        captured_after.append(list(trainer.captured.graphs))

    trainer._step_on = counting
    trainer.train_steps()
    shapes = [trainer.task.batch(b).shape_key() for b in batches[:SETTINGS["max_steps"]]]
    assert captured_after == [list(dict.fromkeys(shapes[:k + 1])) for k in range(len(shapes))]
    assert trainer.captured.eager_steps == 0 and trainer.captured.capture_seconds > 0
    # Dropout is on: the warm-ups' draws were undone, so the steps saw the eager loop's masks.
    _assert_same(eager_weights, _weights(trainer), rtol=1e-5, atol=1e-6)
    # A shape met again replays its graph: nothing new is captured.
    graph = trainer.captured.graphs[shapes[0]].graph
    calls = graph.calls
    trainer._step_on(trainer.task.batch(batches[0]))
    assert list(trainer.captured.graphs) == shapes and graph.calls is calls


def test_without_undoing_the_warm_ups_draws_the_run_would_differ(workspace, monkeypatch, eager_weights):
    """The control for the test above: the dropout draws do reach the weights."""
    import contextlib

    monkeypatch.setattr(graphs.torch.random, "fork_rng", lambda **kwargs: contextlib.nullcontext())
    trainer = _trainer(workspace, "unforked", captured=True, monkeypatch=monkeypatch)
    trainer.train_steps()
    moved = max(float((a - b).abs().max()) for a, b in zip(eager_weights, _weights(trainer)))
    assert moved > 1e-3, moved


def test_lazy_capture_gives_up_front_capture_bit_for_bit(workspace, monkeypatch, eager_weights):
    lazy = _trainer(workspace, "lazy", captured=True, monkeypatch=monkeypatch)
    lazy.train_steps()
    up_front = _trainer(workspace, "up-front", captured=True, monkeypatch=monkeypatch)
    first_of_shape = {}
    for indices in up_front.sampler.epoch(0):
        first_of_shape.setdefault(up_front.sampler.shape(indices), indices)
    for indices in first_of_shape.values():  # what the loop did before: every shape of the epoch first
        up_front.captured.capture(up_front.task.batch(indices))
    up_front.train_steps()
    assert len(up_front.captured.graphs) > len(lazy.captured.graphs)
    for a, b in zip(_weights(lazy), _weights(up_front)):
        assert torch.equal(a, b)


def test_shapes_beyond_max_graphs_train_eagerly_to_the_same_weights(workspace, monkeypatch, eager_weights, caplog):
    trainer = _trainer(workspace, "bounded", captured=True, monkeypatch=monkeypatch, max_graphs=2)
    trainer.train_steps()
    batches = list(trainer.sampler.epoch(0)) + list(trainer.sampler.epoch(1))
    shapes = [trainer.task.batch(b).shape_key() for b in batches[:SETTINGS["max_steps"]]]
    first_two = list(dict.fromkeys(shapes))[:2]
    assert list(trainer.captured.graphs) == first_two
    assert trainer.captured.eager_steps == sum(shape not in first_two for shape in shapes) > 0
    assert sum("train.max_graphs" in r.message for r in caplog.records) == 1  # said once
    _assert_same(eager_weights, _weights(trainer), rtol=1e-5, atol=1e-6)


# --- on a GPU: real capture -------------------------------------------------------------------------

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="real CUDA graph capture needs a CUDA GPU")


def _gpu_run(workspace, monkeypatch, name, *, model, bf16, steps=28, up_front=False, **train):
    """Train `steps` steps on CUDA; returns (trainer, the loss of each step). `up_front`: capture
    every shape of the first epoch before the first step, as the loop did before."""
    from nmt.train import loop, progress

    trainer = Trainer(tiny_config(workspace, model=model, train=dict(
        device="cuda", bf16=bf16, optimizer="adam", lr=0.002, tgt_multiple=4, max_steps=steps, log_every=100,
        eval_every=100, save_every=100, run_dir=str(workspace / name), **train)))
    trainer.run_dir.mkdir()
    if up_front:
        first_of_shape = {}
        for indices in trainer.sampler.epoch(0):
            first_of_shape.setdefault(trainer.sampler.shape(indices), indices)
        for indices in first_of_shape.values():
            trainer.captured.capture(trainer.task.batch(indices))
    losses = []

    class KeptWindow(progress.Window):
        def add(self, step_loss, *counts):  # a graph's loss tensor is overwritten by its next replay: copy it now
            losses.append(step_loss.detach().clone())
            return super().add(step_loss, *counts)

    monkeypatch.setattr(loop, "Window", KeptWindow)
    trainer.train_steps()
    return trainer, torch.stack(losses).float().cpu()


@cuda_only
@pytest.mark.parametrize("model,bf16", [({}, False), ({}, True), (ATTENTION, True)],
                         ids=["paper-fp32", "paper-bf16", "attention-bf16"])
def test_real_lazy_capture_gives_the_eager_losses(workspace, monkeypatch, model, bf16):
    """The default switches on CUDA (auto: static shapes, graphs captured as shapes come up)
    against the eager loop on the same static-shape batches, dropout off."""
    eager, eager_losses = _gpu_run(workspace, monkeypatch, "eager", model=model, bf16=bf16, static_shapes=True,
                                   cuda_graphs=False)
    lazy, lazy_losses = _gpu_run(workspace, monkeypatch, "lazy", model=model, bf16=bf16)
    assert switches(lazy.config) == (True, True) and lazy.captured is not None
    assert 2 <= len(lazy.captured.graphs) < 28 and eager.captured is None  # some shapes replayed
    assert len(lazy_losses) == len(eager_losses) == 28
    torch.testing.assert_close(lazy_losses, eager_losses, rtol=2e-2 if bf16 else 1e-4, atol=1e-2 if bf16 else 1e-4)


@cuda_only
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_real_lazy_capture_gives_up_front_capture_bit_for_bit(workspace, monkeypatch, bf16):
    """Embedding dropout on (torch's generator; not cuDNN's own dropout state between LSTM layers,
    which its warm-ups would advance): the warm-ups' draws are undone, so when a shape is captured
    does not change a number."""
    model = {**ATTENTION, "embed_dropout": 0.2}
    lazy, lazy_losses = _gpu_run(workspace, monkeypatch, "lazy", model=model, bf16=bf16, steps=12)
    up_front, up_front_losses = _gpu_run(workspace, monkeypatch, "up-front", model=model, bf16=bf16, steps=12,
                                         up_front=True)
    assert len(up_front.captured.graphs) > len(lazy.captured.graphs)
    assert torch.equal(lazy_losses, up_front_losses), (lazy_losses, up_front_losses)
    for a, b in zip(lazy.model.state_dict().values(), up_front.model.state_dict().values()):
        assert torch.equal(a, b)
