"""`toonlab train cartoongan` and `toonlab translate` with CartoonGAN, offline (notebook 02's command-line twin).

The fast preset uses a random VGG, so training needs no download. The published style files are
imitated by a toonlab :class:`~toonlab.models.cartoongan.Generator` with random weights, written out
in the official layout: the 94 flat names of :func:`~toonlab.models.cartoongan.official_key_map`,
``scale``/``shift`` for the instance norms, and BGR channel order in the first and last convolution.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from toonlab.cli import main
from toonlab.models import cartoongan
from toonlab.train import load_trained_model

STEPS = 4


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli_cartoongan") / "run"
    code = main(["train", "cartoongan", "--preset", "fast", "--steps", str(STEPS), "--run-dir", str(run), "--quiet"])
    assert code == 0
    return run


@pytest.fixture
def photo(tmp_path):
    """A 48x40 RGB photo with a horizontal and a vertical colour gradient (sides multiples of 4)."""
    y, x = np.mgrid[0:40, 0:48]
    rgb = np.stack([x * 5, y * 6, 255 - x * 3], axis=-1).clip(0, 255).astype(np.uint8)
    path = tmp_path / "me.png"
    Image.fromarray(rgb).save(path)
    return path


def as_input(path, size=None) -> torch.Tensor:
    """The CLI's preprocessing: RGB in [-1, 1], optionally resized to size x size."""
    from torchvision.transforms.functional import pil_to_tensor, resize

    x = pil_to_tensor(Image.open(path).convert("RGB")).float() / 127.5 - 1
    if size:
        x = resize(x, [size, size], antialias=True)
    return x.unsqueeze(0)


def assert_written(path, expected: torch.Tensor) -> None:
    """The PNG at ``path`` holds ``expected`` (1, 3, H, W) in [-1, 1], up to 8-bit rounding."""
    written = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
    levels = (expected[0].clamp(-1, 1) + 1) / 2 * 255
    assert written.shape == levels.shape
    assert (written - levels).abs().max() <= 1.0


def test_train_runs_both_phases_offline_and_checkpoints(run_dir):
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert state["kind"] == "cartoongan" and state["step"] == STEPS
    config = state["config"]
    assert config["vgg_weights"] is None  # the fast preset's random VGG: no download, runs offline
    init = config["init_steps"]
    assert 0 < init < STEPS
    adversarial = [h["G_adv"] > 0 and h["D_total"] > 0 for h in state["history"]]
    assert adversarial == [False] * init + [True] * (STEPS - init)  # content only, then the GAN game
    assert set(state["optimizers"]) == {"G", "D"} and state["optimizers"]["D"]["state"]  # D was stepped
    assert not any(key.startswith("feature_net.") for key in state["model"])  # the frozen VGG is not saved
    assert "pool" in state["extra"]
    assert (run_dir / "result.png").is_file() and (run_dir / "losses.png").is_file()


def test_translate_with_the_trained_run(run_dir, photo, tmp_path):
    out = tmp_path / "me_cartoon.png"
    assert main(["translate", str(run_dir), str(photo), str(out)]) == 0
    assert Image.open(out).size == (32, 32)  # resized to the training size of the fast preset
    model = load_trained_model(run_dir)
    assert model.feature_net is None  # translating never loads the VGG
    with torch.no_grad():
        expected = model.translate(as_input(photo, 32))
    assert_written(out, expected)


def official_state_dict(generator: cartoongan.Generator) -> dict[str, torch.Tensor]:
    """``generator``'s weights as a published ``*_net_G_float.pth`` would hold them (BGR in and out)."""
    ours = generator.state_dict()
    state = {}
    for official, module in cartoongan.official_key_map().items():
        leaves = {"scale": "weight", "shift": "bias"} if official.startswith("in") else {"weight": "weight", "bias": "bias"}
        for theirs, mine in leaves.items():
            state[f"{official}.{theirs}"] = ours[f"{module}.{mine}"].clone()
    state["conv01_1.weight"] = state["conv01_1.weight"].flip(1)  # the official model reads BGR ...
    state["deconv03_1.weight"] = state["deconv03_1.weight"].flip(0)  # ... and writes BGR
    state["deconv03_1.bias"] = state["deconv03_1.bias"].flip(0)
    return state


def test_translate_with_a_published_style_file(photo, tmp_path):
    torch.manual_seed(0)
    generator = cartoongan.Generator(ngf=8, n_blocks=8).eval()  # the official depth, narrow to stay fast
    with torch.no_grad():
        for p in generator.parameters():
            p.normal_(0, 0.1)
    state = official_state_dict(generator)
    assert len(state) == 94 and "in01_1.scale" in state and "in11_2.shift" in state
    official = tmp_path / "Hayao_net_G_float.pth"
    torch.save(state, official)

    out = tmp_path / "me_hayao.png"
    assert main(["translate", str(official), str(photo), str(out), "--official", "cartoongan"]) == 0
    assert Image.open(out).size == (48, 40)  # without --size the photo keeps its size
    x = as_input(photo)
    with torch.no_grad():
        expected = generator(x)
        channels_not_folded = generator(x.flip(1)).flip(1)
    assert_written(out, expected)
    assert (expected - channels_not_folded).abs().max() > 0.05  # the BGR folding is what makes it match


def test_translate_refuses_a_cyclegan_file_as_cartoongan(tmp_path, photo, capsys):
    wrong = tmp_path / "latest_net_G.pth"
    torch.save({"model.1.weight": torch.zeros(64, 3, 7, 7), "model.1.bias": torch.zeros(64)}, wrong)
    assert main(["translate", str(wrong), str(photo), str(tmp_path / "o.png"), "--official", "cartoongan"]) == 2
    err = capsys.readouterr().err
    assert "official CartoonGAN" in err and "conv01_1" in err
