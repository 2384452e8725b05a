"""Slider panels that drive :class:`toonlab.train.Trainer` (notebooks 01-03, "Interactive lab").

:class:`TrainPanel` shows a log-scale learning-rate slider, one slider per loss weight, a
"train N steps" button, live samples of the fixed test photos and the loss curves. Slider values are
read when the button is clicked and written into the trainer's hyper-parameters, so the next steps
use them. Every callback runs inside ``self.out.capture()`` so errors appear in the panel.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import ipywidgets as widgets

from toonlab import viz


@dataclasses.dataclass
class Control:
    """One slider: its label, the hyper-parameters it sets (all to the same value) and its range."""

    label: str
    names: tuple[str, ...]
    low: float
    high: float
    step: float = 0.1
    log: bool = False
    integer: bool = False


#: the sliders each model gets by default
CONTROLS: dict[str, list[Control]] = {
    "cyclegan": [
        Control("cycle λ (A and B)", ("lambda_a", "lambda_b"), 0.0, 20.0, 0.5),
        Control("identity (× cycle λ)", ("lambda_identity",), 0.0, 1.0, 0.05),
    ],
    "cartoongan": [
        Control("content weight", ("content_weight",), 0.0, 20.0, 0.5),
        Control("init steps", ("init_steps",), 0, 500, 10, integer=True),
    ],
    "munit": [
        Control("image recon", ("recon_x_w",), 0.0, 20.0, 0.5),
        Control("style recon", ("recon_s_w",), 0.0, 5.0, 0.1),
        Control("content recon", ("recon_c_w",), 0.0, 5.0, 0.1),
        Control("cycle recon", ("recon_x_cyc_w",), 0.0, 20.0, 0.5),
    ],
}
LR_CONTROL = Control("learning rate", ("lr",), -6.0, -2.0, 0.1, log=True)


class TrainPanel:
    """Sliders + "Train N steps" button + live samples and loss curves for one trainer."""

    def __init__(self, trainer, controls: Sequence[Control] | None = None, steps_per_click: int = 20,
                 refresh_every: int = 5, direction: str = "AtoB", max_steps_per_click: int = 500,
                 protocol="auto"):
        self.trainer = trainer
        self.direction = direction
        #: the test protocol scored after every click (``"auto"``: 32 synthetic portraits at the model's
        #: size when the trainer learns from synthetic portraits; ``None``: no metrics)
        self.protocol = _panel_protocol(trainer) if protocol == "auto" else protocol
        self.scores: dict[str, float] | None = None
        self.refresh_every = max(1, int(refresh_every))
        hparams = trainer.hparams
        controls = list(controls) if controls is not None else [LR_CONTROL] + CONTROLS.get(trainer.model.kind, [])
        self.controls = [c for c in controls if all(n in hparams for n in c.names)]
        self.sliders: dict[str, widgets.Widget] = {}
        widened: list[Control] = []
        for control in self.controls:
            value = hparams[control.names[0]]
            if not control.log and not control.low <= value <= control.high:
                # a slider would silently clamp the value and write it back on the next click
                control = dataclasses.replace(control, low=min(control.low, value), high=max(control.high, value))
            style = {"description_width": "150px"}
            layout = widgets.Layout(width="430px")
            if control.log:
                exponent = math.log10(value) if value > 0 else control.low
                control = dataclasses.replace(control, low=min(control.low, math.floor(exponent)),
                                              high=max(control.high, math.ceil(exponent)))
                slider = widgets.FloatLogSlider(value=value, base=10, min=control.low, max=control.high,
                                                step=control.step, description=control.label,
                                                continuous_update=False, readout_format=".1e", style=style,
                                                layout=layout)
            elif control.integer:
                slider = widgets.IntSlider(value=int(value), min=int(control.low), max=int(control.high),
                                           step=int(control.step), description=control.label,
                                           continuous_update=False, style=style, layout=layout)
            else:
                slider = widgets.FloatSlider(value=float(value), min=control.low, max=control.high,
                                             step=control.step, description=control.label,
                                             continuous_update=False, style=style, layout=layout)
            self.sliders[control.label] = slider
            widened.append(control)
        self.controls = widened
        self.steps = widgets.IntSlider(value=steps_per_click, min=1, max=max_steps_per_click,
                                       description="steps per click", continuous_update=False,
                                       style={"description_width": "150px"}, layout=widgets.Layout(width="430px"))
        self.train_button = widgets.Button(description=f"Train {steps_per_click} steps", button_style="primary",
                                           icon="play")
        self.steps.observe(self._on_steps_change, names="value")
        self.status = widgets.HTML()
        self.metrics = widgets.HTML()
        self.samples_image = widgets.Image(format="png")
        self.loss_image = widgets.Image(format="png")
        self.out = widgets.Output()
        self.train_button.on_click(self._on_click)
        self.widget = widgets.VBox([
            widgets.HBox([widgets.VBox(list(self.sliders.values()) + [self.steps, self.train_button, self.status,
                                                                     self.metrics]),
                          self.loss_image]),
            self.samples_image,
            self.out,
        ])
        self._update_status()

    # -- callbacks ----------------------------------------------------------------------------
    def _on_steps_change(self, change) -> None:
        self.train_button.description = f"Train {change['new']} steps"

    def apply_sliders(self) -> dict[str, float]:
        """Write the slider values into the trainer's hyper-parameters; returns what was set."""
        values = {}
        for control in self.controls:
            value = self.sliders[control.label].value
            for name in control.names:
                values[name] = int(value) if control.integer else float(value)
        self.trainer.set_hparams(**values)
        return values

    def _on_click(self, _button=None) -> None:
        with self.out:
            self.train_button.disabled = True
            try:
                self.apply_sliders()
                self.trainer.callbacks.append(self._live_update)
                try:
                    self.trainer.fit(self.steps.value)
                finally:
                    self.trainer.callbacks.remove(self._live_update)
                self.refresh()
                self.update_metrics()
            finally:
                self.train_button.disabled = False

    def _live_update(self, trainer, entry) -> None:
        if trainer.step % self.refresh_every == 0:
            self.refresh()

    # -- display ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw the samples, the loss curves and the status line."""
        trainer = self.trainer
        if trainer.sample_images is not None:
            fig = viz.image_rows({"photo": trainer.sample_images, "generated": trainer.translate_samples(self.direction)},
                                 scale=1.2, title=f"step {trainer.step}")
            self.samples_image.value = viz.figure_png(fig)
        if trainer.history:
            self.loss_image.value = viz.figure_png(viz.loss_curves(trainer.history, smooth=5 if len(trainer.history) > 20 else 1))
        self._update_status()

    def _update_status(self) -> None:
        hp = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.trainer.hparams.items())
        self.status.value = f"<b>step {self.trainer.step}</b> (epoch {self.trainer.epoch:.2f})<br><small>{hp}</small>"

    def update_metrics(self) -> dict[str, float] | None:
        """Score the current model on :attr:`protocol` and show the headline numbers beside the photo's."""
        if self.protocol is None:
            return None
        from toonlab.metrics.report import PHOTO, baseline_scores, headline
        from toonlab.metrics.synthetic import evaluate

        model = self.trainer.model
        was_training = model.training
        model.eval()
        try:
            self.scores = evaluate(model.translator(self.direction, seed=self.trainer.seed), self.protocol,
                                   device=self.trainer.device)
        finally:
            model.train(was_training)
        photo = baseline_scores(self.protocol)[PHOTO]
        self.metrics.value = (f"<small>{self.protocol.n} test portraits: "
                              f"{headline(self.scores, photo)}</small>")
        return self.scores

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def _panel_protocol(trainer):
    """32 synthetic test portraits at the model's size when the trainer learns from synthetic portraits, else None."""
    from toonlab.data.synthetic import SyntheticPortraits
    from toonlab.metrics.synthetic import Protocol

    dataset = getattr(trainer.dataset, "dataset", trainer.dataset)  # CartoonGAN wraps its data
    if not isinstance(dataset, SyntheticPortraits):
        return None
    return Protocol(size=int(trainer.model.config.image_size), n=32, seed=dataset.seed)
