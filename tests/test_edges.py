"""CartoonGAN edge promoting: the smoothing itself, the wrapper dataset, its PNG cache."""

from __future__ import annotations

import os

import cv2
import numpy as np

import toonlab.io
import pytest
import torch
from PIL import Image

from toonlab.data import edges
from toonlab.data.edges import EdgePromotedDataset, precompute_edge_cache, smooth_edges
from toonlab.data.loader import UnpairedImages, augmentation_generator, make_loader


def square_image(size: int = 48, low: int = 16, high: int = 32) -> np.ndarray:
    """Grey background with a red square: edges only on the square's border."""
    image = np.full((size, size, 3), 128, np.uint8)
    image[low:high, low:high] = (220, 30, 30)
    return image


def reference_smoothing(rgb: np.ndarray) -> np.ndarray:
    """The reference procedure written out pixel by pixel (docs/reference.md §3.2).

    Canny 100/200 on grey, 5x5 dilation, then at each dilated edge pixel the Gaussian-weighted sum
    over the reflect-padded 5x5 neighbourhood (np.pad "reflect"), per channel.
    """
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    mask = cv2.dilate(cv2.Canny(gray, 100, 200), np.ones((5, 5), np.uint8)) > 0
    gauss = cv2.getGaussianKernel(5, 0)
    kernel = gauss @ gauss.T
    padded = np.pad(rgb.astype(np.float64), ((2, 2), (2, 2), (0, 0)), mode="reflect")
    out = rgb.copy()
    for y, x in zip(*np.nonzero(mask)):
        window = padded[y : y + 5, x : x + 5]
        out[y, x] = np.rint((window * kernel[:, :, None]).sum(axis=(0, 1)))
    return out


def test_smooth_edges_blurs_only_near_edges_and_matches_the_reference():
    image = square_image()
    smoothed = smooth_edges(image)
    assert smoothed.dtype == np.uint8 and smoothed.shape == image.shape
    # far from the square's border (> 2 px dilation + 2 px kernel + 1 px Canny slack) nothing changes
    far = np.ones(image.shape[:2], bool)
    far[16 - 5 : 32 + 5, 16 - 5 : 32 + 5] = False
    far[16 + 5 : 32 - 5, 16 + 5 : 32 - 5] = True
    assert np.array_equal(smoothed[far], image[far])
    # on the border the colours mix
    assert not np.array_equal(smoothed[16, 16:32], image[16, 16:32])
    assert 30 < smoothed[16, 24, 1] < 128  # green channel between the square's 30 and the background's 128
    reference = reference_smoothing(image)
    assert np.abs(smoothed.astype(int) - reference.astype(int)).max() <= 1
    assert (smoothed == reference).mean() > 0.99


def test_smooth_edges_is_deterministic_and_leaves_flat_images_alone():
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert np.array_equal(smooth_edges(noisy), smooth_edges(noisy))
    assert not np.array_equal(smooth_edges(noisy), noisy)
    flat = np.full((20, 24, 3), 77, np.uint8)
    assert np.array_equal(smooth_edges(flat), flat)


def test_smooth_edges_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        smooth_edges(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        smooth_edges(np.zeros((8, 8), np.uint8))
    with pytest.raises(TypeError, match="np.asarray"):
        smooth_edges(Image.new("RGB", (8, 8)))


# --- the dataset wrapper ----------------------------------------------------------------------


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1).permute(2, 0, 1)


class PngPairs(UnpairedImages):
    """Image folder stand-in: ``root/trainA``, ``root/trainB`` PNGs; flip augmentation from the seed."""

    split = "train"

    def __init__(self, root, cacheable: bool = True):
        self.root = root
        self.cacheable = cacheable
        self.paths_a = sorted((root / "trainA").glob("*.png"))
        self.paths_b = sorted((root / "trainB").glob("*.png"))
        self.len_a, self.len_b = len(self.paths_a), len(self.paths_b)

    def image_a(self, index):
        return Image.open(self.paths_a[index]).convert("RGB")

    def image_b(self, index):
        return Image.open(self.paths_b[index]).convert("RGB")

    def source_id_b(self, index):
        if not self.cacheable:
            return None
        path = self.paths_b[index]
        stat = path.stat()
        return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"

    def transform(self, image, seed):
        tensor = to_tensor(image)
        flip = torch.rand((), generator=augmentation_generator(seed)) < 0.5
        return tensor.flip(-1) if flip else tensor


def asymmetric_cartoon(shift: int = 0) -> np.ndarray:
    image = np.full((32, 32, 3), 200, np.uint8)
    image[6 + shift : 20 + shift, 4:14] = (20, 90, 160)  # left of centre, so a flip shows
    return image


@pytest.fixture
def folder(tmp_path):
    for domain in ("trainA", "trainB"):
        (tmp_path / domain).mkdir()
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(tmp_path / "trainA" / f"a{i}.png")
        Image.fromarray(asymmetric_cartoon(shift=4 * i)).save(tmp_path / "trainB" / f"b{i}.png")
    return tmp_path


def seeds_with_and_without_flip() -> tuple[int, int]:
    flips = {}
    for seed in range(100):
        flip = bool(torch.rand((), generator=augmentation_generator(seed + 1)) < 0.5)
        flips.setdefault(flip, seed)
        if len(flips) == 2:
            return flips[True], flips[False]
    raise AssertionError("no seed flips")


def test_twin_gets_exactly_the_augmentation_of_b(folder):
    dataset = EdgePromotedDataset(PngPairs(folder))
    assert (dataset.len_a, dataset.len_b, len(dataset)) == (2, 2, 2)
    flip_seed, plain_seed = seeds_with_and_without_flip()
    flipped = dataset[(0, 1, flip_seed)]
    plain = dataset[(0, 1, plain_seed)]
    assert set(flipped) == {"A", "B", "B_smooth"}
    twin = to_tensor(Image.fromarray(smooth_edges(asymmetric_cartoon(shift=4))))
    assert torch.equal(plain["B_smooth"], twin)
    assert torch.equal(flipped["B_smooth"], twin.flip(-1))
    assert torch.equal(flipped["B"], plain["B"].flip(-1))
    assert not torch.equal(flipped["B_smooth"], flipped["B"])


def test_cache_is_written_once_reused_and_invalidated(folder, monkeypatch):
    calls = []
    original = edges.smooth_edges_image
    monkeypatch.setattr(edges, "smooth_edges_image", lambda image: calls.append(1) or original(image))
    dataset = EdgePromotedDataset(PngPairs(folder))
    assert dataset.cache_dir == folder / "trainB_smooth"

    first = dataset[(0, 0, 3)]["B_smooth"]
    cached = list(dataset.cache_dir.glob("*.png"))
    assert len(calls) == 1 and len(cached) == 1
    again = EdgePromotedDataset(PngPairs(folder))[(0, 0, 3)]["B_smooth"]  # a fresh wrapper reads the file
    assert len(calls) == 1 and torch.equal(first, again)

    # edit the cartoon (new content, size and mtime): its old twin must not be used
    path = folder / "trainB" / "b0.png"
    Image.fromarray(asymmetric_cartoon(shift=9)).save(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    changed = EdgePromotedDataset(PngPairs(folder))[(0, 0, 3)]["B_smooth"]
    assert len(calls) == 2 and len(list(dataset.cache_dir.glob("*.png"))) == 2
    expected = PngPairs(folder).transform(Image.fromarray(smooth_edges(asymmetric_cartoon(shift=9))), 4)
    assert torch.equal(changed, expected)
    assert not list(dataset.cache_dir.glob("*.tmp")) and not list(dataset.cache_dir.glob(".*"))


def test_cache_files_are_renamed_into_place(folder, monkeypatch):
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(toonlab.io.os, "replace", lambda src, dst: renames.append((src, dst)) or real_replace(src, dst))
    dataset = EdgePromotedDataset(PngPairs(folder), cache_dir=folder / "elsewhere")
    dataset[(0, 1, 0)]
    assert len(renames) == 1
    src, dst = map(os.fspath, renames[0])
    assert os.path.dirname(src) == os.path.dirname(dst) == os.fspath(folder / "elsewhere") and src != dst
    with Image.open(dst) as written:
        assert np.array_equal(np.asarray(written), smooth_edges(asymmetric_cartoon(shift=4)))


def test_precompute_fills_the_cache_once(folder):
    dataset = PngPairs(folder)
    assert precompute_edge_cache(dataset, progress=False) == 2
    assert precompute_edge_cache(dataset, progress=False) == 0
    assert len(list((folder / "trainB_smooth").glob("*.png"))) == 2


def test_uncacheable_datasets_smooth_on_the_fly_and_work_with_the_loader(folder):
    dataset = EdgePromotedDataset(PngPairs(folder, cacheable=False))
    assert precompute_edge_cache(dataset, progress=False) == 0
    batch = next(iter(make_loader(dataset, batch_size=2, seed=1)))
    assert batch["B_smooth"].shape == batch["B"].shape == (2, 3, 32, 32)
    assert not (folder / "trainB_smooth").exists()


def test_wrapper_rejects_bad_datasets(folder):
    wrapped = EdgePromotedDataset(PngPairs(folder))
    with pytest.raises(TypeError, match="twice"):
        EdgePromotedDataset(wrapped)
    with pytest.raises(TypeError, match="image_b"):
        EdgePromotedDataset([1, 2, 3])
