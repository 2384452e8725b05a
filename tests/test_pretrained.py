"""Converged models by name (toonlab.pretrained): generator-only files, checked, loaded, refused to resume."""

from __future__ import annotations

import json

import pytest
import torch

from toonlab import pretrained
from toonlab.checkpoint import CheckpointError, load_trained_model, read_checkpoint
from toonlab.cli import main
from toonlab.models import build_model
from toonlab.train import Trainer

KINDS = ("cyclegan", "cartoongan", "munit")


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """An empty weights folder in place of the package's, so the names resolve to files the test makes."""
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "weights")
    return tmp_path / "weights"


def ship(kind: str, folder) -> torch.nn.Module:
    model = build_model(kind, "fast").eval()
    pretrained.save_pretrained(model, folder / f"{kind}-synthetic.pt", {"recipe": {"steps": 7, "seed": 0}})
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_generators_only_round_trip_by_name(kind, weights_dir):
    model = ship(kind, weights_dir)
    name = f"{kind}-synthetic"
    state = torch.load(weights_dir / f"{name}.pt", weights_only=True)
    keys = set(state["model"])
    assert keys and all(k.split(".")[0] in model.generator_names for k in keys)
    assert all(v.dtype == torch.float16 for v in state["model"].values() if v.is_floating_point())
    manifest = json.loads((weights_dir / f"{name}.json").read_text())
    assert manifest["kind"] == kind and len(manifest["sha256"]) == 64 and manifest["recipe"]["steps"] == 7
    loaded = load_trained_model(name)
    assert loaded.kind == kind and read_checkpoint(name)["step"] == 7
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    expected, got = model.translator("AtoB", 0)(x), loaded.translator("AtoB", 0)(x)
    assert 0 < (expected - got).abs().max() < 0.02  # float16 weights: close, not bit-equal
    assert name in pretrained.available()


def test_a_converged_model_cannot_resume_training(weights_dir, capsys):
    ship("cyclegan", weights_dir)
    with pytest.raises(CheckpointError, match="cannot resume"):
        Trainer.from_checkpoint("cyclegan-synthetic", None)
    assert main(["train", "cyclegan", "--resume", "cyclegan-synthetic", "--steps", "1", "--quiet"]) == 2
    assert "holds only the generators" in capsys.readouterr().err


def test_damaged_missing_and_foreign_files_are_refused(weights_dir, tmp_path):
    with pytest.raises(CheckpointError, match="not installed.*train_converged.py cyclegan"):
        load_trained_model("cyclegan-synthetic")
    ship("cyclegan", weights_dir)
    path = weights_dir / "cyclegan-synthetic.pt"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged or was replaced"):
        load_trained_model("cyclegan-synthetic")
    # a MUNIT file under the CycleGAN name
    ship("munit", weights_dir)
    (weights_dir / "munit-synthetic.pt").replace(path)
    (weights_dir / "munit-synthetic.json").replace(path.with_suffix(".json"))
    with pytest.raises(CheckpointError, match="holds a munit model, not cyclegan"):
        load_trained_model("cyclegan-synthetic")
    with pytest.raises(pretrained.PretrainedUnavailable, match="unknown pretrained model"):
        pretrained.pretrained_path("xgan-synthetic-v9")


def test_generator_weights_must_fit(weights_dir):
    model = ship("cartoongan", weights_dir)
    state = pretrained.read_named("cartoongan-synthetic")
    del state["model"][next(iter(state["model"]))]
    with pytest.raises(CheckpointError, match="missing"):
        pretrained.load_generators(model, state, "x.pt")
    state["model"]["discriminator.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected"):
        pretrained.load_generators(model, state, "x.pt")


def test_cli_translate_and_eval_take_the_name(weights_dir, tmp_path, capsys):
    ship("munit", weights_dir)
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 150, 120)).save(photo)
    assert main(["translate", "munit-synthetic", str(photo), str(tmp_path / "out.png"), "--num-styles", "2"]) == 0
    assert len(list(tmp_path.glob("out*.png"))) == 2
    out = tmp_path / "e.json"
    assert main(["eval", "munit-synthetic", "--n", "4", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["model"]["checkpoint"].endswith("munit-synthetic.pt") and record["model"]["step"] == 7
    assert 0 < record["results"]["munit"]["l1"] < 1


@pytest.mark.parametrize("name", sorted(pretrained.available()))
def test_shipped_models_match_their_manifest_and_scores(name):
    """Every converged model in the package loads (sha256 checked) and scores what its manifest says."""
    from toonlab.metrics.report import score_model
    from toonlab.metrics.synthetic import Protocol

    manifest = pretrained.read_manifest(pretrained.pretrained_path(name))
    model = load_trained_model(name)
    assert model.kind == pretrained.NAMES[name]
    protocol = Protocol(size=int(model.config.image_size), n=16)
    scores = score_model(model, protocol)
    assert scores["l1_person"] == pytest.approx(manifest["scores_n16"]["l1_person"], abs=2e-3)
