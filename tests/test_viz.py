"""Pictures: grids, loss curves, figures that display themselves in Jupyter."""

from __future__ import annotations

import pytest
import torch

from toonlab import viz


def test_image_rows_show_as_png_and_check_shapes(tmp_path):
    fig = viz.image_rows({"photo": torch.zeros(3, 3, 8, 8), "generated": torch.ones(3, 3, 8, 8)}, title="t")
    assert len(fig.axes) == 6
    assert fig._repr_png_().startswith(b"\x89PNG")
    assert viz.save_figure(fig, tmp_path / "a" / "grid.png").stat().st_size > 100
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        viz.to_numpy_image(torch.zeros(2, 3, 8, 8))
    image = viz.to_numpy_image(torch.tensor([-1.0, 0.0, 2.0]).view(3, 1, 1))
    assert image.reshape(-1).tolist() == [0.0, 0.5, 1.0]


def test_loss_curves_plot_every_loss_and_smooth():
    history = [{"step": i + 1, "G": float(i), "D": 1.0, "lr": 0.1, "seconds": 0.0} for i in range(10)]
    fig = viz.loss_curves(history, smooth=3)
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["G", "D"]
    assert len(fig.axes[0].lines[0].get_xdata()) == 8
    assert viz.comparison_rows(torch.zeros(1), torch.zeros(1), torch.zeros(1)).keys() == {"photo", "generated", "true cartoon"}
