"""The one training loop every toonlab model plugs into (notebook 01 §"Training").

:class:`Trainer` knows nothing about the model it runs beyond :class:`~toonlab.models.base.TranslationModel`:

* device chosen automatically (CUDA when present) and overridable; on CUDA, mixed precision
  (``bf16`` where supported, else ``fp16`` with a gradient scaler) and ``channels_last`` as options;
* batches from :func:`toonlab.data.loader.make_loader`, a pure function of the step, so a resumed
  run sees exactly the batches an uninterrupted run would;
* a fixed batch of test photos for progress grids, a loss history, tqdm progress bars;
* checkpoints written atomically (temporary file, then rename) every ``checkpoint_every`` steps, at
  the end of :meth:`Trainer.fit` and when training is interrupted (Ctrl-C, a kernel interrupt or
  SIGTERM from ``kill``, ``docker stop``, systemd or Slurm: the step in progress is finished first),
  holding models, optimisers, loss scaler, image pools, random states, step and history — loaded
  with ``weights_only=True`` (the format, its readers and :func:`~toonlab.checkpoint.load_trained_model`
  are in :mod:`toonlab.checkpoint`); the run's config is saved beside them as ``config.json``;
* a fast path (``fast=True``, ``toonlab train --fast``): bf16 autocast where the chip computes
  it natively, fused Adam, ``torch.compile`` of the networks and cuDNN autotuning on CUDA -- the same
  model and losses, only faster (docs/performance.md §4.3);
* several processes (``torchrun --nproc_per_node N``): each draws its own slice of every step's
  batches, gradients and losses are averaged across them, and rank 0 alone writes files
  (:mod:`toonlab.distributed`);
* a NaN, infinite or absurd (> ``Trainer.max_loss``) loss stops training with a clear message that
  names the last good checkpoint and its step: the weights are checked before every checkpoint
  write, and a periodic checkpoint is written only once the next step's losses show its weights
  are good, so a good checkpoint is never replaced by a diverged one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import shlex
import signal
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from toonlab import __version__
# the checkpoint format, files and readers live in toonlab.checkpoint; the names the loop does not
# use itself are re-exported so `from toonlab.train import load_trained_model, read_checkpoint` keeps working
from toonlab.checkpoint import (  # noqa: F401
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    LATEST,
    CheckpointError,
    all_finite,
    atomic_save,
    atomic_write_text,
    capture_rng_state,
    check_checkpoint_weights,
    check_resumable,
    config_differences,
    config_from_dict,
    load_model_weights,
    load_trained_model,
    non_finite_names,
    read_checkpoint,
    read_state_file,
    resolve_checkpoint_path,
    restore_rng_state,
)
from toonlab.config import pick_device, seed_everything
from toonlab.data import load_datasets
from toonlab.data.loader import make_loader, steps_per_epoch
from toonlab.distributed import (World, average_gradients, average_losses, broadcast_from_main, current_world,
                                 optimizer_parameters, process_seed)
from toonlab.io import remove_stale_temporaries
from toonlab.models import build_config, build_model
from toonlab.models.base import Precision, TranslationModel, loss_floats


class TrainingDiverged(RuntimeError):
    """A loss or a weight became NaN or infinite; the last good checkpoint is kept (and named)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted; a checkpoint of the last finished step was written (if a run dir is set).

    ``signal`` is the signal that stopped it (``signal.SIGINT`` for Ctrl-C, ``signal.SIGTERM`` ...).
    """

    def __init__(self, message: str = "", signum: int = signal.SIGINT):
        super().__init__(message)
        self.signal = int(signum)


#: steps whose losses the fast path on CUDA reads back at once (one device sync instead of one per step)
FAST_READ_LOSSES_EVERY = 10
#: timed steps per precision when the fast path measures the CPU's faster precision (after one warm-up step)
PRECISION_TIMING_STEPS = 3
#: the step index those timing steps run at: past every warm-up and initialisation phase, like most of a run
PRECISION_TIMING_STEP = 10**6
#: loss terms shown beside the progress bar
PROGRESS_TERMS = 4

#: signals that mean "stop after this step" during :meth:`Trainer.fit`
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))


# --- the trainer -------------------------------------------------------------------------------

StepCallback = Callable[["Trainer", dict[str, float]], None]


class Trainer:
    """Train any :class:`~toonlab.models.base.TranslationModel` on an unpaired dataset.

    A loss that is NaN, infinite or above :attr:`max_loss` stops training with
    :class:`TrainingDiverged`. A checkpoint taken every ``checkpoint_every`` steps is written only
    once the next step's losses show that its weights are good (they are held on the CPU until
    then); every checkpoint write checks that the weights are finite, so a good checkpoint is never
    replaced by a diverged one, and the error names the step and file that were kept.

    Args:
        model: the model (its config gives the batch size).
        dataset: an :class:`~toonlab.data.loader.UnpairedImages` (synthetic portraits, image folders ...).
        device: ``None``/``"auto"`` for CUDA when present, else CPU; or any torch device string.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (bf16/fp16 on CUDA, fp32 on CPU); default fp32 (with ``fast``: :func:`fast_precision`).
        channels_last: use the NHWC memory format (helps convolutions on CUDA tensor cores); default:
            with ``fast`` on CUDA for the models it speeds up (:attr:`TranslationModel.channels_last_helps`).
        seed: seed of the data stream (and of the global RNGs when ``seed_globals``).
        run_dir: where ``checkpoints/``, ``samples/``, ``config.json`` and ``history.json`` go; ``None`` keeps nothing on disk.
        checkpoint_every: write ``checkpoints/latest.pt`` every this many steps (0: only at the end / on interrupt).
        keep_checkpoints: also keep ``checkpoints/step_XXXXXXXX.pt`` copies at each checkpoint.
        sample_images: fixed photos (N, 3, H, W) in [-1, 1] for progress grids.
        sample_every: save a progress grid to ``samples/`` every this many steps (0: never).
        num_workers: data loader worker processes.
        progress: show a tqdm progress bar.
        fast: the fast path: precision defaults to :func:`fast_precision` (bf16 where the device
            computes it natively; on a CPU only where a few timed steps show it is faster), Adam is fused,
            and on CUDA the networks are compiled, cuDNN autotunes (not bit-reproducible) and models that
            gain from it use channels_last. Off by default (measured speed-ups: docs/performance.md §4.3).
        compile: ``torch.compile`` the networks (:meth:`TranslationModel.compile_networks`);
            default: with ``fast`` on CUDA. On the CPU it adds to bf16 for CycleGAN and CartoonGAN only,
            after seconds to minutes of compiling, so there it is asked for on its own.
        fused_adam: fused Adam (one kernel for all parameters); default: with ``fast`` (on a CPU too:
            the paper CycleGAN step at 64 px went from 0.425 to 0.382 s in bf16, docs/performance.md §4.3).
        read_losses_every: read the losses back from the device every this many steps (a step then
            never waits for the GPU); default 1, and :data:`FAST_READ_LOSSES_EVERY` with ``fast`` on
            CUDA. The NaN guard checks every step's losses when they are read, and always before a
            checkpoint is written; widgets (callbacks) get every step at once.
        world: this process's place in a multi-process run (default: the initialised
            ``torch.distributed`` process group, else one process). ``model.batch_size`` is then
            per process; the run's effective batch is ``batch_size * world.size``.
    """

    #: a loss term above this (in absolute value) counts as diverged, like NaN; None: only NaN/inf.
    #: The losses of toonlab's models stay far below it (images in [-1, 1], loss weights of at most 1e3)
    max_loss: float | None = 1e8

    def __init__(
        self,
        model: TranslationModel,
        dataset,
        device: str | torch.device | None = None,
        precision: str | None = None,
        channels_last: bool | None = None,
        seed: int = 0,
        run_dir: str | Path | None = None,
        checkpoint_every: int = 0,
        keep_checkpoints: bool = False,
        sample_images: torch.Tensor | None = None,
        sample_every: int = 0,
        num_workers: int = 0,
        progress: bool = True,
        fast: bool = False,
        compile: bool | None = None,
        fused_adam: bool | None = None,
        read_losses_every: int | None = None,
        world: World | None = None,
    ):
        self.world = world if world is not None else current_world()
        #: only rank 0 writes checkpoints, samples, history and config (the others compute the same weights)
        self.writes_files = self.world.is_main
        self.device = pick_device(device)
        self.model = model.to(self.device)
        self.dataset = dataset
        self.fast = bool(fast)
        measure_precision = precision is None and self.fast and self.device.type == "cpu"
        if precision is None:
            precision = fast_precision(self.device) if self.fast else "fp32"
        self.precision = Precision(precision, self.device)
        self.compiled = (self.fast and self.device.type == "cuda") if compile is None else bool(compile)
        self.fused_adam = self.fast if fused_adam is None else bool(fused_adam)
        if self.fast and self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.deterministic = False
        self.channels_last = (self.fast and self.device.type == "cuda" and model.channels_last_helps) \
            if channels_last is None else bool(channels_last)
        if self.channels_last:
            self.model.to_memory_format(torch.channels_last)
        self._set_optimizer_options()
        if self.compiled:
            self.model.compile_networks()
        self.seed = int(seed)
        self.batch_size = model.batch_size
        self.effective_batch_size = self.batch_size * self.world.size
        self.steps_per_epoch = steps_per_epoch(dataset, self.effective_batch_size)
        self.model.steps_per_epoch = self.steps_per_epoch
        if self.world.distributed:
            broadcast_from_main(self.model)
            self.precision.before_step = lambda optimizer: average_gradients(optimizer_parameters(optimizer), self.world)
        self.run_dir = Path(run_dir).expanduser() if run_dir is not None else None
        self.checkpoint_every = int(checkpoint_every)
        self.keep_checkpoints = bool(keep_checkpoints)
        self.sample_images = sample_images.to(self.device) if sample_images is not None else None
        self.sample_every = int(sample_every)
        self.num_workers = int(num_workers)
        self.progress = bool(progress) and self.world.is_main
        self.step = 0
        self._seed_this_process()
        self.history: list[dict[str, float]] = []
        self.callbacks: list[StepCallback] = []
        self.last_checkpoint: Path | None = None
        #: the step held by :attr:`last_checkpoint`
        self.last_checkpoint_step: int | None = None
        #: the shell command printed to continue this run (default: ``toonlab train KIND --resume RUN_DIR``)
        self.resume_command: str | None = None
        self._batches = None
        self._batches_step = -1
        self._stop_requested = False
        self._stop_signal: int | None = None
        self._in_step = False
        #: the checkpoint of the last checkpoint step, written once the next step's losses are finite
        self._pending: dict[str, Any] | None = None
        #: (step, losses, lr, seconds) of the steps whose losses are not read back yet
        self._unread: list[tuple[int, dict[str, Any], float, float]] = []
        cuda_fast = self.fast and self.device.type == "cuda" and not self.world.distributed
        self.read_losses_every = max(1, int(read_losses_every if read_losses_every is not None
                                            else FAST_READ_LOSSES_EVERY if cuda_fast else 1))
        if self.world.distributed:
            self.read_losses_every = 1  # the processes average their losses every step (the stop flag rides along)
        self.model.defer_loss_readback = self.read_losses_every > 1
        #: the fast path on a CPU with native bf16: seconds per step measured in fp32 and in bf16 (the faster is used)
        self.precision_timings: dict[str, float] | None = None
        if measure_precision and self.precision.mode != "fp32":
            self._choose_faster_precision(("fp32", self.precision.mode))
        if self.run_dir is not None and self.writes_files:
            # a kill during an atomic write leaves its temporary file: a new start sweeps them away
            for name in (LATEST, "history.json", "config.json"):
                folder = self.run_dir / "checkpoints" if name == LATEST else self.run_dir
                remove_stale_temporaries(folder / name)
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
                                             self.num_workers, pin_memory=self.device.type == "cuda",
                                             rank=self.world.rank, world_size=self.world.size))
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
                    self._train_one_step()
                    # this step's losses are finite, so the weights they came from (those of the checkpoint
                    # taken after the previous step) are good: only now is that checkpoint written
                    self._write_pending()
                    if bar is not None:
                        bar.update(1)
                        if not self._unread and self.history:
                            shown = [k for k in self.history[-1] if k not in ("step", "lr", "seconds")][:PROGRESS_TERMS]
                            bar.set_postfix({k: f"{self.history[-1][k]:.3f}" for k in shown}, refresh=False)
                    if self._stop_requested:
                        raise TrainingInterrupted()
                    if self.checkpoint_every and self.step % self.checkpoint_every == 0 and self.writes_files:
                        self._pending = self._snapshot()
                    if self.sample_every and self.step % self.sample_every == 0:
                        self.save_samples()
        except KeyboardInterrupt:
            signum = self._stop_signal or signal.SIGINT
            how = {signal.SIGINT: "interrupted (Ctrl-C)"}.get(signum, f"stopped by {signal.Signals(signum).name}")
            if self._in_step:  # a second signal cut a step short: its updates are half done, keep the last checkpoint
                self._write_pending()
                kept = f"the step in progress was cut short and not saved; {self._kept_text()}"
            elif self.run_dir is not None:
                self._pending = None
                kept = f"checkpoint of step {self.step} saved to {self.save_checkpoint()}"
            else:
                kept = "nothing was saved (no run_dir)"
            resume = self._resume_text()
            raise TrainingInterrupted(f"training {how} at step {self.step}; {kept}"
                                      + (f"; resume with {resume}" if resume else ""), signum) from None
        finally:
            if bar is not None:
                bar.close()
        self._read_losses()
        self._pending = None
        if self.run_dir is not None and steps > 0:
            self.save_checkpoint()
        return self.history[start_len:]

    def _snapshot(self) -> dict[str, Any]:
        """The checkpoint of this step, copied to the CPU (to be written once the next step shows it is good)."""
        if self.run_dir is None:
            raise ValueError("give a path or set run_dir to save checkpoints")
        self._check_weights()
        return _cpu_copy(self.state_dict())

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._write_state(pending, self.run_dir / "checkpoints" / LATEST)

    def _kept_text(self) -> str:
        if self.last_checkpoint is None:
            return "no checkpoint was written yet (set run_dir and checkpoint_every to keep one)"
        return f"the last good checkpoint is {self.last_checkpoint} (step {self.last_checkpoint_step})"

    def _resume_text(self, extra: str = "") -> str:
        """How to continue from the last checkpoint: the CLI command (and, in Python, Trainer.from_checkpoint)."""
        if self.last_checkpoint is None:
            return ""
        if self.resume_command is not None:  # set by the toonlab command
            return f"`{self.resume_command}{extra}`"
        run = self.run_dir if self.last_checkpoint.name == LATEST and self.run_dir is not None else self.last_checkpoint
        return f"`toonlab train {self.model.kind} --resume {shlex.quote(str(run))}{extra}` (in Python: Trainer.from_checkpoint)"

    def _diverged_advice(self) -> str:
        lr = self.model.hparams.get("lr")
        lower = ""
        if isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0:
            default = {f.name: f.default for f in dataclasses.fields(self.model.config)}.get("lr") \
                if dataclasses.is_dataclass(self.model.config) else None
            usual = default if isinstance(default, (int, float)) and 0 < default < lr / 10 else None
            lower = f" --lr {usual if usual is not None else float(lr) / 10:g}"
        resume = self._resume_text(lower)
        return (f"Try a lower learning rate (now {lr}), precision='fp32', or smaller loss weights"
                + (f", then resume with {resume}" if resume else ", then train again") + ".")

    def _train_one_step(self) -> None:
        """One step; its losses are read back now, or with the next ones (:attr:`read_losses_every`)."""
        self._in_step = True
        batch = self._next_batch()
        self.model.set_learning_rates(self.step)
        started = time.perf_counter()
        losses = self.model.train_step(batch, self.precision, self.step)
        # several processes: the combined batch's losses, and a stop asked of any process stops all after this step
        losses, self._stop_requested = average_losses(losses, self._stop_requested, self.world)
        if self.world.distributed:
            broadcast_from_main(self.model, parameters=False)  # BatchNorm statistics: rank 0's, as in DDP
        self.precision.update()
        lr = next(iter(self.model.optimizers.values())).param_groups[0]["lr"] if self.model.optimizers else 0.0
        self._unread.append((self.step, losses, float(lr), time.perf_counter() - started))
        self.step += 1
        self._in_step = False
        # read now when the next write needs this step checked (a pending checkpoint), when someone
        # watches every step (callbacks: the widgets) or is stopping, else every read_losses_every steps
        if len(self._unread) >= self.read_losses_every or self._pending is not None or self.callbacks \
                or self._stop_requested:
            self._read_losses()

    def _read_losses(self) -> None:
        """Read back the losses of the steps not read yet (one device sync), check them, add them to the history.

        A NaN, infinite or absurd loss raises :class:`TrainingDiverged` naming its step (``step`` is
        set back to it, as when losses are read every step).
        """
        unread, self._unread = self._unread, []
        if not unread:
            return
        floats = loss_floats({(i, k): v for i, (_, losses, _, _) in enumerate(unread) for k, v in losses.items()})
        checkpointed = self._pending["step"] if self._pending is not None else None
        limit = self.max_loss
        for i, (step, losses, lr, seconds) in enumerate(unread):
            values = {k: floats[(i, k)] for k in losses}
            bad = {k: v for k, v in values.items() if not math.isfinite(v) or (limit is not None and abs(v) > limit)}
            if bad:
                self.step = step
                names = ", ".join(f"{k}={v:.4g}" for k, v in bad.items())
                if limit is not None and all(math.isfinite(v) for v in bad.values()):
                    names += f" (a loss above {limit:g} counts as diverged: Trainer.max_loss)"
                self._pending = None
                dropped = f"the checkpoint of step {checkpointed} was not written (its weights gave these losses); " \
                    if checkpointed is not None else ""
                raise TrainingDiverged(
                    f"{self.model.kind} training diverged at step {step}: {names}. Training stopped; "
                    f"{dropped}{self._kept_text()}. {self._diverged_advice()}"
                )
            entry = {"step": step + 1, **values, "lr": lr, "seconds": seconds}
            self.history.append(entry)
            for callback in self.callbacks:
                callback(self, entry)

    @contextlib.contextmanager
    def _interrupt_guard(self):
        """Turn the first Ctrl-C or SIGTERM into 'stop after this step' so checkpoints are never half-updated.

        A second signal stops at once (the half-done step is then not saved).
        """
        self._stop_requested = False
        self._stop_signal = None
        self._in_step = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            if self._stop_requested:  # second signal: stop right now
                raise KeyboardInterrupt
            self._stop_requested = True
            self._stop_signal = signum

        previous = {}
        for signum in STOP_SIGNALS:
            try:
                previous[signum] = signal.signal(signum, request_stop)
            except (ValueError, OSError):
                pass
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    # -- samples ------------------------------------------------------------------------------
    @torch.no_grad()
    def translate_samples(self, direction: str = "AtoB") -> torch.Tensor:
        """The fixed sample photos translated by the current model (N, 3, H, W) in [-1, 1]."""
        if self.sample_images is None:
            raise ValueError("this trainer has no sample_images")
        # through the model's translator: multimodal models (MUNIT) draw the same random styles every
        # time, so grids of different steps compare
        return self.model.translator(direction, seed=self.seed)(self.sample_images).float()

    def save_samples(self) -> Path | None:
        """Save a two-row grid (photos above, translations below) to ``run_dir/samples/step_XXXXXXXX.png``."""
        if self.run_dir is None or self.sample_images is None or not self.writes_files:
            return None
        from torchvision.utils import save_image

        grid = torch.cat([self.sample_images.float(), self.translate_samples()], 0)
        path = self.run_dir / "samples" / f"step_{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image((grid.cpu() + 1) / 2, path, nrow=len(self.sample_images))
        return path

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self._read_losses()  # the history it holds is complete (and every step in it checked)
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "toonlab_version": __version__,
            "kind": self.model.kind,
            "config": self.model.config_dict(),
            "step": self.step,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "world_size": self.world.size,
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
                "steps_per_epoch": self.steps_per_epoch, "world_size": self.world.size,
                "batch_size_per_process": self.batch_size, "effective_batch_size": self.effective_batch_size,
                "lr": self.model.hparams.get("lr"), "fast": self.fast, "compiled": self.compiled,
                "fused_adam": self.fused_adam, "read_losses_every": self.read_losses_every,
                "precision_timings": self.precision_timings}
        if not self.writes_files:
            return self.run_dir / "config.json"
        return atomic_write_text(json.dumps(info, indent=2), self.run_dir / "config.json")

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint atomically (default ``run_dir/checkpoints/latest.pt``) and the history JSON."""
        if path is None:
            if self.run_dir is None:
                raise ValueError("give a path or set run_dir to save checkpoints")
            path = self.run_dir / "checkpoints" / LATEST
        self._check_weights()
        return self._write_state(self.state_dict(), Path(path))

    def _check_weights(self) -> None:
        """Raise :class:`TrainingDiverged` (writing nothing) when a weight is NaN or infinite."""
        if not all_finite(self.model.state_dict().values()):
            bad = non_finite_names(self.model.state_dict())
            self._pending = None
            raise TrainingDiverged(
                f"{self.model.kind} training diverged: after step {self.step} the weights are NaN or infinite "
                f"({', '.join(bad)}), so no checkpoint was written; {self._kept_text()}. {self._diverged_advice()}"
            )

    def _write_state(self, state: dict[str, Any], path: Path) -> Path:
        """Write ``state`` to ``path`` and ``run_dir/history.json`` together, then the kept ``step_N.pt`` copy.

        The checkpoint holds the history; ``history.json`` is a readable copy of it, taken from this
        same ``state``. Both are written to complete temporary files first and renamed only then,
        ``history.json`` first and the checkpoint last (the checkpoint commits the pair): a kill or an
        error while writing leaves both old, and a kill between the two renames (one system call
        apart, nothing done in between) leaves ``history.json`` one checkpoint ahead, never behind -- the
        checkpoint's history is always a prefix of the file's (the file never lacks a step the
        checkpoint holds). A resumed run writes both anew from the checkpoint at its next save. The
        optional ``step_N.pt`` copy comes after the pair; it holds its own history.
        """
        from toonlab.io import atomic_write_all  # local: the pair's order is this function's business

        if not self.writes_files:  # rank 0 writes this same state
            self.last_checkpoint, self.last_checkpoint_step = Path(path), int(state["step"])
            return Path(path)
        files = []
        if self.run_dir is not None:
            history = json.dumps(state["history"]).encode("utf-8")
            files.append((self.run_dir / "history.json", lambda handle: handle.write(history), False))
        files.append((Path(path), lambda handle: torch.save(state, handle), True))
        path = atomic_write_all(files)[-1]
        if self.keep_checkpoints and path.name == LATEST:
            atomic_save(state, path.parent / f"step_{state['step']:08d}.pt")
        self.last_checkpoint = path
        self.last_checkpoint_step = int(state["step"])
        return path

    def load_checkpoint(self, path: str | Path, strict_config: bool = True) -> None:
        """Continue from a checkpoint of the same model kind and config (hyper-parameters may differ)."""
        path = resolve_checkpoint_path(path)
        self._load_state(read_checkpoint(path), path, strict_config)

    def _load_state(self, state: dict[str, Any], path: Path, strict_config: bool = True) -> None:
        """:meth:`load_checkpoint` of the checkpoint ``state`` already read from ``path``."""
        check_resumable(state, path)
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
        load_model_weights(self.model, state, path)
        saved = dict(state["optimizers"])
        for old, new in self.model.renamed_optimizers.items():
            if old in saved and new not in saved:
                saved[new] = saved.pop(old)
        for name, opt in self.model.optimizers.items():
            if name not in saved:
                raise CheckpointError(f"{path} has no state for optimizer {name!r}")
            opt.load_state_dict(saved[name])
        self._set_optimizer_options()  # this run's choice, not the checkpoint's (fast <-> eager)
        self.model.load_extra_state(state["extra"])
        self.precision.load_state_dict(state["precision"])
        restore_rng_state(state["rng"])
        self.step = int(state["step"])
        self.seed = int(state["seed"])
        self._seed_this_process()
        renamed = self.model.renamed_losses
        self.history = [{renamed.get(k, k): v for k, v in entry.items()} for entry in state["history"]]
        self.last_checkpoint = path
        self.last_checkpoint_step = self.step
        self._batches = None

    def _choose_faster_precision(self, modes: tuple[str, ...]) -> None:
        """Time a few steps of a copy of the model in each of ``modes`` and train in the fastest.

        Why measure: bf16 autocast on a CPU pays for large convolutions (the paper CycleGAN step at
        64 px: 1.3x) but costs more than it saves on small ones (the ``fast`` preset: 9x slower). The
        copy trains, not the model, and the random state is restored: the run is unchanged but for speed.
        """
        rng = capture_rng_state()
        batch = next(iter(make_loader(self.dataset, self.batch_size, self.seed, 0)))
        batch = {k: v.to(self.device) for k, v in batch.items()}
        timings = {}
        try:
            for mode in modes:
                model, precision = copy.deepcopy(self.model), Precision(mode, self.device)
                seconds = []
                for i in range(1 + PRECISION_TIMING_STEPS):  # the first step warms up
                    started = time.perf_counter()
                    model.train_step(batch, precision, PRECISION_TIMING_STEP + i)
                    precision.update()
                    seconds.append(time.perf_counter() - started)
                timings[mode] = statistics.median(seconds[1:])
        finally:
            restore_rng_state(rng)
        fastest = min(modes, key=timings.get)
        if self.world.distributed:  # every process trains in rank 0's choice
            choice = torch.tensor([modes.index(fastest)])
            torch.distributed.broadcast(choice, src=0)
            fastest = modes[int(choice)]
        self.precision_timings = timings
        self.precision = Precision(fastest, self.device)

    def _set_optimizer_options(self) -> None:
        """This run's fused-Adam choice in every optimiser (:func:`set_fused_adam`)."""
        set_fused_adam(self.model, self.fused_adam)

    def _seed_this_process(self) -> None:
        """Ranks above 0 of a multi-process run draw their own random numbers (rank 0 keeps the run's)."""
        if not self.world.is_main:
            seed_everything(process_seed(self.seed, self.step, self.world.rank))

    @classmethod
    def from_checkpoint(cls, path: str | Path, dataset, state: dict[str, Any] | None = None,
                        **kwargs: Any) -> "Trainer":
        """A trainer whose model is rebuilt from the checkpoint's config, then resumed from it.

        ``path``: a checkpoint file or a run folder (its ``checkpoints/latest.pt``). ``dataset`` is
        wrapped for the model as :func:`make_trainer` does (CartoonGAN's edge-smoothed cartoons);
        ``state``: the checkpoint already read from ``path`` (the CLI checks it first; read once,
        not twice); ``kwargs`` go to :class:`Trainer` (``seed`` defaults to the checkpoint's).
        """
        path = resolve_checkpoint_path(path)
        if state is None:
            state = read_checkpoint(path)
            check_resumable(state, path)
        model = build_model(state["kind"], config=config_from_dict(state["kind"], state["config"]))
        kwargs.setdefault("seed", state["seed"])
        trainer = cls(model, prepare_dataset_for(model, dataset), **kwargs)
        trainer._load_state(state, path)
        return trainer


def set_fused_adam(model: TranslationModel, fused: bool) -> None:
    """Fused Adam (one kernel for all parameters) on or off in every optimiser of ``model``, and its step
    counters where the fused kernel wants them (a resumed eager run keeps them on the CPU)."""
    for optimizer in model.optimizers.values():
        for group in optimizer.param_groups:
            if "fused" in group:
                group["fused"] = fused or None
        if fused:
            for param, state in optimizer.state.items():
                if isinstance(state.get("step"), torch.Tensor):
                    state["step"] = state["step"].to(param.device, torch.float32)


def cpu_speed_notes(device: torch.device, environ: Mapping[str, str] | None = None) -> list[str]:
    """What in the environment slows CPU training down, as lines for the log (empty when nothing does).

    Why: ``OMP_WAIT_POLICY=PASSIVE`` puts OpenMP's threads to sleep between operations, and a training
    step is thousands of small ones: on the 2-core development machine it made the CycleGAN ``cpu``
    step 3x and the paper CycleGAN step 1.5x slower (docs/performance.md §4.3). It is right only where
    other processes share the cores.
    """
    environ = os.environ if environ is None else environ
    if device.type != "cpu" or environ.get("OMP_WAIT_POLICY", "").strip().upper() != "PASSIVE":
        return []
    return ["OMP_WAIT_POLICY=PASSIVE is set: OpenMP threads sleep between operations, which made CPU "
            "training 1.5-3x slower where it was measured; unset it unless other jobs share the cores"]


def fast_precision(device: torch.device) -> str:
    """The fast path's precision: bf16 where ``device`` computes it natively (a GPU with bf16, a CPU
    with AVX512-BF16 or AMX), fp16 on older GPUs, else fp32."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        try:
            native = torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # an older or CPU-feature-less build
            native = False
        return "bf16" if native else "fp32"
    return "fp32"


def _cpu_copy(obj: Any) -> Any:
    """A copy of a (nested) state whose tensors are detached CPU copies: later training steps cannot change it."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def sample_photos(dataset, n: int = 8) -> torch.Tensor:
    """The first ``n`` A images of a (test) dataset, un-augmented, as a fixed sample batch."""
    n = min(n, dataset.len_a)
    return torch.stack([dataset[(i, 0, 0)]["A"] for i in range(n)])


def make_trainer(kind: str, preset: str | None = None, dataset=None, test_dataset=None, seed: int = 0,
                 config=None, n_samples: int = 8, **trainer_kwargs: Any) -> Trainer:
    """Seed everything, build ``kind`` from ``preset`` (or ``config``), and wrap it in a :class:`Trainer`.

    One seed makes a run: ``seed`` draws the initial weights (it becomes ``config.seed``), the data
    order, the built-in data and the random styles; a ``config`` whose own ``seed`` differs is refused
    rather than silently giving weights of one seed and data of another. Without ``dataset`` the
    default data (:func:`toonlab.data.load_datasets`: the built-in synthetic portraits) at the
    preset's image size are used, with their test split as the fixed sample batch.
    """
    if config is None:
        config = build_config(kind, preset, seed=seed)
    elif getattr(config, "seed", seed) != seed:
        raise ValueError(f"config.seed is {config.seed} but the run's seed is {seed}: one seed draws the weights, the "
                         f"data order and the styles; build the config with seed={seed}, or pass seed={config.seed}")
    seed_everything(seed)
    model = build_model(kind, config=config)
    if dataset is None:
        dataset, default_test = load_datasets(size=int(model.config.image_size), seed=seed)
        test_dataset = test_dataset or default_test
    dataset = prepare_dataset_for(model, dataset)
    if test_dataset is not None and "sample_images" not in trainer_kwargs:
        trainer_kwargs["sample_images"] = sample_photos(test_dataset, n_samples)
    return Trainer(model, dataset, seed=seed, **trainer_kwargs)


def prepare_dataset_for(model: TranslationModel, dataset):
    """Let the model wrap the dataset if it needs more than photos and cartoons (CartoonGAN's edge twins)."""
    return model.wrap_dataset(dataset)
