"""Identity on real photos (the optional toonlab[faces] extra): dlib's face descriptor distance, photo to cartoon."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from toonlab.metrics import identity

HAVE_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None


@pytest.mark.skipif(HAVE_DLIB, reason="the toonlab[faces] extra is installed")
def test_without_the_extra_the_error_says_what_to_install():
    identity.identity_model.cache_clear()
    assert not identity.identity_available()
    with pytest.raises(identity.FaceIdentityUnavailable, match=r"toonlab\[faces\]"):
        identity.identity_model()


@pytest.mark.skipif(not HAVE_DLIB, reason="needs the toonlab[faces] extra (dlib-bin, face-recognition-models)")
def test_the_same_face_is_the_same_person_and_noise_is_not():
    skimage_data = pytest.importorskip("skimage.data")
    from toonlab import cartoonize as C
    from toonlab.baselines import classical_cartoon

    photo = Image.fromarray(skimage_data.astronaut())
    crop = C.aligned_crop(photo, C.locate_faces(photo)[0], 160)
    x = torch.from_numpy(np.array(crop, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    assert identity.identity_scores(x, x) == {"identity_distance": 0.0, "same_person_rate": 1.0}
    kept = identity.identity_scores(x, classical_cartoon(x))
    lost = identity.identity_scores(x, torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert kept["identity_distance"] < identity.SAME_PERSON_DISTANCE < lost["identity_distance"]
    assert kept["same_person_rate"] == 1.0 and lost["same_person_rate"] == 0.0
    with pytest.raises(ValueError, match="one cartoon per photo"):
        identity.identity_scores(x, torch.cat([x, x]))
