"""KID and FID (toonlab.metrics.distribution) with small injected feature networks; no network access."""

from __future__ import annotations

import socket
import urllib.error
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toonlab.data.synthetic import SyntheticPortraits
from toonlab.metrics import distribution
from toonlab.metrics.distribution import (
    FID_MIN_SAMPLES,
    INCEPTION_FEATURE_DIM,
    INCEPTION_FEATURE_NAME,
    INCEPTION_WEIGHTS_FILE,
    INCEPTION_WEIGHTS_URL,
    InceptionWeightsUnavailable,
    SmallSampleWarning,
    distribution_metrics,
    inception_weights_file,
    load_inception,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class TextureStats(nn.Module):
    """A tiny hand-made feature network: colour mean/spread, high-frequency energy, dark-outline share.

    Photos have texture and sensor noise, cartoons flat colours and outlines, so it separates them well.
    """

    name = "texture-stats"

    def __init__(self):
        super().__init__()
        laplacian = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
        self.register_buffer("laplacian", laplacian)

    def forward(self, x):
        high = F.conv2d(x, self.laplacian, groups=3).abs()
        dark = (x.mean(1) < -0.7).float().mean((1, 2), keepdim=False)[:, None]
        return torch.cat([x.mean((2, 3)), x.std((2, 3)), 4 * high.mean((2, 3)), 4 * high.std((2, 3)), 10 * dark], 1)


@pytest.fixture(scope="module")
def portraits():
    """40 synthetic test photos ("A") and their cartoons ("B"), 32 x 32, in [-1, 1]."""
    return SyntheticPortraits(size=32, split="test").test_batch(40)


@pytest.fixture(scope="module")
def stats():
    return TextureStats()


def quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return distribution_metrics(*args, **kwargs)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def test_identical_sets_score_zero(portraits, stats):
    photos = portraits["A"][:20]
    different = quiet(photos, portraits["B"][20:], feature=stats)
    same = quiet(photos, photos, feature=stats)
    assert abs(same["fid"]) < 1e-6
    # the unbiased MMD of a set with itself is slightly negative (O(1/n)), tiny next to a real difference
    assert abs(same["kid_mean"]) < 0.05 * different["kid_mean"]


def test_photos_and_cartoons_are_far_apart(portraits, stats):
    photos, cartoons = portraits["A"], portraits["B"]
    across = quiet(photos[:20], cartoons[20:], feature=stats)  # different identities, different style
    photo_vs_photo = quiet(photos[:20], photos[20:], feature=stats)  # disjoint samples of one distribution
    cartoon_vs_cartoon = quiet(cartoons[:20], cartoons[20:], feature=stats)
    own_kid = max(photo_vs_photo["kid_mean"], cartoon_vs_cartoon["kid_mean"])
    own_fid = max(photo_vs_photo["fid"], cartoon_vs_cartoon["fid"])
    assert across["kid_mean"] > 10 * own_kid and across["kid_mean"] > 1
    assert across["fid"] > 4 * own_fid
    assert min(across["fid"], photo_vs_photo["fid"], cartoon_vs_cartoon["fid"]) > 0


def test_counts_name_and_keys(portraits, stats):
    real = [portraits["B"][:8], portraits["B"][8:20]]  # an iterable of batches
    result = quiet(real, portraits["A"][:15], feature=stats, batch_size=4)
    assert set(result) == {"kid_mean", "kid_std", "fid", "n_real", "n_fake", "kid_subset_size", "kid_subsets",
                           "feature", "feature_dim", "warnings"}
    assert (result["n_real"], result["n_fake"]) == (20, 15)
    assert result["feature"] == "texture-stats" and result["feature_dim"] == 13
    assert all(isinstance(result[k], float) for k in ("kid_mean", "kid_std", "fid"))
    # a plain function works as well; its name is reported
    def colour_means(x):
        return x.mean((2, 3))

    assert quiet(real, portraits["A"][:15], feature=colour_means)["feature"] == "colour_means"


def test_small_sets_warn_that_fid_is_biased(portraits, stats):
    with pytest.warns(SmallSampleWarning, match="FID on 20 images") as caught:
        result = distribution_metrics(portraits["A"][:20], portraits["B"][20:], feature=stats)
    assert len(result["warnings"]) == 1 and "read KID" in result["warnings"][0]
    assert str(FID_MIN_SAMPLES) in result["warnings"][0] and FID_MIN_SAMPLES == INCEPTION_FEATURE_DIM == 2048
    assert [str(w.message) for w in caught if issubclass(w.category, SmallSampleWarning)] == result["warnings"]


def test_no_warning_when_fid_has_enough_samples(portraits, stats, monkeypatch):
    monkeypatch.setattr(distribution, "FID_MIN_SAMPLES", 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning, ours or torchmetrics', fails
        result = distribution_metrics(portraits["A"][:20], portraits["B"][20:], feature=stats)
    assert result["warnings"] == []


def test_kid_subset_size_is_capped_at_the_sample_size(portraits, stats, monkeypatch):
    photos, cartoons = portraits["A"], portraits["B"]
    assert quiet(photos[:20], cartoons[:12], feature=stats)["kid_subset_size"] == 12  # min(1000, n)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        capped = distribution_metrics(photos[:20], cartoons[:12], feature=stats, kid_subset_size=500)
    assert any("kid_subset_size=500 is larger" in str(w.message) for w in caught)
    assert capped["kid_subset_size"] == 12 and any("kid_subset_size" in w for w in capped["warnings"])
    # the 1000 of the reference implementation is a ceiling, not a requirement
    monkeypatch.setattr(distribution, "KID_MAX_SUBSET_SIZE", 8)
    sub = quiet(photos[:20], cartoons[20:], feature=stats, kid_subsets=30)
    assert sub["kid_subset_size"] == 8 and sub["kid_subsets"] == 30 and sub["kid_std"] > 0


def test_kid_subsets_are_seeded_and_leave_the_global_rng_alone(portraits, stats):
    args = (portraits["A"][:20], portraits["B"][20:])
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = quiet(*args, feature=stats, kid_subset_size=6, seed=1)
    assert torch.equal(torch.rand(1), expected_next)
    again = quiet(*args, feature=stats, kid_subset_size=6, seed=1)
    other = quiet(*args, feature=stats, kid_subset_size=6, seed=2)
    assert first["kid_mean"] == again["kid_mean"] and first["kid_mean"] != other["kid_mean"]


def test_uint8_input_and_module_mode(portraits):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net.train()
    photos, cartoons = portraits["A"][:10], portraits["B"][10:20]
    as_float = quiet(photos, cartoons, feature=net)
    assert net.training and net[1].num_batches_tracked.item() == 0  # ran in eval mode, mode restored
    as_bytes = quiet(((photos + 1) * 127.5).round().to(torch.uint8), ((cartoons + 1) * 127.5).round().byte(),
                     feature=net)
    assert as_float["feature"] == "Sequential" and as_float["feature_dim"] == 8
    assert as_bytes["fid"] == pytest.approx(as_float["fid"], rel=1e-2, abs=1e-4)


def test_bad_inputs_are_refused(portraits, stats):
    photos = portraits["A"][:4]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        quiet(photos * 255, photos, feature=stats)
    with pytest.raises(ValueError, match=r"\(N,3,H,W\)"):
        quiet(photos[:, :1], photos, feature=stats)
    with pytest.raises(ValueError, match="at least 2 images"):
        quiet(photos[:1], photos, feature=stats)
    with pytest.raises(TypeError, match="image tensor"):
        quiet(42, photos, feature=stats)
    with pytest.raises(ValueError, match=r"\(4, D\) features"):
        quiet(photos, photos, feature=lambda x: x.mean())


def test_weight_constants_match_torch_fidelity(tmp_path, monkeypatch):
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert INCEPTION_WEIGHTS_URL == URL_INCEPTION_V3
    assert INCEPTION_WEIGHTS_FILE == "weights-inception-2015-12-05-6726825d.pth"
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert inception_weights_file() == tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE


def test_offline_error_says_which_file_to_put_where(portraits, tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # no torch.hub.set_dir override: TORCH_HOME decides
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []

    def offline(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst))
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(InceptionWeightsUnavailable) as err:
        distribution_metrics(portraits["A"][:4], portraits["B"][:4], device="cpu")
    target = tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE
    assert calls == [(INCEPTION_WEIGHTS_URL, str(target))]
    text = str(err.value)
    assert isinstance(err.value, RuntimeError)
    assert str(target) in text and str(target.parent) in text and INCEPTION_WEIGHTS_FILE in text
    assert INCEPTION_WEIGHTS_URL in text and "TORCH_HOME" in text and "name resolution" in text
    assert not target.exists()


def test_missing_or_corrupt_weight_file_is_reported(tmp_path, no_network):
    with pytest.raises(InceptionWeightsUnavailable, match="does not exist"):
        load_inception(tmp_path / "nope.pth")
    bad = tmp_path / INCEPTION_WEIGHTS_FILE
    bad.write_bytes(b"not a state dict")
    with pytest.raises(InceptionWeightsUnavailable, match="delete it and download it again") as err:
        load_inception(bad)
    assert INCEPTION_WEIGHTS_URL in str(err.value)


def test_default_inception_path_end_to_end(portraits, tmp_path, monkeypatch, no_network):
    """The real torch-fidelity network on uint8 images, with random weights (the real file is not here)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    target = inception_weights_file()
    target.parent.mkdir(parents=True)
    torch.save({}, target)  # a cached file, so nothing is downloaded ...
    # ... whose (empty) state_dict is not loaded into the randomly initialised network
    monkeypatch.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    # the network's smallest input instead of 299 x 299: the same layers, 16x less work (this tests the wiring)
    from torchmetrics.image.fid import NoTrainInceptionV3

    monkeypatch.setattr(NoTrainInceptionV3, "INPUT_IMAGE_SIZE", 75)
    # the reference (TF1) resize, not the antialiased one torchmetrics >= 1.8 uses by default
    import torchmetrics.image.fid as tm_fid

    resized = []
    reference_resize = tm_fid.interpolate_bilinear_2d_like_tensorflow1x

    def spy(x, *args, **kwargs):
        resized.append(tuple(x.shape))
        return reference_resize(x, *args, **kwargs)

    monkeypatch.setattr(tm_fid, "interpolate_bilinear_2d_like_tensorflow1x", spy)
    with pytest.warns(SmallSampleWarning):
        # torchmetrics' wrapper of torch-fidelity's network asserts that it is given uint8 images
        result = distribution_metrics(portraits["A"][:2], portraits["B"][:2], device="cpu")
    assert resized == [(2, 3, 32, 32), (2, 3, 32, 32)]
    assert result["feature"] == INCEPTION_FEATURE_NAME and result["feature_dim"] == INCEPTION_FEATURE_DIM
    assert (result["n_real"], result["n_fake"], result["kid_subset_size"]) == (2, 2, 2)
    assert all(torch.isfinite(torch.tensor(result[k])) for k in ("kid_mean", "kid_std", "fid"))


def test_uint8_conversion_rounds_like_png():
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 1.0005]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert distribution._to_uint8(x)[0, 0, 0].tolist() == [0, 64, 128, 255, 255]
