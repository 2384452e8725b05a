"""Pictures: image grids, loss curves, photo/cartoon comparisons (used by notebooks, widgets, CLI).

Everything here works on tensors in [-1, 1] (the generators' contract) or on a training history
(a list of dicts from :attr:`toonlab.train.Trainer.history`). Figures are built with
``matplotlib.figure.Figure`` (no global pyplot state), so they render the same in notebooks,
widgets and headless scripts.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure


class ToonFigure(Figure):
    """A matplotlib figure that shows itself as a PNG in Jupyter, with or without pyplot loaded."""

    def _repr_png_(self) -> bytes:
        return figure_png(self, dpi=90)


def new_figure(figsize: tuple[float, float] = (6, 4)) -> ToonFigure:
    """An empty figure for notebooks and scripts (``fig.subplots(...)`` adds axes)."""
    return ToonFigure(figsize=figsize)


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor in [-1, 1] -> (H, W, 3) float array in [0, 1]."""
    image = image.detach().float().cpu()
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected one image of shape (3, H, W), got {tuple(image.shape)}")
    return ((image.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def image_rows(rows: Mapping[str, torch.Tensor], max_columns: int = 8, scale: float = 1.6,
               title: str | None = None) -> Figure:
    """A grid with one labelled row per entry of ``rows`` (e.g. photo / generated / true cartoon)."""
    if not rows:
        raise ValueError("give at least one row of images")
    n_cols = min(max_columns, min(len(v) for v in rows.values()))
    fig = new_figure((scale * n_cols + 1.2, scale * len(rows) + (0.4 if title else 0)))
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.imshow(to_numpy_image(images[c]))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def image_strip(images: Mapping[str, torch.Tensor], scale: float = 2.0, title: str | None = None) -> Figure:
    """One row of single images ``(3, H, W)`` in [-1, 1], each titled by its name (``toonlab cartoonize``'s sheet)."""
    if not images:
        raise ValueError("give at least one image")
    fig = new_figure((scale * len(images) + 0.4, scale + 0.5 + (0.3 if title else 0)))
    axes = fig.subplots(1, len(images), squeeze=False)[0]
    for ax, (name, image) in zip(axes, images.items()):
        ax.imshow(to_numpy_image(image))
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curves(history: Sequence[Mapping[str, float]], keys: Sequence[str] | None = None,
                smooth: int = 1, title: str | None = None) -> Figure:
    """Loss terms against the step; ``smooth`` > 1 applies a running mean over that many steps."""
    fig = new_figure((7, 3.2))
    ax = fig.subplots()
    if history:
        skip = {"step", "lr", "seconds"}
        keys = list(keys) if keys else [k for k in history[-1] if k not in skip]
        steps = np.array([h["step"] for h in history])
        for key in keys:
            values = np.array([h.get(key, np.nan) for h in history], dtype=float)
            if smooth > 1 and len(values) >= smooth:
                kernel = np.ones(smooth) / smooth
                values = np.convolve(values, kernel, mode="valid")
                ax.plot(steps[smooth - 1:], values, label=key)
            else:
                ax.plot(steps, values, label=key)
        ax.legend(fontsize=8, ncol=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """Render a figure to PNG bytes (for ``ipywidgets.Image`` and files)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Save a figure, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def comparison_rows(photos: torch.Tensor, generated: torch.Tensor,
                    truth: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The standard rows of a result picture: photo, generated cartoon, and the true cartoon if known."""
    rows = {"photo": photos, "generated": generated}
    if truth is not None:
        rows["true cartoon"] = truth
    return rows
