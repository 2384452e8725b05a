"""Official CycleGAN generator files -> toonlab (docs/reference.md §1.1, §8).

The "official" generator is rebuilt here from plain torch layers, following the published layout
(``model`` Sequential, ``conv_block`` Sequential per residual block), independently of toonlab.
"""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from toonlab import hub
from toonlab.models.cyclegan import ResnetGenerator


pytestmark = pytest.mark.usefixtures("one_thread")


class OfficialStyleBlock(nn.Module):
    def __init__(self, dim: int, norm, use_bias: bool, dropout: bool):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm(dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class OfficialStyleGenerator(nn.Module):
    """ResnetGenerator(3, 3, ngf, norm, dropout, n_blocks) written from the §1.1 layout."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9, dropout: bool = False, batch_norm: bool = False):
        super().__init__()
        if batch_norm:
            norm, use_bias = nn.BatchNorm2d, False
        else:
            norm, use_bias = (lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)), True
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=use_bias), norm(ngf), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=use_bias), norm(ngf * mult * 2), nn.ReLU(True)]
        layers += [OfficialStyleBlock(ngf * 4, norm, use_bias, dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1, bias=use_bias),
                norm(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def official_generator(seed: int = 0, **kwargs) -> OfficialStyleGenerator:
    torch.manual_seed(seed)
    net = OfficialStyleGenerator(**kwargs)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.05)  # random biases too, so a bias that is lost would show
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def paper_official():
    return official_generator()


@pytest.fixture(scope="module")
def sample():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def load_and_compare(tmp_path, state, reference, sample, name="g.pth"):
    path = tmp_path / name
    torch.save(state, path)
    loaded = hub.load_official("cyclegan", path)
    assert isinstance(loaded, ResnetGenerator) and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(sample), reference(sample), atol=1e-6, rtol=0)
    return loaded


def test_official_9_block_file_gives_identical_outputs(tmp_path, paper_official, sample):
    state = paper_official.state_dict()
    assert len(state) == 48
    loaded = load_and_compare(tmp_path, state, paper_official, sample)
    assert list(loaded.state_dict()) == list(state)


def test_stale_instance_norm_stats_are_dropped(tmp_path, paper_official, sample):
    state = dict(paper_official.state_dict())
    for i in (2, 5, 8, 20, 23):
        state[f"model.{i}.running_mean"] = torch.randn(8)
        state[f"model.{i}.running_var"] = torch.rand(8)
        state[f"model.{i}.num_batches_tracked"] = torch.tensor(5)
    for block in range(10, 19):
        for j in (2, 6):
            state[f"model.{block}.conv_block.{j}.running_mean"] = torch.zeros(256)
            state[f"model.{block}.conv_block.{j}.running_var"] = torch.ones(256)
    assert len(state) == 48 + 15 + 36
    load_and_compare(tmp_path, state, paper_official, sample)


def test_dataparallel_prefix(tmp_path, paper_official, sample):
    state = {f"module.{k}": v for k, v in paper_official.state_dict().items()}
    state["module.model.2.running_mean"] = torch.zeros(64)
    load_and_compare(tmp_path, state, paper_official, sample)


def test_dropout_layout(tmp_path, sample):
    reference = official_generator(seed=2, ngf=16, n_blocks=3, dropout=True)
    state = reference.state_dict()
    assert "model.10.conv_block.6.weight" in state and "model.10.conv_block.5.weight" not in state
    loaded = load_and_compare(tmp_path, state, reference, sample)
    assert any(isinstance(m, nn.Dropout) for m in loaded.modules())


def test_six_blocks_other_width_and_batch_norm(tmp_path, sample):
    six = official_generator(seed=3, n_blocks=6)
    loaded = load_and_compare(tmp_path, six.state_dict(), six, sample, "six.pth")
    assert sum(p.numel() for p in loaded.parameters()) == 7_837_699
    narrow_bn = official_generator(seed=4, ngf=8, n_blocks=2, batch_norm=True)
    load_and_compare(tmp_path, narrow_bn.state_dict(), narrow_bn, sample, "bn.pth")


def test_discriminator_file_is_rejected_with_key_names(tmp_path):
    d = nn.Module()
    d.model = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 4, 1, 1))
    path = tmp_path / "d.pth"
    torch.save(d.state_dict(), path)
    with pytest.raises(hub.CheckpointError, match=r"model\.0\.weight"):
        hub.load_official("cyclegan", path)


def test_unexpected_and_missing_keys_are_named(tmp_path, paper_official):
    state = dict(paper_official.state_dict())
    state["model.1.running_mean"] = torch.zeros(64)  # a stat key on a conv: not an InstanceNorm buffer
    path = tmp_path / "extra.pth"
    torch.save(state, path)
    with pytest.raises(hub.CheckpointError, match=r"unexpected keys: model\.1\.running_mean"):
        hub.load_official("cyclegan", path)
    state = dict(paper_official.state_dict())
    del state["model.22.bias"]
    torch.save(state, path)
    with pytest.raises(hub.CheckpointError, match=r"missing keys: model\.22\.bias"):
        hub.load_official("cyclegan", path)
    state = dict(paper_official.state_dict())
    state["model.4.weight"] = torch.zeros(128, 64, 5, 5)
    torch.save(state, path)
    with pytest.raises(hub.CheckpointError, match=r"model\.4\.weight"):
        hub.load_official("cyclegan", path)


def test_pickled_python_objects_are_refused(tmp_path, paper_official):
    state = dict(paper_official.state_dict())
    state["opt"] = argparse.Namespace(lr=0.0002)
    path = tmp_path / "pickle.pth"
    torch.save(state, path)
    with pytest.raises(hub.CheckpointError, match="refuses"):
        hub.load_official("cyclegan", path)


def test_missing_file(tmp_path):
    with pytest.raises(hub.CheckpointError, match="does not exist"):
        hub.load_official("cyclegan", tmp_path / "nope.pth")
