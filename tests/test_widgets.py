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
    assert trainer.history[-1]["lr"] == pytest.approx(1e-3 * trainer.model.lr_factor(trainer.step - 1))
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


# --- what the panel says is what is in force (issue 13, item 8) -----------------------------------

def shown_hparams(panel) -> dict[str, str]:
    """The ``name=value`` pairs of the status line's hyper-parameter line (not its 'pending' line)."""
    import re

    line = next(part for part in panel.status.value.split("<br>") if "lr=" in part)
    return dict(re.findall(r"(\w+)=([^,<\s]+)", line))


def assert_status_matches(panel, trainer):
    shown = shown_hparams(panel)
    assert set(shown) == set(trainer.hparams)
    for name, value in trainer.hparams.items():
        if isinstance(value, float):
            assert float(shown[name]) == pytest.approx(value, rel=1e-5), (name, shown[name], value)
        else:
            assert shown[name] == str(value)
    assert f"step {trainer.step}" in panel.status.value


def test_status_shows_the_hparams_in_force_after_every_call(trainer):
    """Notebook 03: after apply_sliders() restored the preset values the status still showed the click's."""
    preset = dict(trainer.hparams)
    panel = TrainPanel(trainer, steps_per_click=1, protocol=None)
    try:
        assert_status_matches(panel, trainer)
        assert "pending" not in panel.status.value
        # a moved slider is not in force yet: the status says so, and keeps the values in force
        panel.sliders["cycle λ (A and B)"].value = 5.0
        panel.sliders["learning rate"].value = 1e-3
        assert_status_matches(panel, trainer)
        assert "pending" in panel.status.value and "lambda_a 10 → 5" in panel.status.value
        assert "lr 0.0002 → 0.001" in panel.status.value
        panel.train_button.click()  # the self-check click
        assert trainer.hparams["lambda_a"] == 5.0
        assert_status_matches(panel, trainer)
        assert "pending" not in panel.status.value
        # back to the preset values
        panel.sliders["cycle λ (A and B)"].value = preset["lambda_a"]
        panel.sliders["learning rate"].value = preset["lr"]
        panel.apply_sliders()
        assert trainer.hparams == preset
        assert_status_matches(panel, trainer)
        assert "pending" not in panel.status.value and "lambda_a=10," in panel.status.value
        # set_hparams from a notebook cell: the status is redrawn and the slider follows
        trainer.set_hparams(lambda_a=3.0, lambda_b=3.0, lambda_identity=0.25)
        assert_status_matches(panel, trainer)
        assert panel.sliders["cycle λ (A and B)"].value == 3.0
        assert panel.sliders["identity (× cycle λ)"].value == 0.25
        assert "pending" not in panel.status.value
        # a value beyond a slider's range widens it instead of being clamped back at the next click
        trainer.set_hparams(lambda_a=40.0, lambda_b=40.0, lr=5e-8)
        assert panel.sliders["cycle λ (A and B)"].value == 40.0
        assert panel.sliders["learning rate"].value == pytest.approx(5e-8)
        assert panel.pending() == {} and "pending" not in panel.status.value
        # a refused change changes nothing and the status still matches
        with pytest.raises(ValueError):
            trainer.set_hparams(lr=float("nan"))
        assert_status_matches(panel, trainer)
    finally:
        trainer.set_hparams(**preset)
    assert_status_matches(panel, trainer)


def test_two_panels_on_one_trainer_both_follow(trainer):
    preset = dict(trainer.hparams)
    first, second = TrainPanel(trainer, protocol=None), TrainPanel(trainer, protocol=None)
    try:
        first.sliders["identity (× cycle λ)"].value = 0.75
        first.apply_sliders()
        for panel in (first, second):
            assert_status_matches(panel, trainer)
        assert second.sliders["identity (× cycle λ)"].value == 0.75
    finally:
        trainer.set_hparams(**preset)


def test_readouts_show_whole_values_and_have_room_for_them(trainer):
    """In a browser every readout was cut off: `2.0e` for 2.0e-4, `15.0` for 15.00."""
    preset = dict(trainer.hparams)
    try:
        trainer.set_hparams(lr=2.5e-4)
        panel = TrainPanel(trainer, protocol=None)
        lr = panel.sliders["learning rate"]
        assert format(lr.value, lr.readout_format) == "2.50e-04"  # Python's; the browser writes 2.50e-4
        assert panel.sliders["cycle λ (A and B)"].readout_format == ".1f"  # 15.0, 15.5 (step 0.5)
        assert panel.sliders["identity (× cycle λ)"].readout_format == ".2f"  # step 0.05

        from toonlab.widgets import READOUT_CHAR_PX, READOUT_PAD_PX, _readout_texts

        for slider in [*panel.sliders.values(), panel.steps]:
            texts = _readout_texts(slider)
            for text in texts:  # the value, the ends of the range: whole, and inside the readout box
                assert len(text) * READOUT_CHAR_PX + READOUT_PAD_PX <= panel.readout_px
            if slider.readout_format != "d":
                assert float(format(slider.value, slider.readout_format)) == pytest.approx(slider.value, rel=1e-12)
            for step_value in (slider.min, slider.min + slider.step) if not slider.readout_format.endswith("e") else ():
                assert float(format(step_value, slider.readout_format)) == pytest.approx(step_value)
            assert slider.style.description_width == "150px"
            assert slider.layout.width == slider.layout.min_width == f"{panel.row_px}px"  # rows never shrink
        assert f"min-width: {panel.readout_px}px" in panel.stylesheet.value
        assert f".{panel.css_class} .widget-readout" in panel.stylesheet.value
        assert panel.css_class in panel.widget._dom_classes and panel.stylesheet in panel.widget.children
        assert panel.metrics in panel.widget.children[1].children[0].children  # the metrics line stays
    finally:
        trainer.set_hparams(**preset)
