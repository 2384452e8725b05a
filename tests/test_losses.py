"""GAN criteria and the VGG feature network (offline behaviour, file placement, normalisation)."""

from __future__ import annotations

import math

import pytest
import torch

from toonlab import losses
from toonlab.losses import GANLoss, VGGWeightsUnavailable, load_vgg_features


def test_lsgan_and_vanilla_values():
    pred = torch.tensor([[0.0, 2.0]])
    assert GANLoss("lsgan")(pred, True).item() == pytest.approx((1 + 1) / 2)
    assert GANLoss("lsgan")(pred, False).item() == pytest.approx((0 + 4) / 2)
    expected = (math.log(2) + math.log(1 + math.exp(-2))) / 2  # -log(sigmoid(x)) averaged
    assert GANLoss("vanilla")(pred, True).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="unknown GAN mode"):
        GANLoss("wgan")


def test_multiscale_predictions_are_summed():
    preds = [torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 2, 2)]
    assert GANLoss("lsgan")(preds, True).item() == pytest.approx(1.0 + 0.0)
    assert GANLoss("lsgan")(preds, False).item() == pytest.approx(0.0 + 1.0)


@pytest.fixture
def vgg_file(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    trunk = make_layers(cfgs["E"])
    state = {f"features.{k}": v for k, v in trunk.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # the classifier is ignored
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    return path, trunk


def test_vgg_from_a_placed_file_keeps_layers_up_to_conv4_4(vgg_file):
    path, trunk = vgg_file
    net = load_vgg_features("conv4_4", weights=path)
    assert len(net.features) == 26 and isinstance(net.features[25], torch.nn.Conv2d)
    assert torch.equal(net.features[25].weight, trunk[25].weight)
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    expected = trunk[:26]((((x + 1) / 2) - torch.tensor(losses.IMAGENET_MEAN).view(1, 3, 1, 1))
                          / torch.tensor(losses.IMAGENET_STD).view(1, 3, 1, 1))
    assert torch.allclose(net(x), expected, atol=1e-5)
    net.train()
    assert not net.features.training


def test_vgg_env_variable_points_at_the_file(vgg_file, monkeypatch):
    monkeypatch.setenv(losses.VGG_ENV, str(vgg_file[0]))
    net = load_vgg_features()
    assert torch.equal(net.features[0].weight, vgg_file[1][0].weight)


def test_offline_error_says_how_to_place_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(losses.VGG_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(url, dst, hash_prefix=None, progress=True):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(VGGWeightsUnavailable) as err:
        load_vgg_features()
    text = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in text and losses.VGG_ENV in text and "name resolution" in text
    assert str(tmp_path / "hub" / "checkpoints") in text


def test_missing_or_corrupt_file_is_reported(tmp_path):
    with pytest.raises(VGGWeightsUnavailable, match="does not exist"):
        load_vgg_features(weights=tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(VGGWeightsUnavailable, match="not a readable"):
        load_vgg_features(weights=bad)
    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        load_vgg_features("conv9_9", weights=None)
