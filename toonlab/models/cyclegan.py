"""CycleGAN (Zhu et al., ICCV 2017), faithful to the official code (docs/reference.md §1).

Two generators and two PatchGAN discriminators learn photo (A) <-> cartoon (B) from unpaired images:

* ``G_A``: A -> B (the paper's G), ``G_B``: B -> A (the paper's F);
* ``D_A`` judges ``G_A(A)`` against real B (the paper's D_Y), ``D_B`` judges ``G_B(B)`` against real A (D_X).

Losses (paper eq. 1-3 plus the identity loss of §5.2; notebook 01 §"The losses, one at a time"):
:func:`generator_adversarial_loss`, :func:`cycle_loss`, :func:`identity_loss`,
:func:`discriminator_loss`. :meth:`Model.train_step` runs them in the official update order (§1.2).

Module indices match the official ``ResnetGenerator``/``NLayerDiscriminator`` (``model.<i>...``), so the
published ``latest_net_G_A.pth`` style files load with :func:`from_official_state_dict`
(``toonlab.hub.load_official("cyclegan", path)``).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from toonlab.config import check_at_least
from toonlab.hub import describe_keys, drop_stale_norm_buffers, strip_wrapper_prefixes
from toonlab.losses import GAN_MODES, GANLoss, colour_anchor_loss, flatness_loss
from toonlab.models.base import Precision, TranslationModel, eval_forward
from toonlab.nn import (
    NORMS,
    PADDINGS,
    ImagePool,
    InputSkip,
    InputSkipOptions,
    ResnetBlock,
    blur,
    init_weights,
    make_norm,
    set_requires_grad,
)

DIRECTIONS = ("AtoB", "BtoA")
#: generator upsampling: the official transposed convolution, or nearest-neighbour resize + convolution
UPSAMPLES = ("transpose", "resize")


def _conv_bias(norm: str) -> bool:
    """Whether convolutions followed by ``norm`` carry a bias.

    Official ``use_bias`` is True for instance norm (every conv has a bias) and False for batch
    norm (its shift makes a bias redundant). For ``norm="none"`` the official code also drops the
    bias, an accident of how it compares norm layers; toonlab keeps the bias there, since nothing
    else would shift the activations.
    """
    return norm != "batch"


# --- networks ------------------------------------------------------------------------------------


class ResnetGenerator(nn.Module):
    """The official ResNet generator: c7s1-ngf, d(2ngf), d(4ngf), R x n_blocks, u(2ngf), u(ngf), c7s1-3, tanh.

    One ``nn.Sequential`` named ``model`` with the official indices (docs/reference.md §1.1). For
    the paper's 9 blocks and 2 downsamplings: ``0`` ReflPad(3), ``1`` Conv7x7, ``2`` norm, ``3`` ReLU,
    ``4-9`` two stride-2 convs (conv, norm, ReLU), ``10-18`` :class:`toonlab.nn.ResnetBlock`,
    ``19-24`` two ConvTranspose (k3, s2, p1, output_padding 1), ``25`` ReflPad(3), ``26`` Conv7x7 (bias),
    ``27`` Tanh. Fewer blocks or downsamplings shift the later indices exactly as the official
    constructor does. The outer 7x7 pads are always reflect (``padding`` only affects the blocks).

    Input: RGB in [-1, 1] with height and width multiples of ``2**n_downsampling``; output: tanh [-1, 1].
    Notebook 01 §"Block 2 — the ResNet generator".
    """

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        n_downsampling: int = 2,
        norm: str = "instance",
        padding: str = "reflect",
        dropout: bool = False,
        upsample: str = "transpose",
        skip: InputSkip | None = None,
    ):
        super().__init__()
        if upsample not in UPSAMPLES:
            raise ValueError(f"unknown upsample {upsample!r}; choose one of {', '.join(UPSAMPLES)}")
        if n_blocks < 0 or n_downsampling < 0 or ngf < 1:
            raise ValueError(
                f"need ngf >= 1, n_blocks >= 0 and n_downsampling >= 0 (got {ngf}, {n_blocks}, {n_downsampling})"
            )
        bias = _conv_bias(norm)
        self.in_ch, self.out_ch, self.n_downsampling = in_ch, out_ch, n_downsampling
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_ch, ngf, 7, padding=0, bias=bias),
            make_norm(norm, ngf),
            nn.ReLU(True),
        ]
        for i in range(n_downsampling):
            ch = ngf * 2**i
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=bias), make_norm(norm, ch * 2), nn.ReLU(True)]
        ch = ngf * 2**n_downsampling
        layers += [ResnetBlock(ch, norm=norm, padding=padding, dropout=dropout, bias=bias) for _ in range(n_blocks)]
        for i in range(n_downsampling):
            ch = ngf * 2 ** (n_downsampling - i)
            if upsample == "transpose":
                up = nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1, bias=bias)
            else:  # resize-convolution (Odena et al. 2016): no checkerboard, one module at the same index
                up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                   nn.Conv2d(ch, ch // 2, 3, padding=1, padding_mode="reflect", bias=bias))
            layers += [up, make_norm(norm, ch // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        #: toonlab deviation (None as official): the network predicts a change of its smoothed input
        #: (:class:`toonlab.nn.InputSkip`), see :meth:`forward`
        self.skip = skip if in_ch == out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multiple = 2**self.n_downsampling
        if x.dim() != 4 or x.size(1) != self.in_ch:
            raise ValueError(f"expected images of shape (N, {self.in_ch}, H, W), got {tuple(x.shape)}")
        if x.size(2) % multiple or x.size(3) % multiple:
            raise ValueError(
                f"image height and width must be multiples of {multiple} (2**n_downsampling), got "
                f"{x.size(2)}x{x.size(3)}; resize or crop the images (the official test code rounds to multiples of 4)"
            )
        if self.skip is None:
            return self.model(x)
        return self.skip(x, self.model[:-1](x))  # the layers before the final tanh predict a change


class NLayerDiscriminator(nn.Module):
    """The 70x70 PatchGAN (``n_layers=3``): C64 (no norm) - C128 - C256 - C512 (stride 1) - 1 logit map.

    ``model`` indices as official (docs/reference.md §1.1): ``0`` Conv4x4 s2, ``1`` LeakyReLU(0.2),
    then per layer conv, norm, LeakyReLU, a stride-1 conv block at ``ndf * min(2**n_layers, 8)``
    channels, and a final stride-1 Conv to one channel. Padding 1 everywhere, no sigmoid (the GAN
    criterion works on logits). A 256x256 input gives a 1x30x30 map. Notebook 01 §"Block 3 — the 70x70
    PatchGAN discriminator".
    """

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 spectral_norm: bool = False):
        super().__init__()
        if n_layers < 1 or ndf < 1:
            raise ValueError(f"need ndf >= 1 and n_layers >= 1 (got {ndf}, {n_layers})")
        bias = _conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias),
                make_norm(norm, ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias),
            make_norm(norm, ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1),
        ]
        if spectral_norm:  # toonlab deviation (off as official): every convolution 1-Lipschitz (Miyato et al. 2018)
            layers = [nn.utils.parametrizations.spectral_norm(m) if isinstance(m, nn.Conv2d) else m for m in layers]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --- config --------------------------------------------------------------------------------------


@dataclass
class Config(InputSkipOptions):
    """CycleGAN hyper-parameters; the defaults are the official ones (docs/reference.md §1.3).

    ``lambda_identity`` is a fraction of the cycle weights, as official: the identity terms weigh
    ``lambda_identity * lambda_b`` (for ``G_A``) and ``lambda_identity * lambda_a`` (for ``G_B``).
    The learning rate stays at ``lr`` for ``n_epochs`` epochs, then decays linearly over
    ``n_epochs_decay`` epochs (see :meth:`Model.lr_factor`); a full run is :attr:`total_epochs`,
    i.e. :meth:`total_steps` steps. An epoch is one pass over the dataset (official) unless
    ``schedule_epoch_steps`` > 0 fixes it to that many steps: the ``cpu`` and ``fast`` presets do so,
    so their short runs decay the same way on any dataset.
    """

    image_size: int = 256
    batch_size: int = 1
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_downsampling: int = 2
    n_layers_d: int = 3
    norm: str = "instance"
    padding: str = "reflect"
    dropout: bool = False
    gan_mode: str = "lsgan"
    lambda_a: float = 10.0
    lambda_b: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_epochs: int = 100
    n_epochs_decay: int = 100
    schedule_epoch_steps: int = 0
    init_type: str = "normal"
    init_gain: float = 0.02
    seed: int = 0
    #: toonlab deviation (off in ``paper``): the first ``warmup_steps`` steps only teach each generator
    #: to return its input (``|G_A(A) - A| + |G_B(B) - B|``), so adversarial training starts from the photo, not from noise
    warmup_steps: int = 0
    #: toonlab deviation (off in ``paper``): std of Gaussian noise added to each translation before it is
    #: translated back, so the cycle cannot be satisfied by hiding the photo in invisible speckle (Chu et al. 2017)
    cycle_noise: float = 0.0
    #: toonlab deviation (off in ``paper``): weight of the colour anchor ``|low(G_A(A)) - low(A)| + |low(G_B(B)) - low(B)|``,
    #: ``low`` = 4x4 average pooling: a translation keeps each region's colour, the discriminator decides the detail
    lambda_colour: float = 0.0
    #: with ``input_skip`` (:class:`toonlab.nn.InputSkipOptions`; the ``cpu`` preset takes ``"guided"``): CycleGAN's
    #: skip was first measured with a Gaussian blur, and older configs without this field meant that
    skip_filter: str = "gaussian"
    #: toonlab deviation (off in ``paper``): weight of the flatness prior on translated cartoons
    #: (:func:`flatness_loss`: small colour steps cost, outlines almost nothing)
    lambda_flat: float = 0.0
    #: toonlab deviation (off in ``paper``): Gaussian sigma (pixels) of a blurred copy of each real cartoon that
    #: ``D_A`` also learns to call fake (CartoonGAN's edge promotion, notebook 02, applied to CycleGAN): a
    #: blurred photo then no longer passes for a cartoon, so the generator must draw sharp outlines
    blurred_fakes: float = 0.0
    #: toonlab deviation (1 in ``paper``): the discriminators' learning rate as a multiple of ``lr``; below 1
    #: the discriminators learn slower than the generators (two time-scale updates, Heusel et al. 2017)
    d_lr_ratio: float = 1.0
    #: toonlab deviation (off in ``paper``): spectral normalisation of every discriminator convolution
    #: (Miyato et al. 2018), which keeps a discriminator from winning so fast that the generators stamp patterns
    d_spectral_norm: bool = False
    #: generator upsampling (``transpose`` in ``paper``, as official); ``resize`` avoids checkerboard speckle
    upsample: str = "transpose"

    #: preset name -> overrides of the official defaults
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # the paper / official code: 256 px, ResNet-9 generator, 70x70 PatchGAN, batch 1, 200 epochs
        "paper": {},
        # a laptop CPU: 64 px, narrow nets, batch 1 as the paper; 1000 steps (about 4 min on 2 cores),
        # the official schedule shape in "epochs" of 50 steps: 10 at the base rate, then 10 of linear
        # decay (factors 10/11 ... 1/11). Measured deviations (benchmarks/results/ablation_cyclegan_cpu.json,
        # protocol toonlab-synthetic-v1 at 64 px; L1 on the person / SSIM / texture / strange colours; the
        # photo itself scores 0.115 / 0.628 / 8.5 / 0.18): official recipe (1500 steps) 0.151 / 0.43 / 19.2 / 0.50;
        # + input_skip (start from the photo) and cycle weights 2 (a weaker pull back to the photo)
        # 0.122 / 0.53 / 17.6 / 0.13; + a Gaussian-blurred skip and the flatness prior (weight 10) 0.120 /
        # 0.63 / 8.8 / 0.14; the guided-filter skip instead (edges kept, texture not inherited) at lr 1e-4
        # 0.120 / 0.65 / 3.2 / 0.15 after 1500 steps, but stamped eye patterns from step ~1000 on; so 1000
        # steps (decay from step 500) 0.114 / 0.67 / 1.3 / 0.16; without the identity loss (the guided skip
        # already anchors colour, and each step is 25 % cheaper) 0.112 / 0.67 / 1.4 / 0.13, L1 0.077 against
        # the photo's 0.081. Still a cleaned-up photo more than a cartoon: no outlines, eyes not enlarged.
        "cpu": dict(image_size=64, batch_size=1, ngf=16, ndf=16, n_blocks=4, n_layers_d=2,
                    n_epochs=10, n_epochs_decay=10, schedule_epoch_steps=50, lr=1e-4, lambda_identity=0.0,
                    input_skip=True, skip_filter="guided", lambda_a=2.0, lambda_b=2.0, lambda_flat=10.0),
        # CI and FAST mode: 32 px, tiny nets, a 40-step schedule (4 epochs of 10 steps)
        "fast": dict(image_size=32, batch_size=2, ngf=8, ndf=8, n_blocks=2, n_layers_d=2,
                     n_epochs=2, n_epochs_decay=2, schedule_epoch_steps=10),
    }

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ValueError naming the first bad field and its allowed values."""
        if self.norm not in NORMS or self.norm in ("layer", "adain"):
            raise ValueError(f"norm {self.norm!r} is not usable in CycleGAN; choose instance, instance_affine, batch or none")
        if self.padding not in PADDINGS:
            raise ValueError(f"unknown padding {self.padding!r}; choose one of {', '.join(PADDINGS)}")
        self.validate_input_skip()
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"unknown upsample {self.upsample!r}; choose one of {', '.join(UPSAMPLES)}")
        if self.gan_mode not in GAN_MODES:
            raise ValueError(f"unknown gan_mode {self.gan_mode!r}; choose one of {', '.join(GAN_MODES)}")
        if self.init_type not in ("normal", "kaiming", "xavier"):
            raise ValueError(f"unknown init_type {self.init_type!r}; choose normal, kaiming or xavier")
        multiple = 2**self.n_downsampling
        if self.image_size % multiple:
            raise ValueError(f"image_size must be a multiple of {multiple} (2**n_downsampling), got {self.image_size}")
        check_at_least(self, 1, ("batch_size", "ngf", "ndf", "n_layers_d", "image_size"))
        check_at_least(self, 0, ("n_blocks", "n_downsampling", "pool_size", "n_epochs", "n_epochs_decay", "schedule_epoch_steps"))
        check_at_least(self, 0, ("lambda_a", "lambda_b", "lambda_identity", "lr", "warmup_steps", "cycle_noise", "lambda_colour",
                     "lambda_flat", "blurred_fakes", "d_lr_ratio"))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "Config":
        """The ``paper``, ``cpu`` or ``fast`` configuration, with some fields overridden."""
        from toonlab.config import config_from_preset

        return config_from_preset(cls, name, overrides, "CycleGAN")

    @property
    def total_epochs(self) -> int:
        """Length of a full run in epochs: ``n_epochs`` at the base rate + ``n_epochs_decay`` decaying."""
        return self.n_epochs + self.n_epochs_decay

    def epoch_steps(self, steps_per_epoch: int | None = None) -> int:
        """Steps in one schedule epoch: ``schedule_epoch_steps`` if set, else the dataset's ``steps_per_epoch``."""
        if self.schedule_epoch_steps:
            return int(self.schedule_epoch_steps)
        if steps_per_epoch is None or int(steps_per_epoch) < 1:
            raise ValueError(f"steps_per_epoch must be >= 1 (one pass over the dataset), got {steps_per_epoch}")
        return int(steps_per_epoch)

    def total_steps(self, steps_per_epoch: int | None = None) -> int:
        """Length of a full run in optimisation steps (``steps_per_epoch``: the dataset's, from the trainer)."""
        return self.total_epochs * self.epoch_steps(steps_per_epoch)


# --- losses (notebook 01 §"The losses, one at a time", one cell each) ------------------------------


def generator_adversarial_loss(criterion: GANLoss, discriminator: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """Paper eq. 1, generator side: ``GAN(D(G(x)), real)``; with lsgan ``mean((D(G(x)) - 1)^2)``."""
    return criterion(discriminator(fake), True)


def cycle_loss(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Paper eq. 2, one direction: ``mean |F(G(x)) - x|`` (the caller multiplies by lambda)."""
    return F.l1_loss(reconstructed.float(), original.float())


def identity_loss(same: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Paper §5.2 identity loss, one direction: ``mean |G(y) - y|`` (weighted by lambda_idt * lambda)."""
    return F.l1_loss(same.float(), original.float())


def discriminator_loss(
    criterion: GANLoss, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """Paper eq. 1, discriminator side, halved as official: ``0.5 * [GAN(D(y), 1) + GAN(D(fake), 0)]``.

    ``fake`` is detached here so no gradient reaches the generator.
    """
    return 0.5 * (criterion(discriminator(real), True) + criterion(discriminator(fake.detach()), False))


def blurred_fake_loss(criterion: GANLoss, discriminator: nn.Module, real: torch.Tensor, sigma: float) -> torch.Tensor:
    """toonlab's edge promotion for CycleGAN (not in the paper): ``0.5 * GAN(D(blur_sigma(y)), 0)``.

    Why: with a blurred skip and a flatness prior, the cheapest "cartoon" is a blurred photo. A
    discriminator taught that a blurred real cartoon is fake (as CartoonGAN's edge-smoothed
    cartoons, Chen et al. 2018 §3.2) rejects blur, so sharp outlines and flat regions must be drawn.
    """
    return 0.5 * criterion(discriminator(blur(real, sigma)), False)


# --- the model -----------------------------------------------------------------------------------


class Model(TranslationModel):
    """CycleGAN: ``G_A`` (photo -> cartoon), ``G_B`` (cartoon -> photo), ``D_A``, ``D_B``, two image pools.

    Networks are initialised N(0, ``init_gain``) with biases 0 from ``config.seed`` (the global RNG is
    left untouched). ``optimizers["G"]`` updates both generators and ``optimizers["D"]`` both
    discriminators, with Adam(lr, (beta1, beta2)). Notebook 01 §"One training step, written here".
    """

    kind: ClassVar[str] = "cyclegan"
    channels_last_helps = True  # with bf16, 1.39x (CycleGAN) and 1.48x (CartoonGAN) on an H100: docs/performance.md §4.1
    generator_names: ClassVar[tuple[str, ...]] = ("G_A", "G_B")
    hparam_names: ClassVar[tuple[str, ...]] = ("lr", "lambda_a", "lambda_b", "lambda_identity", "lambda_colour",
                                               "lambda_flat")
    #: the keys of :meth:`train_step`'s result, in this order
    loss_names: ClassVar[tuple[str, ...]] = (
        "G_adv_A", "G_adv_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "colour", "flat", "G_total", "D_A", "D_B",
        "warmup",
    )

    def __init__(self, config: Config):
        if not isinstance(config, Config):
            raise TypeError(f"expected a cyclegan.Config, got {type(config).__name__}; use Config.preset(...)")
        config.validate()
        super().__init__(config)
        c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.G_A = self._make_generator()
            self.G_B = self._make_generator()
            self.D_A = NLayerDiscriminator(3, c.ndf, c.n_layers_d, c.norm, c.d_spectral_norm)
            self.D_B = NLayerDiscriminator(3, c.ndf, c.n_layers_d, c.norm, c.d_spectral_norm)
            for net in (self.G_A, self.G_B, self.D_A, self.D_B):
                init_weights(net, c.init_type, c.init_gain)
        self.criterion_gan = GANLoss(c.gan_mode)
        # pool_A holds fakes of domain A (from G_B) for D_B; pool_B holds fakes of B for D_A
        self.pool_A = ImagePool.for_model(c.pool_size, c.seed, 1)
        self.pool_B = ImagePool.for_model(c.pool_size, c.seed, 2)
        betas = (c.beta1, c.beta2)
        self.optimizers = {
            "G": torch.optim.Adam(itertools.chain(self.G_A.parameters(), self.G_B.parameters()), lr=c.lr, betas=betas),
            "D": torch.optim.Adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()),
                                  lr=self.base_lr("D"), betas=betas),
        }

    def base_lr(self, optimizer_name: str, step: int = 0) -> float:
        """``lr`` for the generators, ``lr * d_lr_ratio`` for the discriminators."""
        return self.config.lr * (self.config.d_lr_ratio if optimizer_name == "D" else 1.0)

    def _make_generator(self) -> ResnetGenerator:
        c = self.config
        return ResnetGenerator(3, 3, c.ngf, c.n_blocks, c.n_downsampling, c.norm, c.padding, c.dropout, c.upsample,
                               InputSkip.from_config(c))

    # -- schedule ---------------------------------------------------------------------------------
    def lr_factor(self, step: int) -> float:
        """Official ``linear`` policy, a constant per epoch: ``1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1)``.

        Derivation: the official loop runs epochs ``E = epoch_count, ...`` (``epoch_count = 1``) and
        steps a LambdaLR at the end of each, so epoch ``E`` trains with the scheduler counter at
        ``E - 1``, i.e. ``1 - max(0, (E - 1) + epoch_count - n_epochs) / (n_epochs_decay + 1)``.
        With 0-based ``e = step // self.steps_per_epoch = E - 1`` and ``epoch_count = 1`` that is the
        formula above. Paper preset: epochs 0-99 -> 1, epoch 100 -> 1 - 1/101, epoch 199 -> 1/101.
        Steps beyond the last epoch keep that final rate instead of reaching 0. An epoch is
        ``config.schedule_epoch_steps`` steps when that is set (``cpu``/``fast`` presets).
        """
        c = self.config
        epoch = min(step // c.epoch_steps(self.steps_per_epoch), max(c.total_epochs - 1, 0))
        return 1.0 - max(0, epoch + 1 - c.n_epochs) / float(c.n_epochs_decay + 1)

    # -- training -----------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], precision: Precision, step: int) -> dict[str, float]:
        """One official iteration (docs/reference.md §1.2) on ``{"A": photos, "B": cartoons}``.

        1. forward: ``fake_B = G_A(A)``, ``rec_A = G_B(fake_B)``, ``fake_A = G_B(B)``, ``rec_B = G_A(fake_A)``;
        2. freeze ``D_A``, ``D_B``; generator loss (paper eq. 3 + identity)
           ``GAN(D_A(fake_B),1) + GAN(D_B(fake_A),1) + lA|rec_A-A| + lB|rec_B-B| + li*lB|G_A(B)-B| + li*lA|G_B(A)-A|``
           (identity terms are not computed when ``lambda_identity == 0``); step ``optimizers["G"]``;
        3. unfreeze; ``D_A`` on real B vs ``pool_B.query(fake_B)``, ``D_B`` on real A vs
           ``pool_A.query(fake_A)``; one step of ``optimizers["D"]`` on their sum (same gradients as
           the official two ``backward`` calls before one step); with ``blurred_fakes`` > 0, ``D_A``'s
           loss adds :func:`blurred_fake_loss`.

        Returns the weighted terms as floats (the keys of :attr:`loss_names`; ``G_total`` is their sum).
        """
        c = self.config
        real_A, real_B = batch["A"], batch["B"]
        if step < c.warmup_steps:
            return self.warmup_step(real_A, real_B, precision)
        lambda_idt = c.lambda_identity
        with precision.autocast():
            fake_B = self.G_A(real_A)
            rec_A = self.G_B(self._cycle_input(fake_B))
            fake_A = self.G_B(real_B)
            rec_B = self.G_A(self._cycle_input(fake_A))

        discriminators = [self.D_A, self.D_B]
        set_requires_grad(discriminators, False)
        with precision.autocast():
            if lambda_idt > 0:
                loss_idt_A = identity_loss(self.G_A(real_B), real_B) * (c.lambda_b * lambda_idt)
                loss_idt_B = identity_loss(self.G_B(real_A), real_A) * (c.lambda_a * lambda_idt)
            else:
                loss_idt_A = loss_idt_B = None
            loss_adv_A = generator_adversarial_loss(self.criterion_gan, self.D_A, fake_B)
            loss_adv_B = generator_adversarial_loss(self.criterion_gan, self.D_B, fake_A)
            loss_cycle_A = cycle_loss(rec_A, real_A) * c.lambda_a
            loss_cycle_B = cycle_loss(rec_B, real_B) * c.lambda_b
            loss_G = loss_adv_A + loss_adv_B + loss_cycle_A + loss_cycle_B
            if loss_idt_A is not None:
                loss_G = loss_G + loss_idt_A + loss_idt_B
            loss_colour = None
            if c.lambda_colour > 0:
                loss_colour = (colour_anchor_loss(fake_B, real_A) + colour_anchor_loss(fake_A, real_B)) * c.lambda_colour
                loss_G = loss_G + loss_colour
            loss_flat = None
            if c.lambda_flat > 0:
                loss_flat = flatness_loss(fake_B) * c.lambda_flat
                loss_G = loss_G + loss_flat
        precision.step(loss_G, self.optimizers["G"])
        set_requires_grad(discriminators, True)

        with precision.autocast():
            loss_D_A = discriminator_loss(self.criterion_gan, self.D_A, real_B, self.pool_B.query(fake_B))
            if c.blurred_fakes > 0:
                loss_D_A = loss_D_A + blurred_fake_loss(self.criterion_gan, self.D_A, real_B, c.blurred_fakes)
            loss_D_B = discriminator_loss(self.criterion_gan, self.D_B, real_A, self.pool_A.query(fake_A))
        precision.step(loss_D_A + loss_D_B, self.optimizers["D"])

        values = (loss_adv_A, loss_adv_B, loss_cycle_A, loss_cycle_B, loss_idt_A, loss_idt_B, loss_colour, loss_flat,
                  loss_G, loss_D_A, loss_D_B)
        return self.loss_readout({**dict(zip(self.loss_names, values)), "warmup": None})

    def _cycle_input(self, fake: torch.Tensor) -> torch.Tensor:
        """The translation on its way back: with ``cycle_noise`` > 0, plus Gaussian noise of that std."""
        if self.config.cycle_noise <= 0:
            return fake
        return fake + self.config.cycle_noise * torch.randn_like(fake)

    def warmup_step(self, real_A: torch.Tensor, real_B: torch.Tensor, precision: Precision) -> dict[str, float]:
        """A warm-up step (``step < warmup_steps``): ``|G_A(A) - A| + |G_B(B) - B|``, generators only.

        Why: from a random start a generator first paints noise and spends most of a short CPU run
        unlearning it; starting from (nearly) the identity, it only has to learn the difference
        between photo and cartoon (CartoonGAN's reconstruction initialisation, applied to CycleGAN).
        """
        with precision.autocast():
            loss = F.l1_loss(self.G_A(real_A).float(), real_A.float()) + F.l1_loss(self.G_B(real_B).float(), real_B.float())
        precision.step(loss, self.optimizers["G"])
        return self.loss_readout({**dict.fromkeys(self.loss_names), "G_total": loss, "warmup": loss})

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        """``AtoB``: ``G_A(x)`` (photo -> cartoon); ``BtoA``: ``G_B(x)``. Eval mode, no gradients."""
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; choose AtoB (photo -> cartoon) or BtoA")
        return eval_forward(self.G_A if direction == "AtoB" else self.G_B, x)

    # -- checkpoint extras ----------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Both image pools (stored fakes and random generator state)."""
        return {"pool_A": self.pool_A.state_dict(), "pool_B": self.pool_B.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pool_A.load_state_dict(state["pool_A"])
        self.pool_B.load_state_dict(state["pool_B"])


# --- official checkpoints ------------------------------------------------------------------------

_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.weight$")


def from_official_state_dict(state: Mapping[str, Any]) -> ResnetGenerator:
    """Build the :class:`ResnetGenerator` that an official CycleGAN generator state dict describes, and load it.

    Handles the published variants (docs/reference.md §8): a DataParallel ``module.`` prefix;
    stale InstanceNorm ``running_mean/running_var/num_batches_tracked`` keys of old files (issues
    #262, #318), dropped for every InstanceNorm layer as the official code does; the dropout layout
    whose second block conv sits at ``conv_block.6`` (issue #461). ``ngf``, the number of blocks and
    downsamplings, the channels and the norm (instance or batch) are read from the keys, so
    ``resnet_6blocks`` files load too. Loads with ``strict=True``; any other mismatch raises a
    ValueError naming the missing and unexpected keys.
    """
    if not isinstance(state, Mapping) or not state:
        raise ValueError("expected a non-empty state dict (a mapping of parameter names to tensors)")
    state = strip_wrapper_prefixes(state)
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"not a plain state dict: entries that are not tensors: {describe_keys(map(str, bad))}")
    if "model.1.weight" not in state or state["model.1.weight"].dim() != 4:
        raise ValueError(
            "no 'model.1.weight' 7x7 convolution, so this is not an official ResnetGenerator; "
            f"keys found: {describe_keys(state)}"
        )
    ngf, in_ch = state["model.1.weight"].shape[:2]

    block_indices: set[int] = set()
    second_conv_positions: set[int] = set()
    for key in state:
        match = _BLOCK_KEY.match(key)
        if match and state[key].dim() == 4:  # convolutions only (batch-norm weights share the pattern)
            block_indices.add(int(match.group(1)))
            if int(match.group(2)) != 1:
                second_conv_positions.add(int(match.group(2)))
    n_blocks = len(block_indices)
    if n_blocks:
        first = min(block_indices)
        n_downsampling, remainder = divmod(first - 4, 3)
        if remainder or n_downsampling < 0 or sorted(block_indices) != list(range(first, first + n_blocks)):
            raise ValueError(f"residual blocks at unexpected positions {sorted(block_indices)}; keys found: {describe_keys(state)}")
    else:
        raise ValueError(f"no residual blocks ('model.<i>.conv_block...') found; keys found: {describe_keys(state)}")
    if second_conv_positions - {5, 6} or len(second_conv_positions) > 1:
        raise ValueError(f"residual block convolutions at unexpected positions {sorted(second_conv_positions)}")
    dropout = second_conv_positions == {6}
    norm = "batch" if "model.2.weight" in state else "instance"
    last = 4 + 3 * n_downsampling + n_blocks + 3 * n_downsampling + 1
    last_key = f"model.{last}.weight"
    if last_key not in state:
        raise ValueError(f"expected the final 7x7 convolution at {last_key!r}; keys found: {describe_keys(state)}")
    out_ch = state[last_key].shape[0]

    generator = ResnetGenerator(int(in_ch), int(out_ch), int(ngf), n_blocks, n_downsampling, norm, "reflect", dropout)
    cleaned = drop_stale_norm_buffers(state, generator)
    expected = set(generator.state_dict())
    missing, unexpected = expected - set(cleaned), set(cleaned) - expected
    if missing or unexpected:
        raise ValueError(
            f"the state dict does not match a {n_blocks}-block ResnetGenerator (ngf={ngf}, {norm} norm"
            f"{', dropout' if dropout else ''}): missing keys: {describe_keys(missing) or 'none'}; "
            f"unexpected keys: {describe_keys(unexpected) or 'none'}"
        )
    generator.load_state_dict(cleaned, strict=True)
    return generator
