"""What every learned model must beat: the photo itself, a classical filter, a published portrait model.

Shown beside every model by ``toonlab eval`` and notebook 05 (§"Baselines"):

* :func:`identity` — do nothing: the photo is its own "cartoon". A model that scores worse than
  this has made things worse.
* :func:`classical_cartoon` — a non-learned cartoonizer from OpenCV: edge-preserving smoothing
  (repeated bilateral filtering), colour quantisation (k-means in colour space) and dark edges
  (adaptive threshold of the blurred grey image). Tuned once on the synthetic protocol (notebook 05
  shows the sweep) so it is a fair competitor: it drops texture and flattens colour, but cannot
  change shape.
* :func:`animegan2_translator` — the AnimeGANv2 face-portrait generator when its published weights
  are on disk (``toonlab.data.download.fetch_pretrained("animegan2/face_paint_512_v2")``).

Every baseline is a translator: a function from photo batches (N, 3, H, W) in [-1, 1] to cartoons
of the same shape in [-1, 1], the generators' contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

#: the classical filter's settings, tuned once on the synthetic protocol at 64 px (notebook 05)
CLASSICAL_DEFAULTS = {"passes": 3, "diameter": 5, "sigma_colour": 40.0, "sigma_space": 3.0, "colours": 8,
                      "edges": False, "edge_block": 7, "edge_offset": 4.0}
ANIMEGAN2_FACE = "animegan2/face_paint_512_v2"


def identity(photos: torch.Tensor) -> torch.Tensor:
    """The photo unchanged: the 'do nothing' baseline."""
    return photos.clone()


def classical_cartoon_image(image: np.ndarray, passes: int = 3, diameter: int = 5, sigma_colour: float = 40.0,
                            sigma_space: float = 3.0, colours: int = 8, edges: bool = False, edge_block: int = 7,
                            edge_offset: float = 4.0, seed: int = 0) -> np.ndarray:
    """One uint8 RGB image (H, W, 3) -> its classical cartoon (uint8 RGB, same size).

    ``passes`` bilateral filters (``diameter``, ``sigma_colour`` in grey levels, ``sigma_space`` in
    pixels) smooth texture but keep edges; k-means with ``colours`` centres (OpenCV, seeded, so the
    same image always gives the same cartoon) flattens the palette; with ``edges``, pixels darker
    than their ``edge_block`` neighbourhood by ``edge_offset`` grey levels (adaptive threshold of the
    median-blurred grey image) are painted black.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    smooth = np.ascontiguousarray(image)
    for _ in range(passes):
        smooth = cv2.bilateralFilter(smooth, diameter, sigma_colour, sigma_space)
    if colours:
        pixels = smooth.reshape(-1, 3).astype(np.float32)
        cv2.setRNGSeed(seed)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
        _, labels, centres = cv2.kmeans(pixels, colours, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
        smooth = np.clip(np.rint(centres), 0, 255).astype(np.uint8)[labels.ravel()].reshape(image.shape)
    if edges:
        grey = cv2.medianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 3)
        dark = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, edge_block,
                                     edge_offset) == 0
        smooth = smooth.copy()
        smooth[dark] = (20, 18, 20)
    return smooth


def classical_cartoon(photos: torch.Tensor, **settings) -> torch.Tensor:
    """The classical cartoonizer on a batch in [-1, 1] (see :func:`classical_cartoon_image`)."""
    options = {**CLASSICAL_DEFAULTS, **settings}
    from toonlab.data.folders import model_to_uint8

    out = np.stack([classical_cartoon_image(im, **options) for im in model_to_uint8(photos)])
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(photos.device)


def animegan2_weights(path: str | Path | None = None) -> Path | None:
    """The AnimeGANv2 face-portrait weight file if it is on disk (default: toonlab's pretrained folder), else None."""
    if path is None:
        from toonlab.config import data_root
        from toonlab.data.download import PRETRAINED

        path = data_root() / "pretrained" / PRETRAINED[ANIMEGAN2_FACE].filename
    path = Path(path).expanduser()
    return path if path.is_file() else None


def animegan2_translator(path: str | Path | None = None, device: str | torch.device = "cpu",
                         work_size: int = 256) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """AnimeGANv2 face-portrait as a translator (run at ``work_size`` px, resized back), or None without weights."""
    weights = animegan2_weights(path)
    if weights is None:
        return None
    import torch.nn.functional as F

    from toonlab.hub import load_official

    net = load_official("animegan2", weights, device=device)

    def translate(photos: torch.Tensor) -> torch.Tensor:
        size = photos.shape[-2:]
        x = F.interpolate(photos.to(device), size=(work_size, work_size), mode="bilinear", antialias=True,
                          align_corners=False)
        return F.interpolate(net(x), size=tuple(size), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)

    return translate


def baseline_translators(device: str | torch.device = "cpu") -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The baselines to show beside a model: ``photo (identity)``, ``classical filter``, and AnimeGANv2 when present."""
    baselines = {"photo (identity)": identity, "classical filter": classical_cartoon}
    anime = animegan2_translator(device=device)
    if anime is not None:
        baselines["AnimeGANv2 face"] = anime
    return baselines
