"""What every toonlab model gives the one training loop (:mod:`toonlab.train`).

A model is an ``nn.Module`` holding its networks, its optimisers and its loss weights, with one
method that does a full training iteration (:meth:`TranslationModel.train_step`). The training loop
knows nothing else about it: it sets learning rates from :meth:`lr_factor`, moves batches to the
device, handles mixed precision through :class:`Precision`, and saves what :meth:`state_dict`, the optimisers and :meth:`extra_state` hold.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import Any, Callable, ClassVar

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16", "auto")


class Precision:
    """Mixed-precision policy for one run: autocast context plus (for fp16) a gradient scaler.

    ``fp32`` does nothing. ``bf16`` autocasts to bfloat16 (no scaler needed). ``fp16`` autocasts
    to float16 and scales the loss. ``auto`` picks bf16 on GPUs that support it, else fp16, and
    fp32 on the CPU. Models call :meth:`autocast` around forward passes and :meth:`step` instead of
    ``loss.backward(); optimizer.step()``; the training loop calls :meth:`update` once per iteration.

    :attr:`before_step`, when set, runs between the backward pass and the optimiser step: the
    training loop averages the gradients of a multi-process run there (:mod:`toonlab.distributed`),
    because every update of every model passes through :meth:`step`.
    """

    def __init__(self, mode: str = "fp32", device: torch.device | str = "cpu"):
        if mode not in PRECISIONS:
            raise ValueError(f"unknown precision {mode!r}; choose one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        if mode == "auto":
            if self.device.type == "cuda":
                mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                mode = "fp32"
        if mode == "fp16" and self.device.type != "cuda":
            raise ValueError("fp16 mixed precision needs a CUDA device; use bf16 or fp32 on the CPU")
        self.mode = mode
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
        self.scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None
        #: called with the optimiser after ``backward`` and before its step (gradient averaging across processes)
        self.before_step: Callable[[torch.optim.Optimizer], None] | None = None

    def autocast(self):
        """Context manager for forward passes (a no-op in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``backward`` + ``optimizer.step`` + ``zero_grad``, through the scaler when there is one."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.before_step is not None:
                self.before_step(optimizer)
            self.scaler.step(optimizer)
        else:
            loss.backward()
            if self.before_step is not None:
                self.before_step(optimizer)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def update(self) -> None:
        """Adjust the fp16 loss scale; call once per iteration after all optimiser steps."""
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict:
        return {"mode": self.mode, "scaler": self.scaler.state_dict() if self.scaler else {}}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


@torch.no_grad()
def eval_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` in eval mode without gradients, restoring ``net``'s training mode afterwards."""
    was_training = net.training
    net.eval()
    try:
        return net(x)
    finally:
        net.train(was_training)


def lowercase_domain_renames(*terms: str) -> dict[str, str]:
    """``{"recon_x_a": "recon_x_A", "recon_x_b": "recon_x_B", ...}`` for each term: a model's :attr:`renamed_losses`
    when its loss keys once ended in the lowercase domain names (MUNIT's and XGAN's did, after their references)."""
    return {f"{term}_{domain}": f"{term}_{domain.upper()}" for term in terms for domain in "ab"}


def loss_floats(values: Mapping[str, torch.Tensor | float | None]) -> dict[str, float]:
    """Loss tensors -> Python floats with one device sync (what :meth:`TranslationModel.train_step` returns).

    One sync, not one per term: on a GPU each ``float(tensor)`` waits for the device, and a step of
    small kernels is bound by such waits. ``None`` (a term switched off) and plain numbers pass as floats.
    """
    tensors = {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}
    numbers = dict(zip(tensors, torch.stack([v.detach().float().reshape(()) for v in tensors.values()]).cpu().tolist())) \
        if tensors else {}
    return {k: numbers[k] if k in numbers else (0.0 if v is None else float(v)) for k, v in values.items()}


class TranslationModel(nn.Module):
    """Base class of CycleGAN, CartoonGAN, MUNIT and XGAN in toonlab.

    Subclasses set :attr:`kind`, build their networks and ``self.optimizers`` (a dict name ->
    optimiser) in ``__init__`` from a dataclass ``config``, and implement :meth:`train_step` and
    :meth:`translate`. :attr:`hparam_names` lists the config fields a user may change between steps
    (the widgets' sliders): they are read from ``self.config`` at every step.
    """

    kind: ClassVar[str] = "model"
    #: config fields that may change during training (learning rate, loss weights ...)
    hparam_names: ClassVar[tuple[str, ...]] = ("lr",)
    #: True for models that draw a style for every translation (MUNIT): see :meth:`translations`
    multimodal: ClassVar[bool] = False
    #: whether the NHWC memory format speeds this model up on CUDA (the fast path uses it then):
    #: measured for CycleGAN and CartoonGAN; MUNIT's layer norm and AdaIN convert layouts and lose
    channels_last_helps: ClassVar[bool] = False
    #: the modules that translate (what a converged model ships, :mod:`toonlab.pretrained`); the rest only trains them
    generator_names: ClassVar[tuple[str, ...]] = ()
    #: optimiser names of older toonlab checkpoints -> today's (every model names them "G" and "D")
    renamed_optimizers: ClassVar[dict[str, str]] = {}
    #: loss keys in the histories of older toonlab checkpoints -> today's (domain suffixes are "_A"/"_B" everywhere)
    renamed_losses: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        #: steps in one pass over the dataset: the loop sets it from the dataset before training, and it is
        #: the one way it reaches the model (the epoch-based schedules and CartoonGAN's phases read it)
        self.steps_per_epoch: int = 1
        #: set by the training loop's fast path on CUDA: :meth:`loss_readout` then leaves the losses on the device
        self.defer_loss_readback: bool = False

    # -- what the training loop calls -------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], precision: Precision, step: int) -> dict[str, float]:
        """One full iteration on ``batch`` (``{"A": photos, "B": cartoons}``, on the device).

        Returns the loss terms as Python floats (they go into the history and the progress bar).
        """
        raise NotImplementedError

    def loss_readout(self, values: Mapping[str, torch.Tensor | float | None]) -> dict[str, Any]:
        """What :meth:`train_step` returns: :func:`loss_floats` (one device sync per step).

        With :attr:`defer_loss_readback` (the fast path on CUDA) the terms stay detached tensors on
        the device and the loop reads the losses of several steps back at once: a step then never
        waits for the GPU to finish (docs/performance.md §4.3). ``None`` (a term switched off) is 0.
        """
        if not self.defer_loss_readback:
            return loss_floats(values)
        return {k: v.detach().float() if isinstance(v, torch.Tensor) else (0.0 if v is None else float(v))
                for k, v in values.items()}

    def optimizer_step(self, optimizer: str, losses_of: Callable[..., dict[str, torch.Tensor]], total: str,
                       precision: Precision, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Zero ``optimizers[optimizer]``, compute ``losses_of(*inputs)`` under autocast, step on its ``total`` term.

        The update every model's :meth:`train_step` is made of (MUNIT's and XGAN's discriminator,
        generator and warm-up updates); returns all the terms, still tensors.
        """
        self.optimizers[optimizer].zero_grad(set_to_none=True)
        with precision.autocast():
            losses = losses_of(*inputs)
        precision.step(losses[total], self.optimizers[optimizer])
        return losses

    def lr_factor(self, step: int) -> float:
        """Multiplier of the base learning rate at ``step`` (0-based; epochs of :attr:`steps_per_epoch`). Default: constant."""
        return 1.0

    def base_lr(self, optimizer_name: str, step: int = 0) -> float:
        """Base learning rate of one optimiser at ``step``, before :meth:`lr_factor`; default ``config.lr``.

        The one learning-rate hook: a model whose optimisers or phases learn at different rates
        overrides it (CycleGAN's ``d_lr_ratio``, CartoonGAN's initialisation phase at ``init_lr``).
        """
        return float(self.config.lr)

    def set_learning_rates(self, step: int) -> None:
        """Write ``base_lr * lr_factor`` into every optimiser (called by the loop before each step)."""
        factor = self.lr_factor(step)
        for name, opt in self.optimizers.items():
            lr = self.base_lr(name, step) * factor
            for group in opt.param_groups:
                group["lr"] = lr

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        """Translate a batch in [-1, 1]: ``AtoB`` photo -> cartoon, ``BtoA`` cartoon -> photo."""
        raise NotImplementedError

    def translations(self, x: torch.Tensor, direction: str = "AtoB", num_styles: int = 1,
                     reference: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
        """What ``toonlab translate`` writes for a batch ``x``: ``(num_styles * N, C, H, W)``.

        Default (unimodal models): :meth:`translate`; styles are refused. Multimodal models
        (:attr:`multimodal`, MUNIT) draw ``num_styles`` seeded styles, or take the style of ``reference``.
        """
        if num_styles != 1 or reference is not None:
            raise ValueError(f"{self.kind} draws no styles: --num-styles and --style-image are for multimodal "
                             "models (MUNIT)")
        return self.translate(x, direction)

    def translator(self, direction: str = "AtoB", seed: int = 0):
        """A function ``photos -> cartoons`` for evaluation (:mod:`toonlab.metrics`): deterministic for ``seed``.

        Default: :meth:`translate` in ``direction``. Multimodal models (MUNIT) override it to draw
        their random styles from a generator seeded once, so the same model always scores the same.
        """
        return lambda x: self.translate(x, direction)

    # -- hyper-parameters ---------------------------------------------------------------------
    @property
    def hparams(self) -> dict[str, Any]:
        """Current values of the tunable hyper-parameters."""
        return {name: getattr(self.config, name) for name in self.hparam_names}

    def set_hparams(self, **values: Any) -> None:
        """Change tunable hyper-parameters; unknown names raise a ValueError listing the valid ones.

        Values are checked first (numbers finite, then the config's own ``validate``: no negative
        learning rate or loss weight); on any error nothing is changed.
        """
        from toonlab.config import coerce_field

        checked = {}
        for name, value in values.items():
            if name not in self.hparam_names:
                raise ValueError(
                    f"{name!r} is not a tunable hyper-parameter of {self.kind}; "
                    f"choose from {', '.join(self.hparam_names)}"
                )
            current = getattr(self.config, name)
            if dataclasses.is_dataclass(self.config):  # by the field's declared type
                checked[name] = coerce_field(type(self.config), name, value, self.kind)
            else:
                checked[name] = type(current)(value) if current is not None and value is not None else value
        previous = {name: getattr(self.config, name) for name in checked}
        for name, value in checked.items():
            setattr(self.config, name, value)
        validate = getattr(self.config, "validate", None)
        if callable(validate):
            try:
                validate()
            except (ValueError, TypeError) as err:
                for name, value in previous.items():
                    setattr(self.config, name, value)
                raise ValueError(f"{self.kind} hyper-parameter refused: {err}") from None

    # -- checkpoint extras --------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Training state outside parameters and optimisers (image pools ...). Tensors, lists, numbers only."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    @property
    def batch_size(self) -> int:
        """Images per domain in one training step (``config.batch_size``): the loop's loader uses it."""
        return int(self.config.batch_size)

    def total_steps(self) -> int:
        """Length of the preset's full run in steps, for epochs of :attr:`steps_per_epoch` steps: what
        ``toonlab train`` runs without ``--steps``. Every toonlab config gives it (``config.total_steps``)."""
        return int(self.config.total_steps(self.steps_per_epoch))

    def wrap_dataset(self, dataset):
        """The dataset the loop should draw from; default ``dataset`` itself (CartoonGAN adds edge twins)."""
        return dataset

    def unwrap_dataset(self, dataset):
        """What :meth:`wrap_dataset` was given, from what it returned (the images a panel scores); default ``dataset``."""
        return dataset

    def notes(self) -> list[str]:
        """Lines a user should read when training starts (a choice made for them, a deviation); none by default."""
        return []

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def compiled_networks(self) -> list[nn.Module]:
        """The modules the fast path compiles (:meth:`compile_networks`): by default every child network with
        parameters. A model whose networks are called through methods other than ``forward`` (MUNIT's
        ``encode``/``decode``) names the parts that are called instead."""
        return [m for m in self.children() if next(m.parameters(), None) is not None]

    def compile_networks(self, **options: Any) -> None:
        """``torch.compile`` each of :meth:`compiled_networks` in place (``nn.Module.compile``).

        In place, so the state-dict keys do not change: a checkpoint of a compiled run resumes in
        eager mode and the other way round (docs/performance.md §4.3).
        """
        for module in self.compiled_networks():
            module.compile(**options)

    def to_memory_format(self, memory_format: torch.memory_format) -> None:
        """Move parameters to ``memory_format`` (``torch.channels_last`` on CUDA)."""
        self.to(memory_format=memory_format)
