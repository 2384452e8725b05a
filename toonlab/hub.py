"""Published reference checkpoints -> toonlab modules with identical outputs.

:func:`load_official` reads a file with ``torch.load(weights_only=True)`` (so a malicious pickle
cannot run code) and hands the state dict to the model module that knows its key layout:

* ``"cyclegan"``   official ResnetGenerator ``.pth`` -> :class:`toonlab.models.cyclegan.ResnetGenerator`
* ``"cartoongan"`` ``{Hayao,Hosoda,Paprika,Shinkai}_net_G_float.pth`` -> RGB CartoonGAN generator
* ``"munit"``      ``gen_*.pt`` / published ``.pt`` ``{'a': ..., 'b': ...}`` -> object with ``gen_a``, ``gen_b``
* ``"animegan2"``  AnimeGANv2 face-portrait generator state dict -> inference module
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

import torch

# they live with the training checkpoints; `from toonlab.hub import CheckpointError` keeps working
from toonlab.checkpoint import CheckpointError, read_state_file

#: kind -> (module, function taking a state dict and returning the toonlab module)
OFFICIAL_LOADERS = {
    "cyclegan": ("toonlab.models.cyclegan", "from_official_state_dict"),
    "cartoongan": ("toonlab.models.cartoongan", "from_official_state_dict"),
    "munit": ("toonlab.models.munit", "from_official_state_dict"),
    "animegan2": ("toonlab.models.animegan2", "from_official_state_dict"),
}


def strip_wrapper_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop a DataParallel ``module.`` (and a torch.compile ``_orig_mod.``) prefix present on every key."""
    state = dict(state)
    for prefix in ("module.", "_orig_mod."):
        if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


#: buffers old PyTorch versions wrote for every InstanceNorm, even one that keeps no running statistics
STALE_NORM_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def drop_stale_norm_buffers(state: Mapping[str, Any], model) -> dict[str, Any]:
    """``state`` without the running-statistics entries of ``model``'s InstanceNorm layers that keep none.

    Published CycleGAN and MUNIT files from the PyTorch 0.3 era carry them (CycleGAN issues #262,
    #318); the official code drops them too. Every other key is kept, so a real mismatch still fails.
    """
    from torch import nn

    modules = dict(model.named_modules())
    cleaned = {}
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        module = modules.get(owner)
        if leaf in STALE_NORM_SUFFIXES and isinstance(module, nn.InstanceNorm2d) and not module.track_running_stats:
            continue
        cleaned[key] = value
    return cleaned


def describe_keys(keys, limit: int = 12) -> str:
    """Sorted, comma-separated key names for error messages, cut after ``limit``."""
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_official(kind: str, path: str | Path, device: str | torch.device = "cpu"):
    """Load a published reference checkpoint of ``kind`` into toonlab's module (eval mode)."""
    if kind not in OFFICIAL_LOADERS:
        raise ValueError(f"unknown official checkpoint kind {kind!r}; choose one of {', '.join(OFFICIAL_LOADERS)}")
    module_name, func_name = OFFICIAL_LOADERS[kind]
    converter = getattr(importlib.import_module(module_name), func_name)
    state = read_state_file(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of a {kind} model")
    try:
        module = converter(state)
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path} does not look like an official {kind} checkpoint: {err}") from err
    return module.to(device).eval()
