"""Unpaired image folders in the official CycleGAN layout, read robustly (data_scripts/README.md).

A dataset is a folder ``root`` holding four sub-folders (images may sit in nested sub-folders)::

    root/
      trainA/   domain A (photos) for training
      trainB/   domain B (cartoons) for training
      testA/    domain A for testing
      testB/    domain B for testing

:class:`UnpairedImageFolder` reads it with the paper's augmentation (docs/reference.md §1.3):
train = square bicubic resize to ``load_size`` (286 for 256, scaled for other sizes) -> random
``size`` crop -> random horizontal flip -> [-1, 1]; test = bicubic resize to ``size`` x ``size``.
All randomness comes from :func:`toonlab.data.loader.augmentation_generator`, so a sample is a pure
function of its seed and training resumes exactly.

Real folders hold surprises. Grayscale, palette, RGBA, CMYK and 16-bit images are converted to RGB;
unreadable, truncated and tiny files are skipped and counted, with one warning, never an exception
in the middle of an epoch. Your own photos become a folder of face crops with :mod:`toonlab.data.faces`.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from toonlab.data.loader import UnpairedImages, augmentation_generator

#: File extensions read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Sub-folders of a dataset root, in the official CycleGAN layout.
LAYOUT_FOLDERS = ("trainA", "trainB", "testA", "testB")
#: Images whose short side is below this many pixels are skipped (they would be mostly upsampling blur).
MIN_SIDE = 32
#: Scan modes of :class:`UnpairedImageFolder`.
CHECK_MODES = ("quick", "full", "none")
#: Colour used under transparent pixels when an RGBA/LA/palette-with-alpha image becomes RGB.
ALPHA_BACKGROUND = (255, 255, 255)
_JUNK_DIRS = {"__MACOSX"}
_PNG_END = b"IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"


class DatasetLayoutError(ValueError):
    """A dataset folder is missing, empty or not in the trainA/trainB/testA/testB layout."""


class BadImageWarning(UserWarning):
    """Some files of an image folder were skipped or converted (one summary per dataset)."""


@dataclass(frozen=True)
class SkippedImage:
    """A file that was left out, and why."""

    path: Path
    reason: str


# --------------------------------------------------------------------------------------------------
# Layout: listing, checking, explaining, fixing


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by relative path, hidden files left out.

    Hidden names (``.DS_Store``, macOS ``._x.jpg`` resource forks) and ``__MACOSX`` folders are
    archive junk, not images.
    """
    folder = Path(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in _JUNK_DIRS]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def expected_layout(root: str | Path) -> str:
    """The layout toonlab expects, as text for error messages, with the ways to create one."""
    root = Path(root)
    return (
        "toonlab reads unpaired image folders in the official CycleGAN layout:\n"
        f"  {root}/\n"
        "    trainA/   domain A (photos) for training\n"
        "    trainB/   domain B (cartoons) for training\n"
        "    testA/    domain A for testing\n"
        "    testB/    domain B for testing\n"
        f"Images may sit in sub-folders; extensions: {' '.join(IMAGE_EXTENSIONS)} (any case).\n"
        "To create one:\n"
        "  toonlab export-synthetic ...                  the built-in synthetic portraits (see its --help)\n"
        "  python data_scripts/get_selfie2anime.py       download selfie2anime (selfies -> anime faces)\n"
        "  python data_scripts/get_cyclegan_dataset.py NAME   download an official CycleGAN dataset\n"
        f"  python data_scripts/face_crop.py MY_PHOTOS {root / 'trainA'}   your own photos as domain A"
    )


def _drift_hint(root: Path) -> str:
    """Explain the usual near-misses: PyTorch-GAN's train/A, a nested folder, wrong case."""
    hints = []
    if (root / "train" / "A").is_dir() or (root / "train" / "B").is_dir():
        hints.append(
            f"Found {root / 'train' / 'A'}: that is the PyTorch-GAN layout (train/A, train/B, test/A, test/B), "
            "not the official one. Fix it in place with "
            f"`toonlab.data.folders.normalize_layout({str(root)!r})` or "
            "`python data_scripts/check_dataset.py ROOT --fix-layout`, or rename the folders yourself: "
            "train/A -> trainA, train/B -> trainB, test/A -> testA, test/B -> testB."
        )
    if root.is_dir():
        children = [p for p in root.iterdir() if p.is_dir()]
        nested = [p for p in children if (p / "trainA").is_dir() or (p / "train" / "A").is_dir()]
        if nested:
            hints.append(f"Found the dataset one level down: use root={str(nested[0])!r} instead.")
        wanted = {name.lower(): name for name in LAYOUT_FOLDERS}
        for child in children:
            proper = wanted.get(child.name.lower())
            if proper and child.name != proper:
                hints.append(f"Found {child.name}/: folder names are case-sensitive; rename it to {proper}/.")
    return "\n".join(hints)


def _layout_error(root: Path, problem: str) -> DatasetLayoutError:
    hint = _drift_hint(root)
    return DatasetLayoutError(f"{problem}\n" + (f"{hint}\n" if hint else "") + expected_layout(root))


def other_files_note(folder: Path) -> str:
    """For an image-less folder: what it holds instead (HEIC from phones, GIFs ...)."""
    others = Counter()
    for _dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            if not name.startswith("."):
                others[os.path.splitext(name)[1].lower() or "(no extension)"] += 1
    if not others:
        return "it is empty"
    listed = ", ".join(f"{n} {ext}" for ext, n in others.most_common(5))
    return f"it holds {listed} files but no {'/'.join(IMAGE_EXTENSIONS)} (convert them, e.g. HEIC -> JPEG)"


def split_folders(root: str | Path, split: str) -> tuple[Path, Path]:
    """``(root/<split>A, root/<split>B)`` after checking both exist and hold images."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise _layout_error(root, f"Dataset folder {root} does not exist (or is not a folder).")
    folders = (root / f"{split}A", root / f"{split}B")
    missing = [f.name for f in folders if not f.is_dir()]
    if missing:
        raise _layout_error(root, f"Dataset folder {root} has no {' and no '.join(missing)} folder.")
    for folder in folders:
        if not list_images(folder):
            raise _layout_error(root, f"{folder} holds no images: {other_files_note(folder)}.")
    return folders


def validate_layout(root: str | Path, splits: tuple[str, ...] = ("train", "test")) -> dict[str, int]:
    """Count the image files of ``root/{split}{A,B}`` for each split; raise if one is missing or empty.

    Counts files by extension only (no decoding); :class:`UnpairedImageFolder` checks the images.
    """
    counts = {}
    for split in splits:
        for folder in split_folders(root, split):
            counts[folder.name] = len(list_images(folder))
    return counts


def locate_layout(tree: str | Path, max_depth: int = 4) -> Path:
    """The folder under ``tree`` (breadth first) holding ``trainA``+``trainB`` or ``train/A``+``train/B``.

    Archives wrap datasets differently (``horse2zebra/trainA``, ``dataset/selfie2anime/trainA``,
    or ``trainA`` at the top); this finds the folder wherever it sits.
    """
    tree = Path(tree)
    level = [tree]
    for _ in range(max_depth + 1):
        for folder in level:
            if ((folder / "trainA").is_dir() and (folder / "trainB").is_dir()) or (
                (folder / "train" / "A").is_dir() and (folder / "train" / "B").is_dir()
            ):
                return folder
        level = [
            child
            for folder in level
            for child in sorted(folder.iterdir())
            if child.is_dir() and not child.name.startswith(".") and child.name not in _JUNK_DIRS
        ]
    raise _layout_error(tree, f"No folder under {tree} holds trainA and trainB (searched {max_depth} levels deep).")


def normalize_layout(source: str | Path, dest: str | Path | None = None) -> Path:
    """Move the split folders found under ``source`` to ``dest/{trainA,trainB,testA,testB}``.

    Finds them with :func:`locate_layout` (any nesting depth, official ``trainA`` or PyTorch-GAN
    ``train/A`` naming; ``valA``/``valB`` come along when present). ``dest=None`` fixes ``source`` in
    place. Returns ``dest``.
    """
    source = Path(source).expanduser()
    dest = source if dest is None else Path(dest).expanduser()
    found = locate_layout(source)
    dest.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test", "val"):
        for domain in ("A", "B"):
            target = dest / f"{split}{domain}"
            for candidate in (found / f"{split}{domain}", found / split / domain):
                if not candidate.is_dir() or candidate.resolve() == target.resolve():
                    continue
                if target.exists():
                    raise DatasetLayoutError(f"cannot move {candidate} to {target}: {target} already exists")
                shutil.move(str(candidate), str(target))
    for split in ("train", "test", "val"):  # PyTorch-GAN's now-empty train/, test/
        leftover = found / split
        if leftover.is_dir() and not any(leftover.iterdir()):
            leftover.rmdir()
    return dest


# --------------------------------------------------------------------------------------------------
# Reading one image


def to_rgb(image: Image.Image, background: tuple[int, int, int] = ALPHA_BACKGROUND) -> Image.Image:
    """Any PIL image as 8-bit RGB.

    * RGBA, LA, palette or grayscale with transparency: composited on ``background`` (white). Dropping
      alpha instead would show whatever colour hides under transparent pixels, often black.
    * 16-bit (``I;16*``) and 32-bit ``I``: scaled to 0..255 (``value / 257``); PIL's own
      ``convert("L")`` clips everything above 255 to white. Float ``F``: [0, 1] -> 0..255.
    * L, 1, P, CMYK, YCbCr, LAB, HSV: ``Image.convert("RGB")``.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image).astype(np.float64)
        if mode.startswith("I;16"):
            values = values / 257.0
        elif mode == "F":
            values = values * 255.0 if values.max(initial=0.0) <= 1.0 else values
        elif values.max(initial=0.0) > 255:
            peak = values.max()
            values = values / 257.0 if peak <= 65535 else values * (255.0 / peak)
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: str | Path, min_side: int = 1) -> Image.Image:
    """Decode ``path`` fully, apply its EXIF orientation and return it as RGB (see :func:`to_rgb`).

    Raises (``OSError``, ``ValueError`` ...) on unreadable or truncated files, and ``ValueError`` when
    the short side is below ``min_side``. PIL's own warnings (corrupt EXIF ...) are silenced: the
    dataset reports problems once, itself.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            if image is opened:
                image = opened.copy()
    if min(image.size) < min_side:
        raise ValueError(f"{image.size[0]}x{image.size[1]} px is smaller than min_side={min_side}")
    return to_rgb(image)


def _ends_cleanly(path: Path, image_format: str | None) -> bool:
    """True if a JPEG/PNG ends with its end marker (cheap truncation test; False means 'decode to be sure')."""
    if image_format not in ("JPEG", "MPO", "PNG"):
        return False
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 64))
        tail = handle.read().rstrip(b"\x00\r\n ")
    return tail.endswith(_PNG_END if image_format == "PNG" else _JPEG_END)


def inspect_image(path: str | Path, min_side: int = MIN_SIDE, check: str = "quick") -> tuple[str | None, str | None]:
    """``(mode, problem)`` of one file, ``problem`` None when it is usable.

    ``check="quick"`` reads the header (size, mode) and the last bytes: a JPEG/PNG without its end
    marker, and any other format, is decoded fully to be sure. ``"full"`` always decodes;
    ``"none"`` only reads the header.
    """
    if check not in CHECK_MODES:
        raise ValueError(f"check must be one of {CHECK_MODES}, got {check!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                mode, (width, height), image_format = image.mode, image.size, image.format
                if min(width, height) < min_side:
                    return mode, f"{width}x{height} px is smaller than min_side={min_side}"
                if check == "full" or (check == "quick" and not _ends_cleanly(Path(path), image_format)):
                    image.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, struct.error ... on bad files
        return None, describe_error(err)
    return mode, None


def describe_error(err: Exception) -> str:
    """A short reason for a failed file (without the path, which the report shows already)."""
    if isinstance(err, UnidentifiedImageError):
        return "not an image PIL can identify"
    return str(err).strip() or err.__class__.__name__


def scan_folder(
    folder: str | Path, min_side: int = MIN_SIDE, check: str = "quick"
) -> tuple[list[Path], list[SkippedImage], Counter[str]]:
    """``(usable paths, skipped files, non-RGB mode counts)`` of the images under ``folder``.

    Each file goes through :func:`inspect_image`; nothing is raised for bad files.
    """
    usable, skipped, converted = [], [], Counter()
    for path in list_images(folder):
        mode, problem = inspect_image(path, min_side, check)
        if problem is not None:
            skipped.append(SkippedImage(path, problem))
            continue
        if mode != "RGB":
            converted[mode] += 1
        usable.append(path)
    return usable, skipped, converted


def describe_layout(root: str | Path) -> str:
    """The layout folders present under ``root`` and their image counts, one per line (for scripts)."""
    root = Path(root).expanduser()
    lines = [f"{root}/"]
    for name in LAYOUT_FOLDERS:
        folder = root / name
        count = f"{len(list_images(folder)):>7} images" if folder.is_dir() else "  (missing)"
        lines.append(f"  {name + '/':<8}{count}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# The paper's augmentation


def default_load_size(size: int) -> int:
    """The official 286-for-256 resize, scaled to ``size`` and rounded half up (64 -> 72, 128 -> 143)."""
    return int(np.floor(size * 286 / 256 + 0.5))


def paper_transform(
    image: Image.Image,
    seed: int,
    size: int,
    load_size: int | None = None,
    train: bool = True,
    flip: bool | None = None,
) -> torch.Tensor:
    """CycleGAN's data augmentation as a pure function of ``seed`` (docs/reference.md §1.3).

    train: bicubic resize to ``load_size`` x ``load_size`` (square, as the official
    ``resize_and_crop``) -> crop ``size`` x ``size`` at (top, left) drawn from the seed's generator ->
    flip when a third draw is < 0.5. test: bicubic resize to ``size`` x ``size``, no crop, no flip.
    Then ToTensor and Normalize(0.5, 0.5): a float tensor (3, size, size) in [-1, 1].
    The three draws happen in that order whether or not flipping is enabled.
    """
    image = to_rgb(image)
    flip = train if flip is None else flip
    generator = augmentation_generator(seed)
    if train:
        load_size = default_load_size(size) if load_size is None else int(load_size)
        if load_size < size:
            raise ValueError(f"load_size ({load_size}) must be at least the crop size ({size})")
        image = TF.resize(image, [load_size, load_size], interpolation=InterpolationMode.BICUBIC)
        top = int(torch.randint(load_size - size + 1, (1,), generator=generator))
        left = int(torch.randint(load_size - size + 1, (1,), generator=generator))
        image = TF.crop(image, top, left, size, size)
    else:
        image = TF.resize(image, [size, size], interpolation=InterpolationMode.BICUBIC)
    flip_draw = float(torch.rand((), generator=generator))  # drawn even when flipping is off
    if flip and flip_draw < 0.5:
        image = TF.horizontal_flip(image)
    return pil_to_model(image)


def pil_to_model(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as the models see it: a float tensor ``(3, H, W)`` in [-1, 1]."""
    # to_image gives a channels-first view of the HWC pixels; contiguous() makes the next ops ~3x faster
    tensor = TF.to_dtype(TF.to_image(image).contiguous(), torch.float32, scale=True)
    return TF.normalize(tensor, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]).as_subclass(torch.Tensor)


def model_to_uint8(images: torch.Tensor) -> np.ndarray:
    """A batch ``(N, 3, H, W)`` in [-1, 1] as contiguous RGB ``uint8`` arrays ``(N, H, W, 3)``, rounded (OpenCV's, dlib's and PIL's input)."""
    array = images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(array)


# --------------------------------------------------------------------------------------------------
# The dataset


@dataclass
class _Domain:
    folder: Path
    paths: list[Path]
    failed: set[int] = field(default_factory=set)
    replacement: dict[int, int] = field(default_factory=dict)


class UnpairedImageFolder(UnpairedImages):
    """Unpaired images from ``root/{split}A`` and ``root/{split}B`` (data_scripts/README.md).

    ``dataset[(i_a, i_b, seed)]`` -> ``{"A", "B"}`` tensors (3, size, size) in [-1, 1], augmented by
    :func:`paper_transform` (``load_size`` defaults to ``round(size * 286 / 256)``; the test split
    only resizes). ``flip`` defaults to True for train and False for test.

    Robustness: at construction every file is inspected (``check="quick"``: header, size and end
    marker; ``"full"`` decodes everything; ``"none"`` trusts the files). Unreadable, truncated and
    tiny (short side < ``min_side``) files are left out of ``paths_a``/``paths_b`` and listed in
    :attr:`skipped`; non-RGB files are counted in :attr:`converted` and converted on load. One
    :class:`BadImageWarning` summarises both. A file that still fails later is replaced by the next
    readable file of its folder (a deterministic choice), appended to :attr:`skipped` and reported by
    one more warning at most (per process: each DataLoader worker keeps its own count).

    ``cache=True`` keeps every image, once decoded and resized to the size the transform resizes it
    to, as a ``uint8`` array in memory: later epochs only crop and flip (the fast path's input
    pipeline, ``toonlab train --fast``). The tensors are identical to uncached ones (a resize to
    the image's own size is a copy). Memory: ``load_size² × 3`` bytes per image (1,000 images at
    286 px: 245 MB); each DataLoader worker fills its own copy.
    """

    def __init__(
        self,
        root: str | Path,
        size: int = 256,
        split: str = "train",
        load_size: int | None = None,
        flip: bool | None = None,
        *,
        min_side: int = MIN_SIDE,
        check: str = "quick",
        cache: bool = False,
    ):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if int(size) < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        if check not in CHECK_MODES:
            raise ValueError(f"check must be one of {CHECK_MODES}, got {check!r}")
        self.root = Path(root).expanduser()
        self.size = int(size)
        self.split = split
        self.train = split == "train"
        self.load_size = default_load_size(self.size) if load_size is None else int(load_size)
        if self.train and self.load_size < self.size:
            raise ValueError(f"load_size ({self.load_size}) must be at least size ({self.size})")
        self.flip = self.train if flip is None else bool(flip)
        self.min_side = int(min_side)
        self.skipped: list[SkippedImage] = []
        self.converted: Counter[str] = Counter()
        self._warned_late = False
        #: (domain, index) -> the decoded image resized for the transform, as uint8 (H, W, 3); None: no cache
        self.cache: dict[tuple[str, int], np.ndarray] | None = {} if cache else None
        folder_a, folder_b = split_folders(self.root, split)
        self._domains = {"A": self._scan(folder_a, check), "B": self._scan(folder_b, check)}
        self._warn_summary()
        #: test photo i and cartoon i show the same face (a toonlab synthetic export's test split)
        self.paired = self._detect_pairing()

    # -- construction ------------------------------------------------------------------------------
    def _detect_pairing(self) -> bool:
        if self.train:
            return False
        try:
            metadata = json.loads((self.root / "metadata.json").read_text())
        except (OSError, ValueError):
            return False
        names_a = [p.name for p in self.paths_a]
        return bool(metadata.get("test_paired")) and names_a == [p.name for p in self.paths_b]

    def _scan(self, folder: Path, check: str) -> _Domain:
        usable, skipped, converted = scan_folder(folder, self.min_side, check)
        self.skipped.extend(skipped)
        self.converted.update(converted)
        if not usable:
            reasons = "; ".join(f"{s.path.name}: {s.reason}" for s in skipped)
            raise DatasetLayoutError(
                f"none of the {len(skipped)} image files in {folder} is usable ({_shorten(reasons)}). "
                f"Replace them with readable RGB/grayscale images at least {self.min_side} px on the short side."
            )
        return _Domain(folder, usable)

    def _warn_summary(self) -> None:
        if not self.skipped and not self.converted:
            return
        parts = []
        if self.skipped:
            total = len(self.skipped) + self.len_a + self.len_b
            names = "; ".join(f"{self._rel(s.path)}: {s.reason}" for s in self.skipped[:5])
            more = f"; and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            parts.append(f"skipped {len(self.skipped)} of {total} files ({names}{more})")
        if self.converted:
            modes = ", ".join(f"{mode}: {n}" for mode, n in sorted(self.converted.items()))
            parts.append(
                f"will convert {sum(self.converted.values())} non-RGB images to RGB ({modes}; "
                "alpha is composited on white, 16-bit is scaled to 8-bit)"
            )
        warnings.warn(
            f"image folder {self.root} ({self.split}): " + " and ".join(parts) + ". "
            "The full list is in dataset.skipped; the counts in dataset.converted.",
            BadImageWarning,
            stacklevel=3,
        )

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    # -- the UnpairedImages contract ---------------------------------------------------------------
    @property
    def paths_a(self) -> list[Path]:
        return self._domains["A"].paths

    @property
    def paths_b(self) -> list[Path]:
        return self._domains["B"].paths

    @property
    def len_a(self) -> int:  # type: ignore[override]
        return len(self.paths_a)

    @property
    def len_b(self) -> int:  # type: ignore[override]
        return len(self.paths_b)

    def image_a(self, index: int) -> Image.Image:
        """RGB image ``index`` of domain A (or its replacement if that file cannot be read)."""
        return self._cached("A", index)

    def image_b(self, index: int) -> Image.Image:
        """RGB image ``index`` of domain B (or its replacement if that file cannot be read)."""
        return self._cached("B", index)

    def _cached(self, name: str, index: int) -> Image.Image:
        """The image, decoded and resized once when caching (:attr:`cache`), else read from its file."""
        if self.cache is None:
            return self._load(name, index)
        pixels = self.cache.get((name, index))
        if pixels is None:
            side = self.load_size if self.train else self.size
            image = TF.resize(to_rgb(self._load(name, index)), [side, side], interpolation=InterpolationMode.BICUBIC)
            pixels = self.cache[(name, index)] = np.asarray(image, dtype=np.uint8)
        return Image.fromarray(pixels)

    def source_id_b(self, index: int) -> str:
        """``"{path}:{size_bytes}:{mtime_ns}"`` of B image ``index`` (its replacement if known), for caches."""
        domain = self._domains["B"]
        path = domain.paths[domain.replacement.get(index, index)]
        stat = path.stat()
        return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"

    def transform(self, image: Image.Image, seed: int) -> torch.Tensor:
        """:func:`paper_transform` with this dataset's size, load size, split and flip setting."""
        return paper_transform(image, seed, self.size, self.load_size, train=self.train, flip=self.flip)

    # -- loading with replacement ------------------------------------------------------------------
    def _load(self, name: str, index: int) -> Image.Image:
        domain = self._domains[name]
        count = len(domain.paths)
        if not 0 <= index < count:
            raise IndexError(f"index {index} out of range for domain {name} with {count} images")
        start = domain.replacement.get(index, index)
        for step in range(count):
            candidate = (start + step) % count
            if candidate in domain.failed:
                continue
            try:
                image = load_rgb(domain.paths[candidate], self.min_side)
            except Exception as err:  # any decode failure: skip the file, never stop the epoch
                self._record_late_failure(domain, candidate, err)
                continue
            if candidate != index:
                domain.replacement[index] = candidate
            return image
        raise RuntimeError(
            f"no image in {domain.folder} can be read any more ({len(domain.failed)} failed; see dataset.skipped)"
        )

    def _record_late_failure(self, domain: _Domain, index: int, err: Exception) -> None:
        domain.failed.add(index)
        path = domain.paths[index]
        self.skipped.append(SkippedImage(path, describe_error(err)))
        if not self._warned_late:
            self._warned_late = True
            warnings.warn(
                f"{path} could not be read ({describe_error(err)}); it is replaced by the next readable image of "
                f"{domain.folder.name}. Further failures are only counted in dataset.skipped "
                "(construct the dataset with check='full' to find every bad file up front).",
                BadImageWarning,
                stacklevel=4,
            )

    def __repr__(self) -> str:
        return (
            f"UnpairedImageFolder({str(self.root)!r}, split={self.split!r}, size={self.size}, "
            f"A={self.len_a}, B={self.len_b}, skipped={len(self.skipped)})"
        )


def _shorten(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
