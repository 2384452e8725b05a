"""What a translation gets right, measured on synthetic test portraits whose true cartoon is known.

Every synthetic test photo comes with its true cartoon and the cartoon's part masks
(:func:`toonlab.data.synthetic.render_parts`), so each of the founding report's three problems —
and the identity loss it reports for encoder-decoders — can be measured where it happens
(notebook 05 §"The metrics"):

========================  ==================================================  ==========
metric                    what it measures (problem)                          better
========================  ==================================================  ==========
``l1``, ``l1_person``     mean |output - true cartoon| in [0, 1], whole        lower
                          image / everything but the background (paired)
``psnr``, ``ssim``        paired, whole image (torchmetrics)                  higher
``texture``               abstraction: mean |Laplacian| (grey levels) left    lower
                          inside the parts that are flat in the true cartoon
``colour_spread``         colour: std of colour (grey levels) inside each     lower
                          flat part
``strange_colours``       colour fidelity: share of skin, hair and clothes    lower
                          pixels whose low-pass colour has another hue or
                          chroma than the true cartoon's (CIELAB a*b* > 15)
``shape_l1``              shape: mean |output - truth| inside the true        lower
                          cartoon's eyes, nose and mouth (also per part)
``eye_size``              shape: eye area in the output / true cartoon's      1 is right
                          (the photo's eyes are about a third)
``skin_error``,           identity: CIELAB distance of the median skin /      lower
``hair_error``            hair colour to the true cartoon's
``hair_iou``              identity: overlap of the hair the output paints     higher
                          with the true hair
``glasses_error``         identity: |output - truth| on the glasses frames    lower
                          (wearers only)
========================  ==================================================  ==========

The fixed evaluation protocol is :class:`Protocol`; :func:`evaluate` scores any translator
(a function from photo batches in [-1, 1] to cartoon batches in [-1, 1]) under it, and every
result names the protocol, so numbers from different runs, machines and models compare.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Iterable, Mapping

import cv2
import numpy as np
import torch

from toonlab.data.synthetic import check_size, describe, render_pair, render_parts

PROTOCOL_VERSION = "toonlab-synthetic-v1"
#: the parts painted in one flat colour (the face in two cel tones) in the true cartoon
FLAT_PARTS = ("background", "clothes", "hair", "neck", "ears", "face")
SKIN_PARTS = ("face", "neck", "ears")
FEATURE_PARTS = ("eyes", "nose", "mouth")
#: CIELAB a*b* distance above which a low-pass colour counts as a different colour (not shading)
STRANGE_CHROMA = 15.0
#: max-channel difference (in [0, 1]) from the local skin that makes a pixel part of an eye
EYE_CONTRAST = 0.2
#: what the headline of a result picture and a log line shows
HEADLINE = ("l1_person", "ssim", "texture", "strange_colours")
#: direction of each metric: +1 higher is better, -1 lower is better, 0 closest to 1 is best
DIRECTION = {"l1": -1, "l1_person": -1, "psnr": 1, "ssim": 1, "texture": -1, "colour_spread": -1,
             "strange_colours": -1, "shape_l1": -1, "shape_l1_eyes": -1, "shape_l1_nose": -1,
             "shape_l1_mouth": -1, "eye_size": 0, "skin_error": -1, "hair_error": -1, "hair_iou": 1,
             "glasses_error": -1}
METRICS = tuple(DIRECTION)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The fixed synthetic test protocol: ``n`` test identities from ``start`` of seed ``seed``, at ``size`` px.

    The default (seed 0, identities 0-99, 64 px — the ``cpu`` presets' size) is the one the README,
    the notebooks and the issue notes report. Images are scored in [0, 1] as float32; "person"
    means every pixel the true cartoon does not paint as background.
    """

    size: int = 64
    n: int = 100
    seed: int = 0
    start: int = 0

    def __post_init__(self):
        check_size(self.size)
        if self.n < 1 or self.start < 0 or self.seed < 0:
            raise ValueError(f"protocol needs n >= 1, start >= 0 and seed >= 0 (got {self})")

    @property
    def name(self) -> str:
        last = self.start + self.n - 1
        return f"{PROTOCOL_VERSION}: seed {self.seed}, test identities {self.start}-{last}, {self.size} px"

    def to_dict(self) -> dict:
        return {"version": PROTOCOL_VERSION, "name": self.name, **dataclasses.asdict(self)}


@dataclasses.dataclass
class GroundTruth:
    """The protocol's test photos, true cartoons (uint8 (N, H, W, 3)) and part masks."""

    protocol: Protocol
    photos: np.ndarray
    cartoons: np.ndarray
    masks: list[dict[str, np.ndarray]]  # the true cartoon's parts (render_parts, style "cartoon")
    photo_masks: list[dict[str, np.ndarray]]
    glasses: np.ndarray  # (N,) bool

    def photo_batch(self) -> torch.Tensor:
        """The photos as a float tensor (N, 3, H, W) in [-1, 1], the generators' input."""
        return _batch(self.photos)

    def cartoon_batch(self) -> torch.Tensor:
        """The true cartoons as a float tensor (N, 3, H, W) in [-1, 1], as the generators draw them."""
        return _batch(self.cartoons)


def _batch(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


@functools.lru_cache(maxsize=4)
def ground_truth(protocol: Protocol = Protocol()) -> GroundTruth:
    """Render the protocol's pairs and masks once (cached: 100 pairs at 64 px take about a second)."""
    photos, cartoons, masks, photo_masks, glasses = [], [], [], [], []
    for index in range(protocol.start, protocol.start + protocol.n):
        desc = describe(protocol.seed, index, "test")
        photo, cartoon = render_pair(desc, protocol.size)
        photos.append(photo)
        cartoons.append(cartoon)
        masks.append(render_parts(desc, protocol.size, "cartoon"))
        photo_masks.append(render_parts(desc, protocol.size, "photo"))
        glasses.append(desc.glasses)
    return GroundTruth(protocol, np.stack(photos), np.stack(cartoons), masks, photo_masks, np.array(glasses))


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
_KERNEL = np.ones((3, 3), np.uint8)


def _erode(mask: np.ndarray, size: int) -> np.ndarray:
    """Shrink a mask away from its outline (2 px at 64 px), so outlines and anti-aliasing do not count."""
    return cv2.erode(mask.astype(np.uint8), _KERNEL, iterations=max(1, size // 32)).astype(bool)


def _dilate(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), _KERNEL, iterations=iterations).astype(bool)


def _flat_regions(masks: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Each flat part of the true cartoon, eroded, without glasses frames."""
    frames = _dilate(masks["glasses"])
    return {name: _erode(masks[name], size) & ~frames for name in FLAT_PARTS}


def _lab(image: np.ndarray) -> np.ndarray:
    """float32 RGB in [0, 1] -> CIELAB (L 0..100) through OpenCV."""
    return cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), cv2.COLOR_RGB2Lab)


def _grey255(image: np.ndarray) -> np.ndarray:
    return (image @ np.array([0.299, 0.587, 0.114], np.float32)) * 255.0


def to_unit_images(images) -> np.ndarray:
    """Tensor (N, 3, H, W) in [-1, 1], or uint8 / float [0, 1] arrays (N, H, W, 3) -> float32 (N, H, W, 3) in [0, 1]."""
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().clamp(-1, 1).add(1).div(2).permute(0, 2, 3, 1).numpy()
        return np.ascontiguousarray(images, dtype=np.float32)
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return np.clip(images.astype(np.float32), 0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# one metric per problem (per image; images float32 (H, W, 3) in [0, 1])
# --------------------------------------------------------------------------------------------------
def texture(image: np.ndarray, masks: Mapping[str, np.ndarray]) -> float:
    """Abstraction: mean |Laplacian| (grey levels 0..255) inside the true cartoon's flat parts. Lower is better.

    Detail and texture the translator left where the cartoon is flat: skin pores, hair strands,
    background grain, sensor noise, and GAN speckle. The true cartoon scores about 0 (only its cel
    shadow edge counts); a textured photo scores several grey levels.
    """
    region = np.zeros(image.shape[:2], bool)
    for part in _flat_regions(masks, image.shape[0]).values():
        region |= part
    if not region.any():
        return math.nan
    lap = cv2.Laplacian(_grey255(image), cv2.CV_32F, ksize=1)
    return float(np.abs(lap[region]).mean())


def colour_spread(image: np.ndarray, masks: Mapping[str, np.ndarray]) -> float:
    """Colour: std of the colour (grey levels, mean over R, G, B) inside each flat part, pixel-weighted. Lower is better.

    A cartoon paints each part in one flat colour (the face in two cel tones): smooth 3-D shading,
    texture and blotches all raise the spread.
    """
    total, weight = 0.0, 0
    for part in _flat_regions(masks, image.shape[0]).values():
        count = int(part.sum())
        if count >= 10:
            total += float(image[part].std(axis=0).mean()) * 255.0 * count
            weight += count
    return total / weight if weight else math.nan


def strange_colours(image: np.ndarray, truth: np.ndarray, masks: Mapping[str, np.ndarray]) -> float:
    """Colour fidelity: share of skin, hair and clothes pixels painted in another colour. Lower is better.

    The founding report's "strange colours" of CycleGAN: both images are low-passed (Gaussian, sigma
    size/32), converted to CIELAB, and a pixel counts when its a*b* (hue and chroma, not lightness,
    so shading is not a wrong colour) lies more than :data:`STRANGE_CHROMA` from the true cartoon's.
    """
    size = image.shape[0]
    regions = _flat_regions(masks, size)
    region = regions["clothes"] | regions["hair"]
    for name in SKIN_PARTS:
        region |= regions[name]
    if not region.any():
        return math.nan
    sigma = size / 32
    low = [_lab(cv2.GaussianBlur(np.ascontiguousarray(x), (0, 0), sigma)) for x in (image, truth)]
    distance = np.linalg.norm(low[0][..., 1:] - low[1][..., 1:], axis=-1)
    return float((distance[region] > STRANGE_CHROMA).mean())


def feature_errors(image: np.ndarray, truth: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Shape: mean |output - truth| inside the true cartoon's eyes, nose and mouth (grown by 1 px). Lower is better.

    Where the cartoon's shape differs from the photo's (bigger eyes, a line for nose and mouth), a
    translator that keeps the photo's shapes, or distorts the parts (CartoonGAN on mismatched data),
    scores high. ``shape_l1`` pools the three regions.
    """
    out, pooled, count = {}, 0.0, 0
    for name in FEATURE_PARTS:
        region = _dilate(masks[name])
        diff = np.abs(image[region] - truth[region])
        out[f"shape_l1_{name}"] = float(diff.mean()) if diff.size else math.nan
        pooled += float(diff.sum())
        count += diff.size
    out["shape_l1"] = pooled / count if count else math.nan
    return out


def eye_area(image: np.ndarray, masks: Mapping[str, np.ndarray], photo_masks: Mapping[str, np.ndarray]) -> int:
    """Pixels of ``image`` that stand out from the skin around the eyes (eye white, iris, pupil, lids).

    The search region is the union of the photo's and the true cartoon's eye openings, grown by a
    few pixels, without brows and glasses frames; the skin reference is the median colour of the
    ring just outside it, on the face. :func:`eye_size` divides the output's by the true cartoon's.
    """
    size = image.shape[0]
    grow = max(1, size // 32)
    region = _dilate(masks["eyes"] | photo_masks["eyes"], grow)
    blocked = _dilate(masks["brows"] | photo_masks["brows"] | masks["glasses"] | photo_masks["glasses"])
    region &= ~blocked
    ring = _dilate(region, grow + 1) & ~region & ~blocked & (masks["face"] | photo_masks["face"])
    if not ring.any() or not region.any():
        return 0
    skin = np.median(image[ring], axis=0)
    return int((np.abs(image[region] - skin).max(axis=1) > EYE_CONTRAST).sum())


#: the parts that make the head in :func:`shape_regions` (hair and ears excluded: their outlines move anyway)
HEAD_PARTS = ("face", "eyes", "brows", "nose", "mouth")


def shape_regions(masks: Mapping[str, np.ndarray], photo_masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Where photo and true cartoon differ in shape (notebook 03, "A look at shape").

    ``eye growth``: eye in the cartoon, not in the photo; ``face outline``: head in one rendering
    only; ``skin in both``: face in both; ``cartoon face``: the cartoon's skin.
    """
    head_photo = np.logical_or.reduce([photo_masks[p] for p in HEAD_PARTS])
    head_cartoon = np.logical_or.reduce([masks[p] for p in HEAD_PARTS])
    return {"eye growth": masks["eyes"] & ~photo_masks["eyes"], "face outline": head_photo ^ head_cartoon,
            "skin in both": photo_masks["face"] & masks["face"], "cartoon face": masks["face"]}


def shape_following(images: torch.Tensor, truth: GroundTruth, min_gap: float = 0.3) -> dict[str, float]:
    """Did the shape change the way the true cartoon's did? ``images``: (N, 3, H, W) in [-1, 1].

    For each region of :func:`shape_regions`, the share of its pixels where the true cartoon is
    visibly not skin (more than ``min_gap`` from its median skin colour, RGB distance in [-1, 1]
    units) at which the image is nearer the cartoon's pixel than that skin colour: a recoloured photo
    keeps skin there and scores low, a redrawn shape high, the true cartoon 1 by construction.
    Returns ``eye_growth``, ``face_outline`` (those shares), ``skin_error`` (mean |image - truth| on
    skin in both renderings, a colour check) and the informative pixel counts ``n_eye_growth``,
    ``n_face_outline``.
    """
    cartoons = truth.cartoon_batch()
    images = images.detach().float().cpu()
    hits = {"eye growth": 0, "face outline": 0}
    total = dict.fromkeys(hits, 0)
    skin_errors = []
    for i in range(len(cartoons)):
        regions = shape_regions(truth.masks[i], truth.photo_masks[i])
        cartoon = cartoons[i]
        skin = cartoon[:, torch.from_numpy(regions["cartoon face"])].median(1).values[:, None]
        for name in hits:
            mask = torch.from_numpy(regions[name])
            image, target = images[i][:, mask], cartoon[:, mask]
            informative = (target - skin).norm(dim=0) > min_gap
            nearer = (image - target).norm(dim=0) < (image - skin).norm(dim=0)
            hits[name] += int((nearer & informative).sum())
            total[name] += int(informative.sum())
        both = torch.from_numpy(regions["skin in both"])
        skin_errors.append(float((images[i] - cartoon).abs()[:, both].mean()))
    return {"eye_growth": hits["eye growth"] / max(total["eye growth"], 1),
            "face_outline": hits["face outline"] / max(total["face outline"], 1),
            "skin_error": float(np.mean(skin_errors)),
            "n_eye_growth": total["eye growth"], "n_face_outline": total["face outline"]}


def identity_scores(image: np.ndarray, truth: np.ndarray, masks: Mapping[str, np.ndarray],
                    wears_glasses: bool) -> dict[str, float]:
    """Identity: does the person survive? Skin tone, hair colour and extent, glasses.

    * ``skin_error``, ``hair_error``: CIELAB distance (delta E 1976) between the median colour of the
      output and of the true cartoon inside the true face / hair (lower is better; NaN when bald);
    * ``hair_iou``: every pixel of the output is given to the nearest of the output's own background,
      clothes, hair and skin colours (medians inside the true parts); the overlap (IoU) of what it
      paints as hair with the true hair, away from outlines (higher is better);
    * ``glasses_error``: mean |output - truth| on the true glasses frames, for wearers (else NaN).
    """
    size = image.shape[0]
    regions = _flat_regions(masks, size)
    skin_region = regions["face"] | regions["neck"] | regions["ears"]
    lab, lab_truth = _lab(image), _lab(truth)
    out = {"skin_error": math.nan, "hair_error": math.nan, "hair_iou": math.nan, "glasses_error": math.nan}
    if skin_region.sum() >= 10:
        out["skin_error"] = float(np.linalg.norm(np.median(lab[skin_region], 0) - np.median(lab_truth[skin_region], 0)))
    classes = {"background": regions["background"], "clothes": regions["clothes"], "hair": regions["hair"],
               "skin": skin_region}
    present = {name: region for name, region in classes.items() if region.sum() >= 10}
    if "hair" in present:
        out["hair_error"] = float(np.linalg.norm(np.median(lab[present["hair"]], 0)
                                                 - np.median(lab_truth[present["hair"]], 0)))
        names = list(present)
        centres = np.stack([np.median(lab[present[name]], 0) for name in names])
        scored = np.zeros(image.shape[:2], bool)
        for region in present.values():
            scored |= region
        nearest = np.linalg.norm(lab[scored][:, None, :] - centres[None], axis=-1).argmin(1)
        painted = nearest == names.index("hair")
        true_hair = present["hair"][scored]
        union = (painted | true_hair).sum()
        out["hair_iou"] = float((painted & true_hair).sum() / union) if union else math.nan
    if wears_glasses and masks["glasses"].any():
        frames = masks["glasses"]
        out["glasses_error"] = float(np.abs(image[frames] - truth[frames]).mean())
    return out


def paired_scores(images: np.ndarray, truths: np.ndarray) -> dict[str, float]:
    """PSNR (dB, data range 1) and SSIM (torchmetrics, Gaussian window 11, sigma 1.5) over the batch. Higher is better."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    preds = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    target = torch.from_numpy(np.ascontiguousarray(truths)).permute(0, 3, 1, 2)
    psnr = peak_signal_noise_ratio(preds, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    psnr = torch.nan_to_num(psnr, posinf=100.0).clamp(max=100.0)  # identical images: capped, not infinite
    ssim = structural_similarity_index_measure(preds, target, data_range=1.0)
    return {"psnr": float(psnr.mean()), "ssim": float(ssim)}


# --------------------------------------------------------------------------------------------------
# scoring a set of outputs
# --------------------------------------------------------------------------------------------------
def score_images(outputs, truth: GroundTruth | None = None) -> dict[str, float]:
    """Every metric of this module for ``outputs`` (one per test photo of ``truth``'s protocol, in order).

    ``outputs``: a tensor (N, 3, H, W) in [-1, 1] or arrays (N, H, W, 3) uint8 / [0, 1]. Returns the
    means over the test set (NaN-aware for hair and glasses, which not everyone has) plus the counts.
    """
    truth = truth or ground_truth()
    images = to_unit_images(outputs)
    truths = to_unit_images(truth.cartoons)
    if images.shape != truths.shape:
        raise ValueError(
            f"outputs have shape {images.shape[:3]} (N, H, W) but the protocol '{truth.protocol.name}' needs "
            f"{truths.shape[:3]}; translate the protocol's photos (ground_truth(protocol).photo_batch())")
    rows: dict[str, list[float]] = {name: [] for name in METRICS if name not in ("psnr", "ssim", "eye_size")}
    area_out = area_truth = 0
    for k in range(len(images)):
        image, target, masks = images[k], truths[k], truth.masks[k]
        diff = np.abs(image - target)
        person = ~masks["background"]
        rows["l1"].append(float(diff.mean()))
        rows["l1_person"].append(float(diff[person].mean()))
        rows["texture"].append(texture(image, masks))
        rows["colour_spread"].append(colour_spread(image, masks))
        rows["strange_colours"].append(strange_colours(image, target, masks))
        for name, value in feature_errors(image, target, masks).items():
            rows[name].append(value)
        for name, value in identity_scores(image, target, masks, bool(truth.glasses[k])).items():
            rows[name].append(value)
        area_out += eye_area(image, masks, truth.photo_masks[k])
        area_truth += eye_area(target, masks, truth.photo_masks[k])
    result = {name: _nanmean(values) for name, values in rows.items()}
    result.update(paired_scores(images, truths))
    result["eye_size"] = area_out / area_truth if area_truth else math.nan
    result["n"] = len(images)
    result["n_with_hair"] = int(np.isfinite(rows["hair_error"]).sum())
    result["n_with_glasses"] = int(np.isfinite(rows["glasses_error"]).sum())
    return {name: result[name] for name in (*METRICS, "n", "n_with_hair", "n_with_glasses")}


def _nanmean(values: Iterable[float]) -> float:
    values = np.asarray(list(values), dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


Translator = Callable[[torch.Tensor], torch.Tensor]


def translate_all(translate: Translator, photos: torch.Tensor, batch_size: int = 25,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Run ``translate`` over ``photos`` in batches without gradients; the outputs on the CPU in [-1, 1]."""
    outputs = []
    with torch.no_grad():
        for start in range(0, len(photos), batch_size):
            batch = photos[start:start + batch_size]
            if device is not None:
                batch = batch.to(device)
            out = translate(batch)
            if out.shape != batch.shape:
                raise ValueError(f"the translator turned a batch of shape {tuple(batch.shape)} into {tuple(out.shape)}; "
                                 "it must return one RGB image per photo, of the same size")
            outputs.append(out.detach().float().cpu().clamp(-1, 1))
    return torch.cat(outputs)


def evaluate(translate: Translator, protocol: Protocol = Protocol(), batch_size: int = 25,
             device: torch.device | str | None = None) -> dict[str, float]:
    """Translate the protocol's test photos with ``translate`` and score the outputs (:func:`score_images`)."""
    truth = ground_truth(protocol)
    return score_images(translate_all(translate, truth.photo_batch(), batch_size, device), truth)
