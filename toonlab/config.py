"""Run-wide settings: the FAST switch, where data lives, which device to use, preset names.

This is the only module that reads environment variables (notebook 00, "Setup"):

* ``TOONLAB_FAST=1``  tiny sizes and a handful of steps, so every notebook runs in CI in seconds.
* ``TOONLAB_DATA``    folder for datasets and caches (default ``~/.cache/toonlab``).
* ``TOONLAB_DEVICE``  force a device (``cpu``, ``cuda``, ``cuda:1`` ...).
* ``TOONLAB_VGG19_WEIGHTS``  a hand-placed ``vgg19-dcbb9e9d.pth`` (CartoonGAN's content loss, offline).

Every model module owns its preset table (``paper``, ``cpu``, ``fast``); this module only names
them and picks the default one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

PRESETS = ("paper", "cpu", "fast")
FAST_ENV = "TOONLAB_FAST"
DATA_ENV = "TOONLAB_DATA"
DEVICE_ENV = "TOONLAB_DEVICE"
VGG19_ENV = "TOONLAB_VGG19_WEIGHTS"
_TRUE = {"1", "true", "yes", "on"}


def fast_mode() -> bool:
    """True when ``TOONLAB_FAST`` is set to 1/true/yes/on (CI and the nbval run)."""
    return os.environ.get(FAST_ENV, "").strip().lower() in _TRUE


def default_preset() -> str:
    """``fast`` in FAST mode, else ``paper`` on a GPU and ``cpu`` without one."""
    if fast_mode():
        return "fast"
    return "paper" if torch.cuda.is_available() else "cpu"


def check_preset(name: str) -> str:
    """Return ``name`` if it is a known preset, else raise a ValueError listing the choices."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return name


def data_root() -> Path:
    """Folder holding datasets, edge caches and downloads (``$TOONLAB_DATA`` or ``~/.cache/toonlab``)."""
    root = os.environ.get(DATA_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "toonlab"


def vgg19_weights_path() -> Path | None:
    """A hand-placed ImageNet VGG19 weight file named by ``$TOONLAB_VGG19_WEIGHTS``, or None."""
    value = os.environ.get(VGG19_ENV)
    return Path(value).expanduser() if value else None


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: the argument, else ``$TOONLAB_DEVICE``, else CUDA when present, else CPU.

    Asking for CUDA on a machine without it raises a clear error instead of failing later.
    """
    choice = device if device not in (None, "", "auto") else os.environ.get(DEVICE_ENV) or None
    if choice in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(choice)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {str(dev)!r} was requested but this PyTorch build sees no CUDA GPU; "
            "use --device cpu (or unset TOONLAB_DEVICE), or install a CUDA build of PyTorch"
        )
    return dev


def seed_everything(seed: int = 0, deterministic: bool = True) -> None:
    """Seed Python, NumPy and PyTorch; with ``deterministic`` also pin cuDNN's algorithm choice."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def config_from_preset(cls, name: str, overrides: dict, model_name: str):
    """Build the config dataclass ``cls`` from ``cls.PRESETS[name]`` plus ``overrides``.

    Shared by every model's ``Config.preset``: unknown preset names and unknown fields raise a
    ValueError that lists the valid choices.
    """
    import dataclasses

    check_preset(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"unknown {model_name} config field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(fields))}"
        )
    return cls(**{**cls.PRESETS[name], **overrides})
