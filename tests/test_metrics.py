"""Per-problem metrics on synthetic portraits: each one on cases whose answer is known."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from toonlab.baselines import classical_cartoon, classical_cartoon_image, identity
from toonlab.metrics import synthetic as M
from toonlab.metrics.report import PHOTO, format_markdown, format_table, headline, make_record, write_record

PROTOCOL = M.Protocol(size=64, n=24)


@pytest.fixture(scope="module")
def truth():
    return M.ground_truth(PROTOCOL)


@pytest.fixture(scope="module")
def photo_scores(truth):
    return M.score_images(truth.photos, truth)


def test_the_true_cartoon_scores_perfectly(truth):
    scores = M.score_images(truth.cartoons, truth)
    for name in ("l1", "l1_person", "strange_colours", "shape_l1", "shape_l1_eyes", "shape_l1_nose",
                 "shape_l1_mouth", "skin_error", "hair_error", "glasses_error"):
        assert scores[name] == 0.0, name
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-4)  # float32 windows
    assert scores["psnr"] == 100.0  # identical images: capped, not infinite
    assert scores["eye_size"] == 1.0
    assert scores["hair_iou"] > 0.97  # the nearest-colour hair segmentation of a flat cartoon is almost exact
    assert scores["texture"] < 2.0 and scores["colour_spread"] < 2.0  # only the cel-shadow edge remains
    assert scores["n"] == PROTOCOL.n and 0 < scores["n_with_glasses"] < PROTOCOL.n


def test_the_photo_is_the_identity_baseline_and_far_from_the_cartoon(truth, photo_scores):
    through_the_generator_contract = M.evaluate(identity, PROTOCOL)  # uint8 -> [-1, 1] -> [0, 1]
    assert through_the_generator_contract == pytest.approx(photo_scores, rel=1e-5)
    cartoon = M.score_images(truth.cartoons, truth)
    assert 0.06 < photo_scores["l1"] < 0.2
    assert photo_scores["texture"] > 4 * cartoon["texture"]  # the photo keeps its texture (abstraction)
    assert photo_scores["colour_spread"] > 4 * cartoon["colour_spread"]  # and its shading (colour)
    assert 0.25 < photo_scores["eye_size"] < 0.65  # the photo's eyes are about a third of the cartoon's (shape)
    assert photo_scores["shape_l1"] > photo_scores["l1"]  # the parts whose shape changes are where it differs most
    assert photo_scores["ssim"] < 0.8


def test_a_flat_image_has_no_texture_and_no_spread(truth):
    grey = np.full_like(truth.cartoons, 128)
    scores = M.score_images(grey, truth)
    assert scores["texture"] == pytest.approx(0.0, abs=1e-3) and scores["colour_spread"] == pytest.approx(0.0, abs=1e-2)
    expected = np.abs(128 / 255 - truth.cartoons / 255).mean()
    assert scores["l1"] == pytest.approx(expected, abs=1e-6)
    assert scores["strange_colours"] > 0.5  # grey skin, hair and clothes are the wrong colours
    assert scores["eye_size"] == 0.0  # no eyes at all


def test_a_known_colour_shift(truth):
    cartoons = truth.cartoons.astype(np.float32) / 255
    darker = cartoons * 0.9  # a lightness change: every pixel 10 % darker, same hue
    scores = M.score_images(darker, truth)
    assert scores["l1"] == pytest.approx((cartoons * 0.1).mean(), abs=1e-6)
    assert scores["strange_colours"] < 0.05  # shading is not a strange colour
    swapped = cartoons[..., ::-1]  # red <-> blue: skin turns blue
    hue = M.score_images(swapped, truth)
    assert hue["strange_colours"] > 0.5 and hue["skin_error"] > 20
    assert hue["texture"] == pytest.approx(M.score_images(cartoons, truth)["texture"], rel=0.3)


def test_a_known_blur(truth, photo_scores):
    blurred = np.stack([cv2.GaussianBlur(im, (0, 0), 1.5) for im in truth.cartoons])
    scores = M.score_images(blurred, truth)
    assert 0.0 < scores["l1"] < photo_scores["l1"]
    assert 0.5 < scores["ssim"] < 0.99
    assert scores["shape_l1"] > 0.02  # blurred eyes, nose and mouth differ from the sharp ones
    photo_blur = np.stack([cv2.GaussianBlur(im, (0, 0), 1.5) for im in truth.photos])
    assert M.score_images(photo_blur, truth)["texture"] < 0.5 * photo_scores["texture"]


def test_eyes_painted_over_are_measured_as_missing(truth):
    closed = truth.cartoons.copy()
    for k, masks in enumerate(truth.masks):
        skin = np.median(truth.cartoons[k][masks["face"]], axis=0)
        closed[k][M._dilate(masks["eyes"], 2)] = skin.astype(np.uint8)
    assert M.score_images(closed, truth)["eye_size"] < 0.3


def test_per_image_functions_agree_with_the_batch(truth):
    image = truth.photos[3].astype(np.float32) / 255
    target = truth.cartoons[3].astype(np.float32) / 255
    masks = truth.masks[3]
    assert M.texture(image, masks) > M.texture(target, masks)
    assert M.colour_spread(image, masks) > M.colour_spread(target, masks)
    assert M.strange_colours(target, target, masks) == 0.0
    errors = M.feature_errors(image, target, masks)
    assert set(errors) == {"shape_l1", "shape_l1_eyes", "shape_l1_nose", "shape_l1_mouth"}
    assert M.eye_area(target, masks, truth.photo_masks[3]) > M.eye_area(image, masks, truth.photo_masks[3]) > 0


def test_inputs_in_every_form_give_the_same_scores(truth):
    as_tensor = torch.from_numpy(truth.photos).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert M.score_images(as_tensor, truth)["l1"] == pytest.approx(M.score_images(truth.photos, truth)["l1"], abs=1e-5)
    with pytest.raises(ValueError, match="shape"):
        M.score_images(truth.photos[:3], truth)


def test_protocol_is_named_and_validated():
    protocol = M.Protocol()
    assert (protocol.size, protocol.n, protocol.seed, protocol.start) == (64, 100, 0, 0)
    assert protocol.name == "toonlab-synthetic-v1: seed 0, test identities 0-99, 64 px"
    assert protocol.to_dict()["version"] == M.PROTOCOL_VERSION
    with pytest.raises(ValueError):
        M.Protocol(n=0)
    with pytest.raises(ValueError):
        M.Protocol(size=8)


def test_translator_must_keep_the_shape(truth):
    with pytest.raises(ValueError, match="one RGB image per photo"):
        M.evaluate(lambda x: x[:, :, ::2, ::2], PROTOCOL)


def test_the_classical_filter_beats_the_photo_on_texture_and_flatness(photo_scores):
    scores = M.evaluate(classical_cartoon, PROTOCOL)
    assert scores["texture"] < 0.5 * photo_scores["texture"]
    assert scores["colour_spread"] < photo_scores["colour_spread"]
    image = M.ground_truth(PROTOCOL).photos[0]
    assert np.array_equal(classical_cartoon_image(image), classical_cartoon_image(image))  # seeded k-means
    assert len(np.unique(classical_cartoon_image(image).reshape(-1, 3), axis=0)) <= 8
    with pytest.raises(ValueError, match="uint8 RGB"):
        classical_cartoon_image(image.astype(np.float32))


def test_report_table_headline_and_json(tmp_path, truth, photo_scores):
    results = {"model": M.score_images(truth.cartoons, truth), PHOTO: photo_scores}
    table = format_table(results)
    assert "l1_person ↓" in table and "ssim ↑" in table and "eye_size →1" in table
    assert table.splitlines()[2].startswith("model") and PHOTO in table
    assert format_markdown(results).count("\n") == 3
    line = headline(results["model"], photo_scores)
    assert line.startswith("L1 person 0.000 (photo ") and "SSIM 1.000" in line
    record = make_record(results, PROTOCOL, model={"name": "model"})
    record["results"]["model"]["hair_error"] = math.nan
    path = write_record(record, tmp_path / "m.json")
    loaded = json.loads(path.read_text())
    assert loaded["protocol"]["name"] == PROTOCOL.name and loaded["results"]["model"]["hair_error"] is None
    assert loaded["directions"]["texture"] == -1 and "CPU" in loaded["machine"]


def test_animegan2_joins_the_baselines_only_when_its_weights_are_on_disk(tmp_path, monkeypatch):
    from toonlab import baselines
    from toonlab.models import animegan2

    monkeypatch.setenv("TOONLAB_DATA", str(tmp_path))
    assert baselines.animegan2_weights() is None
    assert list(baselines.baseline_translators()) == [PHOTO, "classical filter"]
    torch.manual_seed(0)
    path = tmp_path / "pretrained" / "animegan2" / "face_paint_512_v2.pt"
    path.parent.mkdir(parents=True)
    torch.save(animegan2.Generator().state_dict(), path)  # a stand-in for the published file, same layout
    assert baselines.animegan2_weights() == path
    translators = baselines.baseline_translators()
    assert list(translators) == [PHOTO, "classical filter", "AnimeGANv2 face"]
    photos = M.ground_truth(PROTOCOL).photo_batch()[:2]
    with torch.no_grad():
        out = translators["AnimeGANv2 face"](photos)
    assert out.shape == photos.shape and out.abs().max() <= 1  # run at 256 px, resized back to the protocol's size


def test_shape_following_knows_redrawn_from_recoloured(truth):
    cartoons = truth.cartoon_batch()
    assert torch.equal(cartoons, torch.from_numpy(truth.cartoons).permute(0, 3, 1, 2).float().div(127.5).sub(1))
    perfect = M.shape_following(cartoons, truth)
    assert (perfect["eye_growth"], perfect["face_outline"], perfect["skin_error"]) == (1.0, 1.0, 0.0)
    assert perfect["n_eye_growth"] > 0 and perfect["n_face_outline"] > 0
    photo = M.shape_following(truth.photo_batch(), truth)
    assert photo["eye_growth"] < 0.6 and photo["skin_error"] > 0.02  # the photo keeps skin where many eye pixels grew
    regions = M.shape_regions(truth.masks[0], truth.photo_masks[0])
    assert regions["eye growth"].any() and not (regions["eye growth"] & truth.photo_masks[0]["eyes"]).any()


def test_scored_training_trains_in_chunks_and_scores_after_each():
    from toonlab.metrics.report import scored_training
    from toonlab.train import make_trainer

    trainer = make_trainer("xgan", "fast", progress=False, n_samples=2)
    rows = list(scored_training(trainer, steps=5, every=2, protocol=M.Protocol(size=32, n=4)))
    assert [step for step, _, _ in rows] == [2, 4, 5] and trainer.step == 5
    assert 0 < rows[0][1] <= rows[1][1] <= rows[2][1]  # training seconds only add up
    assert all({"l1_person", "eye_size", "strange_colours"} <= set(scores) for _, _, scores in rows)
