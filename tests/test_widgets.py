"""Widget callbacks drive the trainer: set the sliders, click, and the trainer changed."""

from __future__ import annotations

import pytest

from toonlab.train import make_trainer
from toonlab.widgets import LR_CONTROL, Control, TrainPanel


@pytest.fixture(scope="module")
def trainer():
    return make_trainer("cyclegan", "fast", progress=False, n_samples=2)


def test_sliders_start_at_the_trainer_values(trainer):
    panel = TrainPanel(trainer)
    assert panel.sliders["learning rate"].value == pytest.approx(trainer.hparams["lr"])
    assert panel.sliders["cycle λ (A and B)"].value == pytest.approx(trainer.hparams["lambda_a"])
    assert panel.sliders["identity (× cycle λ)"].value == pytest.approx(trainer.hparams["lambda_identity"])


def test_click_applies_sliders_and_trains(trainer):
    panel = TrainPanel(trainer, steps_per_click=3, refresh_every=2)
    start = trainer.step
    panel.sliders["learning rate"].value = 1e-3
    panel.sliders["cycle λ (A and B)"].value = 4.5
    panel.sliders["identity (× cycle λ)"].value = 0.0
    panel.steps.value = 4
    assert panel.train_button.description == "Train 4 steps"
    panel.train_button.click()
    assert trainer.step == start + 4
    assert trainer.hparams["lr"] == pytest.approx(1e-3)
    assert trainer.hparams["lambda_a"] == trainer.hparams["lambda_b"] == pytest.approx(4.5)
    assert trainer.hparams["lambda_identity"] == 0.0
    assert trainer.history[-1]["lr"] == pytest.approx(1e-3 * trainer.model.lr_factor(trainer.step - 1, trainer.steps_per_epoch))
    assert "idt_A" not in trainer.history[-1] or trainer.history[-1]["idt_A"] == 0.0
    assert bytes(panel.samples_image.value).startswith(b"\x89PNG")
    assert bytes(panel.loss_image.value).startswith(b"\x89PNG")
    assert f"step {trainer.step}" in panel.status.value
    assert panel._live_update not in trainer.callbacks
    assert panel.scores is not None and 0.0 < panel.scores["l1_person"] < 1.0  # the click moved a number
    assert "L1 person" in panel.metrics.value and "(photo " in panel.metrics.value
    assert not panel.train_button.disabled


def test_controls_for_unknown_hparams_are_dropped(trainer):
    panel = TrainPanel(trainer, controls=[LR_CONTROL, Control("nope", ("not_a_field",), 0, 1)])
    assert list(panel.sliders) == ["learning rate"]


def test_slider_ranges_widen_to_hold_the_current_value(trainer):
    trainer.set_hparams(lambda_a=30.0, lambda_b=30.0, lr=5e-8)
    try:
        panel = TrainPanel(trainer)
        assert panel.sliders["cycle λ (A and B)"].value == 30.0
        assert panel.sliders["learning rate"].value == pytest.approx(5e-8)
        assert panel.apply_sliders()["lambda_a"] == 30.0
    finally:
        trainer.set_hparams(lambda_a=10.0, lambda_b=10.0, lr=2e-4)
