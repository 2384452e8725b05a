"""Unpaired batches that are a pure function of the step number, so training resumes exactly.

An unpaired dataset (synthetic portraits or image folders) answers ``dataset[(i_a, i_b, seed)]``
with ``{"A": photo_i_a, "B": cartoon_i_b}``, using ``seed`` for its random augmentation. The
:class:`UnpairedSampler` decides those keys from the run seed and the position in the stream alone,
the way the official CycleGAN loader does: an epoch is ``max(|A|, |B|)`` samples, A is read in a
shuffled order, B at random (docs/reference.md §1.3). Starting the sampler at step ``k`` gives the
same batches a run that never stopped would see, with any number of loader workers.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


class UnpairedDataset(Protocol):
    """What :func:`make_loader` needs from a dataset."""

    len_a: int
    len_b: int

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, torch.Tensor]: ...


def epoch_length(dataset: UnpairedDataset) -> int:
    """Samples per epoch: ``max(|A|, |B|)``, as in the official unaligned dataset."""
    return max(int(dataset.len_a), int(dataset.len_b))


def steps_per_epoch(dataset: UnpairedDataset, batch_size: int) -> int:
    """Optimisation steps per epoch (incomplete last batches are dropped; at least 1)."""
    return max(1, epoch_length(dataset) // batch_size)


class UnpairedSampler(Sampler):
    """Infinite stream of keys ``(i_a, i_b, augmentation_seed)`` starting at ``start_step``.

    In a run of ``world_size`` processes a step draws ``batch_size * world_size`` samples of the one
    stream and process ``rank`` takes its own consecutive ``batch_size`` of them: together the
    processes see exactly the batches of a one-process run at the combined batch size.
    """

    def __init__(self, len_a: int, len_b: int, batch_size: int, seed: int = 0, start_step: int = 0,
                 rank: int = 0, world_size: int = 1):
        if len_a < 1 or len_b < 1:
            raise ValueError(f"both domains need images (got {len_a} in A and {len_b} in B)")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of world size {world_size} is not a valid process")
        self.len_a, self.len_b = int(len_a), int(len_b)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.rank, self.world_size = int(rank), int(world_size)
        self.step_samples = self.batch_size * self.world_size
        self.per_epoch = steps_per_epoch(self, self.step_samples) * self.step_samples
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def key(self, sample: int) -> tuple[int, int, int]:
        """Key of the ``sample``-th sample of the stream (0-based, counted across epochs)."""
        epoch, pos = divmod(sample, self.per_epoch)
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.seed, epoch, 0])
            self._perm = rng.permutation(max(self.len_a, self.len_b))
            self._perm_epoch = epoch
        i_a = int(self._perm[pos]) % self.len_a
        rng = np.random.default_rng([self.seed, sample, 1])
        i_b = int(rng.integers(self.len_b))
        aug_seed = int(rng.integers(2**31 - 1))
        return i_a, i_b, aug_seed

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        step = self.start_step
        while True:
            first = step * self.step_samples + self.rank * self.batch_size
            for sample in range(first, first + self.batch_size):
                yield self.key(sample)
            step += 1

    def __len__(self) -> int:  # DataLoader asks; the stream is endless
        return 2**62


def make_loader(
    dataset: UnpairedDataset,
    batch_size: int = 1,
    seed: int = 0,
    start_step: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Endless DataLoader of ``{"A", "B"}`` batches; batch ``k`` depends only on ``seed`` and ``k``.

    ``rank``/``world_size``: this process's slice of each step in a multi-process run (:class:`UnpairedSampler`).
    """
    sampler = UnpairedSampler(dataset.len_a, dataset.len_b, batch_size, seed, start_step, rank, world_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=num_workers > 0,
        # its own generator: creating an iterator must not consume the global torch RNG,
        # or a resumed run would draw different random numbers than an uninterrupted one
        generator=torch.Generator().manual_seed(int(seed)),
    )


def augmentation_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for one sample's random crop/flip."""
    return torch.Generator().manual_seed(int(seed))


class UnpairedImages(torch.utils.data.Dataset):
    """Base class of the unpaired datasets (synthetic portraits, image folders).

    Subclasses set ``len_a``/``len_b`` and implement :meth:`image_a`, :meth:`image_b` (raw RGB PIL
    images, before augmentation) and :meth:`transform` (deterministic for a given ``seed``).
    ``dataset[(i_a, i_b, seed)]`` augments A with ``seed`` and B with ``seed + 1``, so a wrapper can
    apply B's exact augmentation to a derived image (CartoonGAN's edge-smoothed twin).
    """

    len_a: int = 0
    len_b: int = 0

    def image_a(self, index: int):
        raise NotImplementedError

    def image_b(self, index: int):
        raise NotImplementedError

    def source_id_b(self, index: int) -> str | None:
        """Stable identity of B image ``index`` for caches (path + size + mtime), or None if not cacheable."""
        return None

    def transform(self, image, seed: int) -> torch.Tensor:
        raise NotImplementedError

    def __len__(self) -> int:
        return epoch_length(self)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        i_a, i_b, seed = key
        return {"A": self.transform(self.image_a(i_a), seed), "B": self.transform(self.image_b(i_b), seed + 1)}
