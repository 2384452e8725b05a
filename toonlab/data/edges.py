"""CartoonGAN's edge promoting: an edge-smoothed twin of every cartoon (notebook 02 §"Edge promoting").

CartoonGAN (Chen et al., CVPR 2018, §3.2 and eq. 2) shows its discriminator a third kind of image
besides real cartoons and generated ones: the real cartoons with their clear edges blurred away,
labelled *fake*. The discriminator can only tell them from the real cartoons by the edges, so it
learns to demand crisp edges, and the generator learns to draw them (the founding report's
problem 1, abstraction with clean lines).

:func:`smooth_edges` makes one twin as the reference ``edge_promoting.py`` does
(docs/reference.md §3.2): Canny edges (thresholds 100/200) of the grey image, dilated by a 5x5
square, and on those pixels only a 5x5 Gaussian blur (``cv2.getGaussianKernel(5, 0)``, sigma 1.1,
reflect-101 border). Everything else stays bit-identical.

:class:`EdgePromotedDataset` wraps any :class:`~toonlab.data.loader.UnpairedImages` and adds
``"B_smooth"`` to every sample, augmented exactly like ``"B"``. For image folders the twins are
computed once and cached as PNG files (see :class:`EdgePromotedDataset`); the synthetic portraits,
generated on the fly, get theirs on the fly too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from toonlab.data.loader import UnpairedImages, epoch_length
from toonlab.io import atomic_write

#: Canny hysteresis thresholds of the reference edge promoting (on 8-bit grey values).
CANNY_THRESHOLDS = (100, 200)
#: Side of the square that dilates the edge map, and of the Gaussian kernel.
DILATION_SIZE = 5
BLUR_SIZE = 5
#: Part of every cache key: change it when the smoothing changes, and old cache files stop matching.
SMOOTHING_VERSION = f"canny{CANNY_THRESHOLDS[0]}-{CANNY_THRESHOLDS[1]}_dilate{DILATION_SIZE}_gauss{BLUR_SIZE}_v1"


def edge_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean (H, W) map of the pixels :func:`smooth_edges` blurs: dilated Canny edges of the grey image."""
    gray = cv2.cvtColor(_check_rgb_uint8(rgb), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, *CANNY_THRESHOLDS)
    dilated = cv2.dilate(edges, np.ones((DILATION_SIZE, DILATION_SIZE), np.uint8))
    return dilated > 0


def smooth_edges(rgb: np.ndarray) -> np.ndarray:
    """The edge-smoothed twin of an RGB uint8 image (H, W, 3): blurred on the dilated edges only.

    Paper §3.2 "edge promoting"; notebook 02 §"Edge promoting". The blur is the float
    Gaussian-weighted sum over the 5x5 neighbourhood (reflect-101 border, as ``np.pad(mode="reflect")``
    in the reference), rounded to the nearest integer; pixels off the dilated edges are unchanged.
    Deterministic: the same image always gives the same twin.
    """
    rgb = _check_rgb_uint8(rgb)
    mask = edge_mask(rgb)
    kernel = cv2.getGaussianKernel(BLUR_SIZE, 0)
    blurred = cv2.sepFilter2D(rgb.astype(np.float32), -1, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)
    out = rgb.copy()
    out[mask] = np.clip(np.rint(blurred[mask]), 0, 255).astype(np.uint8)
    return out


def _check_rgb_uint8(rgb) -> np.ndarray:
    if isinstance(rgb, Image.Image):
        raise TypeError("smooth_edges takes a NumPy array; pass np.asarray(image.convert('RGB'))")
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(
            f"expected an RGB uint8 array of shape (H, W, 3), got dtype {rgb.dtype} and shape {rgb.shape}; "
            "convert with np.asarray(pil_image.convert('RGB'))"
        )
    return np.ascontiguousarray(rgb)


def smooth_edges_image(image: Image.Image) -> Image.Image:
    """:func:`smooth_edges` for a PIL image (converted to RGB first)."""
    return Image.fromarray(smooth_edges(np.asarray(image.convert("RGB"))))


def cache_key(source_id: str) -> str:
    """File name of the cached twin of the image whose identity is ``source_id`` (path, size, mtime).

    A hash of the identity and of :data:`SMOOTHING_VERSION`: an edited file (new size or mtime) or a
    changed smoothing gets a new name, so a stale twin is never read.
    """
    digest = hashlib.sha1(f"{SMOOTHING_VERSION}|{source_id}".encode("utf-8")).hexdigest()
    return f"{digest[:24]}.png"


def default_cache_dir(dataset: UnpairedImages) -> Path | None:
    """``<root>/<split>B_smooth`` (``trainB_smooth`` for training) of an image-folder dataset, else None."""
    root = getattr(dataset, "root", None)
    if root is None:
        return None
    return Path(root) / f"{getattr(dataset, 'split', 'train')}B_smooth"


def _write_png_atomically(image: Image.Image, path: Path) -> None:
    """Save to a temporary file in the same folder, then rename: readers never see half a PNG."""
    atomic_write(path, lambda handle: image.save(handle, format="PNG"), fsync=False)


class EdgePromotedDataset(torch.utils.data.Dataset):
    """``dataset`` plus CartoonGAN's edge-smoothed cartoons: samples ``{"A", "B", "B_smooth"}``.

    ``B_smooth`` is :func:`smooth_edges` of B's raw image, passed through
    ``dataset.transform(image, seed + 1)`` — exactly B's augmentation (same crop, same flip), see
    :class:`~toonlab.data.loader.UnpairedImages`. ``len_a``/``len_b`` are the wrapped dataset's, so
    :func:`~toonlab.data.loader.make_loader` and the training loop use it unchanged.

    Caching: when ``dataset.source_id_b(i)`` is not None (image folders), the twin is computed once
    and stored as a PNG in ``cache_dir`` (default ``<root>/trainB_smooth``, next to ``trainB``), named
    by :func:`cache_key` so an edited image gets a fresh twin. Files are written atomically, so
    loader workers never read a half-written PNG. When it is None (the synthetic portraits) the twin
    is computed on the fly. Smoothing runs at the images' stored resolution; prepare datasets at about
    the training size (the data scripts store 256 px), as the reference resizes to 256 first.
    """

    def __init__(self, dataset: UnpairedImages, cache_dir: str | Path | None = None):
        if isinstance(dataset, EdgePromotedDataset):
            raise TypeError("this dataset already has edge-smoothed twins; do not wrap it twice")
        for name in ("image_b", "transform", "source_id_b", "len_a", "len_b"):
            if not hasattr(dataset, name):
                raise TypeError(
                    f"EdgePromotedDataset needs an UnpairedImages dataset (image_b, transform, source_id_b, "
                    f"len_a, len_b); {type(dataset).__name__} has no {name!r}"
                )
        self.dataset = dataset
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(dataset)

    @property
    def len_a(self) -> int:
        return int(self.dataset.len_a)

    @property
    def len_b(self) -> int:
        return int(self.dataset.len_b)

    def __len__(self) -> int:
        return epoch_length(self)

    def cache_path(self, index: int) -> Path | None:
        """Where the twin of B image ``index`` is cached, or None if it is computed on the fly."""
        source_id = self.dataset.source_id_b(index)
        if source_id is None:
            return None
        if self.cache_dir is None:
            raise ValueError(
                f"{type(self.dataset).__name__} has cacheable B images but no root folder; "
                "pass cache_dir=... to EdgePromotedDataset"
            )
        return self.cache_dir / cache_key(source_id)

    def smoothed_image_b(self, index: int) -> Image.Image:
        """The edge-smoothed twin of B image ``index`` (raw, before augmentation), from the cache if there."""
        path = self.cache_path(index)
        if path is not None and path.is_file():
            try:
                with Image.open(path) as cached:
                    return cached.convert("RGB")
            except OSError:
                pass  # damaged by something outside toonlab: compute it again below
        smoothed = smooth_edges_image(self.dataset.image_b(index))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_png_atomically(smoothed, path)
        return smoothed

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        _, i_b, seed = key
        sample = dict(self.dataset[key])
        sample["B_smooth"] = self.dataset.transform(self.smoothed_image_b(i_b), seed + 1)
        return sample

    def __repr__(self) -> str:
        cache = str(self.cache_dir) if self.cache_dir is not None else None
        return f"EdgePromotedDataset({self.dataset!r}, cache_dir={cache!r})"


def precompute_edge_cache(
    dataset: UnpairedImages | EdgePromotedDataset, progress: bool = True, *, cache_dir: str | Path | None = None
) -> int:
    """Compute and cache every missing twin of ``dataset``'s B images now; returns how many were new.

    Worth running once before training on an image folder (with several loader workers, or to see
    the progress); otherwise the first epoch fills the cache as it goes. Datasets whose B images are
    not cacheable (the synthetic portraits) return 0 at once.
    """
    wrapped = dataset if isinstance(dataset, EdgePromotedDataset) else EdgePromotedDataset(dataset, cache_dir)
    missing = []
    for index in range(wrapped.len_b):
        path = wrapped.cache_path(index)
        if path is None:
            return 0
        if not path.is_file():
            missing.append(index)
    if progress and missing:
        from tqdm.auto import tqdm

        missing = tqdm(missing, desc="edge-smoothing cartoons", unit="image", leave=False)
    for index in missing:
        wrapped.smoothed_image_b(index)
    return len(missing)
