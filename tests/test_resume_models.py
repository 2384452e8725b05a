"""Stopped-and-resumed runs of the real models give the same losses as uninterrupted runs (CPU)."""

from __future__ import annotations

import pytest
import torch

from toonlab.train import Trainer, make_trainer


@pytest.mark.parametrize("kind,steps,stop", [("cyclegan", 6, 3), ("munit", 4, 2), ("cartoongan", 6, 3)])
def test_resume_equals_uninterrupted(kind, steps, stop, tmp_path):
    overrides = {"init_steps": 2} if kind == "cartoongan" else {}  # crosses the init/adversarial boundary
    from toonlab.models import build_config

    def trainer(run_dir=None):
        return make_trainer(kind, config=build_config(kind, "fast", **overrides), seed=0, progress=False,
                            run_dir=run_dir, n_samples=2)

    straight = trainer()
    straight.fit(steps)

    first = trainer(tmp_path / "run")
    first.fit(stop)
    torch.rand(7)  # unrelated random draws between the two sessions must not matter
    resumed = Trainer.from_checkpoint(tmp_path / "run", straight.dataset, progress=False)
    assert resumed.step == stop
    resumed.fit(steps - stop)

    keys = [k for k in straight.history[0] if k not in ("seconds",)]
    for a, b in zip(straight.history, resumed.history):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name


def test_munit_progress_grids_use_the_same_styles_every_time():
    trainer = make_trainer("munit", "fast", progress=False, n_samples=2)
    first = trainer.translate_samples()
    assert torch.equal(first, trainer.translate_samples())
