"""CartoonGAN (Chen, Lai & Liu, CVPR 2018), faithful to the published generator (docs/reference.md §3).

One generator turns photos (A) into cartoons (B); there is no way back. Two ideas make it work on
unpaired data, and notebook 02 builds both:

* a **content loss** (paper eq. 3): the L1 distance between VGG19 ``conv4_4`` features of a photo and
  of its cartoon keeps the content while leaving colours and textures free to change;
* **edge promoting** (paper §3.2, eq. 2): the discriminator also sees real cartoons with blurred
  edges, labelled fake, so it insists on the clear edges of real cartoons
  (:mod:`toonlab.data.edges`).

Training starts with an **initialisation phase** (the generator learns to reconstruct photos with the
content loss alone), then the adversarial phase. One training loop runs both:
:meth:`Model.train_step` picks the phase from the step number (:meth:`Model.in_init_phase`).

Networks: :class:`Generator` has the layout of the official ``Transformer`` (docs/reference.md
§3.1: flat 7x7 conv, two down-convolution blocks, 8 residual blocks, two up-convolution blocks, 7x7
conv, tanh; affine instance norm with eps 1e-9); :class:`Discriminator` is the author's 3x3 patch
discriminator with ndf 32. :func:`from_official_state_dict` loads the published Hayao, Hosoda,
Paprika and Shinkai weights (``toonlab.hub.load_official("cartoongan", path)``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from toonlab.config import check_at_least
from toonlab.data.edges import EdgePromotedDataset
from toonlab.hub import describe_keys
from toonlab.losses import (
    GAN_MODES,
    VGG19_LAYERS,
    VGG_ENV,
    GANLoss,
    VGGFeatures,
    flatness_loss,
    load_vgg_features,
    torchvision_vgg_file,
)
from toonlab.models.base import Precision, TranslationModel, eval_forward
from toonlab.nn import (
    FrozenNets,
    ImagePool,
    InputSkip,
    InputSkipOptions,
    ResnetBlock,
    init_weights,
    make_norm,
    set_requires_grad,
)
from toonlab.parts import PartsFeatures, load_parts_features

#: eps of the official generator's instance norm (the PyTorch port of the published weights)
OFFICIAL_NORM_EPS = 1e-9
#: norms the discriminator may use (see :class:`Discriminator`)
DISCRIMINATOR_NORMS = ("instance", "instance_affine", "none")
#: the content loss's feature networks (Config.content_net)
CONTENT_NETS = ("vgg19", "parts", "auto")


# --- networks ------------------------------------------------------------------------------------


class Generator(nn.Module):
    """The official CartoonGAN generator (docs/reference.md §3.1); notebook 02 §"Generator".

    ``flat``: ReflPad(3), Conv7x7 3->ngf, IN, ReLU. ``down``: two blocks of [Conv3x3 stride 2,
    Conv3x3 stride 1, IN, ReLU] (ngf -> 2ngf -> 4ngf, zero padding 1). ``res_blocks``: ``n_blocks``
    :class:`toonlab.nn.ResnetBlock` (reflect padding, IN). ``up``: two blocks of [ConvTranspose3x3
    stride 2 (padding 1, output padding 1), Conv3x3, IN, ReLU] (4ngf -> 2ngf -> ngf).
    ``output``: ReflPad(3), Conv7x7 ngf->3, tanh. Every conv has a bias; every IN is affine
    (``scale``/``shift`` in the official files) with ``eps=1e-9``.

    The paper size (ngf 64, 8 blocks) has 11,129,667 parameters, as the official ``Transformer``.
    Input: RGB in [-1, 1] with height and width multiples of 4; output: RGB in [-1, 1]. ``skip``
    (off as official, the ``cpu`` preset's choice): the layers before the tanh predict a change of
    the smoothed input instead of the image.
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 8, in_ch: int = 3, out_ch: int = 3,
                 norm_eps: float = OFFICIAL_NORM_EPS, skip: InputSkip | None = None):
        super().__init__()
        if ngf < 1 or n_blocks < 0:
            raise ValueError(f"need ngf >= 1 and n_blocks >= 0 (got {ngf}, {n_blocks})")
        self.in_ch = in_ch

        def norm(channels: int) -> nn.Module:
            return make_norm("instance_affine", channels, eps=norm_eps)

        self.flat = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7), norm(ngf), nn.ReLU(True))
        down: list[nn.Module] = []
        for ch in (ngf, 2 * ngf):
            down += [nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), nn.Conv2d(2 * ch, 2 * ch, 3, padding=1),
                     norm(2 * ch), nn.ReLU(True)]
        self.down = nn.Sequential(*down)
        self.res_blocks = nn.Sequential(*[
            ResnetBlock(4 * ngf, norm="instance_affine", padding="reflect", norm_eps=norm_eps) for _ in range(n_blocks)
        ])
        up: list[nn.Module] = []
        for ch in (4 * ngf, 2 * ngf):
            up += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
                   nn.Conv2d(ch // 2, ch // 2, 3, padding=1), norm(ch // 2), nn.ReLU(True)]
        self.up = nn.Sequential(*up)
        self.output = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh())
        #: toonlab deviation (None as official): predict a change of the smoothed input (:class:`toonlab.nn.InputSkip`)
        self.skip = skip if in_ch == out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.size(1) != self.in_ch:
            raise ValueError(f"expected images of shape (N, {self.in_ch}, H, W), got {tuple(x.shape)}")
        if x.size(2) % 4 or x.size(3) % 4:
            raise ValueError(
                f"image height and width must be multiples of 4 (two stride-2 convolutions), got "
                f"{x.size(2)}x{x.size(3)}; resize or crop the images"
            )
        features = self.up(self.res_blocks(self.down(self.flat(x))))
        if self.skip is None:
            return self.output(features)
        return self.skip(x, self.output[:-1](features))


class Discriminator(nn.Module):
    """The author's patch discriminator (``defineD_n_layers``, kw 3, n_layers 3; docs/reference.md §3.2).

    ``model``: c3s1-ndf, LReLU | c3s2-2ndf, LReLU, c3s1-4ndf, IN, LReLU | c3s2-4ndf, LReLU,
    c3s1-8ndf, IN, LReLU | c3s1-8ndf, IN, LReLU | c3s1-1. Zero padding 1, LeakyReLU 0.2, no sigmoid
    (the GAN criterion takes logits). Output: one logit per patch at a quarter of the resolution
    (64x64 for 256x256). Notebook 02 §"Discriminator".

    With ``norm="instance"`` (IN without affine, as the PyTorch reimplementation) ndf 32 gives
    1,128,385 parameters, the count in docs/reference.md §7. The author's Torch IN is affine
    (``norm="instance_affine"``: 1,280 more parameters).
    """

    def __init__(self, in_ch: int = 3, ndf: int = 32, norm: str = "instance"):
        super().__init__()
        if norm not in DISCRIMINATOR_NORMS:
            raise ValueError(f"unknown discriminator norm {norm!r}; choose one of {', '.join(DISCRIMINATOR_NORMS)}")
        if ndf < 1:
            raise ValueError(f"ndf must be >= 1, got {ndf}")

        def conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)

        def lrelu() -> nn.Module:
            return nn.LeakyReLU(0.2, True)

        self.model = nn.Sequential(
            conv(in_ch, ndf), lrelu(),
            conv(ndf, 2 * ndf, 2), lrelu(), conv(2 * ndf, 4 * ndf), make_norm(norm, 4 * ndf), lrelu(),
            conv(4 * ndf, 4 * ndf, 2), lrelu(), conv(4 * ndf, 8 * ndf), make_norm(norm, 8 * ndf), lrelu(),
            conv(8 * ndf, 8 * ndf), make_norm(norm, 8 * ndf), lrelu(),
            conv(8 * ndf, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --- config --------------------------------------------------------------------------------------


@dataclass
class Config(InputSkipOptions):
    """CartoonGAN hyper-parameters. ``paper`` follows the paper and, where it is silent, the author's
    Torch code (docs/reference.md §3.2):

    * initialisation phase: content loss only, ``init_epochs`` 10 at ``init_lr`` 2e-4. The author's
      code adds ``init_epochs_decay`` 10 epochs of linear decay (set it to 10 to reproduce that);
      ``init_steps``, when set, fixes the phase length in steps instead (cpu/fast presets, sliders);
    * adversarial phase: ``lr`` 1e-5 for G and D, constant for ``n_epochs`` 100, then linear decay
      over ``n_epochs_decay`` 100; Adam(beta1 0.5, beta2 0.999); batch 8; 256 px;
    * ``gan_mode`` ``lsgan``: the author's code uses least squares, the paper writes the log-loss
      (``vanilla``, as the znxlwm reimplementation); least squares gives the generator useful
      gradients even when D wins easily, which is why CycleGAN and the author use it;
    * ``content_weight`` 10 on the mean L1 distance of VGG19 ``conv4_4`` features (before ReLU);
    * a history of ``pool_size`` 50 generated images for D, as the author's code (CycleGAN's pool);
    * ``d_norm`` ``instance`` (IN without affine): D has the 1,128,385 parameters of docs/reference.md
      §7; the author's Torch IN is affine (``instance_affine``, 1,280 parameters more).

    The znxlwm reimplementation instead uses lr 2e-4 for G and D for 100 epochs (x0.1 at 50 and 75),
    BCE, no pool and no affine IN; its generator cannot load the official weights.
    ``vgg_weights``: ``"imagenet"`` (torchvision's ImageNet VGG19), a path to that file, or None
    for a random VGG (FAST mode and tests only: the content loss then means little).

    ``content_net``: the frozen network of the content loss. ``"vgg19"`` (the paper's); ``"parts"``:
    toonlab's part segmenter of the synthetic portraits (:mod:`toonlab.parts`, shipped inside the
    package; :class:`toonlab.parts.PartsFeatures` in place of conv4_4), which knows the built-in data only;
    ``"auto"`` (the cpu preset): VGG19 when the file ``vgg_weights`` names is on disk, else the part
    segmenter. "auto" is resolved when the model is built, so the run's config.json and checkpoints
    record which network was used (a deliberate deviation from the paper when it is ``"parts"``:
    offline there is no VGG19, and a random one lets the generator move the eyes, notebook 02).
    """

    image_size: int = 256
    batch_size: int = 8
    ngf: int = 64
    ndf: int = 32
    n_blocks: int = 8
    d_norm: str = "instance"
    gan_mode: str = "lsgan"
    content_weight: float = 10.0
    content_layer: str = "conv4_4"
    vgg_weights: str | None = "imagenet"
    content_net: str = "vgg19"
    #: toonlab deviation (off in ``paper``): weight of the flatness prior on generated cartoons
    #: (:func:`toonlab.losses.flatness_loss`, CycleGAN's: small colour steps cost, outlines almost nothing)
    lambda_flat: float = 0.0
    pool_size: int = 50
    init_lr: float = 2e-4
    init_epochs: int = 10
    init_epochs_decay: int = 0
    init_steps: int | None = None
    lr: float = 1e-5
    beta1: float = 0.5
    beta2: float = 0.999
    n_epochs: int = 100
    n_epochs_decay: int = 100
    init_gain: float = 0.02
    seed: int = 0

    #: preset name -> overrides of the paper values
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # a laptop CPU: 64 px, half-width G with 4 blocks, one 500-step epoch after a 50-step init phase
        # (550 steps, about 3 min on 2 cores). Measured deviations (benchmarks/results/ablation_cartoongan_cpu.json,
        # protocol toonlab-synthetic-v1; L1 on the person / SSIM / texture / strange colours; the photo
        # scores 0.115 / 0.628 / 8.5 / 0.18): content_net "auto" (offline: the part segmenter, toonlab.parts);
        # from noise (init 400 steps, lr 2e-4, 1000 steps) 0.147 / 0.47 / 22.0 / 0.43: outlines appear, with
        # texture and wrong colours; input_skip (a guided-filtered photo to start from, the last convolution
        # at zero) at lr 1e-4: 0.115 / 0.68 / 2.7 / 0.17 after 200 steps, then diagonal stripes (texture 15
        # at 600); lr 2e-5 0.115 / 0.68 / 2.3 / 0.18 after 400 steps, 0.115 / 0.67 / 4.2 / 0.19 after 550;
        # + CycleGAN's flatness prior (lambda_flat 10) 0.115 / 0.68 / 1.2 / 0.19 after 550.
        "cpu": dict(image_size=64, batch_size=4, ngf=32, ndf=16, n_blocks=4, init_steps=50, lr=2e-5,
                    n_epochs=1, n_epochs_decay=0, content_net="auto", input_skip=True, lambda_flat=10.0),
        # CI and FAST mode: 32 px, tiny nets, random VGG, a 2-step init phase
        "fast": dict(image_size=32, batch_size=2, ngf=8, ndf=8, n_blocks=2, vgg_weights=None, init_steps=2,
                     lr=2e-4, n_epochs=1, n_epochs_decay=1),
    }

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ValueError naming the first bad field and its allowed values."""
        if self.gan_mode not in GAN_MODES:
            raise ValueError(f"unknown gan_mode {self.gan_mode!r}; choose one of {', '.join(GAN_MODES)}")
        if self.d_norm not in DISCRIMINATOR_NORMS:
            raise ValueError(f"unknown d_norm {self.d_norm!r}; choose one of {', '.join(DISCRIMINATOR_NORMS)}")
        self.validate_input_skip()
        if self.content_net not in CONTENT_NETS:
            raise ValueError(f"unknown content_net {self.content_net!r}; choose one of {', '.join(CONTENT_NETS)}")
        if self.content_layer not in VGG19_LAYERS:
            raise ValueError(f"unknown content_layer {self.content_layer!r}; choose one of {', '.join(VGG19_LAYERS)}")
        if self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 (two stride-2 convolutions), got {self.image_size}")
        check_at_least(self, 1, ("image_size", "batch_size", "ngf", "ndf"))
        check_at_least(self, 0, ("n_blocks", "pool_size", "init_epochs", "init_epochs_decay", "n_epochs", "n_epochs_decay",
                                 "content_weight", "init_lr", "lr", "lambda_flat"))
        if self.init_steps is not None and self.init_steps < 0:
            raise ValueError(f"init_steps must be None (use init_epochs) or >= 0, got {self.init_steps}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "Config":
        """The ``paper``, ``cpu`` or ``fast`` configuration, with some fields overridden."""
        from toonlab.config import config_from_preset

        return config_from_preset(cls, name, overrides, "CartoonGAN")

    def init_phase_steps(self, steps_per_epoch: int) -> int:
        """Length of the initialisation phase in steps: ``init_steps`` if set, else its epochs x ``steps_per_epoch``."""
        if self.init_steps is not None:
            return int(self.init_steps)
        return (self.init_epochs + self.init_epochs_decay) * int(steps_per_epoch)

    def total_steps(self, steps_per_epoch: int) -> int:
        """Length of a full run in optimisation steps: initialisation plus adversarial phase."""
        return self.init_phase_steps(steps_per_epoch) + (self.n_epochs + self.n_epochs_decay) * int(steps_per_epoch)


# --- losses (notebook 02 §"Losses", one cell each) ------------------------------------------------


def content_loss(features: nn.Module, photo: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Paper eq. 3: ``L_con = mean |VGG_l(G(p)) - VGG_l(p)|`` (L1; the caller multiplies by the weight).

    ``features`` is the frozen VGG19 up to ``conv4_4`` (before ReLU), run at the image resolution on
    ImageNet-normalised input (:class:`toonlab.losses.VGGFeatures`). The author resized to 224x224
    and used Caffe's BGR mean subtraction; toonlab uses torchvision's weights as they were trained,
    a documented deviation. No gradient flows into the photo's features.
    """
    with torch.no_grad():
        target = features(photo)
    return F.l1_loss(features(generated).float(), target.float())


def generator_adversarial_loss(criterion: GANLoss, discriminator: nn.Module, generated: torch.Tensor) -> torch.Tensor:
    """Paper eq. 2, generator side: ``GAN(D(G(p)), real)``; with lsgan ``mean((D(G(p)) - 1)^2)``."""
    return criterion(discriminator(generated), True)


def discriminator_losses(
    criterion: GANLoss, discriminator: nn.Module, cartoons: torch.Tensor, generated: torch.Tensor,
    smoothed: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paper eq. 2, discriminator side, its three terms: ``GAN(D(c), 1)``, ``GAN(D(G(p)), 0)``, ``GAN(D(e), 0)``.

    Real cartoons ``c`` are real; generated images and edge-smoothed cartoons ``e`` are fake.
    ``generated`` is detached here. The author's code trains D on their mean (``/ 3``).
    """
    return (
        criterion(discriminator(cartoons), True),
        criterion(discriminator(generated.detach()), False),
        criterion(discriminator(smoothed), False),
    )


# --- the model -----------------------------------------------------------------------------------


def vgg19_file_present(vgg_weights: str | None) -> bool:
    """Whether the VGG19 file ``vgg_weights`` names is on disk (nothing is downloaded or read)."""
    if vgg_weights is None:
        return False
    if vgg_weights != "imagenet":
        return Path(vgg_weights).expanduser().is_file()
    from toonlab.config import vgg19_weights_path

    placed = vgg19_weights_path()
    return (placed or torchvision_vgg_file("vgg19")).is_file()


def resolve_content_net(config: Config) -> Config:
    """``config`` with ``content_net="auto"`` replaced by ``"vgg19"`` (its file is present) or ``"parts"``."""
    if config.content_net != "auto":
        return config
    return dataclasses.replace(config, content_net="vgg19" if vgg19_file_present(config.vgg_weights) else "parts")


class Model(TranslationModel):
    """CartoonGAN: ``generator`` (photo -> cartoon), ``discriminator``, a frozen VGG ``feature_net``, an image pool.

    ``feature_net``: a module mapping images in [-1, 1] to features (tests inject a tiny one); by
    default :func:`toonlab.losses.load_vgg_features` (``config.content_layer``, ``config.vgg_weights``),
    loaded at the first training step, so a model built only to translate needs no VGG file. It is
    frozen and kept outside the module tree (:class:`toonlab.nn.FrozenNets`), so checkpoints hold
    only what training changes.

    Networks are initialised N(0, ``init_gain``), biases 0, from ``config.seed`` (a random VGG from
    ``seed + 1``), leaving the global RNG untouched. ``optimizers``: ``"G"`` and ``"D"``, Adam(beta1, beta2).
    Notebook 02 §"Training step".
    """

    kind: ClassVar[str] = "cartoongan"
    channels_last_helps = True  # with bf16, 1.39x (CycleGAN) and 1.48x (CartoonGAN) on an H100: docs/performance.md §4.1
    generator_names: ClassVar[tuple[str, ...]] = ("generator",)
    hparam_names: ClassVar[tuple[str, ...]] = ("lr", "init_lr", "content_weight", "init_steps", "lambda_flat")
    #: the keys of :meth:`train_step`'s result, in this order (the same keys in both phases)
    loss_names: ClassVar[tuple[str, ...]] = ("content", "G_adv", "G_total", "D_real", "D_fake", "D_smooth", "D_total",
                                             "flat")

    def __init__(self, config: Config, feature_net: nn.Module | None = None):
        if not isinstance(config, Config):
            raise TypeError(f"expected a cartoongan.Config, got {type(config).__name__}; use Config.preset(...)")
        config.validate()
        config = resolve_content_net(config)
        super().__init__(config)
        c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.generator = Generator(c.ngf, c.n_blocks, skip=InputSkip.from_config(c))
            self.discriminator = Discriminator(3, c.ndf, c.d_norm)
            for net in (self.generator, self.discriminator):
                init_weights(net, "normal", c.init_gain)
            if c.input_skip:  # the change starts at zero: the first output is the smoothed photo itself
                nn.init.zeros_(self.generator.output[1].weight)
                nn.init.zeros_(self.generator.output[1].bias)
        self.frozen = FrozenNets()
        if feature_net is not None:
            self.frozen.put("content", feature_net)
        self.criterion_gan = GANLoss(c.gan_mode)
        self.pool = ImagePool.for_model(c.pool_size, c.seed)
        betas = (c.beta1, c.beta2)
        self.optimizers = {
            "G": torch.optim.Adam(self.generator.parameters(), lr=c.init_lr, betas=betas),
            "D": torch.optim.Adam(self.discriminator.parameters(), lr=c.lr, betas=betas),
        }

    # -- the content network -------------------------------------------------------------------------
    def notes(self) -> list[str]:
        """Which network the content loss uses, and why (printed when training starts)."""
        c = self.config
        if self.feature_net is not None and not isinstance(self.feature_net, (VGGFeatures, PartsFeatures)):
            return [f"content loss: the injected feature network {type(self.feature_net).__name__}"]
        if c.content_net == "parts":
            return ["content loss: toonlab's synthetic part segmenter (toonlab.parts, shipped weights) in place "
                    "of VGG19" + (" — no VGG19 file was found" if c.vgg_weights is not None else "")
                    + "; it knows the built-in portraits only: for real photos place the VGG19 file "
                    f"({torchvision_vgg_file('vgg19')} or ${VGG_ENV}) and use content_net vgg19"]
        if c.vgg_weights is None:
            return [f"content loss: a random VGG19 up to {c.content_layer} (smoke tests only: it means little)"]
        return [f"content loss: ImageNet VGG19 {c.content_layer} (the paper's)"]

    def content_features(self) -> nn.Module:
        """The frozen feature network of the content loss, loaded (and moved next to G) on first use."""
        if "content" not in self.frozen:
            c = self.config
            if c.content_net == "parts":
                net = load_parts_features()
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(c.seed + 1)  # a random VGG (vgg_weights=None) is the same in every run
                    net = load_vgg_features(c.content_layer, weights=c.vgg_weights)
            self.frozen.put("content", net)
        weight = self.generator.flat[1].weight
        channels_last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        return self.frozen.get("content", weight.device,
                               torch.channels_last if channels_last else torch.contiguous_format)

    @property
    def feature_net(self) -> nn.Module | None:
        """The frozen content network once given or loaded (None before), outside the module tree."""
        return self.frozen.get("content")

    # -- schedule ----------------------------------------------------------------------------------
    def init_phase_steps(self) -> int:
        """Steps of the initialisation phase, for epochs of :attr:`steps_per_epoch` steps."""
        return self.config.init_phase_steps(self.steps_per_epoch)

    def in_init_phase(self, step: int) -> bool:
        """True while ``step`` (0-based) is in the initialisation phase (content loss only, D not trained)."""
        return step < self.init_phase_steps()

    def lr_factor(self, step: int) -> float:
        """Linear decay within the current phase, as the author's ``UpdateLearningRate``, per epoch.

        With ``e`` the 0-based epoch inside the phase, ``n`` its constant epochs and ``d`` its decay
        epochs: ``1 - max(0, e - n) / d`` (the author lowers the rate by ``1/d`` after each epoch past
        ``n``); the last epoch runs at ``1/d``, later steps stay there. ``d = 0`` keeps it constant, and
        so does an initialisation phase given in steps (``init_steps``).
        """
        steps_per_epoch = self.steps_per_epoch
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        c = self.config
        init_steps = self.init_phase_steps()
        if step < init_steps:
            if c.init_steps is not None:
                return 1.0
            constant, decay, epoch = c.init_epochs, c.init_epochs_decay, step // steps_per_epoch
        else:
            constant, decay, epoch = c.n_epochs, c.n_epochs_decay, (step - init_steps) // steps_per_epoch
        if decay == 0:
            return 1.0
        epoch = min(epoch, constant + decay - 1)
        return 1.0 - max(0, epoch - constant) / float(decay)

    def base_lr(self, optimizer_name: str, step: int = 0) -> float:
        """``init_lr`` in the initialisation phase, ``lr`` in the adversarial phase (both optimisers; D is
        not stepped during initialisation)."""
        return float(self.config.init_lr if self.in_init_phase(step) else self.config.lr)

    def learning_rate(self, step: int) -> float:
        """The rate both optimisers train with at ``step``: :meth:`base_lr` times :meth:`lr_factor`."""
        return self.base_lr("G", step) * self.lr_factor(step)

    # -- training ----------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], precision: Precision, step: int) -> dict[str, float]:
        """One iteration on ``{"A": photos, "B": cartoons, "B_smooth": edge-smoothed cartoons}``.

        Initialisation phase (:meth:`in_init_phase`): ``G_total = content_weight * content``, one step
        of ``optimizers["G"]``; D is neither run nor stepped, and only ``"A"`` is read.

        Adversarial phase, in the author's order of evaluation (both losses see D before its update):

        1. ``generated = G(A)``; with D frozen,
           ``G_total = GAN(D(generated), 1) + content_weight * content`` (paper eq. 1); step ``"G"``;
        2. ``D_total = (GAN(D(B), 1) + GAN(D(pool(generated)), 0) + GAN(D(B_smooth), 0)) / 3``; step ``"D"``.

        The author's code also feeds the generator's adversarial gradient from D's output on the
        pooled image; toonlab uses the current image, as the paper's loss says.
        Returns floats under the keys of :attr:`loss_names`: ``content`` unweighted, the others as
        they enter the sums; during initialisation ``G_adv`` and the ``D_*`` terms are 0.0.
        """
        c = self.config
        photos = batch["A"]
        features = self.content_features()
        if self.in_init_phase(step):
            with precision.autocast():
                generated = self.generator(photos)
                content = content_loss(features, photos, generated)
                total = c.content_weight * content
            precision.step(total, self.optimizers["G"])
            return self.loss_readout({**dict.fromkeys(self.loss_names), "content": content, "G_total": total})

        missing = [k for k in ("B", "B_smooth") if k not in batch]
        if missing:
            raise KeyError(
                f"the adversarial phase needs batches with {', '.join(missing)}; wrap the dataset with "
                "toonlab.data.edges.EdgePromotedDataset (Model.wrap_dataset does it)"
            )
        cartoons, smoothed = batch["B"], batch["B_smooth"]
        with precision.autocast():
            generated = self.generator(photos)
        set_requires_grad(self.discriminator, False)
        with precision.autocast():
            adversarial = generator_adversarial_loss(self.criterion_gan, self.discriminator, generated)
            content = content_loss(features, photos, generated)
            g_total = adversarial + c.content_weight * content
            flat = flatness_loss(generated) * c.lambda_flat if c.lambda_flat > 0 else None
            if flat is not None:
                g_total = g_total + flat
        precision.step(g_total, self.optimizers["G"])
        set_requires_grad(self.discriminator, True)

        with precision.autocast():
            d_real, d_fake, d_smooth = discriminator_losses(
                self.criterion_gan, self.discriminator, cartoons, self.pool.query(generated), smoothed
            )
            d_total = (d_real + d_fake + d_smooth) / 3
        precision.step(d_total, self.optimizers["D"])
        values = (content, adversarial, g_total, d_real, d_fake, d_smooth, d_total, flat)
        return self.loss_readout(dict(zip(self.loss_names, values)))

    def wrap_dataset(self, dataset):
        """``dataset`` with edge-smoothed cartoons (``"B_smooth"``), as the training loop needs."""
        return dataset if isinstance(dataset, EdgePromotedDataset) else EdgePromotedDataset(dataset)

    def unwrap_dataset(self, dataset):
        """The photos and cartoons under the edge-smoothed twins :meth:`wrap_dataset` added."""
        return dataset.dataset if isinstance(dataset, EdgePromotedDataset) else dataset

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        """``AtoB``: the generator (photo -> cartoon), in eval mode without gradients.

        CartoonGAN learns one direction only; ``BtoA`` raises (use CycleGAN or MUNIT for cartoon -> photo).
        """
        if direction == "BtoA":
            raise ValueError(
                "CartoonGAN only translates photos to cartoons (AtoB); it has no cartoon -> photo generator. "
                "Use CycleGAN or MUNIT for BtoA"
            )
        if direction != "AtoB":
            raise ValueError(f"unknown direction {direction!r}; CartoonGAN supports only AtoB (photo -> cartoon)")
        return eval_forward(self.generator, x)

    # -- checkpoint extras ---------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """The image pool (stored generated images and its random generator state)."""
        return {"pool": self.pool.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pool.load_state_dict(state["pool"])


# --- official checkpoints ------------------------------------------------------------------------


def official_key_map(n_blocks: int = 8) -> dict[str, str]:
    """Official ``Transformer`` module name -> toonlab :class:`Generator` module name (docs/reference.md §8).

    ``conv*``/``deconv*`` carry ``weight``/``bias``; ``in*`` carry ``scale``/``shift``, which are
    toonlab's ``weight``/``bias``. The official names number the 8 residual blocks ``04``..``11``.
    """
    names = {
        "conv01_1": "flat.1", "in01_1": "flat.2",
        "conv02_1": "down.0", "conv02_2": "down.1", "in02_1": "down.2",
        "conv03_1": "down.4", "conv03_2": "down.5", "in03_1": "down.6",
    }
    for i in range(n_blocks):
        number = 4 + i
        for half, (conv, norm) in (("1", (1, 2)), ("2", (5, 6))):
            names[f"conv{number:02d}_{half}"] = f"res_blocks.{i}.conv_block.{conv}"
            names[f"in{number:02d}_{half}"] = f"res_blocks.{i}.conv_block.{norm}"
    up = 4 + n_blocks  # in12_1 / in13_1 for the official 8 blocks
    names.update({
        "deconv01_1": "up.0", "deconv01_2": "up.1", f"in{up:02d}_1": "up.2",
        "deconv02_1": "up.4", "deconv02_2": "up.5", f"in{up + 1:02d}_1": "up.6",
        "deconv03_1": "output.1",
    })
    return names


def _official_to_toonlab_keys(n_blocks: int = 8) -> dict[str, str]:
    """Official state-dict key -> toonlab state-dict key (94 of each for 8 blocks)."""
    leaf_names = {"weight": "weight", "bias": "bias"}
    keys = {}
    for official, ours in official_key_map(n_blocks).items():
        leaves = {"scale": "weight", "shift": "bias"} if official.startswith("in") else leaf_names
        for theirs, mine in leaves.items():
            keys[f"{official}.{theirs}"] = f"{ours}.{mine}"
    return keys


def from_official_state_dict(state: Mapping[str, Any]) -> Generator:
    """The published ``{Hayao,Hosoda,Paprika,Shinkai}_net_G_float.pth`` as a toonlab :class:`Generator` taking RGB.

    The official ``Transformer`` (docs/reference.md §3.1, §8) reads and writes **BGR** in [-1, 1].
    Its 94 flat keys (``conv01_1.weight``, ``in01_1.scale`` ... ``deconv03_1.bias``) are renamed to
    toonlab's modules, and the channel order is folded into the weights: the first conv's input
    channels and the last conv's output channels (weights and bias) are reversed. So
    ``toonlab(rgb) == flip(official(flip(rgb)))`` and the result takes and returns RGB in [-1, 1].
    A file that is not such a state dict raises a ValueError naming the missing and unexpected keys.
    Notebook 02 §"Official styles".
    """
    if not isinstance(state, Mapping) or not state:
        raise ValueError("expected a non-empty state dict (a mapping of parameter names to tensors)")
    key_map = _official_to_toonlab_keys()
    missing, unexpected = set(key_map) - set(state), set(state) - set(key_map)
    if missing or unexpected:
        raise ValueError(
            "the state dict does not match the official CartoonGAN Transformer (94 keys conv01_1 ... deconv03_1): "
            f"missing keys: {describe_keys(missing) or 'none'}; "
            f"unexpected keys: {describe_keys(map(str, unexpected)) or 'none'}"
        )
    bad = [k for k in key_map if not isinstance(state[k], torch.Tensor)]
    if bad:
        raise ValueError(f"not a plain state dict: entries that are not tensors: {describe_keys(bad)}")
    ngf = int(state["conv01_1.weight"].shape[0])
    converted = {ours: state[theirs].detach().clone().float() for theirs, ours in key_map.items()}
    converted["flat.1.weight"] = converted["flat.1.weight"].flip(1)  # BGR input -> RGB input
    converted["output.1.weight"] = converted["output.1.weight"].flip(0)  # BGR output -> RGB output
    converted["output.1.bias"] = converted["output.1.bias"].flip(0)
    generator = Generator(ngf=ngf, n_blocks=8)
    expected = generator.state_dict()
    wrong = [f"{theirs} {tuple(state[theirs].shape)} (expected {tuple(expected[ours].shape)})"
             for theirs, ours in key_map.items() if state[theirs].shape != expected[ours].shape]
    if wrong:
        raise ValueError(f"tensor shapes do not match the official CartoonGAN Transformer: {describe_keys(wrong, 6)}")
    generator.load_state_dict(converted, strict=True)
    return generator
