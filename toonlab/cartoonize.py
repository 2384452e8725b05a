"""Your own photo as a cartoon: find the faces, level the eyes, crop, translate with every model, write a sheet.

``toonlab cartoonize PHOTO... [--model NAME|CHECKPOINT ...] [--out DIR]`` runs :func:`cartoonize`. The
public portrait cartoonizers (AnimeGANv2's ``face2paint``, photo2cartoon) all detect, align and crop
the face before translating, because a model trained on centred faces does not know what to do with
a whole scene; their weights come from the network, toonlab's from installed packages:

* **detection**: OpenCV's bundled frontal-face Haar cascade (:mod:`toonlab.data.faces`). Chosen over
  MTCNN (facenet-pytorch) and mediapipe because it ships inside ``opencv-python-headless``, which
  toonlab already needs, and adds no install weight; it finds frontal faces, not profiles.
* **alignment**: OpenCV's bundled eye cascade in the upper half of the face; when it finds two eyes
  the photo is rotated about the face centre so that they are level (no eyes: no rotation, said in
  the report);
* **crop**: a square around the face with a margin (hair and chin, like the training portraits),
  resized to each model's training size;
* **translate** with each model (a converged model's name, a checkpoint, or ``classical`` for the
  OpenCV filter of :mod:`toonlab.baselines`), and write one image per model and face plus a sheet;
  optionally paste each cartoon face back into the photo (rotated back).

Models trained on the built-in synthetic portraits have never seen a real face: expect the domain
gap to show (notebook 06 discusses it). Notebook 06 §"Detection, alignment, crop" shows each step.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from toonlab.data.faces import detect_faces, face_detector, square_box
from toonlab.data.folders import describe_error, load_rgb, model_to_uint8, pil_to_model

#: OpenCV's bundled eye cascade (file name inside ``cv2.data.haarcascades``)
EYE_CASCADE = "haarcascade_eye.xml"
#: the model name that means "no learning": toonlab.baselines' OpenCV filter
CLASSICAL = "classical"


@dataclass
class Face:
    """One face of a photo: its detector box, the eyes found (photo pixels) and the levelling angle."""

    box: tuple[int, int, int, int]
    eyes: tuple[tuple[float, float], tuple[float, float]] | None
    angle: float  # degrees the photo is turned (counter-clockwise) about ``centre`` to level the eyes
    centre: tuple[float, float]
    crop: tuple[int, int, int, int]  # square (left, top, right, bottom) in the levelled photo


@dataclass
class CartoonizeReport:
    """What :func:`cartoonize` did: files written per photo, photos without a face, unreadable files."""

    written: list[Path] = field(default_factory=list)
    faces: dict[Path, list[Face]] = field(default_factory=dict)
    no_face: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)


def eye_detector():
    """A ``cv2.CascadeClassifier`` for eyes from OpenCV's bundled files (a RuntimeError says what to install)."""
    import cv2

    path = os.path.join(getattr(getattr(cv2, "data", None), "haarcascades", ""), EYE_CASCADE)
    if not os.path.isfile(path):
        raise RuntimeError(f"OpenCV {cv2.__version__} does not bundle {EYE_CASCADE}; install "
                           "'opencv-python-headless>=4.8,<5'")
    return cv2.CascadeClassifier(path)


def find_eyes(image: Image.Image, box: tuple[int, int, int, int], detector=None
              ) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Centres of the two eyes (left of the picture first) in the upper half of face ``box``, or None.

    The eye cascade runs on the face's upper half only (nostrils and mouth corners fool it lower
    down); of its hits the two largest that sit side by side (apart horizontally by at least a
    fifth of the face) are kept.
    """
    import cv2

    x, y, w, h = box
    region = np.asarray(image.convert("L").crop((x, y, x + w, y + h // 2 + h // 10)))
    detector = detector or eye_detector()
    hits = detector.detectMultiScale(cv2.equalizeHist(region), scaleFactor=1.1, minNeighbors=5,
                                     minSize=(max(4, w // 10), max(4, w // 10)))
    hits = sorted(np.asarray(hits).reshape(-1, 4).tolist(), key=lambda b: b[2] * b[3], reverse=True)
    for i, first in enumerate(hits):
        for second in hits[i + 1:]:
            centres = sorted(((x + a + c / 2, y + b + d / 2) for a, b, c, d in (first, second)))
            if centres[1][0] - centres[0][0] >= w / 5:
                return centres[0], centres[1]
    return None


def locate_faces(image: Image.Image, largest_only: bool = False, margin: float = 0.4, min_face: int = 40,
                 detector=None, eyes=None) -> list[Face]:
    """The faces of ``image``, largest first (one with ``largest_only``), each with its alignment and crop."""
    boxes = detect_faces(image, detector or face_detector(), min_face=min_face)
    faces = []
    for box in boxes[:1] if largest_only else boxes:
        found = find_eyes(image, box, eyes)
        x, y, w, h = box
        centre = (x + w / 2, y + h / 2)
        angle = 0.0
        if found is not None:
            (lx, ly), (rx, ry) = found
            angle = math.degrees(math.atan2(ry - ly, rx - lx))
        faces.append(Face(box=box, eyes=found, angle=angle, centre=centre, crop=square_box(box, image.size, margin)))
    return faces


def aligned_crop(image: Image.Image, face: Face, size: int) -> Image.Image:
    """The face of ``image`` with its eyes level, as a ``size`` x ``size`` RGB square."""
    levelled = image.rotate(face.angle, resample=Image.Resampling.BICUBIC, center=face.centre)
    return levelled.crop(face.crop).resize((size, size), Image.Resampling.LANCZOS)


def paste_back(image: Image.Image, face: Face, cartoon: Image.Image) -> Image.Image:
    """``image`` with ``cartoon`` (the aligned square) put back where the face was, turned back by the angle."""
    left, top, right, bottom = face.crop
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    layer.paste(cartoon.convert("RGB").resize((right - left, bottom - top), Image.Resampling.LANCZOS), (left, top))
    side = right - left
    inset = side // 12
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).ellipse((left + inset, top + inset // 2, right - inset, bottom - inset // 2), fill=255)
    layer.putalpha(mask.filter(ImageFilter.GaussianBlur(max(1, side // 24))))  # a soft oval: no square seam
    layer = layer.rotate(-face.angle, resample=Image.Resampling.BICUBIC, center=face.centre)
    out = image.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB")


@dataclass
class Cartoonizer:
    """A named translator: ``translate`` maps a batch in [-1, 1] at ``size`` px to cartoons in [-1, 1]."""

    name: str
    size: int
    translate: Callable[[torch.Tensor], torch.Tensor]


def load_cartoonizer(source: str, device: torch.device | str = "cpu", size: int | None = None) -> Cartoonizer:
    """``classical`` (the OpenCV filter), a converged model's name (``cyclegan-synthetic`` ...) or a checkpoint."""
    if source == CLASSICAL:
        from toonlab.baselines import classical_cartoon

        return Cartoonizer(CLASSICAL, size or 256, classical_cartoon)
    from toonlab.checkpoint import load_trained_model

    model = load_trained_model(source, device)
    model_size = int(model.config.image_size)
    translate = model.translator("AtoB", seed=0)
    device = next(model.parameters()).device
    name = Path(source).stem if os.sep in source or Path(source).exists() else source
    return Cartoonizer(name, size or model_size, lambda x: translate(x.to(device)).cpu())


def default_models() -> list[str]:
    """The classical filter and every converged model that ships with this toonlab."""
    from toonlab import pretrained

    return [CLASSICAL, *pretrained.available()]


def _tensor(image: Image.Image) -> torch.Tensor:
    """A batch of one: the PIL image as the models see it."""
    return pil_to_model(image.convert("RGB"))[None]


def _image(tensor: torch.Tensor) -> Image.Image:
    """The first image of a batch in [-1, 1] as PIL."""
    return Image.fromarray(model_to_uint8(tensor[:1])[0])


def cartoonize(photos: Sequence[str | Path], out: str | Path, models: Sequence[str] | None = None,
               largest_only: bool = False, paste: bool = False, margin: float = 0.4, overwrite: bool = False,
               device: torch.device | str = "cpu", say: Callable[[str], None] = print) -> CartoonizeReport:
    """Each face of each photo, levelled and cropped, translated by every model; files under ``out``.

    Writes ``out/<photo>_face<k>_<model>.png`` (the cartoon at the model's size), ``out/<photo>_face<k>_crop.png``
    (the aligned crop), ``out/<photo>_face<k>_sheet.png`` (crop and every cartoon side by side) and, with
    ``paste``, ``out/<photo>_face<k>_<model>_pasted.png``. A photo without a face or that cannot be
    read is named by ``say`` and listed in the report; existing files are kept unless ``overwrite``.
    """
    from toonlab import viz

    out = Path(out).expanduser()
    translators = [load_cartoonizer(m, device) for m in (models or default_models())]
    detector, eyes = face_detector(), eye_detector()
    report = CartoonizeReport()
    for photo in map(Path, photos):
        try:
            image = load_rgb(photo)
        except Exception as err:  # named, then the next photo
            report.unreadable.append((photo, describe_error(err)))
            say(f"skipped {photo}: {describe_error(err)}")
            continue
        faces = locate_faces(image, largest_only, margin, detector=detector, eyes=eyes)
        report.faces[photo] = faces
        if not faces:
            report.no_face.append(photo)
            say(f"no face found in {photo}: toonlab needs a frontal face at least 40 px wide; crop the photo "
                "closer or use a brighter, straighter one")
            continue
        out.mkdir(parents=True, exist_ok=True)
        for number, face in enumerate(faces, start=1):
            stem = f"{photo.stem}_face{number}"
            crop = aligned_crop(image, face, max(t.size for t in translators))
            columns = {"aligned crop": _tensor(crop)[0]}
            files = {out / f"{stem}_crop.png": crop}
            for translator in translators:
                small = crop.resize((translator.size, translator.size), Image.Resampling.LANCZOS)
                with torch.no_grad():
                    cartoon = _image(translator.translate(_tensor(small)))
                files[out / f"{stem}_{translator.name}.png"] = cartoon
                columns[translator.name] = _tensor(cartoon.resize(crop.size, Image.Resampling.NEAREST))[0]
                if paste:
                    files[out / f"{stem}_{translator.name}_pasted.png"] = paste_back(image, face, cartoon)
            for path, picture in files.items():
                if path.exists() and not overwrite:
                    say(f"kept {path} (exists; --overwrite replaces it)")
                    continue
                picture.save(path)
                report.written.append(path)
            sheet = out / f"{stem}_sheet.png"
            if sheet.exists() and not overwrite:
                say(f"kept {sheet} (exists; --overwrite replaces it)")
            else:
                figure = viz.image_strip(columns, title=f"{photo.name}, face {number}"
                                         + ("" if face.eyes else " (no eyes found: not levelled)"))
                viz.save_figure(figure, sheet)
                report.written.append(sheet)
            level = f"levelled by {face.angle:+.1f} degrees" if face.eyes else "eyes not found, not levelled"
            say(f"{photo}: face {number} at {face.box}, {level}: {len(translators)} cartoons in {out}")
    return report
