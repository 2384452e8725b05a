"""Data for toonlab: built-in synthetic portraits, image folders, edge smoothing, downloads.

Importing this package does no work; :func:`load_datasets` imports the dataset module it needs.
"""

from __future__ import annotations

#: what :func:`load_datasets` (``toonlab train --data``, :func:`toonlab.train.make_trainer`) reads by default
DEFAULT_DATA = "synthetic"


def load_datasets(data: str = DEFAULT_DATA, size: int = 64, seed: int = 0, cache: bool = False):
    """The training and test datasets of ``data``, as ``(train, test)``.

    ``data``: ``"synthetic"`` for the built-in synthetic portraits at ``size`` px (identities drawn
    from ``seed``; the test split pairs each photo with its true cartoon), or a folder in the
    CycleGAN layout ``trainA trainB [testA testB]`` read at ``size`` px (``test`` is None without
    the test folders). ``cache``: keep a folder's decoded, resized images in memory
    (:class:`~toonlab.data.folders.UnpairedImageFolder`); the synthetic portraits are drawn anew.
    """
    if data == "synthetic":
        from toonlab.data.synthetic import SyntheticPortraits

        return SyntheticPortraits(size=size, split="train", seed=seed), SyntheticPortraits(size=size, split="test", seed=seed)
    from toonlab.data.folders import UnpairedImageFolder

    train = UnpairedImageFolder(data, size=size, split="train", cache=cache)
    try:
        test = UnpairedImageFolder(data, size=size, split="test")
    except ValueError:
        test = None
    return train, test
