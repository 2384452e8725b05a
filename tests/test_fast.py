"""The fast path (Trainer(fast=True), `toonlab train --fast`) is the same training, only faster."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from toonlab.data.synthetic import SyntheticPortraits
from toonlab.models import build_model
from toonlab.train import Trainer, fast_precision

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
def test_fast_on_the_cpu_is_bf16_autocast_and_trains_like_fp32(tmp_path):
    """On a CPU with native bf16 the fast path is bf16 autocast only: losses within 3 % of fp32 for the first steps."""
    fast = cyclegan_trainer(tmp_path, fast=True)
    assert fast.precision.mode == "bf16" and not fast.compiled and not fast.fused_adam
    eager = cyclegan_trainer()
    assert eager.precision.mode == "fp32"
    fast.fit(STEPS)
    eager.fit(STEPS)
    # bf16 gradients are exact to ~3 digits, so Adam's sign-like early steps differ more: weights within
    # 3 learning rates a step (measured 1.3e-3 after 3 steps), losses within 3 % (measured 0.4 %)
    assert_same_training(fast, eager, loss_rel=3e-2, weight_atol=3 * STEPS * LR)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["fast"] is True and config["precision"] == "bf16" and config["compiled"] is False


def test_an_explicit_precision_wins_over_the_fast_default():
    trainer = cyclegan_trainer(fast=True, precision="fp32")
    assert trainer.precision.mode == "fp32"
    assert fast_precision(torch.device("meta")) == "fp32"


def test_cli_fast_flag_reaches_the_trainer(tmp_path, capsys):
    from toonlab.cli import main

    assert main(["train", "cyclegan", "--preset", "fast", "--fast", "--steps", "1", "--device", "cpu", "--quiet",
                 "--no-eval", "--run-dir", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["fast"] is True and config["precision"] == fast_precision(torch.device("cpu"))
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
