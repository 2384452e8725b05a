"""Loss criteria shared by the models: GAN criteria and VGG feature networks.

* :class:`GANLoss` — least squares (``lsgan``, CycleGAN/MUNIT/CartoonGAN author code) or the
  log-loss of the original GAN (``vanilla``, BCE on logits). Notebook 01 §"Adversarial loss".
* :func:`load_vgg_features` — a frozen, truncated torchvision VGG for perceptual/content losses
  (CartoonGAN conv4_4, MUNIT's optional perceptual loss). Notebook 02 §"Content loss".
"""

from __future__ import annotations

from pathlib import Path
import torch
import torch.nn.functional as F
from torch import nn

GAN_MODES = ("lsgan", "vanilla")


class GANLoss(nn.Module):
    """``GAN(prediction, target_is_real)`` against target 1 (real) or 0 (fake).

    ``lsgan``: mean squared error (Mao et al. 2017), as the reference CycleGAN and MUNIT use.
    ``vanilla``: binary cross-entropy on logits, i.e. the paper log-loss ``-log D(x)``.
    A list or tuple of predictions (multi-scale discriminators) is summed over scales, as MUNIT does.
    """

    def __init__(self, mode: str = "lsgan"):
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"unknown GAN mode {mode!r}; choose one of {', '.join(GAN_MODES)}")
        self.mode = mode

    def forward(self, prediction, target_is_real: bool) -> torch.Tensor:
        if isinstance(prediction, (list, tuple)):
            return sum(self.forward(p, target_is_real) for p in prediction)
        prediction = prediction.float()
        target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


# --- VGG feature networks --------------------------------------------------------------------

#: index just past the named layer in torchvision's ``vgg19().features``
VGG19_LAYERS = {"conv1_1": 1, "relu1_1": 2, "conv2_1": 6, "conv3_1": 11, "conv4_1": 20, "conv4_4": 26,
                "relu4_4": 27, "conv5_1": 29, "conv5_4": 35}
VGG_ENV = "TOONLAB_VGG19_WEIGHTS"  # read by toonlab.config.vgg19_weights_path
#: ImageNet statistics the torchvision VGG weights were trained with (RGB, inputs in [0, 1])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsUnavailable(RuntimeError):
    """The ImageNet VGG weights are neither cached nor downloadable."""


class VGGFeatures(nn.Module):
    """Frozen VGG trunk that takes images in [-1, 1] and normalises them as the weights expect."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features.eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True):  # the trunk always stays in eval mode
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x + 1) / 2 - self.mean) / self.std
        return self.features(x)


def torchvision_vgg_file(arch: str = "vgg19") -> Path:
    """Where torch keeps torchvision's ImageNet ``arch`` weights (``vgg16`` or ``vgg19``)."""
    from torchvision.models import VGG16_Weights, VGG19_Weights

    url = {"vgg16": VGG16_Weights, "vgg19": VGG19_Weights}[arch].IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_vgg_features(layer: str = "conv4_4", weights: str | Path | None = "imagenet") -> VGGFeatures:
    """VGG19 features up to and including ``layer`` (default conv4_4, before its ReLU).

    ``weights``:
      * ``"imagenet"`` — torchvision's ImageNet weights: ``$TOONLAB_VGG19_WEIGHTS`` if set, else the
        torch hub cache, downloading them on first use;
      * a path to a ``vgg19-dcbb9e9d.pth`` file placed by hand;
      * ``None`` — random initialisation (tests and FAST mode only: the loss then means little).
    Only the layers up to ``layer`` are kept, so nothing beyond conv4_4 sits on the device.
    """
    from torchvision.models.vgg import cfgs, make_layers

    if layer not in VGG19_LAYERS:
        raise ValueError(f"unknown VGG19 layer {layer!r}; choose one of {', '.join(VGG19_LAYERS)}")
    # only the convolutional trunk: the 120M-parameter classifier is never built
    trunk = make_layers(cfgs["E"], batch_norm=False)
    if weights is not None:
        from toonlab.config import vgg19_weights_path

        path = Path(weights).expanduser() if weights != "imagenet" else vgg19_weights_path()
        load_vgg_trunk(trunk, "vgg19", path, hint=f"or set {VGG_ENV}=/path/to/the/file")
    else:
        # torchvision's VGG initialisation, so random features have a realistic scale
        for module in trunk.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
    features = nn.Sequential(*list(trunk.children())[: VGG19_LAYERS[layer]])
    return VGGFeatures(features)


def load_vgg_trunk(trunk: nn.Sequential, arch: str, path: Path | None, hint: str = "") -> None:
    """Load the ``features.*`` weights of torchvision's ImageNet ``arch`` into ``trunk`` (in place).

    ``path``: a weight file placed by hand, or ``None`` for the torch hub cache, downloading the file
    there on first use (its name carries the start of its sha256, which is checked). Offline or on a
    failed download the error says where to put the file.
    """
    target = path or torchvision_vgg_file(arch)
    if path is not None and not path.is_file():
        raise VGGWeightsUnavailable(f"{arch.upper()} weight file {path} does not exist; check the path you gave {hint}")
    if not target.is_file():
        from torchvision.models import VGG16_Weights, VGG19_Weights

        url = {"vgg16": VGG16_Weights, "vgg19": VGG19_Weights}[arch].IMAGENET1K_V1.url
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(target), hash_prefix=target.stem.rsplit("-", 1)[-1],
                                           progress=True)
        except Exception as err:  # offline, proxy, quota, disk full ...
            raise VGGWeightsUnavailable(
                f"could not download the ImageNet {arch.upper()} weights from {url} ({err}).\n"
                f"Fix: download that file on a machine with internet and put it at {target} {hint}. "
                "For a quick offline test use weights=None (random VGG; the loss then means little)."
            ) from err
    try:
        state = torch.load(target, map_location="cpu", weights_only=True)
        prefix = "features."
        trunk.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    except Exception as err:
        raise VGGWeightsUnavailable(
            f"{target} is not a readable {arch.upper()} state_dict ({err}); delete it and download it again"
        ) from err


#: colour step (in [-1, 1] units) above which :func:`flatness_loss` stops growing: texture lies below, outlines above
FLAT_STEP = 0.05


def flatness_loss(image: torch.Tensor, step: float = FLAT_STEP) -> torch.Tensor:
    """toonlab's flatness prior (not in the paper): mean of ``min(|neighbour difference|, step)`` over x and y.

    Why: a cartoon is flat regions between outlines. Plain total variation would also charge the
    outlines; truncated at ``step``, each small step (texture, speckle) costs its size and each
    outline only ``step``. On the synthetic test portraits photos score 0.061, their true cartoons 0.025.
    """
    image = image.float()
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().clamp(max=step).mean()
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().clamp(max=step).mean()
    return dx + dy


def colour_anchor_loss(translated: torch.Tensor, source: torch.Tensor, window: int = 4) -> torch.Tensor:
    """toonlab's colour anchor (not in the paper): ``mean |avgpool(G(x)) - avgpool(x)|`` over ``window`` px blocks.

    Why: the founding report's "strange colours" (docs/founding-report.md) — CycleGAN repaints skin or
    hair in another hue, which the cycle loss cannot forbid (the way back can undo any consistent
    recolouring); MUNIT paints the colours of a random style. A cartoon
    keeps each region's colour; only detail, texture and outlines change, and those live below the
    pooling window, where the discriminator alone decides.
    """
    return F.l1_loss(F.avg_pool2d(translated.float(), window), F.avg_pool2d(source.float(), window))
