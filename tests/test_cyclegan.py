"""CycleGAN: architecture facts of the official code (docs/reference.md §1, §7), image pool,
training step, schedule and checkpoint extras. Forwards run at small sizes."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from toonlab.models import build_model
from toonlab.models.base import Precision
from toonlab.models.cyclegan import (
    Config,
    ImagePool,
    Model,
    NLayerDiscriminator,
    ResnetGenerator,
    blur,
    blurred_fake_loss,
    cycle_loss,
    discriminator_loss,
    identity_loss,
)
from toonlab.losses import FLAT_STEP, GANLoss, colour_anchor_loss, flatness_loss
from toonlab.nn import ResnetBlock, count_parameters


pytestmark = pytest.mark.usefixtures("one_thread")


def fast_model(**overrides) -> Model:
    return Model(Config.preset("fast", **overrides))


def fixed_batch(config: Config, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (config.batch_size, 3, config.image_size, config.image_size)
    # smooth-ish images: a low-resolution random field upsampled, in [-1, 1]
    low = torch.rand((config.batch_size, 3, 4, 4), generator=g) * 2 - 1
    photo = nn.functional.interpolate(low, size=shape[-2:], mode="bilinear", align_corners=False)
    cartoon = torch.sign(photo) * 0.8
    return {"A": photo, "B": cartoon}


def roundtrip(obj):
    """Save and load with weights_only=True, as the training loop's checkpoints do."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# --- architecture ----------------------------------------------------------------------------


def test_paper_generator_matches_official_counts_and_keys():
    g = ResnetGenerator()
    state = g.state_dict()
    assert count_parameters(g) == 11_378_179
    assert len(state) == 48
    keys = list(state)
    assert keys[:10] == [
        "model.1.weight", "model.1.bias", "model.4.weight", "model.4.bias", "model.7.weight", "model.7.bias",
        "model.10.conv_block.1.weight", "model.10.conv_block.1.bias",
        "model.10.conv_block.5.weight", "model.10.conv_block.5.bias",
    ]
    assert keys[-6:] == ["model.19.weight", "model.19.bias", "model.22.weight", "model.22.bias",
                         "model.26.weight", "model.26.bias"]
    assert state["model.1.weight"].shape == (64, 3, 7, 7)
    assert state["model.4.weight"].shape == (128, 64, 3, 3)
    assert state["model.7.weight"].shape == (256, 128, 3, 3)
    assert state["model.10.conv_block.1.weight"].shape == (256, 256, 3, 3)
    assert state["model.19.weight"].shape == (256, 128, 3, 3)  # ConvTranspose: [in, out, k, k]
    assert state["model.22.weight"].shape == (128, 64, 3, 3)
    assert state["model.26.weight"].shape == (3, 64, 7, 7)
    kinds = [type(m) for m in g.model]
    assert len(kinds) == 28
    assert kinds[0] is nn.ReflectionPad2d and kinds[25] is nn.ReflectionPad2d
    assert all(kinds[i] is ResnetBlock for i in range(10, 19))
    assert kinds[19] is nn.ConvTranspose2d and kinds[22] is nn.ConvTranspose2d
    assert kinds[27] is nn.Tanh
    assert all(isinstance(g.model[i], nn.InstanceNorm2d) for i in (2, 5, 8, 20, 23))
    # instance norm: every conv carries a bias (official use_bias)
    assert all(m.bias is not None for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


def test_six_block_generator_count():
    g = ResnetGenerator(n_blocks=6)
    assert count_parameters(g) == 7_837_699
    assert len(g.state_dict()) == 36


def test_paper_discriminator_counts_keys_and_patch_map():
    d = NLayerDiscriminator()
    state = d.state_dict()
    assert count_parameters(d) == 2_764_737
    assert list(state) == [f"model.{i}.{p}" for i in (0, 2, 5, 8, 11) for p in ("weight", "bias")]
    assert state["model.0.weight"].shape == (64, 3, 4, 4)
    assert state["model.8.weight"].shape == (512, 256, 4, 4)
    assert state["model.11.weight"].shape == (1, 512, 4, 4)
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())
    with torch.no_grad():
        assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_paper_generator_output_shape_and_tanh_range_at_small_size():
    g = ResnetGenerator()
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        y = g(x * 50)  # large inputs saturate tanh, still inside [-1, 1]
    assert y.shape == (2, 3, 32, 48)
    assert y.min() >= -1 and y.max() <= 1


def test_generator_generalises_indices():
    g = ResnetGenerator(ngf=8, n_blocks=2, n_downsampling=1)
    kinds = [type(m) for m in g.model]
    # 0 pad,1 conv,2 norm,3 relu | 4 conv s2,5 norm,6 relu | 7-8 blocks | 9 convT,10 norm,11 relu | 12 pad,13 conv,14 tanh
    assert kinds[7] is ResnetBlock and kinds[8] is ResnetBlock
    assert kinds[9] is nn.ConvTranspose2d and kinds[13] is nn.Conv2d and kinds[14] is nn.Tanh
    assert g.model[4].out_channels == 16 and g.model[9].out_channels == 8
    assert g(torch.zeros(1, 3, 10, 6)).shape == (1, 3, 10, 6)


def test_generator_rejects_bad_sizes_and_channels():
    g = ResnetGenerator(ngf=8, n_blocks=1)
    with pytest.raises(ValueError, match="multiples of 4"):
        g(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        g(torch.zeros(1, 1, 32, 32))


def test_batch_norm_drops_conv_biases_like_official():
    g = ResnetGenerator(ngf=8, n_blocks=1, norm="batch")
    assert g.model[1].bias is None and g.model[-2].bias is not None
    d = NLayerDiscriminator(ndf=8, norm="batch")
    assert d.model[0].bias is not None and d.model[2].bias is None


# --- init, config ------------------------------------------------------------------------------


def test_init_normal_002_biases_zero_and_seeded():
    model = Model(Config.preset("cpu", seed=3))
    for net in (model.G_A, model.G_B, model.D_A, model.D_B):
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        weights = torch.cat([m.weight.flatten() for m in convs])
        assert abs(weights.std().item() - 0.02) < 0.0005
        assert abs(weights.mean().item()) < 0.0005
        assert all(torch.count_nonzero(m.bias) == 0 for m in convs if m.bias is not None)
    state = torch.get_rng_state()
    again = Model(Config.preset("cpu", seed=3))
    assert torch.equal(torch.get_rng_state(), state), "building a model must not move the global RNG"
    assert torch.equal(again.G_A.model[1].weight, model.G_A.model[1].weight)
    assert not torch.equal(model.G_A.model[1].weight, model.G_B.model[1].weight)
    other = Model(Config.preset("cpu", seed=4))
    assert not torch.equal(other.G_A.model[1].weight, model.G_A.model[1].weight)


def test_paper_preset_is_official():
    c = Config.preset("paper")
    assert (c.image_size, c.batch_size, c.ngf, c.ndf, c.n_blocks, c.n_layers_d) == (256, 1, 64, 64, 9, 3)
    assert (c.norm, c.gan_mode, c.pool_size, c.lr, c.beta1, c.beta2) == ("instance", "lsgan", 50, 2e-4, 0.5, 0.999)
    assert (c.lambda_a, c.lambda_b, c.lambda_identity) == (10.0, 10.0, 0.5)
    assert (c.n_epochs, c.n_epochs_decay, c.init_gain, c.dropout) == (100, 100, 0.02, False)
    fast = Config.preset("fast")
    assert (fast.image_size, fast.ngf, fast.n_blocks, fast.n_layers_d, fast.batch_size) == (32, 8, 2, 2, 2)
    cpu = Config.preset("cpu", batch_size=2)
    assert cpu.image_size == 64 and cpu.batch_size == 2
    cpu_model = Model.__new__(Model)
    cpu_model.config, cpu_model.steps_per_epoch = Config.preset("cpu"), 2000
    assert cpu_model.config.total_steps(2000) == 1000  # what notebook 01 trains, whatever the dataset
    assert cpu_model.lr_factor(499) == 1.0 and cpu_model.lr_factor(999) == pytest.approx(1 / 11)
    assert (cpu_model.config.skip_filter, cpu_model.config.lr, cpu_model.config.lambda_identity) == ("guided", 1e-4, 0.0)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="lambda_cyc.*valid fields"):
        Config.preset("paper", lambda_cyc=5.0)
    with pytest.raises(ValueError, match="unknown preset"):
        Config.preset("huge")
    with pytest.raises(ValueError, match="norm"):
        Config(norm="adain")
    with pytest.raises(ValueError, match="gan_mode"):
        Config(gan_mode="wgangp")
    with pytest.raises(ValueError, match="multiple of 4"):
        Config(image_size=30)
    with pytest.raises(TypeError, match="Config"):
        Model({"ngf": 8})


def test_registry_builds_and_config_survives_weights_only():
    model = build_model("cyclegan", "fast")
    assert isinstance(model, Model) and model.kind == "cyclegan"
    saved = roundtrip(model.config_dict())
    assert Config(**saved) == model.config


# --- image pool ---------------------------------------------------------------------------------


def test_image_pool_fills_then_mixes():
    pool = ImagePool(3, seed=0)
    first = torch.arange(2.0).view(2, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool) == 2
    second = torch.arange(2.0, 4.0).view(2, 1, 1, 1)
    out = pool.query(second)
    assert out[0].item() == 2.0 and len(pool) == 3  # the third image fills the pool and comes back
    assert out[1].item() in (3.0, 0.0, 1.0, 2.0)
    returned_old = 0
    for step in range(200):
        new = torch.full((1, 1, 1, 1), 100.0 + step)
        value = pool.query(new).item()
        assert len(pool) == 3
        returned_old += value != 100.0 + step
    assert 60 < returned_old < 140  # about half the time a stored image comes back


def test_image_pool_zero_size_and_detach():
    x = torch.ones(2, 3, 4, 4, requires_grad=True)
    out = ImagePool(0).query(x * 2)
    assert not out.requires_grad and torch.equal(out, torch.full((2, 3, 4, 4), 2.0))
    out = ImagePool(5).query(x * 2)
    assert not out.requires_grad


def test_image_pool_reproducible_and_resumable():
    def stream(n):
        g = torch.Generator().manual_seed(7)
        return [torch.rand(2, 3, 4, 4, generator=g) for _ in range(n)]

    batches = stream(12)
    a, b = ImagePool(4, seed=1), ImagePool(4, seed=1)
    outs_a = [a.query(x) for x in batches]
    outs_b = [b.query(x) for x in batches]
    assert all(torch.equal(x, y) for x, y in zip(outs_a, outs_b))
    assert not all(torch.equal(x, y) for x, y in zip(outs_a, batches)), "the pool never returned an old image"

    original = ImagePool(4, seed=5)
    for x in batches[:6]:
        original.query(x)
    state = roundtrip(original.state_dict())
    assert set(state) == {"pool_size", "images", "generator"}
    resumed = ImagePool(4, seed=999)
    resumed.load_state_dict(state)
    for x in batches[6:]:
        assert torch.equal(original.query(x), resumed.query(x))
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(3).load_state_dict(state)


# --- losses and the training step -------------------------------------------------------------


def test_loss_functions():
    x = torch.zeros(1, 3, 4, 4)
    assert cycle_loss(x + 0.5, x).item() == pytest.approx(0.5)
    assert identity_loss(x - 0.25, x).item() == pytest.approx(0.25)
    d = nn.Identity()
    crit = GANLoss("lsgan")
    # D(real) = 1, D(fake) = 0 -> perfect discriminator, zero loss; swapped -> 0.5 * (1 + 1)
    assert discriminator_loss(crit, d, x + 1, x).item() == pytest.approx(0.0)
    assert discriminator_loss(crit, d, x, x + 1).item() == pytest.approx(1.0)


class CheckingPrecision(Precision):
    """fp32 precision that checks, at the generator step, that the discriminators stay untouched."""

    def __init__(self, model: Model):
        super().__init__("fp32")
        self.model = model
        self.g_steps = 0

    def step(self, loss, optimizer):
        if optimizer is self.model.optimizers["G"]:
            ds = [self.model.D_A, self.model.D_B]
            assert all(not p.requires_grad for d in ds for p in d.parameters()), "D not frozen during G step"
            before = [p.detach().clone() for d in ds for p in d.parameters()]
            super().step(loss, optimizer)
            after = [p.detach() for d in ds for p in d.parameters()]
            assert all(torch.equal(x, y) for x, y in zip(before, after))
            assert all(p.grad is None for d in ds for p in d.parameters())
            self.g_steps += 1
        else:
            assert optimizer is self.model.optimizers["D"]
            assert all(p.requires_grad for d in (self.model.D_A, self.model.D_B) for p in d.parameters())
            gens = [self.model.G_A, self.model.G_B]
            super().step(loss, optimizer)
            assert all(p.grad is None for g in gens for p in g.parameters()), "D loss leaked into G"


def test_train_step_updates_all_nets_and_keeps_d_out_of_g_step():
    model = fast_model()
    batch = fixed_batch(model.config)
    before = {name: [p.detach().clone() for p in getattr(model, name).parameters()] for name in ("G_A", "G_B", "D_A", "D_B")}
    precision = CheckingPrecision(model)
    losses = model.train_step(batch, precision, step=0)
    assert precision.g_steps == 1
    assert list(losses) == list(Model.loss_names)
    assert all(isinstance(v, float) and torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert losses["idt_A"] > 0 and losses["idt_B"] > 0
    parts = sum(losses[k] for k in ("G_adv_A", "G_adv_B", "cycle_A", "cycle_B", "idt_A", "idt_B"))
    assert losses["G_total"] == pytest.approx(parts, rel=1e-5)
    for name, old in before.items():
        new = list(getattr(model, name).parameters())
        assert any(not torch.equal(a, b) for a, b in zip(old, new)), f"{name} did not change"


def count_calls(module: nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_identity_terms_skipped_when_weight_is_zero():
    model = fast_model(lambda_identity=0.0)
    calls_a, calls_b = count_calls(model.G_A), count_calls(model.G_B)
    losses = model.train_step(fixed_batch(model.config), Precision(), 0)
    assert losses["idt_A"] == 0.0 and losses["idt_B"] == 0.0
    assert calls_a[0] == 2 and calls_b[0] == 2  # fake_B, rec_B / rec_A, fake_A: no identity forwards
    model.set_hparams(lambda_identity=0.5)
    model.train_step(fixed_batch(model.config), Precision(), 1)
    assert calls_a[0] == 5 and calls_b[0] == 5


def test_loss_weights_scale_terms_and_hparams_apply_next_step():
    batch = fixed_batch(Config.preset("fast"))
    base = fast_model().train_step(batch, Precision(), 0)
    doubled = fast_model(lambda_a=20.0, lambda_identity=0.25).train_step(batch, Precision(), 0)
    assert doubled["cycle_A"] == pytest.approx(2 * base["cycle_A"], rel=1e-5)
    assert doubled["cycle_B"] == pytest.approx(base["cycle_B"], rel=1e-5)
    # idt_A weighs lambda_identity * lambda_b, idt_B weighs lambda_identity * lambda_a
    assert doubled["idt_A"] == pytest.approx(0.5 * base["idt_A"], rel=1e-5)
    assert doubled["idt_B"] == pytest.approx(base["idt_B"], rel=1e-5)

    model = fast_model()
    model.train_step(batch, Precision(), 0)
    model.set_hparams(lambda_a=0.0, lambda_b=0.0, lr=1e-3)
    assert model.hparams == {"lr": 1e-3, "lambda_a": 0.0, "lambda_b": 0.0, "lambda_identity": 0.5, "lambda_colour": 0.0,
                             "lambda_flat": 0.0}
    model.steps_per_epoch = 100
    model.set_learning_rates(1)
    assert model.optimizers["G"].param_groups[0]["lr"] == pytest.approx(1e-3)
    after = model.train_step(batch, Precision(), 1)
    assert after["cycle_A"] == 0.0 and after["cycle_B"] == 0.0 and after["idt_A"] == 0.0
    with pytest.raises(ValueError, match="lambda_identity"):
        model.set_hparams(lambda_cyc=1.0)


def test_lr_factor_follows_official_linear_rule():
    model = Model.__new__(Model)  # only the config is needed; avoid building the paper nets
    model.config = Config.preset("paper")
    spe = model.steps_per_epoch = 7
    for epoch in (0, 50, 99):
        assert model.lr_factor(epoch * spe) == 1.0
        assert model.lr_factor(epoch * spe + spe - 1) == 1.0
    assert model.lr_factor(100 * spe) == pytest.approx(1 - 1 / 101)
    assert model.lr_factor(101 * spe - 1) == pytest.approx(1 - 1 / 101)
    assert model.lr_factor(150 * spe) == pytest.approx(1 - 51 / 101)
    assert model.lr_factor(199 * spe) == pytest.approx(1 / 101)
    assert model.lr_factor(500 * spe) == pytest.approx(1 / 101)  # holds the last rate past the end
    model.steps_per_epoch = 0
    with pytest.raises(ValueError, match="steps_per_epoch"):
        model.lr_factor(0)
    assert model.config.total_steps(spe) == 200 * spe


def test_short_presets_count_epochs_in_fixed_steps():
    fast = fast_model()
    assert fast.config.total_steps(12345) == 40  # the dataset's epoch does not matter
    fast.steps_per_epoch = 12345
    assert fast.total_steps() == 40  # the model contract's run length (toonlab train without --steps)
    factors = [fast.lr_factor(step) for step in range(45)]
    assert factors[:20] == [1.0] * 20
    assert factors[20] == factors[29] == pytest.approx(1 - 1 / 3)
    assert factors[39] == factors[44] == pytest.approx(1 / 3)
    fast.set_learning_rates(step=25)
    assert fast.optimizers["D"].param_groups[0]["lr"] == pytest.approx(2e-4 * 2 / 3)
    assert fast.optimizers["G"].param_groups[0]["lr"] == pytest.approx(2e-4 * 2 / 3)


def test_cycle_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = fast_model()
    batch = fixed_batch(model.config, seed=1)
    precision = Precision()
    history = [model.train_step(batch, precision, step) for step in range(30)]
    first = sum(h["cycle_A"] + h["cycle_B"] for h in history[:3]) / 3
    last = sum(h["cycle_A"] + h["cycle_B"] for h in history[-3:]) / 3
    assert last < 0.8 * first, (first, last)


def test_bf16_autocast_step_is_finite():
    model = fast_model()
    losses = model.train_step(fixed_batch(model.config), Precision("bf16"), 0)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert model.pool_B.images[0].dtype == torch.bfloat16
    # the pool hands back images in the dtype of the current batch
    assert model.pool_B.query(torch.zeros(2, 3, 32, 32)).dtype == torch.float32


def test_translate_directions_and_mode():
    model = fast_model()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    model.train()
    with torch.no_grad():
        assert torch.allclose(model.translate(x, "AtoB"), model.G_A(x))
        assert torch.allclose(model.translate(x, "BtoA"), model.G_B(x))
    assert model.G_A.training and model.G_B.training
    assert not model.translate(x).requires_grad
    with pytest.raises(ValueError, match="AtoB"):
        model.translate(x, "AB")


def test_resumed_training_is_identical():
    def state_of(m: Model):
        return roundtrip({
            "model": m.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in m.optimizers.items()},
            "extra": m.extra_state(),
        })

    config = dict(pool_size=2)  # small pool so that it swaps images during the run
    batches = [fixed_batch(Config.preset("fast"), seed=s) for s in range(6)]
    straight = fast_model(**config)
    for step in range(3):
        straight.train_step(batches[step], Precision(), step)
    saved = state_of(straight)
    expected = [straight.train_step(batches[step], Precision(), step) for step in range(3, 6)]

    resumed = fast_model(**config, seed=11)  # different init, overwritten by the checkpoint
    resumed.load_state_dict(saved["model"])
    for name, opt in resumed.optimizers.items():
        opt.load_state_dict(saved["optimizers"][name])
    resumed.load_extra_state(saved["extra"])
    got = [resumed.train_step(batches[step], Precision(), step) for step in range(3, 6)]
    assert got == expected
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_step():
    model = fast_model().to("cuda")
    batch = {k: v.cuda() for k, v in fixed_batch(model.config).items()}
    precision = Precision("auto", "cuda")
    losses = model.train_step(batch, precision, 0)
    precision.update()
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert model.translate(batch["A"]).device.type == "cuda"


def test_cpu_recipe_options_are_off_in_paper_and_do_what_they_say():
    paper = Config.preset("paper")
    assert (paper.warmup_steps, paper.cycle_noise, paper.lambda_colour, paper.upsample) == (0, 0.0, 0.0, "transpose")
    batch = fixed_batch(Config.preset("fast"))
    # warm-up: only the generators learn, towards the identity
    model = fast_model(warmup_steps=1)
    d_before = [p.detach().clone() for p in model.D_A.parameters()]
    g_before = [p.detach().clone() for p in model.G_A.parameters()]
    losses = model.train_step(batch, Precision(), 0)
    assert losses["warmup"] > 0 and losses["G_total"] == losses["warmup"] and losses["D_A"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(d_before, model.D_A.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(g_before, model.G_A.parameters()))
    assert model.train_step(batch, Precision(), 1)["warmup"] == 0.0  # step 1: the adversarial phase
    # colour anchor: zero for a translation that keeps every block's colour, the shift for a shifted one
    x = batch["A"]
    assert colour_anchor_loss(x, x).item() == 0.0
    assert colour_anchor_loss(x + 0.25, x).item() == pytest.approx(0.25, rel=1e-5)
    anchored = fast_model(lambda_colour=2.0).train_step(batch, Precision(), 0)
    assert anchored["colour"] > 0 and fast_model().train_step(batch, Precision(), 0)["colour"] == 0.0
    # resize-convolution: same shapes, no transposed convolution
    resize = ResnetGenerator(ngf=8, n_blocks=1, upsample="resize")
    assert resize(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in resize.modules())
    with pytest.raises(ValueError, match="upsample"):
        Config.preset("fast", upsample="bilinear")
    # cycle noise changes what the way back sees, so the cycle loss differs from the noiseless one
    torch.manual_seed(0)
    noisy = fast_model(cycle_noise=0.5).train_step(batch, Precision(), 0)
    assert noisy["cycle_A"] != pytest.approx(fast_model().train_step(batch, Precision(), 0)["cycle_A"], rel=1e-4)


def test_input_skip_generator_starts_near_the_photo():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 1.6 - 0.8
    model = fast_model(input_skip=True)
    out = model.G_A(x)
    plain = fast_model()
    # freshly initialised, it starts much nearer the photo than the official generator (which starts near grey)
    assert out.shape == x.shape and (out - x).abs().mean() < 0.5 * (plain.G_A(x) - x).abs().mean()
    torch.nn.init.zeros_(model.G_A.model[-2].weight)
    torch.nn.init.zeros_(model.G_A.model[-2].bias)
    assert torch.allclose(model.G_A(x), x, atol=1e-5)  # a zero change returns the input
    assert Config.preset("paper").input_skip is False


def test_flatness_prior_charges_texture_not_outlines():
    flat = torch.zeros(1, 3, 16, 16)
    assert flatness_loss(flat).item() == 0.0
    outline = flat.clone()
    outline[..., 8:, :] = 1.0  # one sharp step of height 1 between two flat halves
    texture = flat + 0.02 * (torch.arange(16) % 2).float()  # a small checkerboard-like ripple along x
    rows_with_step = 1 / 15  # one of the 15 vertical neighbour pairs
    assert flatness_loss(outline).item() == pytest.approx(FLAT_STEP * rows_with_step, rel=1e-5)
    assert flatness_loss(texture).item() == pytest.approx(0.02, rel=1e-5)  # every x step, at its full size
    assert flatness_loss(texture).item() > flatness_loss(outline).item()
    model = fast_model(lambda_flat=3.0)
    assert model.train_step(fixed_batch(Config.preset("fast")), Precision(), 0)["flat"] > 0


def test_skip_blur_passes_on_a_blurred_photo():
    torch.manual_seed(0)
    model = fast_model(input_skip=True, skip_blur=1.0)
    generator = model.G_A
    torch.nn.init.zeros_(generator.model[-2].weight)
    torch.nn.init.zeros_(generator.model[-2].bias)
    x = torch.rand(1, 3, 32, 32) * 1.6 - 0.8
    out = generator(x)
    assert not torch.allclose(out, x, atol=1e-3)  # the detail stays behind
    assert torch.allclose(out.mean(), x.mean(), atol=1e-2)  # the colours do not
    smooth = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(generator(smooth), smooth, atol=1e-5)  # a flat image passes unchanged


def test_blurred_fakes_teach_the_cartoon_discriminator_that_blur_is_fake():
    cartoons = torch.rand(2, 3, 16, 16) * 2 - 1
    blurred = blur(cartoons, 1.0)
    assert blurred.shape == cartoons.shape and (blurred - cartoons).abs().mean() > 0.05
    assert blur(torch.full((1, 3, 16, 16), 0.3), 1.0).sub(0.3).abs().max() < 1e-6  # flat stays flat
    says_real = lambda x: torch.ones(x.size(0), 1, 4, 4)  # noqa: E731
    assert blurred_fake_loss(GANLoss("lsgan"), says_real, cartoons, 1.0).item() == pytest.approx(0.5)
    plain, promoted = fast_model(), fast_model(blurred_fakes=1.0)
    batch = fixed_batch(Config.preset("fast"))
    d_plain = plain.train_step(batch, Precision(), 0)["D_A"]
    d_promoted = promoted.train_step(batch, Precision(), 0)["D_A"]
    assert d_promoted > d_plain  # the same D_A, one more fake term
    with pytest.raises(ValueError, match="blurred_fakes must be >= 0"):
        Config.preset("fast", blurred_fakes=-1.0)


def test_d_lr_ratio_sets_the_discriminators_rate_only():
    model = fast_model(lr=1e-3, d_lr_ratio=0.25)
    model.set_learning_rates(0)
    assert model.optimizers["G"].param_groups[0]["lr"] == pytest.approx(1e-3)
    assert model.optimizers["D"].param_groups[0]["lr"] == pytest.approx(2.5e-4)
    assert Config.preset("paper").d_lr_ratio == 1.0


def test_guided_filter_flattens_texture_and_keeps_edges():
    from toonlab.nn import guided_filter

    gen = torch.Generator().manual_seed(0)
    edge = torch.full((1, 1, 16, 16), -0.8)
    edge[..., 8:] = 0.8  # a strong step: variance far above eps
    noise = 0.04 * torch.randn(1, 1, 16, 16, generator=gen)  # texture: variance far below eps
    out = guided_filter(edge + noise, radius=1, eps=0.01)
    assert (out - edge).abs()[..., 1:-1].mean() < 0.5 * noise.abs().mean()  # the noise mostly gone
    assert (out[..., 7] - out[..., 8]).abs().min() > 1.4  # the step still sharp
    assert torch.allclose(guided_filter(torch.full((1, 3, 8, 8), 0.3)), torch.full((1, 3, 8, 8), 0.3))
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    guided_filter(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    model = fast_model(input_skip=True, skip_filter="guided")
    assert model.G_A.skip.smoothing == "guided"
    assert model.train_step(fixed_batch(Config.preset("fast")), Precision(), 0)["G_total"] > 0
    with pytest.raises(ValueError, match="unknown skip_filter"):
        Config.preset("fast", skip_filter="median")


def test_spectral_norm_discriminator_is_an_option_off_in_paper():
    assert not Config.preset("paper").d_spectral_norm
    plain = NLayerDiscriminator(3, 8, 2)
    normed = NLayerDiscriminator(3, 8, 2, spectral_norm=True)
    assert count_parameters(plain) == count_parameters(normed)  # the same weights, reparametrised
    convs = [m for m in normed.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    with torch.no_grad():
        for _ in range(20):  # power iterations in training mode
            normed(torch.rand(1, 3, 32, 32))
        first = convs[0].weight.flatten(1)
    assert torch.linalg.matrix_norm(first, ord=2) == pytest.approx(1.0, rel=0.05)
    model = fast_model(d_spectral_norm=True)
    assert model.train_step(fixed_batch(Config.preset("fast")), Precision(), 0)["D_A"] > 0
