"""AnimeGANv2 face-portrait generator, inference only (docs/reference.md §5, §7, §8).

AnimeGANv2 (Chen, Liu & Chen, "AnimeGAN: a novel lightweight GAN for photo animation", 2019; v2 2020)
is the strongest public portrait -> anime baseline. Its face models (``face_paint_512_v1``,
``face_paint_512_v2``, ``celeba_distill``) and the ``paprika`` scene model were published as plain
PyTorch state dicts of one architecture, without training code. toonlab only loads and runs them:
notebook 05 (compare) uses it as the pretrained baseline through
``toonlab.hub.load_official("animegan2", path)`` and :func:`face2paint`.

The generator is an encoder -> inverted-residual bottleneck -> decoder:

* every convolution sits in a :class:`ConvNormLReLU` (explicit padding, bias-free conv,
  ``GroupNorm(1, C)`` = TF's layer norm over (C, H, W) with a per-channel affine, LeakyReLU 0.2);
* the two stride-2 convs pad ``(0, 1, 0, 1)`` (TF "SAME"), so odd sizes round down;
* the decoder resizes bilinearly back to the exact encoder sizes instead of using transposed convs.

Attribute names and ``nn.Sequential`` indices follow the published files (docs/reference.md §7), so
they load with ``strict=True``: 2,143,552 parameters in 77 state-dict keys.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.transforms.functional import to_pil_image, to_tensor

from toonlab.hub import describe_keys, strip_wrapper_prefixes
from toonlab.nn import make_padding

#: The smallest height/width the generator accepts: after the two stride-2 convs the 3x3 reflection
#: pads of ``block_c`` need at least 2 pixels (8 -> 4 -> 2).
MIN_INPUT_SIZE = 8

#: (padding left, right, top, bottom) of the stride-2 convs: TF "SAME" pads only after the image.
SAME_STRIDE2_PADDING = (0, 1, 0, 1)


class ConvNormLReLU(nn.Sequential):
    """``[pad, conv (no bias unless asked), GroupNorm(1, C), LeakyReLU(0.2)]`` at indices 0..3.

    Keys: ``1.weight`` (``1.bias`` for the depthwise conv), ``2.weight``, ``2.bias``.
    ``padding`` is an int or a ``(left, right, top, bottom)`` tuple; ``pad_mode`` is a
    :func:`toonlab.nn.make_padding` kind (``reflect`` in every layer of the published model).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | tuple[int, int, int, int] = 1,
        pad_mode: str = "reflect",
        groups: int = 1,
        bias: bool = False,
    ):
        super().__init__(
            make_padding(pad_mode, padding),
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=bias),
            nn.GroupNorm(num_groups=1, num_channels=out_channels, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )


class InvertedResBlock(nn.Module):
    """MobileNetV2-style block: 1x1 expand -> depthwise 3x3 (+bias) -> 1x1 project -> GroupNorm.

    ``layers`` indices (expansion 2): ``0`` expand :class:`ConvNormLReLU`, ``1`` depthwise
    :class:`ConvNormLReLU`, ``2`` project conv, ``3`` GroupNorm (no activation after projecting).
    The input is added back only when ``in_channels == out_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion_ratio: float = 2):
        super().__init__()
        self.use_residual = in_channels == out_channels
        hidden = int(round(in_channels * expansion_ratio))
        layers: list[nn.Module] = []
        if expansion_ratio != 1:
            layers.append(ConvNormLReLU(in_channels, hidden, kernel_size=1, padding=0))
        layers += [
            ConvNormLReLU(hidden, hidden, groups=hidden, bias=True),
            nn.Conv2d(hidden, out_channels, kernel_size=1, bias=False),
            nn.GroupNorm(num_groups=1, num_channels=out_channels, affine=True),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.use_residual else out


class Generator(nn.Module):
    """AnimeGANv2 generator: RGB in [-1, 1], shape (N, 3, H, W) -> RGB in [-1, 1], same H and W.

    ``block_a`` (full, then half resolution) -> ``block_b`` (quarter) -> ``block_c`` (4 inverted
    residual blocks at 256 channels) -> resize to ``block_a``'s size -> ``block_d`` -> resize to the
    input size -> ``block_e`` -> ``out_layer`` (1x1 conv + tanh).
    """

    def __init__(self):
        super().__init__()
        self.block_a = nn.Sequential(
            ConvNormLReLU(3, 32, kernel_size=7, padding=3),
            ConvNormLReLU(32, 64, stride=2, padding=SAME_STRIDE2_PADDING),
            ConvNormLReLU(64, 64),
        )
        self.block_b = nn.Sequential(
            ConvNormLReLU(64, 128, stride=2, padding=SAME_STRIDE2_PADDING),
            ConvNormLReLU(128, 128),
        )
        self.block_c = nn.Sequential(
            ConvNormLReLU(128, 128),
            InvertedResBlock(128, 256, expansion_ratio=2),
            InvertedResBlock(256, 256, expansion_ratio=2),
            InvertedResBlock(256, 256, expansion_ratio=2),
            InvertedResBlock(256, 256, expansion_ratio=2),
            ConvNormLReLU(256, 128),
        )
        self.block_d = nn.Sequential(
            ConvNormLReLU(128, 128),
            ConvNormLReLU(128, 128),
        )
        self.block_e = nn.Sequential(
            ConvNormLReLU(128, 64),
            ConvNormLReLU(64, 64),
            ConvNormLReLU(64, 32, kernel_size=7, padding=3),
        )
        self.out_layer = nn.Sequential(
            nn.Conv2d(32, 3, kernel_size=1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor, align_corners: bool = True) -> torch.Tensor:
        """Translate a batch. ``align_corners=True`` (the hub / face2paint default) resizes to the exact
        encoder and input sizes; ``False`` reproduces ``test.py --upsample_align False``: a 2x upsample
        without aligned corners, which loses a pixel per odd size (250 -> 248)."""
        if x.dim() != 4 or x.size(1) != 3:
            raise ValueError(
                f"AnimeGANv2 expects RGB images of shape (N, 3, H, W) in [-1, 1], got shape {tuple(x.shape)}; "
                "add a batch dimension with x.unsqueeze(0) or convert grey images to RGB"
            )
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(
                f"AnimeGANv2 needs images of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels, "
                f"got {tuple(x.shape[-2:])}; resize the input first"
            )
        out = self.block_a(x)
        half_size = out.shape[-2:]
        out = self.block_c(self.block_b(out))
        out = self._upsample(out, half_size, align_corners)
        out = self.block_d(out)
        out = self._upsample(out, x.shape[-2:], align_corners)
        out = self.block_e(out)
        return self.out_layer(out)

    @staticmethod
    def _upsample(x: torch.Tensor, size: torch.Size, align_corners: bool) -> torch.Tensor:
        if align_corners:
            return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def from_official_state_dict(state: Mapping[str, torch.Tensor]) -> Generator:
    """A :class:`Generator` (eval mode) holding a published AnimeGANv2 state dict.

    Accepts the files of ``bryandlee/animegan2-pytorch`` (``face_paint_512_v1/v2``, ``celeba_distill``,
    ``paprika``) and any ``Generator().state_dict()``; a ``module.`` prefix (DataParallel) is
    stripped. Raises ``ValueError`` naming the missing, unexpected or wrongly shaped keys otherwise
    (:func:`toonlab.hub.load_official` turns it into a ``CheckpointError``).
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a state dict (a mapping of key -> tensor), got {type(state).__name__}")
    state = strip_wrapper_prefixes(state)
    model = Generator()
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise ValueError(
            "not an AnimeGANv2 Generator state dict: "
            f"{len(missing)} missing key(s) [{describe_keys(missing, limit=5)}], "
            f"{len(unexpected)} unexpected key(s) [{describe_keys(unexpected, limit=5)}]. "
            "Pass one of the published weights/*.pt files or a toonlab.models.animegan2.Generator().state_dict()"
        )
    wrong = [
        f"{key} {tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__} "
        f"(expected {tuple(expected[key].shape)})"
        for key, value in state.items()
        if not isinstance(value, torch.Tensor) or value.shape != expected[key].shape
    ]
    if wrong:
        raise ValueError(f"AnimeGANv2 state dict has {len(wrong)} wrongly shaped value(s): "
                         f"[{describe_keys(wrong, limit=5)}]")
    model.load_state_dict(state, strict=True)
    return model.eval()


def face2paint(
    model: nn.Module,
    image: Image.Image,
    size: int = 512,
    device: str | torch.device = "cpu",
    align_corners: bool = True,
) -> Image.Image:
    """Cartoonise a portrait photo: centre-crop a square, resize to ``size`` (LANCZOS), run the model.

    The same steps as the reference ``face2paint`` (docs/reference.md §5): RGB ``to_tensor * 2 - 1``,
    forward under ``torch.no_grad()``, ``(y * 0.5 + 0.5).clip(0, 1)`` back to an RGB PIL image of
    ``size`` x ``size``. The face models were trained on 512x512 faces (``celeba_distill`` on 256).
    ``model`` must already be on ``device``.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(
            f"face2paint expects a PIL.Image, got {type(image).__name__}; open a file with PIL.Image.open(path)"
        )
    if not isinstance(size, int) or size < MIN_INPUT_SIZE:
        raise ValueError(f"size must be an int of at least {MIN_INPUT_SIZE} pixels, got {size!r}")
    device = torch.device(device)
    model_devices = {p.device for p in model.parameters()}
    if any(not _same_device(d, device) for d in model_devices):
        raise ValueError(
            f"the model is on {', '.join(sorted(map(str, model_devices)))} but face2paint was asked to run on "
            f"{device}; move it with model.to({str(device)!r}) or pass device=<the model's device>"
        )
    image = image.convert("RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
    with torch.no_grad():
        photo = to_tensor(square).unsqueeze(0).to(device) * 2 - 1
        cartoon = model(photo) if align_corners else model(photo, align_corners=False)
        cartoon = cartoon[0].float().cpu()
    return to_pil_image((cartoon * 0.5 + 0.5).clip(0, 1))


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    """``cuda:0`` matches ``cuda`` (an unindexed device means the current one)."""
    return actual.type == wanted.type and (wanted.index is None or actual.index == wanted.index)
