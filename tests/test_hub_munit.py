"""Official MUNIT generator files load through toonlab.hub with identical encode/decode outputs.

The reference below is written independently for this test from the facts in
docs/reference.md §2.1 and §8 (module layout and names of the official ``networks.py``): its own
conv block, MUNIT layer norm, and AdaIN done the official way (batch norm over the (1, N*C, H, W)
reshape with dummy running statistics). Nothing is shared with ``toonlab.models.munit``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import toonlab.hub
from toonlab.hub import CheckpointError
from toonlab.models import munit

# --- an independent reference in the official module layout --------------------------------------


class RefLayerNorm(nn.Module):
    """Per-sample mean and unbiased std over (C, H, W); ``(x - mean) / (std + eps) * gamma + beta``."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.rand(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        n = x.size(0)
        mean = x.view(n, -1).mean(1).view(n, 1, 1, 1)
        std = x.view(n, -1).std(1).view(n, 1, 1, 1)
        return (x - mean) / (std + self.eps) * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


class RefAdaIN(nn.Module):
    """AdaIN as the official code computes it: training-mode batch norm on a (1, N*C, H, W) view."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = channels, eps, momentum
        self.weight = None
        self.bias = None
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x):
        n, c, h, w = x.shape
        out = F.batch_norm(x.contiguous().view(1, n * c, h, w), self.running_mean.repeat(n),
                           self.running_var.repeat(n), self.weight, self.bias, True, self.momentum, self.eps)
        return out.view(n, c, h, w)


class RefConvBlock(nn.Module):
    """pad -> conv -> norm -> activation; registered as pad, norm, activation, conv (key order)."""

    def __init__(self, cin, cout, k, s, p, norm="none", act="relu"):
        super().__init__()
        self.pad = nn.ReflectionPad2d(p)
        self.norm = {"none": None, "in": nn.InstanceNorm2d(cout), "ln": RefLayerNorm(cout),
                     "adain": RefAdaIN(cout)}[norm]
        self.activation = {"relu": nn.ReLU(), "lrelu": nn.LeakyReLU(0.2), "tanh": nn.Tanh(), "none": None}[act]
        self.conv = nn.Conv2d(cin, cout, k, s, bias=True)

    def forward(self, x):
        x = self.conv(self.pad(x))
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class RefResBlock(nn.Module):
    def __init__(self, dim, norm):
        super().__init__()
        self.model = nn.Sequential(RefConvBlock(dim, dim, 3, 1, 1, norm, "relu"), RefConvBlock(dim, dim, 3, 1, 1, norm, "none"))

    def forward(self, x):
        return self.model(x) + x


class RefResBlocks(nn.Module):
    def __init__(self, n, dim, norm):
        super().__init__()
        self.model = nn.Sequential(*[RefResBlock(dim, norm) for _ in range(n)])

    def forward(self, x):
        return self.model(x)


class RefStyleEncoder(nn.Module):
    def __init__(self, dim, style_dim):
        super().__init__()
        layers = [RefConvBlock(3, dim, 7, 1, 3), RefConvBlock(dim, 2 * dim, 4, 2, 1),
                  RefConvBlock(2 * dim, 4 * dim, 4, 2, 1), RefConvBlock(4 * dim, 4 * dim, 4, 2, 1),
                  RefConvBlock(4 * dim, 4 * dim, 4, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Conv2d(4 * dim, style_dim, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class RefContentEncoder(nn.Module):
    def __init__(self, dim, n_down, n_res):
        super().__init__()
        layers = [RefConvBlock(3, dim, 7, 1, 3, "in")]
        for _ in range(n_down):
            layers.append(RefConvBlock(dim, 2 * dim, 4, 2, 1, "in"))
            dim *= 2
        layers.append(RefResBlocks(n_res, dim, "in"))
        self.model = nn.Sequential(*layers)
        self.output_dim = dim

    def forward(self, x):
        return self.model(x)


class RefDecoder(nn.Module):
    def __init__(self, n_up, n_res, dim):
        super().__init__()
        layers = [RefResBlocks(n_res, dim, "adain")]
        for _ in range(n_up):
            layers += [nn.Upsample(scale_factor=2), RefConvBlock(dim, dim // 2, 5, 1, 2, "ln")]
            dim //= 2
        layers.append(RefConvBlock(dim, 3, 7, 1, 3, "none", "tanh"))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class RefLinear(nn.Module):
    def __init__(self, cin, cout, relu):
        super().__init__()
        self.fc = nn.Linear(cin, cout)
        self.relu = relu

    def forward(self, x):
        x = self.fc(x)
        return F.relu(x) if self.relu else x


class RefMLP(nn.Module):
    def __init__(self, cin, cout, dim):
        super().__init__()
        self.model = nn.Sequential(RefLinear(cin, dim, True), RefLinear(dim, dim, True), RefLinear(dim, cout, False))

    def forward(self, x):
        return self.model(x.view(x.size(0), -1))


class RefAdaINGen(nn.Module):
    def __init__(self, dim=64, style_dim=8, mlp_dim=256, n_down=2, n_res=4):
        super().__init__()
        self.enc_style = RefStyleEncoder(dim, style_dim)
        self.enc_content = RefContentEncoder(dim, n_down, n_res)
        self.dec = RefDecoder(n_down, n_res, self.enc_content.output_dim)
        n_params = sum(2 * m.num_features for m in self.dec.modules() if isinstance(m, RefAdaIN))
        self.mlp = RefMLP(style_dim, n_params, mlp_dim)

    def encode(self, x):
        return self.enc_content(x), self.enc_style(x)

    def decode(self, content, style):
        params = self.mlp(style)
        for m in self.dec.modules():  # module order; mean (bias) first, then std (weight)
            if isinstance(m, RefAdaIN):
                c = m.num_features
                m.bias = params[:, :c].contiguous().view(-1)
                m.weight = params[:, c:2 * c].contiguous().view(-1)
                params = params[:, 2 * c:]
        return self.dec(content)


def _randomised(gen: RefAdaINGen) -> RefAdaINGen:
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.endswith(("beta", "bias")):
                p.uniform_(-0.2, 0.2)
    return gen.eval()


def _old_instance_norm_keys(n_down: int, n_res: int, dim: int) -> dict[str, torch.Tensor]:
    """PyTorch 0.3-era extra keys of the published files (docs/reference.md §2.3, §8)."""
    extra = {}
    channels = [dim * 2**k for k in range(n_down + 1)]
    for k, c in enumerate(channels):
        extra[f"enc_content.model.{k}.norm.running_mean"] = torch.randn(c)
        extra[f"enc_content.model.{k}.norm.running_var"] = torch.rand(c) + 0.5
    for i in range(n_res):
        for j in range(2):
            for stat in ("running_mean", "running_var"):
                extra[f"enc_content.model.{n_down + 1}.model.{i}.model.{j}.norm.{stat}"] = torch.rand(channels[-1])
    return extra


def _assert_same_codes_and_images(ref_a, ref_b, loaded, size=32):
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        for ref, gen in ((ref_a, loaded.gen_a), (ref_b, loaded.gen_b)):
            content, style = gen.encode(x)
            ref_content, ref_style = ref.encode(x)
            torch.testing.assert_close(content, ref_content, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(style, ref_style, atol=1e-5, rtol=1e-5)
            other_style = torch.randn(2, style.size(1), 1, 1)
            torch.testing.assert_close(gen.decode(content, other_style), ref.decode(ref_content, other_style),
                                       atol=1e-5, rtol=1e-5)
        # a2b as the official test.py: gen_a's content, gen_b's decoder
        s = torch.randn(1, ref_b.mlp.model[0].fc.in_features, 1, 1)
        expected = ref_b.decode(ref_a.encode(x)[0], s.expand(2, -1, -1, -1))
        torch.testing.assert_close(loaded.translate(x, "AtoB", style=s), expected, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def paper_pair():
    torch.manual_seed(0)
    return _randomised(RefAdaINGen()), _randomised(RefAdaINGen())


def test_official_paper_file_loads_with_identical_outputs(paper_pair, tmp_path):
    ref_a, ref_b = paper_pair
    assert sum(p.numel() for p in ref_a.parameters()) == 15_026_187 and len(ref_a.state_dict()) == 82
    path = tmp_path / "gen_00010000.pt"
    torch.save({"a": ref_a.state_dict(), "b": ref_b.state_dict()}, path)
    loaded = toonlab.hub.load_official("munit", path)
    assert isinstance(loaded, munit.MUNITGenerators) and not loaded.training
    assert list(loaded.gen_a.state_dict()) == list(ref_a.state_dict())
    _assert_same_codes_and_images(ref_a, ref_b, loaded)


def test_old_published_file_with_instance_norm_stats_loads(paper_pair, tmp_path):
    ref_a, ref_b = paper_pair
    state = {}
    for name, ref in (("a", ref_a), ("b", ref_b)):
        state[name] = {**ref.state_dict(), **_old_instance_norm_keys(2, 4, 64)}
        assert len(state[name]) == 82 + 6 + 16
    path = tmp_path / "edges2shoes.pt"
    torch.save(state, path)
    loaded = toonlab.hub.load_official("munit", path)
    _assert_same_codes_and_images(ref_a, ref_b, loaded)


def test_dimensions_are_read_from_the_keys(tmp_path):
    torch.manual_seed(1)
    ref_a = _randomised(RefAdaINGen(dim=8, style_dim=4, mlp_dim=16, n_down=1, n_res=2))
    ref_b = _randomised(RefAdaINGen(dim=8, style_dim=4, mlp_dim=16, n_down=1, n_res=2))
    path = tmp_path / "small.pt"
    torch.save({"a": {**ref_a.state_dict(), **_old_instance_norm_keys(1, 2, 8)}, "b": ref_b.state_dict()}, path)
    loaded = toonlab.hub.load_official("munit", path)
    assert loaded.style_dim == 4
    assert loaded.gen_a.enc_content.output_dim == 16 and loaded.gen_a.n_downsample == 1
    _assert_same_codes_and_images(ref_a, ref_b, loaded, size=16)


def test_wrong_files_raise_checkpoint_errors(paper_pair, tmp_path):
    ref_a, _ = paper_pair
    cases = {
        "single.pt": (ref_a.state_dict(), "missing 'a', 'b'"),
        "dis.pt": ({"a": munit.MultiScaleDiscriminator(dim=4).state_dict(),
                    "b": munit.MultiScaleDiscriminator(dim=4).state_dict()}, "dis_"),
        "optimizer.pt": ({"gen": {}, "dis": {}}, "optimizer"),
        "tensor.pt": (torch.zeros(3), "not a state dict"),
    }
    broken = dict(ref_a.state_dict())
    del broken["dec.model.2.norm.gamma"]
    broken["dec.model.9.conv.weight"] = torch.zeros(1)
    cases["broken.pt"] = ({"a": broken, "b": ref_a.state_dict()}, r"dec\.model\.2\.norm\.gamma.*dec\.model\.9\.conv\.weight")
    for name, (content, message) in cases.items():
        path = tmp_path / name
        torch.save(content, path)
        with pytest.raises(CheckpointError, match=message):
            toonlab.hub.load_official("munit", path)
