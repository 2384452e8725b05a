"""toonlab.checkpoint owns the checkpoint format; train and hub re-export its names; the import boundaries hold."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import toonlab.checkpoint as checkpoint
import toonlab.hub as hub
import toonlab.train as train

MOVED_FROM_TRAIN = (
    "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "LATEST", "CheckpointError", "all_finite", "atomic_save",
    "atomic_write_text", "capture_rng_state", "check_checkpoint_weights", "config_differences", "config_from_dict",
    "load_trained_model", "non_finite_names", "read_checkpoint", "read_state_file", "resolve_checkpoint_path",
    "restore_rng_state",
)


@pytest.mark.parametrize("name", MOVED_FROM_TRAIN)
def test_train_re_exports_the_checkpoint_names(name):
    assert getattr(train, name) is getattr(checkpoint, name)


def test_hub_re_exports_the_checkpoint_error_and_reader():
    assert hub.CheckpointError is checkpoint.CheckpointError
    assert hub.read_state_file is checkpoint.read_state_file


def test_image_pool_is_a_shared_block_still_importable_from_cyclegan():
    from toonlab.models import cartoongan, cyclegan
    from toonlab.nn import ImagePool

    assert cyclegan.ImagePool is ImagePool and cartoongan.ImagePool is ImagePool


def _modules_loaded_by(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('toonlab')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_boundaries():
    """hub imports nothing from train; train no dataset module; no model another model or the loop."""
    hub_loads = _modules_loaded_by("toonlab.hub")
    assert "toonlab.train" not in hub_loads
    train_loads = _modules_loaded_by("toonlab.train")
    assert not {m for m in train_loads if m.startswith("toonlab.data.")} - {"toonlab.data.loader"}
    kinds = ("cyclegan", "cartoongan", "munit", "animegan2")
    for kind in kinds:
        loaded = _modules_loaded_by(f"toonlab.models.{kind}")
        others = {f"toonlab.models.{k}" for k in kinds if k != kind} | {"toonlab.train"}
        assert not loaded & others, (kind, loaded & others)


def test_make_trainer_default_data_comes_from_toonlab_data():
    from toonlab.data import load_datasets
    from toonlab.data.synthetic import SyntheticPortraits

    train_set, test_set = load_datasets(size=32, seed=3)
    assert isinstance(train_set, SyntheticPortraits) and train_set.split == "train" and train_set.seed == 3
    assert isinstance(test_set, SyntheticPortraits) and test_set.split == "test" and test_set.size == 32
    trainer = train.make_trainer("cyclegan", "fast", seed=3, progress=False, n_samples=2)
    assert isinstance(trainer.dataset, SyntheticPortraits) and trainer.dataset.seed == 3
    assert trainer.model.config.seed == 3  # one seed: the weights too
    other = train.make_trainer("cyclegan", "fast", seed=4, progress=False, n_samples=2)
    assert not torch.equal(other.model.G_A.model[1].weight, trainer.model.G_A.model[1].weight)
    from toonlab.models import build_config

    with pytest.raises(ValueError, match="config.seed is 0 but the run's seed is 3"):
        train.make_trainer("cyclegan", config=build_config("cyclegan", "fast"), seed=3)
    assert torch.equal(trainer.sample_images, train.sample_photos(
        SyntheticPortraits(size=trainer.dataset.size, split="test", seed=3), 2))


def test_from_checkpoint_wraps_the_dataset_for_the_model(tmp_path):
    """CartoonGAN resumed from a checkpoint with plain photos/cartoons gets its edge-smoothed twins."""
    from toonlab.data.edges import EdgePromotedDataset

    first = train.make_trainer("cartoongan", "fast", progress=False, n_samples=1, run_dir=tmp_path)
    first.save_checkpoint()
    plain = first.dataset.dataset
    assert not isinstance(plain, EdgePromotedDataset)
    resumed = train.Trainer.from_checkpoint(tmp_path, plain, progress=False)
    assert isinstance(resumed.dataset, EdgePromotedDataset)
    assert resumed.last_checkpoint == tmp_path / "checkpoints" / checkpoint.LATEST
