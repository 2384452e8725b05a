"""A small network that knows what is in a synthetic portrait: per-pixel face parts, in photos and cartoons alike.

Why it exists: CartoonGAN's content loss (paper eq. 3) compares deep features of a photo and of its
cartoon, so it needs a frozen network that sees *what* is where (an eye, a mouth, hair) and not *how*
it is painted. The paper uses ImageNet VGG19; its weights cannot be downloaded offline, and a random
VGG sees nothing. On the built-in portraits toonlab trains its own instead, once and reproducibly:
a U-Net that labels each pixel with one of :data:`toonlab.data.synthetic.LABEL_NAMES` (background,
clothes, hair, neck, ears, face, brows, nose, mouth, eyes, glasses), trained on photos *and* cartoons
of the training identities with the same labels, under colour, blur and noise jitter. Its
bottleneck features are therefore the same for a photo and for its cartoon, and change when a part
moves, grows or vanishes: what a content loss should measure (notebook 02, "What the content
network sees").

The shipped weights (``toonlab/weights/parts_synthetic_v1.pt``, float16, with a JSON manifest holding
their sha256, the command that made them and their test scores) come from
``python data_scripts/train_parts_net.py``. They know the synthetic portraits only: on real photos
use VGG19.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_NAME = "parts_synthetic_v1"
#: label names, in the order of the network's output channels (toonlab.data.synthetic.LABEL_NAMES)
LABELS = ("background", "clothes", "hair", "neck", "ears", "face", "brows", "nose", "mouth", "eyes", "glasses")
#: the training recipe of the shipped weights (data_scripts/train_parts_net.py passes these)
RECIPE = dict(width=16, size=64, steps=1500, batch_size=32, lr=2e-3, seed=0)


class PartsWeightsUnavailable(RuntimeError):
    """The part-segmentation weights are missing, damaged or not this network's."""


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    kernel = 4 if stride == 2 else 3
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class PartsNet(nn.Module):
    """U-Net part segmenter: images (N, 3, H, W) in [-1, 1], H and W multiples of 4 -> logits (N, 11, H, W).

    Encoder: two 3x3 convolutions at full resolution (``width`` channels), a stride-2 4x4 convolution
    and a 3x3 one at 1/2 (``2*width``), the same at 1/4 (``4*width``) plus one more: :meth:`features`
    returns that 1/4-resolution bottleneck (the content loss's "conv4_4"). Decoder: nearest x2
    upsampling, concatenation with the encoder map of that size, two 3x3 convolutions; a 1x1
    convolution to the labels. Convolutions are followed by BatchNorm (eval mode once trained) and ReLU.
    """

    def __init__(self, width: int = 16, n_labels: int = len(LABELS)):
        super().__init__()
        w = int(width)
        self.width, self.n_labels = w, int(n_labels)
        self.enc_full = nn.Sequential(_conv(3, w), _conv(w, w))
        self.enc_half = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w))
        self.enc_quarter = nn.Sequential(_conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w), _conv(4 * w, 4 * w))
        self.dec_half = nn.Sequential(_conv(4 * w + 2 * w, 2 * w), _conv(2 * w, 2 * w))
        self.dec_full = nn.Sequential(_conv(2 * w + w, w), _conv(w, w))
        self.head = nn.Conv2d(w, self.n_labels, 1)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"PartsNet expects images (N, 3, H, W) with H and W multiples of 4, got {tuple(x.shape)}")
        full = self.enc_full(x)
        half = self.enc_half(full)
        return full, half, self.enc_quarter(half)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck (N, 4*width, H/4, W/4): what the content loss compares."""
        return self._encode(x)[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full, half, quarter = self._encode(x)
        up = self.dec_half(torch.cat([F.interpolate(quarter, scale_factor=2.0, mode="nearest"), half], 1))
        up = self.dec_full(torch.cat([F.interpolate(up, scale_factor=2.0, mode="nearest"), full], 1))
        return self.head(up)


#: each block's share of the content loss's mean L1 (PartsFeatures)
CONTENT_SHARES = {"full": 0.2, "half": 0.2, "parts": 0.2, "colour": 0.4}


class PartsFeatures(nn.Module):
    """Frozen content features of the part segmenter, every level at 1/4 resolution, equally weighted.

    Images in [-1, 1] (H, W multiples of 4) -> ``(N, C, H/4, W/4)``, the concatenation of four blocks:
    the full-resolution encoder maps and the half-resolution ones folded to 1/4 resolution
    (``pixel_unshuffle``, nothing averaged away), the bottleneck (what is where), and the image's
    4x4-average colour. Each block is scaled to its share of the mean L1 of the content loss
    (:data:`CONTENT_SHARES`: the colour 0.4, each map 0.2). Why all four, measured on CartoonGAN's initialisation phase (content loss only, 400
    steps): the bottleneck alone let the generator paint a cyan face with every part in place (the
    segmenter was trained to ignore colour); with the colour, the face had its colours but a
    checkerboard of texture 46 (the 1/4-resolution maps cannot see a pattern inside 4x4 pixels); the
    full- and half-resolution maps see it. The drop-in replacement of
    :class:`toonlab.losses.VGGFeatures`; always in eval mode.
    """

    def __init__(self, net: PartsNet, blocks: tuple[str, ...] = tuple(CONTENT_SHARES)):
        super().__init__()
        unknown = sorted(set(blocks) - set(CONTENT_SHARES))
        if unknown or not blocks:
            raise ValueError(f"unknown feature blocks {unknown or blocks}; choose from {', '.join(CONTENT_SHARES)}")
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        w = net.width
        channels = {name: c for name, c in {"full": 16 * w, "half": 8 * w, "parts": 4 * w, "colour": 3}.items()
                    if name in blocks}
        total, share = sum(channels.values()), sum(CONTENT_SHARES[name] for name in channels)
        #: block -> factor that gives it its share of the mean L1 (:data:`CONTENT_SHARES`, renormalised over ``blocks``)
        self.weights = {name: total * CONTENT_SHARES[name] / share / c for name, c in channels.items()}

    def train(self, mode: bool = True):  # BatchNorm keeps its trained statistics
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full, half, parts = self.net._encode(x)
        blocks = {"full": lambda: F.pixel_unshuffle(full, 4), "half": lambda: F.pixel_unshuffle(half, 2),
                  "parts": lambda: parts, "colour": lambda: F.adaptive_avg_pool2d(x, parts.shape[-2:]).to(parts.dtype)}
        # only the blocks asked for (MUNIT's perceptual loss takes the bottleneck alone)
        return torch.cat([blocks[name]() * weight for name, weight in self.weights.items()], 1)


# --------------------------------------------------------------------------------------------------
# shipped weights
# --------------------------------------------------------------------------------------------------
def weights_path(name: str = WEIGHTS_NAME) -> Path:
    return WEIGHTS_DIR / f"{name}.pt"


#: what a missing or damaged weight file's error tells the user to do
REMAKE = "make it again with: python data_scripts/train_parts_net.py"


def read_manifest(path: str | Path | None = None) -> dict:
    """The JSON written beside a weight file: recipe, sha256, test scores, machine."""
    from toonlab.pretrained import read_manifest as read_beside

    return read_beside(Path(path) if path is not None else weights_path(), PartsWeightsUnavailable,
                       "make both with: python data_scripts/train_parts_net.py")


def load_parts_net(path: str | Path | None = None, device: str | torch.device = "cpu") -> PartsNet:
    """The trained :class:`PartsNet` in eval mode (default: the shipped weights, checked against their sha256).

    Loaded with ``weights_only=True``; a missing, damaged or foreign file raises
    :class:`PartsWeightsUnavailable` saying how to make it again.
    """
    from toonlab.pretrained import as_float32, check_against_manifest

    target = Path(path).expanduser() if path is not None else weights_path()
    if not target.is_file():
        raise PartsWeightsUnavailable(f"part-segmentation weights {target} do not exist; {REMAKE}")
    manifest = check_against_manifest(target, PartsWeightsUnavailable, REMAKE)
    try:
        state = torch.load(target, map_location="cpu", weights_only=True)
    except Exception as err:
        raise PartsWeightsUnavailable(f"could not read {target} ({err}); {REMAKE}") from err
    net = PartsNet(int(manifest.get("recipe", {}).get("width", RECIPE["width"])))
    try:
        net.load_state_dict(as_float32(state))
    except (RuntimeError, AttributeError) as err:
        raise PartsWeightsUnavailable(f"{target} does not hold PartsNet weights ({err}); {REMAKE}") from err
    return net.eval().to(device)


def load_parts_features(path: str | Path | None = None, blocks: tuple[str, ...] = tuple(CONTENT_SHARES)) -> PartsFeatures:
    """:func:`load_parts_net` wrapped as a frozen content-feature network (``blocks``: which of :data:`CONTENT_SHARES`)."""
    return PartsFeatures(load_parts_net(path), blocks)


def save_parts_net(net: PartsNet, path: str | Path, record: dict) -> Path:
    """Write ``net`` as float16 (BatchNorm counters as they are) atomically, and its manifest beside it."""
    from toonlab.pretrained import as_float16, save_with_manifest

    return save_with_manifest(as_float16(net.state_dict()), path, record)


# --------------------------------------------------------------------------------------------------
# training data and training
# --------------------------------------------------------------------------------------------------
def labelled_portraits(indices, size: int, seed: int, stream_photo: str, stream_cartoon: str
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Photos of ``stream_photo`` and cartoons of ``stream_cartoon`` for ``indices``, with their labels.

    Returns images (2n, 3, size, size) in [-1, 1] (photos first) and labels (2n, size, size) int64.
    """
    from toonlab.data.synthetic import describe, render_cartoon, render_labels, render_photo

    images, labels = [], []
    for style, stream, render in (("photo", stream_photo, render_photo), ("cartoon", stream_cartoon, render_cartoon)):
        for index in indices:
            desc = describe(seed, int(index), stream)
            images.append(render(desc, size))
            labels.append(render_labels(desc, size, style))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    return x, torch.from_numpy(np.stack(labels)).long()


def jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Colour, blur and noise jitter that keeps every label (what a generator's output may look like).

    Per image: brightness x[0.7, 1.3], saturation x[0.5, 1.5], each channel x[0.85, 1.15] (a hue
    shift), half the images blurred (one Gaussian of sigma in [0.3, 1.3] px per batch), Gaussian noise
    of sigma up to 0.08 (in [-1, 1] units). Vectorised over the batch.
    """
    from torchvision.transforms.v2 import functional as TF

    n = len(images)
    x = images.add(1).div(2)
    brightness = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=generator)
    saturation = 0.5 + torch.rand(n, 1, 1, 1, generator=generator)
    gains = 0.85 + 0.3 * torch.rand(n, 3, 1, 1, generator=generator)
    grey = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = ((grey + saturation * (x - grey)) * brightness * gains).clamp(0, 1)
    sigma = 0.3 + float(torch.rand((), generator=generator))
    blurred = TF.gaussian_blur(x, [5, 5], [sigma])
    x = torch.where(torch.rand(n, 1, 1, 1, generator=generator) < 0.5, blurred, x).mul(2).sub(1)
    noise = 0.08 * torch.rand(n, 1, 1, 1, generator=generator)
    return (x + noise * torch.randn(x.shape, generator=generator)).clamp(-1, 1)


def train_parts_net(width: int = RECIPE["width"], size: int = RECIPE["size"], steps: int = RECIPE["steps"],
                    batch_size: int = RECIPE["batch_size"], lr: float = RECIPE["lr"], seed: int = RECIPE["seed"],
                    log: Callable[[str], None] | None = print, log_every: int = 250) -> tuple[PartsNet, list[dict]]:
    """Train a :class:`PartsNet` on fresh training identities every step (half photos, half cartoons).

    Photos come from the "trainA" identity stream, cartoons from "trainB" (never the test identities
    the protocol scores); cross-entropy weighted by 1/sqrt(each label's pixel share), Adam(lr, cosine decay to 0), horizontal flips, :func:`jitter`.
    Deterministic for a given ``seed`` and thread count. Returns the net (eval mode) and the loss history.
    """
    if steps < 1 or batch_size < 2 or batch_size % 2:
        raise ValueError(f"need steps >= 1 and an even batch_size >= 2 (got steps={steps}, batch_size={batch_size})")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = PartsNet(width)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    half = batch_size // 2
    # small parts (eyes, nose, mouth, glasses frames) weigh more: 1/sqrt(pixel share), mean weight 1
    _, sample = labelled_portraits(range(10**6, 10**6 + 100), size, seed, "trainA", "trainB")
    share = torch.bincount(sample.flatten(), minlength=len(LABELS)).float().clamp_min(1) / sample.numel()
    weights = share.rsqrt() / share.rsqrt().mean()
    history, start = [], time.perf_counter()
    net.train()
    for step in range(steps):
        indices = range(step * half, (step + 1) * half)
        images, labels = labelled_portraits(indices, size, seed, "trainA", "trainB")
        flip = torch.rand(len(images), generator=generator) < 0.5
        images[flip], labels[flip] = images[flip].flip(-1), labels[flip].flip(-1)
        loss = F.cross_entropy(net(jitter(images, generator)), labels, weight=weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        history.append({"step": step + 1, "loss": loss.item()})
        if log and (step + 1) % log_every == 0:
            recent = np.mean([h["loss"] for h in history[-log_every:]])
            log(f"parts net step {step + 1}/{steps}: cross-entropy {recent:.4f} ({time.perf_counter() - start:.0f} s)")
    return net.eval(), history


@torch.no_grad()
def evaluate_parts_net(net: PartsNet, n: int = 200, size: int = 64, seed: int = 0) -> dict:
    """Pixel accuracy and per-label IoU on ``n`` test identities, photos and their true cartoons separately."""
    images, labels = labelled_portraits(range(n), size, seed, "test", "test")
    predicted = torch.cat([net.eval()(chunk).argmax(1) for chunk in images.split(100)])
    scores = {}
    for style, part in (("photo", slice(0, n)), ("cartoon", slice(n, 2 * n))):
        p, t = predicted[part], labels[part]
        ious = {}
        for index, name in enumerate(LABELS):
            union = ((p == index) | (t == index)).sum().item()
            if union:
                ious[name] = ((p == index) & (t == index)).sum().item() / union
        scores[style] = {"pixel_accuracy": (p == t).float().mean().item(),
                         "mean_iou": float(np.mean(list(ious.values()))), "iou": ious}
    return scores
