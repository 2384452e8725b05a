"""Slider panels that drive :class:`toonlab.train.Trainer` (notebooks 01-04, "Interactive lab").

:class:`TrainPanel` shows a log-scale learning-rate slider, one slider per loss weight, a
"train N steps" button, live samples of the fixed test photos and the loss curves. Slider values are
read when the button is clicked (or :meth:`TrainPanel.apply_sliders` is called) and written into the
trainer's hyper-parameters, so the next steps use them. Every callback runs inside
``self.out.capture()`` so errors appear in the panel.

The status line always shows the hyper-parameters in force: it is redrawn after every change, by the
panel or by ``trainer.set_hparams`` (the sliders of the changed values follow), and a slider moved but
not applied yet is listed as pending. Each value readout is wide enough for the longest value its
slider can show, in a format that shows the whole value (``2.00e-4``, ``15.0``).
"""

from __future__ import annotations

import dataclasses
import functools
import html
import itertools
import math
import weakref
from typing import Any, Callable, Sequence

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
        Control("flatness prior", ("lambda_flat",), 0.0, 30.0, 1.0),
    ],
    "cartoongan": [
        Control("content weight", ("content_weight",), 0.0, 20.0, 0.5),
        Control("init steps", ("init_steps",), 0, 500, 10, integer=True),
        Control("flatness prior", ("lambda_flat",), 0.0, 30.0, 1.0),
    ],
    "munit": [
        Control("image recon", ("recon_x_w",), 0.0, 20.0, 0.5),
        Control("style recon", ("recon_s_w",), 0.0, 5.0, 0.1),
        Control("content recon", ("recon_c_w",), 0.0, 5.0, 0.1),
        Control("cycle recon", ("recon_x_cyc_w",), 0.0, 20.0, 0.5),
    ],
    "xgan": [
        Control("reconstruction", ("rec_w",), 0.0, 20.0, 0.5),
        Control("domain-adversarial", ("dann_w",), 0.0, 2.0, 0.05),
        Control("semantic", ("sem_w",), 0.0, 5.0, 0.1),
        Control("GAN", ("gan_w",), 0.0, 5.0, 0.1),
    ],
}
LR_CONTROL = Control("learning rate", ("lr",), -6.0, -2.0, 0.1, log=True)

#: widths of a slider row, in pixels: the label, the track, and per readout character (13 px digits
#: are about 7.2 px wide) plus the readout box's padding; the readout is never narrower than ipywidgets' own
DESCRIPTION_PX = 150
TRACK_PX = 200
READOUT_CHAR_PX = 8
READOUT_PAD_PX = 16
READOUT_MIN_PX = 72
_ROW_MARGINS_PX = 8 + 16 + 4 + 4  # label margin, the track's handle margins, the readout's margin, spare
_panel_ids = itertools.count()


def format_value(value: Any) -> str:
    """A hyper-parameter as the status line shows it (floats to 6 significant digits: ``0.0002``, ``10``)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_hparams(hparams: dict[str, Any]) -> str:
    """``name=value, ...`` in the trainer's order, as the status line shows the values in force."""
    return ", ".join(f"{name}={format_value(value)}" for name, value in hparams.items())


def _decimals(*numbers: float, most: int = 4) -> int:
    """The fewest decimals (up to ``most``) that write every number exactly."""
    for places in range(most + 1):
        if all(abs(round(x, places) - x) <= 1e-9 * max(1.0, abs(x)) for x in numbers):
            return places
    return most


def readout_format(control: Control, value: float) -> str:
    """A readout format that shows ``value`` and every step of the slider whole.

    Log sliders: scientific with at least 2 decimals (``2.00e-4``; ``.1e`` cut 2.5e-4 short);
    float sliders: as many decimals as the step (``15.0`` for a 0.5 step, ``0.05``); integers: ``d``.
    """
    if control.integer:
        return "d"
    if control.log:
        mantissa = value / 10 ** math.floor(math.log10(value)) if value > 0 else 1.0
        return f".{max(2, _decimals(mantissa))}e"
    return f".{max(1, _decimals(control.step, value))}f"


def _readout_texts(slider) -> list[str]:
    """The longest texts the slider's readout can show (Python's formatting: an upper bound of the browser's)."""
    fmt = slider.readout_format
    if isinstance(slider, widgets.FloatLogSlider):
        numbers = [slider.base ** slider.min, slider.base ** slider.max, slider.value]
    else:
        numbers = [slider.min, slider.max, slider.value]
    return [format(int(x) if fmt == "d" else float(x), fmt) for x in numbers]


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
            common = dict(description=control.label, continuous_update=False,
                          readout_format=readout_format(control, value))
            if control.log:
                exponent = math.log10(value) if value > 0 else control.low
                control = dataclasses.replace(control, low=min(control.low, math.floor(exponent)),
                                              high=max(control.high, math.ceil(exponent)))
                slider = widgets.FloatLogSlider(value=value, base=10, min=control.low, max=control.high,
                                                step=control.step, **common)
            elif control.integer:
                slider = widgets.IntSlider(value=int(value), min=int(control.low), max=int(control.high),
                                           step=int(control.step), **common)
            else:
                slider = widgets.FloatSlider(value=float(value), min=control.low, max=control.high,
                                             step=control.step, **common)
            slider.observe(self._on_slider_change, names="value")
            self.sliders[control.label] = slider
            widened.append(control)
        self.controls = widened
        self.steps = widgets.IntSlider(value=steps_per_click, min=1, max=max_steps_per_click,
                                       description="steps per click", continuous_update=False)
        #: the readouts' width: the longest text any slider of this panel can show
        chars = max(len(text) for slider in [*self.sliders.values(), self.steps] for text in _readout_texts(slider))
        self.readout_px = max(READOUT_MIN_PX, READOUT_CHAR_PX * chars + READOUT_PAD_PX)
        #: a slider row's width; rows never shrink below it (a squeezed row cut the readouts off)
        self.row_px = DESCRIPTION_PX + TRACK_PX + self.readout_px + _ROW_MARGINS_PX
        for slider in [*self.sliders.values(), self.steps]:
            slider.style = {"description_width": f"{DESCRIPTION_PX}px"}
            slider.layout = widgets.Layout(width=f"{self.row_px}px", min_width=f"{self.row_px}px", flex="0 0 auto")
        # ipywidgets gives a readout no width of its own (72-148 px, shrinking with its row): a rule
        # for this panel's readouts only
        self.css_class = f"toonlab-panel-{next(_panel_ids)}"
        readout = f".{self.css_class} .widget-readout, .{self.css_class} .jupyter-widget-readout"
        self.stylesheet = widgets.HTML(
            f"<style>{readout} {{ min-width: {self.readout_px}px; width: {self.readout_px}px; "
            f"flex: 0 0 {self.readout_px}px; overflow: visible; }}</style>",
            layout=widgets.Layout(display="none"))  # a <style> applies from a hidden element too, taking no room
        self.train_button = widgets.Button(description=f"Train {steps_per_click} steps", button_style="primary",
                                           icon="play")
        self.steps.observe(self._on_steps_change, names="value")
        self.status = widgets.HTML()
        self.metrics = widgets.HTML()
        self.samples_image = widgets.Image(format="png")
        self.loss_image = widgets.Image(format="png", layout=widgets.Layout(min_width="0", flex="0 1 auto"))
        self.out = widgets.Output()
        self.train_button.on_click(self._on_click)
        controls_box = widgets.VBox(list(self.sliders.values()) + [self.steps, self.train_button, self.status,
                                                                  self.metrics],
                                    layout=widgets.Layout(min_width=f"{self.row_px + 8}px", flex="0 0 auto"))
        self.widget = widgets.VBox([
            self.stylesheet,
            widgets.HBox([controls_box, self.loss_image]),
            self.samples_image,
            self.out,
        ])
        self.widget.add_class(self.css_class)
        _on_set_hparams(trainer, self._on_hparams_set)
        self._update_status()

    # -- callbacks ----------------------------------------------------------------------------
    def _on_steps_change(self, change) -> None:
        self.train_button.description = f"Train {change['new']} steps"

    def _on_slider_change(self, _change=None) -> None:
        self._update_status()  # the moved value is pending until the next click

    def slider_values(self) -> dict[str, float]:
        """The hyper-parameters the sliders show (what the next click or :meth:`apply_sliders` sets)."""
        values = {}
        for control in self.controls:
            value = self.sliders[control.label].value
            for name in control.names:
                values[name] = int(value) if control.integer else float(value)
        return values

    def pending(self) -> dict[str, float]:
        """The slider values that differ from the hyper-parameters in force (not applied yet)."""
        hparams = self.trainer.hparams
        return {name: value for name, value in self.slider_values().items() if not _same(hparams.get(name), value)}

    def apply_sliders(self) -> dict[str, float]:
        """Write the slider values into the trainer's hyper-parameters; returns what was set.

        The status line is redrawn (by the trainer's ``set_hparams``), so it shows the values now in force.
        """
        values = self.slider_values()
        self.trainer.set_hparams(**values)
        self._update_status()
        return values

    def _on_hparams_set(self, names: Sequence[str]) -> None:
        """``trainer.set_hparams`` changed ``names``: their sliders follow, the status line is redrawn."""
        hparams = self.trainer.hparams
        for control in self.controls:
            if any(name in names for name in control.names):
                self._show_on_slider(control, hparams[control.names[0]])
        self._update_status()

    def _show_on_slider(self, control: Control, value) -> None:
        slider = self.sliders[control.label]
        if isinstance(slider, widgets.FloatLogSlider):
            if value > 0:
                exponent = math.log10(value)
                slider.min, slider.max = min(slider.min, math.floor(exponent)), max(slider.max, math.ceil(exponent))
        else:
            slider.min, slider.max = min(slider.min, value), max(slider.max, value)
        if not _same(slider.value, value):
            slider.value = value

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
        """Step, epoch, the hyper-parameters in force and the slider values not applied yet."""
        trainer = self.trainer
        text = (f"<b>step {trainer.step}</b> (epoch {trainer.epoch:.2f})<br>"
                f"<small>in force: {html.escape(format_hparams(trainer.hparams))}</small>")
        pending = self.pending()
        if pending:
            changes = ", ".join(f"{name} {format_value(trainer.hparams.get(name))} → {format_value(value)}"
                                for name, value in pending.items())
            text += (f"<br><small><b>pending</b> (applied at the next click): {html.escape(changes)}</small>")
        self.status.value = text

    def update_metrics(self) -> dict[str, float] | None:
        """Score the current model on :attr:`protocol` and show the headline numbers beside the photo's."""
        if self.protocol is None:
            return None
        from toonlab.metrics.report import PHOTO, baseline_scores, headline, score_model

        self.scores = score_model(self.trainer.model, self.protocol, self.direction, seed=self.trainer.seed,
                                  device=self.trainer.device)
        photo = baseline_scores(self.protocol)[PHOTO]
        self.metrics.value = (f"<small>{self.protocol.n} test portraits: "
                              f"{headline(self.scores, photo)}</small>")
        return self.scores

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _on_set_hparams(trainer, callback: Callable[[Sequence[str]], None]) -> None:
    """Call ``callback(names)`` after every ``trainer.set_hparams(**values)`` (also one that raised).

    The trainer's method is wrapped once per trainer; panels are held weakly, so a panel that is gone
    is dropped rather than kept alive by its trainer.
    """
    watchers = trainer.__dict__.get("_toonlab_hparam_watchers")
    if watchers is None:
        watchers = trainer._toonlab_hparam_watchers = []
        original = trainer.set_hparams

        @functools.wraps(original)
        def set_hparams(**values):
            try:
                return original(**values)
            finally:
                for ref in list(watchers):
                    method = ref()
                    if method is None:
                        watchers.remove(ref)
                    else:
                        method(tuple(values))

        trainer.set_hparams = set_hparams
    watchers.append(weakref.WeakMethod(callback))


def _panel_protocol(trainer):
    """32 synthetic test portraits at the model's size when the trainer learns from synthetic portraits, else None."""
    from toonlab.data.synthetic import SyntheticPortraits
    from toonlab.metrics.synthetic import Protocol

    dataset = trainer.model.unwrap_dataset(trainer.dataset)
    if not isinstance(dataset, SyntheticPortraits):
        return None
    return Protocol(size=int(trainer.model.config.image_size), n=32, seed=dataset.seed)
