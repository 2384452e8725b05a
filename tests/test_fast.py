"""The fast path (Trainer(fast=True), `toonlab train --fast`) is the same training, only faster."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from toonlab.data.synthetic import SyntheticPortraits
from toonlab.models import build_model
from toonlab.train import Trainer, cpu_speed_notes, fast_precision

STEPS = 3
needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="torch.compile on the CPU needs a C++ compiler")
bf16_cpu = pytest.mark.skipif(fast_precision(torch.device("cpu")) != "bf16",
                              reason="this CPU has no native bf16 (AVX512-BF16 / AMX)")


def cyclegan_trainer(tmp_path=None, **kwargs) -> Trainer:
    torch.manual_seed(0)
    model = build_model("cyclegan", "fast")
    dataset = SyntheticPortraits(size=int(model.config.image_size), length=16)
    return Trainer(model, dataset, device="cpu", seed=0, progress=False, run_dir=tmp_path, **kwargs)


LR = 2e-4  # the fast preset's


def assert_same_training(fast: Trainer, eager: Trainer, loss_rel: float, weight_atol: float) -> None:
    """Losses within ``loss_rel``; weights within ``weight_atol``, twice that for biases.

    Adam's first steps move every weight by about one learning rate whatever its gradient's size,
    so a rounding difference in a near-zero gradient can move a weight by up to ``lr`` a step; a
    convolution bias right before an InstanceNorm has a true gradient of zero and follows rounding
    noise alone (it changes no output).
    """
    for a, b in zip(fast.history, eager.history, strict=True):
        for key in b:
            if key != "seconds":
                assert a[key] == pytest.approx(b[key], rel=loss_rel, abs=1e-5), (a["step"], key)
    eager_state = eager.model.state_dict()
    for name, value in fast.model.state_dict().items():
        atol = 2 * weight_atol if name.endswith("bias") else weight_atol
        torch.testing.assert_close(value, eager_state[name], rtol=0, atol=atol, msg=name)


def network_gradients(net: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    net.zero_grad(set_to_none=True)
    net(x).square().mean().backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    return grads


@pytest.fixture(scope="module")
def compiled_and_eager(tmp_path_factory):
    """Eager fp32 and compiled fp32 + fused Adam trainers from the same initial weights, trained STEPS steps;
    before training, the gradients of the compiled and eager generator and discriminator on one batch."""
    eager = cyclegan_trainer()
    fast = cyclegan_trainer(tmp_path_factory.mktemp("compiled"), precision="fp32", compile=True, fused_adam=True)
    batch = eager._next_batch()["A"]  # the training shape, so the compiled graphs are those training reuses
    gradients = {name: (network_gradients(getattr(fast.model, name), batch),
                        network_gradients(getattr(eager.model, name), batch)) for name in ("G_A", "D_A")}
    eager._batches = None
    eager.fit(STEPS)
    fast.fit(STEPS)
    return fast, eager, gradients


@needs_compiler
def test_compiled_networks_compute_the_eager_gradients(compiled_and_eager):
    _, _, gradients = compiled_and_eager
    for net, (compiled, eager) in gradients.items():
        # rounding of a different summation order: 1e-5 of the network's largest gradient (the biases
        # before an InstanceNorm have a true gradient of zero, their values are that rounding alone)
        atol = 1e-5 * max(grad.abs().max().item() for grad in eager.values())
        for name, grad in eager.items():
            torch.testing.assert_close(compiled[name], grad, rtol=1e-4, atol=atol, msg=f"{net}.{name}")


@needs_compiler
def test_compiled_networks_and_fused_adam_train_as_eager_fp32(compiled_and_eager):
    """torch.compile + fused Adam in fp32 against eager fp32 from the same state: losses to 1e-3, weights to Adam's bound."""
    fast, eager, _ = compiled_and_eager
    assert fast.compiled and fast.fused_adam and not eager.compiled
    assert all(g["fused"] for opt in fast.model.optimizers.values() for g in opt.param_groups)
    assert_same_training(fast, eager, loss_rel=1e-3, weight_atol=STEPS * LR)
    assert fast.model.G_A._compiled_call_impl is not None and eager.model.G_A._compiled_call_impl is None


@needs_compiler
def test_a_compiled_checkpoint_resumes_in_eager_mode_and_back(compiled_and_eager, tmp_path):
    fast, _, _ = compiled_and_eager
    dataset = fast.dataset
    resumed = Trainer.from_checkpoint(fast.run_dir, dataset, device="cpu", progress=False, run_dir=tmp_path / "eager")
    assert resumed.step == STEPS and not resumed.compiled and not resumed.fused_adam
    assert not any(g["fused"] for opt in resumed.model.optimizers.values() for g in opt.param_groups)
    resumed.fit(1)
    again = Trainer.from_checkpoint(tmp_path / "eager", dataset, device="cpu", progress=False, fast=True,
                                    fused_adam=True, run_dir=tmp_path / "fast")
    assert again.step == STEPS + 1 and again.fused_adam
    assert all(g["fused"] for opt in again.model.optimizers.values() for g in opt.param_groups)
    again.fit(1)
    assert again.step == STEPS + 2 and all(torch.isfinite(p).all() for p in again.model.parameters())


@bf16_cpu
def test_bf16_autocast_on_the_cpu_trains_like_fp32(tmp_path):
    """What the fast path runs on a CPU where bf16 is faster: losses within 3 % of fp32 for the first steps."""
    fast = cyclegan_trainer(tmp_path, fast=True, precision="bf16")
    assert fast.precision.mode == "bf16" and not fast.compiled and fast.fused_adam  # fused Adam on a CPU too
    assert all(g["fused"] for opt in fast.model.optimizers.values() for g in opt.param_groups)
    eager = cyclegan_trainer()
    assert eager.precision.mode == "fp32"
    fast.fit(STEPS)
    eager.fit(STEPS)
    # bf16 gradients are exact to ~3 digits, so Adam's sign-like early steps differ more: weights within
    # 3 learning rates a step (measured 1.3e-3 after 3 steps), losses within 3 % (measured 0.4 %)
    assert_same_training(fast, eager, loss_rel=3e-2, weight_atol=3 * STEPS * LR)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["fast"] is True and config["precision"] == "bf16" and config["compiled"] is False
    assert config["fused_adam"] is True


@bf16_cpu
def test_fast_on_the_cpu_measures_which_precision_is_faster_and_changes_nothing_else(tmp_path):
    torch.manual_seed(0)
    fast = cyclegan_trainer(tmp_path, fast=True)
    after_fast = torch.rand(3)
    plain = cyclegan_trainer()
    after_plain = torch.rand(3)
    timings = fast.precision_timings
    assert set(timings) == {"fp32", "bf16"} and all(t > 0 for t in timings.values())
    assert fast.precision.mode == min(timings, key=timings.get)
    assert torch.equal(after_fast, after_plain)  # the timing steps leave the random state as it was
    for name, value in plain.model.state_dict().items():  # they trained a copy
        assert torch.equal(fast.model.state_dict()[name], value), name
    assert json.loads((tmp_path / "config.json").read_text())["precision_timings"] == timings


def test_an_explicit_precision_wins_over_the_fast_default():
    trainer = cyclegan_trainer(fast=True, precision="fp32")
    assert trainer.precision.mode == "fp32" and trainer.precision_timings is None
    assert not trainer.channels_last  # channels_last only on CUDA, and only where it helps
    assert cyclegan_trainer(fast=True, precision="fp32", channels_last=True).channels_last
    assert fast_precision(torch.device("meta")) == "fp32"


def test_a_passive_openmp_wait_policy_is_named_as_what_slows_cpu_training():
    cpu = torch.device("cpu")
    (note,) = cpu_speed_notes(cpu, {"OMP_WAIT_POLICY": "passive"})
    assert "OMP_WAIT_POLICY=PASSIVE" in note and "unset it" in note
    assert cpu_speed_notes(cpu, {"OMP_WAIT_POLICY": "ACTIVE"}) == [] and cpu_speed_notes(cpu, {}) == []
    assert cpu_speed_notes(torch.device("meta"), {"OMP_WAIT_POLICY": "PASSIVE"}) == []  # only CPU runs


def test_cli_fast_flag_reaches_the_trainer(tmp_path, capsys):
    """--fast on a CPU: the precision its timing steps found faster (fp32 where bf16 is not native)."""
    from toonlab.cli import main

    assert main(["train", "cyclegan", "--preset", "fast", "--fast", "--steps", "1", "--device", "cpu", "--quiet",
                 "--no-eval", "--run-dir", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["fast"] is True
    timings = config["precision_timings"]
    assert config["precision"] == (min(timings, key=timings.get) if timings else fast_precision(torch.device("cpu")))
    assert f"({config['precision']})" in capsys.readouterr().out


def test_cli_fast_caches_an_image_folder_and_resumes_without_it(tmp_path, monkeypatch):
    import toonlab.data
    from toonlab.cli import main

    caching, load = [], toonlab.data.load_datasets

    def recording_load(*args, cache=False, **kwargs):
        caching.append(cache)
        train, test = load(*args, cache=cache, **kwargs)
        assert (train.cache is not None) == cache
        return train, test

    monkeypatch.setattr(toonlab.data, "load_datasets", recording_load)
    data = tmp_path / "data"
    assert main(["export-synthetic", str(data), "--size", "32", "--train", "4", "--test", "2", "--quiet"]) == 0
    run = tmp_path / "run"
    assert main(["train", "cyclegan", "--preset", "fast", "--fast", "--precision", "fp32", "--data", str(data),
                 "--steps", "2", "--device", "cpu", "--quiet", "--no-eval", "--run-dir", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["fast"] is True
    assert main(["train", "cyclegan", "--resume", str(run), "--data", str(data), "--steps", "1", "--device", "cpu",
                 "--quiet", "--no-eval"]) == 0
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 3 and json.loads((run / "config.json").read_text())["fast"] is False
    assert caching == [True, False]


def test_losses_read_back_in_bulk_give_the_same_history(tmp_path):
    """read_losses_every=4 (the fast path's CUDA default is 10): train_step returns device tensors, the loop reads
    them four steps at a time, and history, checkpoint and weights are those of reading every step."""
    every = cyclegan_trainer(tmp_path / "every", checkpoint_every=3)
    bulk = cyclegan_trainer(tmp_path / "bulk", checkpoint_every=3, read_losses_every=4)
    assert bulk.model.defer_loss_readback and not every.model.defer_loss_readback
    bulk.fit(1)
    assert len(bulk.history) == 1  # the end of fit reads what is left
    bulk._train_one_step()
    assert len(bulk.history) == 1 and isinstance(bulk._unread[0][1]["G_total"], torch.Tensor)
    bulk.fit(5)
    every.fit(7)
    assert [h["step"] for h in bulk.history] == list(range(1, 8)) and not bulk._unread
    for a, b in zip(bulk.history, every.history, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    saved = torch.load(tmp_path / "bulk" / "checkpoints" / "latest.pt", weights_only=True)
    assert saved["step"] == 7 and len(saved["history"]) == 7
    for name, value in every.model.state_dict().items():
        assert torch.equal(bulk.model.state_dict()[name], value), name
    assert json.loads((tmp_path / "bulk" / "config.json").read_text())["read_losses_every"] == 4


def test_a_nan_read_back_late_names_its_own_step_and_keeps_the_checked_checkpoint(tmp_path):
    from toonlab.train import TrainingDiverged

    trainer = cyclegan_trainer(tmp_path, checkpoint_every=2, read_losses_every=5)
    real_step = trainer.model.train_step

    def poisoned(batch, precision, step):
        losses = real_step(batch, precision, step)
        return {**losses, "G_total": losses["G_total"] * float("nan")} if step >= 3 else losses

    trainer.model.train_step = poisoned
    with pytest.raises(TrainingDiverged, match="diverged at step 3: G_total=nan") as caught:
        trainer.fit(8)
    # found when the step-4 checkpoint read the losses back: that checkpoint is not written, step 2's is kept
    assert "the last good checkpoint is" in str(caught.value) and "(step 2)" in str(caught.value)
    assert trainer.step == 3 and [h["step"] for h in trainer.history] == [1, 2, 3]
    kept = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)
    assert kept["step"] == 2 and len(kept["history"]) == 2
