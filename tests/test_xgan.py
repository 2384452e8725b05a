"""XGAN: shared layers, the gradient reversal, each loss term, the update order, the presets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from toonlab.models import build_model, xgan
from toonlab.models.base import Precision
from toonlab.nn import count_parameters


@pytest.fixture
def model():
    return build_model("xgan", "fast")


def _images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- networks --------------------------------------------------------------------------------


def test_paper_layout_at_64_px():
    model = build_model("xgan", "paper")
    assert xgan.encoder_channels(64, 32) == [32, 64, 128, 256]
    x = _images(4, 64)
    assert model.enc_a(x).shape == (4, 64, 16, 16)  # two own stride-2 convolutions
    assert model.enc_shared.convs(model.enc_a(x)).shape == (4, 256, 4, 4)  # two shared ones, to 4 x 4
    z = model.encode(x, "A")
    assert z.shape == (4, 1024)
    assert torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)  # L2-normalised
    assert model.dec_shared(z).shape == (4, 256, 8, 8)  # 1024 -> 512 x 4 x 4 -> 256 x 8 x 8
    assert model.decode(z, "B").shape == (4, 3, 64, 64)
    assert [m.out_channels for m in model.dec_b.modules() if isinstance(m, nn.ConvTranspose2d)] == [128, 64, 3]
    assert model.classifier(z).shape == (4,)
    assert model.dis_b(x).shape == (4, 1)
    assert model.dis_a is None  # the paper's GAN is on cartoons only
    counts = {name: count_parameters(getattr(model, name)) for name in
              ("enc_a", "enc_shared", "dec_shared", "dec_a", "classifier", "dis_b")}
    assert counts == {"enc_a": 34_592, "enc_shared": 5_903_488, "dec_shared": 10_488_064, "dec_a": 659_011,
                      "classifier": 278_913, "dis_b": 42_545}  # docs/reference.md §4.1


def test_shared_layers_are_one_set_of_parameters_used_by_both_domains(model):
    x = _images()
    names = dict(model.named_parameters())
    shared = [p for n, p in names.items() if n.startswith(("enc_shared.", "dec_shared."))]
    assert shared and len({p.data_ptr() for p in shared}) == len(shared)
    in_optimizer = [p for group in model.optimizers["G"].param_groups for p in group["params"]]
    assert sum(any(p is q for q in in_optimizer) for p in shared) == len(shared)  # each exactly once
    assert len(in_optimizer) == len({id(p) for p in in_optimizer})
    for domain, own_enc, other_enc, own_dec, other_dec in (("A", "enc_a", "enc_b", "dec_a", "dec_b"),
                                                           ("B", "enc_b", "enc_a", "dec_b", "dec_a")):
        model.zero_grad(set_to_none=True)
        model.decode(model.encode(x, domain), domain).sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        assert all(grads[n] is not None for n in names if n.startswith(("enc_shared.", "dec_shared.")))
        assert all(grads[n] is not None for n in names if n.startswith((own_enc + ".", own_dec + ".")))
        assert all(grads[n] is None for n in names if n.startswith((other_enc + ".", other_dec + ".")))


def test_translation_is_the_other_decoder_of_the_embedding(model):
    x = _images()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.translate(x, "AtoB"), model.decode(model.encode(x, "A"), "B"))
        assert torch.equal(model.translate(x, "BtoA"), model.decode(model.encode(x, "B"), "A"))
    model.train()
    model.translate(x)
    assert model.training  # translate leaves the training mode as it was


def test_cartoon_filter_smooths_the_drawn_cartoons_only():
    from toonlab.nn import guided_filter

    plain = build_model("xgan", "fast")
    filtered = build_model("xgan", "fast", cartoon_filter="guided", cartoon_filter_eps=0.02)
    filtered.load_state_dict(plain.state_dict())  # same weights: the filter has no parameters
    z = plain.encode(_images(), "A")
    with torch.no_grad():
        assert torch.equal(filtered.decode(z, "A"), plain.decode(z, "A"))  # photos as drawn
        assert torch.allclose(filtered.decode(z, "B"), guided_filter(plain.decode(z, "B"), 1, 0.02))
        assert not torch.allclose(filtered.decode(z, "B"), plain.decode(z, "B"))
    assert any("cartoon filter guided" in line for line in filtered.notes())
    assert xgan.Config.preset("paper").cartoon_filter == "none"


def test_wrong_images_and_names_are_refused_clearly(model):
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\).*resize"):
        model.encode(_images(2, 64), "A")
    with pytest.raises(ValueError, match="domain must be 'A'"):
        model.encode(_images(), "C")
    with pytest.raises(ValueError, match="unknown direction"):
        model.translate(_images(), "AtoA")


# --- gradient reversal -------------------------------------------------------------------------


def test_reverse_gradient_is_identity_forward_and_negates_backward():
    x = torch.randn(3, 5, requires_grad=True)
    y = xgan.reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    weights = torch.randn(3, 5)
    (y * weights).sum().backward()
    assert torch.equal(x.grad, -0.5 * weights)
    assert "scale=2.0" in repr(xgan.GradientReversal(2.0))


@pytest.mark.parametrize("weight", [1.0, 0.3])
def test_encoder_gradient_from_the_classifier_is_the_negative_of_the_unreversed_one(model, weight):
    x_a, x_b = _images(seed=1), _images(seed=2)

    def gradients(reverse: bool):
        model.zero_grad(set_to_none=True)
        loss = weight * xgan.domain_adversarial_loss(model.classifier, model.encode(x_a, "A"),
                                                     model.encode(x_b, "B"), reverse=reverse)
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    reversed_, plain = gradients(True), gradients(False)
    assert set(reversed_) == set(plain)
    encoder_names = [n for n in plain if n.startswith(("enc_a.", "enc_b.", "enc_shared."))]
    classifier_names = [n for n in plain if n.startswith("classifier.")]
    assert encoder_names and classifier_names
    for name in encoder_names:  # the encoders are pushed to mix the domains
        assert torch.allclose(reversed_[name], -plain[name], rtol=1e-5, atol=1e-8), name
        assert plain[name].abs().sum() > 0
    for name in classifier_names:  # the classifier still learns to tell them apart
        assert torch.equal(reversed_[name], plain[name]), name


def test_a_module_backward_method_reverses_nothing():
    """The bug docs/reference.md §4 names: autograd never calls an nn.Module's backward."""

    class ModuleReversal(nn.Module):
        def forward(self, x):
            return x.view_as(x)

        def backward(self, grad):  # never called by autograd
            return -grad

    x = torch.randn(4, requires_grad=True)
    ModuleReversal()(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(4))  # not reversed
    x.grad = None
    xgan.GradientReversal()(x).sum().backward()
    assert torch.equal(x.grad, -torch.ones(4))


# --- losses ------------------------------------------------------------------------------------


def test_reconstruction_loss_is_squared_or_absolute_error():
    x, y = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert xgan.reconstruction_loss(y, x, "l2").item() == pytest.approx(0.25)
    assert xgan.reconstruction_loss(y, x, "l1").item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="l2, l1"):
        xgan.reconstruction_loss(y, x, "l3")


def test_domain_adversarial_loss_is_log2_at_chance_and_small_when_the_classifier_is_right():
    z_a, z_b = torch.randn(4, 8), torch.randn(4, 8)
    undecided = nn.Linear(8, 1)
    nn.init.zeros_(undecided.weight), nn.init.zeros_(undecided.bias)
    assert xgan.domain_adversarial_loss(lambda z: undecided(z).squeeze(1), z_a, z_b).item() == pytest.approx(math.log(2))
    right = xgan.domain_adversarial_loss(lambda z: (z[:, 0] > 0).float() * 20 - 10, -torch.ones(4, 8), torch.ones(4, 8))
    assert right.item() < 1e-4
    wrong = xgan.domain_adversarial_loss(lambda z: (z[:, 0] > 0).float() * 20 - 10, torch.ones(4, 8), -torch.ones(4, 8))
    assert wrong.item() > 9


def test_semantic_consistency_loss_is_the_mean_euclidean_distance():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert xgan.semantic_consistency_loss(a, b).item() == pytest.approx(math.sqrt(2) / 2)
    assert xgan.semantic_consistency_loss(a, a).item() == 0


def test_teacher_loss_is_zero_when_the_head_reproduces_the_teacher_and_positive_otherwise():
    z = torch.randn(3, 6)
    head = nn.Linear(6, 6, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(6))
    assert xgan.teacher_loss(z, 5 * z, head).item() == pytest.approx(0, abs=1e-6)  # lengths do not matter
    assert xgan.teacher_loss(z, -z, head).item() == pytest.approx(2, abs=1e-5)


def test_teacher_vector_pools_the_teacher_map_to_4_by_4():
    teacher = nn.Conv2d(3, 5, 1)
    assert xgan.teacher_vector(teacher, _images(2, 32)).shape == (2, 5 * 16)


# --- training ----------------------------------------------------------------------------------


def test_train_step_reports_every_term_and_changes_every_trained_network(model):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model.train_step({"A": _images(seed=1), "B": _images(seed=2)}, Precision(), 0)
    assert set(out) == {"D_total", "rec_A", "rec_B", "dann", "sem_A", "sem_B", "gan_B", "G_total"}
    assert all(math.isfinite(v) for v in out.values())
    for prefix in ("enc_a.", "enc_b.", "enc_shared.", "dec_shared.", "dec_a.", "dec_b.", "classifier.", "dis_b."):
        assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n.startswith(prefix)), prefix


def test_generator_update_leaves_the_discriminator_alone(model):
    before = [p.detach().clone() for p in model.dis_b.parameters()]
    model.gen_update(_images(seed=1), _images(seed=2), Precision())
    assert all(torch.equal(a, b) for a, b in zip(before, model.dis_b.parameters()))
    assert all(p.requires_grad for p in model.dis_b.parameters())


def test_warmup_trains_reconstruction_only_at_its_own_rate():
    model = build_model("xgan", "fast", warmup_steps=2, warmup_lr=1e-3)
    dis_before = [p.detach().clone() for p in model.dis_b.parameters()]
    out = model.train_step({"A": _images(seed=1), "B": _images(seed=2)}, Precision(), 0)
    assert set(out) == {"rec_A", "rec_B", "warmup_ab", "warmup_ba", "G_total"}
    assert out["G_total"] == pytest.approx(sum(v for k, v in out.items() if k != "G_total"), rel=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(dis_before, model.dis_b.parameters()))
    assert model.base_lr("G", 1) == 1e-3 and model.base_lr("G", 2) == model.config.lr


def test_options_add_their_terms():
    model = build_model("xgan", "fast", gan_photos=True, colour_w=2.0, teacher="parts", teacher_w=0.5,
                        rec_loss="l1", norm="instance", upsample="resize", flat_w=3.0)
    assert model.dis_a is not None and model.teacher_head is not None
    with torch.no_grad():
        terms = model.generator_losses(_images(seed=1), _images(seed=2))
    weighted = {"rec": 1.0, "dann": 1.0, "sem": 1.0, "gan": 1.0, "teacher": 0.5, "colour": 2.0, "flat": 3.0}
    expected = sum(weighted[name.split("_")[0]] * value for name, value in terms.items() if name != "G_total")
    assert torch.isclose(terms["G_total"], expected)
    out = model.train_step({"A": _images(seed=1), "B": _images(seed=2)}, Precision(), 0)
    assert {"gan_A", "teacher", "colour_A", "colour_B", "flat_B"} <= set(out)
    assert not any(k.startswith("frozen") for k in model.state_dict())  # the teacher is not saved
    assert any(k.startswith("teacher_head.") for k in model.state_dict())  # its head is


def test_teacher_on_both_domains_and_a_plain_warmup():
    model = build_model("xgan", "fast", teacher="parts", teacher_w=2.0, teacher_both=True, warmup_steps=1,
                        warmup_cross_w=0.0)
    x_a, x_b = _images(seed=1), _images(seed=2)
    with torch.no_grad():
        warm = model.warmup_losses(x_a, x_b)
        full = model.generator_losses(x_a, x_b)
    assert set(warm) == {"rec_A", "rec_B", "teacher", "teacher_B", "G_total"}  # no cross-domain terms
    assert torch.isclose(warm["G_total"], warm["rec_A"] + warm["rec_B"] + 2.0 * (warm["teacher"] + warm["teacher_B"]))
    assert {"teacher", "teacher_B"} <= set(full)
    assert not torch.isclose(full["teacher"], full["teacher_B"])  # each domain against its own teacher vector


def test_gradient_reversal_lets_the_encoders_fool_the_classifier():
    """Trained on two separable domains with only the domain-adversarial term, the classifier ends near chance."""
    torch.manual_seed(0)
    model = build_model("xgan", "fast", rec_w=0.0, sem_w=0.0, gan_w=0.0, lr=1e-3)
    x_a, x_b = _images(8, seed=1) * 0.2 - 0.6, _images(8, seed=2) * 0.2 + 0.6  # dark photos, bright cartoons
    values = []
    for step in range(60):
        values.append(model.train_step({"A": x_a, "B": x_b}, Precision(), step)["dann"])
    assert abs(sum(values[-10:]) / 10 - math.log(2)) < 0.1
    # without the reversal the same training separates them: the loss falls far below chance
    separating = build_model("xgan", "fast", rec_w=0.0, sem_w=0.0, gan_w=0.0, lr=1e-3)
    opt = separating.optimizers["G"]
    for _ in range(60):
        opt.zero_grad()
        loss = xgan.domain_adversarial_loss(separating.classifier, separating.encode(x_a, "A"),
                                            separating.encode(x_b, "B"), reverse=False)
        loss.backward()
        opt.step()
    assert loss.item() < 0.2


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    (dict(image_size=48), "power of two"),
    (dict(image_size=16), "at least 32"),
    (dict(norm="group"), "unknown norm"),
    (dict(teacher_w=1.0), "needs a teacher"),
    (dict(batch_size=1), "batch norm needs at least 2"),
    (dict(dann_w=-1.0), "dann_w"),
    (dict(cartoon_filter="box"), "unknown cartoon_filter"),
    (dict(cartoon_filter_eps=-0.1), "cartoon_filter_eps"),
])
def test_bad_configs_say_what_to_change(overrides, message):
    with pytest.raises(ValueError, match=message):
        xgan.Config.preset("fast", **{"norm": "batch", **overrides})


def test_presets_and_sliders():
    assert xgan.Config.preset("paper") == xgan.Config()
    cpu = xgan.Config.preset("cpu")
    assert cpu.image_size == 64 and cpu.teacher == "parts"
    model = build_model("xgan", "fast")
    model.set_hparams(dann_w=0.5, sem_w=2)
    assert model.config.dann_w == 0.5 and model.config.sem_w == 2.0
    with pytest.raises(ValueError, match="not a tunable"):
        model.set_hparams(width=3)
