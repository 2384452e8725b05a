"""The synthetic part segmenter (toonlab.parts): labels, training, the shipped weights, CartoonGAN's use of it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toonlab import parts
from toonlab.data.download import sha256_of
from toonlab.data.synthetic import LABEL_NAMES, describe, render_labels, render_parts
from toonlab.models.base import Precision
from toonlab.models.cartoongan import Config, Model, resolve_content_net


def test_labels_are_the_parts_partition_with_glasses_on_top():
    assert parts.LABELS == LABEL_NAMES
    desc = next(describe(0, i, "test") for i in range(50) if describe(0, i, "test").glasses)
    for style in ("photo", "cartoon"):
        labels = render_labels(desc, 64, style)
        masks = render_parts(desc, 64, style)
        assert labels.dtype == np.uint8 and labels.shape == (64, 64)
        assert (labels == 10).sum() == masks["glasses"].sum() > 0
        for index, name in enumerate(LABEL_NAMES[:-1]):
            np.testing.assert_array_equal(labels == index, masks[name] & ~masks["glasses"])


def test_network_shapes_and_bad_input():
    net = parts.PartsNet(width=4)
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    assert net(x).shape == (2, len(parts.LABELS), 32, 48)
    assert net.features(x).shape == (2, 16, 8, 12)
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net(torch.zeros(3, 32, 32))


def test_content_features_fold_every_level_to_a_quarter_with_fixed_shares():
    net = parts.PartsNet(width=4).eval()
    features = parts.PartsFeatures(net)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = features(x)
    assert out.shape == (2, 16 * 4 + 8 * 4 + 4 * 4 + 3, 8, 8)
    channels = {"full": 64, "half": 32, "parts": 16, "colour": 3}
    shares = {k: features.weights[k] * c / sum(channels.values()) for k, c in channels.items()}
    assert shares == pytest.approx(parts.CONTENT_SHARES) and sum(shares.values()) == pytest.approx(1.0)
    colour = out[:, -3:] / features.weights["colour"]
    torch.testing.assert_close(colour, torch.nn.functional.avg_pool2d(x, 4))  # the 4x4 mean colour
    recoloured = x.clone()
    recoloured[:, 0] = -recoloured[:, 0]  # the same parts, another colour: the colour block sees it
    assert (features(recoloured)[:, -3:] - out[:, -3:]).abs().mean() > 0.1
    assert not any(p.requires_grad for p in features.parameters())
    features.train()
    assert not features.net.training  # BatchNorm keeps its statistics


def test_jitter_keeps_range_and_is_seeded():
    images, _ = parts.labelled_portraits(range(3), 32, 0, "trainA", "trainB")
    a = parts.jitter(images, torch.Generator().manual_seed(1))
    b = parts.jitter(images, torch.Generator().manual_seed(1))
    c = parts.jitter(images, torch.Generator().manual_seed(2))
    assert a.shape == images.shape and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a - images).abs().mean() > 0.01


def test_training_learns_and_is_deterministic():
    net_a, history = parts.train_parts_net(width=4, size=32, steps=40, batch_size=4, lr=5e-3, seed=3, log=None)
    net_b, _ = parts.train_parts_net(width=4, size=32, steps=40, batch_size=4, lr=5e-3, seed=3, log=None)
    for (key, a), b in zip(net_a.state_dict().items(), net_b.state_dict().values()):
        assert torch.equal(a, b), key
    first, last = np.mean([h["loss"] for h in history[:5]]), np.mean([h["loss"] for h in history[-5:]])
    assert last < 0.85 * first
    with pytest.raises(ValueError, match="even batch_size"):
        parts.train_parts_net(steps=1, batch_size=3, log=None)


def test_save_load_round_trip_and_clear_errors(tmp_path):
    net = parts.PartsNet(width=4).eval()
    path = parts.save_parts_net(net, tmp_path / "p.pt", {"recipe": {"width": 4}})
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["bytes"] == path.stat().st_size and len(manifest["sha256"]) == 64
    loaded = parts.load_parts_net(path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded(x), net.half().float()(x), atol=1e-4, rtol=1e-4)  # stored as float16
    with pytest.raises(parts.PartsWeightsUnavailable, match="do not exist.*train_parts_net"):
        parts.load_parts_net(tmp_path / "missing.pt")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(parts.PartsWeightsUnavailable, match="damaged or was replaced"):
        parts.load_parts_net(path)
    torch.save({"weight": torch.zeros(2)}, path)  # foreign content with a matching manifest
    manifest["sha256"] = sha256_of(path)
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(parts.PartsWeightsUnavailable, match="does not hold PartsNet weights"):
        parts.load_parts_net(path)


@pytest.fixture(scope="module")
def shipped():
    return parts.load_parts_net()


def test_shipped_weights_match_their_manifest(shipped):
    manifest = parts.read_manifest()
    assert manifest["recipe"] == parts.RECIPE
    assert manifest["sha256"] == sha256_of(parts.weights_path())
    for style in ("photo", "cartoon"):
        assert manifest["test"][style]["pixel_accuracy"] > 0.9


def test_shipped_network_segments_both_styles(shipped):
    scores = parts.evaluate_parts_net(shipped, n=20)
    for style in ("photo", "cartoon"):
        assert scores[style]["pixel_accuracy"] > 0.9, scores[style]
        for name in ("face", "hair", "eyes"):
            assert scores[style]["iou"][name] > 0.5, (style, name, scores[style]["iou"])


def test_shipped_features_see_the_same_face_in_photo_and_cartoon(shipped):
    """What a content loss needs: a photo's features are nearer its own cartoon's than another face's cartoon."""
    images, _ = parts.labelled_portraits(range(12), 64, 0, "test", "test")
    with torch.no_grad():
        feats = parts.PartsFeatures(shipped)(images)
    photos, cartoons = feats[:12], feats[12:]
    distance = (photos[:, None] - cartoons[None]).abs().mean(dim=(2, 3, 4))  # (photo, cartoon)
    own = distance.diagonal()
    others = (distance.sum(1) - own) / 11
    assert (own < others).float().mean() >= 0.9, (own, others)


# --- CartoonGAN's content network ----------------------------------------------------------------

@pytest.fixture
def no_vgg(monkeypatch, tmp_path):
    monkeypatch.delenv("TOONLAB_VGG19_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_auto_content_net_is_resolved_and_recorded(no_vgg, monkeypatch):
    config = Config.preset("cpu")
    assert config.content_net == "auto"
    model = Model(config)
    assert model.config.content_net == "parts" and model.config_dict()["content_net"] == "parts"
    assert "part segmenter" in model.notes()[0] and "no VGG19 file" in model.notes()[0]
    assert isinstance(model.content_features(), parts.PartsFeatures)
    vgg = no_vgg / "vgg19.pth"
    vgg.write_bytes(b"placed by hand")
    monkeypatch.setenv("TOONLAB_VGG19_WEIGHTS", str(vgg))
    assert resolve_content_net(config).content_net == "vgg19"
    assert resolve_content_net(Config.preset("paper")).content_net == "vgg19"
    with pytest.raises(ValueError, match="unknown content_net"):
        Config.preset("cpu", content_net="resnet")


def test_cartoongan_trains_with_the_part_segmenter(no_vgg):
    model = Model(Config.preset("fast", content_net="parts", image_size=32))
    batch = {"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1,
             "B_smooth": torch.rand(2, 3, 32, 32) * 2 - 1}
    before = [p.clone() for p in model.generator.parameters()]
    losses = model.train_step(batch, Precision("fp32"), 0)
    assert np.isfinite(losses["content"]) and losses["content"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.generator.parameters()))
    assert not any(k.startswith("feature_net.") for k in model.state_dict())
