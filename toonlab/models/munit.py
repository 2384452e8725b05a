"""MUNIT (Huang et al., ECCV 2018): multimodal unsupervised image-to-image translation.

An image is split into a *content* code (a spatial map shared by both domains: face layout, pose)
and a *style* code (a small vector specific to each domain: palette, shading, line weight). A photo
becomes a cartoon by keeping its content and decoding it with a cartoon style; sampling different
style vectors gives different cartoons of the same photo (the paper's answer to "many cartoons fit
one photo").

Written for toonlab from the facts in docs/reference.md §2, §7, §8 (the official code is CC
BY-NC-SA and is not copied). Per domain there is one :class:`AdaINGen` (style encoder, content
encoder, MLP, decoder) and one :class:`MultiScaleDiscriminator`; module and attribute names follow
the official checkpoints, so published ``gen_*.pt`` files load with :func:`from_official_state_dict`
(``toonlab.hub.load_official("munit", path)``).

Notebook 03 teaches it: §"Encoders", §"Block 3: AdaIN, adaptive instance normalisation", §"Discriminator", §"Losses" (one cell per
term below), §"Training step", §"Results 1: one photo, many cartoons".
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toonlab.config import check_at_least
from toonlab.hub import describe_keys, drop_stale_norm_buffers, strip_wrapper_prefixes
from toonlab.losses import GAN_MODES, GANLoss, VGGFeatures, colour_anchor_loss, load_vgg_trunk
from toonlab.models.base import Precision, TranslationModel, lowercase_domain_renames
from toonlab.nn import (
    PADDINGS,
    AdaptiveInstanceNorm2d,
    CartoonFilterOptions,
    Conv2dBlock,
    FrozenNets,
    apply_cartoon_filter,
    init_weights,
    make_activation,
    set_requires_grad,
)

DIRECTIONS = ("AtoB", "BtoA")
ACTIVATIONS = ("relu", "lrelu", "tanh", "none")
INITS = ("kaiming", "normal", "xavier")
#: Config.content_norm: the official instance norm, or none (the code keeps colour; a cpu-preset deviation)
CONTENT_NORMS = ("instance", "none")
#: Config.perceptual_features: VGG16 relu5_3 (the paper's) or the part segmenter's bottleneck (offline)
PERCEPTUAL_FEATURES = ("vgg16", "parts")
#: how many stride-2 convolutions the official style encoder uses (fixed in the reference code)
STYLE_DOWNSAMPLINGS = 4


# --- networks (notebook 03 §"Encoders", §"Block 3: AdaIN, adaptive instance normalisation", §"Discriminator") ----------------------


class ResidualBlock(nn.Module):
    """``x + model(x)`` with ``model = [Conv2dBlock 3x3 (norm, activation), Conv2dBlock 3x3 (norm)]``.

    The content encoder uses it with instance norm, the decoder with AdaIN (docs/reference.md §2.1).
    Keys: ``model.0.conv.*``, ``model.1.conv.*`` (plus the AdaIN dummy buffers ``model.j.norm.*``).
    """

    def __init__(self, dim: int, norm: str = "instance", activation: str = "relu", pad_type: str = "reflect"):
        super().__init__()
        self.model = nn.Sequential(
            Conv2dBlock(dim, dim, 3, 1, 1, norm=norm, activation=activation, pad_type=pad_type),
            Conv2dBlock(dim, dim, 3, 1, 1, norm=norm, activation="none", pad_type=pad_type),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.model(x)


class ResidualBlocks(nn.Module):
    """``n_blocks`` :class:`ResidualBlock` in an ``nn.Sequential`` named ``model`` (official layout)."""

    def __init__(self, n_blocks: int, dim: int, norm: str = "instance", activation: str = "relu",
                 pad_type: str = "reflect"):
        super().__init__()
        self.model = nn.Sequential(*[ResidualBlock(dim, norm, activation, pad_type) for _ in range(n_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LinearBlock(nn.Module):
    """``activation(fc(x))``; the official MLP's building block (key ``fc.weight``, ``fc.bias``)."""

    def __init__(self, in_features: int, out_features: int, activation: str = "relu"):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features, bias=True)
        self.activation = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.fc(x))


class StyleEncoder(nn.Module):
    """Image -> style code ``(N, style_dim, 1, 1)`` (paper §3.1 "Style encoder"; notebook 03 §"Encoders").

    ``c7s1-dim | c4s2-2dim | c4s2-4dim | (c4s2-4dim) x (n_downsample - 2) | global average pool |
    conv1x1 -> style_dim``, no normalisation (it would remove the very statistics that make up
    style). Official keys: ``model.{0..n_downsample}.conv.*``, ``model.{n_downsample + 2}.weight``.
    The paper preset (dim 64, style 8, 4 downsamplings) has 2,764,936 parameters.
    """

    def __init__(self, n_downsample: int = STYLE_DOWNSAMPLINGS, input_dim: int = 3, dim: int = 64,
                 style_dim: int = 8, activation: str = "relu", pad_type: str = "reflect"):
        super().__init__()
        layers: list[nn.Module] = [Conv2dBlock(input_dim, dim, 7, 1, 3, norm="none", activation=activation,
                                               pad_type=pad_type)]
        for i in range(n_downsample):
            out = dim * 2 if i < 2 else dim
            layers.append(Conv2dBlock(dim, out, 4, 2, 1, norm="none", activation=activation, pad_type=pad_type))
            dim = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, style_dim, 1, 1, 0)]
        self.model = nn.Sequential(*layers)
        self.n_downsample = n_downsample
        self.output_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ContentEncoder(nn.Module):
    """Image -> content code ``(N, dim * 2**n_downsample, H / 2**n_downsample, W / 2**n_downsample)``.

    ``c7s1-dim | c4s2-2dim | ... | ResidualBlocks(n_res)``, all with instance norm (no affine, no running
    statistics), so the code carries layout rather than colour. Paper §3.1 "Content encoder"; notebook
    03 §"Encoders". ``norm="none"`` (toonlab's ``content_norm``, off in the paper) drops it from the
    convolutions before the residual blocks, so the code keeps each region's colour too. Official keys: ``model.{0..n_downsample}.conv.*`` and
    ``model.{n_downsample + 1}.model.{i}.model.{0,1}.conv.*``. Paper preset: 5,385,856 parameters and a
    256 x 64 x 64 code for a 256 x 256 image.
    """

    def __init__(self, n_downsample: int = 2, n_res: int = 4, input_dim: int = 3, dim: int = 64,
                 activation: str = "relu", pad_type: str = "reflect", norm: str = "instance"):
        super().__init__()
        layers: list[nn.Module] = [Conv2dBlock(input_dim, dim, 7, 1, 3, norm=norm, activation=activation,
                                               pad_type=pad_type)]
        for _ in range(n_downsample):
            layers.append(Conv2dBlock(dim, dim * 2, 4, 2, 1, norm=norm, activation=activation,
                                      pad_type=pad_type))
            dim *= 2
        layers.append(ResidualBlocks(n_res, dim, "instance", activation, pad_type))
        self.model = nn.Sequential(*layers)
        self.output_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Decoder(nn.Module):
    """Content code (+ AdaIN parameters) -> image in [-1, 1] (paper §3.1 "Decoder"; notebook 03 §"Block 3: AdaIN, adaptive instance normalisation").

    ``ResidualBlocks(n_res, AdaIN) | [nearest x2 upsample, c5s1 (LayerNorm, activation)] x n_upsample |
    c7s1-output_dim, tanh``. The AdaIN layers get their scale and shift from the style code through
    the MLP (see :func:`assign_adain_params`); the upsampling convs use MUNIT's own
    :class:`toonlab.nn.LayerNorm`. Official keys: ``model.0`` residual blocks, ``model.{2,4,...}``
    upsampling convs, ``model.{2 * n_upsample + 1}`` output conv. Paper preset: 5,754,627 parameters.
    """

    def __init__(self, n_upsample: int = 2, n_res: int = 4, dim: int = 256, output_dim: int = 3,
                 activation: str = "relu", pad_type: str = "reflect"):
        super().__init__()
        layers: list[nn.Module] = [ResidualBlocks(n_res, dim, "adain", activation, pad_type)]
        for _ in range(n_upsample):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                Conv2dBlock(dim, dim // 2, 5, 1, 2, norm="layer", activation=activation, pad_type=pad_type),
            ]
            dim //= 2
        layers.append(Conv2dBlock(dim, output_dim, 7, 1, 3, norm="none", activation="tanh", pad_type=pad_type))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MLP(nn.Module):
    """Style code -> all AdaIN parameters of the decoder (notebook 03 §"Block 3: AdaIN, adaptive instance normalisation").

    ``Linear(style_dim, mlp_dim) relu | (Linear(mlp_dim, mlp_dim) relu) x (n_blocks - 2) |
    Linear(mlp_dim, output_dim)``; keys ``model.k.fc.*``. For the paper preset the output has
    4,096 values (8 AdaIN layers x 256 channels x (mean, std)) and 1,120,768 parameters.
    """

    def __init__(self, input_dim: int, output_dim: int, dim: int = 256, n_blocks: int = 3,
                 activation: str = "relu"):
        super().__init__()
        if n_blocks < 2:
            raise ValueError(f"the MLP needs at least 2 linear layers, got n_blocks={n_blocks}")
        layers = [LinearBlock(input_dim, dim, activation)]
        layers += [LinearBlock(dim, dim, activation) for _ in range(n_blocks - 2)]
        layers.append(LinearBlock(dim, output_dim, "none"))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.reshape(x.size(0), -1))


def adain_layers(module: nn.Module) -> list[AdaptiveInstanceNorm2d]:
    """The AdaIN layers of ``module`` in module (registration) order."""
    return [m for m in module.modules() if isinstance(m, AdaptiveInstanceNorm2d)]


def num_adain_params(module: nn.Module) -> int:
    """How many values the MLP must produce for ``module``: ``2 * C`` per AdaIN layer (mean and std)."""
    return sum(2 * m.num_features for m in adain_layers(module))


def assign_adain_params(params: torch.Tensor, module: nn.Module) -> None:
    """Hand the MLP output ``params`` (N, num_adain_params) to the AdaIN layers of ``module``.

    Layers are visited in module order; each takes the next ``C`` columns as its **bias** (the
    target mean) and the following ``C`` columns as its **weight** (the target std), exactly as the
    official ``assign_adain_params`` (docs/reference.md §2.1). Notebook 03 §"Block 3: AdaIN, adaptive instance normalisation".
    """
    layers = adain_layers(module)
    expected = sum(2 * m.num_features for m in layers)
    if params.dim() != 2 or params.size(1) != expected:
        raise ValueError(
            f"expected AdaIN parameters of shape (N, {expected}) for {len(layers)} AdaIN layers, "
            f"got {tuple(params.shape)}; the MLP output size must equal num_adain_params(decoder)"
        )
    start = 0
    for layer in layers:
        c = layer.num_features
        layer.bias = params[:, start:start + c].contiguous().reshape(-1)
        layer.weight = params[:, start + c:start + 2 * c].contiguous().reshape(-1)
        start += 2 * c


def clear_adain_params(module: nn.Module) -> None:
    """Forget the per-sample AdaIN parameters (so the module holds no autograd graph and can be copied)."""
    for layer in adain_layers(module):
        layer.weight = None
        layer.bias = None


class AdaINGen(nn.Module):
    """One domain's auto-encoder: ``enc_style``, ``enc_content``, ``dec``, ``mlp`` (paper Fig. 2, §3.1).

    * :meth:`encode`: image -> ``(content, style)``;
    * :meth:`decode`: ``(content, style)`` -> image; the MLP turns the style into AdaIN parameters.

    Paper preset (dim 64, style_dim 8, mlp_dim 256, 2 downsamplings, 4 residual blocks): 15,026,187
    parameters and 82 state-dict keys with the official names (16 of them AdaIN dummy buffers).
    Notebook 03 §"Block 3: AdaIN, adaptive instance normalisation".
    """

    def __init__(self, input_dim: int = 3, dim: int = 64, style_dim: int = 8, mlp_dim: int = 256,
                 n_downsample: int = 2, n_res: int = 4, activation: str = "relu", pad_type: str = "reflect",
                 style_downsample: int = STYLE_DOWNSAMPLINGS, mlp_blocks: int = 3, content_norm: str = "instance",
                 output_filter_eps: float | None = None):
        super().__init__()
        #: toonlab's cartoon filter (off in the paper): every decoded image through the self-guided filter with this eps
        self.output_filter_eps = output_filter_eps
        self.input_dim = input_dim
        self.style_dim = style_dim
        self.n_downsample = n_downsample
        self.style_downsample = style_downsample
        self.enc_style = StyleEncoder(style_downsample, input_dim, dim, style_dim, activation, pad_type)
        self.enc_content = ContentEncoder(n_downsample, n_res, input_dim, dim, activation, pad_type, content_norm)
        self.dec = Decoder(n_downsample, n_res, self.enc_content.output_dim, input_dim, activation, pad_type)
        self.mlp = MLP(style_dim, num_adain_params(self.dec), mlp_dim, mlp_blocks, activation)

    def check_images(self, x: torch.Tensor) -> None:
        """Raise a ValueError saying what is wrong when ``x`` cannot be encoded and decoded back to its size."""
        if x.dim() != 4 or x.size(1) != self.input_dim:
            raise ValueError(f"expected images of shape (N, {self.input_dim}, H, W), got {tuple(x.shape)}")
        multiple = 2**self.n_downsample
        smallest = 2**self.style_downsample
        h, w = x.shape[-2:]
        if h % multiple or w % multiple or min(h, w) < smallest:
            raise ValueError(
                f"image height and width must be multiples of {multiple} (2**n_downsample) and at least "
                f"{smallest} (the style encoder halves them {self.style_downsample} times); got {h}x{w}. "
                "Resize or crop the images"
            )

    def encode_content(self, x: torch.Tensor) -> torch.Tensor:
        """Content code of images ``x`` (paper's E^c)."""
        self.check_images(x)
        return self.enc_content(x)

    def encode_style(self, x: torch.Tensor) -> torch.Tensor:
        """Style code ``(N, style_dim, 1, 1)`` of images ``x`` (paper's E^s)."""
        self.check_images(x)
        return self.enc_style(x)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(content, style)`` of images ``x`` in [-1, 1]."""
        self.check_images(x)
        return self.enc_content(x), self.enc_style(x)

    def decode(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] from a content code and a style code ``(N, style_dim[, 1, 1])`` (paper's G)."""
        if style.size(0) != content.size(0):
            raise ValueError(
                f"got {content.size(0)} content codes but {style.size(0)} style codes; give one style per "
                "content code (expand a single style with style.expand(N, -1, -1, -1))"
            )
        if style[0].numel() != self.style_dim:
            raise ValueError(f"style codes must have {self.style_dim} values each, got shape {tuple(style.shape)}")
        assign_adain_params(self.mlp(style), self.dec)
        try:
            image = self.dec(content)
        finally:
            clear_adain_params(self.dec)
        return apply_cartoon_filter(image, self.output_filter_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Within-domain reconstruction ``decode(*encode(x))``."""
        content, style = self.encode(x)
        return self.decode(content, style)


class MultiScaleDiscriminator(nn.Module):
    """The official ``MsImageDis``: the same PatchGAN at ``num_scales`` resolutions (notebook 03 §"Discriminator").

    Per scale ``c4s2-dim (no norm) | c4s2-2dim | ... (n_layer convs) | conv1x1 -> 1``, LeakyReLU 0.2,
    reflect padding; between scales the image is halved by ``AvgPool2d(3, 2, 1,
    count_include_pad=False)``. :meth:`forward` returns one score map per scale (16², 8², 4² for a
    256² input in the paper preset, which has 8,271,171 parameters and keys
    ``cnns.{s}.{0..3}.conv.*``, ``cnns.{s}.4.*``).
    """

    def __init__(self, input_dim: int = 3, dim: int = 64, n_layer: int = 4, num_scales: int = 3,
                 norm: str = "none", activation: str = "lrelu", pad_type: str = "reflect"):
        super().__init__()
        if n_layer < 1 or num_scales < 1:
            raise ValueError(f"need n_layer >= 1 and num_scales >= 1, got {n_layer} and {num_scales}")
        self.num_scales = num_scales
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.cnns = nn.ModuleList([self._make_net(input_dim, dim, n_layer, norm, activation, pad_type)
                                   for _ in range(num_scales)])

    @staticmethod
    def _make_net(input_dim: int, dim: int, n_layer: int, norm: str, activation: str, pad_type: str) -> nn.Sequential:
        layers: list[nn.Module] = [Conv2dBlock(input_dim, dim, 4, 2, 1, norm="none", activation=activation,
                                               pad_type=pad_type)]
        for _ in range(n_layer - 1):
            layers.append(Conv2dBlock(dim, dim * 2, 4, 2, 1, norm=norm, activation=activation, pad_type=pad_type))
            dim *= 2
        layers.append(nn.Conv2d(dim, 1, 1, 1, 0))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for index, net in enumerate(self.cnns):
            outputs.append(net(x))
            if index + 1 < len(self.cnns):
                x = self.downsample(x)
        return outputs


# --- the optional domain-invariant perceptual loss network ---------------------------------------


def load_vgg16_relu5_3(weights: str | Path | None = "imagenet") -> VGGFeatures:
    """Frozen VGG16 up to relu5_3 **without pool4**, as MUNIT's ``Vgg16`` (docs/reference.md §2.1).

    torchvision's VGG16 feature layers 0-22, then 24-29: the max-pool between conv4_3 and conv5_1 is
    left out (the classifier is never built). ``weights``: ``"imagenet"`` (torchvision's file from
    the torch hub cache, downloaded on first use), a path to ``vgg16-397923af.pth``, or ``None`` for
    random weights (tests only). Unlike the official Caffe-converted ``vgg16.t7`` (BGR, 0-255,
    mean-subtracted), these weights expect RGB with ImageNet normalisation, which
    :class:`toonlab.losses.VGGFeatures` applies to inputs in [-1, 1].
    """
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["D"], batch_norm=False)  # VGG16's ``features``
    if weights is not None:
        path = None if str(weights) == "imagenet" else Path(weights).expanduser()
        load_vgg_trunk(features, "vgg16", path,
                       hint="or pass its path as vgg_weights; or set vgg_w=0 (the paper preset does: the loss is for >= 512 px)")
    layers = list(features.children())
    return VGGFeatures(nn.Sequential(*layers[:23], *layers[24:30]))


# --- config --------------------------------------------------------------------------------------


@dataclass
class Config(CartoonFilterOptions):
    """MUNIT hyper-parameters; the defaults are the official configs (docs/reference.md §2.2).

    Networks: ``dim``, ``style_dim``, ``mlp_dim``, ``n_downsample``, ``n_res`` (generators) and
    ``dis_dim``, ``dis_n_layer``, ``dis_num_scales`` (discriminators). Loss weights: ``gan_w``,
    ``recon_x_w`` (image), ``recon_s_w`` (style), ``recon_c_w`` (content), ``recon_x_cyc_w`` (style
    augmented cycle) and ``vgg_w`` (domain-invariant perceptual loss; its VGG16 weights come from
    ``vgg_weights``: ``"imagenet"``, a file path, or ``"random"`` for offline smoke tests).
    Adam(``lr``, (``beta1``, ``beta2``), ``weight_decay``); the learning rate is multiplied by
    ``gamma`` every ``step_size`` iterations; a full run is ``max_iter`` iterations.

    ``recon_x_cyc_w`` is 0 in every preset: the authors advise about 10 when the translation is
    pixel-aligned and call it "unnecessary or detrimental" when shapes change (MUNIT issue #60), and
    a cartoon face changes shape (bigger eyes, smaller nose and mouth). Set it to 10 to compare.
    """

    image_size: int = 256
    batch_size: int = 1
    dim: int = 64
    style_dim: int = 8
    mlp_dim: int = 256
    n_downsample: int = 2
    n_res: int = 4
    activ: str = "relu"
    pad_type: str = "reflect"
    dis_dim: int = 64
    dis_n_layer: int = 4
    dis_num_scales: int = 3
    dis_norm: str = "none"
    dis_activ: str = "lrelu"
    gan_mode: str = "lsgan"
    gan_w: float = 1.0
    recon_x_w: float = 10.0
    recon_s_w: float = 1.0
    recon_c_w: float = 1.0
    recon_x_cyc_w: float = 0.0
    vgg_w: float = 0.0
    vgg_weights: str = "imagenet"
    #: the perceptual loss's frozen network: ``"vgg16"`` (the paper's, relu5_3) or ``"parts"``
    #: (toonlab deviation: the synthetic-portrait part segmenter's bottleneck, :mod:`toonlab.parts`,
    #: shipped with toonlab, so the loss works offline on the built-in portraits; it knows no other faces)
    perceptual_features: str = "vgg16"
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-4
    step_size: int = 100_000
    gamma: float = 0.5
    max_iter: int = 1_000_000
    gen_init: str = "kaiming"
    dis_init: str = "normal"
    seed: int = 0
    #: toonlab deviation (off in ``paper``): ``"none"`` takes instance norm out of the content encoder's
    #: convolutions, so the content code keeps each region's colour and a random style cannot repaint it
    content_norm: str = "instance"
    #: toonlab deviation (off in ``paper``): weight of the colour anchor ``|low(x_ab) - low(x_a)| + |low(x_ba) - low(x_b)|``
    #: (:func:`toonlab.losses.colour_anchor_loss`, 4x4 averages): the translation keeps the person's colours
    colour_w: float = 0.0
    #: toonlab deviation (off in ``paper``): the first ``warmup_steps`` iterations train the generators
    #: alone to reproduce each image across domains (CartoonGAN's initialisation phase, for both
    #: directions), so the adversarial phase starts from faces, not from noise
    warmup_steps: int = 0
    #: the warm-up's learning rate (``None``: ``lr``); plain reconstruction tolerates a higher rate than a GAN
    warmup_lr: float | None = None

    #: preset name -> overrides of the official defaults
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # the official edges2shoes-style config: 256 px, batch 1, 1M iterations, lr halved every 100k
        "paper": {},
        # a laptop CPU: 64 px, narrow nets, two discriminator scales, batch 4 (per image ~2x cheaper
        # than batch 2 on a CPU) with twice the paper's lr; 1,500 iterations, about 6 minutes on 2 cores.
        # Measured deviations (benchmarks/results/ablation_munit_cpu.json, protocol toonlab-synthetic-v1;
        # L1 on the person / SSIM / texture / strange colours; the photo scores 0.115 / 0.628 / 8.5 / 0.18):
        # the paper's recipe at this size draws no face in 750 steps (0.300 / 0.27 / 7.9 / 0.87: a random
        # style paints a random person, and the nets are still noise). Four changes give faces in the
        # person's colours (0.129 / 0.59 / 3.5 / 0.31): the paper's perceptual loss with the part
        # segmenter in place of VGG16 (vgg_w 1, perceptual_features "parts"; offline), toonlab's colour
        # anchor (colour_w 10), content_norm "none" (the content code keeps colour: the largest single
        # gain) and a 100-step warm-up; that warm-up at lr 1e-3 for 150 steps: 0.128 / 0.61 / 2.6 / 0.25
        # at 600 steps. Then XGAN's cartoon filter on the cartoon decoder's output (cartoon_filter
        # "guided") and 1,500 steps instead of 600 (this preset; 600 steps were the budget while CPU runs
        # were measured 2x slower under OMP_WAIT_POLICY=PASSIVE): 0.121 / 0.633 / 1.9 / 0.14, SSIM and
        # strange colours now better than the photo's. Still blurred, and the eyes keep the photo's size.
        "cpu": dict(image_size=64, batch_size=4, dim=16, mlp_dim=64, n_res=2, dis_dim=16, dis_n_layer=3,
                    dis_num_scales=2, lr=2e-4, max_iter=1500, step_size=1000, vgg_w=1.0,
                    perceptual_features="parts", colour_w=10.0, content_norm="none", warmup_steps=150,
                    warmup_lr=1e-3, cartoon_filter="guided"),
        # CI and FAST mode: 32 px, tiny nets, batch 2
        "fast": dict(image_size=32, batch_size=2, dim=8, mlp_dim=32, n_res=1, dis_dim=8, dis_n_layer=2,
                     dis_num_scales=2, max_iter=20, step_size=10),
    }

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ValueError naming the first bad field and its allowed values."""
        for name in ("activ", "dis_activ"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(ACTIVATIONS)}")
        if self.pad_type not in PADDINGS:
            raise ValueError(f"unknown pad_type {self.pad_type!r}; choose one of {', '.join(PADDINGS)}")
        if self.dis_norm not in ("none", "instance", "batch", "layer"):
            raise ValueError(f"unknown dis_norm {self.dis_norm!r}; choose none, instance, batch or layer")
        if self.perceptual_features not in PERCEPTUAL_FEATURES:
            raise ValueError(f"unknown perceptual_features {self.perceptual_features!r}; choose one of "
                             f"{', '.join(PERCEPTUAL_FEATURES)}")
        if self.warmup_lr is not None and not self.warmup_lr >= 0:
            raise ValueError(f"warmup_lr must be >= 0 or None (the lr), got {self.warmup_lr}")
        self.validate_cartoon_filter()
        if self.content_norm not in CONTENT_NORMS:
            raise ValueError(f"unknown content_norm {self.content_norm!r}; choose one of {', '.join(CONTENT_NORMS)}")
        if self.gan_mode not in GAN_MODES:
            raise ValueError(f"unknown gan_mode {self.gan_mode!r}; choose one of {', '.join(GAN_MODES)}")
        for name in ("gen_init", "dis_init"):
            if getattr(self, name) not in INITS:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(INITS)}")
        check_at_least(self, 1, ("image_size", "batch_size", "dim", "style_dim", "mlp_dim", "dis_dim", "dis_n_layer",
                     "dis_num_scales", "step_size"))
        check_at_least(self, 0, ("n_downsample", "n_res", "max_iter", "gan_w", "recon_x_w", "recon_s_w", "recon_c_w",
                     "recon_x_cyc_w", "vgg_w", "lr", "weight_decay", "gamma", "colour_w", "warmup_steps"))
        multiple = 2**self.n_downsample
        smallest = 2**STYLE_DOWNSAMPLINGS
        if self.image_size % multiple or self.image_size < smallest:
            raise ValueError(
                f"image_size must be a multiple of {multiple} (2**n_downsample) and at least {smallest} "
                f"(the style encoder halves it {STYLE_DOWNSAMPLINGS} times), got {self.image_size}"
            )

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Config:
        """The ``paper``, ``cpu`` or ``fast`` configuration, with some fields overridden."""
        from toonlab.config import config_from_preset

        return config_from_preset(cls, name, overrides, "MUNIT")

    def total_steps(self, steps_per_epoch: int = 1) -> int:
        """Length of a full run in optimisation steps (MUNIT counts iterations, not epochs)."""
        return int(self.max_iter)


# --- losses (notebook 03 §"Losses", one cell each) -----------------------------------------------


def discriminator_loss(criterion: GANLoss, discriminator: nn.Module, real: torch.Tensor,
                       fake: torch.Tensor) -> torch.Tensor:
    """Paper eq. 4, discriminator side, summed over scales with no 0.5 factor (docs/reference.md §2.1).

    With lsgan: ``sum_s mean(D_s(fake)^2) + mean((D_s(real) - 1)^2)``. ``fake`` is detached.
    """
    return criterion(discriminator(fake.detach()), False) + criterion(discriminator(real), True)


def generator_adversarial_loss(criterion: GANLoss, discriminator: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """Paper eq. 4, generator side: with lsgan ``sum_s mean((D_s(G(c, s)) - 1)^2)``."""
    return criterion(discriminator(fake), True)


def image_reconstruction_loss(reconstructed: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Paper eq. 1: ``mean |G(E^c(x), E^s(x)) - x|`` (within-domain auto-encoding; weight ``recon_x_w``)."""
    return F.l1_loss(reconstructed.float(), image.float())


def content_reconstruction_loss(content_recovered: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Paper eq. 2: ``mean |E^c_2(G_2(c_1, s_2)) - c_1|``: translation keeps the content (weight ``recon_c_w``).

    As in the official code the target ``c_1`` is not detached: both encoders learn from it.
    """
    return F.l1_loss(content_recovered.float(), content.float())


def style_reconstruction_loss(style_recovered: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Paper eq. 3: ``mean |E^s_2(G_2(c_1, s_2)) - s_2|``: the sampled style shows in the output (weight ``recon_s_w``)."""
    return F.l1_loss(style_recovered.float(), style.float())


def cycle_reconstruction_loss(cycled: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Style-augmented cycle consistency (paper §4): ``mean |G_1(c_1', s_1) - x_1|`` (weight ``recon_x_cyc_w``)."""
    return F.l1_loss(cycled.float(), image.float())


def perceptual_loss(vgg: nn.Module, translated: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Domain-invariant perceptual loss (paper §5.1): ``mean (IN(f(x_translated)) - IN(f(x_source)))^2``.

    ``f`` is VGG16 relu5_3 (:func:`load_vgg16_relu5_3`) and IN an instance norm without affine,
    which removes the domain-specific feature statistics (weight ``vgg_w``).
    """
    translated_features = F.instance_norm(vgg(translated).float())
    source_features = F.instance_norm(vgg(source).float())
    return F.mse_loss(translated_features, source_features)


# --- multimodal translation helpers (notebook 03 §"Results 1: one photo, many cartoons") ------------------------


def _as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)):
        return torch.Generator().manual_seed(int(generator))
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


class StyleTranslation:
    """Translation with explicit styles, shared by :class:`Model` and :class:`MUNITGenerators`.

    Needs attributes ``gen_a`` (photos, domain A) and ``gen_b`` (cartoons, domain B). ``AtoB``
    encodes the content with ``gen_a`` and decodes it with ``gen_b`` and a B style, as the official
    ``test.py``; ``BtoA`` the other way round. All methods run without gradients.
    """

    gen_a: AdaINGen
    gen_b: AdaINGen
    multimodal: ClassVar[bool] = True

    @torch.no_grad()
    def translations(self, x: torch.Tensor, direction: str = "AtoB", num_styles: int = 1,
                     reference: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
        """``toonlab translate``'s output: the style of ``reference``, else ``num_styles`` styles drawn
        from a CPU generator seeded with ``seed``, style-major ``(num_styles * N, C, H, W)``."""
        if reference is not None:
            return self.translate_with_reference(x, reference, direction)
        out = self.translate_many(x, num_styles, direction, generator=torch.Generator().manual_seed(int(seed)))
        return out.reshape(-1, *out.shape[-3:])

    @property
    def style_dim(self) -> int:
        return self.gen_b.style_dim

    def _generators(self, direction: str) -> tuple[AdaINGen, AdaINGen]:
        if direction == "AtoB":
            return self.gen_a, self.gen_b
        if direction == "BtoA":
            return self.gen_b, self.gen_a
        raise ValueError(f"unknown direction {direction!r}; choose AtoB (photo -> cartoon) or BtoA (cartoon -> photo)")

    def _device(self) -> torch.device:
        return next(self.gen_a.parameters()).device

    @torch.no_grad()
    def sample_styles(self, n: int, generator: torch.Generator | int | None = None) -> torch.Tensor:
        """``n`` style codes drawn from the prior N(0, I): shape ``(n, style_dim, 1, 1)`` on the model's device.

        ``generator`` (a CPU ``torch.Generator`` or an int seed) makes the draw repeatable.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        styles = torch.randn(n, self.style_dim, 1, 1, generator=_as_generator(generator))
        return styles.to(self._device())

    def _style_batch(self, style: torch.Tensor, n: int) -> torch.Tensor:
        """Shape a style (one code or one per image) as ``(n, style_dim, 1, 1)``."""
        style = torch.as_tensor(style, device=self._device(), dtype=torch.float32)
        d = self.style_dim
        if style.numel() == d:
            return style.reshape(1, d, 1, 1).expand(n, d, 1, 1)
        if style.dim() >= 2 and style.size(0) == n and style[0].numel() == d:
            return style.reshape(n, d, 1, 1)
        raise ValueError(
            f"a style must be one code of {d} values or one code per image ({n}, {d}[, 1, 1]); got shape "
            f"{tuple(style.shape)}"
        )

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AtoB", style: torch.Tensor | None = None,
                  generator: torch.Generator | int | None = None) -> torch.Tensor:
        """Translate images ``x`` in [-1, 1] with ``style`` (one code or one per image).

        Without ``style`` each image gets its own random style from N(0, I) (drawn with ``generator``).
        """
        source, target = self._generators(direction)
        content = source.encode_content(x)
        if style is None:
            style = self.sample_styles(x.size(0), generator)
        return target.decode(content, self._style_batch(style, x.size(0)).to(content.dtype))

    def translator(self, direction: str = "AtoB", seed: int = 0):
        """Photos -> cartoons with one random style per image, drawn from a CPU generator seeded once with ``seed``."""
        generator = torch.Generator().manual_seed(int(seed))
        return lambda x: self.translate(x, direction, generator=generator)

    @torch.no_grad()
    def translate_many(self, x: torch.Tensor, num_styles: int, direction: str = "AtoB",
                       generator: torch.Generator | int | None = None) -> torch.Tensor:
        """``num_styles`` random styles, each applied to every image: ``(num_styles, N, C, H, W)``.

        Row ``k`` shows all images with the same style ``k`` (the official ``test.py`` output, batched).
        Use ``.flatten(0, 1)`` for a flat batch (e.g. an image grid with ``nrow=N``).
        """
        source, target = self._generators(direction)
        content = source.encode_content(x)
        styles = self.sample_styles(num_styles, generator)
        return torch.stack([target.decode(content, self._style_batch(s, x.size(0)).to(content.dtype))
                            for s in styles])

    @torch.no_grad()
    def style_of(self, reference: torch.Tensor, domain: str = "B") -> torch.Tensor:
        """Style codes ``(N, style_dim, 1, 1)`` of example images of ``domain`` (``"A"`` photos, ``"B"`` cartoons)."""
        if domain not in ("A", "B"):
            raise ValueError(f"domain must be 'A' (photos) or 'B' (cartoons), got {domain!r}")
        return (self.gen_a if domain == "A" else self.gen_b).encode_style(reference)

    @torch.no_grad()
    def translate_with_reference(self, x: torch.Tensor, reference: torch.Tensor,
                                 direction: str = "AtoB") -> torch.Tensor:
        """Example-guided translation: the style of ``reference`` images of the target domain.

        ``reference`` holds one image (its style goes to every image of ``x``) or one per image.
        """
        source, target = self._generators(direction)
        if reference.dim() == 3:
            reference = reference.unsqueeze(0)
        if reference.size(0) not in (1, x.size(0)):
            raise ValueError(f"give one reference image or one per input image ({x.size(0)}), got {reference.size(0)}")
        style = target.encode_style(reference)
        content = source.encode_content(x)
        return target.decode(content, self._style_batch(style if style.size(0) > 1 else style[0], x.size(0)))

    @torch.no_grad()
    def interpolate_styles(self, x: torch.Tensor, style_1: torch.Tensor, style_2: torch.Tensor, steps: int = 8,
                           direction: str = "AtoB") -> torch.Tensor:
        """Decode ``x`` with styles on the line from ``style_1`` to ``style_2``: ``(steps, N, C, H, W)``.

        Row 0 uses ``style_1``, row ``steps - 1`` uses ``style_2``.
        """
        if steps < 2:
            raise ValueError(f"steps must be >= 2, got {steps}")
        source, target = self._generators(direction)
        content = source.encode_content(x)
        n = x.size(0)
        start, end = self._style_batch(style_1, n), self._style_batch(style_2, n)
        rows = [target.decode(content, torch.lerp(start, end, float(t)).to(content.dtype))
                for t in torch.linspace(0, 1, steps)]
        return torch.stack(rows)


class MUNITGenerators(StyleTranslation, nn.Module):
    """The two generators of a MUNIT model (``gen_a`` photos / domain A, ``gen_b`` cartoons / domain B).

    What :func:`from_official_state_dict` returns; it has the :class:`StyleTranslation` helpers.
    """

    def __init__(self, gen_a: AdaINGen, gen_b: AdaINGen):
        super().__init__()
        self.gen_a = gen_a
        self.gen_b = gen_b


# --- the model -----------------------------------------------------------------------------------


class Model(StyleTranslation, TranslationModel):
    """MUNIT: ``gen_a`` (photos), ``gen_b`` (cartoons), ``dis_a``, ``dis_b`` (notebook 03 §"Training step").

    Generators get Kaiming init and discriminators N(0, 0.02), drawn from ``config.seed`` (the global
    RNG is left untouched). ``optimizers["D"]`` updates both discriminators and
    ``optimizers["G"]`` both generators (the official code's ``dis_opt`` and ``gen_opt``; checkpoints
    written before toonlab named them ``"dis"`` and ``"gen"`` still resume), with Adam(lr, (beta1, beta2), weight_decay).
    ``perceptual_net`` replaces the VGG16 trunk of the perceptual loss (tests); it is only used when
    ``vgg_w > 0`` and is kept out of the state dict.
    """

    kind: ClassVar[str] = "munit"
    generator_names: ClassVar[tuple[str, ...]] = ("gen_a", "gen_b")
    renamed_optimizers: ClassVar[dict[str, str]] = {"gen": "G", "dis": "D"}
    renamed_losses: ClassVar[dict[str, str]] = lowercase_domain_renames(
        "D", "G_adv", "recon_x", "recon_s", "recon_c", "recon_cyc", "vgg", "colour")
    hparam_names: ClassVar[tuple[str, ...]] = ("lr", "gan_w", "recon_x_w", "recon_s_w", "recon_c_w", "recon_x_cyc_w")

    def __init__(self, config: Config, perceptual_net: nn.Module | None = None):
        if not isinstance(config, Config):
            raise TypeError(f"expected a munit.Config, got {type(config).__name__}; use Config.preset(...)")
        config.validate()
        super().__init__(config)
        c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.gen_a = self._make_generator()
            self.gen_b = self._make_generator(cartoons=True)
            self.dis_a = self._make_discriminator()
            self.dis_b = self._make_discriminator()
            for gen in (self.gen_a, self.gen_b):
                init_weights(gen, c.gen_init)
            for dis in (self.dis_a, self.dis_b):
                init_weights(dis, c.dis_init, 0.02)
        self.criterion_gan = GANLoss(c.gan_mode)
        # the frozen VGG stays out of state_dict(), parameters() and the optimisers
        self.frozen = FrozenNets()
        if perceptual_net is not None:
            self.frozen.put("vgg", perceptual_net)
        elif c.vgg_w > 0 and c.perceptual_features == "parts":
            from toonlab.parts import load_parts_features

            self.frozen.put("vgg", load_parts_features(blocks=("parts",)))
        elif c.vgg_w > 0:
            weights = None if c.vgg_weights == "random" else c.vgg_weights
            self.frozen.put("vgg", load_vgg16_relu5_3(weights))
        kwargs = dict(lr=c.lr, betas=(c.beta1, c.beta2), weight_decay=c.weight_decay)
        self.optimizers = {
            "G": torch.optim.Adam(itertools.chain(self.gen_a.parameters(), self.gen_b.parameters()), **kwargs),
            "D": torch.optim.Adam(itertools.chain(self.dis_a.parameters(), self.dis_b.parameters()), **kwargs),
        }

    def _make_generator(self, cartoons: bool = False) -> AdaINGen:
        """One domain's generator; the cartoon domain's (``cartoons``) draws through the config's cartoon filter."""
        c = self.config
        return AdaINGen(3, c.dim, c.style_dim, c.mlp_dim, c.n_downsample, c.n_res, c.activ, c.pad_type,
                        content_norm=c.content_norm, output_filter_eps=c.active_cartoon_filter_eps if cartoons else None)

    def compiled_networks(self) -> list[nn.Module]:
        """The encoders, style MLPs and discriminators (the networks ``encode``/``decode`` and the losses call).

        The decoders stay eager: ``decode`` writes each image's AdaIN parameters into them first,
        a module mutation that would make the compiled graph retrace at every call.
        """
        return [part for gen in (self.gen_a, self.gen_b) for part in (gen.enc_style, gen.enc_content, gen.mlp)] \
            + [self.dis_a, self.dis_b]

    def _make_discriminator(self) -> MultiScaleDiscriminator:
        c = self.config
        return MultiScaleDiscriminator(3, c.dis_dim, c.dis_n_layer, c.dis_num_scales, c.dis_norm, c.dis_activ,
                                       c.pad_type)

    @property
    def perceptual_net(self) -> nn.Module | None:
        """The perceptual loss's frozen network: VGG16 relu5_3 or the part segmenter (``None`` unless ``vgg_w > 0`` or one was given)."""
        return self.frozen.get("vgg")

    def notes(self) -> list[str]:
        """The deviations from the paper a user should see when training starts (printed by the CLI)."""
        c, lines = self.config, []
        if c.vgg_w > 0 and c.perceptual_features == "parts":
            lines.append("perceptual loss: toonlab's synthetic part segmenter (toonlab.parts) in place of VGG16; "
                         "it knows the built-in portraits only: for real photos use perceptual_features vgg16")
        if c.warmup_steps > 0:
            lines.append(f"warm-up: the first {c.warmup_steps} steps train the generators alone to reproduce each "
                         "image across domains (not in the paper)")
        if c.content_norm != "instance" or c.colour_w > 0:
            lines.append(f"identity: content_norm {c.content_norm}, colour anchor weight {c.colour_w} "
                         "(toonlab's; the paper's content code is instance-normalised and the style sets the colours)")
        return lines + c.cartoon_filter_notes()

    # -- schedule -----------------------------------------------------------------------------------
    def base_lr(self, optimizer_name: str, step: int = 0) -> float:
        """``warmup_lr`` during the warm-up (when set), else ``lr``."""
        c = self.config
        return float(c.warmup_lr if step < c.warmup_steps and c.warmup_lr is not None else c.lr)

    def lr_factor(self, step: int) -> float:
        """Official ``step`` policy per iteration: ``gamma ** (step // step_size)`` (halved every 100k steps).

        (The official StepLR is stepped before each iteration, so it halves one iteration earlier.)
        """
        return float(self.config.gamma ** (int(step) // self.config.step_size))

    # -- training -----------------------------------------------------------------------------------
    def training_styles(self, n_a: int, n_b: int, step: int) -> dict[str, torch.Tensor]:
        """Random styles of one iteration, a pure function of ``(config.seed, step)`` (so resuming is exact).

        ``dis_a``/``gen_a`` (``n_b`` codes: they decode B contents as A) and ``dis_b``/``gen_b``
        (``n_a`` codes): fresh N(0, I) draws for the discriminator and for the generator update.
        """
        seed = int(np.random.SeedSequence([int(self.config.seed), int(step), 0x6D756E]).generate_state(1)[0])
        g = torch.Generator().manual_seed(seed)
        d = self.config.style_dim
        device = self._device()
        names_sizes = (("dis_a", n_b), ("dis_b", n_a), ("gen_a", n_b), ("gen_b", n_a))
        return {name: torch.randn(n, d, 1, 1, generator=g).to(device) for name, n in names_sizes}

    def discriminator_losses(self, x_a: torch.Tensor, x_b: torch.Tensor, s_a: torch.Tensor,
                             s_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """``D_A``, ``D_B`` and ``D_total = gan_w * (D_A + D_B)`` on fresh translations (official ``dis_update``).

        The translations ``x_ba = G_a(c_b, s_a)`` and ``x_ab = G_b(c_a, s_b)`` are made without
        gradients: only the discriminators learn here.
        """
        with torch.no_grad():
            x_ba = self.gen_a.decode(self.gen_b.encode_content(x_b), s_a)
            x_ab = self.gen_b.decode(self.gen_a.encode_content(x_a), s_b)
        loss_a = discriminator_loss(self.criterion_gan, self.dis_a, x_a, x_ba)
        loss_b = discriminator_loss(self.criterion_gan, self.dis_b, x_b, x_ab)
        return {"D_A": loss_a, "D_B": loss_b, "D_total": self.config.gan_w * (loss_a + loss_b)}

    def generator_losses(self, x_a: torch.Tensor, x_b: torch.Tensor, s_a: torch.Tensor,
                         s_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every generator term of paper eq. 5 (official ``gen_update``), unweighted, plus ``G_total``.

        Encode both domains, reconstruct them (eq. 1), translate with the sampled styles ``s_a``,
        ``s_b``, encode the translations again for the content (eq. 2) and style (eq. 3) terms, then
        the adversarial terms (eq. 4); the cycle terms only when ``recon_x_cyc_w > 0``, the
        perceptual terms only when ``vgg_w > 0`` and toonlab's colour anchor (``colour_A`` keeps
        ``x_ab`` in the colours of ``x_a``) only when ``colour_w > 0``.
        """
        c = self.config
        c_a, s_a_prime = self.gen_a.encode(x_a)
        c_b, s_b_prime = self.gen_b.encode(x_b)
        x_a_recon = self.gen_a.decode(c_a, s_a_prime)
        x_b_recon = self.gen_b.decode(c_b, s_b_prime)
        x_ba = self.gen_a.decode(c_b, s_a)
        x_ab = self.gen_b.decode(c_a, s_b)
        c_b_recon, s_a_recon = self.gen_a.encode(x_ba)
        c_a_recon, s_b_recon = self.gen_b.encode(x_ab)
        terms = {
            "G_adv_A": generator_adversarial_loss(self.criterion_gan, self.dis_a, x_ba),
            "G_adv_B": generator_adversarial_loss(self.criterion_gan, self.dis_b, x_ab),
            "recon_x_A": image_reconstruction_loss(x_a_recon, x_a),
            "recon_x_B": image_reconstruction_loss(x_b_recon, x_b),
            "recon_s_A": style_reconstruction_loss(s_a_recon, s_a),
            "recon_s_B": style_reconstruction_loss(s_b_recon, s_b),
            "recon_c_A": content_reconstruction_loss(c_a_recon, c_a),
            "recon_c_B": content_reconstruction_loss(c_b_recon, c_b),
        }
        total = (c.gan_w * (terms["G_adv_A"] + terms["G_adv_B"])
                 + c.recon_x_w * (terms["recon_x_A"] + terms["recon_x_B"])
                 + c.recon_s_w * (terms["recon_s_A"] + terms["recon_s_B"])
                 + c.recon_c_w * (terms["recon_c_A"] + terms["recon_c_B"]))
        if c.recon_x_cyc_w > 0:
            x_aba = self.gen_a.decode(c_a_recon, s_a_prime)
            x_bab = self.gen_b.decode(c_b_recon, s_b_prime)
            terms["recon_cyc_A"] = cycle_reconstruction_loss(x_aba, x_a)
            terms["recon_cyc_B"] = cycle_reconstruction_loss(x_bab, x_b)
            total = total + c.recon_x_cyc_w * (terms["recon_cyc_A"] + terms["recon_cyc_B"])
        if c.colour_w > 0:
            terms["colour_A"] = colour_anchor_loss(x_ab, x_a)
            terms["colour_B"] = colour_anchor_loss(x_ba, x_b)
            total = total + c.colour_w * (terms["colour_A"] + terms["colour_B"])
        if c.vgg_w > 0:
            vgg = self.frozen.get("vgg", x_a.device)
            if vgg is None:
                raise RuntimeError("vgg_w > 0 but this model was built without a VGG network; rebuild it with vgg_w > 0")
            terms["vgg_A"] = perceptual_loss(vgg, x_ab, x_a)
            terms["vgg_B"] = perceptual_loss(vgg, x_ba, x_b)
            total = total + c.vgg_w * (terms["vgg_A"] + terms["vgg_B"])
        terms["G_total"] = total
        return terms

    def dis_update(self, x_a: torch.Tensor, x_b: torch.Tensor, s_a: torch.Tensor, s_b: torch.Tensor,
                   precision: Precision) -> dict[str, torch.Tensor]:
        """One step of ``optimizers["D"]`` on :meth:`discriminator_losses`."""
        return self.optimizer_step("D", self.discriminator_losses, "D_total", precision, x_a, x_b, s_a, s_b)

    def gen_update(self, x_a: torch.Tensor, x_b: torch.Tensor, s_a: torch.Tensor, s_b: torch.Tensor,
                   precision: Precision) -> dict[str, torch.Tensor]:
        """One step of ``optimizers["G"]`` on :meth:`generator_losses` (discriminators frozen meanwhile)."""
        discriminators = [self.dis_a, self.dis_b]
        set_requires_grad(discriminators, False)
        try:
            return self.optimizer_step("G", self.generator_losses, "G_total", precision, x_a, x_b, s_a, s_b)
        finally:
            set_requires_grad(discriminators, True)

    def warmup_losses(self, x_a: torch.Tensor, x_b: torch.Tensor, s_a: torch.Tensor,
                      s_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The warm-up terms (``step < warmup_steps``, not in the paper): each image reproduced across domains.

        ``warmup_ab = |G_b(c_a, s_b) - x_a|`` and ``warmup_ba = |G_a(c_b, s_a) - x_b|`` with random
        styles, beside the paper's within-domain reconstructions ``recon_x_A/B``; ``G_total`` is
        ``recon_x_w * (recon_x_A + recon_x_B) + warmup_ab + warmup_ba``. Why: from random weights a
        translation is noise for hundreds of steps; started from "the photo, drawn by the cartoon
        decoder", the adversarial phase only has to change its style (CartoonGAN's initialisation
        phase, applied to both generators; issue "Cartoons that work").
        """
        c_a, s_a_prime = self.gen_a.encode(x_a)
        c_b, s_b_prime = self.gen_b.encode(x_b)
        terms = {
            "recon_x_A": image_reconstruction_loss(self.gen_a.decode(c_a, s_a_prime), x_a),
            "recon_x_B": image_reconstruction_loss(self.gen_b.decode(c_b, s_b_prime), x_b),
            "warmup_ab": image_reconstruction_loss(self.gen_b.decode(c_a, s_b), x_a),
            "warmup_ba": image_reconstruction_loss(self.gen_a.decode(c_b, s_a), x_b),
        }
        terms["G_total"] = (self.config.recon_x_w * (terms["recon_x_A"] + terms["recon_x_B"])
                            + terms["warmup_ab"] + terms["warmup_ba"])
        return terms

    def warmup_update(self, x_a: torch.Tensor, x_b: torch.Tensor, s_a: torch.Tensor, s_b: torch.Tensor,
                      precision: Precision) -> dict[str, torch.Tensor]:
        """One step of ``optimizers["G"]`` on :meth:`warmup_losses` (the discriminators rest)."""
        return self.optimizer_step("G", self.warmup_losses, "G_total", precision, x_a, x_b, s_a, s_b)

    def train_step(self, batch: dict[str, torch.Tensor], precision: Precision, step: int) -> dict[str, float]:
        """One official iteration on ``{"A": photos, "B": cartoons}``: :meth:`dis_update`, then :meth:`gen_update`.

        During the first ``config.warmup_steps`` iterations (toonlab's warm-up, 0 in the paper) only
        :meth:`warmup_update` runs, and the result holds its terms instead.

        Each update draws its own styles from N(0, I) (:meth:`training_styles`). Returns
        ``D_total``, the unweighted generator terms (``G_adv_A/B``, ``recon_x_A/B``, ``recon_s_A/B``,
        ``recon_c_A/B``, ``recon_cyc_A/B`` and ``vgg_A/B`` when their weight is > 0) and the weighted
        ``G_total``, as floats.
        """
        x_a, x_b = batch["A"], batch["B"]
        styles = self.training_styles(x_a.size(0), x_b.size(0), step)
        if step < self.config.warmup_steps:
            return self.loss_readout(self.warmup_update(x_a, x_b, styles["gen_a"], styles["gen_b"], precision))
        dis = self.dis_update(x_a, x_b, styles["dis_a"], styles["dis_b"], precision)
        gen = self.gen_update(x_a, x_b, styles["gen_a"], styles["gen_b"], precision)
        return self.loss_readout({"D_total": dis["D_total"], **{k: v for k, v in gen.items() if k != "G_total"},
                           "G_total": gen["G_total"]})

    def forward(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        """Random-style translation (same as :meth:`translate`)."""
        return self.translate(x, direction)


# --- official checkpoints ------------------------------------------------------------------------



def _indices(state: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for m in map(regex.match, state) if m})


def _generator_from_state(state: Mapping[str, Any], name: str) -> AdaINGen:
    """Build the :class:`AdaINGen` that one official generator state dict describes, and load it strictly."""
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"entry {name!r} is not a non-empty state dict")
    state = strip_wrapper_prefixes(state)
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"entry {name!r} is not a plain state dict: entries that are not tensors: {describe_keys(map(str, bad))}")
    if any(k.startswith("cnns.") for k in state):
        raise ValueError(
            f"entry {name!r} holds a discriminator (keys 'cnns.*'): this is a dis_*.pt file; "
            "load the generator file gen_*.pt (or a published <name>.pt) instead"
        )
    first = "enc_style.model.0.conv.weight"
    if first not in state or state[first].dim() != 4:
        raise ValueError(f"entry {name!r} has no {first!r}, so it is not a MUNIT AdaINGen; keys found: {describe_keys(state)}")
    dim, input_dim = (int(v) for v in state[first].shape[:2])
    style_blocks = _indices(state, r"^enc_style\.model\.(\d+)\.conv\.weight$")
    style_downsample = len(style_blocks) - 1
    style_out = f"enc_style.model.{style_downsample + 2}.weight"
    content_blocks = _indices(state, r"^enc_content\.model\.(\d+)\.conv\.weight$")
    n_downsample = len(content_blocks) - 1
    res_blocks = _indices(state, rf"^enc_content\.model\.{n_downsample + 1}\.model\.(\d+)\.model\.0\.conv\.weight$")
    mlp_blocks = _indices(state, r"^mlp\.model\.(\d+)\.fc\.weight$")
    needed = [style_out, "mlp.model.0.fc.weight"]
    missing = [k for k in needed if k not in state]
    if style_downsample < 0 or n_downsample < 0 or missing or len(mlp_blocks) < 2:
        raise ValueError(
            f"entry {name!r} does not have the official AdaINGen layout (missing {', '.join(missing) or 'encoder or MLP layers'}); "
            f"keys found: {describe_keys(state)}"
        )
    style_dim = int(state[style_out].shape[0])
    mlp_dim = int(state["mlp.model.0.fc.weight"].shape[0])
    output_key = f"dec.model.{2 * n_downsample + 1}.conv.weight"
    if output_key in state and int(state[output_key].shape[0]) != input_dim:
        raise ValueError(f"entry {name!r} maps {input_dim} input channels to {state[output_key].shape[0]} output channels; "
                         "toonlab's AdaINGen needs them equal")
    generator = AdaINGen(input_dim, dim, style_dim, mlp_dim, n_downsample, len(res_blocks), "relu", "reflect",
                         style_downsample, len(mlp_blocks))
    cleaned = drop_stale_norm_buffers(state, generator)
    expected = generator.state_dict()
    missing_keys, unexpected_keys = set(expected) - set(cleaned), set(cleaned) - set(expected)
    wrong_shapes = [k for k in set(expected) & set(cleaned) if expected[k].shape != cleaned[k].shape]
    if missing_keys or unexpected_keys or wrong_shapes:
        raise ValueError(
            f"entry {name!r} does not match an AdaINGen with dim={dim}, style_dim={style_dim}, mlp_dim={mlp_dim}, "
            f"n_downsample={n_downsample}, n_res={len(res_blocks)}: missing keys: {describe_keys(missing_keys) or 'none'}; "
            f"unexpected keys: {describe_keys(unexpected_keys) or 'none'}; wrong shapes: {describe_keys(wrong_shapes) or 'none'}"
        )
    generator.load_state_dict(cleaned, strict=True)
    return generator


def from_official_state_dict(state: Mapping[str, Any]) -> MUNITGenerators:
    """Official MUNIT generators ``{'a': AdaINGen.state_dict(), 'b': ...}`` -> :class:`MUNITGenerators`.

    Reads the ``gen_%08d.pt`` files of the official trainer and the published ``<name>.pt`` models
    (docs/reference.md §2.3, §8), including the PyTorch 0.3-era files that carry running statistics
    of the content encoder's instance norms (they are dropped, like ``utils.pytorch03_to_pytorch04``
    does). ``dim``, ``style_dim``, ``mlp_dim``, ``n_downsample`` and ``n_res`` are read from the key
    shapes; activation relu and reflect padding are assumed (every official config uses them). Any
    other mismatch raises a ValueError naming the missing and unexpected keys.
    ``AtoB`` is ``gen_a.encode`` -> ``gen_b.decode``.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a dict {{'a': ..., 'b': ...}}, got a {type(state).__name__}")
    if state.get("format") == "toonlab-checkpoint":
        raise ValueError("this is a toonlab training checkpoint; load it with toonlab.checkpoint.load_trained_model(path)")
    if set(state) >= {"gen", "dis"} and "a" not in state:
        raise ValueError("this is an official optimizer.pt ({'gen', 'dis'}); load the generator file gen_*.pt instead")
    missing = [k for k in ("a", "b") if k not in state]
    if missing:
        raise ValueError(
            f"expected a MUNIT generator file holding {{'a': gen_a.state_dict(), 'b': gen_b.state_dict()}}; "
            f"missing {', '.join(repr(k) for k in missing)}; top-level keys found: {describe_keys(map(str, state))}"
        )
    return MUNITGenerators(_generator_from_state(state["a"], "a"), _generator_from_state(state["b"], "b"))
