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


class DeviceError(ValueError, RuntimeError):
    """An unknown or unavailable device was asked for (a ValueError and, as before, a RuntimeError)."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: the argument, else ``$TOONLAB_DEVICE``, else CUDA when present, else CPU.

    An unknown device name, or CUDA (or a GPU index) this machine does not have, raises a
    :class:`DeviceError` that says what to use instead, rather than failing later.
    """
    choice = device if device not in (None, "", "auto") else os.environ.get(DEVICE_ENV) or None
    if choice in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    source = "" if device not in (None, "", "auto") else f" (from ${DEVICE_ENV})"
    try:
        dev = torch.device(choice)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(
            f"unknown device {str(choice)!r}{source}; use cpu, cuda, cuda:1 ... (or leave it out: CUDA when present, else CPU)"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {str(dev)!r} was requested{source} but this PyTorch build sees no CUDA GPU; "
                "use --device cpu (or unset TOONLAB_DEVICE), or install a CUDA build of PyTorch"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(
                f"device {str(dev)!r} was requested{source} but this machine has {count} CUDA GPU(s) "
                f"(cuda:0 ... cuda:{count - 1})"
            )
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"device 'mps' was requested{source} but this machine has no usable Apple GPU; use --device cpu")
    return dev


def seed_everything(seed: int = 0, deterministic: bool = True) -> None:
    """Seed Python, NumPy and PyTorch; with ``deterministic`` also pin cuDNN's algorithm choice."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def check_at_least(config, minimum: float, names) -> None:
    """Raise a ValueError naming the first field of ``config`` in ``names`` below ``minimum`` (configs' ``validate``)."""
    for name in names:
        value = getattr(config, name)
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")


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
    overrides = {key: coerce_field(cls, key, value, model_name) for key, value in overrides.items()}
    return cls(**{**cls.PRESETS[name], **overrides})


def _field_types(cls, name: str) -> set[str] | None:
    """The simple types a config field allows (``{"int", "None"}`` for ``int | None``), or None when not simple."""
    import dataclasses

    for field in dataclasses.fields(cls):
        if field.name == name:
            text = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
            text = text.replace("Optional[", "").replace("]", " | None") if text.startswith("Optional[") else text
            kinds = {part.strip() for part in text.split("|")}
            return kinds if kinds <= {"int", "float", "str", "bool", "None"} else None
    return None


def coerce_field(cls, name: str, value, model_name: str = "model"):
    """``value`` checked (and converted) for the config field ``name`` of the dataclass ``cls``.

    Numbers must be numbers and finite (a ``nan`` learning rate or loss weight is refused), integers
    whole, booleans booleans; a string holding a number (``"2e-4"``) is accepted for a number field.
    Raises a ValueError naming the field. Fields of other types pass unchanged.
    """
    import math
    import numbers

    kinds = _field_types(cls, name)
    if kinds is None:
        return value
    if value is None:
        if "None" in kinds:
            return None
        raise ValueError(f"{model_name} config field {name} cannot be None")
    if "bool" in kinds:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{model_name} config field {name} must be True or False, got {value!r}")
    numeric = kinds & {"int", "float"}
    if numeric and isinstance(value, str) and "str" not in kinds:
        try:
            value = float(value) if "float" in kinds or not value.strip().lstrip("+-").isdigit() else int(value)
        except ValueError:
            what = "a number" if "float" in kinds else "a whole number"
            raise ValueError(f"{model_name} config field {name} must be {what}, got {value!r}") from None
    if numeric and isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            raise ValueError(f"{model_name} config field {name} must be a finite number, got {value!r}")
        if "float" in kinds:
            return float(value) if not isinstance(value, int) or "int" not in kinds else value
        if float(value).is_integer():
            return int(value)
        raise ValueError(f"{model_name} config field {name} must be a whole number, got {value!r}")
    if "str" in kinds and isinstance(value, str):
        return value
    wanted = " or ".join(sorted({"int": "a whole number", "float": "a number", "str": "a string",
                                 "None": "None"}[k] for k in kinds))
    raise ValueError(f"{model_name} config field {name} must be {wanted}, got {value!r}")
