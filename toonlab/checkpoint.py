"""toonlab's training checkpoints: the file format, atomic saves, random states, readers, loading.

A checkpoint (``run_dir/checkpoints/latest.pt``) is a plain dict of tensors, lists and numbers,
marked ``{"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}``, holding the model kind and
config, the weights, the optimiser, loss-scaler and image-pool states, the random states, the
step, the seed and the loss history (:meth:`toonlab.train.Trainer.state_dict` builds it). It is
written atomically (temporary file, then rename) and read with ``torch.load(weights_only=True)``,
so a malicious pickle cannot run code. :func:`load_trained_model` turns one into a model ready
for ``translate``; :meth:`toonlab.train.Trainer.from_checkpoint` continues training from one.
Published reference weights are another format: :func:`toonlab.hub.load_official` reads them.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import torch

from toonlab.config import pick_device
from toonlab.io import atomic_write
from toonlab.models import build_model, model_module

if TYPE_CHECKING:
    from toonlab.models.base import TranslationModel

#: the ``"format"`` marker of a toonlab training checkpoint
CHECKPOINT_FORMAT = "toonlab-checkpoint"
#: the newest checkpoint layout this toonlab writes and reads
CHECKPOINT_VERSION = 1
#: the file name of a run's current checkpoint, in ``run_dir/checkpoints/``
LATEST = "latest.pt"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, unsafe or of the wrong kind."""


# --- reading files -------------------------------------------------------------------------------

def read_state_file(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors that say what to do."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint file {path} is empty (0 bytes): its copy or download was cut short; "
            "copy it again, or use another checkpoint"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        text = str(err)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"{path} contains pickled Python objects, not just tensors; toonlab refuses to "
                "unpickle arbitrary code. Re-save it as a plain state_dict with torch.save(model.state_dict())"
            ) from err
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({err.__class__.__name__}: {err})") from err


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a toonlab training checkpoint (``weights_only=True``); a run folder means its ``latest.pt``.

    A converged model's name (``cyclegan-synthetic``, :mod:`toonlab.pretrained`) or file reads as a
    checkpoint with its generators only (``"format": "toonlab-pretrained"``): it translates and
    evaluates, but cannot resume training.
    """
    from toonlab import pretrained

    if pretrained.is_pretrained_name(path):
        return _pretrained_state(lambda: pretrained.read_named(str(path)))
    path = resolve_checkpoint_path(path)
    state = read_state_file(path)
    if isinstance(state, dict) and state.get("format") == pretrained.PRETRAINED_FORMAT:
        return _pretrained_state(lambda: pretrained.read_pretrained(path, state=state))
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a toonlab training checkpoint (no '{CHECKPOINT_FORMAT}' marker). "
            "Official reference weights load with toonlab.hub.load_official(kind, path) instead"
        )
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was written by a newer toonlab (format {state['version']}); upgrade toonlab")
    return state


def resolve_checkpoint_path(path: str | Path) -> Path:
    """``run_dir`` -> ``run_dir/checkpoints/latest.pt``; a converged model's name -> its shipped file;
    a file path is returned unchanged."""
    from toonlab import pretrained

    if pretrained.is_pretrained_name(path):
        return pretrained.pretrained_path(str(path))
    path = Path(path).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / LATEST, path / LATEST):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"no checkpoint in {path}: expected {path / 'checkpoints' / LATEST}")
    return path


def _pretrained_state(read) -> dict[str, Any]:
    """A converged model's state, its :class:`toonlab.pretrained.PretrainedUnavailable` as a CheckpointError."""
    from toonlab.pretrained import PretrainedUnavailable

    try:
        return read()
    except PretrainedUnavailable as err:
        raise CheckpointError(str(err)) from err


def is_generators_only(state: dict[str, Any]) -> bool:
    """True for a converged model's file (:mod:`toonlab.pretrained`): weights of the generators, nothing to resume."""
    from toonlab.pretrained import PRETRAINED_FORMAT

    return state.get("format") == PRETRAINED_FORMAT


def check_resumable(state: dict[str, Any], path: str | Path) -> None:
    """Raise a :class:`CheckpointError` when ``state`` cannot continue training (a generators-only file)."""
    if is_generators_only(state):
        raise CheckpointError(
            f"{path} holds only the generators of a converged model: it translates and evaluates, but training "
            "cannot resume from it (no discriminators, optimisers or random states). Start a new run instead"
        )


def config_from_dict(kind: str, values: dict[str, Any]):
    """Rebuild the model config dataclass of ``kind`` from a saved dict (unknown fields are an error)."""
    cls = model_module(kind).Config
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise CheckpointError(f"checkpoint config has fields this toonlab's {kind} does not know: {', '.join(unknown)}")
    return cls(**values)


def config_differences(saved: dict[str, Any], current: dict[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """Human-readable list of fields whose values differ, ignoring tunable hyper-parameters."""
    ignore = set(ignore)
    diffs = []
    for key in sorted(set(saved) | set(current)):
        if key in ignore:
            continue
        if saved.get(key, "<missing>") != current.get(key, "<missing>"):
            diffs.append(f"{key}: checkpoint {saved.get(key, '<missing>')!r} vs this run {current.get(key, '<missing>')!r}")
    return diffs


# --- finite weights ------------------------------------------------------------------------------

def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True when every floating-point tensor holds only finite values (no NaN, no inf).

    Cheap: one fused norm per device (``torch._foreach_norm``) and one host sync; only when a norm is
    not finite (NaN/inf weights, or huge finite ones whose norm overflows) are the tensors checked
    element by element.
    """
    groups: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()) and t.numel():
            groups.setdefault(t.device, []).append(t.detach())
    for group in groups.values():
        try:
            norms = torch._foreach_norm(group)
            fine = bool(torch.stack([n.float() for n in norms]).isfinite().all())
        except (AttributeError, RuntimeError, TypeError):
            fine = False
        if not fine and not all(bool(t.isfinite().all()) for t in group):
            return False
    return True


def non_finite_names(state: dict[str, Any], limit: int = 5) -> list[str]:
    """Names of the tensors of a state dict that hold NaN or infinite values (at most ``limit``)."""
    if all_finite(v for v in state.values() if isinstance(v, torch.Tensor)):
        return []
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex())
           and not bool(v.isfinite().all())]
    return bad[:limit] + ([f"... ({len(bad)} in all)"] if len(bad) > limit else [])


def check_checkpoint_weights(state: dict[str, Any], path: str | Path) -> None:
    """Raise a :class:`CheckpointError` when the model weights of a checkpoint are NaN or infinite."""
    weights = state.get("model")
    bad = non_finite_names(weights) if isinstance(weights, dict) else []
    if bad:
        raise CheckpointError(
            f"{path} holds NaN or infinite weights ({', '.join(bad)}): training had diverged before it "
            "was saved, and its outputs would be black or noise. Use an earlier checkpoint "
            "(step_XXXXXXXX.pt with --keep-checkpoints) or train again with a lower learning rate"
        )


# --- loading models ------------------------------------------------------------------------------

def load_model_weights(model: TranslationModel, state: dict[str, Any], path: str | Path) -> None:
    """Put a checkpoint's (finite) weights into ``model``; a :class:`CheckpointError` when they do not fit."""
    check_checkpoint_weights(state, path)
    if is_generators_only(state):
        from toonlab.pretrained import load_generators

        return load_generators(model, state, path)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} do not fit this {model.kind} model: {err}") from err


def load_trained_model(path: str | Path, device: str | torch.device | None = None) -> TranslationModel:
    """The model stored in a toonlab checkpoint, in eval mode, ready for :meth:`translate`."""
    return model_from_state(read_checkpoint(path), resolve_checkpoint_path(path), device)


def model_from_state(state: dict[str, Any], path: Path, device: str | torch.device | None = None) -> TranslationModel:
    """The model of a checkpoint already read with :func:`read_checkpoint` from ``path`` (named in errors), in eval mode."""
    config = config_from_dict(state["kind"], state["config"])
    model = build_model(state["kind"], config=config)
    load_model_weights(model, state, path)
    return model.to(pick_device(device)).eval()


# --- random state --------------------------------------------------------------------------------

def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA random states, as tensors/lists (``weights_only``-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_as_tuple(v) for v in value)
    return value


# --- atomic files --------------------------------------------------------------------------------

def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` into a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or a full disk while writing leaves the previous file intact.
    """
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(text: str, path: str | Path) -> Path:
    """Write a UTF-8 text file atomically (temporary file + rename)."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), fsync=False)
