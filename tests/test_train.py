"""The training loop on a tiny stand-in model: resume equality, atomic checkpoints, NaN, errors."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from toonlab.data.loader import UnpairedImages, UnpairedSampler
from toonlab.hub import CheckpointError
from toonlab.models.base import Precision, TranslationModel
from toonlab.train import (
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    atomic_save,
    capture_rng_state,
    read_checkpoint,
    restore_rng_state,
)


class NoiseImages(UnpairedImages):
    """Random but seed-determined 8x8 images; image i of each domain is fixed."""

    def __init__(self, len_a=7, len_b=5):
        self.len_a, self.len_b = len_a, len_b

    def image_a(self, index):
        return torch.Generator().manual_seed(index)

    def image_b(self, index):
        return torch.Generator().manual_seed(1000 + index)

    def transform(self, generator, seed):
        flip = torch.Generator().manual_seed(seed)
        img = torch.rand(3, 8, 8, generator=generator) * 2 - 1
        return img.flip(-1) if torch.rand(1, generator=flip).item() < 0.5 else img


@dataclasses.dataclass
class TinyConfig:
    image_size: int = 8
    batch_size: int = 2
    lr: float = 0.05
    weight: float = 1.0
    width: int = 4


class TinyModel(TranslationModel):
    """Uses the global RNG (noise) and a pool-like extra state, like the real models."""

    kind = "tiny"
    hparam_names = ("lr", "weight")

    def __init__(self, config: TinyConfig):
        super().__init__(config)
        self.net = nn.Sequential(nn.Conv2d(3, config.width, 3, padding=1), nn.ReLU(), nn.Conv2d(config.width, 3, 1))
        self.optimizers = {"G": torch.optim.Adam(self.net.parameters(), lr=config.lr)}
        self.memory: list[torch.Tensor] = []
        self.nan_at: int | None = None

    def lr_factor(self, step):
        return 1.0 / (1 + step // self.steps_per_epoch)

    def train_step(self, batch, precision: Precision, step):
        noise = 0.1 * torch.randn_like(batch["A"])
        with precision.autocast():
            out = self.net(batch["A"] + noise)
            loss = self.config.weight * (out - batch["B"]).abs().mean()
        if self.memory:
            loss = loss + 0.01 * self.memory[-1].mean()
        self.memory = (self.memory + [out.detach().mean(0)])[-3:]
        precision.step(loss, self.optimizers["G"])
        value = float(loss.detach())
        if self.nan_at is not None and step >= self.nan_at:
            value = math.nan
        return {"loss": value}

    def translate(self, x, direction="AtoB"):
        return torch.tanh(self.net(x))

    def extra_state(self):
        return {"memory": list(self.memory)}

    def load_extra_state(self, state):
        self.memory = list(state["memory"])


def make(tmp_path=None, **kw):
    torch.manual_seed(0)
    model = TinyModel(TinyConfig(**kw))
    return Trainer(model, NoiseImages(), device="cpu", run_dir=tmp_path, progress=False)


def test_sampler_is_a_function_of_the_step():
    full = UnpairedSampler(7, 5, batch_size=2, seed=3)
    keys = [k for _, k in zip(range(40), iter(full))]
    resumed = UnpairedSampler(7, 5, batch_size=2, seed=3, start_step=9)
    assert [k for _, k in zip(range(22), iter(resumed))] == keys[18:]
    epoch0 = [k[0] for k in keys[:6]]  # an epoch is max(7, 5) -> 3 steps of 2 = 6 samples
    assert len(set(epoch0)) == 6
    assert UnpairedSampler(7, 5, 2, seed=4).key(0) != full.key(0) or UnpairedSampler(7, 5, 2, seed=4).key(1) != full.key(1)


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path):
    straight = make()
    straight.fit(9)
    expected = [h["loss"] for h in straight.history]

    first = make(tmp_path / "run")
    first.fit(4)
    # unrelated random draws between sessions must not matter
    torch.rand(100), np.random.rand(5)
    second = make(tmp_path / "other", lr=0.05)  # fresh weights, same config
    second.load_checkpoint(tmp_path / "run")
    assert second.step == 4
    second.fit(5)
    assert [h["loss"] for h in second.history] == expected
    for a, b in zip(straight.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_holds_everything_and_loads_weights_only(tmp_path):
    trainer = make(tmp_path)
    trainer.fit(3)
    path = tmp_path / "checkpoints" / "latest.pt"
    state = torch.load(path, weights_only=True)
    assert state["step"] == 3 and state["kind"] == "tiny"
    assert set(state) >= {"model", "optimizers", "extra", "rng", "history", "config", "precision"}
    assert len(state["extra"]["memory"]) == 3
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["kind"] == "tiny" and config["config"]["lr"] == 0.05
    assert len(json.loads((tmp_path / "history.json").read_text())) == 3


def test_learning_rate_comes_from_config_and_schedule(tmp_path):
    trainer = make()
    trainer.fit(1)
    assert trainer.history[-1]["lr"] == pytest.approx(0.05)
    trainer.set_hparams(lr=0.01, weight=2.0)
    assert trainer.hparams == {"lr": 0.01, "weight": 2.0}
    trainer.fit(3)  # steps_per_epoch = 3: step 3 starts epoch 1, factor 1/2
    assert trainer.history[-1]["lr"] == pytest.approx(0.005)
    with pytest.raises(ValueError, match="not a tunable"):
        trainer.set_hparams(width=3)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    trainer = make(tmp_path)
    trainer.checkpoint_every = 2
    trainer.model.nan_at = 3
    with pytest.raises(TrainingDiverged, match=r"step 3.*loss=nan.*latest.pt"):
        trainer.fit(6)
    assert read_checkpoint(tmp_path)["step"] == 2


def test_interrupt_saves_a_checkpoint_of_a_finished_step(tmp_path):
    trainer = make(tmp_path)

    def interrupt(t, entry):
        if t.step == 2:
            raise KeyboardInterrupt

    trainer.callbacks.append(interrupt)
    with pytest.raises(TrainingInterrupted, match="step 2"):
        trainer.fit(5)
    assert read_checkpoint(tmp_path)["step"] == 2


def test_wrong_kind_or_config_is_refused(tmp_path):
    trainer = make(tmp_path)
    trainer.fit(1)
    other = make(width=8)
    with pytest.raises(CheckpointError, match="width: checkpoint 4 vs this run 8"):
        other.load_checkpoint(tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)
    state["kind"] = "cyclegan"
    torch.save(state, tmp_path / "cg.pt")
    with pytest.raises(CheckpointError, match="holds a cyclegan checkpoint"):
        make().load_checkpoint(tmp_path / "cg.pt")
    torch.save({"model.1.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a toonlab training checkpoint"):
        make().load_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        make().load_checkpoint(tmp_path / "empty")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    torch.save({"format": "toonlab-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        read_checkpoint(tmp_path / "evil.pt")


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save({"a": torch.ones(2)}, path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"a": Unsaveable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_rng_state_roundtrip():
    state = capture_rng_state()
    a = (torch.rand(3), np.random.rand(3), __import__("random").random())
    restore_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_fit_arguments_are_checked():
    trainer = make()
    with pytest.raises(ValueError, match="exactly one"):
        trainer.fit()
    trainer.fit(epochs=1)
    assert trainer.step == 3


def test_precision_rejects_fp16_on_cpu():
    with pytest.raises(ValueError, match="fp16 mixed precision needs a CUDA"):
        Precision("fp16", "cpu")
    assert Precision("auto", "cpu").mode == "fp32"
    with pytest.raises(ValueError, match="unknown precision"):
        Precision("fp8")


def test_the_model_contract_defaults_the_loop_relies_on():
    """What the loop and the CLI ask of every model, declared in toonlab.models.base (no getattr probing)."""
    from toonlab.train import prepare_dataset_for

    model = TinyModel(TinyConfig(batch_size=3))
    data = object()
    assert model.batch_size == 3 and model.wrap_dataset(data) is data is model.unwrap_dataset(data) and prepare_dataset_for(model, data) is data
    assert model.multimodal is False and model.notes() == []
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    with pytest.raises(ValueError, match="draws no styles"):
        model.translations(x, num_styles=2)
    model.set_learning_rates(step=0)
    assert model.optimizers["G"].param_groups[0]["lr"] == pytest.approx(model.base_lr("G") * model.lr_factor(0))
