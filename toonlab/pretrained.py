"""Converged models that ship with toonlab: generators trained long on the built-in synthetic portraits.

A lesson trains for minutes; these show what the same ``cpu``-size networks reach when trained
much longer (issue "Cartoons that work", item 3). Each one is a name —
``cyclegan-synthetic``, ``cartoongan-synthetic``, ``munit-synthetic``, ``xgan-synthetic`` — that ``toonlab translate``,
``toonlab eval`` and :func:`toonlab.checkpoint.load_trained_model` accept wherever a checkpoint
path goes. The files live in ``toonlab/weights/``: ``NAME.pt`` (the kind, the config and the
generators' weights as float16; no discriminator, no optimiser) and ``NAME.json`` beside it (the
recipe that made it — command, seed, steps —, its sha256, its test scores, the machine), both
written by ``data_scripts/train_converged.py``. The weights are checked against the sha256 before
they are read, and read with ``weights_only=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from toonlab.models.base import TranslationModel

#: where the shipped weights live
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: the ``"format"`` marker of a generator-only file
PRETRAINED_FORMAT = "toonlab-pretrained"
PRETRAINED_VERSION = 1
#: name -> model kind of every converged model toonlab knows
NAMES = {"cyclegan-synthetic": "cyclegan", "cartoongan-synthetic": "cartoongan", "munit-synthetic": "munit",
         "xgan-synthetic": "xgan"}
REMAKE = "python data_scripts/train_converged.py {kind}"


class PretrainedUnavailable(RuntimeError):
    """A shipped model's weights are missing, damaged or foreign."""


def is_pretrained_name(text: str | Path) -> bool:
    """True when ``text`` is one of :data:`NAMES` (and no file or folder of that name is in the way)."""
    return str(text) in NAMES and not Path(text).exists()


def pretrained_path(name: str) -> Path:
    if name not in NAMES:
        raise PretrainedUnavailable(f"unknown pretrained model {name!r}; choose one of {', '.join(NAMES)}")
    return WEIGHTS_DIR / f"{name}.pt"


# --- shipped weight files: weights + a JSON manifest with their sha256 (also toonlab.parts') ---------


def read_manifest(path: str | Path, error: type[Exception] = PretrainedUnavailable,
                  remake: str = "the file cannot be checked") -> dict[str, Any]:
    """The JSON beside a weight file (recipe, sha256, scores, machine); ``error(...)`` when it is missing."""
    manifest = Path(path).with_suffix(".json")
    if not manifest.is_file():
        raise error(f"no manifest {manifest} beside {path}; {remake}")
    return json.loads(manifest.read_text())


def check_against_manifest(path: str | Path, error: type[Exception], remake: str) -> dict[str, Any]:
    """The manifest of an existing weight file whose sha256 it matches; ``error(...)`` saying ``remake`` otherwise."""
    from toonlab.data.download import sha256_of  # (not at import: it pulls in the folder reader and torchvision)

    manifest = read_manifest(path, error, remake)
    digest = sha256_of(path)
    if manifest.get("sha256") != digest:
        raise error(f"{path} has sha256 {digest[:12]}..., its manifest says {str(manifest.get('sha256'))[:12]}...: "
                    f"the file is damaged or was replaced; {remake}")
    return manifest


def save_with_manifest(obj: Any, path: str | Path, record: dict[str, Any]) -> Path:
    """``torch.save(obj)`` atomically, then the manifest beside it: ``record`` plus file name, sha256 and size."""
    from toonlab.checkpoint import atomic_save, atomic_write_text
    from toonlab.data.download import sha256_of

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(obj, target)
    manifest = dict(record, file=target.name, sha256=sha256_of(target), bytes=target.stat().st_size)
    atomic_write_text(json.dumps(manifest, indent=2) + "\n", target.with_suffix(".json"))
    return target


def as_float16(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors as float16 (shipped weights are half the size), the others as they are, on the CPU."""
    return {k: (v.detach().half() if v.is_floating_point() else v.detach()).cpu() for k, v in state.items()}


def as_float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`as_float16` for loading: floating-point tensors as float32."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def available() -> dict[str, dict[str, Any]]:
    """Name -> manifest of the converged models whose files are present."""
    found = {}
    for name in NAMES:
        path = pretrained_path(name)
        if path.is_file() and path.with_suffix(".json").is_file():
            found[name] = read_manifest(path)
    return found


def generator_state(model: TranslationModel) -> dict[str, torch.Tensor]:
    """The weights of ``model``'s generators only (:attr:`generator_names`), floating point as float16."""
    prefixes = tuple(f"{name}." for name in model.generator_names)
    if not prefixes:
        raise ValueError(f"{model.kind} names no generators (generator_names is empty)")
    return as_float16({k: v for k, v in model.state_dict().items() if k.startswith(prefixes)})


def save_pretrained(model: TranslationModel, path: str | Path, record: dict[str, Any]) -> Path:
    """Write ``model``'s generators (float16) and its config atomically, and the manifest beside them."""
    return save_with_manifest({"format": PRETRAINED_FORMAT, "version": PRETRAINED_VERSION, "kind": model.kind,
                               "config": model.config_dict(), "generators": list(model.generator_names),
                               "model": generator_state(model)}, path, dict(record, kind=model.kind))


def read_pretrained(path: str | Path, kind: str | None = None, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checked contents of a generator-only file: its sha256 against the manifest, then ``weights_only``.

    ``state``: the file's contents when the caller has read them already (they are not read again).
    """
    from toonlab.checkpoint import CheckpointError, read_state_file

    path = Path(path)
    remake = f"make it again with: {REMAKE.format(kind=kind or 'MODEL')}"
    if not path.is_file():
        raise PretrainedUnavailable(f"the converged model {path} is not installed; {remake}")
    manifest = check_against_manifest(path, PretrainedUnavailable, remake)
    try:
        state = read_state_file(path) if state is None else state
    except CheckpointError as err:
        raise PretrainedUnavailable(f"{err}; {remake}") from err
    if not isinstance(state, dict) or state.get("format") != PRETRAINED_FORMAT or not isinstance(state.get("model"), dict):
        raise PretrainedUnavailable(f"{path} is not a toonlab pretrained-generator file; {remake}")
    if kind is not None and state.get("kind") != kind:
        raise PretrainedUnavailable(f"{path} holds a {state.get('kind')} model, not {kind}; {remake}")
    state["model"] = as_float32(state["model"])
    # the step of the weights kept (the run may have gone on longer)
    state.setdefault("step", int(manifest.get("kept_step", manifest.get("recipe", {}).get("steps", 0))))
    return state


def read_named(name: str) -> dict[str, Any]:
    """:func:`read_pretrained` of a name of :data:`NAMES`."""
    return read_pretrained(pretrained_path(name), NAMES[name])


def load_generators(model: TranslationModel, state: dict[str, Any], path: str | Path) -> None:
    """Put a generator-only state into ``model``: every generator key must be there and fit, nothing else."""
    from toonlab.checkpoint import CheckpointError

    prefixes = tuple(f"{name}." for name in model.generator_names)
    expected = {k for k in model.state_dict() if k.startswith(prefixes)}
    given = set(state["model"])
    if given != expected:
        missing, extra = sorted(expected - given), sorted(given - expected)
        raise CheckpointError(f"the generator weights in {path} do not fit this {model.kind} model: "
                              f"missing {missing[:5]}, unexpected {extra[:5]}")
    try:
        model.load_state_dict(state["model"], strict=False)
    except RuntimeError as err:
        raise CheckpointError(f"the generator weights in {path} do not fit this {model.kind} model: {err}") from err
