"""Your own photos -> square face crops (OpenCV's bundled Haar cascade; ``data_scripts/face_crop.py``).

Finding faces is not reading folders: :mod:`toonlab.data.folders` reads datasets, this module finds
the faces in photos and writes them as a ``trainA``-style folder of square crops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from toonlab.data.folders import (
    DatasetLayoutError,
    SkippedImage,
    describe_error,
    list_images,
    load_rgb,
    other_files_note,
    to_rgb,
)

#: OpenCV's bundled frontal-face Haar cascade (file name inside ``cv2.data.haarcascades``).
HAAR_CASCADE = "haarcascade_frontalface_default.xml"


@dataclass
class FaceCropReport:
    """What :func:`crop_faces` did: files written, photos without a face, unreadable files."""

    saved: list[Path] = field(default_factory=list)
    no_face: list[Path] = field(default_factory=list)
    unreadable: list[SkippedImage] = field(default_factory=list)


def face_detector(cascade: str | Path | None = None):
    """A ``cv2.CascadeClassifier`` for frontal faces: ``cascade`` or OpenCV's bundled Haar file.

    OpenCV 5 wheels no longer bundle the Haar cascades (and ``CascadeClassifier`` moved to the
    contrib build); the error then says to install ``opencv-python-headless<5`` or pass ``cascade``.
    """
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise RuntimeError(
            f"OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5 moved it out of the main wheel). "
            "Install OpenCV 4: pip install 'opencv-python-headless>=4.8,<5'"
        )
    if cascade is None:
        folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
        cascade = os.path.join(folder, HAAR_CASCADE)
        if not os.path.isfile(cascade):
            raise RuntimeError(
                f"OpenCV {cv2.__version__} does not bundle {HAAR_CASCADE} (OpenCV 5 wheels dropped the Haar files). "
                "Install OpenCV 4: pip install 'opencv-python-headless>=4.8,<5', or pass the path of a copy of "
                f"{HAAR_CASCADE} as cascade= (face_crop.py --cascade FILE)"
            )
    detector = cv2.CascadeClassifier(str(cascade))
    if detector.empty():
        raise RuntimeError(f"OpenCV could not load the face cascade {cascade}")
    return detector


def face_detection_available() -> bool:
    """True when :func:`face_detector` works with OpenCV's bundled cascade."""
    try:
        face_detector()
    except RuntimeError:
        return False
    return True


def detect_faces(image: Image.Image, detector=None, min_face: int = 40, max_side: int = 800) -> list[tuple[int, int, int, int]]:
    """Face boxes ``(x, y, w, h)`` in ``image`` pixels, largest first (Haar cascade on a ``max_side`` copy)."""
    import cv2

    detector = detector or face_detector()
    rgb = np.asarray(to_rgb(image))
    scale = min(1.0, max_side / max(rgb.shape[:2]))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    smallest = max(8, int(round(min_face * scale)))
    boxes = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest))
    found = [tuple(int(round(v / scale)) for v in box) for box in np.asarray(boxes).reshape(-1, 4)]
    return sorted(found, key=lambda b: b[2] * b[3], reverse=True)


def square_box(box: tuple[int, int, int, int], image_size: tuple[int, int], margin: float = 0.4) -> tuple[int, int, int, int]:
    """A square ``(left, top, right, bottom)`` around face ``box`` (x, y, w, h), kept inside the image.

    The side is the face size times ``1 + 2 * margin`` (hair, chin and some background, like the
    portrait datasets), centred on the face and shifted inwards where it would leave the image; it
    shrinks to the image's short side only when it cannot fit otherwise.
    """
    x, y, w, h = box
    width, height = image_size
    side = int(round(max(w, h) * (1 + 2 * margin)))
    side = max(1, min(side, width, height))
    cx, cy = x + w / 2, y + h / 2
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return left, top, left + side, top + side


def crop_faces(
    source: str | Path,
    dest: str | Path,
    size: int = 256,
    margin: float = 0.4,
    min_face: int = 40,
    all_faces: bool = False,
    cascade: str | Path | None = None,
) -> FaceCropReport:
    """Crop the faces of every image under ``source`` into ``dest`` as ``size``-px JPEGs.

    Sub-folders are kept. With ``all_faces`` every detected face is saved (``name_face1.jpg`` ...),
    otherwise the largest. Photos without a detected face and unreadable files are listed in the
    report, not raised. ``cascade``: a Haar cascade XML instead of OpenCV's bundled one.
    """
    source, dest = Path(source).expanduser(), Path(dest).expanduser()
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder of photos")
    photos = list_images(source)
    if not photos:
        raise DatasetLayoutError(f"{source} holds no images: {other_files_note(source)}.")
    detector = face_detector(cascade)
    report = FaceCropReport()
    for path in photos:
        try:
            image = load_rgb(path)
        except Exception as err:  # report and go on
            report.unreadable.append(SkippedImage(path, describe_error(err)))
            continue
        boxes = detect_faces(image, detector, min_face=min_face)
        if not boxes:
            report.no_face.append(path)
            continue
        relative = path.relative_to(source).with_suffix("")
        for number, box in enumerate(boxes if all_faces else boxes[:1], start=1):
            suffix = f"_face{number}" if all_faces else ""
            target = dest / relative.parent / f"{relative.name}{suffix}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            crop = image.crop(square_box(box, image.size, margin)).resize((size, size), Image.Resampling.LANCZOS)
            crop.save(target, quality=95)
            report.saved.append(target)
    return report
