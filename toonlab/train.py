"""The one training loop every toonlab model plugs into (notebook 01 §"Training").

:class:`Trainer` knows nothing about the model it runs beyond :class:`~toonlab.models.base.TranslationModel`:

* device chosen automatically (CUDA when present) and overridable; on CUDA, mixed precision
  (``bf16`` where supported, else ``fp16`` with a gradient scaler) and ``channels_last`` as options;
* batches from :func:`toonlab.data.loader.make_loader`, a pure function of the step, so a resumed
  run sees exactly the batches an uninterrupted run would;
* a fixed batch of test photos for progress grids, a loss history, tqdm progress bars;
* checkpoints written atomically (temporary file, then rename) every ``checkpoint_every`` steps, at
  the end of :meth:`Trainer.fit` and when training is interrupted (Ctrl-C / kernel interrupt), holding
  models, optimisers, loss scaler, image pools, random states, step and history — loaded with
  ``weights_only=True``; the run's config is saved beside them as ``config.json``;
* a NaN or infinite loss stops training with a clear message and keeps the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from toonlab import __version__
from toonlab.config import pick_device, seed_everything
from toonlab.data.loader import make_loader, steps_per_epoch
from toonlab.hub import CheckpointError, read_state_file
from toonlab.io import atomic_write
from toonlab.models import build_model, model_module
from toonlab.models.base import Precision, TranslationModel

CHECKPOINT_FORMAT = "toonlab-checkpoint"
CHECKPOINT_VERSION = 1
LATEST = "latest.pt"


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted; a checkpoint of the last finished step was written (if a run dir is set)."""


# --- random state ------------------------------------------------------------------------------

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


# --- atomic files ------------------------------------------------------------------------------

def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` into a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or a full disk while writing leaves the previous file intact.
    """
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(text: str, path: str | Path) -> Path:
    """Write a UTF-8 text file atomically (temporary file + rename)."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), fsync=False)


# --- checkpoints -------------------------------------------------------------------------------

def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a toonlab training checkpoint (``weights_only=True``); a run folder means its ``latest.pt``."""
    path = resolve_checkpoint_path(path)
    state = read_state_file(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a toonlab training checkpoint (no '{CHECKPOINT_FORMAT}' marker). "
            "Official reference weights load with toonlab.hub.load_official(kind, path) instead"
        )
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was written by a newer toonlab (format {state['version']}); upgrade toonlab")
    return state


def resolve_checkpoint_path(path: str | Path) -> Path:
    """``run_dir`` -> ``run_dir/checkpoints/latest.pt``; a file path is returned unchanged."""
    path = Path(path).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / LATEST, path / LATEST):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"no checkpoint in {path}: expected {path / 'checkpoints' / LATEST}")
    return path


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


def load_trained_model(path: str | Path, device: str | torch.device | None = None) -> TranslationModel:
    """The model stored in a toonlab checkpoint, in eval mode, ready for :meth:`translate`."""
    state = read_checkpoint(path)
    config = config_from_dict(state["kind"], state["config"])
    model = build_model(state["kind"], config=config)
    _load_model_weights(model, state, resolve_checkpoint_path(path))
    return model.to(pick_device(device)).eval()


def _load_model_weights(model: TranslationModel, state: dict[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} do not fit this {model.kind} model: {err}") from err


# --- the trainer -------------------------------------------------------------------------------

StepCallback = Callable[["Trainer", dict[str, float]], None]


class Trainer:
    """Train any :class:`~toonlab.models.base.TranslationModel` on an unpaired dataset.

    Args:
        model: the model (its config gives the batch size).
        dataset: an :class:`~toonlab.data.loader.UnpairedImages` (synthetic portraits, image folders ...).
        device: ``None``/``"auto"`` for CUDA when present, else CPU; or any torch device string.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (bf16/fp16 on CUDA, fp32 on CPU).
        channels_last: use the NHWC memory format (helps convolutions on CUDA tensor cores).
        seed: seed of the data stream (and of the global RNGs when ``seed_globals``).
        run_dir: where ``checkpoints/``, ``samples/``, ``config.json`` and ``history.json`` go; ``None`` keeps nothing on disk.
        checkpoint_every: write ``checkpoints/latest.pt`` every this many steps (0: only at the end / on interrupt).
        keep_checkpoints: also keep ``checkpoints/step_XXXXXXXX.pt`` copies at each checkpoint.
        sample_images: fixed photos (N, 3, H, W) in [-1, 1] for progress grids.
        sample_every: save a progress grid to ``samples/`` every this many steps (0: never).
        num_workers: data loader worker processes.
        progress: show a tqdm progress bar.
    """

    def __init__(
        self,
        model: TranslationModel,
        dataset,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        seed: int = 0,
        run_dir: str | Path | None = None,
        checkpoint_every: int = 0,
        keep_checkpoints: bool = False,
        sample_images: torch.Tensor | None = None,
        sample_every: int = 0,
        num_workers: int = 0,
        progress: bool = True,
    ):
        self.device = pick_device(device)
        self.model = model.to(self.device)
        self.dataset = dataset
        self.precision = Precision(precision, self.device)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.model.to_memory_format(torch.channels_last)
        self.seed = int(seed)
        self.batch_size = int(getattr(model.config, "batch_size", 1))
        self.steps_per_epoch = steps_per_epoch(dataset, self.batch_size)
        self.model.steps_per_epoch = self.steps_per_epoch
        self.run_dir = Path(run_dir).expanduser() if run_dir is not None else None
        self.checkpoint_every = int(checkpoint_every)
        self.keep_checkpoints = bool(keep_checkpoints)
        self.sample_images = sample_images.to(self.device) if sample_images is not None else None
        self.sample_every = int(sample_every)
        self.num_workers = int(num_workers)
        self.progress = bool(progress)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.callbacks: list[StepCallback] = []
        self.last_checkpoint: Path | None = None
        self._batches = None
        self._batches_step = -1
        self._stop_requested = False
        if self.run_dir is not None:
            self.save_config()

    # -- hyper-parameters (the widgets' sliders) ----------------------------------------------
    @property
    def hparams(self) -> dict[str, Any]:
        return self.model.hparams

    def set_hparams(self, **values: Any) -> None:
        self.model.set_hparams(**values)
        if self.run_dir is not None:
            self.save_config()

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch

    # -- data ---------------------------------------------------------------------------------
    def _next_batch(self) -> dict[str, torch.Tensor]:
        if self._batches is None or self._batches_step != self.step:
            self._batches = iter(make_loader(self.dataset, self.batch_size, self.seed, self.step,
                                             self.num_workers, pin_memory=self.device.type == "cuda"))
        batch = next(self._batches)
        self._batches_step = self.step + 1
        out = {}
        for key, value in batch.items():
            value = value.to(self.device, non_blocking=True)
            if self.channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
            out[key] = value
        return out

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, steps: int | None = None, epochs: float | None = None) -> list[dict[str, float]]:
        """Train ``steps`` more steps (or ``epochs`` more epochs); returns the new history entries."""
        if (steps is None) == (epochs is None):
            raise ValueError("give exactly one of steps or epochs")
        if epochs is not None:
            steps = int(math.ceil(epochs * self.steps_per_epoch))
        steps = int(steps)
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        target = self.step + steps
        start_len = len(self.history)
        bar = None
        if self.progress and steps > 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc=f"{self.model.kind} training", unit="step", leave=False)
        self.model.train()
        try:
            with self._interrupt_guard():
                while self.step < target:
                    losses = self._train_one_step()
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix({k: f"{v:.3f}" for k, v in list(losses.items())[:4]}, refresh=False)
                    if self._stop_requested:
                        raise TrainingInterrupted()
                    if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                        self.save_checkpoint()
                    if self.sample_every and self.step % self.sample_every == 0:
                        self.save_samples()
        except KeyboardInterrupt:
            path = self.save_checkpoint() if self.run_dir is not None else None
            where = f"; checkpoint saved to {path} — resume with Trainer.from_checkpoint or `toonlab train --resume`" if path else ""
            raise TrainingInterrupted(f"training interrupted at step {self.step}{where}") from None
        finally:
            if bar is not None:
                bar.close()
        if self.run_dir is not None and steps > 0:
            self.save_checkpoint()
        return self.history[start_len:]

    def _train_one_step(self) -> dict[str, float]:
        batch = self._next_batch()
        self.model.set_learning_rates(self.step, self.steps_per_epoch)
        started = time.perf_counter()
        losses = self.model.train_step(batch, self.precision, self.step)
        self.precision.update()
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            names = ", ".join(f"{k}={v}" for k, v in bad.items())
            kept = f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else \
                "no checkpoint was written yet (set run_dir and checkpoint_every to keep one)"
            raise TrainingDiverged(
                f"{self.model.kind} training diverged at step {self.step}: {names}. Training stopped; {kept}. "
                f"Try a lower learning rate (now {self.model.hparams.get('lr')}), precision='fp32', "
                "or smaller loss weights, then resume from that checkpoint."
            )
        self.step += 1
        lr = next(iter(self.model.optimizers.values())).param_groups[0]["lr"] if self.model.optimizers else 0.0
        entry = {"step": self.step, **{k: float(v) for k, v in losses.items()}, "lr": float(lr),
                 "seconds": time.perf_counter() - started}
        self.history.append(entry)
        for callback in self.callbacks:
            callback(self, entry)
        return losses

    @contextlib.contextmanager
    def _interrupt_guard(self):
        """Turn the first Ctrl-C into 'stop after this step' so checkpoints are never half-updated."""
        self._stop_requested = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            if self._stop_requested:  # second Ctrl-C: stop right now
                raise KeyboardInterrupt
            self._stop_requested = True

        try:
            previous = signal.signal(signal.SIGINT, request_stop)
        except (ValueError, OSError):
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    # -- samples ------------------------------------------------------------------------------
    @torch.no_grad()
    def translate_samples(self, direction: str = "AtoB") -> torch.Tensor:
        """The fixed sample photos translated by the current model (N, 3, H, W) in [-1, 1]."""
        if self.sample_images is None:
            raise ValueError("this trainer has no sample_images")
        kwargs = {}
        if "generator" in inspect.signature(self.model.translate).parameters:
            # multimodal models (MUNIT) draw random styles: the same ones every time, so grids compare
            kwargs["generator"] = torch.Generator().manual_seed(self.seed)
        return self.model.translate(self.sample_images, direction, **kwargs).float()

    def save_samples(self) -> Path | None:
        """Save a two-row grid (photos above, translations below) to ``run_dir/samples/step_XXXXXXXX.png``."""
        if self.run_dir is None or self.sample_images is None:
            return None
        from torchvision.utils import save_image

        grid = torch.cat([self.sample_images.float(), self.translate_samples()], 0)
        path = self.run_dir / "samples" / f"step_{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image((grid.cpu() + 1) / 2, path, nrow=len(self.sample_images))
        return path

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "toonlab_version": __version__,
            "kind": self.model.kind,
            "config": self.model.config_dict(),
            "step": self.step,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "model": self.model.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.model.optimizers.items()},
            "precision": self.precision.state_dict(),
            "extra": self.model.extra_state(),
            "rng": capture_rng_state(),
            "history": self.history,
        }

    def save_config(self) -> Path:
        """Write the run's config (model kind, config, seed, device, precision) to ``run_dir/config.json``."""
        if self.run_dir is None:
            raise ValueError("this trainer has no run_dir")
        info = {"kind": self.model.kind, "config": self.model.config_dict(), "seed": self.seed,
                "device": str(self.device), "precision": self.precision.mode,
                "channels_last": self.channels_last, "toonlab_version": __version__,
                "steps_per_epoch": self.steps_per_epoch}
        return atomic_write_text(json.dumps(info, indent=2), self.run_dir / "config.json")

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint atomically (default ``run_dir/checkpoints/latest.pt``) and the history JSON."""
        if path is None:
            if self.run_dir is None:
                raise ValueError("give a path or set run_dir to save checkpoints")
            path = self.run_dir / "checkpoints" / LATEST
        state = self.state_dict()
        path = atomic_save(state, path)
        if self.keep_checkpoints and path.name == LATEST:
            atomic_save(state, path.parent / f"step_{self.step:08d}.pt")
        if self.run_dir is not None:
            atomic_write_text(json.dumps(self.history), self.run_dir / "history.json")
        self.last_checkpoint = path
        return path

    def load_checkpoint(self, path: str | Path, strict_config: bool = True) -> None:
        """Continue from a checkpoint of the same model kind and config (hyper-parameters may differ)."""
        path = resolve_checkpoint_path(path)
        state = read_checkpoint(path)
        if state["kind"] != self.model.kind:
            raise CheckpointError(
                f"{path} holds a {state['kind']} checkpoint but this trainer runs {self.model.kind}; "
                f"use `toonlab train {state['kind']} --resume ...` or Trainer.from_checkpoint"
            )
        diffs = config_differences(state["config"], self.model.config_dict(), ignore=self.model.hparam_names)
        if diffs and strict_config:
            raise CheckpointError(
                f"{path} was trained with another {state['kind']} config:\n  " + "\n  ".join(diffs)
                + "\nBuild the model from the checkpoint's own config with Trainer.from_checkpoint(path, dataset)"
            )
        _load_model_weights(self.model, state, path)
        for name, opt in self.model.optimizers.items():
            if name not in state["optimizers"]:
                raise CheckpointError(f"{path} has no state for optimizer {name!r}")
            opt.load_state_dict(state["optimizers"][name])
        self.model.load_extra_state(state["extra"])
        self.precision.load_state_dict(state["precision"])
        restore_rng_state(state["rng"])
        self.step = int(state["step"])
        self.seed = int(state["seed"])
        self.history = list(state["history"])
        self.last_checkpoint = path
        self._batches = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, dataset, **kwargs: Any) -> "Trainer":
        """A trainer whose model is rebuilt from the checkpoint's config, then resumed from it."""
        path = resolve_checkpoint_path(path)
        state = read_checkpoint(path)
        model = build_model(state["kind"], config=config_from_dict(state["kind"], state["config"]))
        kwargs.setdefault("seed", state["seed"])
        trainer = cls(model, dataset, **kwargs)
        trainer.load_checkpoint(path)
        return trainer


def sample_photos(dataset, n: int = 8) -> torch.Tensor:
    """The first ``n`` A images of a (test) dataset, un-augmented, as a fixed sample batch."""
    n = min(n, dataset.len_a)
    return torch.stack([dataset[(i, 0, 0)]["A"] for i in range(n)])


def make_trainer(kind: str, preset: str | None = None, dataset=None, test_dataset=None, seed: int = 0,
                 config=None, n_samples: int = 8, **trainer_kwargs: Any) -> Trainer:
    """Seed everything, build ``kind`` from ``preset`` (or ``config``), and wrap it in a :class:`Trainer`.

    Without ``dataset`` the built-in synthetic portraits at the preset's image size are used, with
    their test split as the fixed sample batch.
    """
    seed_everything(seed)
    model = build_model(kind, preset, config=config)
    size = int(model.config.image_size)
    if dataset is None:
        from toonlab.data.synthetic import SyntheticPortraits

        dataset = SyntheticPortraits(size=size, split="train", seed=seed)
        test_dataset = test_dataset or SyntheticPortraits(size=size, split="test", seed=seed)
    dataset = prepare_dataset_for(model, dataset)
    if test_dataset is not None and "sample_images" not in trainer_kwargs:
        trainer_kwargs["sample_images"] = sample_photos(test_dataset, n_samples)
    return Trainer(model, dataset, seed=seed, **trainer_kwargs)


def prepare_dataset_for(model: TranslationModel, dataset):
    """Let the model wrap the dataset if it needs more than photos and cartoons (CartoonGAN's edge twins)."""
    wrap = getattr(model, "wrap_dataset", None)
    return wrap(dataset) if callable(wrap) else dataset
