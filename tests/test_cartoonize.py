"""`toonlab cartoonize`: a real photo (scikit-image's astronaut, public domain) found, levelled, cropped, cartoonized offline."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from toonlab import cartoonize as C
from toonlab.cli import main

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


def test_the_astronaut_becomes_a_sheet_of_cartoons_in_one_command(astronaut, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["cartoonize", str(astronaut), "--out", str(out), "--model", "classical",
                 "--model", "cyclegan-synthetic", "--paste", "--device", "cpu"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["astronaut_face1_crop.png", "astronaut_face1_sheet.png", "astronaut_face1_classical.png",
                            "astronaut_face1_classical_pasted.png", "astronaut_face1_cyclegan-synthetic.png",
                            "astronaut_face1_cyclegan-synthetic_pasted.png"])
    assert Image.open(out / "astronaut_face1_cyclegan-synthetic.png").size == (64, 64)  # the model's own size
    crop = np.asarray(Image.open(out / "astronaut_face1_crop.png"))
    cartoon = np.asarray(Image.open(out / "astronaut_face1_classical.png"))
    assert crop.shape == cartoon.shape and np.abs(crop.astype(int) - cartoon.astype(int)).mean() > 2
    pasted = np.asarray(Image.open(out / "astronaut_face1_classical_pasted.png")).astype(int)
    photo = np.asarray(Image.open(astronaut)).astype(int)
    assert pasted.shape == photo.shape
    assert np.array_equal(pasted[400:, :100], photo[400:, :100])  # far from the face nothing changes
    assert np.abs(pasted[100:130, 200:250] - photo[100:130, 200:250]).mean() > 2  # the face does
    printed = capsys.readouterr().out
    assert "face 1 at" in printed and "levelled by" in printed and "1 face(s) in 1 photo(s)" in printed


def test_a_tilted_face_is_levelled(astronaut):
    image = Image.open(astronaut).convert("RGB")
    straight = C.locate_faces(image)[0]
    assert straight.eyes is not None and abs(straight.angle) < 6
    tilted = image.rotate(15, resample=Image.Resampling.BICUBIC, center=straight.centre)
    face = C.locate_faces(tilted)[0]
    assert face.eyes is not None
    assert abs(face.angle - (straight.angle - 15)) < 5  # the eye line turned with the photo
    levelled = C.aligned_crop(tilted, face, 256)
    eyes = C.find_eyes(levelled, (0, 0, 256, 256))
    if eyes is not None:  # found again in the crop: level within a few degrees
        (lx, ly), (rx, ry) = eyes
        assert abs(np.degrees(np.arctan2(ry - ly, rx - lx))) < 6


def test_several_faces_and_the_largest_flag(astronaut, tmp_path):
    image = Image.open(astronaut).convert("RGB")
    face = image.crop((120, 10, 330, 220))
    pair = Image.new("RGB", (520, 260), (200, 200, 200))
    pair.paste(face, (10, 25))
    pair.paste(face.resize((160, 160)), (320, 50))
    path = tmp_path / "pair.png"
    pair.save(path)
    assert len(C.locate_faces(pair)) == 2
    out = tmp_path / "out"
    assert main(["cartoonize", str(path), "--out", str(out), "--model", "classical"]) == 0
    assert {p.name for p in out.glob("*_sheet.png")} == {"pair_face1_sheet.png", "pair_face2_sheet.png"}
    largest = tmp_path / "largest"
    assert main(["cartoonize", str(path), "--out", str(largest), "--model", "classical", "--largest"]) == 0
    assert {p.name for p in largest.glob("*_sheet.png")} == {"pair_face1_sheet.png"}


def test_no_face_and_unreadable_files_are_named_and_lose_nothing(astronaut, tmp_path, capsys):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (120, 130, 140)).save(blank)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a jpeg")
    out = tmp_path / "out"
    assert main(["cartoonize", str(blank), str(broken), str(astronaut), "--out", str(out), "--model", "classical"]) == 1
    printed = capsys.readouterr().out
    assert f"no face found in {blank}" in printed and f"skipped {broken}" in printed
    assert "1 photo(s) without a face, 1 unreadable" in printed
    assert (out / "astronaut_face1_classical.png").is_file()  # the good photo is still done
    assert not any(p.name.startswith(("wall", "broken")) for p in out.iterdir())
    assert main(["cartoonize", str(tmp_path / "missing.jpg"), "--out", str(out)]) == 2
    assert "no such photo" in capsys.readouterr().err


def test_existing_outputs_are_kept_unless_overwrite(astronaut, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "astronaut_face1_classical.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(mine)
    before = mine.read_bytes()
    assert main(["cartoonize", str(astronaut), "--out", str(out), "--model", "classical"]) == 0
    assert mine.read_bytes() == before and "kept" in capsys.readouterr().out
    sheet = out / "astronaut_face1_sheet.png"
    sheet_bytes = sheet.read_bytes()
    assert main(["cartoonize", str(astronaut), "--out", str(out), "--model", "classical"]) == 0
    assert sheet.read_bytes() == sheet_bytes and f"kept {sheet}" in capsys.readouterr().out  # said, not silent
    assert main(["cartoonize", str(astronaut), "--out", str(out), "--model", "classical", "--overwrite"]) == 0
    assert mine.read_bytes() != before


def test_default_models_are_the_filter_and_every_installed_converged_model():
    from toonlab import pretrained

    assert C.default_models() == ["classical", *pretrained.available()]
