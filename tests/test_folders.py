"""Unpaired image folders: the paper transform, determinism, bad files, layout errors, face crops."""

from __future__ import annotations

import io
import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from toonlab.data.faces import crop_faces, face_detection_available, square_box
from toonlab.data.folders import (
    BadImageWarning,
    DatasetLayoutError,
    UnpairedImageFolder,
    default_load_size,
    list_images,
    load_rgb,
    normalize_layout,
    to_rgb,
    validate_layout,
)
from toonlab.data.loader import make_loader, steps_per_epoch


def noise_image(seed: int, size=(48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def gradient_image(width=90, height=70) -> Image.Image:
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8))


def make_dataset(root: Path, per_folder: int = 3) -> Path:
    for number, folder in enumerate(("trainA", "trainB", "testA", "testB")):
        (root / folder).mkdir(parents=True)
        for i in range(per_folder):
            noise_image(10 * number + i).save(root / folder / f"img{i}.png")
    return root


def truncated_jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    noise_image(99, (96, 96)).save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    return data[: int(len(data) * 0.6)]


def caught(func, *args, **kwargs):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = func(*args, **kwargs)
    return result, [w for w in record if issubclass(w.category, BadImageWarning)], record


# -- transforms ------------------------------------------------------------------------------------


def test_load_size_scales_286_over_256():
    assert default_load_size(256) == 286
    assert default_load_size(64) == 72  # 71.5 rounded half up
    assert default_load_size(128) == 143
    assert default_load_size(32) == 36


def test_train_sample_is_a_crop_of_the_bicubic_72px_resize(tmp_path):
    root = make_dataset(tmp_path / "d")
    dataset = UnpairedImageFolder(root, size=64)
    assert dataset.load_size == 72 and dataset.flip
    image = gradient_image()
    resized = TF.resize(image, [72, 72], interpolation=InterpolationMode.BICUBIC)
    reference = TF.to_dtype(TF.to_image(resized), torch.float32, scale=True) * 2 - 1
    positions = set()
    for seed in range(12):
        out = dataset.transform(image, seed)
        assert out.shape == (3, 64, 64) and out.dtype == torch.float32
        assert type(out) is torch.Tensor
        assert -1.0 <= out.min() and out.max() <= 1.0
        match = []
        for top in range(9):
            for left in range(9):
                crop = reference[:, top : top + 64, left : left + 64]
                for flip in (False, True):
                    if torch.allclose(out, crop.flip(-1) if flip else crop, atol=1e-6):
                        match.append((top, left, flip))
        assert match, f"seed {seed}: output is not a 64px crop of the 72px bicubic resize"
        positions.add(match[0])
    assert len({p[:2] for p in positions}) > 3  # crops move
    assert {p[2] for p in positions} == {False, True}  # and flips happen


def test_transform_is_deterministic_per_seed_and_varies_across_seeds(tmp_path):
    dataset = UnpairedImageFolder(make_dataset(tmp_path / "d"), size=32)
    image = dataset.image_a(0)
    assert torch.equal(dataset.transform(image, 7), dataset.transform(image, 7))
    outputs = [dataset.transform(image, seed) for seed in range(8)]
    assert len({o.numpy().tobytes() for o in outputs}) >= 4
    first, again = dataset[(1, 2, 5)], dataset[(1, 2, 5)]
    assert torch.equal(first["A"], again["A"]) and torch.equal(first["B"], again["B"])
    assert not torch.equal(dataset[(1, 2, 6)]["A"], first["A"])


def test_test_split_only_resizes(tmp_path):
    dataset = UnpairedImageFolder(make_dataset(tmp_path / "d"), size=32, split="test")
    assert not dataset.flip
    image = gradient_image()
    expected = TF.to_dtype(TF.to_image(image.resize((32, 32), Image.Resampling.BICUBIC)), torch.float32, scale=True) * 2 - 1
    for seed in (0, 1, 2):
        assert torch.allclose(dataset.transform(image, seed), expected, atol=1e-6)
    assert dataset.paths_a[0].parent.name == "testA"


def test_source_id_names_path_size_and_mtime(tmp_path):
    dataset = UnpairedImageFolder(make_dataset(tmp_path / "d"), size=32)
    path = dataset.paths_b[1]
    stat = path.stat()
    assert dataset.source_id_b(1) == f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


# -- listing and conversion ------------------------------------------------------------------------


def test_list_images_recurses_ignores_case_hidden_and_other_files(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "__MACOSX").mkdir()
    for name in ("a.JPG", "sub/b.png", "sub/deeper/c.WebP", "._a.jpg", "__MACOSX/x.jpg", "notes.txt", "d.gif"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.JPG", "sub/b.png", "sub/deeper/c.WebP"]


def test_to_rgb_conversions():
    sixteen = Image.fromarray(np.full((4, 4), 40000, np.uint16))
    assert sixteen.mode == "I;16"
    assert np.asarray(to_rgb(sixteen))[0, 0].tolist() == [156, 156, 156]  # 40000 / 257, not clipped to 255
    transparent = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert np.asarray(to_rgb(transparent))[0, 0].tolist() == [255, 255, 255]  # on white
    assert np.asarray(to_rgb(half))[0, 0].tolist() == [127, 127, 127]
    palette = Image.new("RGB", (4, 4), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert np.asarray(to_rgb(palette))[0, 0].tolist() == [10, 200, 30]
    assert np.asarray(to_rgb(Image.new("L", (4, 4), 77)))[0, 0].tolist() == [77, 77, 77]
    assert to_rgb(Image.new("CMYK", (4, 4))).mode == "RGB"


# -- bad files -------------------------------------------------------------------------------------


def make_messy_dataset(root: Path) -> Path:
    make_dataset(root)
    train_a, train_b = root / "trainA", root / "trainB"
    (train_a / "truncated.jpg").write_bytes(truncated_jpeg_bytes())
    (train_b / "random.png").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    noise_image(5, (10, 10)).save(train_b / "tiny.png")
    Image.new("L", (40, 40), 90).save(train_a / "gray.png")
    Image.new("RGBA", (40, 40), (255, 0, 0, 0)).save(train_a / "alpha.png")
    noise_image(6).convert("P").save(train_b / "palette.png")
    Image.fromarray(np.full((40, 40), 40000, np.uint16)).save(train_b / "sixteen.png")
    return root


def test_bad_files_are_skipped_and_converted_with_one_warning(tmp_path):
    root = make_messy_dataset(tmp_path / "d")
    dataset, bad_image_warnings, _ = caught(UnpairedImageFolder, root, size=32)
    assert len(bad_image_warnings) == 1
    message = str(bad_image_warnings[0].message)
    assert "skipped 3 of" in message and "truncated.jpg" in message and "random.png" in message
    assert sorted(s.path.name for s in dataset.skipped) == ["random.png", "tiny.png", "truncated.jpg"]
    assert dict(dataset.converted) == {"L": 1, "RGBA": 1, "P": 1, "I;16": 1}
    assert dataset.len_a == 5 and dataset.len_b == 5
    names_a = [p.name for p in dataset.paths_a]
    assert np.asarray(dataset.image_a(names_a.index("alpha.png")))[0, 0].tolist() == [255, 255, 255]
    names_b = [p.name for p in dataset.paths_b]
    assert np.asarray(dataset.image_b(names_b.index("sixteen.png")))[0, 0].tolist() == [156, 156, 156]

    loader = make_loader(dataset, batch_size=2, seed=3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        batches = list(itertools.islice(loader, steps_per_epoch(dataset, 2)))
    assert not [w for w in record if issubclass(w.category, BadImageWarning)]
    assert len(batches) == 2
    for batch in batches:
        assert batch["A"].shape == (2, 3, 32, 32) and batch["B"].shape == (2, 3, 32, 32)
        assert torch.isfinite(batch["A"]).all() and batch["A"].abs().max() <= 1.0


def test_file_failing_mid_epoch_is_replaced_counted_and_warned_once(tmp_path):
    root = make_dataset(tmp_path / "d", per_folder=4)
    dataset, first, _ = caught(UnpairedImageFolder, root, size=32)
    assert not first and not dataset.skipped
    expected_replacement = np.asarray(dataset.image_a(2))
    dataset.paths_a[1].write_bytes(b"garbage now")
    dataset.paths_a[3].write_bytes(b"garbage too")

    def read_everything():
        images = [dataset.image_a(i) for i in range(dataset.len_a)]
        loader = make_loader(dataset, batch_size=2, seed=0)
        batches = list(itertools.islice(loader, 4))
        return images, batches

    (images, batches), late, _ = caught(read_everything)
    assert len(late) == 1 and "dataset.skipped" in str(late[0].message)
    assert len(dataset.skipped) == 2
    assert np.array_equal(np.asarray(images[1]), expected_replacement)  # the next readable file
    assert np.array_equal(np.asarray(images[3]), np.asarray(images[0]))  # wraps around
    assert len(batches) == 4
    assert dataset.source_id_b(0).startswith(str(dataset.paths_b[0]))


def test_domain_with_only_bad_files_raises(tmp_path):
    root = make_dataset(tmp_path / "d", per_folder=1)
    for path in (root / "trainB").iterdir():
        path.unlink()
    (root / "trainB" / "broken.jpg").write_bytes(b"not a jpeg")
    noise_image(1, (8, 8)).save(root / "trainB" / "small.png")
    with pytest.raises(DatasetLayoutError, match="none of the 2 image files") as info:
        UnpairedImageFolder(root, size=32)
    assert "broken.jpg" in str(info.value)


# -- layout errors ---------------------------------------------------------------------------------


def assert_explains_layout(message: str):
    for folder in ("trainA/", "trainB/", "testA/", "testB/"):
        assert folder in message
    assert "toonlab export-synthetic" in message and "data_scripts" in message


def test_missing_root_raises_layout_error(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist") as info:
        UnpairedImageFolder(tmp_path / "nowhere")
    assert_explains_layout(str(info.value))
    assert isinstance(info.value, ValueError)


def test_missing_and_empty_folders_raise_layout_error(tmp_path):
    root = make_dataset(tmp_path / "d")
    for path in (root / "trainB").iterdir():
        path.unlink()
    (root / "trainB" / "IMG_0001.HEIC").write_bytes(b"x")
    with pytest.raises(DatasetLayoutError, match="holds no images") as info:
        UnpairedImageFolder(root)
    assert ".heic" in str(info.value)
    assert_explains_layout(str(info.value))
    (root / "trainB" / "IMG_0001.HEIC").unlink()
    (root / "trainB").rmdir()
    with pytest.raises(DatasetLayoutError, match="no trainB folder"):
        validate_layout(root)
    assert validate_layout(root, splits=("test",)) == {"testA": 3, "testB": 3}


def test_pytorch_gan_train_slash_a_drift_is_explained_and_fixable(tmp_path):
    root = tmp_path / "d"
    for split in ("train", "test"):
        for domain in ("A", "B"):
            (root / split / domain).mkdir(parents=True)
            noise_image(1).save(root / split / domain / "x.png")
    with pytest.raises(DatasetLayoutError) as info:
        UnpairedImageFolder(root)
    message = str(info.value)
    assert "train/A" in message and "PyTorch-GAN" in message and "normalize_layout" in message
    assert "trainA" in message
    normalize_layout(root)
    assert validate_layout(root) == {"trainA": 1, "trainB": 1, "testA": 1, "testB": 1}
    assert not (root / "train").exists()


def test_nested_dataset_and_wrong_case_are_pointed_out(tmp_path):
    make_dataset(tmp_path / "outer" / "selfie2anime")
    with pytest.raises(DatasetLayoutError, match="one level down"):
        validate_layout(tmp_path / "outer")
    root = make_dataset(tmp_path / "d")
    (root / "trainA").rename(root / "TrainA")
    with pytest.raises(DatasetLayoutError, match="rename it to trainA"):
        validate_layout(root)


def test_bad_arguments_are_rejected(tmp_path):
    root = make_dataset(tmp_path / "d")
    with pytest.raises(ValueError, match="split"):
        UnpairedImageFolder(root, split="val")
    with pytest.raises(ValueError, match="load_size"):
        UnpairedImageFolder(root, size=64, load_size=60)
    with pytest.raises(ValueError, match="check"):
        UnpairedImageFolder(root, check="paranoid")


# -- face crops ------------------------------------------------------------------------------------


def test_square_box_is_square_inside_and_centred():
    assert square_box((40, 40, 20, 20), (100, 100), margin=0.5) == (30, 30, 70, 70)
    left, top, right, bottom = square_box((0, 0, 30, 20), (100, 80), margin=0.5)  # at the corner
    assert (left, top) == (0, 0) and right - left == bottom - top == 60
    left, top, right, bottom = square_box((10, 10, 80, 60), (100, 70), margin=0.5)  # too big: shrinks
    assert right - left == bottom - top == 70 and 0 <= left and right <= 100 and top == 0


def drawn_face(size: int = 200, background=(90, 90, 90)) -> Image.Image:
    """A crude blurred face (skin oval, brows, eyes, nose, mouth) that the Haar cascade detects."""
    image = Image.new("RGB", (size + 100, size), background)
    draw = ImageDraw.Draw(image)
    c, s = size // 2 + 60, size

    def oval(cx, cy, rx, ry, colour):
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)

    oval(c, s // 2, 0.30 * s, 0.40 * s, (200, 170, 150))
    for side in (-1, 1):
        x = c + side * 0.12 * s
        oval(x, s / 2 - 0.16 * s, 0.07 * s, 0.02 * s, (60, 50, 40))
        oval(x, s / 2 - 0.07 * s, 0.06 * s, 0.035 * s, (40, 30, 30))
    oval(c, s / 2 + 0.06 * s, 0.03 * s, 0.06 * s, (170, 140, 120))
    oval(c, s / 2 + 0.20 * s, 0.10 * s, 0.03 * s, (120, 60, 60))
    return image.filter(ImageFilter.GaussianBlur(s / 100))


needs_haar = pytest.mark.skipif(not face_detection_available(), reason="this OpenCV bundles no Haar cascade (OpenCV 5)")


@needs_haar
def test_crop_faces_crops_faces_and_reports_photos_without_faces(tmp_path):
    source = tmp_path / "photos"
    (source / "holiday").mkdir(parents=True)
    drawn_face(200).save(source / "holiday" / "me.png")
    Image.new("RGB", (120, 100), (200, 180, 160)).save(source / "wall.jpg")
    (source / "broken.png").write_bytes(b"nope")
    report = crop_faces(source, tmp_path / "trainA", size=64)
    assert [p.relative_to(tmp_path / "trainA").as_posix() for p in report.saved] == ["holiday/me.jpg"]
    with Image.open(report.saved[0]) as crop:
        assert crop.size == (64, 64) and crop.mode == "RGB"
    assert [p.name for p in report.no_face] == ["wall.jpg"]
    assert [s.path.name for s in report.unreadable] == ["broken.png"]
    assert validate_layout(tmp_path, splits=()) == {}  # nothing asked, nothing checked
    assert list_images(tmp_path / "trainA") == report.saved


@pytest.mark.skipif(face_detection_available(), reason="this OpenCV bundles the Haar cascade")
def test_face_crop_without_haar_cascade_says_how_to_fix(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    with pytest.raises(RuntimeError, match="opencv-python-headless>=4.8,<5"):
        crop_faces(tmp_path, tmp_path / "out")


def test_load_rgb_applies_exif_orientation(tmp_path):
    image = Image.new("RGB", (60, 40), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_rgb(tmp_path / "rotated.jpg").size == (40, 60)


def test_synthetic_export_test_split_is_known_to_be_paired(tmp_path):
    from toonlab.data.synthetic import SyntheticPortraits, export_dataset

    root = export_dataset(tmp_path / "syn", size=32, n_train=2, n_test=3)
    test = UnpairedImageFolder(root, size=32, split="test")
    assert test.paired and not UnpairedImageFolder(root, size=32, split="train").paired
    assert torch.allclose(test[(1, 1, 0)]["B"], SyntheticPortraits(32, "test").test_batch(2)["B"][1], atol=1 / 127.5 + 1e-6)
    (root / "testB" / "000002.png").rename(root / "testB" / "000009.png")
    assert not UnpairedImageFolder(root, size=32, split="test").paired


@pytest.mark.parametrize("split", ["train", "test"])
def test_cached_images_give_the_same_tensors_and_are_decoded_once(tmp_path, split):
    """cache=True (the fast path's input pipeline): identical samples; a file is read once, then never again."""
    root = make_dataset(tmp_path, per_folder=3)
    plain = UnpairedImageFolder(root, size=32, split=split)
    cached = UnpairedImageFolder(root, size=32, split=split, cache=True)
    keys = [(i % plain.len_a, (i + 1) % plain.len_b, 100 + i) for i in range(5)]
    expected = [plain[key] for key in keys]
    for key, sample in zip(keys, expected):
        got = cached[key]
        assert torch.equal(got["A"], sample["A"]) and torch.equal(got["B"], sample["B"])
    side = cached.load_size if split == "train" else 32
    assert {pixels.shape for pixels in cached.cache.values()} == {(side, side, 3)}
    assert all(pixels.dtype == np.uint8 for pixels in cached.cache.values())
    for path in [*cached.paths_a, *cached.paths_b]:
        path.unlink()  # cached: the files are not read again
    for key, sample in zip(keys, expected):
        got = cached[key]
        assert torch.equal(got["A"], sample["A"]) and torch.equal(got["B"], sample["B"])
    assert plain.cache is None
