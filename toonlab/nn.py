"""Building blocks shared by the models: normalisations, padding, conv blocks, residual blocks, init,
the image pool of generated images the discriminators see (CycleGAN, CartoonGAN).

Each block keeps the attribute names and ``nn.Sequential`` indices of the reference code it comes
from, so published checkpoints load without renaming (docs/reference.md §1.1, §2.1, §8).
Notebook 01 §"Block 1 — the residual block" rebuilds :class:`ResnetBlock`; notebook 03 §"AdaIN" rebuilds
:class:`AdaptiveInstanceNorm2d` and :class:`LayerNorm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("instance", "instance_affine", "batch", "layer", "adain", "none")
PADDINGS = ("reflect", "replicate", "zero")


class LayerNorm(nn.Module):
    """MUNIT's layer norm (docs/reference.md §2.1): per sample, over (C, H, W).

    ``y = (x - mean) / (std + eps) * gamma + beta`` with the *unbiased* standard deviation and
    ``eps`` added to the deviation, not the variance. It differs from ``nn.GroupNorm(1, C)`` (biased
    variance, eps inside the square root) by ~4e-5, so it is written out. ``gamma ~ U(0, 1)``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.affine = affine
        if affine:
            self.gamma = nn.Parameter(torch.rand(num_features))
            self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (x.dim() - 1)
        flat = x.reshape(x.size(0), -1)
        mean = flat.mean(1).view(shape)
        std = flat.std(1).view(shape)
        x = (x - mean) / (std + self.eps)
        if self.affine:
            affine_shape = (1, -1) + (1,) * (x.dim() - 2)
            x = x * self.gamma.view(affine_shape) + self.beta.view(affine_shape)
        return x


class AdaptiveInstanceNorm2d(nn.Module):
    """Adaptive instance normalisation (Huang & Belongie 2017; MUNIT eq. in §3 of the paper).

    ``y = instance_norm(x) * weight + bias`` where ``weight`` (a std) and ``bias`` (a mean) are not
    learned here but written per sample by MUNIT's MLP before every decode: set ``self.weight`` and
    ``self.bias`` to tensors of shape ``(N * C,)`` or ``(N, C)``.

    The ``running_mean``/``running_var`` buffers are never used; they exist because the official
    implementation has them, so its checkpoints load with ``strict=True``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None or self.bias is None:
            raise RuntimeError(
                "AdaptiveInstanceNorm2d has no style parameters: assign weight and bias "
                "(MUNIT's decoder does this from the style code) before calling it"
            )
        n, c = x.shape[:2]
        weight = self.weight.reshape(n, c, 1, 1)
        bias = self.bias.reshape(n, c, 1, 1)
        return F.instance_norm(x, eps=self.eps) * weight + bias

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def make_norm(kind: str, channels: int, eps: float = 1e-5) -> nn.Module:
    """Normalisation layer by name (see :data:`NORMS`).

    ``instance`` is CycleGAN's: no affine, no running statistics. ``instance_affine`` is CartoonGAN's
    learnable scale/shift variant. ``none`` returns ``nn.Identity`` (no parameters, no keys).
    """
    if kind == "instance":
        return nn.InstanceNorm2d(channels, eps=eps, affine=False, track_running_stats=False)
    if kind == "instance_affine":
        return nn.InstanceNorm2d(channels, eps=eps, affine=True, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, eps=eps)
    if kind == "layer":
        return LayerNorm(channels, eps=eps)
    if kind == "adain":
        return AdaptiveInstanceNorm2d(channels, eps=eps)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


def make_padding(kind: str, size: int) -> nn.Module:
    """Explicit padding layer: ``reflect``, ``replicate`` or ``zero``."""
    if kind == "reflect":
        return nn.ReflectionPad2d(size)
    if kind == "replicate":
        return nn.ReplicationPad2d(size)
    if kind == "zero":
        return nn.ZeroPad2d(size)
    raise ValueError(f"unknown padding {kind!r}; choose one of {', '.join(PADDINGS)}")


def make_activation(kind: str) -> nn.Module:
    """``relu``, ``lrelu`` (slope 0.2), ``tanh`` or ``none``."""
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    if kind == "tanh":
        return nn.Tanh()
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {kind!r}; choose relu, lrelu, tanh or none")


class ResnetBlock(nn.Module):
    """``x + conv_block(x)`` with ``conv_block = [pad, conv3x3, norm, ReLU, (dropout), pad, conv3x3, norm]``.

    The CycleGAN ResnetBlock (docs/reference.md §1.1): without dropout and with reflect padding the
    two convolutions sit at ``conv_block.1`` and ``conv_block.5``, as in the official checkpoints.
    With ``padding="zero"`` the padding moves into the convolutions (and the indices shift), as in
    the official code. CartoonGAN uses it with ``norm="instance_affine"``.
    """

    def __init__(
        self,
        channels: int,
        norm: str = "instance",
        padding: str = "reflect",
        dropout: bool = False,
        bias: bool = True,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        for second in (False, True):
            conv_pad = 0
            if padding == "zero":
                conv_pad = 1
            else:
                layers.append(make_padding(padding, 1))
            layers += [
                nn.Conv2d(channels, channels, 3, padding=conv_pad, bias=bias),
                make_norm(norm, channels, eps=norm_eps),
            ]
            if not second:
                layers.append(nn.ReLU(True))
                if dropout:
                    layers.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class Conv2dBlock(nn.Module):
    """MUNIT's ``Conv2dBlock``: pad -> conv (bias) -> norm -> activation (docs/reference.md §2.1).

    Attribute names (``pad``, ``norm``, ``activation``, ``conv``) match the official checkpoints'
    keys, e.g. ``enc_style.model.0.conv.weight`` and ``dec.model.2.norm.gamma``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int = 0,
        norm: str = "none",
        activation: str = "relu",
        pad_type: str = "zero",
    ):
        super().__init__()
        self.pad = make_padding(pad_type, padding)
        self.norm = make_norm(norm, out_channels)
        self.activation = make_activation(activation)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.conv(self.pad(x))))


def guided_filter(x: torch.Tensor, radius: int = 1, eps: float = 0.01) -> torch.Tensor:
    """Edge-preserving smoothing: the self-guided filter of He, Sun & Tang (ECCV 2010, eqs. 7-8), per channel.

    ``x`` in [-1, 1] (N, C, H, W); ``eps`` is in [0, 1] intensity units squared. In each
    (2r+1)^2 window the output is the best linear fit ``a * x + b`` with ``a = var / (var + eps)``:
    where the window varies much more than ``eps`` (an edge) the image passes unchanged, where it
    varies less (texture, noise) it is flattened to the window mean. Differentiable, so a generator
    may use it on its input skip (CycleGAN's ``skip_filter="guided"``; White-box Cartoonization, Wang &
    Yu 2020, smooths with the same filter).
    """
    u = (x + 1) * 0.5

    def box(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)

    mean = box(u)
    var = (box(u * u) - mean * mean).clamp_min(0)
    a = var / (var + eps)
    b = mean - a * mean
    return (box(a) * u + box(b)) * 2 - 1


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels (kernel radius ceil(3 sigma))."""
    from torchvision.transforms.functional import gaussian_blur

    radius = max(1, math.ceil(3 * sigma))
    return gaussian_blur(x, [2 * radius + 1] * 2, [sigma] * 2)


#: how an :class:`InputSkip` smooths the input it hands on
SKIP_FILTERS = ("gaussian", "guided")


class InputSkip(nn.Module):
    """toonlab's input skip for a generator (off in every ``paper`` preset): ``tanh(atanh(smooth(x)) + change)``.

    The generator's layers before its final tanh predict ``change``, a change of the (smoothed) input
    in pre-tanh space. Why: training starts near the photo instead of from noise and only has to
    learn what a cartoon adds (exactly at the photo when the last convolution starts at zero, as
    CartoonGAN's skip does; CycleGAN's N(0, 0.02) start is a change of about 0.3).
    ``smooth``: ``"gaussian"`` with sigma ``sigma`` (0: the input unchanged) or ``"guided"``
    (:func:`guided_filter` with ``radius`` and ``eps``: texture flattened, edges kept), so the
    photo's texture is not inherited. No parameters: state dicts are those of the plain generator.
    """

    def __init__(self, smoothing: str = "gaussian", sigma: float = 0.0, radius: int = 1, eps: float = 0.01):
        super().__init__()
        self.check_smoothing(smoothing)
        self.smoothing, self.sigma, self.radius, self.eps = smoothing, float(sigma), int(radius), float(eps)

    @staticmethod
    def check_smoothing(smoothing: str) -> None:
        """Raise a ValueError unless ``smoothing`` is one of :data:`SKIP_FILTERS` (the configs' ``skip_filter``)."""
        if smoothing not in SKIP_FILTERS:
            raise ValueError(f"unknown skip_filter {smoothing!r}; choose one of {', '.join(SKIP_FILTERS)}")

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        if self.smoothing == "guided":
            return guided_filter(x, self.radius, self.eps)
        return blur(x, self.sigma) if self.sigma > 0 else x

    def forward(self, x: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.atanh(self.smooth(x).clamp(-0.999, 0.999)) + change)

    @classmethod
    def from_config(cls, config) -> "InputSkip | None":
        """The skip a model config asks for (fields ``input_skip``, ``skip_filter``, ``skip_blur``,
        ``guided_radius``, ``guided_eps``), or None when ``input_skip`` is off."""
        if not config.input_skip:
            return None
        return cls(config.skip_filter, config.skip_blur, config.guided_radius, config.guided_eps)


@dataclass
class InputSkipOptions:
    """The config fields of :class:`InputSkip`, shared by the configs whose generators take it (CycleGAN, CartoonGAN).

    toonlab deviation, off in every ``paper`` preset: with ``input_skip`` the generator predicts a change
    of its smoothed input, so training starts from a flattened photo instead of from noise (the measured
    effect: docs/reference.md, the ``cpu`` presets' comments). A model config inherits these fields.
    """

    input_skip: bool = False
    #: ``"guided"``: the self-guided filter (:func:`guided_filter`, window radius ``guided_radius``,
    #: ``guided_eps``) flattens texture but keeps edges, so the skip hands on a flat photo with sharp outlines;
    #: ``"gaussian"``: a blur of sigma ``skip_blur`` pixels (0: the input unchanged), flat colours without edges
    skip_filter: str = "guided"
    skip_blur: float = 0.0
    guided_radius: int = 1
    guided_eps: float = 0.01

    def validate_input_skip(self) -> None:
        """Raise a ValueError naming a bad skip field (the configs' ``validate`` calls it)."""
        from toonlab.config import check_at_least

        InputSkip.check_smoothing(self.skip_filter)
        check_at_least(self, 0, ("skip_blur", "guided_radius", "guided_eps"))


#: CartoonFilterOptions.cartoon_filter: the cartoon decoder's output as drawn, or through the self-guided filter
CARTOON_FILTERS = ("none", "guided")


def apply_cartoon_filter(images: torch.Tensor, eps: float | None) -> torch.Tensor:
    """The cartoon filter on drawn cartoons: :func:`guided_filter` with radius 1 and ``eps``; ``None`` leaves them as drawn."""
    return images if eps is None else guided_filter(images, 1, eps)


@dataclass
class CartoonFilterOptions:
    """The cartoon filter's config fields, shared by the encoder-decoders (MUNIT, XGAN).

    toonlab deviation, off in every ``paper`` preset: ``cartoon_filter="guided"`` passes every cartoon the
    model draws through the self-guided filter (:func:`guided_filter`, radius 1, ``cartoon_filter_eps``),
    a parameter-free last layer that flattens speckle and keeps outlines, as CycleGAN's guided input skip
    does. The losses and the discriminator see the filtered cartoon, so the decoder learns to draw for it.
    """

    cartoon_filter: str = "none"
    cartoon_filter_eps: float = 0.01

    def validate_cartoon_filter(self) -> None:
        """Raise a ValueError naming a bad cartoon-filter field (the configs' ``validate`` calls it)."""
        from toonlab.config import check_at_least

        if self.cartoon_filter not in CARTOON_FILTERS:
            raise ValueError(f"unknown cartoon_filter {self.cartoon_filter!r}; choose one of {', '.join(CARTOON_FILTERS)}")
        check_at_least(self, 0, ("cartoon_filter_eps",))

    def cartoon_filter_notes(self) -> list[str]:
        """The line a model's ``notes()`` prints when the filter is on (none when off)."""
        if self.cartoon_filter == "none":
            return []
        return [f"cartoon filter {self.cartoon_filter} (eps {self.cartoon_filter_eps}): drawn cartoons are smoothed, "
                "outlines kept (not in the paper)"]

    @property
    def active_cartoon_filter_eps(self) -> float | None:
        """The eps :func:`apply_cartoon_filter` takes for this config: ``cartoon_filter_eps`` when on, else None."""
        return self.cartoon_filter_eps if self.cartoon_filter == "guided" else None

    def filter_cartoons(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (drawn cartoons in [-1, 1]) through the filter this config asks for."""
        return apply_cartoon_filter(images, self.active_cartoon_filter_eps)


class FrozenNets:
    """A model's frozen helper networks (content or perceptual features), kept outside its module tree.

    Why outside: what is frozen is not trained, so it belongs in no ``state_dict()`` (checkpoints hold
    only what training changes), no ``parameters()`` and no optimiser, and ``model.train()`` must not
    switch it out of eval mode. The one way every model keeps such a network (CartoonGAN's content
    network, MUNIT's VGG16); :meth:`get` moves it next to the tensors it will see.
    """

    def __init__(self):
        self._nets: dict[str, nn.Module] = {}

    def put(self, name: str, net: nn.Module) -> nn.Module:
        """Keep ``net`` under ``name``, in eval mode and without gradients."""
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self._nets[name] = net
        return net

    def __contains__(self, name: str) -> bool:
        return name in self._nets

    def get(self, name: str, device: torch.device | str | None = None,
            memory_format: torch.memory_format | None = None) -> nn.Module | None:
        """The network kept under ``name`` (None if none), moved to ``device`` / ``memory_format`` when given."""
        net = self._nets.get(name)
        moves = {key: value for key, value in (("device", device), ("memory_format", memory_format)) if value is not None}
        if net is not None and moves:
            net.to(**moves)
        return net


def init_weights(module: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv and linear layers in place and return the module.

    * ``normal``: weights ~ N(0, gain) (CycleGAN, CartoonGAN, MUNIT discriminators; gain 0.02)
    * ``kaiming``: He normal, fan-in (MUNIT generators)
    * ``xavier``: Glorot normal with ``gain``
    Biases are set to 0; BatchNorm weights ~ N(1, gain). Other norms keep their own init.
    """
    if kind not in ("normal", "kaiming", "xavier"):
        raise ValueError(f"unknown init {kind!r}; choose normal, kaiming or xavier")
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return module


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def set_requires_grad(modules, flag: bool) -> None:
    """Freeze (``False``) or unfreeze the parameters of one module or a list of modules."""
    if isinstance(modules, nn.Module):
        modules = [modules]
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


# --- image pool ----------------------------------------------------------------------------------


class ImagePool:
    """History of generated images that the discriminators see (Shrivastava et al. 2017; CycleGAN paper §4).

    Per image of a batch, as the official ``util/image_pool.py``: while fewer than ``pool_size``
    images are stored, store it and return it; once full, with probability 1/2 return a random stored
    image and put the new one in its place, else return the new image. ``pool_size=0`` returns the
    batch unchanged. The coin flips come from an own ``torch.Generator`` whose state is part of
    :meth:`state_dict`, so a resumed run draws exactly what an uninterrupted run would.
    Notebook 01 §"Discriminator loss and the image pool".
    """

    def __init__(self, pool_size: int = 50, seed: int = 0):
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size = int(pool_size)
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(int(seed))

    @classmethod
    def for_model(cls, pool_size: int, model_seed: int, index: int = 1) -> "ImagePool":
        """The ``index``-th pool (1, 2 ...) of a model whose config seed is ``model_seed``: seeded ``2 * model_seed + index``.

        Why a formula: each pool flips its own coins, apart from the other pool's and from the model's
        weight draws, and two model seeds never share a pool seed (seed 0: pools 1 and 2; seed 1: 3 and 4).
        """
        return cls(pool_size, seed=2 * int(model_seed) + int(index))

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch of the same size: new images while filling, then a 50/50 mix with the history."""
        images = images.detach()
        if self.pool_size == 0 or images.size(0) == 0:
            return images
        returned = []
        for image in images:
            image = image.unsqueeze(0).clone()
            if len(self.images) < self.pool_size:
                self.images.append(image)
                returned.append(image)
            elif torch.rand(1, generator=self.generator).item() > 0.5:
                index = int(torch.randint(self.pool_size, (1,), generator=self.generator).item())
                returned.append(self.images[index].to(device=images.device, dtype=images.dtype))
                self.images[index] = image
            else:
                returned.append(image)
        return torch.cat(returned, 0)

    def state_dict(self) -> dict[str, Any]:
        """Pool size, stored images (one CPU tensor, ``(n, C, H, W)``) and the generator state."""
        stored = torch.cat([im.cpu() for im in self.images], 0) if self.images else torch.empty(0)
        return {"pool_size": self.pool_size, "images": stored, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state["pool_size"]) != self.pool_size:
            raise ValueError(
                f"the saved image pool holds up to {state['pool_size']} images but this one {self.pool_size}; "
                "build the model with the pool_size of the checkpoint"
            )
        stored = state["images"]
        self.images = [stored[i : i + 1].clone() for i in range(stored.size(0))] if stored.numel() else []
        self.generator.set_state(state["generator"].clone())
