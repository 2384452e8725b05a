"""AnimeGANv2 face-portrait generator: published layout, shapes, hub loading, face2paint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import to_tensor

import toonlab.hub
from toonlab.models import animegan2
from toonlab.nn import count_parameters


def _conv_norm_keys(prefix: str, conv_bias: bool = False) -> list[str]:
    """Keys of one ConvNormLReLU: conv at index 1, GroupNorm at index 2."""
    conv = [f"{prefix}.1.weight"] + ([f"{prefix}.1.bias"] if conv_bias else [])
    return conv + [f"{prefix}.2.weight", f"{prefix}.2.bias"]


def _published_keys() -> list[str]:
    """The 77 keys of the published files, written out from docs/reference.md §7."""
    keys: list[str] = []
    for i in range(3):
        keys += _conv_norm_keys(f"block_a.{i}")
    for i in range(2):
        keys += _conv_norm_keys(f"block_b.{i}")
    keys += _conv_norm_keys("block_c.0")
    for i in range(1, 5):
        layers = f"block_c.{i}.layers"
        keys += _conv_norm_keys(f"{layers}.0") + _conv_norm_keys(f"{layers}.1", conv_bias=True)
        keys += [f"{layers}.2.weight", f"{layers}.3.weight", f"{layers}.3.bias"]
    keys += _conv_norm_keys("block_c.5")
    for i in range(2):
        keys += _conv_norm_keys(f"block_d.{i}")
    for i in range(3):
        keys += _conv_norm_keys(f"block_e.{i}")
    return keys + ["out_layer.0.weight"]


@pytest.fixture(scope="module")
def generator() -> animegan2.Generator:
    torch.manual_seed(0)
    model = animegan2.Generator().eval()
    with torch.no_grad():  # move the GroupNorm affines off 1/0 so every key matters
        for name, value in model.state_dict().items():
            if value.dim() == 1:
                value.add_(0.1 * torch.randn_like(value))
    return model


def test_parameter_count_and_published_keys(generator):
    state = generator.state_dict()
    assert count_parameters(generator) == 2_143_552
    assert len(state) == 77
    assert list(state) == _published_keys()
    assert state["block_a.0.1.weight"].shape == (32, 3, 7, 7)
    assert state["block_a.1.1.weight"].shape == (64, 32, 3, 3)
    assert state["block_c.1.layers.0.1.weight"].shape == (256, 128, 1, 1)
    assert state["block_c.1.layers.1.1.weight"].shape == (256, 1, 3, 3)  # depthwise
    assert state["block_c.1.layers.1.1.bias"].shape == (256,)
    assert state["block_c.4.layers.2.weight"].shape == (256, 512, 1, 1)
    assert state["block_c.5.1.weight"].shape == (128, 256, 3, 3)
    assert state["block_e.2.1.weight"].shape == (32, 64, 7, 7)
    assert state["out_layer.0.weight"].shape == (3, 32, 1, 1)


@pytest.mark.parametrize("size", [(64, 64), (50, 50), (37, 45)])
def test_output_shape_equals_input_and_range(generator, size):
    x = torch.rand(2, 3, *size) * 2 - 1
    with torch.no_grad():
        y = generator(x)
    assert y.shape == x.shape
    assert y.min() >= -1 and y.max() <= 1
    assert not torch.allclose(y[0], y[1])  # the two inputs give two different outputs


def test_stride2_uses_tf_same_padding(generator):
    """Padding (0, 1, 0, 1) halves even sizes and rounds odd sizes down: 64 -> 32, 50 -> 25, 25 -> 12."""
    with torch.no_grad():
        a64 = generator.block_a(torch.zeros(1, 3, 64, 64))
        a50 = generator.block_a(torch.zeros(1, 3, 50, 50))
        b50 = generator.block_b(a50)
    assert a64.shape[-2:] == (32, 32)
    assert a50.shape[-2:] == (25, 25)
    assert b50.shape[-2:] == (12, 12)
    for stride2 in (generator.block_a[1], generator.block_b[0]):
        assert isinstance(stride2[0], torch.nn.ReflectionPad2d)
        assert stride2[0].padding == (0, 1, 0, 1)  # (left, right, top, bottom): after the image only
        assert stride2[1].stride == (2, 2)


def test_unaligned_upsampling_loses_pixels_on_odd_sizes(generator):
    """``align_corners=False`` is the reference's 2x upsample: 26 -> 13 -> 6 -> 12 -> 24."""
    with torch.no_grad():
        assert generator(torch.zeros(1, 3, 32, 32), align_corners=False).shape[-2:] == (32, 32)
        assert generator(torch.zeros(1, 3, 26, 26), align_corners=False).shape[-2:] == (24, 24)


def test_conv_norm_lrelu_is_reflect_pad_conv_layer_norm_leaky_relu():
    """GroupNorm(1, C) is TF's layer norm over (C, H, W) with a per-channel affine (docs/reference.md §5)."""
    torch.manual_seed(1)
    block = animegan2.ConvNormLReLU(4, 6, kernel_size=3, stride=2, padding=(0, 1, 0, 1))
    with torch.no_grad():
        block[2].weight.normal_()
        block[2].bias.normal_()
        x = torch.randn(2, 4, 9, 9)
        h = F.conv2d(F.pad(x, (0, 1, 0, 1), mode="reflect"), block[1].weight, stride=2)
        mean = h.mean(dim=(1, 2, 3), keepdim=True)
        var = h.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        h = (h - mean) / torch.sqrt(var + 1e-5) * block[2].weight.view(1, -1, 1, 1) + block[2].bias.view(1, -1, 1, 1)
        expected = torch.where(h > 0, h, 0.2 * h)
        assert torch.allclose(block(x), expected, atol=1e-5)
    assert block[1].bias is None


def test_forward_resizes_to_the_encoder_sizes(generator):
    """block_a -> block_b -> block_c -> bilinear (aligned) to block_a's size -> block_d -> to input size -> block_e."""
    x = torch.rand(1, 3, 30, 42) * 2 - 1
    with torch.no_grad():
        half = generator.block_a(x)
        h = generator.block_c(generator.block_b(half))
        h = generator.block_d(F.interpolate(h, size=half.shape[-2:], mode="bilinear", align_corners=True))
        h = generator.block_e(F.interpolate(h, size=(30, 42), mode="bilinear", align_corners=True))
        expected = torch.tanh(F.conv2d(h, generator.out_layer[0].weight))
        assert torch.allclose(generator(x), expected, atol=1e-6)


def test_inverted_residual_block_adds_input_only_when_shapes_match(generator):
    x = torch.randn(1, 256, 6, 6)
    block = animegan2.InvertedResBlock(256, 256)
    with torch.no_grad():
        block.layers[3].weight.zero_()  # the last GroupNorm outputs 0 -> the block is the identity
        block.layers[3].bias.zero_()
        assert torch.equal(block(x), x)
    widen = animegan2.InvertedResBlock(128, 256)
    assert not widen.use_residual
    with torch.no_grad():
        widen.layers[3].weight.zero_()
        widen.layers[3].bias.zero_()
        assert torch.count_nonzero(widen(torch.randn(1, 128, 6, 6))) == 0


@pytest.mark.parametrize(
    "shape, message",
    [((3, 64, 64), "batch dimension"), ((1, 1, 64, 64), r"\(N, 3, H, W\)"), ((1, 3, 6, 64), "at least 8")],
)
def test_bad_input_is_rejected(generator, shape, message):
    with pytest.raises(ValueError, match=message):
        generator(torch.zeros(shape))


def test_load_official_round_trip(generator, tmp_path):
    path = tmp_path / "face_paint_512_v2.pt"
    torch.save(generator.state_dict(), path)
    loaded = toonlab.hub.load_official("animegan2", path)
    assert isinstance(loaded, animegan2.Generator)
    assert not loaded.training
    x = torch.rand(1, 3, 40, 40) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), generator(x))


def test_dataparallel_prefix_is_stripped(generator, tmp_path):
    path = tmp_path / "wrapped.pt"
    torch.save({f"module.{k}": v for k, v in generator.state_dict().items()}, path)
    loaded = toonlab.hub.load_official("animegan2", path)
    for key, value in generator.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_missing_key_raises_checkpoint_error(generator, tmp_path):
    state = dict(generator.state_dict())
    del state["block_c.2.layers.1.1.bias"]
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(toonlab.hub.CheckpointError, match=r"missing key.*block_c\.2\.layers\.1\.1\.bias"):
        toonlab.hub.load_official("animegan2", path)


def test_unexpected_key_and_wrong_shape_are_named(generator):
    state = dict(generator.state_dict())
    state["block_f.0.1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 unexpected key\(s\) \[block_f\.0\.1\.weight\]"):
        animegan2.from_official_state_dict(state)
    state = dict(generator.state_dict())
    state["out_layer.0.weight"] = torch.zeros(3, 64, 1, 1)
    with pytest.raises(ValueError, match=r"out_layer\.0\.weight \(3, 64, 1, 1\) \(expected \(3, 32, 1, 1\)\)"):
        animegan2.from_official_state_dict(state)


def test_face2paint_crops_resizes_and_matches_the_model(generator):
    rng = np.random.default_rng(0)
    photo = Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8))  # 80 wide, 60 high
    cartoon = animegan2.face2paint(generator, photo, size=32)
    assert isinstance(cartoon, Image.Image)
    assert cartoon.size == (32, 32) and cartoon.mode == "RGB"
    # the same steps by hand: centre 60x60 square (columns 10..69), LANCZOS to 32, [-1, 1], model, [0, 255]
    square = photo.crop((10, 0, 70, 60)).resize((32, 32), Image.LANCZOS)
    with torch.no_grad():
        expected = generator(to_tensor(square).unsqueeze(0) * 2 - 1)[0]
    expected = (expected * 0.5 + 0.5).clip(0, 1).permute(1, 2, 0).numpy() * 255
    assert np.abs(np.asarray(cartoon).astype(np.float64) - expected).max() <= 1.0


def test_face2paint_accepts_grey_images_and_rejects_bad_input(generator):
    grey = Image.new("L", (20, 30), color=128)
    assert animegan2.face2paint(generator, grey, size=16).size == (16, 16)
    with pytest.raises(TypeError, match="PIL.Image"):
        animegan2.face2paint(generator, np.zeros((16, 16, 3), dtype=np.uint8), size=16)
    with pytest.raises(ValueError, match="at least 8"):
        animegan2.face2paint(generator, grey, size=4)
    with pytest.raises(ValueError, match="model.to"):
        animegan2.face2paint(generator, grey, size=16, device="meta")
