"""`toonlab train xgan`, `translate` and `eval` with XGAN, end to end on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from toonlab.cli import main
from toonlab.train import load_trained_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli_xgan") / "run"
    assert main(["train", "xgan", "--preset", "fast", "--steps", "3", "--run-dir", str(run), "--quiet",
                 "--device", "cpu", "--hparam", "dann_w=0.5", "--no-eval"]) == 0
    return run


def test_train_writes_an_xgan_checkpoint(run_dir):
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert state["kind"] == "xgan" and state["step"] == 3 and len(state["history"]) == 3
    assert set(state["optimizers"]) == {"D", "G"}
    assert state["config"]["dann_w"] == 0.5 and state["config"]["image_size"] == 32
    assert {"rec_A", "rec_B", "dann", "sem_A", "sem_B", "gan_B", "D_total", "G_total"} <= set(state["history"][-1])
    assert (run_dir / "result.png").is_file()


def test_translate_writes_what_the_model_translates(run_dir, tmp_path):
    photo = tmp_path / "photo.png"
    array = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(array).save(photo)
    out = tmp_path / "cartoon.png"
    assert main(["translate", str(run_dir), str(photo), str(out), "--device", "cpu"]) == 0
    written = [out]
    model = load_trained_model(run_dir)
    x = torch.from_numpy(array).permute(2, 0, 1).float().unsqueeze(0) / 127.5 - 1
    expected = ((model.translate(x)[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    got = np.asarray(Image.open(written[0]).convert("RGB"))
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_eval_scores_the_run_on_the_synthetic_protocol(run_dir, tmp_path):
    result = tmp_path / "eval.json"
    assert main(["eval", str(run_dir), "--n", "4", "--json", str(result), "--device", "cpu"]) == 0
    scores = json.loads(result.read_text())
    text = json.dumps(scores)
    assert "l1_person" in text and "eye_size" in text and "xgan" in text
