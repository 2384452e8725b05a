"""Is it still the same person? A face-recognition distance between each photo and its cartoon (real photos).

The synthetic protocol knows each photo's true cartoon; real photos have none, so identity is measured
the way face recognition does: dlib's ResNet face descriptor (128 numbers, trained so that two photos
of one person lie within 0.6 of each other; 99.38 % on LFW) of the photo and of its cartoon, and
their distance. Optional: ``pip install 'toonlab[faces]'`` installs ``dlib-bin`` and
``face-recognition-models`` (the weights, about 100 MB); without them :func:`identity_available` is
False and ``toonlab eval --data`` leaves the columns out.

What it measures and its limits: the descriptor was trained on photos of real faces, so on a cartoon
it says how much of the *photo's* identity a face-recognition network still finds, not whether a
person would recognise the cartoon; strongly stylised cartoons score far even when they are good.
Licences: dlib is Boost-licensed and its ResNet descriptor and 5-point landmark model are public
domain (CC0); the 68-point landmark model in the same package was trained on iBUG 300-W, which is not
for commercial use, and toonlab does not use it.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
import torch

#: dlib's same-person threshold for its ResNet descriptor
SAME_PERSON_DISTANCE = 0.6
#: how to install what this module needs
INSTALL = "pip install 'toonlab[faces]' (dlib-bin and face-recognition-models)"


class FaceIdentityUnavailable(RuntimeError):
    """dlib or the face-recognition weights are not installed."""


def _models_folder() -> str:
    # face_recognition_models' __init__ imports pkg_resources (gone from recent setuptools): find its files without importing it
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceIdentityUnavailable(f"face-recognition-models is not installed: {INSTALL}")
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


@functools.lru_cache(maxsize=1)
def identity_model():
    """``(shape_predictor_5, descriptor)`` of dlib; a :class:`FaceIdentityUnavailable` says what to install."""
    try:
        import dlib
    except ImportError as err:
        raise FaceIdentityUnavailable(f"dlib is not installed: {INSTALL}") from err
    folder = _models_folder()
    landmarks = os.path.join(folder, "shape_predictor_5_face_landmarks.dat")
    resnet = os.path.join(folder, "dlib_face_recognition_resnet_model_v1.dat")
    for path in (landmarks, resnet):
        if not os.path.isfile(path):
            raise FaceIdentityUnavailable(f"{path} is missing: reinstall with {INSTALL}")
    return dlib.shape_predictor(landmarks), dlib.face_recognition_model_v1(resnet)


def identity_available() -> bool:
    """True when :func:`identity_model` loads."""
    try:
        identity_model()
    except FaceIdentityUnavailable:
        return False
    return True


def face_descriptors(images: torch.Tensor) -> np.ndarray:
    """dlib descriptors ``(N, 128)`` of face crops in [-1, 1]: the whole image is taken as the face box."""
    import dlib

    from toonlab.data.folders import model_to_uint8

    landmarks, resnet = identity_model()
    out = []
    for image in model_to_uint8(images):  # each a contiguous (H, W, 3) uint8 array, as dlib needs
        h, w = image.shape[:2]
        shape = landmarks(image, dlib.rectangle(0, 0, w - 1, h - 1))
        out.append(np.asarray(resnet.compute_face_descriptor(image, shape), dtype=np.float64))
    return np.stack(out)


def identity_scores(photos: torch.Tensor, cartoons: torch.Tensor) -> dict[str, float]:
    """``identity_distance`` (mean descriptor distance, photo i to cartoon i; lower keeps more) and
    ``same_person_rate`` (the share below dlib's 0.6 threshold)."""
    if photos.shape[0] != cartoons.shape[0]:
        raise ValueError(f"give one cartoon per photo: {photos.shape[0]} photos, {cartoons.shape[0]} cartoons")
    distance = np.linalg.norm(face_descriptors(photos) - face_descriptors(cartoons), axis=1)
    return {"identity_distance": float(distance.mean()), "same_person_rate": float((distance < SAME_PERSON_DISTANCE).mean())}
