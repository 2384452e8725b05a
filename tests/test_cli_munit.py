"""`toonlab train munit` and `toonlab translate` with MUNIT: many styles, a style image, official files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from toonlab.cli import main
from toonlab.models import munit
from toonlab.train import load_trained_model


def _png(path) -> torch.Tensor:
    """A written PNG as a (3, H, W) tensor in [-1, 1]."""
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1


def _save(tensor: torch.Tensor, path) -> torch.Tensor:
    """Save a (3, H, W) tensor in [-1, 1] as PNG and return exactly what the PNG holds."""
    array = ((tensor.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path)
    return _png(path)


def translate(args: list[str]) -> int:
    """``toonlab translate ARGS --device cpu``: on the CPU, so outputs compare with CPU references exactly."""
    return main(["translate", *args, "--device", "cpu"])


#: one 8-bit grey level in [-1, 1] units, plus float slack: the PNG round trip of the outputs
PNG_TOLERANCE = 1.01 / 127.5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli_munit") / "run"
    assert main(["train", "munit", "--preset", "fast", "--steps", "3", "--run-dir", str(run), "--quiet", "--device", "cpu"]) == 0
    return run


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 32x32 test image (the fast preset's size), saved as PNG."""
    path = tmp_path_factory.mktemp("photos") / "photo.png"
    _save(torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1, path)
    return path


def test_train_writes_a_munit_checkpoint(run_dir):
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert state["kind"] == "munit" and state["step"] == 3 and len(state["history"]) == 3
    assert set(state["optimizers"]) == {"D", "G"}
    assert state["config"]["image_size"] == 32 and state["config"]["style_dim"] == 8
    assert {"recon_x_A", "recon_s_B", "recon_c_A", "G_adv_B", "D_total"} <= set(state["history"][-1])
    assert (run_dir / "result.png").is_file() and (run_dir / "losses.png").is_file()


def test_translate_with_three_styles_writes_three_different_images(run_dir, photo, tmp_path):
    out = tmp_path / "cartoon.png"
    assert translate([str(run_dir), str(photo), str(out), "--num-styles", "3"]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["cartoon_style0.png", "cartoon_style1.png", "cartoon_style2.png"]
    images = [_png(tmp_path / name) for name in written]
    assert all(image.shape == (3, 32, 32) for image in images)
    assert (images[0] - images[1]).abs().mean() > 1e-3 and (images[1] - images[2]).abs().mean() > 1e-3
    # the same --seed gives the same styles; the images are the model's translate_many with that seed
    again = tmp_path / "again"
    assert translate([str(run_dir), str(photo), str(again), "--num-styles", "3"]) == 0  # a file name without suffix
    assert torch.equal(_png(tmp_path / "again_style1.png"), images[1])
    model = load_trained_model(run_dir, "cpu")
    expected = model.translate_many(_png(photo)[None], 3, generator=torch.Generator().manual_seed(0))
    assert expected.shape == (3, 1, 3, 32, 32)
    for k in range(3):
        assert torch.allclose(images[k], expected[k, 0].clamp(-1, 1), atol=PNG_TOLERANCE)


def test_translate_a_folder_with_styles(run_dir, photo, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.open(photo).save(folder / "a.png")
    Image.new("RGB", (40, 50), (200, 120, 90)).save(folder / "b.jpg")    # resized to the model's 32 px
    assert translate([str(run_dir), str(folder), str(tmp_path / "out"), "--num-styles", "2"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["a_style0.png", "a_style1.png", "b_style0.png", "b_style1.png"]
    assert Image.open(tmp_path / "out" / "b_style1.png").size == (32, 32)


def test_translate_with_a_style_image(run_dir, photo, tmp_path):
    reference = tmp_path / "ref.png"
    reference_pixels = _save(torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1, reference)
    out = tmp_path / "styled.png"
    assert translate([str(run_dir), str(photo), str(out), "--style-image", str(reference)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.png", "styled.png"]
    model = load_trained_model(run_dir, "cpu")
    x = _png(photo)[None]
    expected = model.gen_b.decode(model.gen_a.encode_content(x), model.gen_b.encode_style(reference_pixels[None]))
    assert torch.allclose(_png(out), expected[0].detach().clamp(-1, 1), atol=PNG_TOLERANCE)
    # another reference gives another cartoon
    other = tmp_path / "other.png"
    _save(-reference_pixels, other)
    assert translate([str(run_dir), str(photo), str(tmp_path / "styled2.png"), "--style-image", str(other)]) == 0
    assert (_png(tmp_path / "styled2.png") - _png(out)).abs().mean() > 1e-3


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    """A generator file in the official layout {'a': AdaINGen.state_dict(), 'b': ...}, small dimensions."""
    torch.manual_seed(0)
    gen_a = munit.AdaINGen(dim=8, style_dim=8, mlp_dim=16, n_res=1)
    gen_b = munit.AdaINGen(dim=8, style_dim=8, mlp_dim=16, n_res=1)
    path = tmp_path_factory.mktemp("official") / "gen_00010000.pt"
    torch.save({"a": gen_a.state_dict(), "b": gen_b.state_dict()}, path)
    return path, gen_a.eval(), gen_b.eval()


def test_translate_with_an_official_munit_file(official_file, photo, tmp_path):
    path, gen_a, gen_b = official_file
    out = tmp_path / "official.png"
    assert translate([str(path), str(photo), str(out), "--official", "munit"]) == 0
    x = _png(photo)[None]
    style = torch.randn(1, 8, 1, 1, generator=torch.Generator().manual_seed(0))   # --seed 0, one style
    with torch.no_grad():
        expected = gen_b.decode(gen_a.encode_content(x), style)
    assert torch.allclose(_png(out), expected[0].clamp(-1, 1), atol=PNG_TOLERANCE)
    # several styles, a style image, and the other direction work with official files too
    assert translate([str(path), str(photo), str(tmp_path / "many.png"), "--official", "munit",
                 "--num-styles", "3", "--size", "48"]) == 0
    assert [Image.open(tmp_path / f"many_style{k}.png").size for k in range(3)] == [(48, 48)] * 3
    assert translate([str(path), str(photo), str(tmp_path / "ref.png"), "--official", "munit",
                 "--style-image", str(photo), "--direction", "BtoA"]) == 0
    with torch.no_grad():
        expected = gen_a.decode(gen_b.encode_content(x), gen_a.encode_style(x))
    assert torch.allclose(_png(tmp_path / "ref.png"), expected[0].clamp(-1, 1), atol=PNG_TOLERANCE)


def test_official_munit_errors_are_clear(official_file, tmp_path, capsys):
    path, _, _ = official_file
    odd = tmp_path / "odd.png"
    Image.new("RGB", (30, 50), (10, 20, 30)).save(odd)
    # official files keep the input size unless --size is given: 30x50 cannot be halved twice evenly
    assert translate([str(path), str(odd), str(tmp_path / "o.png"), "--official", "munit"]) == 2
    assert "multiples of 4" in capsys.readouterr().err
    assert translate([str(path), str(odd), str(tmp_path / "o.png"), "--official", "munit", "--size", "32"]) == 0
    assert translate([str(path), str(odd), str(tmp_path / "o.png"), "--official", "munit",
                 "--size", "32", "--num-styles", "0"]) == 2
    assert ">= 1" in capsys.readouterr().err
    assert translate([str(path), str(odd), str(tmp_path / "o.png"), "--official", "cyclegan"]) == 2
    assert capsys.readouterr().err.strip()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_translate_with_random_styles_on_cuda(run_dir, official_file, photo, tmp_path):
    # the styles of --seed are drawn on the CPU and moved to the GPU (a CUDA generator cannot feed torch.randn on the CPU)
    assert main(["translate", str(run_dir), str(photo), str(tmp_path / "gpu.png"), "--num-styles", "2",
                 "--device", "cuda"]) == 0
    cpu_images = tmp_path / "cpu.png"
    assert translate([str(run_dir), str(photo), str(cpu_images), "--num-styles", "2"]) == 0
    for k in range(2):     # the same styles on both devices (up to TF32 convolutions on the GPU)
        assert torch.allclose(_png(tmp_path / f"gpu_style{k}.png"), _png(tmp_path / f"cpu_style{k}.png"), atol=0.05)
    path, _, _ = official_file
    assert main(["translate", str(path), str(photo), str(tmp_path / "official.png"), "--official", "munit",
                 "--device", "cuda"]) == 0
