"""CartoonGAN: network layouts and sizes, losses by value, the two training phases, schedule, resume."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from toonlab.data.edges import EdgePromotedDataset
from toonlab.data.loader import UnpairedImages, augmentation_generator
from toonlab.losses import GANLoss
from toonlab.models import build_model
from toonlab.models.base import Precision
from toonlab.models.cartoongan import (
    Config,
    Discriminator,
    Generator,
    Model,
    content_loss,
    discriminator_losses,
)
from toonlab.nn import ResnetBlock, count_parameters

FP32 = Precision("fp32")


class TinyFeatures(nn.Module):
    """A fixed stand-in for VGG: 1x1 conv to 4 channels, then a 2x2 average pool."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(12.0).view(4, 3, 1, 1) / 10 - 0.5)
            self.conv.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))

    def forward(self, x):
        return F.avg_pool2d(self.conv(x), 2)


def fast_model(**overrides) -> Model:
    return Model(Config.preset("fast", **overrides), feature_net=TinyFeatures())


def make_batch(seed: int, n: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(n, 3, size, size, generator=g) * 2 - 1 for k in ("A", "B", "B_smooth")}


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# --- networks -------------------------------------------------------------------------------


def test_paper_generator_has_the_official_size_and_layout():
    model = Model(Config.preset("paper"), feature_net=TinyFeatures())
    g = model.generator
    assert count_parameters(g) == 11_129_667
    assert len(g.state_dict()) == 94
    assert count_parameters(model.discriminator) == 1_128_385
    assert count_parameters(model) == 11_129_667 + 1_128_385  # the feature net is frozen
    assert isinstance(g.flat[0], nn.ReflectionPad2d) and g.flat[1].kernel_size == (7, 7)
    downs = [m for m in g.down if isinstance(m, nn.Conv2d)]
    assert [(m.stride[0], m.padding[0], m.padding_mode, m.out_channels) for m in downs] == [
        (2, 1, "zeros", 128), (1, 1, "zeros", 128), (2, 1, "zeros", 256), (1, 1, "zeros", 256)]
    assert len(g.res_blocks) == 8 and all(isinstance(b, ResnetBlock) for b in g.res_blocks)
    assert isinstance(g.res_blocks[0].conv_block[0], nn.ReflectionPad2d)
    ups = [m for m in g.up if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [type(m).__name__ for m in ups] == ["ConvTranspose2d", "Conv2d", "ConvTranspose2d", "Conv2d"]
    assert (ups[0].stride, ups[0].padding, ups[0].output_padding) == ((2, 2), (1, 1), (1, 1))
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 1 + 2 + 16 + 2 and all(n.affine and n.eps == 1e-9 for n in norms)
    assert isinstance(g.output[0], nn.ReflectionPad2d) and isinstance(g.output[2], nn.Tanh)
    assert all(m.bias is not None for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


def test_generator_keeps_the_size_and_range_and_rejects_bad_sizes():
    g = Generator(ngf=8, n_blocks=1)
    y = g(torch.rand(2, 3, 24, 32) * 2 - 1)
    assert y.shape == (2, 3, 24, 32) and y.abs().max() <= 1
    with pytest.raises(ValueError, match="multiples of 4"):
        g(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        g(torch.zeros(3, 32, 32))


def test_discriminator_layout_and_quarter_resolution_output():
    d = Discriminator(ndf=32)
    convs = [m for m in d.model if isinstance(m, nn.Conv2d)]
    assert [m.kernel_size for m in convs] == [(3, 3)] * 7
    assert [m.stride[0] for m in convs] == [1, 2, 1, 2, 1, 1, 1]
    assert [m.out_channels for m in convs] == [32, 64, 128, 128, 256, 256, 1]
    norms = [i for i, m in enumerate(d.model) if isinstance(m, nn.InstanceNorm2d)]
    assert norms == [5, 10, 13]
    assert isinstance(d.model[1], nn.LeakyReLU) and d.model[1].negative_slope == 0.2
    assert d(torch.zeros(1, 3, 64, 48)).shape == (1, 1, 16, 12)
    assert count_parameters(Discriminator(ndf=32, norm="instance_affine")) == 1_128_385 + 2 * (128 + 256 + 256)
    with pytest.raises(ValueError, match="norm"):
        Discriminator(norm="batch")


# --- losses ---------------------------------------------------------------------------------


def test_content_loss_is_the_mean_l1_of_features():
    features = TinyFeatures()
    g = torch.Generator().manual_seed(0)
    photo, fake = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    w, b = features.conv.weight.view(4, 3), features.conv.bias
    def by_hand(x):  # 1x1 conv, then mean over 2x2 blocks
        y = torch.einsum("oc,nchw->nohw", w, x) + b.view(1, 4, 1, 1)
        return y.view(2, 4, 4, 2, 4, 2).mean(dim=(3, 5))
    expected = (by_hand(fake) - by_hand(photo)).abs().mean()
    assert torch.allclose(content_loss(features, photo, fake), expected, atol=1e-6)
    fake.requires_grad_(True)
    content_loss(features, photo, fake).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


class ConstantD(nn.Module):
    """Predicts the same logit for every patch of every image."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((x.size(0), 1, 2, 2), self.value)


def test_discriminator_sees_cartoons_as_real_and_generated_and_smoothed_as_fake():
    x = torch.zeros(2, 3, 8, 8)
    real, fake, smooth = discriminator_losses(GANLoss("lsgan"), ConstantD(0.3), x, x, x)
    assert torch.allclose(real, torch.tensor(0.49))  # (0.3 - 1)^2
    assert torch.allclose(fake, torch.tensor(0.09)) and torch.allclose(smooth, torch.tensor(0.09))  # 0.3^2
    real, fake, smooth = discriminator_losses(GANLoss("vanilla"), ConstantD(0.0), x, x, x)
    assert torch.allclose(torch.stack([real, fake, smooth]), torch.full((3,), float(np.log(2))))


# --- the two phases -------------------------------------------------------------------------


def test_init_phase_uses_only_the_content_loss_and_leaves_d_alone():
    model = fast_model(init_steps=2, content_weight=7.0)
    d_before, g_before = params(model.discriminator), params(model.generator)
    batch = make_batch(0)
    batch["B"] = batch["B_smooth"] = torch.full_like(batch["A"], float("nan"))  # must not be read
    reference = copy.deepcopy(model)
    losses = model.train_step(batch, FP32, step=1)
    assert list(losses) == list(Model.loss_names)
    with torch.no_grad():
        expected = content_loss(reference.feature_net, batch["A"], reference.generator(batch["A"]))
    assert losses["content"] == pytest.approx(float(expected), rel=1e-5)
    assert losses["G_total"] == pytest.approx(7.0 * float(expected), rel=1e-5)
    assert all(losses[k] == 0.0 for k in ("G_adv", "D_real", "D_fake", "D_smooth", "D_total"))
    assert same(params(model.discriminator), d_before)
    assert not model.optimizers["D"].state and len(model.pool) == 0
    assert not same(params(model.generator), g_before)


@pytest.mark.parametrize("gan_mode", ["lsgan", "vanilla"])
def test_adversarial_step_values(gan_mode):
    model = fast_model(init_steps=0, gan_mode=gan_mode)
    before = copy.deepcopy(model)
    batch = make_batch(1)
    losses = model.train_step(batch, FP32, step=0)

    def crit(pred, target):  # written out, not toonlab's GANLoss
        full = torch.full_like(pred, target)
        return F.mse_loss(pred, full) if gan_mode == "lsgan" else F.binary_cross_entropy_with_logits(pred, full)

    with torch.no_grad():
        fake = before.generator(batch["A"])
        d = before.discriminator
        expected = {
            "content": content_loss(before.feature_net, batch["A"], fake),
            "G_adv": crit(d(fake), 1.0),
            "D_real": crit(d(batch["B"]), 1.0),
            "D_fake": crit(d(fake), 0.0),  # the pool returns new images while it fills
            "D_smooth": crit(d(batch["B_smooth"]), 0.0),
        }
    expected["G_total"] = expected["G_adv"] + 10.0 * expected["content"]
    expected["D_total"] = (expected["D_real"] + expected["D_fake"] + expected["D_smooth"]) / 3
    for key, value in expected.items():
        assert losses[key] == pytest.approx(float(value), rel=1e-4, abs=1e-6), key
    assert not same(params(model.discriminator), params(before.discriminator))
    assert not same(params(model.generator), params(before.generator))
    assert len(model.pool) == 2


def test_phase_switch_follows_init_steps_or_init_epochs():
    model = fast_model(init_steps=None, init_epochs=1)
    model.steps_per_epoch = 3
    assert [model.in_init_phase(s) for s in range(5)] == [True, True, True, False, False]
    model.set_hparams(init_steps=4)
    assert model.in_init_phase(3) and not model.in_init_phase(4)

    model = fast_model(init_steps=2)
    d_before = params(model.discriminator)
    for step in range(2):
        assert model.train_step(make_batch(step), FP32, step)["D_total"] == 0.0
    assert same(params(model.discriminator), d_before)
    assert model.train_step(make_batch(2), FP32, 2)["D_total"] > 0
    assert not same(params(model.discriminator), d_before)


def test_learning_rates_per_phase_with_linear_decay():
    config = Config.preset("fast", init_steps=None, init_epochs=1, init_epochs_decay=2, init_lr=0.4,
                           n_epochs=1, n_epochs_decay=2, lr=0.1)
    model = Model(config, feature_net=TinyFeatures())
    model.steps_per_epoch, rates = 2, []
    for step in range(14):  # 2 steps per epoch: init epochs 0-2 (steps 0-5), main epochs 0-2 (steps 6-11)
        model.set_learning_rates(step)
        rates.append(model.optimizers["G"].param_groups[0]["lr"])
        assert model.optimizers["D"].param_groups[0]["lr"] == rates[-1]
    assert rates == pytest.approx([0.4] * 4 + [0.2] * 2 + [0.1] * 4 + [0.05] * 4)
    assert model.config.total_steps(2) == 12 == model.total_steps()  # 2 = model.steps_per_epoch

    paper = Model(Config.preset("paper"), feature_net=TinyFeatures())
    spe = paper.steps_per_epoch = 5
    assert paper.learning_rate(10 * spe - 1) == pytest.approx(2e-4)
    assert paper.learning_rate(10 * spe) == pytest.approx(1e-5)  # adversarial phase at the author's rate
    assert paper.learning_rate((10 + 100) * spe) == pytest.approx(1e-5)
    assert paper.learning_rate((10 + 101) * spe) == pytest.approx(1e-5 * 0.99)
    assert paper.learning_rate((10 + 199) * spe) == pytest.approx(1e-7)
    assert paper.config.total_steps(spe) == 210 * spe


def test_resume_across_the_phase_boundary_is_exact():
    straight = fast_model(init_steps=2)
    for step in range(4):
        straight.train_step(make_batch(step), FP32, step)

    first = fast_model(init_steps=2)
    for step in range(2):
        first.train_step(make_batch(step), FP32, step)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizers": {k: o.state_dict() for k, o in first.optimizers.items()},
                "extra": first.extra_state()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert not any(k.startswith("feature_net") for k in saved["model"])

    resumed = fast_model(init_steps=2)
    resumed.load_state_dict(saved["model"])
    for name, opt in resumed.optimizers.items():
        opt.load_state_dict(saved["optimizers"][name])
    resumed.load_extra_state(saved["extra"])
    for step in range(2, 4):
        resumed.train_step(make_batch(step), FP32, step)
    assert same(params(resumed.generator), params(straight.generator))
    assert same(params(resumed.discriminator), params(straight.discriminator))


# --- the model's other duties ---------------------------------------------------------------


def test_presets_and_config_errors():
    paper = Config.preset("paper")
    assert (paper.image_size, paper.batch_size, paper.ngf, paper.ndf, paper.n_blocks) == (256, 8, 64, 32, 8)
    assert (paper.lr, paper.init_lr, paper.init_epochs, paper.beta1) == (1e-5, 2e-4, 10, 0.5)
    assert (paper.content_weight, paper.content_layer, paper.gan_mode) == (10.0, "conv4_4", "lsgan")
    assert (paper.vgg_weights, paper.pool_size) == ("imagenet", 50)
    assert (paper.n_epochs, paper.n_epochs_decay, paper.init_steps) == (100, 100, None)
    cpu, fast = Config.preset("cpu"), Config.preset("fast")
    assert (cpu.image_size, cpu.vgg_weights) == (64, "imagenet")
    assert (fast.image_size, fast.batch_size, fast.n_blocks, fast.vgg_weights) == (32, 2, 2, None)
    assert Model.hparam_names[:4] == ("lr", "init_lr", "content_weight", "init_steps")
    with pytest.raises(ValueError, match="gan_mode"):
        Config.preset("fast", gan_mode="wgan")
    with pytest.raises(ValueError, match="multiple of 4"):
        Config.preset("fast", image_size=30)
    with pytest.raises(ValueError, match="unknown CartoonGAN config field"):
        Config.preset("fast", n_res=3)
    with pytest.raises(TypeError, match="Config"):
        Model({"lr": 1})


def test_registry_builds_without_loading_vgg_and_translates_one_way():
    model = build_model("cartoongan", "fast")
    assert model.kind == "cartoongan" and model.feature_net is None  # the VGG loads at the first step
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = model.translate(x)
    assert y.shape == x.shape and y.abs().max() <= 1 and not y.requires_grad
    with pytest.raises(ValueError, match="AtoB"):
        model.translate(x, "BtoA")
    with pytest.raises(ValueError, match="direction"):
        model.translate(x, "sideways")


def test_the_vgg_loads_once_at_the_first_step_frozen_and_outside_checkpoints(monkeypatch):
    from toonlab.models import cartoongan

    calls = []

    def fake_loader(layer, weights):
        calls.append((layer, weights))
        return TinyFeatures()

    monkeypatch.setattr(cartoongan, "load_vgg_features", fake_loader)
    model = Model(Config.preset("fast", init_steps=1))
    keys_before = set(model.state_dict())
    rng_before = torch.get_rng_state()
    for step in range(2):
        model.train_step(make_batch(step), FP32, step)
    assert calls == [("conv4_4", None)]
    assert not any(p.requires_grad for p in model.feature_net.parameters())
    assert set(model.state_dict()) == keys_before and not any("feature_net" in k for k in keys_before)
    model.load_state_dict(copy.deepcopy(model.state_dict()))  # strict, with the feature net present
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_adversarial_phase_needs_smoothed_cartoons():
    model = fast_model(init_steps=0)
    batch = make_batch(0)
    del batch["B_smooth"]
    with pytest.raises(KeyError, match="EdgePromotedDataset"):
        model.train_step(batch, FP32, 0)


class TinyPortraits(UnpairedImages):
    """In-memory 32 px images (nothing cacheable), flip augmentation from the seed."""

    len_a, len_b = 3, 2

    def _image(self, seed):
        rng = np.random.default_rng(seed)
        image = np.full((32, 32, 3), rng.integers(0, 256, 3), np.uint8)
        image[8:24, 4:16] = rng.integers(0, 256, 3)
        return Image.fromarray(image)

    def image_a(self, index):
        return self._image(index)

    def image_b(self, index):
        return self._image(100 + index)

    def transform(self, image, seed):
        tensor = torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1).permute(2, 0, 1)
        return tensor.flip(-1) if torch.rand((), generator=augmentation_generator(seed)) < 0.5 else tensor


def test_training_loop_wraps_the_dataset_and_crosses_the_phase_boundary():
    from toonlab.train import Trainer, prepare_dataset_for

    model = fast_model(init_steps=2)
    source = TinyPortraits()
    dataset = prepare_dataset_for(model, source)
    assert isinstance(dataset, EdgePromotedDataset) and model.wrap_dataset(dataset) is dataset
    assert model.unwrap_dataset(dataset) is source and model.unwrap_dataset(source) is source
    trainer = Trainer(model, dataset, device="cpu", progress=False)
    history = trainer.fit(steps=4)
    assert [h["D_total"] == 0.0 for h in history] == [True, True, False, False]
    assert [h["lr"] for h in history] == pytest.approx([2e-4] * 4)
    assert all(np.isfinite(h["G_total"]) for h in history)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_mixed_precision_step():
    model = fast_model(init_steps=1).cuda()
    model.to_memory_format(torch.channels_last)
    precision = Precision("auto", "cuda")
    for step in range(3):
        batch = {k: v.cuda().contiguous(memory_format=torch.channels_last) for k, v in make_batch(step).items()}
        losses = model.train_step(batch, precision, step)
        precision.update()
        assert all(np.isfinite(v) for v in losses.values())
    assert losses["D_total"] > 0


def test_input_skip_starts_from_the_smoothed_photo_with_the_official_keys():
    from toonlab.nn import InputSkip, guided_filter

    plain = Model(Config.preset("fast"))
    skipped = Model(Config.preset("fast", input_skip=True))
    assert Config.preset("paper").input_skip is False and plain.generator.skip is None
    assert isinstance(skipped.generator.skip, InputSkip) and skipped.generator.skip.smoothing == "guided"
    assert list(plain.generator.state_dict()) == list(skipped.generator.state_dict())
    x = torch.rand(2, 3, 32, 32) * 1.6 - 0.8
    with torch.no_grad():
        out = skipped.generator(x)
    smooth = guided_filter(x)
    torch.testing.assert_close(out, torch.tanh(torch.atanh(smooth.clamp(-0.999, 0.999))))  # exactly the smoothed photo
    with pytest.raises(ValueError, match="unknown skip_filter"):
        Config.preset("fast", skip_filter="box")


def test_frozen_networks_stay_out_of_the_module_tree():
    from toonlab.nn import FrozenNets

    model = Model(Config.preset("fast"), feature_net=TinyFeatures())
    assert isinstance(model.frozen, FrozenNets) and "content" in model.frozen
    trained = {id(p) for p in model.parameters()}
    assert not any(id(p) in trained for p in model.feature_net.parameters())
    assert not any(p.requires_grad for p in model.feature_net.parameters())
    model.train()
    assert not model.feature_net.training  # model.train() does not reach it
    assert model.content_features() is model.feature_net
    state = model.state_dict()
    assert not any("feature_net" in k or "frozen" in k for k in state)
    fresh = Model(Config.preset("fast"))
    fresh.load_state_dict(state)  # strict: the same keys without any frozen network
    assert fresh.feature_net is None
