"""CUDA-only checks of the training loop: AMP (bf16, fp16 + scaler), channels_last, checkpoints.

Skipped cleanly without a GPU (CI); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("kind", ["cyclegan", "cartoongan", "munit"])
@pytest.mark.parametrize("precision,channels_last", [("fp32", False), ("bf16", True), ("fp16", False), ("auto", True)])
def test_amp_training_steps_are_finite(kind, precision, channels_last, tmp_path):
    from toonlab.train import make_trainer

    trainer = make_trainer(kind, "fast", device="cuda", precision=precision, channels_last=channels_last,
                           progress=False, run_dir=tmp_path, n_samples=2)
    assert trainer.device.type == "cuda"
    trainer.fit(4)
    assert all(math.isfinite(v) for h in trainer.history for k, v in h.items())
    assert next(trainer.model.parameters()).is_cuda
    out = trainer.translate_samples()
    assert out.shape == trainer.sample_images.shape and out.is_cuda
    state = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True, map_location="cpu")
    if precision == "fp16":
        assert state["precision"]["scaler"], "fp16 runs must save the gradient scaler"


def test_cuda_checkpoint_resumes_on_cpu(tmp_path):
    from toonlab.train import Trainer, make_trainer

    trainer = make_trainer("cyclegan", "fast", device="cuda", progress=False, run_dir=tmp_path, n_samples=2)
    trainer.fit(2)
    resumed = Trainer.from_checkpoint(tmp_path, trainer.dataset, device="cpu", progress=False)
    assert resumed.step == 2
    resumed.fit(1)
    assert resumed.step == 3


def test_auto_device_picks_cuda():
    from toonlab.config import pick_device

    assert pick_device().type == "cuda"


@pytest.mark.parametrize("kind", ["cyclegan", "cartoongan", "munit", "xgan"])
def test_fast_path_on_cuda_trains_like_eager_fp32(kind, tmp_path):
    """--fast on CUDA (bf16, torch.compile, fused Adam, cuDNN autotuning, losses read every 10 steps) beside eager
    fp32 from the same weights: finite, losses within 5 % over the first steps; its checkpoint resumes eagerly."""
    from toonlab.train import Trainer, make_trainer

    steps = 12
    eager = make_trainer(kind, "fast", device="cuda", progress=False, n_samples=2)
    fast = make_trainer(kind, "fast", device="cuda", fast=True, progress=False, run_dir=tmp_path, n_samples=2)
    assert fast.compiled and fast.fused_adam and fast.read_losses_every > 1 and fast.precision.mode in ("bf16", "fp16")
    assert fast.channels_last == (kind in ("cyclegan", "cartoongan"))
    eager.fit(steps)
    fast.fit(steps)
    assert len(fast.history) == steps and all(math.isfinite(v) for h in fast.history for v in h.values())
    first = {k: v for k, v in fast.history[0].items() if k not in ("step", "lr", "seconds")}
    for key, value in first.items():  # the same weights and batch: only rounding differs at the first step
        assert value == pytest.approx(eager.history[0][key], rel=5e-2, abs=1e-3), key
    resumed = Trainer.from_checkpoint(tmp_path, fast.dataset, device="cuda", progress=False)
    assert resumed.step == steps and not resumed.compiled
    resumed.fit(1)
