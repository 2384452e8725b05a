"""KID and FID: how far the distribution of generated cartoons is from real ones (no ground truth needed).

Both metrics embed every image with a feature network (by default the InceptionV3 used by the FID
reference implementation, its 2048-d pool3 layer) and compare the two clouds of feature vectors:

* **KID** (Kernel Inception Distance, Binkowski et al. 2018) is the squared maximum mean discrepancy
  with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1) ** 3``, estimated *without bias*: its
  expected value does not depend on the number of images, so it can be read on small test sets.
  ``kid_mean`` is its mean over ``kid_subsets`` random subsets of ``kid_subset_size`` images per side
  and ``kid_std`` their spread. U-GAT-IT and most photo-to-cartoon papers report KID x 100 on test sets
  of about 100 images: **read KID on anything smaller than a few thousand images.** Values near 0 (it
  can be slightly negative) mean "indistinguishable for the feature network".
* **FID** (Frechet Inception Distance, Heusel et al. 2017) fits a Gaussian to each cloud and takes the
  Frechet distance between them. Its estimate is biased upwards, and the bias grows as the sample
  shrinks: below :data:`FID_MIN_SAMPLES` (2048, Inception's feature dimension) images per side, the
  2048 x 2048 sample covariance cannot even be full rank, and values are not comparable with published
  FIDs (computed on 10k-50k images). :func:`distribution_metrics` still returns it, with a warning.

Why ``torchmetrics`` + ``torch-fidelity`` rather than a home-made implementation: the statistics
(FID's matrix square root, KID's unbiased MMD over subsets) and the feature network are easy to get
subtly wrong, and published numbers are only comparable when the features are. torch-fidelity's
``FeatureExtractorInceptionV3`` carries the Inception of the TensorFlow FID reference implementation
(graph ``inception-2015-12-05``, the network papers report with), converted to PyTorch with outputs
matching the reference, including its TF1 bilinear resize to 299 x 299; torchmetrics (maintained by the Lightning team, widely used and
tested) wraps it and implements both metrics. Here the Inception runs once per image and its
features feed torchmetrics' ``FrechetInceptionDistance`` and ``KernelInceptionDistance`` (through a
pass-through feature module), with the reference resize (``antialias=False``: torchmetrics >= 1.8
defaults to an antialiased resize that departs from the reference).

Weights: the Inception file (:data:`INCEPTION_WEIGHTS_FILE`, about 90 MB, from
:data:`INCEPTION_WEIGHTS_URL`) is downloaded on first use into the torch hub checkpoints folder,
``torch.hub.get_dir()/checkpoints/`` (``$TORCH_HOME/hub/checkpoints/``; ``TORCH_HOME`` defaults to
``~/.cache/torch``), the same place torchmetrics itself looks. Offline, :class:`InceptionWeightsUnavailable`
says where to put the file; ``weights_path=`` names a hand-placed copy. Any other feature network (an
``nn.Module`` or callable mapping images in [-1, 1] to ``(N, D)`` features) can be passed as
``feature=``; its numbers are then only comparable with numbers computed with the same network.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "FID_MIN_SAMPLES",
    "INCEPTION_FEATURE_DIM",
    "INCEPTION_FEATURE_NAME",
    "INCEPTION_WEIGHTS_FILE",
    "INCEPTION_WEIGHTS_URL",
    "KID_MAX_SUBSET_SIZE",
    "KID_SUBSETS",
    "InceptionFeatures",
    "InceptionWeightsUnavailable",
    "SmallSampleWarning",
    "distribution_metrics",
    "inception_weights_file",
    "load_inception",
]

#: Size of InceptionV3's pool3 features, the layer FID and KID are defined on.
INCEPTION_FEATURE_DIM = 2048
#: Fewer images per side than this and FID gets a warning: below the feature dimension the sample
#: covariance is rank-deficient and FID's upward bias (which grows as the sample shrinks) is large;
#: FID is only comparable between equal, large sample sizes. (A custom feature network with more
#: dimensions raises the threshold to its own dimension.) KID is unbiased and has no such threshold.
FID_MIN_SAMPLES = INCEPTION_FEATURE_DIM
#: KID's subset size in the reference implementation and torchmetrics; capped at the sample size.
KID_MAX_SUBSET_SIZE = 1000
#: Number of random subsets KID is averaged over (reference implementation and torchmetrics).
KID_SUBSETS = 100
#: Where torch-fidelity (and so torchmetrics) downloads the FID Inception weights from
#: (``torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3``; a test keeps them in sync).
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
#: File name of the weights in the torch hub checkpoints folder (the URL's last part, as torch.hub names it).
INCEPTION_WEIGHTS_FILE = INCEPTION_WEIGHTS_URL.rsplit("/", 1)[-1]
#: ``"feature"`` entry of the result for the default network: torch-fidelity's name and layer.
INCEPTION_FEATURE_NAME = "inception-v3-compat-2048"
_DEFAULT_BATCH = 50


class InceptionWeightsUnavailable(RuntimeError):
    """The FID Inception weights are neither cached nor downloadable (or the cached file is unreadable)."""


class SmallSampleWarning(UserWarning):
    """A metric was computed on fewer images than it needs to be comparable (FID below FID_MIN_SAMPLES)."""


def inception_weights_file() -> Path:
    """Where the Inception weights are cached: ``torch.hub.get_dir()/checkpoints/`` + :data:`INCEPTION_WEIGHTS_FILE`.

    This is the path ``torch.hub.load_state_dict_from_url`` uses for :data:`INCEPTION_WEIGHTS_URL`
    (torch-fidelity's default), so a file torchmetrics downloaded before is found here and vice versa.
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def _where_to_put_it(target: Path) -> str:
    return (
        f"Fix: on a machine with internet, download\n    {INCEPTION_WEIGHTS_URL}\n"
        f"and put that file (named {INCEPTION_WEIGHTS_FILE}) at\n    {target}\n"
        f"i.e. in the torch hub checkpoints folder {target.parent} (torch.hub.get_dir()/checkpoints; "
        "set the TORCH_HOME environment variable to use another folder: the file is then looked for in "
        "$TORCH_HOME/hub/checkpoints/), or pass weights_path=/path/to/" + INCEPTION_WEIGHTS_FILE + ". "
        "Without these weights, pass feature=<your own nn.Module> (its numbers are then not comparable "
        "with published FID/KID)."
    )


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 0..255, rounded as when they are saved to PNG."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class InceptionFeatures(nn.Module):
    """The FID InceptionV3 (torch-fidelity's weights via torchmetrics) on toonlab images.

    Takes images ``(N, 3, H, W)`` in [-1, 1] (any size: they are resized to 299 x 299 inside), turns
    them into the uint8 0..255 the network was converted for, and returns the ``(N, 2048)`` pool3
    features. Always in eval mode, no gradients.
    """

    name = INCEPTION_FEATURE_NAME
    num_features = INCEPTION_FEATURE_DIM

    def __init__(self, inception: nn.Module):
        super().__init__()
        self.inception = inception.eval().requires_grad_(False)

    def train(self, mode: bool = True):  # the network always stays in eval mode
        super().train(mode)
        self.inception.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inception(_to_uint8(images))


def load_inception(weights_path: str | Path | None = None, device: str | torch.device | None = "cpu",
                   progress: bool = True) -> InceptionFeatures:
    """The FID Inception feature network, as :class:`InceptionFeatures` on ``device``.

    ``weights_path``: a hand-placed :data:`INCEPTION_WEIGHTS_FILE`; ``None`` uses the torch hub cache
    (:func:`inception_weights_file`), downloading the file there on first use. Offline, on a failed
    download or an unreadable file, raises :class:`InceptionWeightsUnavailable` saying which file to
    put where. Build it once and pass it as ``feature=`` to several :func:`distribution_metrics` calls
    to load the weights only once.
    """
    from torchmetrics.image.fid import NoTrainInceptionV3

    target = inception_weights_file() if weights_path is None else Path(weights_path).expanduser()
    if weights_path is not None and not target.is_file():
        raise InceptionWeightsUnavailable(
            f"Inception weight file {target} does not exist; check the weights_path you gave.\n"
            + _where_to_put_it(inception_weights_file())
        )
    if not target.is_file():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # looked up on torch.hub at call time, so tests can replace it; writes to a temporary file and
            # moves it into place, so an interrupted download leaves nothing behind
            torch.hub.download_url_to_file(INCEPTION_WEIGHTS_URL, str(target), None, progress=progress)
        except Exception as err:  # offline, proxy, HTTP error, read-only or full disk ...
            raise InceptionWeightsUnavailable(
                f"the Inception weights for KID/FID are not cached and could not be downloaded from "
                f"{INCEPTION_WEIGHTS_URL} ({type(err).__name__}: {err}).\n" + _where_to_put_it(target)
            ) from err
    try:
        # a plain tensor state_dict: check it with the safe loader (torch-fidelity reloads it unrestricted)
        torch.load(target, map_location="cpu", weights_only=True)
        inception = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(INCEPTION_FEATURE_DIM)],
                                       feature_extractor_weights_path=str(target), antialias=False)
    except Exception as err:
        raise InceptionWeightsUnavailable(
            f"{target} is not a readable Inception state_dict ({type(err).__name__}: {err}); "
            "delete it and download it again.\n" + _where_to_put_it(target)
        ) from err
    return InceptionFeatures(inception).to(device or "cpu")


def _batches(images, batch_size: int, which: str) -> Iterable[torch.Tensor]:
    """Float batches in [-1, 1] from a tensor (N,3,H,W) / (3,H,W) or an iterable of such tensors.

    uint8 tensors are read as 0..255 and mapped to [-1, 1].
    """
    items = [images] if isinstance(images, torch.Tensor) else images
    try:
        items = iter(items)
    except TypeError:
        raise TypeError(f"{which} must be an image tensor (N,3,H,W) or an iterable of them, "
                        f"not {type(images).__name__}") from None
    for item in items:
        if not isinstance(item, torch.Tensor):
            raise TypeError(f"{which}: expected image tensors (N,3,H,W), got a {type(item).__name__}")
        batch = item.unsqueeze(0) if item.dim() == 3 else item
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(f"{which}: expected images of shape (N,3,H,W), got {tuple(item.shape)}")
        if batch.dtype == torch.uint8:
            batch = batch.float() / 127.5 - 1
        elif not batch.is_floating_point():
            raise ValueError(f"{which}: expected float images in [-1, 1] (or uint8 0..255), got {batch.dtype}")
        if batch.numel() == 0:
            continue
        low, high = float(batch.min()), float(batch.max())
        if not (math.isfinite(low) and math.isfinite(high)) or low < -1.001 or high > 1.001:
            raise ValueError(f"{which}: toonlab images are in [-1, 1], got values in [{low:.3g}, {high:.3g}]")
        yield from batch.split(batch_size)


def _feature_name(feature) -> str:
    name = getattr(feature, "name", None)
    if isinstance(name, str) and name:
        return name
    if isinstance(feature, nn.Module):
        return type(feature).__name__
    return getattr(feature, "__name__", type(feature).__name__)


def _module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def _features(images, feature: Callable, device: torch.device, batch_size: int, which: str) -> torch.Tensor:
    """(N, D) float64 features on the CPU."""
    out = []
    for batch in _batches(images, batch_size, which):
        values = feature(batch.to(device=device, dtype=torch.float32))
        if not isinstance(values, torch.Tensor) or values.dim() < 1 or values.shape[0] != batch.shape[0]:
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ValueError(f"the feature network must map a batch of {batch.shape[0]} images to "
                             f"({batch.shape[0]}, D) features, got {shape}")
        out.append(values.reshape(batch.shape[0], -1).detach().to("cpu", torch.float64))
    if not out:
        return torch.zeros(0, 0, dtype=torch.float64)
    dims = {f.shape[1] for f in out}
    if len(dims) != 1:
        raise ValueError(f"the feature network returned features of different sizes {sorted(dims)}")
    values = torch.cat(out)
    if not torch.isfinite(values).all():
        raise ValueError(f"the feature network returned non-finite features for {which}")
    return values


class _Precomputed(nn.Module):
    """torchmetrics ``feature`` module for features computed beforehand: passes them through.

    ``num_features`` tells torchmetrics the dimension, so it runs no dummy forward pass.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def distribution_metrics(real, fake, feature: nn.Module | Callable | None = None,
                         kid_subset_size: int | None = None, *, kid_subsets: int = KID_SUBSETS,
                         batch_size: int = _DEFAULT_BATCH, device: str | torch.device | None = None,
                         weights_path: str | Path | None = None, seed: int = 0) -> dict:
    """KID and FID between ``real`` and ``fake`` images (e.g. real cartoons and a model's outputs).

    ``real``, ``fake``: image tensors ``(N, 3, H, W)`` in [-1, 1] (toonlab's convention; uint8 0..255
    is accepted too), or iterables of such batches (e.g. a generator over a folder). The two sets may
    differ in size and in H x W; each needs at least 2 images.

    ``feature``: ``None`` for the FID Inception (:func:`load_inception` with ``weights_path``, on
    ``device``, default :func:`toonlab.config.pick_device`), or any ``nn.Module``/callable mapping a
    float batch in [-1, 1] to ``(N, D)`` features (tests, offline use). A module runs on ``device`` if
    given, else on the device of its parameters, in eval mode (its mode is restored afterwards).

    ``kid_subset_size``: images per KID subset, default ``min(KID_MAX_SUBSET_SIZE, n_real, n_fake)``;
    a larger value is capped at the smaller sample (with a warning). When it equals the sample size,
    every subset holds all images, so ``kid_std`` is 0: pass a smaller size for a spread. ``seed``
    fixes the random subsets (the global RNG is left untouched).

    Returns ``{"kid_mean", "kid_std", "fid", "n_real", "n_fake", "kid_subset_size", "kid_subsets",
    "feature", "feature_dim", "warnings"}``: floats for the metrics, ints for the counts, the feature
    network's name, and the list of warnings (also emitted with ``warnings.warn``; the small-sample
    one as :class:`SmallSampleWarning`). Lower is better for both metrics.

    Raises :class:`InceptionWeightsUnavailable` when the default Inception weights cannot be had.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1 (got {batch_size})")
    if int(kid_subsets) < 1:
        raise ValueError(f"kid_subsets must be at least 1 (got {kid_subsets})")
    if kid_subset_size is not None and int(kid_subset_size) < 2:
        raise ValueError(f"kid_subset_size must be at least 2 (got {kid_subset_size})")
    if feature is None:
        from toonlab.config import pick_device

        dev = pick_device(device)
        feature = load_inception(weights_path, dev)
    elif not callable(feature):
        raise TypeError(f"feature must be None, an nn.Module or a callable, not {type(feature).__name__}")
    else:
        dev = torch.device(device) if device not in (None, "", "auto") else (
            _module_device(feature) if isinstance(feature, nn.Module) else torch.device("cpu"))

    was_training = isinstance(feature, nn.Module) and feature.training
    if isinstance(feature, nn.Module):
        feature.eval()
    try:
        f_real = _features(real, feature, dev, int(batch_size), "real")
        f_fake = _features(fake, feature, dev, int(batch_size), "fake")
    finally:
        if was_training:
            feature.train(True)
    n_real, n_fake = f_real.shape[0], f_fake.shape[0]
    if min(n_real, n_fake) < 2:
        raise ValueError(f"KID and FID need at least 2 images per side (got {n_real} real, {n_fake} fake)")
    if f_real.shape[1] != f_fake.shape[1]:
        raise ValueError(f"real and fake features differ in size ({f_real.shape[1]} vs {f_fake.shape[1]})")
    dim = f_real.shape[1]
    n = min(n_real, n_fake)

    notes: list[tuple[str, type[Warning]]] = []
    subset = min(KID_MAX_SUBSET_SIZE, n) if kid_subset_size is None else int(kid_subset_size)
    if subset > n:
        notes.append((f"kid_subset_size={subset} is larger than the smaller sample ({n} images); "
                      f"using {n}", UserWarning))
        subset = n
    fid_min = max(FID_MIN_SAMPLES, dim)
    if n < fid_min:
        notes.append((f"FID on {n} images per side (< {fid_min}) is biased upwards and not comparable with "
                      f"published FID (10k-50k images) or across sample sizes: read KID instead "
                      f"(kid_mean, unbiased)", SmallSampleWarning))

    probe = _Precomputed(dim)
    fid = FrechetInceptionDistance(feature=probe, normalize=False)
    fid.update(f_real, real=True)
    fid.update(f_fake, real=False)
    fid_value = float(fid.compute())
    with warnings.catch_warnings():  # "will save all extracted features in buffer": we hand it features
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        kid = KernelInceptionDistance(feature=probe, subsets=int(kid_subsets), subset_size=subset, normalize=False)
    kid.update(f_real, real=True)
    kid.update(f_fake, real=False)
    with torch.random.fork_rng(devices=[]):  # KID draws its subsets with torch.randperm on the CPU
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()

    for message, category in notes:
        warnings.warn(message, category, stacklevel=2)
    return {
        "kid_mean": float(kid_mean),
        "kid_std": float(kid_std),
        "fid": fid_value,
        "n_real": int(n_real),
        "n_fake": int(n_fake),
        "kid_subset_size": int(subset),
        "kid_subsets": int(kid_subsets),
        "feature": _feature_name(feature),
        "feature_dim": int(dim),
        "warnings": [message for message, _ in notes],
    }
