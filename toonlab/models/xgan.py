"""XGAN (Royer et al. 2017, arXiv 1711.05139): one embedding for faces and cartoons.

A dual adversarial auto-encoder. Each domain has its own encoder, whose last layers are shared, so
a photo and a cartoon land in one embedding space (an L2-normalised vector); each domain has its own
decoder, whose first layers are shared. Translation photo -> cartoon is the cartoon decoder of the
photo encoder's embedding, ``d_b(e_a(x))``. Unlike CycleGAN's image-to-image generators the whole
face goes through one small vector, so the decoder can draw a cartoon face of another shape; the
founding report's pain is the price: what the vector does not hold (the person's exact colours and
features) is lost.

Objective (paper eq. 6, weights as :class:`Config` fields):
``rec_w * L_rec + dann_w * L_dann + sem_w * L_sem + gan_w * L_gan + teacher_w * L_teach``:

* :func:`reconstruction_loss` — each domain auto-encodes itself (paper eq. 1);
* :func:`domain_adversarial_loss` — a classifier on the embedding tells photos from cartoons; a
  :class:`GradientReversal` between embedding and classifier makes the encoders fool it in the same
  backward pass (Ganin & Lempitsky 2015; paper eq. 2);
* :func:`semantic_consistency_loss` — a translation keeps its embedding: ``e_a(x)`` and
  ``e_b(d_b(e_a(x)))`` agree, and the other way round (paper eq. 3);
* GAN (paper eq. 4) on translated cartoons (and photos with ``gan_photos``);
* :func:`teacher_loss` — optional prior knowledge (paper eq. 5): the paper distils a FaceNet
  embedding of the photo; offline on the built-in portraits toonlab's synthetic part segmenter
  (:mod:`toonlab.parts`) serves as the teacher.

XGAN has no official code (docs/reference.md §4): the paper preset follows the paper's text, and
where it is silent the choices are written beside each field. Notebook 04 teaches it:
§"One embedding for two domains", §"Gradient reversal", §"Losses", §"Training step", §"What XGAN keeps".
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from toonlab.config import check_at_least
from toonlab.losses import GAN_MODES, GANLoss, colour_anchor_loss, flatness_loss
from toonlab.models.base import Precision, TranslationModel, lowercase_domain_renames
from toonlab.nn import CartoonFilterOptions, FrozenNets, init_weights, make_activation, make_norm, set_requires_grad

DIRECTIONS = ("AtoB", "BtoA")
DOMAINS = ("A", "B")
#: normalisation after each convolution of encoders and decoders
XGAN_NORMS = ("batch", "instance", "none")
#: Config.rec_loss: squared (the paper's L2) or absolute pixel error
REC_LOSSES = ("l2", "l1")
#: Config.teacher: no teacher, or toonlab's synthetic part segmenter (the paper uses FaceNet)
TEACHERS = ("none", "parts")
#: Config.upsample: transposed convolutions (the paper's) or nearest upsampling + convolution
UPSAMPLES = ("deconv", "resize")
#: stride-2 convolutions in each domain's own encoder (the rest are shared)
DOMAIN_DOWNSAMPLINGS = 2
#: transposed convolutions in each domain's own decoder (the last one draws RGB)
DOMAIN_UPSAMPLINGS = 3
#: the spatial size the encoder's convolutions end at, before the fully connected layers
BOTTOM = 4


# --- networks (notebook 04 §"One embedding for two domains") ----------------------------------


def _down(c_in: int, c_out: int, norm: str) -> nn.Sequential:
    """``conv 4x4 stride 2 | norm | LeakyReLU 0.2``: halves height and width."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1), make_norm(norm, c_out), make_activation("lrelu"))


def _up(c_in: int, c_out: int, norm: str, upsample: str, last: bool = False) -> nn.Sequential:
    """Doubles height and width: ``deconv 4x4 stride 2`` (or ``nearest x2 | conv 3x3``), then norm and ReLU (tanh when ``last``)."""
    if upsample == "deconv":
        layers: list[nn.Module] = [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)]
    else:
        layers = [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1)]
    if last:
        return nn.Sequential(*layers, nn.Tanh())
    return nn.Sequential(*layers, make_norm(norm, c_out), make_activation("relu"))


def encoder_channels(image_size: int, width: int) -> list[int]:
    """Output channels of the encoder's stride-2 convolutions: ``width * 2**i`` until the map is 4 x 4.

    64 px and width 32 (the paper): 32, 64 (per domain), 128, 256 (shared), a 256 x 4 x 4 map.
    """
    count = int(round(math.log2(image_size / BOTTOM)))
    return [width * 2**i for i in range(count)]


def decoder_widths(channels: list[int]) -> list[int]:
    """The decoder's channels from the 4 x 4 map up: twice the encoder's last, then the encoder's in reverse.

    64 px and width 32 (the paper): 512, 256 (shared), 128, 64 (per domain), before the RGB layer.
    """
    return [channels[-1] * 2] + channels[::-1]


class DomainEncoder(nn.Module):
    """One domain's own first layers: two ``conv 4x4 s2`` blocks, image ``(N, 3, S, S)`` -> ``(N, 2w, S/4, S/4)``."""

    def __init__(self, channels: list[int], norm: str = "batch"):
        super().__init__()
        own = channels[:DOMAIN_DOWNSAMPLINGS]
        self.model = nn.Sequential(*[_down(c_in, c_out, norm) for c_in, c_out in zip([3] + own[:-1], own)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SharedEncoder(nn.Module):
    """The encoder layers both domains share: convolutions down to 4 x 4, two fully connected layers, L2 norm.

    ``(conv 4x4 s2 | norm | LReLU)`` per remaining channel count, flatten, ``Linear -> embedding_dim |
    BatchNorm1d (when norm is batch) | LReLU | Linear -> embedding_dim``, then each vector divided by
    its length: the embedding lies on the unit sphere (paper §3: "L2-normalised"), so the distances
    of the semantic loss have a fixed scale.
    """

    def __init__(self, channels: list[int], embedding_dim: int = 1024, norm: str = "batch"):
        super().__init__()
        shared = channels[DOMAIN_DOWNSAMPLINGS - 1:]
        self.convs = nn.Sequential(*[_down(c_in, c_out, norm) for c_in, c_out in zip(shared[:-1], shared[1:])])
        flat = channels[-1] * BOTTOM * BOTTOM
        self.fc = nn.Sequential(
            nn.Linear(flat, embedding_dim),
            nn.BatchNorm1d(embedding_dim) if norm == "batch" else nn.Identity(),
            make_activation("lrelu"),
            nn.Linear(embedding_dim, embedding_dim),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(self.convs(features).flatten(1)), dim=1)


class SharedDecoder(nn.Module):
    """The decoder layers both domains share: the embedding as a ``1 x 1`` map, ``deconv 4x4`` to 4 x 4, then up.

    ``(N, embedding_dim)`` -> ``(N, 2 * channels[-1], 4, 4)`` -> ... -> ``(N, channels[2], S/8, S/8)``
    (paper at 64 px: 1024 -> 512 x 4 x 4 -> 256 x 8 x 8).
    """

    def __init__(self, channels: list[int], embedding_dim: int = 1024, norm: str = "batch",
                 upsample: str = "deconv"):
        super().__init__()
        widths = decoder_widths(channels)
        top = widths[0]
        layers: list[nn.Module] = [nn.ConvTranspose2d(embedding_dim, top, BOTTOM, 1, 0), make_norm(norm, top),
                                   make_activation("relu")]
        shared_ups = len(channels) - DOMAIN_UPSAMPLINGS
        for c_in, c_out in zip(widths[:shared_ups], widths[1:shared_ups + 1]):
            layers.append(_up(c_in, c_out, norm, upsample))
        self.model = nn.Sequential(*layers)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.model(embedding.reshape(embedding.size(0), -1, 1, 1))


class DomainDecoder(nn.Module):
    """One domain's own last layers: three doublings, the last to RGB with tanh (paper at 64 px: 256 -> 128 -> 64 -> 3)."""

    def __init__(self, channels: list[int], norm: str = "batch", upsample: str = "deconv"):
        super().__init__()
        own = decoder_widths(channels)[len(channels) - DOMAIN_UPSAMPLINGS:len(channels)]
        layers = [_up(c_in, c_out, norm, upsample) for c_in, c_out in zip(own[:-1], own[1:])]
        layers.append(_up(own[-1], 3, norm, upsample, last=True))
        self.model = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features)


class DomainClassifier(nn.Module):
    """``c_dann``: embedding -> one logit, "this came from a cartoon" (``Linear 256 | LReLU | Linear 64 | LReLU | Linear 1``)."""

    def __init__(self, embedding_dim: int = 1024, hidden: tuple[int, ...] = (256, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((embedding_dim,) + hidden[:-1], hidden):
            layers += [nn.Linear(c_in, c_out), make_activation("lrelu")]
        layers.append(nn.Linear(hidden[-1], 1))
        self.model = nn.Sequential(*layers)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.model(embedding).squeeze(1)


class Discriminator(nn.Module):
    """Image -> one real/fake logit: ``conv 4x4 s2`` blocks (no norm on the first, then ``norm``), flatten, Linear.

    ``dim, 2*dim, 2*dim, ...`` channels for ``n_layers`` blocks (16-32-32-32 at 64 px in docs/reference.md §4's
    reimplementation A), LeakyReLU 0.2.
    """

    def __init__(self, image_size: int = 64, dim: int = 16, n_layers: int = 4, norm: str = "batch"):
        super().__init__()
        widths = [dim] + [dim * 2] * (n_layers - 1)
        layers: list[nn.Module] = []
        for index, (c_in, c_out) in enumerate(zip([3] + widths[:-1], widths)):
            layers.append(_down(c_in, c_out, "none" if index == 0 else norm))
        self.convs = nn.Sequential(*layers)
        side = image_size // 2**n_layers
        self.fc = nn.Linear(widths[-1] * side * side, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x).flatten(1))


# --- gradient reversal (notebook 04 §"Gradient reversal") --------------------------------------


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the backward pass multiplies the incoming gradient by ``-scale``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = float(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``x`` unchanged, but gradients flowing back through it are multiplied by ``-scale`` (Ganin & Lempitsky 2015).

    Why a ``torch.autograd.Function``: autograd calls only the ``backward`` of a Function. A
    ``backward`` method on an ``nn.Module`` (as in one public XGAN reimplementation, docs/reference.md
    §4) is never called, so nothing is reversed and the encoders *help* the domain classifier.
    """
    return _ReverseGradient.apply(x, scale)


class GradientReversal(nn.Module):
    """:func:`reverse_gradient` as a layer (``scale`` is a plain attribute, not a parameter)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


# --- losses (notebook 04 §"Losses", one cell each) ------------------------------------------------


def reconstruction_loss(reconstructed: torch.Tensor, image: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Paper eq. 1: ``mean ||x - d_i(e_i(x))||`` per pixel, squared (``l2``, the paper's) or absolute (``l1``)."""
    if kind == "l2":
        return F.mse_loss(reconstructed.float(), image.float())
    if kind == "l1":
        return F.l1_loss(reconstructed.float(), image.float())
    raise ValueError(f"unknown reconstruction loss {kind!r}; choose one of {', '.join(REC_LOSSES)}")


def domain_adversarial_loss(classifier: nn.Module, embedding_a: torch.Tensor, embedding_b: torch.Tensor,
                            reverse: bool = True) -> torch.Tensor:
    """Paper eq. 2: the classifier's cross-entropy at telling photo (label 0) from cartoon (label 1) embeddings.

    The mean over both batches, so ``log 2 = 0.693`` is chance: a value near it means the encoders
    have made the domains indistinguishable. With ``reverse`` the embeddings pass through
    :func:`reverse_gradient` first: minimising this one loss then trains the classifier to separate
    the domains and, in the same backward pass, the encoders to mix them.
    """
    if reverse:
        embedding_a, embedding_b = reverse_gradient(embedding_a), reverse_gradient(embedding_b)
    logits_a, logits_b = classifier(embedding_a).float(), classifier(embedding_b).float()
    loss_a = F.binary_cross_entropy_with_logits(logits_a, torch.zeros_like(logits_a))
    loss_b = F.binary_cross_entropy_with_logits(logits_b, torch.ones_like(logits_b))
    return 0.5 * (loss_a + loss_b)


def semantic_consistency_loss(embedding: torch.Tensor, embedding_of_translation: torch.Tensor) -> torch.Tensor:
    """Paper eq. 3, one direction: ``mean ||e_a(x) - e_b(d_b(e_a(x)))||_2`` (0 to 2 for unit vectors).

    Why: reconstruction and the classifier alone let the cartoon decoder draw *some* cartoon; this
    term asks that the cartoon it drew be understood by the cartoon encoder as the same face. Neither
    side is detached (the paper's formula).
    """
    return (embedding.float() - embedding_of_translation.float()).norm(dim=1).mean()


def teacher_loss(embedding: torch.Tensor, teacher_features: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """Paper eq. 5: ``mean ||normalise(head(e_a(x))) - normalise(T(x))||_2``: the embedding carries what the teacher sees.

    The paper's teacher is a FaceNet embedding of the photo; toonlab's (offline, built-in portraits
    only) is its part segmenter's bottleneck pooled to 4 x 4 (:func:`teacher_vector`). ``head`` is a
    linear map trained with the encoders, because the teacher's vector has another size than the
    embedding: the embedding must hold the teacher's knowledge linearly, not equal it.
    """
    prediction = F.normalize(head(embedding).float(), dim=1)
    return (prediction - F.normalize(teacher_features.float().flatten(1), dim=1)).norm(dim=1).mean()


@torch.no_grad()
def teacher_vector(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The teacher's view of photos ``x``: its feature map averaged to 4 x 4 and flattened (``(N, C * 16)``)."""
    return F.adaptive_avg_pool2d(teacher(x).float(), BOTTOM).flatten(1)


# --- config ----------------------------------------------------------------------------------------


@dataclass
class Config(CartoonFilterOptions):
    """XGAN hyper-parameters. The paper preset is the paper's text; where it is silent, each choice is named here.

    From the paper (arXiv 1711.05139 v6 §3-4 and appendix, recalled: docs/reference.md §4 — check the PDF
    before citing): 64 x 64 images, per-domain encoders whose last layers are shared, an L2-normalised
    1024-d embedding, per-domain decoders whose first layers are shared, the five-term objective with a
    domain-adversarial classifier, Adam. Chosen where the paper gives no value (docs/reference.md §4's
    reimplementation A, 64 px): layer widths ``width`` 32 (32-64 per domain, 128-256 shared, 512-256
    shared decoder, 128-64-3 per domain), batch norm and LeakyReLU 0.2 in the encoders, ReLU in the
    decoders, transposed convolutions, classifier 1024-256-64-1, discriminator 16-32-32-32 + Linear,
    least-squares GAN, lr 1e-4 with betas (0.5, 0.999), every loss weight 1, squared reconstruction
    error, batch 32 (reimplementation B) and 50,000 iterations. The teacher (FaceNet in the paper) is
    off: its weights are not installable offline.
    """

    image_size: int = 64
    batch_size: int = 32
    width: int = 32
    embedding_dim: int = 1024
    norm: str = "batch"
    upsample: str = "deconv"
    dis_dim: int = 16
    dis_n_layers: int = 4
    gan_mode: str = "lsgan"
    #: also train a photo discriminator on cartoon -> photo translations (the paper: cartoons only)
    gan_photos: bool = False
    rec_loss: str = "l2"
    rec_w: float = 1.0
    dann_w: float = 1.0
    sem_w: float = 1.0
    gan_w: float = 1.0
    teacher: str = "none"
    teacher_w: float = 0.0
    #: toonlab deviation (off in ``paper``): the teacher also reads the cartoons (``teacher_B``). The paper's
    #: FaceNet knows photos only; the part segmenter was trained on photos and cartoons with the same labels,
    #: so both domains' embeddings are pulled to one domain-free target, which aligns the shared space
    teacher_both: bool = False
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    max_iter: int = 50_000
    seed: int = 0
    #: toonlab deviation (off in ``paper``): weight of the colour anchor on both translations
    #: (:func:`toonlab.losses.colour_anchor_loss`): the cartoon keeps the person's colours
    colour_w: float = 0.0
    #: toonlab deviation (off in ``paper``): weight of the flatness prior on translated cartoons
    #: (:func:`toonlab.losses.flatness_loss`): small colour steps (speckle, texture) cost, outlines do not
    flat_w: float = 0.0
    #: toonlab deviation (off in ``paper``): the first ``warmup_steps`` iterations train encoders and
    #: decoders alone to reproduce each image in both domains' decoders (as MUNIT's cpu warm-up), so the
    #: adversarial phase starts from faces
    warmup_steps: int = 0
    #: the warm-up's learning rate (``None``: ``lr``)
    warmup_lr: float | None = None
    #: weight of the warm-up's cross-domain terms ``warmup_ab``/``warmup_ba`` (0: plain auto-encoding)
    warmup_cross_w: float = 1.0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # a laptop CPU: the paper's 64 px and layout at half the widths and a 256-d embedding, batch 8,
        # 1,500 iterations (about 6 minutes on 2 cores). Measured (benchmarks/results/ablation_xgan_cpu.json,
        # protocol toonlab-synthetic-v1): the paper's recipe at this size ends in grey speckled faces; the
        # deviations, each off in "paper": a 600-step warm-up at lr 3e-4 (auto-encoding, each image also
        # drawn by the other decoder; at lr 1e-3 the auto-encoders stalled), the absolute reconstruction
        # error at weight 10, the colour anchor (colour_w 10), the flatness prior (flat_w 10: without it
        # the GAN phase fills the faces with speckle), a GAN weight of 0.1 and a domain-adversarial
        # weight of 0.1, the part segmenter as the teacher (teacher_w 1), and the cartoon filter (the drawn
        # cartoons through the self-guided filter: texture 6.7 -> 2.4, SSIM 0.55 -> 0.59, colour spread
        # 9.95 -> 9.0, strange colours 0.43 -> 0.41, L1 on the person 0.134 -> 0.133)
        "cpu": dict(batch_size=8, width=16, embedding_dim=256, dis_dim=16, lr=2e-4, max_iter=1500,
                    norm="batch", rec_loss="l1", rec_w=10.0, sem_w=1.0, dann_w=0.1, gan_w=0.1,
                    colour_w=10.0, flat_w=10.0, teacher="parts", teacher_w=1.0, warmup_steps=600,
                    warmup_lr=3e-4, cartoon_filter="guided"),
        # CI and FAST mode: 32 px, tiny nets, batch 2
        "fast": dict(image_size=32, batch_size=2, width=8, embedding_dim=32, dis_dim=8, dis_n_layers=3,
                     max_iter=20),
    }

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ValueError naming the first bad field and its allowed values."""
        for name, allowed in (("norm", XGAN_NORMS), ("upsample", UPSAMPLES), ("rec_loss", REC_LOSSES),
                              ("teacher", TEACHERS), ("gan_mode", GAN_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        check_at_least(self, 1, ("image_size", "width", "embedding_dim", "dis_dim", "dis_n_layers"))
        check_at_least(self, 0, ("max_iter", "rec_w", "dann_w", "sem_w", "gan_w", "teacher_w", "lr", "colour_w",
                                 "flat_w", "warmup_steps", "warmup_cross_w"))
        self.validate_cartoon_filter()
        smallest = BOTTOM * 2**DOMAIN_UPSAMPLINGS
        if self.image_size < smallest or self.image_size & (self.image_size - 1):
            raise ValueError(f"image_size must be a power of two and at least {smallest} (the encoder halves it down "
                             f"to {BOTTOM} x {BOTTOM}, the decoders' own layers double it {DOMAIN_UPSAMPLINGS} times), "
                             f"got {self.image_size}")
        if self.batch_size < 2 and self.norm == "batch":
            raise ValueError("batch norm needs at least 2 images per batch; raise batch_size or set norm to instance")
        if self.image_size // 2**self.dis_n_layers < 1:
            raise ValueError(f"dis_n_layers {self.dis_n_layers} halves a {self.image_size} px image below one pixel")
        if self.teacher == "none" and self.teacher_w > 0:
            raise ValueError("teacher_w > 0 needs a teacher: set teacher to 'parts' (the built-in portraits' part "
                             "segmenter) or teacher_w to 0")
        if self.warmup_lr is not None and not self.warmup_lr >= 0:
            raise ValueError(f"warmup_lr must be >= 0 or None (the lr), got {self.warmup_lr}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Config:
        """The ``paper``, ``cpu`` or ``fast`` configuration, with some fields overridden."""
        from toonlab.config import config_from_preset

        return config_from_preset(cls, name, overrides, "XGAN")

    def total_steps(self, steps_per_epoch: int = 1) -> int:
        """Length of a full run in optimisation steps (iterations)."""
        return int(self.max_iter)


# --- the model -------------------------------------------------------------------------------------


class Model(TranslationModel):
    """XGAN: encoders ``enc_a``/``enc_b`` + ``enc_shared``, decoders ``dec_shared`` + ``dec_a``/``dec_b``.

    Also ``classifier`` (the domain classifier, trained through the gradient reversal with the
    encoders by ``optimizers["G"]``), ``dis_b`` (cartoon discriminator; ``dis_a`` with
    ``gan_photos``; ``optimizers["D"]``) and ``teacher_head`` (with a teacher). The shared layers are
    one set of parameters used by both domains. Weights are drawn from ``config.seed`` (N(0, 0.02),
    the global RNG untouched). Notebook 04 §"Training step".
    """

    kind: ClassVar[str] = "xgan"
    generator_names: ClassVar[tuple[str, ...]] = ("enc_a", "enc_b", "enc_shared", "dec_shared", "dec_a", "dec_b")
    hparam_names: ClassVar[tuple[str, ...]] = ("lr", "rec_w", "dann_w", "sem_w", "gan_w", "teacher_w", "colour_w", "flat_w")
    renamed_losses: ClassVar[dict[str, str]] = lowercase_domain_renames("D", "rec", "sem", "gan", "colour", "flat", "teacher")

    def __init__(self, config: Config, teacher_net: nn.Module | None = None):
        if not isinstance(config, Config):
            raise TypeError(f"expected an xgan.Config, got {type(config).__name__}; use Config.preset(...)")
        config.validate()
        super().__init__(config)
        c = config
        channels = encoder_channels(c.image_size, c.width)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.enc_a = DomainEncoder(channels, c.norm)
            self.enc_b = DomainEncoder(channels, c.norm)
            self.enc_shared = SharedEncoder(channels, c.embedding_dim, c.norm)
            self.dec_shared = SharedDecoder(channels, c.embedding_dim, c.norm, c.upsample)
            self.dec_a = DomainDecoder(channels, c.norm, c.upsample)
            self.dec_b = DomainDecoder(channels, c.norm, c.upsample)
            self.classifier = DomainClassifier(c.embedding_dim)
            self.dis_b = Discriminator(c.image_size, c.dis_dim, c.dis_n_layers, c.norm)
            self.dis_a = Discriminator(c.image_size, c.dis_dim, c.dis_n_layers, c.norm) if c.gan_photos else None
            self.frozen = FrozenNets()
            self.teacher_head = None
            if c.teacher != "none":
                if teacher_net is None:
                    from toonlab.parts import load_parts_features

                    teacher_net = load_parts_features(blocks=("parts",))
                self.frozen.put("teacher", teacher_net)
                with torch.no_grad():
                    teacher_dim = teacher_vector(teacher_net, torch.zeros(1, 3, c.image_size, c.image_size)).size(1)
                self.teacher_head = nn.Linear(c.embedding_dim, teacher_dim)
            for module in self.children():
                init_weights(module, "normal", 0.02)
        self.criterion_gan = GANLoss(c.gan_mode)
        betas = (c.beta1, c.beta2)
        generator_side = [self.enc_a, self.enc_b, self.enc_shared, self.dec_shared, self.dec_a, self.dec_b,
                          self.classifier] + ([self.teacher_head] if self.teacher_head is not None else [])
        self.optimizers = {
            "G": torch.optim.Adam(itertools.chain(*(m.parameters() for m in generator_side)), lr=c.lr, betas=betas),
            "D": torch.optim.Adam(itertools.chain(*(d.parameters() for d in self.discriminators)), lr=c.lr, betas=betas),
        }

    @property
    def discriminators(self) -> list[nn.Module]:
        """``dis_b`` and, with ``gan_photos``, ``dis_a``: what ``optimizers["D"]`` trains and the G step freezes."""
        return [d for d in (self.dis_a, self.dis_b) if d is not None]

    # -- encoding and translation (notebook 04 §"One embedding for two domains") -----------------
    def _check_images(self, x: torch.Tensor) -> None:
        size = self.config.image_size
        if x.dim() != 4 or x.size(1) != 3 or tuple(x.shape[-2:]) != (size, size):
            raise ValueError(f"XGAN takes images of shape (N, 3, {size}, {size}) (its fully connected layers fix the "
                             f"size), got {tuple(x.shape)}; resize the images to {size} px")

    def encode(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """Embedding ``(N, embedding_dim)`` on the unit sphere of images ``x`` from ``domain`` (``"A"`` photos, ``"B"`` cartoons)."""
        self._check_images(x)
        return self.enc_shared(self._own(domain, self.enc_a, self.enc_b)(x))

    def decode(self, embedding: torch.Tensor, domain: str) -> torch.Tensor:
        """Image in [-1, 1] of ``domain`` drawn from embeddings ``(N, embedding_dim)``."""
        image = self._own(domain, self.dec_a, self.dec_b)(self.dec_shared(embedding))
        return self.config.filter_cartoons(image) if domain == "B" else image

    @staticmethod
    def _own(domain: str, module_a: nn.Module, module_b: nn.Module) -> nn.Module:
        if domain == "A":
            return module_a
        if domain == "B":
            return module_b
        raise ValueError(f"domain must be 'A' (photos) or 'B' (cartoons), got {domain!r}")

    @staticmethod
    def _domains(direction: str) -> tuple[str, str]:
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; choose AtoB (photo -> cartoon) or BtoA (cartoon -> photo)")
        return ("A", "B") if direction == "AtoB" else ("B", "A")

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        """``d_b(e_a(x))`` for ``AtoB`` (photo -> cartoon), ``d_a(e_b(x))`` for ``BtoA``, in eval mode."""
        source, target = self._domains(direction)
        was_training = self.training
        self.eval()
        try:
            return self.decode(self.encode(x, source), target)
        finally:
            self.train(was_training)

    def forward(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        return self.translate(x, direction)

    def notes(self) -> list[str]:
        """The deviations from the paper a user should see when training starts (printed by the CLI)."""
        c, lines = self.config, []
        if c.teacher == "parts" and c.teacher_w > 0:
            lines.append("teacher: toonlab's synthetic part segmenter (toonlab.parts) in place of FaceNet; it knows "
                         "the built-in portraits only")
        if c.warmup_steps > 0:
            lines.append(f"warm-up: the first {c.warmup_steps} steps train encoders and decoders alone to reproduce "
                         "each image in both decoders (not in the paper)")
        if c.colour_w > 0:
            lines.append(f"colour anchor weight {c.colour_w}: translations keep the person's colours (not in the paper)")
        if c.flat_w > 0:
            lines.append(f"flatness prior weight {c.flat_w}: translated cartoons are pushed to flat colour (not in the paper)")
        lines += c.cartoon_filter_notes()
        return lines

    # -- schedule -----------------------------------------------------------------------------------
    def base_lr(self, optimizer_name: str, step: int = 0) -> float:
        """``warmup_lr`` during the warm-up (when set), else ``lr``; constant otherwise (the paper names no schedule)."""
        c = self.config
        return float(c.warmup_lr if step < c.warmup_steps and c.warmup_lr is not None else c.lr)

    # -- losses and updates (notebook 04 §"Losses", §"Training step") -----------------------------
    def discriminator_losses(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """``D_B`` (real cartoons vs ``d_b(e_a(x_a))``), ``D_A`` with ``gan_photos``, and ``D_total = gan_w * sum``."""
        with torch.no_grad():
            fake_b = self.decode(self.encode(x_a, "A"), "B")
        terms = {"D_B": self.criterion_gan(self.dis_b(fake_b), False) + self.criterion_gan(self.dis_b(x_b), True)}
        if self.dis_a is not None:
            with torch.no_grad():
                fake_a = self.decode(self.encode(x_b, "B"), "A")
            terms["D_A"] = self.criterion_gan(self.dis_a(fake_a), False) + self.criterion_gan(self.dis_a(x_a), True)
        terms["D_total"] = self.config.gan_w * sum(terms.values())
        return terms

    def generator_losses(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every term of paper eq. 6, unweighted, plus the weighted ``G_total``.

        ``rec_A``/``rec_B`` (eq. 1), ``dann`` (eq. 2, through the gradient reversal, so the
        classifier and the encoders learn from it in opposite directions), ``sem_A``/``sem_B``
        (eq. 3), ``gan_B`` (eq. 4; ``gan_A`` with ``gan_photos``), ``teacher`` (eq. 5, with a teacher)
        and toonlab's ``colour_A``/``colour_B`` when ``colour_w > 0`` and ``flat_B`` when ``flat_w > 0``.
        """
        c = self.config
        z_a, z_b = self.encode(x_a, "A"), self.encode(x_b, "B")
        x_ab, x_ba = self.decode(z_a, "B"), self.decode(z_b, "A")
        terms = {
            "rec_A": reconstruction_loss(self.decode(z_a, "A"), x_a, c.rec_loss),
            "rec_B": reconstruction_loss(self.decode(z_b, "B"), x_b, c.rec_loss),
            "dann": domain_adversarial_loss(self.classifier, z_a, z_b),
            "sem_A": semantic_consistency_loss(z_a, self.encode(x_ab, "B")),
            "sem_B": semantic_consistency_loss(z_b, self.encode(x_ba, "A")),
            "gan_B": self.criterion_gan(self.dis_b(x_ab), True),
        }
        total = (c.rec_w * (terms["rec_A"] + terms["rec_B"]) + c.dann_w * terms["dann"]
                 + c.sem_w * (terms["sem_A"] + terms["sem_B"]) + c.gan_w * terms["gan_B"])
        if self.dis_a is not None:
            terms["gan_A"] = self.criterion_gan(self.dis_a(x_ba), True)
            total = total + c.gan_w * terms["gan_A"]
        if self.uses_teacher:
            total = total + self.add_teacher_losses(terms, z_a, z_b, x_a, x_b)
        if c.colour_w > 0:
            terms["colour_A"] = colour_anchor_loss(x_ab, x_a)
            terms["colour_B"] = colour_anchor_loss(x_ba, x_b)
            total = total + c.colour_w * (terms["colour_A"] + terms["colour_B"])
        if c.flat_w > 0:
            terms["flat_B"] = flatness_loss(x_ab)
            total = total + c.flat_w * terms["flat_B"]
        terms["G_total"] = total
        return terms

    @property
    def uses_teacher(self) -> bool:
        """True when the teacher term counts: a teacher was built and ``teacher_w > 0``."""
        return self.teacher_head is not None and self.config.teacher_w > 0

    def add_teacher_losses(self, terms: dict[str, torch.Tensor], z_a: torch.Tensor, z_b: torch.Tensor,
                           x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        """Put ``teacher`` (paper eq. 5, photos) and, with ``teacher_both``, ``teacher_B`` (the cartoons,
        toonlab's) into ``terms``; return their weighted sum ``teacher_w * (teacher + teacher_B)``."""
        teacher = self.frozen.get("teacher", x_a.device)
        terms["teacher"] = teacher_loss(z_a, teacher_vector(teacher, x_a), self.teacher_head)
        if self.config.teacher_both:
            terms["teacher_B"] = teacher_loss(z_b, teacher_vector(teacher, x_b), self.teacher_head)
        return self.config.teacher_w * (terms["teacher"] + terms.get("teacher_B", 0.0))

    def warmup_losses(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The warm-up terms (``step < warmup_steps``, not in the paper): each image drawn back by both decoders.

        ``rec_A``/``rec_B`` as in eq. 1, ``warmup_ab = rec(d_b(e_a(x_a)), x_a)`` and
        ``warmup_ba = rec(d_a(e_b(x_b)), x_b)`` (weight ``rec_w * warmup_cross_w``), and the teacher terms
        when there is a teacher; no GAN, classifier or semantic term. Why: from random
        weights a translation is noise for hundreds of steps; started from "the photo, drawn by the
        cartoon decoder", the adversarial phase only has to change its style (MUNIT's cpu warm-up).
        """
        c = self.config
        z_a, z_b = self.encode(x_a, "A"), self.encode(x_b, "B")
        terms = {
            "rec_A": reconstruction_loss(self.decode(z_a, "A"), x_a, c.rec_loss),
            "rec_B": reconstruction_loss(self.decode(z_b, "B"), x_b, c.rec_loss),
        }
        total = c.rec_w * (terms["rec_A"] + terms["rec_B"])
        if c.warmup_cross_w > 0:
            terms["warmup_ab"] = reconstruction_loss(self.decode(z_a, "B"), x_a, c.rec_loss)
            terms["warmup_ba"] = reconstruction_loss(self.decode(z_b, "A"), x_b, c.rec_loss)
            total = total + c.rec_w * c.warmup_cross_w * (terms["warmup_ab"] + terms["warmup_ba"])
        if self.uses_teacher:
            total = total + self.add_teacher_losses(terms, z_a, z_b, x_a, x_b)
        terms["G_total"] = total
        return terms

    def dis_update(self, x_a: torch.Tensor, x_b: torch.Tensor, precision: Precision) -> dict[str, torch.Tensor]:
        """One step of ``optimizers["D"]`` on :meth:`discriminator_losses`."""
        return self.optimizer_step("D", self.discriminator_losses, "D_total", precision, x_a, x_b)

    def gen_update(self, x_a: torch.Tensor, x_b: torch.Tensor, precision: Precision) -> dict[str, torch.Tensor]:
        """One step of ``optimizers["G"]`` on :meth:`generator_losses` (discriminators frozen meanwhile)."""
        set_requires_grad(self.discriminators, False)
        try:
            return self.optimizer_step("G", self.generator_losses, "G_total", precision, x_a, x_b)
        finally:
            set_requires_grad(self.discriminators, True)

    def train_step(self, batch: dict[str, torch.Tensor], precision: Precision, step: int) -> dict[str, float]:
        """One iteration on ``{"A": photos, "B": cartoons}``: :meth:`dis_update`, then :meth:`gen_update`.

        During the first ``config.warmup_steps`` iterations only the warm-up runs (:meth:`warmup_losses`).
        Returns ``D_total``, the unweighted generator terms and ``G_total`` as floats.
        """
        x_a, x_b = batch["A"], batch["B"]
        if step < self.config.warmup_steps:
            return self.loss_readout(self.optimizer_step("G", self.warmup_losses, "G_total", precision, x_a, x_b))
        dis = self.dis_update(x_a, x_b, precision)
        gen = self.gen_update(x_a, x_b, precision)
        return self.loss_readout({"D_total": dis["D_total"], **gen})
