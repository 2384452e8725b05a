"""MUNIT: paper sizes and keys, blocks, AdaIN parameter order, translation helpers, training step, schedule."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toonlab.losses import GANLoss, VGGWeightsUnavailable
from toonlab.models import build_model, munit
from toonlab.models.base import Precision
from toonlab.nn import AdaptiveInstanceNorm2d, LayerNorm, count_parameters


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _conv_block_keys(prefix: str, norm: str = "none") -> list[str]:
    norm_keys = {"none": [], "adain": ["norm.running_mean", "norm.running_var"], "layer": ["norm.gamma", "norm.beta"]}
    return [f"{prefix}.{k}" for k in norm_keys[norm] + ["conv.weight", "conv.bias"]]


def _official_generator_keys() -> list[str]:
    """The 82 keys of the official AdaINGen (paper config), written out from docs/reference.md §7."""
    keys: list[str] = []
    for k in range(5):
        keys += _conv_block_keys(f"enc_style.model.{k}")
    keys += ["enc_style.model.6.weight", "enc_style.model.6.bias"]
    for k in range(3):
        keys += _conv_block_keys(f"enc_content.model.{k}")
    for i in range(4):
        for j in range(2):
            keys += _conv_block_keys(f"enc_content.model.3.model.{i}.model.{j}")
    for i in range(4):
        for j in range(2):
            keys += _conv_block_keys(f"dec.model.0.model.{i}.model.{j}", "adain")
    keys += _conv_block_keys("dec.model.2", "layer") + _conv_block_keys("dec.model.4", "layer")
    keys += _conv_block_keys("dec.model.5")
    for k in range(3):
        keys += [f"mlp.model.{k}.fc.weight", f"mlp.model.{k}.fc.bias"]
    return keys


@pytest.fixture(scope="module")
def paper_generator() -> munit.AdaINGen:
    torch.manual_seed(0)
    return munit.AdaINGen()


@pytest.fixture(scope="module")
def paper_discriminator() -> munit.MultiScaleDiscriminator:
    torch.manual_seed(0)
    return munit.MultiScaleDiscriminator()


@pytest.fixture
def fast_model() -> munit.Model:
    return munit.Model(munit.Config.preset("fast"))


def _fast_batch(config: munit.Config, seed: int = 0) -> dict[str, torch.Tensor]:
    return {"A": _images(config.batch_size, config.image_size, seed),
            "B": _images(config.batch_size, config.image_size, seed + 1)}


# --- sizes and keys (docs/reference.md §7) -----------------------------------------------------


def test_paper_generator_parameter_counts(paper_generator):
    g = paper_generator
    assert count_parameters(g.enc_style) == 2_764_936
    assert count_parameters(g.enc_content) == 5_385_856
    assert count_parameters(g.dec) == 5_754_627
    assert count_parameters(g.mlp) == 1_120_768
    assert count_parameters(g) == 15_026_187
    assert munit.num_adain_params(g.dec) == 4096
    assert g.mlp.model[2].fc.out_features == 4096


def test_paper_generator_keys_are_official(paper_generator):
    state = paper_generator.state_dict()
    assert len(state) == 82
    assert list(state) == _official_generator_keys()
    dummies = [k for k in state if k.endswith(("running_mean", "running_var"))]
    assert len(dummies) == 16 and all(k.startswith("dec.model.0.") for k in dummies)
    assert state["enc_style.model.0.conv.weight"].shape == (64, 3, 7, 7)
    assert state["enc_style.model.1.conv.weight"].shape == (128, 64, 4, 4)
    assert state["enc_style.model.6.weight"].shape == (8, 256, 1, 1)
    assert state["dec.model.2.conv.weight"].shape == (128, 256, 5, 5)
    assert state["dec.model.5.conv.weight"].shape == (3, 64, 7, 7)
    assert state["mlp.model.2.fc.weight"].shape == (4096, 256)


def test_paper_discriminator_parameters_and_keys(paper_discriminator):
    state = paper_discriminator.state_dict()
    assert count_parameters(paper_discriminator) == 8_271_171
    expected = []
    for s in range(3):
        for k in range(4):
            expected += [f"cnns.{s}.{k}.conv.weight", f"cnns.{s}.{k}.conv.bias"]
        expected += [f"cnns.{s}.4.weight", f"cnns.{s}.4.bias"]
    assert list(state) == expected and len(state) == 30
    assert state["cnns.0.3.conv.weight"].shape == (512, 256, 4, 4)
    assert state["cnns.2.4.weight"].shape == (1, 512, 1, 1)


def test_paper_model_totals():
    model = munit.Model(munit.Config.preset("paper"))
    assert count_parameters(model) == 2 * 15_026_187 + 2 * 8_271_171  # 46.59M, docs/reference.md §7
    assert len(model.state_dict()) == 2 * 82 + 2 * 30
    gen_params = sum(p.numel() for g in model.optimizers["G"].param_groups for p in g["params"])
    dis_params = sum(p.numel() for g in model.optimizers["D"].param_groups for p in g["params"])
    assert (gen_params, dis_params) == (2 * 15_026_187, 2 * 8_271_171)


def test_discriminator_output_sizes_per_scale(paper_discriminator):
    with torch.no_grad():
        outputs = paper_discriminator(_images(2, 64))
    # 256 px gives 16², 8², 4²; the network is fully convolutional, so 64 px gives 4², 2², 1²
    assert [tuple(o.shape) for o in outputs] == [(2, 1, 4, 4), (2, 1, 2, 2), (2, 1, 1, 1)]


def test_content_and_style_code_shapes():
    torch.manual_seed(0)
    gen = munit.AdaINGen(dim=8, style_dim=5, mlp_dim=16, n_res=1)
    x = _images(3, 32)
    content, style = gen.encode(x)
    assert content.shape == (3, 4 * 8, 8, 8)
    assert style.shape == (3, 5, 1, 1)
    y = gen.decode(content, style)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert torch.equal(gen(x), y)
    # decoding leaves no per-sample AdaIN state behind (so the model can be copied and saved)
    assert all(m.weight is None and m.bias is None for m in munit.adain_layers(gen.dec))
    copy.deepcopy(gen)


def test_bad_images_raise_clear_errors():
    gen = munit.AdaINGen(dim=4, style_dim=2, mlp_dim=8, n_res=1)
    with pytest.raises(ValueError, match="multiples of 4"):
        gen.encode(_images(1, 34))
    with pytest.raises(ValueError, match="at least 16"):
        gen.encode(_images(1, 8))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        gen.encode(torch.zeros(1, 1, 32, 32))
    content, style = gen.encode(_images(2, 16))
    with pytest.raises(ValueError, match="one style per"):
        gen.decode(content, style[:1])


# --- normalisation blocks (docs/reference.md §2.1) --------------------------------------------


def test_decoder_layer_norm_matches_definition_not_groupnorm():
    torch.manual_seed(1)
    decoder = munit.Decoder(n_upsample=1, n_res=1, dim=8)
    norm = decoder.model[2].norm
    assert isinstance(norm, LayerNorm)
    with torch.no_grad():
        norm.beta.uniform_(-1, 1)
    x = torch.randn(3, 4, 5, 6) * 3 + 2
    flat = x.reshape(3, -1)
    mean = flat.mean(1)
    std = torch.sqrt(((flat - mean[:, None]) ** 2).sum(1) / (flat.size(1) - 1))  # unbiased
    expected = (x - mean.view(3, 1, 1, 1)) / (std.view(3, 1, 1, 1) + 1e-5)  # eps added to the deviation
    expected = expected * norm.gamma.view(1, 4, 1, 1) + norm.beta.view(1, 4, 1, 1)
    torch.testing.assert_close(norm(x), expected, atol=1e-6, rtol=1e-6)
    assert 0 <= norm.gamma.min() and norm.gamma.max() < 1  # gamma ~ U(0, 1)
    group = nn.GroupNorm(1, 4, eps=1e-5)
    with torch.no_grad():
        group.weight.copy_(norm.gamma)
        group.bias.copy_(norm.beta)
    small = torch.randn(2, 4, 3, 3)  # few elements per sample: unbiased vs biased std differ clearly
    assert (norm(small) - group(small)).abs().max() > 1e-3


def test_adain_is_instance_norm_times_weight_plus_bias():
    torch.manual_seed(2)
    layer = AdaptiveInstanceNorm2d(3)
    x = torch.randn(2, 3, 5, 5) * 4 - 1
    weight, bias = torch.rand(2, 3) + 0.5, torch.randn(2, 3)
    layer.weight, layer.bias = weight.reshape(-1), bias.reshape(-1)
    expected = F.instance_norm(x, eps=1e-5) * weight[..., None, None] + bias[..., None, None]
    torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=1e-6)
    # the official trick: batch norm over the (1, N*C, H, W) reshape with throw-away running stats
    official = F.batch_norm(x.reshape(1, 6, 5, 5), torch.zeros(6), torch.ones(6), weight.reshape(-1),
                            bias.reshape(-1), True, 0.1, 1e-5).reshape(2, 3, 5, 5)
    torch.testing.assert_close(layer(x), official, atol=1e-5, rtol=1e-5)


def test_assign_adain_params_takes_bias_then_weight_in_module_order():
    decoder = munit.Decoder(n_upsample=1, n_res=2, dim=4)
    layers = munit.adain_layers(decoder)
    assert len(layers) == 4 and [m.num_features for m in layers] == [4, 4, 4, 4]
    assert layers == [decoder.model[0].model[i].model[j].norm for i in range(2) for j in range(2)]
    assert munit.num_adain_params(decoder) == 4 * 2 * 4
    params = torch.arange(2 * 32, dtype=torch.float32).reshape(2, 32)
    munit.assign_adain_params(params, decoder)
    for k, layer in enumerate(layers):
        torch.testing.assert_close(layer.bias, params[:, 8 * k:8 * k + 4].reshape(-1))
        torch.testing.assert_close(layer.weight, params[:, 8 * k + 4:8 * k + 8].reshape(-1))
    with pytest.raises(ValueError, match=r"\(N, 32\)"):
        munit.assign_adain_params(params[:, :31], decoder)


def test_decode_feeds_the_mlp_output_to_the_adain_layers():
    torch.manual_seed(3)
    gen = munit.AdaINGen(dim=4, style_dim=3, mlp_dim=8, n_res=1)
    content, style = gen.encode(_images(2, 16))
    munit.assign_adain_params(gen.mlp(style.flatten(1)), gen.dec)
    expected = gen.dec(content)
    torch.testing.assert_close(gen.decode(content, style), expected)


def test_lsgan_losses_sum_over_scales_without_half_factor():
    def two_scale_discriminator(x):  # any callable returning one map per scale
        return [x[:, :1], x[:, :1, ::2, ::2]]

    criterion = GANLoss("lsgan")
    real, fake = torch.full((2, 3, 4, 4), 3.0), torch.full((2, 3, 4, 4), 2.0, requires_grad=True)
    # per scale: mean(D(fake)^2) = 4 and mean((D(real) - 1)^2) = 4; two scales, no 0.5 factor
    assert munit.discriminator_loss(criterion, two_scale_discriminator, real, fake).item() == 16.0
    assert munit.generator_adversarial_loss(criterion, two_scale_discriminator, fake).item() == 2.0
    x, y = torch.zeros(2, 3), torch.tensor([[1.0, -2, 3], [0, 0, 6]])
    for term in (munit.image_reconstruction_loss, munit.style_reconstruction_loss,
                 munit.content_reconstruction_loss, munit.cycle_reconstruction_loss):
        assert term(y, x).item() == 2.0  # mean absolute error


# --- schedule, presets, init ---------------------------------------------------------------------


def test_paper_preset_is_the_official_config():
    c = munit.Config.preset("paper")
    assert (c.image_size, c.batch_size, c.dim, c.style_dim, c.mlp_dim, c.n_downsample, c.n_res) == (256, 1, 64, 8, 256, 2, 4)
    assert (c.dis_dim, c.dis_n_layer, c.dis_num_scales, c.dis_norm, c.gan_mode) == (64, 4, 3, "none", "lsgan")
    assert (c.gan_w, c.recon_x_w, c.recon_s_w, c.recon_c_w, c.vgg_w) == (1, 10, 1, 1, 0)
    assert c.recon_x_cyc_w == 0  # shape change: the authors' advice (issue #60)
    assert (c.lr, c.beta1, c.beta2, c.weight_decay) == (1e-4, 0.5, 0.999, 1e-4)
    assert (c.step_size, c.gamma, c.max_iter, c.gen_init, c.dis_init) == (100_000, 0.5, 1_000_000, "kaiming", "normal")
    cpu, fast = munit.Config.preset("cpu"), munit.Config.preset("fast")
    assert cpu.image_size == 64 and cpu.dim < c.dim and cpu.dis_num_scales in (2, 3)
    assert (fast.image_size, fast.batch_size) == (32, 2)
    assert munit.Model.hparam_names == ("lr", "gan_w", "recon_x_w", "recon_s_w", "recon_c_w", "recon_x_cyc_w")


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="unknown MUNIT config field"):
        munit.Config.preset("fast", stlye_dim=4)
    with pytest.raises(ValueError, match="image_size"):
        munit.Config.preset("fast", image_size=30)
    with pytest.raises(ValueError, match="recon_x_w"):
        munit.Config.preset("fast", recon_x_w=-1)
    with pytest.raises(ValueError, match="gan_mode"):
        munit.Config.preset("fast", gan_mode="wgan")
    with pytest.raises(TypeError, match="munit.Config"):
        munit.Model({"dim": 8})
    with pytest.raises(ValueError, match="unknown cartoon_filter"):
        munit.Config.preset("fast", cartoon_filter="median")


def test_cartoon_filter_smooths_the_cartoon_generators_images_only():
    from toonlab.nn import guided_filter

    plain = munit.Model(munit.Config.preset("fast"))
    filtered = munit.Model(munit.Config.preset("fast", cartoon_filter="guided", cartoon_filter_eps=0.02))
    assert sorted(filtered.state_dict()) == sorted(plain.state_dict())  # no parameters: official layouts unchanged
    filtered.load_state_dict(plain.state_dict())
    x = _images(2, 32)
    with torch.no_grad():
        content, style = plain.gen_a.encode(x)
        assert torch.equal(filtered.gen_a.decode(content, style), plain.gen_a.decode(content, style))  # photos as drawn
        drawn = plain.gen_b.decode(content, style)
        assert torch.allclose(filtered.gen_b.decode(content, style), guided_filter(drawn, 1, 0.02), atol=1e-6)
        assert not torch.allclose(filtered.gen_b.decode(content, style), drawn, atol=1e-4)
    assert any("cartoon filter guided" in line for line in filtered.notes())
    assert munit.Config.preset("paper").cartoon_filter == "none"


def test_lr_factor_halves_every_step_size(fast_model):
    model = fast_model
    model.config.step_size = 100_000
    model.steps_per_epoch = 7  # the step policy counts steps, not epochs
    assert [model.lr_factor(s) for s in (0, 99_999, 100_000, 199_999, 250_000)] == [1, 1, 0.5, 0.5, 0.25]
    model.set_learning_rates(200_000)
    for opt in model.optimizers.values():
        assert opt.param_groups[0]["lr"] == pytest.approx(model.config.lr * 0.25)
        assert opt.param_groups[0]["weight_decay"] == 1e-4 and opt.param_groups[0]["betas"] == (0.5, 0.999)


def test_initialisation_kaiming_generators_gaussian_discriminators():
    model = munit.Model(munit.Config.preset("fast", dim=16, dis_dim=16))
    conv = model.gen_a.enc_content.model[3].model[0].model[0].conv  # 64 x 64 x 3 x 3
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)
    assert torch.count_nonzero(conv.bias) == 0
    dis_conv = model.dis_a.cnns[0][1].conv
    assert dis_conv.weight.std().item() == pytest.approx(0.02, rel=0.1)
    # same seed, same networks; the global RNG is untouched
    state = torch.get_rng_state()
    again = munit.Model(munit.Config.preset("fast", dim=16, dis_dim=16))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


# --- translation helpers -------------------------------------------------------------------------


def test_style_sampling_and_translation_helpers(fast_model):
    model = fast_model
    d = model.config.style_dim
    styles = model.sample_styles(5, generator=7)
    assert styles.shape == (5, d, 1, 1)
    assert torch.equal(styles, model.sample_styles(5, generator=torch.Generator().manual_seed(7)))
    x = _images(3, 32)
    one = model.translate(x, style=styles[0])
    assert one.shape == x.shape
    content = model.gen_a.encode(x)[0]
    torch.testing.assert_close(one, model.gen_b.decode(content, styles[0].expand(3, d, 1, 1)))
    assert torch.equal(model.translate(x, generator=3), model.translate(x, generator=3))
    assert not torch.equal(model.translate(x, generator=3), model.translate(x, generator=4))

    many = model.translate_many(x, 4, generator=5)
    assert many.shape == (4, 3, 3, 32, 32)
    first = model.sample_styles(4, generator=5)[0]
    torch.testing.assert_close(many[0], model.translate(x, style=first))

    back = model.translate(x, "BtoA", style=styles[1].flatten())
    torch.testing.assert_close(back, model.gen_a.decode(model.gen_b.encode(x)[0], styles[1].expand(3, d, 1, 1)))

    reference = _images(1, 32, seed=9)
    guided = model.translate_with_reference(x, reference)
    torch.testing.assert_close(guided, model.translate(x, style=model.gen_b.encode(reference)[1]))
    per_image = model.translate_with_reference(x, _images(3, 32, seed=10))
    assert per_image.shape == x.shape
    torch.testing.assert_close(model.style_of(reference, "B"), model.gen_b.encode(reference)[1])

    path = model.interpolate_styles(x, styles[0], styles[1], steps=3)
    assert path.shape == (3, 3, 3, 32, 32)
    torch.testing.assert_close(path[0], model.translate(x, style=styles[0]))
    torch.testing.assert_close(path[2], model.translate(x, style=styles[1]))
    torch.testing.assert_close(path[1], model.translate(x, style=(styles[0] + styles[1]) / 2))

    with pytest.raises(ValueError, match="direction"):
        model.translate(x, "AtoC")
    with pytest.raises(ValueError, match="one code"):
        model.translate(x, style=torch.zeros(2, d))
    with pytest.raises(ValueError, match="reference"):
        model.translate_with_reference(x, _images(2, 32))


# --- training ------------------------------------------------------------------------------------


def test_train_step_updates_discriminators_before_generators(fast_model):
    model = fast_model
    order = []
    for name, opt in model.optimizers.items():
        opt.register_step_pre_hook(lambda opt, args, kwargs, name=name: order.append(name))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = model.train_step(_fast_batch(model.config), Precision("fp32"), step=0)
    assert order == ["D", "G"]
    expected = ["D_total", "G_adv_A", "G_adv_B", "recon_x_A", "recon_x_B", "recon_s_A", "recon_s_B",
                "recon_c_A", "recon_c_B", "G_total"]
    assert list(losses) == expected
    assert all(isinstance(v, float) and torch.isfinite(torch.tensor(v)) for v in losses.values())
    after = model.state_dict()
    for net in ("gen_a", "gen_b", "dis_a", "dis_b"):
        changed = [k for k in before if k.startswith(net) and k.endswith("weight") and not torch.equal(before[k], after[k])]
        assert changed, f"{net} did not change"


def test_train_step_under_bf16_autocast(fast_model):
    losses = fast_model.train_step(_fast_batch(fast_model.config), Precision("bf16", "cpu"), step=0)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


def test_generator_update_leaves_discriminators_alone(fast_model):
    model = fast_model
    batch = _fast_batch(model.config)
    styles = model.training_styles(2, 2, 0)
    dis_before = [p.clone() for p in model.dis_a.parameters()]
    gen_before = [p.clone() for p in model.gen_b.parameters()]
    model.gen_update(batch["A"], batch["B"], styles["gen_a"], styles["gen_b"], Precision())
    assert all(torch.equal(a, b) for a, b in zip(dis_before, model.dis_a.parameters()))
    assert all(p.requires_grad for p in model.dis_a.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(gen_before, model.gen_b.parameters()))
    model.dis_update(batch["A"], batch["B"], styles["dis_a"], styles["dis_b"], Precision())
    assert any(not torch.equal(a, b) for a, b in zip(dis_before, model.dis_a.parameters()))


def test_loss_weights_scale_their_terms(fast_model):
    batch = _fast_batch(fast_model.config)
    runs = {}
    for weight in (10.0, 25.0):
        model = copy.deepcopy(fast_model)
        model.set_hparams(recon_x_w=weight)
        runs[weight] = model.train_step(batch, Precision(), step=3)
    low, high = runs[10.0], runs[25.0]
    # the D step and the terms are identical (same weights, same per-step styles); only the total differs
    assert low["D_total"] == high["D_total"] and low["recon_x_A"] == high["recon_x_A"]
    delta = high["G_total"] - low["G_total"]
    assert delta == pytest.approx(15.0 * (low["recon_x_A"] + low["recon_x_B"]), rel=1e-4)

    c = fast_model.config
    recomputed = (c.gan_w * (low["G_adv_A"] + low["G_adv_B"]) + c.recon_x_w * (low["recon_x_A"] + low["recon_x_B"])
                  + c.recon_s_w * (low["recon_s_A"] + low["recon_s_B"]) + c.recon_c_w * (low["recon_c_A"] + low["recon_c_B"]))
    assert low["G_total"] == pytest.approx(recomputed, rel=1e-5)


def test_cycle_and_perceptual_terms_when_enabled():
    class TinyFeatures(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return F.relu(self.conv(x))

    config = munit.Config.preset("fast", recon_x_cyc_w=10.0, vgg_w=1.0)
    model = munit.Model(config, perceptual_net=TinyFeatures())
    losses = model.train_step(_fast_batch(config), Precision(), step=0)
    for name in ("recon_cyc_A", "recon_cyc_B", "vgg_A", "vgg_B"):
        assert name in losses and losses[name] > 0
    assert not any(k.startswith("conv") or "_frozen" in k for k in model.state_dict())
    assert munit.perceptual_loss(TinyFeatures(), _images(2, 16), _images(2, 16)).item() == 0.0


def test_content_norm_none_keeps_colour_and_the_official_keys():
    """The cpu preset's content encoder without instance norm: a recoloured image gets another code."""
    official = munit.AdaINGen(dim=8, style_dim=4, mlp_dim=16, n_res=1)
    plain = munit.AdaINGen(dim=8, style_dim=4, mlp_dim=16, n_res=1, content_norm="none")
    assert list(official.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(official.state_dict())
    convs = list(plain.enc_content.model)[:-1]
    assert all(isinstance(layer.norm, nn.Identity) for layer in convs)
    x = _images(2, 32)
    shifted = (x + 0.3).clamp(-1, 1) * 0.5  # another brightness and contrast, the same layout
    # instance norm in the first layers removes most of a global colour change; without it the code moves
    change = {name: (gen.encode_content(shifted) - gen.encode_content(x)).abs().mean().item()
              for name, gen in (("official", official), ("plain", plain))}
    assert change["plain"] > 2 * change["official"]
    with pytest.raises(ValueError, match="content_norm"):
        munit.Config.preset("fast", content_norm="batch")


def test_colour_anchor_term_when_enabled(fast_model):
    config = munit.Config.preset("fast", colour_w=3.0)
    model = munit.Model(config)
    losses = model.train_step(_fast_batch(config), Precision(), step=0)
    assert losses["colour_A"] > 0 and losses["colour_B"] > 0
    plain = fast_model.train_step(_fast_batch(config), Precision(), step=0)
    assert "colour_A" not in plain
    # the weighted total holds the colour terms with their weight
    rest = losses["G_total"] - config.colour_w * (losses["colour_A"] + losses["colour_B"])
    assert rest == pytest.approx(plain["G_total"], rel=1e-4)


def test_warmup_trains_the_generators_alone_then_the_official_step():
    config = munit.Config.preset("fast", warmup_steps=1)
    model = munit.Model(config)
    dis_before = [p.detach().clone() for p in model.dis_a.parameters()]
    gen_before = [p.detach().clone() for p in model.gen_b.parameters()]
    batch = _fast_batch(config)
    first = model.train_step(batch, Precision(), step=0)
    assert set(first) == {"recon_x_A", "recon_x_B", "warmup_ab", "warmup_ba", "G_total"}
    expected = config.recon_x_w * (first["recon_x_A"] + first["recon_x_B"]) + first["warmup_ab"] + first["warmup_ba"]
    assert first["G_total"] == pytest.approx(expected, rel=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(dis_before, model.dis_a.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(gen_before, model.gen_b.parameters()))
    # warmup_ab is |G_b(c_a, s) - x_a|: the cartoon decoder learns to draw the photo
    assert first["warmup_ab"] > 0
    second = model.train_step(batch, Precision(), step=1)
    assert "D_total" in second and "warmup_ab" not in second
    assert any(not torch.equal(a, b) for a, b in zip(dis_before, model.dis_a.parameters()))


def test_parts_perceptual_features_offline_and_the_notes():
    from toonlab.parts import PartsFeatures

    config = munit.Config.preset("fast", vgg_w=1.0, perceptual_features="parts", warmup_steps=2, colour_w=1.0)
    model = munit.Model(config)
    net = model.perceptual_net
    assert isinstance(net, PartsFeatures) and list(net.weights) == ["parts"]
    losses = model.train_step(_fast_batch(config), Precision(), step=2)
    assert losses["vgg_A"] > 0 and losses["vgg_B"] > 0
    assert not any("net." in k for k in model.state_dict())  # the frozen segmenter is not saved
    notes = " ".join(model.notes())
    assert "part segmenter" in notes and "first 2 steps" in notes and "colour anchor weight 1.0" in notes
    assert munit.Model(munit.Config.preset("paper")).notes() == []
    with pytest.raises(ValueError, match="perceptual_features"):
        munit.Config.preset("fast", perceptual_features="vgg19")


def test_same_seed_same_losses_and_state_saves_weights_only():
    config = munit.Config.preset("fast")
    results = []
    for _ in range(2):
        model = munit.Model(config)
        results.append([model.train_step(_fast_batch(config, s), Precision(), s) for s in range(2)])
    assert results[0] == results[1]
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": {k: o.state_dict() for k, o in model.optimizers.items()},
                "extra": model.extra_state(), "config": model.config_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["config"]["dim"] == config.dim
    rebuilt = build_model("munit", config=munit.Config(**loaded["config"]))
    rebuilt.load_state_dict(loaded["model"])
    x = _images(2, 32)
    torch.testing.assert_close(rebuilt.translate(x, generator=1), model.translate(x, generator=1))


def test_vgg16_trunk_has_no_pool4_and_missing_weights_error(tmp_path):
    vgg = munit.load_vgg16_relu5_3(weights=None)
    layers = list(vgg.features)
    assert len(layers) == 29 and sum(isinstance(m, nn.MaxPool2d) for m in layers) == 3
    assert isinstance(layers[22], nn.ReLU) and isinstance(layers[23], nn.Conv2d)  # relu4_3 -> conv5_1
    with torch.no_grad():
        assert vgg(_images(1, 32)).shape == (1, 512, 4, 4)
    with pytest.raises(VGGWeightsUnavailable, match="does not exist"):
        munit.load_vgg16_relu5_3(tmp_path / "missing.pth")
    # a torchvision-layout file: its "features.*" weights end up in the trunk, pool4 skipped
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(4)
    features = make_layers(cfgs["D"])
    path = tmp_path / "vgg16-397923af.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    loaded = munit.load_vgg16_relu5_3(path)
    assert torch.equal(loaded.features[23].weight, features[24].weight)  # conv5_1
    assert not any(p.requires_grad for p in loaded.parameters())
