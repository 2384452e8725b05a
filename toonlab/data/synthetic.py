"""Built-in synthetic portraits: one random face description, rendered as a photo and as a cartoon.

No dataset can be downloaded where the tests run, so toonlab draws its own portraits (notebook 00,
"The data"). A :class:`FaceDescription` holds everything about one identity: skin tone, face shape,
hair, eyes, expression, glasses, background, light. Two renderers turn it into pictures that differ
in the three ways the founding report says a photo and a cartoon differ:

1. detail and texture: the photo has skin and hair texture, a textured or blurred background and
   sensor noise; the cartoon has none;
2. colour: the photo is shaded smoothly from a light direction; the cartoon uses flat palette colours,
   two-tone cel shading on the face at most, and dark outlines;
3. shape: the cartoon's eyes are 1.6x wider and 2.2x taller (:data:`CARTOON_EYE_SCALE`), its nose and
   mouth are reduced to lines, its chin is more pointed.

Every colour of the cartoon is a fixed one (outlines, eye whites, the inside of the mouth) or derived
from a colour the photo shows, through :func:`_cartoon_colour`: skin, hair, clothes, eyes, brows, and
the background, which is the photo's background flattened (:func:`_flat_background`). So the true
cartoon is a function of the photo, and a perfect translator would score 0 against it.

:class:`SyntheticPortraits` serves them as an unpaired dataset (train: photos and cartoons of
independent identities, as in the papers; test: each photo with its true cartoon, so results can be
scored against ground truth), and :func:`export_dataset` writes them as the usual
``trainA/trainB/testA/testB`` folders. Everything is a pure function of the seed.

Geometry lives in "head units": the head (without hair) spans y in [-1, 1] and x in
[-face_width, face_width], y points down. :class:`_Layout` builds every part as a polygon in these
units and maps them all to pixels at once; OpenCV rasterises them with anti-aliasing.
"""

from __future__ import annotations

import bisect
import colorsys
import functools
import json
import math
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from toonlab.data.loader import UnpairedImages, augmentation_generator

MIN_SIZE, MAX_SIZE = 32, 256
STYLES = ("photo", "cartoon")
SPLITS = ("train", "test")
DEFAULT_LENGTH = {"train": 2000, "test": 200}
#: Identity streams of :func:`describe`: train photos, train cartoons and test pairs never share one.
STREAMS = ("default", "trainA", "trainB", "test")
#: Cartoon eye opening relative to the photo's, (width, height): area x3.5.
CARTOON_EYE_SCALE = (1.6, 2.2)
HAIR_STYLES = ("bald", "buzz", "short", "side_part", "bangs", "bob", "long", "bun", "afro")
BACKGROUND_KINDS = ("gradient", "studio", "bokeh", "wall")
#: Parts of :func:`render_parts` that partition the image (painting order: later covers earlier).
PART_NAMES = ("background", "clothes", "hair", "neck", "ears", "face", "brows", "nose", "mouth", "eyes")
#: The labels of :func:`render_labels`: the partition, then the glasses frames painted over it.
LABEL_NAMES = PART_NAMES + ("glasses",)
EXPORT_MARKER = "toonlab.data.synthetic"
_EXPORT_FOLDERS = ("trainA", "trainB", "testA", "testB")
#: the names of the images an export writes (``{index:06d}.png``): the only files it ever deletes
_EXPORT_IMAGE = re.compile(r"[0-9]{6,}\.png")
_EXPORT_FILES = ("metadata.json", "README.txt")


def _rgb(*values: int) -> tuple[float, float, float]:
    return tuple(v / 255 for v in values)


# Skin tones from very light to very dark; a face interpolates between neighbours.
_SKIN_RAMP = [_rgb(250, 224, 204), _rgb(240, 200, 172), _rgb(226, 178, 142), _rgb(204, 150, 110),
              _rgb(176, 120, 84), _rgb(140, 92, 62), _rgb(104, 66, 46), _rgb(74, 48, 36)]
# (colour, weight); the first two weights grow with skin darkness.
_HAIR_COLOURS = [(_rgb(26, 22, 22), 0.22), (_rgb(58, 40, 30), 0.2), (_rgb(98, 66, 42), 0.14),
                 (_rgb(146, 108, 70), 0.09), (_rgb(214, 184, 118), 0.09), (_rgb(150, 66, 36), 0.05),
                 (_rgb(196, 96, 44), 0.05), (_rgb(150, 148, 146), 0.05), (_rgb(226, 224, 216), 0.03),
                 (_rgb(60, 86, 168), 0.03), (_rgb(214, 104, 156), 0.03), (_rgb(96, 150, 84), 0.02)]
_EYE_COLOURS = [(_rgb(60, 36, 22), 0.3), (_rgb(98, 62, 34), 0.2), (_rgb(122, 100, 52), 0.12),
                (_rgb(76, 118, 70), 0.12), (_rgb(70, 120, 178), 0.16), (_rgb(120, 134, 146), 0.1)]
_HAIR_STYLE_WEIGHTS = (0.04, 0.08, 0.16, 0.14, 0.12, 0.14, 0.16, 0.07, 0.09)
_GLASSES_COLOURS = [_rgb(20, 18, 20), _rgb(90, 56, 30), _rgb(170, 150, 110), _rgb(140, 30, 40), _rgb(40, 60, 120)]
_LIPS_TINT = _rgb(184, 72, 76)
_OUTLINE = (23.0, 18.0, 20.0)  # cartoon outline colour, 0..255
_SHIFT = 4  # sub-pixel bits of the fixed-point polygons handed to OpenCV
_ONE = 1 << _SHIFT


# --------------------------------------------------------------------------------------------------
# The description of one identity
# --------------------------------------------------------------------------------------------------
@dataclass
class FaceDescription:
    """All attributes of one synthetic identity (colours are sRGB triples in 0..1, lengths in head units).

    ``seed`` drives the photo's texture and noise, so a description always renders to the same bytes.
    """

    seed: int
    skin_tone: tuple[float, float, float]
    face_width: float  # half-width of the head relative to its half-height
    face_size: float  # half-height of the head as a fraction of the image
    face_x: float  # head centre offset, fraction of the image
    face_y: float
    head_tilt: float  # degrees, clockwise
    jaw: float  # super-ellipse exponent of the lower face: 2 round ... 3.2 square
    hair_style: str
    hair_colour: tuple[float, float, float]
    hair_volume: float
    hairline: float  # height of the hairline above the eyes' level
    part_side: int  # -1 left, 1 right
    eye_colour: tuple[float, float, float]
    eye_size: float  # half-width of one eye opening (photo)
    eye_spacing: float  # distance of each eye centre from the midline
    eye_height: float  # y of the eye centres
    eye_openness: float
    eye_tilt: float  # lift of the outer corners
    gaze: tuple[float, float]
    brow_thickness: float
    brow_raise: float
    nose_length: float
    nose_width: float
    mouth_width: float
    mouth_gap: float  # nose tip to mouth
    smile: float  # -0.4 (frown) ... 1 (broad smile)
    mouth_open: float  # 0 closed ... 1 wide open
    lip_colour: tuple[float, float, float]
    lip_fullness: float
    blush: float
    glasses: bool
    glasses_colour: tuple[float, float, float]
    glasses_round: bool
    background_kind: str
    background_colours: tuple[tuple[float, float, float], tuple[float, float, float]]
    light_direction: tuple[float, float, float]  # unit vector towards the light (x right, y down, z viewer)
    clothes_colour: tuple[float, float, float]
    v_neck: bool

    @classmethod
    def random(cls, rng: np.random.Generator) -> FaceDescription:
        """Draw one identity; every attribute comes from ``rng`` (one call, so it is cheap)."""
        seed = int(rng.integers(2**31 - 1))
        draws = iter(rng.random(64).tolist())

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * next(draws)

        def pick(options, weights):
            cumulative = list(np.cumsum(weights) / sum(weights))
            return options[min(bisect.bisect_right(cumulative, next(draws)), len(options) - 1)]

        def jitter(colour, amount: float):
            return tuple(min(1.0, max(0.0, c * uniform(1 - amount, 1 + amount))) for c in colour)

        darkness = next(draws)
        position = darkness * (len(_SKIN_RAMP) - 1)
        i = min(int(position), len(_SKIN_RAMP) - 2)
        skin = jitter(_mix(_SKIN_RAMP[i], _SKIN_RAMP[i + 1], position - i), 0.04)
        hair_colours, hair_weights = zip(*_HAIR_COLOURS)
        hair_weights = [w * (1 + 2 * darkness) if k < 2 else w for k, w in enumerate(hair_weights)]
        eye_colours, eye_weights = zip(*_EYE_COLOURS)
        eye_weights = [w * (1 + 3 * darkness) if k < 2 else w for k, w in enumerate(eye_weights)]
        smile = uniform(-0.4, 1.0)
        mouth_open = uniform(0.25, 1.0) if next(draws) < 0.35 else 0.0
        lx, ly = uniform(-0.75, 0.75), uniform(-0.6, 0.2)
        lz = math.sqrt(max(0.2, 1.0 - lx * lx - ly * ly))
        norm = math.sqrt(lx * lx + ly * ly + lz * lz)
        bg1 = colorsys.hsv_to_rgb(next(draws), uniform(0.1, 0.55), uniform(0.35, 0.95))
        scale = uniform(0.5, 1.2)
        bg2 = tuple(min(1.0, max(0.0, c * scale + uniform(-0.15, 0.15))) for c in bg1)
        return cls(
            seed=seed,
            skin_tone=_triple(skin),
            face_width=uniform(0.70, 0.82),
            face_size=uniform(0.28, 0.32),
            face_x=uniform(-0.03, 0.03),
            face_y=uniform(-0.02, 0.03),
            head_tilt=9.0 * (next(draws) + next(draws) - 1.0),
            jaw=uniform(2.0, 3.2),
            hair_style=pick(HAIR_STYLES, _HAIR_STYLE_WEIGHTS),
            hair_colour=_triple(jitter(pick(hair_colours, hair_weights), 0.08)),
            hair_volume=uniform(0.07, 0.2),
            hairline=uniform(0.42, 0.62),
            part_side=-1 if next(draws) < 0.5 else 1,
            eye_colour=_triple(jitter(pick(eye_colours, eye_weights), 0.1)),
            eye_size=uniform(0.12, 0.15),
            eye_spacing=uniform(0.31, 0.37),
            eye_height=uniform(-0.06, 0.03),
            eye_openness=uniform(0.8, 1.05) - 0.15 * max(smile, 0.0),
            eye_tilt=uniform(-0.1, 0.3),
            gaze=(uniform(-0.3, 0.3), uniform(-0.15, 0.15)),
            brow_thickness=uniform(0.035, 0.07),
            brow_raise=uniform(-0.5, 1.0),
            nose_length=uniform(0.30, 0.40),
            nose_width=uniform(0.10, 0.14),
            mouth_width=uniform(0.19, 0.26),
            mouth_gap=uniform(0.17, 0.23),
            smile=smile,
            mouth_open=mouth_open,
            lip_colour=_triple(_mix(skin, _LIPS_TINT, uniform(0.3, 0.55))),
            lip_fullness=uniform(0.7, 1.3),
            blush=next(draws),
            glasses=next(draws) < 0.3,
            glasses_colour=_triple(pick(_GLASSES_COLOURS, [1.0] * len(_GLASSES_COLOURS))),
            glasses_round=next(draws) < 0.5,
            background_kind=pick(BACKGROUND_KINDS, [1.0] * len(BACKGROUND_KINDS)),
            background_colours=(_triple(bg1), _triple(bg2)),
            light_direction=_triple((lx / norm, ly / norm, lz / norm)),
            clothes_colour=_triple(colorsys.hsv_to_rgb(next(draws), uniform(0.15, 0.8), uniform(0.2, 0.9))),
            v_neck=next(draws) < 0.4,
        )


def describe(seed: int, index: int, stream: str = "default") -> FaceDescription:
    """The ``index``-th identity of ``stream`` for ``seed``; the same arguments always give the same face.

    ``stream`` keeps sets apart: :class:`SyntheticPortraits` draws train photos from ``"trainA"``,
    train cartoons from ``"trainB"`` and test pairs from ``"test"``.
    """
    if stream not in STREAMS:
        raise ValueError(f"unknown identity stream {stream!r}; choose one of {', '.join(STREAMS)}")
    seed, index = int(seed), int(index)
    if not (0 <= seed < 2**48 and 0 <= index < 2**48):
        raise ValueError(f"seed and index must be integers from 0 to 2**48 - 1 (got seed={seed}, index={index})")
    key = (zlib.crc32(stream.encode()) << 96) | (seed << 48) | index  # one independent Philox stream each
    return FaceDescription.random(np.random.Generator(np.random.Philox(key=key)))


def check_size(size: int) -> int:
    """Return ``size`` as an int if it is an allowed image size, else raise a ValueError saying the range."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"synthetic portraits are {MIN_SIZE} to {MAX_SIZE} pixels wide; got size={size!r}")
    return int(size)


def _mix(a, b, t: float) -> tuple[float, ...]:
    return tuple(x + t * (y - x) for x, y in zip(a, b))


def _triple(values) -> tuple[float, ...]:
    return tuple(round(float(v), 4) for v in values)


def _scaled(colour, factor: float = 1.0) -> tuple[float, float, float]:
    """A 0..1 colour times ``factor`` as OpenCV's 0..255 scalar."""
    return tuple(min(255.0, 255.0 * factor * c) for c in colour)


def _cartoon_colour(rgb) -> tuple[float, float, float]:
    """A flat palette colour for the cartoon: a little more saturated and brighter than the photo's."""
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    return colorsys.hsv_to_rgb(h, min(1.0, s * 1.15 + 0.03), min(1.0, v * 1.06 + 0.03))


# --------------------------------------------------------------------------------------------------
# Geometry: polygons in head units, mapped to pixels together
# --------------------------------------------------------------------------------------------------
_ELLIPSE_POINTS = 32
_U15 = np.linspace(-1.0, 1.0, 15)
_T10 = np.linspace(0.0, 1.0, 10)
_T28 = np.linspace(0.0, 1.0, 28)
_HAIRLINE_ANGLES = np.linspace(np.pi, 0.0, 21)  # left temple -> right temple
_TOP_ANGLES = np.linspace(np.pi, 0.0, 24)
_AFRO_ANGLES = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)


@functools.cache
def _unit_circles() -> np.ndarray:
    """(2, n, 2): the unit circle and the unit 'squircle' (super-ellipse of exponent 4), clockwise on screen."""
    t = np.linspace(0.0, 2 * np.pi, _ELLIPSE_POINTS, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    square = np.stack([np.sign(c) * np.abs(c) ** 0.5, np.sign(s) * np.abs(s) ** 0.5], 1)
    return np.stack([np.stack([c, s], 1), square])


@functools.lru_cache(maxsize=1024)
def _head_unit(jaw: float, lower_width: float, n: int = 48) -> np.ndarray:
    """Head outline of half-width 1: round cranium on top, super-ellipse jaw of exponent ``jaw`` below."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    s, c = np.sin(t), -np.cos(t)  # top first, clockwise on screen
    lower = c > 0
    p = 2.0 / jaw
    x = np.where(lower, np.sign(s) * np.abs(s) ** p, s)
    y = np.where(lower, np.abs(c) ** p, c)
    return np.stack([x * np.where(lower, 1.0 - (1.0 - lower_width) * y, 1.0), y], 1)


def _curve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points (n, 2) from coordinate arrays (n,) (``np.stack`` is slow for tiny arrays)."""
    return np.array((x, y)).T


def _band(x: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Closed polygon between two curves over the same x (top left->right, bottom right->left)."""
    return np.array((np.concatenate((x, x[::-1])), np.concatenate((top, bottom[::-1])))).T


class _Layout:
    """Every part of one face in one style as fixed-point pixel polygons: ``self.parts[name]`` is a list.

    Shapes are described in head units; ellipses are collected as rows (centre, radii) and built in
    one vectorised step, then all points go to pixels with one matrix product (this keeps a face
    at well under a millisecond).
    """

    def __init__(self, desc: FaceDescription, size: int, style: str):
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; choose 'photo' or 'cartoon'")
        d, cartoon = desc, style == "cartoon"
        self.size, self.style, self.cartoon = size, style, cartoon
        self.scale = size * d.face_size
        self.centre = (size * (0.5 + d.face_x), size * (0.46 + d.face_y))
        angle = math.radians(d.head_tilt)
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self.line = max(1, round(size / 80))  # cartoon outline thickness, pixels
        self._polygons: dict[str, list[np.ndarray]] = {}
        self._ellipses: dict[str, list[tuple]] = {}
        ellipse, polygon = self._ellipse, self._polygon
        lx, ly, _ = d.light_direction

        # Head, ears, neck, clothes.
        fw = self.face_width = d.face_width * (1.04 if cartoon else 1.0)
        jaw, lower_width = (d.jaw * 0.7, 0.9) if cartoon else (d.jaw, 0.94)
        polygon("face", _head_unit(round(jaw, 2), lower_width) * (fw, 1.0))
        ear_rx, ear_ry = (0.11, 0.18) if cartoon else (0.09, 0.19)
        for side in (-1, 1):
            ellipse("ears", side * fw * 0.97, 0.08, ear_rx, ear_ry)
        nw = self.neck_width = 0.47 * d.face_width
        polygon("neck", np.array([[-nw, 0.3], [nw, 0.3], [nw * 1.1, 1.5], [-nw * 1.1, 1.5]]))
        ellipse("clothes", 0.0, 2.3, 1.8, 1.05)
        # The skin showing in the collar, drawn over the clothes: from the neck's right side round to its left.
        if d.v_neck:
            polygon("neckline", np.array([[nw * 1.03, 1.0], [nw * 1.25, 1.25], [0.0, 1.62], [-nw * 1.25, 1.25],
                                          [-nw * 1.03, 1.0]]))
        else:
            half = _unit_circles()[0, : _ELLIPSE_POINTS // 2 + 1] * (nw * 1.2, 0.2) + (0.0, 1.25)
            polygon("neckline", np.concatenate([[[nw * 1.03, 1.0]], half, [[-nw * 1.03, 1.0]]]))
        back, front = _hair(d, fw)
        for shape in back:
            polygon("hair_back", shape)
        for shape in front:
            polygon("hair_front", shape)
        if d.hair_style == "bun":
            ellipse("hair_back", 0.0, -1.0 - 1.4 * d.hair_volume - 0.18, 0.34, 0.3)

        # Eyes: openings and upper lids (both eyes at once), irises, pupils, highlights.
        wx, hy = CARTOON_EYE_SCALE if cartoon else (1.0, 1.0)
        ew, eh = d.eye_size * wx, d.eye_size * 0.42 * d.eye_openness * hy
        ey = d.eye_height + (0.03 if cartoon else 0.0)
        unit = _unit_circles()[0]
        x, s = unit[:, 0], unit[:, 1]
        lid = np.where(s < 0, eh * s, (0.85 if cartoon else 0.75) * eh * s)
        sides = np.array([[-1.0], [1.0]])
        eyes = np.array((sides * d.eye_spacing + ew * x, ey + lid - (d.eye_tilt * eh * 0.5) * sides * x))
        eyes = eyes.transpose(1, 2, 0)  # (eye, point, xy)
        upper = [*range(_ELLIPSE_POINTS // 2, _ELLIPSE_POINTS), 0]  # corner to corner over the top
        for k in range(2):
            polygon("eyes", eyes[k])
            polygon("lids", eyes[k, upper])
        for side in (-1, 1):
            ex = side * d.eye_spacing
            if cartoon:  # sized and placed to stay inside the opening, so no clipping is needed
                ix, iy, irx, iry = ex + d.gaze[0] * ew * 0.25, ey + d.gaze[1] * eh * 0.1, 0.42 * ew, 0.72 * eh
            else:
                ix, iy, irx, iry = ex + d.gaze[0] * ew * 0.35, ey + d.gaze[1] * eh * 0.5, 0.46 * ew, 0.46 * ew
            ellipse("irises", ix, iy, irx, iry)
            ellipse("iris_centres", ix, iy, irx * 0.72, iry * 0.72)
            pupil = 0.4 if cartoon else 0.45
            ellipse("pupils", ix, iy, irx * pupil, iry * pupil)
            glint = irx * (0.3 if cartoon else 0.22)
            ellipse("highlights", ix + lx * irx * 0.45, iy + min(ly, -0.3) * iry * 0.45, glint, glint)

        # Brows (both at once).
        brow_y = ey - eh - (0.09 if cartoon else 0.12) - 0.05 * d.brow_raise
        inner = d.eye_spacing - d.eye_size * 0.95
        outer = d.eye_spacing + d.eye_size * (1.25 if cartoon else 1.15)
        bx = inner + (outer - inner) * _T10
        by = brow_y - 0.05 * np.sin(np.pi * _T10 ** 0.8) + 0.03 * min(d.smile, 0.0) * (1 - _T10)
        half = 0.5 * d.brow_thickness * (1.1 - 0.6 * _T10)
        brow = _band(bx, by - half, by + half)
        polygon("brows", brow * (-1.0, 1.0))
        polygon("brows", brow)

        # Nose: a hook line in the cartoon; a wedge with shading, nostrils and a tip highlight in the photo.
        nose_bottom = ey + d.nose_length * (0.85 if cartoon else 1.0)
        nwid, shade_side = d.nose_width, (-1.0 if lx > 0 else 1.0)
        if cartoon:
            polygon("nose", np.array([[0.02, nose_bottom - 0.13], [0.05, nose_bottom - 0.01],
                                      [-0.03, nose_bottom + 0.01]]) * (shade_side, 1.0))
        else:
            polygon("nose", np.array([
                [-0.04, ey + 0.06], [0.04, ey + 0.06], [nwid * 0.7, nose_bottom - 0.06], [nwid, nose_bottom],
                [nwid * 0.6, nose_bottom + 0.04], [-nwid * 0.6, nose_bottom + 0.04], [-nwid, nose_bottom],
                [-nwid * 0.7, nose_bottom - 0.06]]))
            polygon("nose_side", np.array([[0.03, ey + 0.1], [0.085, ey + 0.1], [nwid * 1.05, nose_bottom - 0.02],
                                           [nwid * 0.6, nose_bottom - 0.02]]) * (shade_side, 1.0))
            ellipse("nose_under", 0.0, nose_bottom + 0.05, nwid * 0.8, 0.035)
            for side in (-1, 1):
                ellipse("nostrils", side * nwid * 0.45, nose_bottom + 0.005, 0.04, 0.022)
                ellipse("sockets", side * d.eye_spacing, d.eye_height - 0.03, d.eye_size * 1.35, d.eye_size * 0.8)
            ellipse("nose_tip", lx * 0.03, nose_bottom - 0.07, 0.035, 0.06)
            hz = d.light_direction[2] + 1.0
            norm = math.sqrt(lx * lx + ly * ly + hz * hz)  # the glint sits where the normal is the half-way vector
            ellipse("glint", fw * lx / norm, -0.05 + 1.1 * ly / norm - 0.25, 0.18, 0.1)

        # Mouth: lip line; when open, a cavity with teeth and tongue built inside it; photo lips.
        mw = d.mouth_width * (0.8 if cartoon else 1.0)
        my = nose_bottom + d.mouth_gap * (0.9 if cartoon else 1.0)
        u = _U15
        mx = mw * u
        line = my - d.smile * 0.06 * u * u + 0.015 * d.smile
        polygon("lip_line", _curve(mx, line))
        self.mouth_open = d.mouth_open > 0
        opening = d.mouth_open * (0.16 if cartoon else 0.12) * (1 - u * u) ** 0.8
        if self.mouth_open:
            polygon("cavity", _band(mx, line, line + opening))
            polygon("teeth", _band(mx[2:-2], line[2:-2], line[2:-2] + 0.3 * opening[2:-2]))
            polygon("tongue", _band(mx[3:-3], line[3:-3] + 0.6 * opening[3:-3], line[3:-3] + opening[3:-3]))
        if not cartoon:
            envelope = 1 - u * u
            upper_lip = line - 0.06 * d.lip_fullness * envelope ** 0.7 * (1 - 0.3 * np.exp(-(u / 0.15) ** 2))
            lower_lip = line + opening + 0.08 * d.lip_fullness * envelope ** 0.6
            polygon("lips", _band(mx, upper_lip, lower_lip))
            polygon("lower_lip", _band(mx, line + opening, lower_lip))

        cheek_y = (ey + nose_bottom) / 2 + 0.08
        for side in (-1, 1):
            ellipse("cheeks", side * (d.eye_spacing + 0.04), cheek_y, 0.13, 0.08 if cartoon else 0.1)

        if d.glasses:  # frames around the eyes (bigger around the cartoon's bigger eyes), bridge, temples
            grx = ew * (1.3 if cartoon else 1.45)
            gry = max(eh * (1.75 if cartoon else 2.6), ew * (0.85 if cartoon else 1.0))
            gy = ey + 0.01
            for side in (-1, 1):
                ellipse("glasses", side * d.eye_spacing, gy, grx, gry, square=not d.glasses_round)
            edge, reach = d.eye_spacing - grx, d.eye_spacing + grx
            polygon("glasses_lines", np.array([[-edge, gy - 0.02], [0.0, gy - 0.05], [edge, gy - 0.02]]))
            polygon("glasses_lines", np.array([[-reach, gy - 0.02], [-fw * 0.98, gy - 0.05]]))
            polygon("glasses_lines", np.array([[reach, gy - 0.02], [fw * 0.98, gy - 0.05]]))
        self.parts = self._to_pixels()

    def _polygon(self, name: str, points: np.ndarray) -> None:
        self._polygons.setdefault(name, []).append(points)

    def _ellipse(self, name: str, cx: float, cy: float, rx: float, ry: float, square: bool = False) -> None:
        self._ellipses.setdefault(name, []).append((cx, cy, rx, ry, float(square)))

    def _to_pixels(self) -> dict[str, list[np.ndarray]]:
        """All shapes as int32 fixed-point pixel polygons (OpenCV's ``shift`` = :data:`_SHIFT`)."""
        rows = np.array([row for group in self._ellipses.values() for row in group])
        ellipses = _unit_circles()[rows[:, 4].astype(int)] * rows[:, None, 2:4] + rows[:, None, 0:2]
        polygons = [p for group in self._polygons.values() for p in group]
        points = np.concatenate([ellipses.reshape(-1, 2), *polygons])
        k = self.scale * _ONE
        matrix = np.array([[self.cos * k, self.sin * k], [-self.sin * k, self.cos * k]])
        fixed = np.rint(points @ matrix + (self.centre[0] * _ONE, self.centre[1] * _ONE)).astype(np.int32)
        parts: dict[str, list[np.ndarray]] = {}
        start = 0
        for name, group in self._ellipses.items():
            end = start + len(group) * _ELLIPSE_POINTS
            parts[name] = list(fixed[start:end].reshape(len(group), _ELLIPSE_POINTS, 2))
            start = end
        for name, group in self._polygons.items():
            found = parts.setdefault(name, [])
            for p in group:
                found.append(fixed[start:start + len(p)])
                start += len(p)
        return parts

    def local_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Head-unit coordinates of every pixel centre, two (size, size) float32 arrays."""
        grid = np.arange(self.size, dtype=np.float32)
        dx, dy = grid[None, :] - self.centre[0], grid[:, None] - self.centre[1]
        inv = 1.0 / self.scale
        return (self.cos * inv) * dx + (self.sin * inv) * dy, (self.cos * inv) * dy - (self.sin * inv) * dx

    def layers(self) -> list[tuple[str, str, bool]]:
        """(part of :data:`PART_NAMES`, polygon group, filled?) in painting order."""
        mouth = "cavity" if self.mouth_open and self.cartoon else ("lip_line" if self.cartoon else "lips")
        return [("hair", "hair_back", True), ("neck", "neck", True), ("clothes", "clothes", True),
                ("neck", "neckline", True), ("ears", "ears", True), ("face", "face", True),
                ("brows", "brows", True), ("nose", "nose", not self.cartoon), ("mouth", mouth, mouth != "lip_line"),
                ("eyes", "eyes", True), ("hair", "hair_front", True)]


def _hair(d: FaceDescription, fw: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Back layer (behind head and neck) and front cap (over the forehead, down to the hairline)."""
    style, t = d.hair_style, d.hair_volume
    if style == "bald":
        return [], []
    if style == "buzz":
        t = 0.035
    rx, ry = fw + t, 1.0 + 1.4 * t
    temple_y = -0.04
    bumpy = style == "afro"
    start = math.asin(min(0.99, -temple_y / ry))
    phi = start + (np.pi - 2 * start) * _T28
    radius = 1.0 + 0.05 * np.sin(14 * phi) if bumpy else 1.0
    outer = _curve(rx * radius * np.cos(phi), -ry * radius * np.sin(phi))  # right temple, over the top, left
    hairline = d.hairline + (0.08 if style == "buzz" else 0.0)
    if style == "bangs":
        hairline = 0.28 + 0.1 * (d.hairline - 0.42)
    q = _HAIRLINE_ANGLES
    rise = np.sin(q) ** (0.35 if style == "bangs" else 0.6)
    ys = temple_y + 0.06 - (temple_y + 0.06 + hairline) * rise
    if style == "side_part":
        ys = ys - 0.12 * d.part_side * np.cos(q) * rise - 0.05
    elif style == "bangs":
        ys = ys + 0.025 * (np.arange(21) % 2) * rise
    elif bumpy:
        ys = ys + 0.02 * np.sin(9 * q)
    front = [np.concatenate([outer, _curve(fw * 0.95 * np.cos(q), ys)])]
    back = []
    if style in ("bob", "long"):
        bottom, flare = (0.85, 0.06) if style == "bob" else (1.95, 0.2)
        r2 = rx + 0.06
        phi = _TOP_ANGLES
        top = _curve(r2 * np.cos(phi), -(ry + 0.03) * np.sin(phi))  # left, over the top, right
        right = np.array([[r2 + flare * 0.5, bottom * 0.5], [r2 + flare, bottom - 0.05],
                          [rx + flare * 0.5, bottom + 0.06], [fw * 0.5, bottom + 0.02]])
        back.append(np.concatenate([top, right, right[::-1] * (-1.0, 1.0)]))
    elif bumpy:
        phi = _AFRO_ANGLES
        r = 1.0 + 0.05 * np.sin(13 * phi)
        back.append(_curve((fw + 0.42) * r * np.cos(phi), -0.18 + 1.12 * r * np.sin(phi)))
    return back, front


# --------------------------------------------------------------------------------------------------
# Photo style
# --------------------------------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1
_SENSOR_NOISE = 0.04  # amplitude of the uniform sensor noise (std about 3 grey levels)


@functools.lru_cache(maxsize=1)
def _noise_tiles() -> tuple[np.ndarray, np.ndarray]:
    """Fixed uniform noise: sensor noise (512, 512, 3), scaled, and grain (512, 512, 3) in [-0.5, 0.5).

    Drawing fresh noise for every photo would cost more than the rest of the picture at 64 px; each
    photo reads windows of these tiles at offsets of its own instead.
    """
    rng = np.random.Generator(np.random.Philox(key=0x70686F746F))
    tiles = rng.random((2, 2 * MAX_SIZE, 2 * MAX_SIZE, 3), dtype=np.float32) - 0.5
    return tiles[0] * _SENSOR_NOISE, tiles[1]


def _texture_offsets(desc: FaceDescription, size: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """Where the photo's noise windows start: from ``rng`` if given, else a hash of the seed and size."""
    if rng is not None:
        oy, ox = rng.integers(0, MAX_SIZE + 1, 2).tolist()
        return oy, ox
    x = (desc.seed * (MAX_SIZE + 1) + size + 0x9E3779B97F4A7C15) & _MASK64  # splitmix64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    x ^= x >> 31
    return x % (MAX_SIZE + 1), (x >> 20) % (MAX_SIZE + 1)


@functools.lru_cache(maxsize=4)
def _background_grid(low: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (1, low) and y (low, 1) over [-0.5, 0.5], and the lens vignette (low, low, 1)."""
    grid = np.linspace(-0.5, 0.5, low, dtype=np.float32)
    gx, gy = grid[None, :], grid[:, None]
    vignette = (1.0 - 0.18 * (gx * gx + gy * gy))[..., None]
    for shared in (gx, gy, vignette):  # cached: read-only
        shared.flags.writeable = False
    return gx, gy, vignette


def _background_field(desc: FaceDescription, grain: np.ndarray) -> np.ndarray:
    """The photo's background as drawn, before enlarging: float32 (low, low, 3), low = 32 for bokeh, else 16.

    Gradient, studio spot, blurred scene with bokeh, or a plaster wall. ``grain`` (at least 32 x 32 x 3,
    uniform in [-0.5, 0.5)) supplies the randomness; only its top-left 32 x 32 corner is read.
    """
    low = 32 if desc.background_kind == "bokeh" else 16
    c1, c2 = (np.array(c, np.float32) for c in desc.background_colours)
    gx, gy, vignette = _background_grid(low)
    lx, ly, _ = desc.light_direction
    kind = desc.background_kind
    if kind == "gradient":
        ramp = 0.5 + 0.6 * (gx * lx - gy * (1 - abs(lx)))
        np.minimum(np.maximum(ramp, 0.0, out=ramp), 1.0, out=ramp)  # np.clip, without its overhead
        image = c2 + ramp[..., None] * (c1 - c2)
    elif kind == "studio":
        spot = ((gx + 0.25 * lx) ** 2 + (gy + 0.1) ** 2) * 2.2
        np.minimum(np.maximum(spot, 0.0, out=spot), 1.0, out=spot)
        image = c1 + spot[..., None] * (c2 - c1)
    elif kind == "bokeh":  # a blurred scene of colour patches with soft bright discs
        cells = c1 + (grain[:4, :4, 1:2] + 0.5) * (c2 - c1) + 0.1 * grain[4:8, :4]
        image = cv2.resize(cells, (low, low), interpolation=cv2.INTER_CUBIC)
        spots = np.zeros((low, low), np.float32)
        for x, y, r in (grain[8, :6] + 0.5).tolist():
            cv2.circle(spots, (int(x * low), int(y * low)), int(1 + 2 * r), 0.25, -1)
        image += cv2.GaussianBlur(spots, (0, 0), 0.7)[..., None] * (1.0 - image)
    else:  # wall: coarse plaster grain and light fall-off
        image = c1 * (1.0 + 0.25 * (gx * lx + gy * ly) + 0.12 * grain[:low, :low, 1])[..., None]
    image *= vignette  # lens vignette
    return image


def _photo_background(desc: FaceDescription, size: int, grain: np.ndarray) -> np.ndarray:
    """The photo's background (:func:`_background_field`) enlarged to (size, size, 3) float32."""
    field = _background_field(desc, grain).astype(np.float32)
    return cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR)


@functools.lru_cache(maxsize=8)
def _blank(side: int) -> np.ndarray:
    """(side, side) uint8 of 255, to copy (faster than np.full for small masks)."""
    return np.full((side, side), 255, np.uint8)


#: Polygon groups of the cartoon whose union is the person (the background shows everywhere else), in
#: sets of groups that never overlap, so each set can be filled in one call (OpenCV fills overlaps
#: even-odd): the head (|y| <= 1 in head units) ends above the clothes (y >= 1.25), and the neck
#: (|x| <= 0.43) lies between the ears (|x| >= 0.59).
_SILHOUETTE = (("face", "clothes"), ("neck", "ears"), ("hair_back",), ("hair_front",))


def _flat_background(desc: FaceDescription, size: int, parts: dict[str, list[np.ndarray]]) -> tuple[float, ...]:
    """The photo's background flattened: the mean colour (0..1 RGB) of its field where the background shows.

    The photo's own background field (:func:`_background_field`, with the grain window
    :func:`render_photo` reads for ``desc`` and ``size`` when it is given no ``rng``) at the 16 or 32 px
    it is drawn at, averaged over the pixels the person leaves uncovered (``parts``: the cartoon's
    polygons; their silhouette is within a pixel or so of the photo's). The cartoon paints its
    background in this colour through :func:`_cartoon_colour`, so, like every cartoon colour, it is a
    function of what the photo shows. (The photo clips each pixel to 0..1; here only the mean is
    clipped: about 1 field in 100 has pixels outside, and that moves its mean by under 0.3 grey levels.)
    """
    _, grain_tile = _noise_tiles()
    oy, ox = _texture_offsets(desc, size, None)
    field = _background_field(desc, grain_tile[oy:oy + 32, ox:ox + 32])
    low = field.shape[0]
    # The person at the field's resolution: each of its pixels covers 2**extra of the image's (the same
    # fixed-point polygons with a larger shift draw it, offset so that pixel centres line up).
    extra = max(0, (size // low).bit_length() - 1)
    side = -(-size >> extra)
    shows = _blank(side).copy()
    offset = (-(_ONE // 2) * ((1 << extra) - 1),) * 2
    for names in _SILHOUETTE:
        polygons = [p for name in names for p in parts.get(name, ())]
        if polygons:
            cv2.fillPoly(shows, polygons, 0, cv2.LINE_8, _SHIFT + extra, offset)
    if side != low:  # sizes that are not a power of two times the field's
        field = cv2.resize(field, (side, side), interpolation=cv2.INTER_LINEAR)
    if not (shows[0, 0] or shows.any()):  # the person covers everything (it never does): the whole field
        shows = None
    return tuple(min(1.0, max(0.0, v)) for v in cv2.mean(field, shows)[:3])


def _coverage(size: int, groups, blur: float = 0.0):
    """Anti-aliased coverage of polygon groups (one OpenCV call per group, so groups may overlap).

    Returns ((y0, y1, x0, x1), float32 alpha of that box), or None when nothing lands in the image.
    """
    mask = np.zeros((size, size), np.uint8)
    for group in groups:
        if group:
            cv2.fillPoly(mask, group, 255, cv2.LINE_AA, _SHIFT)
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0:
        return None
    margin = int(3 * blur + 1) if blur else 0
    y0, y1, x0, x1 = max(y - margin, 0), min(y + h + margin, size), max(x - margin, 0), min(x + w + margin, size)
    alpha = cv2.multiply(mask[y0:y1, x0:x1], 1.0 / 255.0, dtype=cv2.CV_32F)
    if blur:
        alpha = cv2.GaussianBlur(alpha, (0, 0), blur)
    return (y0, y1, x0, x1), alpha


def _blend(image: np.ndarray, coverage, colour) -> None:
    """``image += alpha * (colour - image)`` inside the coverage box; colour is a triple or f(box) -> field."""
    if coverage is None:
        return
    box, alpha = coverage
    y0, y1, x0, x1 = box
    region = image[y0:y1, x0:x1]
    value = colour(box) if callable(colour) else np.asarray(colour, np.float32)
    region += alpha[..., None] * (value - region)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """0..1 float RGB image -> uint8, rounded and saturated."""
    return cv2.multiply(image, (255.0, 255.0, 255.0, 0.0), dtype=cv2.CV_8U)


def render_photo(desc: FaceDescription, size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """The photo style of ``desc``: (size, size, 3) uint8 RGB, smoothly shaded, textured and noisy.

    Lambert shading of ellipsoids from ``desc.light_direction``, a glint, skin and hair texture,
    small eyes with iris, pupil and highlight, soft nose and lip shading, a textured or blurred
    background and sensor noise. The randomness (where the photo reads its noise) comes from ``rng``
    if given, else from ``desc.seed`` and ``size``, so the same description always gives the same bytes.
    """
    size = check_size(size)
    lay = _Layout(desc, size, "photo")
    parts, aa = lay.parts, cv2.LINE_AA
    sensor_tile, grain_tile = _noise_tiles()
    oy, ox = _texture_offsets(desc, size, rng)
    sensor = sensor_tile[oy:oy + size, ox:ox + size]
    grains = grain_tile[oy:oy + size, ox:ox + size]
    grain = grains[..., 0]
    image = _photo_background(desc, size, grains)
    xl, yl = lay.local_grid()
    lx, ly, lz = desc.light_direction
    soft = size / 256 if size >= 128 else 0.0  # extra edge softness, pixels

    def lit(colour, cx, cy, rx, ry, ambient, strength, texture, whole=False):
        """``colour`` shaded like an ellipsoid centred (cx, cy) with radii (rx, ry) (Lambert), times ``texture``.

        With ``whole`` the field is computed once for the whole image and then cut to each box.
        """
        colour = np.asarray(colour, np.float32)
        cache = []

        def compute(y0, y1, x0, x1):
            u = xl[y0:y1, x0:x1] - cx
            u *= 1.0 / rx
            v = yl[y0:y1, x0:x1] - cy
            v *= 1.0 / ry
            nz = 1.0 - u * u - v * v
            np.sqrt(np.maximum(nz, 0.04, out=nz), out=nz)
            u *= lx * strength
            v *= ly * strength
            nz *= lz * strength
            u += v
            u += nz
            shade = np.maximum(u, 0.0, out=u)
            shade += ambient
            shade *= texture[y0:y1, x0:x1]
            return shade[..., None] * colour

        def field(box):
            if not whole:
                return compute(*box)
            if not cache:
                cache.append(compute(0, size, 0, size))
            y0, y1, x0, x1 = box
            return cache[0][y0:y1, x0:x1]

        return field

    # Stage 1 (float): back hair, neck, clothes, collar, ears and face, each shaded from the light.
    skin, hair = desc.skin_tone, desc.hair_colour
    fw, nw = lay.face_width, lay.neck_width
    skin_texture = 1.0 + 0.07 * grain
    if desc.hair_style == "afro":  # curls: isotropic blobs
        strands = cv2.resize(np.ascontiguousarray(grains[: size // 3, : size // 3, 2]), (size, size))
    else:  # strands: noise stretched along y
        strands = cv2.resize(np.ascontiguousarray(grains[: max(4, size // 10), : size // 2, 2]), (size, size))
    strands *= 0.3
    strands += 1.0 + 0.12 * grain
    hair_field = lit(hair, 0.0, -0.1, fw + 0.25, 1.3, 0.35, 0.8, strands, whole=True)
    neck_shade = skin_texture * (0.55 + 0.35 * np.clip((yl - 0.95) * (1 / 0.35), 0.0, 1.0))  # shadow under the chin
    neck_field = lit(skin, 0.0, 1.0, nw * 1.6, 3.0, 0.4, 0.55, neck_shade)
    _blend(image, _coverage(size, [parts.get("hair_back")], soft * 1.5), hair_field)
    _blend(image, _coverage(size, [parts["neck"]], soft), neck_field)
    _blend(image, _coverage(size, [parts["clothes"]], soft),
           lit(desc.clothes_colour, 0.0, 2.3, 1.8, 1.05, 0.45, 0.65, 1.0 + 0.08 * grain))
    _blend(image, _coverage(size, [parts["neckline"]], soft), neck_field)
    head = _coverage(size, [parts["ears"], parts["face"]], soft)
    _blend(image, head, lit(skin, 0.0, -0.05, fw * 1.05, 1.1, 0.42, 0.68, skin_texture))

    # Soft shading on the skin, blurred together: eye sockets, nose side and underside, glints on the
    # forehead and nose tip (channel 0, darkening; negative brightens) and blush (channel 1).
    if head is not None:
        y0, y1, x0, x1 = head[0]
        shading = np.zeros((size, size, 2), np.float32)
        for name, amount in (("sockets", 0.3), ("nose_side", 0.4), ("nose_under", 0.5), ("glint", -0.07),
                             ("nose_tip", -0.2)):
            cv2.fillPoly(shading, parts[name], (amount, 0.0), cv2.LINE_8, _SHIFT)
        cv2.fillPoly(shading, parts["cheeks"], (0.0, 0.25 * desc.blush), cv2.LINE_8, _SHIFT)
        shading = cv2.GaussianBlur(shading[y0:y1, x0:x1], (0, 0), max(0.6, 0.06 * lay.scale))
        region = image[y0:y1, x0:x1]
        region *= 1.0 - shading[..., :1]
        region += shading[..., 1:] * (np.array((0.85, 0.35, 0.38), np.float32) - region)
    canvas = _to_uint8(image)

    # Stage 2 (8-bit, drawn by OpenCV with anti-aliasing): brows, nostrils, mouth, eyes.
    brows = _scaled(skin, 0.45) if desc.hair_style == "bald" else _scaled(hair, 0.7)
    cv2.fillPoly(canvas, parts["brows"], brows, aa, _SHIFT)
    cv2.fillPoly(canvas, parts["nostrils"], _scaled(skin, 0.35), aa, _SHIFT)
    lips = desc.lip_colour
    cv2.fillPoly(canvas, parts["lips"], _scaled(lips, 0.8), aa, _SHIFT)
    cv2.fillPoly(canvas, parts["lower_lip"], _scaled(lips, 1.05), aa, _SHIFT)
    if lay.mouth_open:
        cv2.fillPoly(canvas, parts["cavity"], _scaled((0.22, 0.07, 0.08)), aa, _SHIFT)
        cv2.fillPoly(canvas, parts["tongue"], _scaled((0.55, 0.25, 0.27)), aa, _SHIFT)
        cv2.fillPoly(canvas, parts["teeth"], _scaled((0.88, 0.86, 0.8)), aa, _SHIFT)
    cv2.polylines(canvas, parts["lip_line"], False, _scaled(lips, 0.4), 1, aa, _SHIFT)
    # The iris is larger than the opening: draw the eye on a copy and keep it only inside the opening.
    eye = canvas.copy()
    cv2.fillPoly(eye, parts["eyes"], _scaled((0.93, 0.91, 0.88), 0.8 + 0.2 * lz), aa, _SHIFT)
    cv2.fillPoly(eye, parts["irises"], _scaled(desc.eye_colour, 0.6), aa, _SHIFT)
    cv2.fillPoly(eye, parts["iris_centres"], _scaled(desc.eye_colour), aa, _SHIFT)
    cv2.fillPoly(eye, parts["pupils"], (12, 10, 10), aa, _SHIFT)
    cv2.fillPoly(eye, parts["highlights"], (250, 250, 250), aa, _SHIFT)
    opening = _coverage(size, [parts["eyes"]])
    if opening is not None:
        (y0, y1, x0, x1), alpha = opening
        region = canvas[y0:y1, x0:x1].astype(np.float32)
        region += alpha[..., None] * (eye[y0:y1, x0:x1] - region) + 0.5
        canvas[y0:y1, x0:x1] = region.astype(np.uint8)
    cv2.polylines(canvas, parts["lids"], False, (25, 18, 18), max(1, round(size / 128)), aa, _SHIFT)

    # Stage 3 (float): front hair over everything, sensor noise; then the glasses.
    image = cv2.multiply(canvas, (1 / 255, 1 / 255, 1 / 255, 0.0), dtype=cv2.CV_32F)
    _blend(image, _coverage(size, [parts.get("hair_front")], soft * 1.5), hair_field)
    image += sensor
    canvas = _to_uint8(image)
    if desc.glasses:
        frame, thickness = _scaled(desc.glasses_colour), max(1, round(size / 110))
        cv2.polylines(canvas, parts["glasses"], True, frame, thickness, aa, _SHIFT)
        cv2.polylines(canvas, parts["glasses_lines"], False, frame, thickness, aa, _SHIFT)
    return canvas


# --------------------------------------------------------------------------------------------------
# Cartoon style
# --------------------------------------------------------------------------------------------------
def render_cartoon(desc: FaceDescription, size: int) -> np.ndarray:
    """The cartoon style of ``desc``: (size, size, 3) uint8 RGB of flat palette colours with dark outlines.

    Shape is stylised: eyes :data:`CARTOON_EYE_SCALE` times the photo's, a line for nose and mouth,
    a pointier chin. The face has two tones (lit and cel shadow); there is no texture and no noise.
    The flat background is the mean colour of the background of ``render_photo(desc, size)`` (the
    photo drawn without an explicit ``rng``), so the cartoon is that photo's ground truth.
    """
    size = check_size(size)
    lay = _Layout(desc, size, "cartoon")
    parts, line, aa = lay.parts, lay.line, cv2.LINE_AA
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = np.rint(_scaled(_cartoon_colour(_flat_background(desc, size, parts))))
    skin = _scaled(_cartoon_colour(desc.skin_tone))
    shadow = (skin[0] * 0.84, skin[1] * 0.76, skin[2] * 0.8)
    hair_colour = _cartoon_colour(desc.hair_colour)
    hair = _scaled(hair_colour)

    def part(name, colour):
        if name in parts:
            cv2.fillPoly(canvas, parts[name], colour, aa, _SHIFT)
            cv2.polylines(canvas, parts[name], True, _OUTLINE, line, aa, _SHIFT)

    part("hair_back", hair)
    part("neck", shadow)
    part("clothes", _scaled(_cartoon_colour(desc.clothes_colour)))
    cv2.fillPoly(canvas, parts["neckline"], shadow, aa, _SHIFT)
    cv2.polylines(canvas, parts["neckline"], False, _OUTLINE, line, aa, _SHIFT)
    part("ears", skin)
    # Face: cel shadow everywhere, the lit tone where the face shifted towards the light still covers it.
    face = parts["face"][0]
    cv2.fillPoly(canvas, [face], shadow, aa, _SHIFT)
    lx, ly, _ = desc.light_direction
    shift = np.array([lx, ly], np.float32) * (0.22 * lay.scale * _ONE)
    face_f = face.astype(np.float32)
    area, lit = cv2.intersectConvexConvex(face_f, face_f + shift)
    if area > 0:
        cv2.fillPoly(canvas, [np.rint(lit).astype(np.int32)], skin, aa, _SHIFT)
    cv2.polylines(canvas, [face], True, _OUTLINE, line, aa, _SHIFT)

    if desc.blush > 0.6:
        cv2.fillPoly(canvas, parts["cheeks"], _scaled((0.96, 0.6, 0.62)), aa, _SHIFT)
    # The brows in the colour the photo gives them: the hair's, or a dark skin tone on a bald head.
    bald = desc.hair_style == "bald"
    brows = _scaled(_cartoon_colour(desc.skin_tone), 0.35) if bald else _scaled(hair_colour, 0.55)
    cv2.fillPoly(canvas, parts["brows"], brows, aa, _SHIFT)
    cv2.polylines(canvas, parts["nose"], False, _OUTLINE, line, aa, _SHIFT)
    if lay.mouth_open:
        cv2.fillPoly(canvas, parts["cavity"], _scaled((0.45, 0.1, 0.13)), aa, _SHIFT)
        cv2.fillPoly(canvas, parts["tongue"], _scaled((0.93, 0.45, 0.5)), aa, _SHIFT)
        if desc.mouth_open > 0.5:
            cv2.fillPoly(canvas, parts["teeth"], (255, 255, 255), aa, _SHIFT)
        cv2.polylines(canvas, parts["cavity"], True, _OUTLINE, line, aa, _SHIFT)
    else:
        cv2.polylines(canvas, parts["lip_line"], False, _OUTLINE, line, aa, _SHIFT)

    cv2.fillPoly(canvas, parts["eyes"], (255, 255, 255), aa, _SHIFT)
    cv2.fillPoly(canvas, parts["irises"], _scaled(_cartoon_colour(desc.eye_colour)), aa, _SHIFT)
    cv2.fillPoly(canvas, parts["pupils"], _OUTLINE, aa, _SHIFT)
    cv2.fillPoly(canvas, parts["highlights"], (255, 255, 255), aa, _SHIFT)
    cv2.polylines(canvas, parts["lids"], False, _OUTLINE, line + (size >= 96), aa, _SHIFT)

    part("hair_front", hair)
    if desc.glasses:
        frame = _scaled(_cartoon_colour(desc.glasses_colour), 0.6)
        cv2.polylines(canvas, parts["glasses"], True, frame, line, aa, _SHIFT)
        cv2.polylines(canvas, parts["glasses_lines"], False, frame, line, aa, _SHIFT)
    return canvas


def render_pair(desc: FaceDescription, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(photo, cartoon) of one description, each (size, size, 3) uint8 RGB."""
    return render_photo(desc, size), render_cartoon(desc, size)


def render_parts(desc: FaceDescription, size: int, style: str) -> dict[str, np.ndarray]:
    """Boolean (size, size) masks of the visible parts of ``desc`` in ``style`` ('photo' or 'cartoon').

    The masks in :data:`PART_NAMES` (background, clothes, hair, neck, ears, face, brows, nose, mouth,
    eyes) partition the image: each pixel belongs to the part painted last over it. ``glasses`` (the
    frames) is extra and overlaps the others. ``eyes`` are the openings (white, iris and pupil).
    """
    labels, glasses = _label_maps(desc, size, style)
    parts = {name: labels == i for i, name in enumerate(PART_NAMES)}
    parts["glasses"] = glasses
    return parts


def render_labels(desc: FaceDescription, size: int, style: str) -> np.ndarray:
    """(size, size) uint8 part labels: the index in :data:`LABEL_NAMES` of the part each pixel shows.

    The :func:`render_parts` partition with the glasses frames painted over it (label 10), so one
    label per pixel: the targets of the synthetic part-segmentation network (:mod:`toonlab.parts`).
    """
    labels, glasses = _label_maps(desc, size, style)
    labels[glasses] = LABEL_NAMES.index("glasses")
    return labels


def _label_maps(desc: FaceDescription, size: int, style: str) -> tuple[np.ndarray, np.ndarray]:
    size = check_size(size)
    lay = _Layout(desc, size, style)
    labels = np.zeros((size, size), np.uint8)
    for name, group, filled in lay.layers():
        polygons = lay.parts.get(group, [])
        if not polygons:
            continue
        value = PART_NAMES.index(name)
        if filled:
            cv2.fillPoly(labels, polygons, value, cv2.LINE_8, _SHIFT)
        else:
            cv2.polylines(labels, polygons, False, value, lay.line, cv2.LINE_8, _SHIFT)
    glasses = np.zeros((size, size), np.uint8)
    if desc.glasses:
        cv2.polylines(glasses, lay.parts["glasses"], True, 1, lay.line, cv2.LINE_8, _SHIFT)
    return labels, glasses.astype(bool)


# --------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------
def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 RGB (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1] (ToTensor then Normalize(0.5, 0.5))."""
    return torch.from_numpy(np.ascontiguousarray(images)).movedim(-1, -3).float().div_(127.5).sub_(1.0)


class SyntheticPortraits(UnpairedImages):
    """Synthetic photos (domain A) and cartoons (domain B), generated on the fly.

    ``split="train"``: photo ``i`` shows identity ``i`` of stream "trainA", cartoon ``j`` identity ``j``
    of the independent stream "trainB" (unpaired, as in the papers); augmentation is a random
    horizontal flip. ``split="test"``: photo ``i`` and cartoon ``i`` show the same identity of the
    stream "test" (the cartoon is the photo's ground truth), without augmentation.
    """

    def __init__(self, size: int = 64, split: str = "train", seed: int = 0, length: int | None = None):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
        self.size = check_size(size)
        self.split = split
        self.seed = int(seed)
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer (got {seed})")
        length = DEFAULT_LENGTH[split] if length is None else int(length)
        if length < 1:
            raise ValueError(f"length must be at least 1 (got {length})")
        self.len_a = self.len_b = length
        #: test photo i and cartoon i show the same face (the cartoon is ground truth)
        self.paired = split == "test"

    def _index(self, index: int, count: int) -> int:
        index = int(index)
        if not 0 <= index < count:
            raise IndexError(f"index {index} is out of range for {count} synthetic images")
        return index

    def description_a(self, index: int) -> FaceDescription:
        """Identity shown by photo ``index``."""
        stream = "trainA" if self.split == "train" else "test"
        return describe(self.seed, self._index(index, self.len_a), stream)

    def description_b(self, index: int) -> FaceDescription:
        """Identity shown by cartoon ``index`` (in the test split, the same as photo ``index``)."""
        stream = "trainB" if self.split == "train" else "test"
        return describe(self.seed, self._index(index, self.len_b), stream)

    def image_a(self, index: int) -> Image.Image:
        return Image.fromarray(render_photo(self.description_a(index), self.size))

    def image_b(self, index: int) -> Image.Image:
        return Image.fromarray(render_cartoon(self.description_b(index), self.size))

    def transform(self, image, seed: int) -> torch.Tensor:
        """PIL RGB image -> float tensor (3, H, W) in [-1, 1]; train split: flipped left-right half the time."""
        tensor = _to_tensor(np.array(image, dtype=np.uint8))
        if self.split == "train" and torch.rand((), generator=augmentation_generator(seed)) < 0.5:
            tensor = tensor.flip(-1)
        return tensor

    def test_batch(self, n: int, start: int = 0) -> dict[str, torch.Tensor]:
        """Test photos ``start .. start+n-1`` and their true cartoons: {"A": (n,3,H,W), "B": (n,3,H,W)} in [-1, 1].

        Always drawn from the "test" identity stream of this dataset's seed, whichever split it serves.
        """
        if n < 1 or start < 0:
            raise ValueError(f"need n >= 1 and start >= 0 (got n={n}, start={start})")
        photos, cartoons = [], []
        for index in range(start, start + n):
            photo, cartoon = render_pair(describe(self.seed, index, "test"), self.size)
            photos.append(photo)
            cartoons.append(cartoon)
        return {"A": _to_tensor(np.stack(photos)), "B": _to_tensor(np.stack(cartoons))}


# --------------------------------------------------------------------------------------------------
# Export to folders
# --------------------------------------------------------------------------------------------------
def export_dataset(out_dir, size: int = 128, n_train: int = 1000, n_test: int = 100, seed: int = 0,
                   progress: bool = False, overwrite: bool = False) -> Path:
    """Write synthetic portraits as ``trainA trainB testA testB`` PNG folders and return ``out_dir``.

    trainA/trainB are unpaired (independent identities). testA holds test photos and testB their true
    cartoons with the same file names (``testA/000012.png`` <-> ``testB/000012.png``). ``metadata.json``
    and ``README.txt`` describe the export.

    Nothing but a previous export's own files is ever deleted or replaced:

    * an empty (or new) folder, or a previous export (its ``metadata.json`` names this generator),
      is written; of a previous export only the ``NNNNNN.png`` images in the four folders are
      removed first, and a file it did not write there (``trainA/holiday.png``) is refused, since it
      would join the data set;
    * any other non-empty folder is refused unless ``overwrite=True``, which writes *beside* the
      files there and still refuses when one of them would be deleted or replaced (a
      ``metadata.json`` or ``README.txt``, anything in the four folders).

    The marker is written before the first image, so an interrupted export is still recognised as
    one (``"complete": false`` until the last image is written). Hidden files (``.DS_Store``) are
    left alone.
    """
    size = check_size(size)
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be at least 1 (got {n_train}, {n_test})")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder; choose another out_dir")
    previous = out.is_dir() and _is_export(out)
    if out.exists() and not previous and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} is not empty and does not hold a previous synthetic export; "
                "choose an empty folder or pass overwrite=True (toonlab export-synthetic --overwrite)")
        clashes = [out / name for name in _EXPORT_FILES if os.path.lexists(out / name)]
        clashes += [entry for name in _EXPORT_FOLDERS for entry in _visible_entries(out / name)]
        if clashes:
            raise FileExistsError(
                f"{out} is not a synthetic export, and writing one there would replace or delete "
                f"{_names(out, clashes)}; overwrite=True writes only beside files that are not an export's "
                "and never removes them. Move them away or choose another folder.")
    if previous:
        foreign = [entry for name in _EXPORT_FOLDERS for entry in _visible_entries(out / name)
                   if not (_EXPORT_IMAGE.fullmatch(entry.name) and (entry.is_file() or entry.is_symlink()))]
        if foreign:
            raise FileExistsError(
                f"{out} holds a previous synthetic export and also {_names(out, foreign)}, which the export did "
                "not write (they would join the data set); toonlab removes only its own NNNNNN.png images. "
                "Move them away or choose another folder.")
    metadata = {
        "generator": EXPORT_MARKER, "size": size, "seed": int(seed), "n_train": int(n_train),
        "n_test": int(n_test), "folders": {
            "trainA": "photos of identities from stream 'trainA'",
            "trainB": "cartoons of independent identities from stream 'trainB' (unpaired with trainA)",
            "testA": "photos of identities from stream 'test'",
            "testB": "the true cartoons of testA, same file names (paired ground truth)"},
        "test_paired": True, "cartoon_eye_scale": list(CARTOON_EYE_SCALE),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metadata.json").write_text(json.dumps({**metadata, "complete": False}, indent=2) + "\n")
    for name in _EXPORT_FOLDERS:
        folder = out / name
        folder.mkdir(exist_ok=True)
        if previous:
            for old in _visible_entries(folder):  # only NNNNNN.png files (and links) are left: checked above
                old.unlink()
    jobs = [("trainA", "trainA", i, render_photo) for i in range(n_train)]
    jobs += [("trainB", "trainB", i, render_cartoon) for i in range(n_train)]
    jobs += [(folder, "test", i, render) for i in range(n_test)
             for folder, render in (("testA", render_photo), ("testB", render_cartoon))]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="synthetic portraits", unit="img")
    for folder, stream, index, render in jobs:
        image = render(describe(seed, index, stream), size)
        target = out / folder / f"{index:06d}.png"
        if not cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {target} (is the disk full or the folder read-only?)")
    (out / "README.txt").write_text(
        f"Synthetic portraits exported by {EXPORT_MARKER} (toonlab).\n"
        f"size {size} px, seed {seed}, {n_train} train images per domain, {n_test} test pairs.\n"
        "trainA: photos, trainB: cartoons of other, independent identities (unpaired).\n"
        "testA: test photos; testB: their true cartoons. Matching file names are the same face,\n"
        "so testB is the ground truth for translating testA (e.g. testA/000012.png <-> testB/000012.png).\n"
        "Regenerate with toonlab.data.synthetic.export_dataset(out_dir, size, n_train, n_test, seed).\n")
    (out / "metadata.json").write_text(json.dumps({**metadata, "complete": True}, indent=2) + "\n")
    return out


def _visible_entries(folder: Path) -> list[Path]:
    """The entries of ``folder`` (none if it is missing), hidden ones (``.DS_Store``) left out."""
    if not folder.is_dir():
        return [folder] if os.path.lexists(folder) else []
    return sorted(entry for entry in folder.iterdir() if not entry.name.startswith("."))


def _names(out: Path, paths: list[Path], most: int = 3) -> str:
    names = [str(p.relative_to(out)) for p in paths[:most]]
    more = f" and {len(paths) - most} more" if len(paths) > most else ""
    return ", ".join(names) + more


def _is_export(folder: Path) -> bool:
    try:
        return json.loads((folder / "metadata.json").read_text()).get("generator") == EXPORT_MARKER
    except (OSError, ValueError, AttributeError):
        return False

