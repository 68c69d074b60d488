"""Every shipped config loads and validates; the loader rejects what it should."""

from __future__ import annotations

from pathlib import Path

import pytest

from nmt.config import Config, ConfigError, config_from_dict, load_config, parse_override

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_shipped_configs():
    names = {p.name for p in CONFIGS}
    assert {"sutskever2014.yaml", "quickstart.yaml", "tatoeba-en-fr.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path):
    assert isinstance(load_config(path), Config)


def test_paper_config_carries_the_papers_values():
    c = load_config(Path(__file__).resolve().parents[1] / "configs" / "sutskever2014.yaml")
    assert (c.model.layers, c.model.hidden, c.model.embed, c.model.reverse_source) == (4, 1000, 1000, True)
    assert (c.model.init_range, c.train.lr, c.train.epochs, c.train.batch_size, c.train.clip_norm) == (0.08, 0.7, 7.5, 128, 5.0)
    assert (c.train.decay_start_epoch, c.train.decay_every_epochs, c.train.decay_factor) == (5.0, 0.5, 0.5)
    assert c.train.loss_normalization == "sentences" and c.train.optimizer == "sgd"


@pytest.mark.parametrize("raw,message", [
    ({"train": {"lr_rate": 1}}, "did you mean 'lr'"),
    ({"modle": {}}, "did you mean 'model'"),
    ({"model": {"layers": "four"}}, "model.layers' must be a whole number"),
    ({"model": {"hidden": -5}}, "model.hidden' must be positive"),
    ({"train": {"bf16": "yes"}}, "train.bf16' must be true or false"),
    ({"train": {"loss_normalization": "batch"}}, "must be one of sentences, tokens"),
    ({"decode": {"beam": 2, "n_best": 3}}, "cannot exceed decode.beam"),
])
def test_bad_configs_are_refused_with_the_key_named(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config_from_dict(raw)


def test_overrides_are_parsed_as_yaml():
    assert parse_override("train.lr=0.5") == ("train", "lr", 0.5)
    assert parse_override("train.max_steps=null") == ("train", "max_steps", None)
    assert parse_override("data.train=a/b") == ("data", "train", "a/b")
    with pytest.raises(ConfigError):
        parse_override("lr=0.5")


def test_training_threads_default_to_the_idle_cores(monkeypatch):
    """train.threads: 0 takes the cores idle over a short sample of the machine's CPU times."""
    from nmt import device

    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(device.os, "cpu_count", lambda: 2)

    def samples(*pairs):
        values = iter(pairs)
        return lambda: next(values)

    assert device.idle_cores(0, samples((0.0, 0.0), (190.0, 200.0))) == 2  # 95% idle: both cores
    assert device.idle_cores(0, samples((0.0, 0.0), (100.0, 200.0))) == 1  # one core busy elsewhere
    assert device.idle_cores(0, samples((0.0, 0.0), (2.0, 200.0))) == 1  # both busy: still one thread
    assert device.idle_cores(0, lambda: None) == 2  # no /proc/stat: every core
    assert device.read_cpu_times() is None or device.read_cpu_times()[1] > 0
