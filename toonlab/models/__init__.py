"""One module per model: :mod:`~toonlab.models.cyclegan`, :mod:`~toonlab.models.cartoongan`,
:mod:`~toonlab.models.munit`, :mod:`~toonlab.models.xgan` (and the inference-only :mod:`~toonlab.models.animegan2`).

Each trainable model module defines ``Config`` (a dataclass with a ``preset(name, **overrides)``
classmethod) and ``Model`` (a :class:`~toonlab.models.base.TranslationModel`). :func:`build_model`
makes one by name without importing the others.
"""

from __future__ import annotations

import importlib
from typing import Any

MODEL_KINDS = ("cyclegan", "cartoongan", "munit", "xgan")


def model_module(kind: str):
    """The module implementing ``kind`` (``cyclegan``, ``cartoongan``, ``munit`` or ``xgan``)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    return importlib.import_module(f"toonlab.models.{kind}")


def build_config(kind: str, preset: str | None = None, **overrides: Any):
    """The config of ``kind`` for ``preset`` (default: :func:`toonlab.config.default_preset`)."""
    from toonlab.config import check_preset, default_preset

    preset = check_preset(preset or default_preset())
    return model_module(kind).Config.preset(preset, **overrides)


def build_model(kind: str, preset: str | None = None, config=None, **overrides: Any):
    """A ready-to-train model: from ``config`` if given, else from ``preset`` plus ``overrides``."""
    module = model_module(kind)
    if config is None:
        config = build_config(kind, preset, **overrides)
    return module.Model(config)
