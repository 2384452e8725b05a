"""The published CartoonGAN weights load into toonlab's RGB generator with identical outputs.

``ReferenceTransformer`` is written here from the description of the official ``Transformer``
(docs/reference.md §3.1): flat attribute names, a hand-written instance norm with ``scale``/``shift``
and eps 1e-9, and BGR images in and out. It gets random weights, is saved like a published
``*_net_G_float.pth`` and loaded through :func:`toonlab.hub.load_official`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toonlab import hub
from toonlab.models.cartoongan import Generator


class ReferenceInstanceNorm(nn.Module):
    """Per-channel normalisation with the biased variance and eps 1e-9, then ``* scale + shift``."""

    def __init__(self, channels: int, eps: float = 1e-9):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.rand(channels) + 0.5)
        self.shift = nn.Parameter(torch.randn(channels) * 0.1)

    def forward(self, x):
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
        y = (x - mean) / torch.sqrt(var + self.eps)
        return y * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)


class ReferenceTransformer(nn.Module):
    """The official CartoonGAN generator layout (BGR in [-1, 1] -> BGR in [-1, 1])."""

    def __init__(self):
        super().__init__()
        self.conv01_1 = nn.Conv2d(3, 64, 7)
        self.in01_1 = ReferenceInstanceNorm(64)
        self.conv02_1 = nn.Conv2d(64, 128, 3, 2, 1)
        self.conv02_2 = nn.Conv2d(128, 128, 3, 1, 1)
        self.in02_1 = ReferenceInstanceNorm(128)
        self.conv03_1 = nn.Conv2d(128, 256, 3, 2, 1)
        self.conv03_2 = nn.Conv2d(256, 256, 3, 1, 1)
        self.in03_1 = ReferenceInstanceNorm(256)
        for block in range(4, 12):
            for half in (1, 2):
                setattr(self, f"conv{block:02d}_{half}", nn.Conv2d(256, 256, 3))
                setattr(self, f"in{block:02d}_{half}", ReferenceInstanceNorm(256))
        self.deconv01_1 = nn.ConvTranspose2d(256, 128, 3, 2, 1, 1)
        self.deconv01_2 = nn.Conv2d(128, 128, 3, 1, 1)
        self.in12_1 = ReferenceInstanceNorm(128)
        self.deconv02_1 = nn.ConvTranspose2d(128, 64, 3, 2, 1, 1)
        self.deconv02_2 = nn.Conv2d(64, 64, 3, 1, 1)
        self.in13_1 = ReferenceInstanceNorm(64)
        self.deconv03_1 = nn.Conv2d(64, 3, 7)

    def forward(self, x):
        y = F.relu(self.in01_1(self.conv01_1(F.pad(x, (3, 3, 3, 3), mode="reflect"))))
        y = F.relu(self.in02_1(self.conv02_2(self.conv02_1(y))))
        y = F.relu(self.in03_1(self.conv03_2(self.conv03_1(y))))
        for block in range(4, 12):
            t = getattr(self, f"conv{block:02d}_1")(F.pad(y, (1, 1, 1, 1), mode="reflect"))
            t = F.relu(getattr(self, f"in{block:02d}_1")(t))
            t = getattr(self, f"conv{block:02d}_2")(F.pad(t, (1, 1, 1, 1), mode="reflect"))
            y = y + getattr(self, f"in{block:02d}_2")(t)
        y = F.relu(self.in12_1(self.deconv01_2(self.deconv01_1(y))))
        y = F.relu(self.in13_1(self.deconv02_2(self.deconv02_1(y))))
        return torch.tanh(self.deconv03_1(F.pad(y, (3, 3, 3, 3), mode="reflect")))


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    return ReferenceTransformer().eval()


@pytest.fixture
def official_file(reference, tmp_path):
    path = tmp_path / "Hayao_net_G_float.pth"
    torch.save(reference.state_dict(), path)
    return path


def test_official_weights_give_identical_rgb_outputs(reference, official_file):
    state = torch.load(official_file, weights_only=True)
    assert len(state) == 94 and "in01_1.scale" in state and "deconv03_1.bias" in state
    generator = hub.load_official("cartoongan", official_file)
    assert isinstance(generator, Generator) and not generator.training
    rgb = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        ours = generator(rgb)
        theirs = reference(rgb.flip(1)).flip(1)  # the official model reads and writes BGR
        bgr_unchanged = generator(rgb.flip(1))
    assert ours.shape == rgb.shape
    assert torch.allclose(ours, theirs, atol=2e-5), (ours - theirs).abs().max()
    assert not torch.allclose(bgr_unchanged.flip(1), theirs, atol=1e-3)  # the channel order matters
    with torch.no_grad():  # in float64 only rounding separates them
        ours64 = generator.double()(rgb.double())
        theirs64 = reference.double()(rgb.double().flip(1)).flip(1)
    reference.float()
    assert torch.allclose(ours64, theirs64, atol=1e-10), (ours64 - theirs64).abs().max()


def test_wrong_files_name_the_keys(reference, tmp_path):
    state = reference.state_dict()
    del state["in07_2.scale"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(hub.CheckpointError, match=r"missing keys: in07_2\.scale"):
        hub.load_official("cartoongan", path)

    cyclegan_like = {"model.1.weight": torch.zeros(64, 3, 7, 7), "model.1.bias": torch.zeros(64)}
    torch.save(cyclegan_like, path)
    with pytest.raises(hub.CheckpointError, match=r"conv01_1\.bias.*unexpected keys: model\.1\.bias"):
        hub.load_official("cartoongan", path)

    state = reference.state_dict()
    state["conv02_1.weight"] = torch.zeros(128, 64, 5, 5)
    torch.save(state, path)
    with pytest.raises(hub.CheckpointError, match=r"conv02_1\.weight \(128, 64, 5, 5\) \(expected \(128, 64, 3, 3\)\)"):
        hub.load_official("cartoongan", path)
