"""Stopped-and-resumed runs of the real models give the same losses as uninterrupted runs (CPU)."""

from __future__ import annotations

import pytest
import torch

from toonlab.train import Trainer, make_trainer


@pytest.mark.parametrize("kind,steps,stop,legacy", [("cyclegan", 6, 3, False), ("munit", 4, 2, False),
                                                    ("cartoongan", 6, 3, False), ("munit", 4, 2, True),
                                                    ("xgan", 4, 2, False), ("xgan", 4, 2, True)])
def test_resume_equals_uninterrupted(kind, steps, stop, legacy, tmp_path):
    # crosses the init/adversarial (CartoonGAN) and warm-up/adversarial (MUNIT, XGAN) boundaries
    overrides = {"init_steps": 2} if kind == "cartoongan" else {"warmup_steps": 1} if kind in ("munit", "xgan") else {}
    from toonlab.models import build_config

    def trainer(run_dir=None):
        return make_trainer(kind, config=build_config(kind, "fast", **overrides), seed=0, progress=False,
                            run_dir=run_dir, n_samples=2)

    straight = trainer()
    straight.fit(steps)

    first = trainer(tmp_path / "run")
    first.fit(stop)
    if legacy:  # a checkpoint of an older toonlab: MUNIT's optimisers were "gen" and "dis", and MUNIT's and
        # XGAN's loss keys ended in "_a"/"_b" ("recon_x_a"), where every model's end in "_A"/"_B" today
        path = tmp_path / "run" / "checkpoints" / "latest.pt"
        state = torch.load(path, weights_only=True)
        if kind == "munit":
            state["optimizers"] = {"gen": state["optimizers"]["G"], "dis": state["optimizers"]["D"]}
        lower = {k: k[:-1] + k[-1].lower() for k in state["history"][-1] if k.endswith(("_A", "_B"))}
        assert lower, "the history has domain-suffixed loss keys to rename"
        state["history"] = [{lower.get(k, k): v for k, v in h.items()} for h in state["history"]]
        torch.save(state, path)
    torch.rand(7)  # unrelated random draws between the two sessions must not matter
    resumed = Trainer.from_checkpoint(tmp_path / "run", straight.dataset, progress=False)
    assert resumed.step == stop
    resumed.fit(steps - stop)

    assert len(straight.history) == len(resumed.history) == steps
    for a, b in zip(straight.history, resumed.history):  # (the keys of a warm-up step differ from the others')
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name


def test_munit_progress_grids_use_the_same_styles_every_time():
    trainer = make_trainer("munit", "fast", progress=False, n_samples=2)
    first = trainer.translate_samples()
    assert torch.equal(first, trainer.translate_samples())
