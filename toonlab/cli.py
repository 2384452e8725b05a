"""The ``toonlab`` command: export synthetic data, train a model, translate images, cartoonize your photos.

    toonlab export-synthetic data/synthetic --size 128
    toonlab train cyclegan --preset cpu --run-dir runs/cyclegan-cpu
    toonlab train cartoongan --data ~/datasets/selfie2anime --steps 20000 --device cuda --precision auto
    toonlab train cyclegan --resume runs/cyclegan-cpu --steps 500
    toonlab translate runs/cyclegan-cpu photos/ cartoons/
    toonlab translate cyclegan-synthetic photos/ cartoons/      (a converged model that ships with toonlab)
    toonlab eval munit-synthetic
    toonlab translate Hayao_net_G_float.pth me.jpg me_hayao.png --official cartoongan
    toonlab cartoonize me.jpg --out cartoons/ --paste             (faces found, levelled, every model)
    toonlab data --list ; toonlab data cartoonset10k ; toonlab pretrained cartoongan/Hayao
"""

from __future__ import annotations

import argparse
import ast
import math
import shlex
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from toonlab.config import PRESETS
from toonlab.models import MODEL_KINDS
from toonlab.pretrained import NAMES as PRETRAINED_NAMES

#: largest --size accepted (an image side in pixels): beyond it a single activation needs tens of GB
MAX_SIZE = 4096


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


# --- helpers -------------------------------------------------------------------------------------

def parse_assignments(items: Sequence[str] | None, flag: str) -> dict[str, Any]:
    """``["lambda_a=5", "norm=instance"]`` -> ``{"lambda_a": 5, "norm": "instance"}``."""
    values: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"{flag} expects NAME=VALUE, got {item!r}")
        name, raw = item.split("=", 1)
        try:
            values[name.strip()] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            values[name.strip()] = raw
    return values


# --- export-synthetic ----------------------------------------------------------------------------

def cmd_export_synthetic(args: argparse.Namespace) -> int:
    from toonlab.data.synthetic import export_dataset

    out = export_dataset(args.out, size=args.size, n_train=args.train, n_test=args.test, seed=args.seed,
                         overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote synthetic portraits to {out} (trainA trainB testA testB; testB holds the true cartoons of testA)")
    return 0


# --- train ---------------------------------------------------------------------------------------

def check_train_args(args: argparse.Namespace) -> None:
    """Refuse impossible numbers before anything is read or written (one line each, no traceback)."""
    from toonlab.config import pick_device

    if args.steps is not None and args.steps < 0:
        raise CLIError(f"--steps must be >= 0, got {args.steps}")
    if args.epochs is not None and not (math.isfinite(args.epochs) and args.epochs >= 0):
        raise CLIError(f"--epochs must be a finite number >= 0, got {args.epochs}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr >= 0):
        raise CLIError(f"--lr must be a finite number >= 0 (the paper's is 2e-4), got {args.lr}")
    check_size(args.size, "--size")
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--checkpoint-every", args.checkpoint_every, 0),
                             ("--sample-every", args.sample_every, 0), ("--workers", args.workers, 0)):
        if value is not None and value < low:
            raise CLIError(f"{flag} must be >= {low}, got {value}")
    pick_device(args.device)


def check_size(size: int | None, flag: str) -> None:
    if size is not None and not 1 <= size <= MAX_SIZE:
        raise CLIError(f"{flag} must be between 1 and {MAX_SIZE} pixels, got {size}")


def check_hparams(kind: str, config, hparams: dict[str, Any]) -> None:
    """Refuse unknown, non-finite or out-of-range hyper-parameters before the run directory is touched."""
    import dataclasses

    from toonlab.config import coerce_field
    from toonlab.models import model_module

    names = model_module(kind).Model.hparam_names
    unknown = sorted(set(hparams) - set(names))
    if unknown:
        raise CLIError(f"{', '.join(unknown)}: not a tunable hyper-parameter of {kind}; choose from {', '.join(names)} "
                       "(other config fields go in --config NAME=VALUE)")
    values = {name: coerce_field(type(config), name, value, kind) for name, value in hparams.items()}
    dataclasses.replace(config, **values)  # runs the config's own checks (no negative learning rate or loss weight)


#: what ``toonlab train`` writes into a run directory (and so what ``--overwrite`` may delete)
RUN_FILES = ("config.json", "history.json", "metrics.json", "result.png", "losses.png")


def existing_checkpoints(run_dir: Path) -> list[Path]:
    """Training checkpoints already in ``run_dir`` (``checkpoints/latest.pt``, ``checkpoints/step_*.pt``)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name == "latest.pt" or (p.name.startswith("step_") and p.suffix == ".pt"))


def refuse_existing_run(run_dir: Path, kind: str, overwrite: bool) -> None:
    """A run directory holding a checkpoint is never trained over, unless --overwrite says so."""
    found = existing_checkpoints(run_dir)
    if not found or overwrite:
        return
    from toonlab.checkpoint import read_checkpoint

    try:
        state = read_checkpoint(found[-1] if found[-1].name == "latest.pt" else found[0])
        what = f"a {state['kind']} run at step {state['step']}"
        kind = state["kind"]
    except Exception:  # unreadable: still somebody's file, still not ours to replace
        what = f"checkpoints ({found[0].name} ...)"
    raise CLIError(f"{run_dir} already holds {what}; continue it with `toonlab train {kind} --resume "
                   f"{shlex.quote(str(run_dir))}`, or pass --overwrite to delete it and start again "
                   "(or choose another --run-dir)")


def clear_run(run_dir: Path) -> list[Path]:
    """Delete what a previous ``toonlab train`` wrote in ``run_dir`` (only its own files); returns them."""
    removed = existing_checkpoints(run_dir)
    if (run_dir / "checkpoints").is_dir():
        removed += [p for p in (run_dir / "checkpoints").glob(".*.pt.*.tmp")]
    if (run_dir / "samples").is_dir():
        removed += sorted((run_dir / "samples").glob("step_*.png"))
    removed += [run_dir / name for name in RUN_FILES if (run_dir / name).is_file()]
    for path in removed:
        path.unlink()
    return removed


def cmd_train(args: argparse.Namespace) -> int:
    from toonlab.config import pick_device
    from toonlab.distributed import launched_by_torchrun, local_device, start_world, stop_world

    check_train_args(args)
    world = None
    if launched_by_torchrun():  # torchrun --nproc_per_node N: this process is one rank of the run
        args.device = local_device(args.device)
        world = start_world(pick_device(args.device))
    try:
        return _train(args, world)
    finally:
        stop_world()


def _train(args: argparse.Namespace, world) -> int:
    """``toonlab train`` in this process (one rank of ``world`` under torchrun, or the whole run)."""
    import torch

    from toonlab.checkpoint import (check_checkpoint_weights, check_resumable, config_from_dict, read_checkpoint,
                                    resolve_checkpoint_path)
    from toonlab.data import load_datasets
    from toonlab.models import build_config
    from toonlab.metrics.report import PHOTO, headline
    from toonlab.train import Trainer, cpu_speed_notes, make_trainer, sample_photos
    from toonlab.viz import comparison_rows, image_rows, loss_curves, save_figure

    main_process = world is None or world.is_main
    say = print if main_process else (lambda *a, **k: None)
    overrides = parse_assignments(args.config, "--config")
    hparams = parse_assignments(args.hparam, "--hparam")
    if args.lr is not None:
        hparams["lr"] = args.lr
    if args.size is not None:
        overrides["image_size"] = args.size
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    trainer_kwargs = dict(device=args.device, precision=args.precision, channels_last=args.channels_last,
                          fast=args.fast, compile=args.compile,
                          checkpoint_every=args.checkpoint_every, sample_every=args.sample_every,
                          num_workers=args.workers, progress=not args.quiet, keep_checkpoints=args.keep_checkpoints,
                          world=world)

    if args.resume:
        state = read_checkpoint(args.resume)
        check_resumable(state, args.resume)
        if state["kind"] != args.model:
            raise CLIError(f"{args.resume} is a {state['kind']} checkpoint; run `toonlab train {state['kind']} --resume ...`")
        if overrides:
            raise CLIError("--config/--size/--batch-size cannot change a resumed run; only --lr and --hparam can")
        check_checkpoint_weights(state, resolve_checkpoint_path(args.resume))
        config = config_from_dict(state["kind"], state["config"])
        check_hparams(args.model, config, hparams)
        run_dir = Path(args.run_dir) if args.run_dir else _run_dir_of(Path(args.resume))
        if run_dir.resolve() == _run_dir_of(Path(args.resume)).resolve():
            if args.overwrite:
                raise CLIError("--overwrite deletes a run; it cannot be combined with --resume of that same run")
        elif main_process:
            refuse_existing_run(run_dir, args.model, args.overwrite)  # continuing into another run's folder
        size = state["config"]["image_size"]
        train_set, test_set = load_datasets(args.data, size, state["seed"], cache=args.cache_images or args.fast)
        if args.overwrite and main_process:
            clear_run(run_dir)
        samples = sample_photos(test_set) if test_set is not None else None
        trainer = Trainer.from_checkpoint(args.resume, train_set, state=state, run_dir=run_dir, sample_images=samples,
                                          **trainer_kwargs)
        say(f"resumed {args.model} at step {trainer.step} from {trainer.last_checkpoint}")
        if state.get("world_size", 1) != trainer.world.size:
            say(f"note: the checkpoint was trained by {state.get('world_size', 1)} process(es), this run has "
                f"{trainer.world.size}: the effective batch is now {trainer.effective_batch_size}, so the data "
                "stream from here differs from the uninterrupted run's")
    else:
        if "seed" in overrides and overrides["seed"] != args.seed:
            raise CLIError(f"--config seed={overrides['seed']} and --seed {args.seed} differ; give the run's one seed as --seed")
        config = build_config(args.model, args.preset, **{**overrides, "seed": args.seed})
        check_hparams(args.model, config, hparams)
        run_dir = Path(args.run_dir or f"runs/{args.model}-{args.preset or 'default'}")
        if main_process:  # rank 0 owns the run folder
            refuse_existing_run(run_dir, args.model, args.overwrite)
        train_set, test_set = load_datasets(args.data, int(config.image_size), args.seed,
                                            cache=args.cache_images or args.fast)
        if args.overwrite and main_process and (removed := clear_run(run_dir)):
            print(f"--overwrite: deleted the previous run in {run_dir} ({len(removed)} file(s))")
        trainer = make_trainer(args.model, config=config, dataset=train_set, test_dataset=test_set,
                               seed=args.seed, run_dir=run_dir, **trainer_kwargs)
    trainer.resume_command = (f"toonlab train {args.model} --resume {shlex.quote(str(trainer.run_dir))}"
                              + (f" --data {shlex.quote(args.data)}" if args.data != "synthetic" else ""))
    if hparams:
        trainer.set_hparams(**hparams)
    steps = args.steps
    if steps is None and args.epochs is None:
        steps = default_steps(trainer)
    processes = (f", {trainer.world.size} processes x batch {trainer.batch_size} = effective batch "
                 f"{trainer.effective_batch_size}" if trainer.world.distributed else "")
    say(f"training {args.model} on {trainer.device} ({trainer.precision.mode}){processes}, "
        f"{trainer.steps_per_epoch} steps/epoch, hparams {trainer.hparams}, run dir {trainer.run_dir}")
    for note in [*trainer.model.notes(), *cpu_speed_notes(trainer.device)]:
        say(f"note: {note}")
    trainer.fit(steps=steps, epochs=args.epochs)
    if not main_process:  # rank 0 evaluates and draws
        return 0
    print(f"checkpoint: {trainer.last_checkpoint}")

    title = f"{args.model}: test photos -> cartoons (step {trainer.step})"
    if args.data == "synthetic" and not args.no_eval:
        record = evaluate_trained(trainer.model, trainer.run_dir / "metrics.json",
                                  {"run_dir": str(trainer.run_dir), "step": trainer.step})
        scores = record["results"][record["model"]["name"]]
        title += "\n" + headline(scores, record["results"].get(PHOTO))
    if test_set is not None:
        photos = sample_photos(test_set, 8).to(trainer.device)
        generated = trainer.model.translator("AtoB", seed=args.seed)(photos).float().cpu()
        truth = None
        if getattr(test_set, "paired", False):
            truth = torch.stack([test_set[(i, i, 0)]["B"] for i in range(len(photos))])
        fig = image_rows(comparison_rows(photos.cpu(), generated, truth), title=title)
        picture = save_figure(fig, trainer.run_dir / "result.png")
        print(f"picture: {picture}")
    if trainer.history:
        save_figure(loss_curves(trainer.history, smooth=10), trainer.run_dir / "losses.png")
    return 0


def evaluate_trained(model, json_path: Path | None, extra: dict, protocol=None, markdown: bool = False) -> dict:
    """Score ``model`` beside the baselines on the synthetic protocol, print the table, write ``json_path`` (if given)."""
    from toonlab.metrics.report import evaluate_model, format_markdown, format_table, write_record

    record = evaluate_model(model, protocol=protocol, extra=extra)
    print(f"evaluation ({record['protocol']['name']}; {record['machine']}):")
    print((format_markdown if markdown else format_table)(record["results"]))
    if json_path is not None:
        print(f"metrics: {write_record(record, json_path)}")
    return record


def default_steps(trainer) -> int:
    """Steps when neither --steps nor --epochs is given: the preset's own length."""
    return max(0, trainer.model.total_steps() - trainer.step)


def _run_dir_of(checkpoint: Path) -> Path:
    if checkpoint.is_dir():
        return checkpoint
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


# --- translate -----------------------------------------------------------------------------------

def plan_outputs(input_path: Path, output: Path, n_styles: int, overwrite: bool) -> list[tuple[Path, list[Path]]]:
    """Each input image with the file(s) it is translated to; refuses every plan that would lose a file.

    A single image goes to ``output`` (a folder: ``output/STEM.png``; no suffix: ``.png`` added), with
    ``_styleK`` before the suffix when there are several styles. A folder is walked with its
    sub-folders, skipping ``output`` when it lies inside; ``photos/sub/a.jpg`` goes to
    ``output/sub/a.png``, and when several inputs of one folder share a stem the non-PNG ones keep
    their extension in the name (``a.png``, ``a_jpg.png``). Refused: an output that is an input, an
    input folder as its own output, and (without ``overwrite``) outputs that already exist.
    """
    from PIL import Image

    if not input_path.exists():
        raise CLIError(f"{input_path} does not exist")
    styles = [f"_style{k}" for k in range(n_styles)] if n_styles > 1 else [""]
    if input_path.is_dir():
        if output.exists() and not output.is_dir():
            raise CLIError(f"{output} is a file; the input is a folder, so the output must be a folder too")
        if _same_path(output, input_path):
            raise CLIError(f"the output folder {output} is the input folder: the photos would be replaced by their "
                           "cartoons; choose another output folder")
        inputs = _walk_images(input_path, skip=output)
        taken: dict[str, Path] = {}
        plan = []
        groups: dict[tuple[Path, str], int] = {}
        for path in inputs:
            key = (path.parent, path.stem.casefold())
            groups[key] = groups.get(key, 0) + 1
        for path in inputs:
            rel_dir = path.parent.relative_to(input_path)
            stem = path.stem
            if groups[(path.parent, stem.casefold())] > 1 and path.suffix != ".png":
                stem = f"{stem}_{path.suffix[1:]}"
            targets = []
            for style in styles:
                target = _unique(output / rel_dir / f"{stem}{style}.png", taken)
                targets.append(target)
            plan.append((path, targets))
    else:
        if output.is_dir():
            base = output / f"{input_path.stem}.png"
        else:
            base = output if output.suffix else output.with_name(output.name + ".png")
            if base.suffix.lower() not in Image.registered_extensions():
                raise CLIError(f"cannot write images with the suffix {base.suffix!r} ({output}); use .png or .jpg")
        targets = [base.with_name(f"{base.stem}{style}{base.suffix}") for style in styles]
        plan = [(input_path, targets)]
    inputs = {path.resolve() for path, _ in plan}
    for _, targets in plan:
        for target in targets:
            if target.resolve() in inputs:
                raise CLIError(f"the output {target} is an input image: it would be replaced by its cartoon; "
                               "choose another output")
    existing = [t for _, targets in plan for t in targets if t.exists()]
    if existing and not overwrite:
        what = f"{existing[0]} and {len(existing) - 1} more output(s) already exist" if len(existing) > 1 else \
            f"{existing[0]} already exists"
        raise CLIError(f"{what}; pass --overwrite to replace them, or choose another output")
    return plan


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b) or a.resolve() == b.resolve()
    except OSError:
        return False


def _walk_images(folder: Path, skip: Path | None = None) -> list[Path]:
    """Image files under ``folder`` (sub-folders included, hidden files left out), not those under ``skip``."""
    from toonlab.data.folders import IMAGE_EXTENSIONS

    skip_resolved = skip.resolve() if skip is not None else None
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if skip_resolved is not None and skip_resolved in path.resolve().parents:
            continue
        if path.is_file():
            files.append(path)
    if not files:
        raise CLIError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {folder}")
    return files


def _unique(target: Path, taken: dict[str, Path]) -> Path:
    """``target``, or ``target`` with ``_2``, ``_3`` ... before the suffix if the name is taken (case-insensitively)."""
    candidate, n = target, 1
    while str(candidate).casefold() in taken:
        n += 1
        candidate = target.with_name(f"{target.stem}_{n}{target.suffix}")
    taken[str(candidate).casefold()] = candidate
    return candidate


def cmd_translate(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor, resize, to_pil_image

    from toonlab.config import pick_device
    from toonlab.io import atomic_write

    if args.num_styles < 1:
        raise CLIError(f"--num-styles must be >= 1, got {args.num_styles}")
    check_size(args.size, "--size")
    device = pick_device(args.device)
    input_path, output = Path(args.input), Path(args.output)
    if not input_path.exists():
        raise CLIError(f"{input_path} does not exist")
    style_image = None

    if args.official:
        from toonlab.checkpoint import CheckpointError, all_finite
        from toonlab.hub import load_official

        net = load_official(args.official, args.checkpoint, device=device)
        modules = [net] if isinstance(net, torch.nn.Module) else \
            [m for m in vars(net).values() if isinstance(m, torch.nn.Module)]
        if not all(all_finite(m.state_dict().values()) for m in modules):
            raise CheckpointError(f"{args.checkpoint} holds NaN or infinite weights; its cartoons would be black or noise")
        translator = net if hasattr(net, "translations") else None  # MUNIT's generator pair
        size = args.size
    else:
        from toonlab.checkpoint import load_trained_model

        net = translator = load_trained_model(args.checkpoint, device)
        size = args.size or int(net.config.image_size)
    multimodal = bool(getattr(translator, "multimodal", False))
    if not multimodal and (args.num_styles != 1 or args.style_image):
        raise CLIError("--num-styles and --style-image are for multimodal models (MUNIT); "
                       f"{args.official or translator.kind} draws no styles")

    def run(x):
        if translator is None:
            return net(x)
        return translator.translations(x, args.direction, args.num_styles, style_image, args.seed)

    n_styles = args.num_styles if multimodal and not args.style_image else 1
    plan = plan_outputs(input_path, output, n_styles, args.overwrite)

    from toonlab.data.folders import load_rgb

    def load(path: Path) -> torch.Tensor:
        try:  # the reader training uses: EXIF orientation, alpha composited on white, 16-bit scaled
            img = load_rgb(path)
        except Exception as err:  # unreadable or not an image
            raise CLIError(f"cannot read image {path}: {err}") from err
        x = pil_to_tensor(img).float() / 127.5 - 1
        if size:
            x = resize(x, [size, size], antialias=True)
        return x.unsqueeze(0).to(device)

    if args.style_image:
        style_image = load(Path(args.style_image))

    written, skipped = [], []
    many = input_path.is_dir()
    with torch.no_grad():
        for path, targets in plan:
            try:
                x = load(path)
            except CLIError as err:
                if not many:
                    raise
                print(f"skipped {path}: {err.__cause__ or err}", file=sys.stderr)
                skipped.append(path)
                continue
            y = run(x).float().cpu().clamp(-1, 1)
            images = list(y) if y.dim() == 4 else [y]
            if len(images) != len(targets):
                raise CLIError(f"the model gave {len(images)} image(s) for {path}, expected {len(targets)}")
            for image, target in zip(images, targets):
                picture = to_pil_image((image + 1) / 2)
                fmt = Image.registered_extensions()[target.suffix.lower()]
                atomic_write(target, lambda handle: picture.save(handle, format=fmt), fsync=False)
                written.append(target)
    where = output if many or len(written) != 1 else written[0]
    if skipped:
        print(f"translated {len(plan) - len(skipped)} of {len(plan)} image(s), wrote {len(written)} file(s) to "
              f"{where}; {len(skipped)} unreadable file(s) skipped")
        return 1
    print(f"wrote {len(written)} image(s) to {where}")
    return 0


# --- eval ----------------------------------------------------------------------------------------

def cmd_eval(args: argparse.Namespace) -> int:
    from toonlab.checkpoint import model_from_state, read_checkpoint, resolve_checkpoint_path
    from toonlab.config import pick_device
    from toonlab.metrics.report import DISTRIBUTION_METRICS, evaluate_folder, format_table, write_record
    from toonlab.metrics.synthetic import Protocol

    if args.n < 1:
        raise CLIError(f"--n must be >= 1, got {args.n}")
    device = pick_device(args.device)
    path = resolve_checkpoint_path(args.checkpoint)
    state = read_checkpoint(path)
    model = model_from_state(state, path, device)
    step = int(state.get("step", 0))
    size = args.size or int(model.config.image_size)
    extra = {"checkpoint": str(path), "step": step}
    if args.data == "synthetic":
        evaluate_trained(model, Path(args.json) if args.json else None, extra,
                         protocol=Protocol(size=size, n=args.n, seed=args.seed), markdown=args.markdown)
        return 0
    folder = Path(args.data).expanduser()
    if not folder.is_dir():
        raise CLIError(f"--data must be 'synthetic' or a folder with testA and testB; {folder} is not a folder")
    from toonlab.metrics.distribution import InceptionWeightsUnavailable

    try:
        record = evaluate_folder(model.translator("AtoB", seed=args.seed), folder, size, n=args.n, device=device,
                                 name=model.kind)
    except InceptionWeightsUnavailable as err:
        raise CLIError(str(err)) from err
    for name, scores in record["results"].items():
        for warning in scores.get("warnings", []):
            print(f"note ({name}): {warning}")
    print(f"evaluation on {folder} ({record['machine']}):")
    print(format_table(record["results"], DISTRIBUTION_METRICS))
    if args.json:
        print(f"metrics: {write_record(record, args.json)}")
    return 0


# --- data and pretrained downloads ---------------------------------------------------------------

def _show_registry(rows, width: int, listed: bool, what: str, command: str) -> int:
    """Print ``(name, description)`` rows; 0 for ``--list``, else a CLIError: nothing was named to fetch."""
    for name, description in rows:
        print(f"{name:<{width}} {description}")
    if not listed:
        raise CLIError(f"name a {what} (toonlab {command} --list shows them)")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from toonlab.data.download import DATASETS, DownloadError, prepare_dataset

    if args.list or not args.name:
        return _show_registry(((n, a.description) for n, a in DATASETS.items()), 24, args.list, "dataset", "data")
    try:
        target = prepare_dataset(args.name, root=args.root, quiet=args.quiet, keep_archive=not args.delete_archive)
    except DownloadError as err:
        raise CLIError(str(err)) from err
    print(f"{args.name}: {target}")
    return 0


def cmd_pretrained(args: argparse.Namespace) -> int:
    from toonlab import pretrained
    from toonlab.data.download import PRETRAINED, DownloadError, fetch_pretrained

    if args.list or not args.names:
        rows = [*((n, f"{a.description} (download)") for n, a in PRETRAINED.items()),
                *((n, f"{m.get('what', '')} (ships with toonlab)") for n, m in pretrained.available().items())]
        return _show_registry(rows, 34, args.list, "checkpoint", "pretrained")
    status = 0
    for name in args.names:
        if name in pretrained.NAMES:
            print(f"{name}: ships with toonlab, nothing to download ({pretrained.pretrained_path(name)})")
            continue
        try:
            path = fetch_pretrained(name, dest=args.dest, quiet=args.quiet)
        except (DownloadError, ValueError) as err:
            print(f"toonlab pretrained: error: {name}: {err}", file=sys.stderr)
            status = 1  # as translate and cartoonize: the others are still fetched, the status says one failed
            continue
        print(f"{name}: {path}  (toonlab translate {path} PHOTO OUT --official {name.split('/')[0]})")
    return status


# --- cartoonize ----------------------------------------------------------------------------------

def cmd_cartoonize(args: argparse.Namespace) -> int:
    from toonlab.cartoonize import cartoonize, default_models
    from toonlab.config import pick_device

    missing = [p for p in args.photos if not Path(p).expanduser().is_file()]
    if missing:
        raise CLIError(f"no such photo: {', '.join(missing)}")
    models = args.model or default_models()
    print(f"cartoonizing {len(args.photos)} photo(s) with {', '.join(models)} into {args.out}")
    report = cartoonize(args.photos, args.out, models, largest_only=args.largest, paste=args.paste,
                        margin=args.margin, overwrite=args.overwrite, device=pick_device(args.device))
    faces = sum(len(v) for v in report.faces.values())
    print(f"{faces} face(s) in {len(report.faces) - len(report.no_face)} photo(s); {len(report.written)} files written; "
          f"{len(report.no_face)} photo(s) without a face, {len(report.unreadable)} unreadable")
    return 1 if report.no_face or report.unreadable else 0


# --- argument parsing ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toonlab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export-synthetic", help="write the built-in synthetic portraits as image folders",
                       description="Write synthetic portraits in the CycleGAN layout trainA trainB testA testB; "
                                   "testB holds the true cartoon of each testA photo (same file names).")
    p.add_argument("out", help="output folder (must be empty or a previous export)")
    p.add_argument("--size", type=int, default=128, help="image size in pixels, 32-256 (default 128)")
    p.add_argument("--train", type=int, default=1000, help="images per training domain (default 1000)")
    p.add_argument("--test", type=int, default=100, help="test photo/cartoon pairs (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="write into OUT even though it holds other files (a previous export is replaced without it; files of your own are never deleted)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_export_synthetic)

    p = sub.add_parser("train", help="train a model on synthetic portraits or an image folder",
                       description="Train CycleGAN, CartoonGAN, MUNIT or XGAN. Writes RUN_DIR/checkpoints/latest.pt, "
                                   "config.json, history.json, losses.png and result.png (test photos and their cartoons).")
    p.add_argument("model", choices=MODEL_KINDS)
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="paper (reference architecture, 256 px), cpu (small, 64 px), fast (tiny, CI). "
                        "Default: fast with TOONLAB_FAST=1, paper on a GPU, cpu otherwise")
    p.add_argument("--data", default="synthetic",
                   help="'synthetic' (built in, default) or a folder with trainA trainB [testA testB]")
    p.add_argument("--size", type=int, help=f"image size, 1-{MAX_SIZE} (overrides the preset)")
    p.add_argument("--batch-size", type=int, help="batch size (overrides the preset)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="training steps to run (default: the preset's length)")
    length.add_argument("--epochs", type=float, help="epochs to run (an epoch is max(|A|, |B|) images)")
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--hparam", action="append", metavar="NAME=VALUE",
                   help="tunable hyper-parameter, e.g. lambda_a=5 lambda_identity=0 content_weight=10 (repeatable)")
    p.add_argument("--config", action="append", metavar="NAME=VALUE",
                   help="any config field of the model, e.g. ngf=32 n_blocks=6 gan_mode=vanilla (repeatable)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if present)")
    p.add_argument("--precision", default=None, choices=("fp32", "bf16", "fp16", "auto"),
                   help="mixed precision: auto = bf16 on GPUs that support it, else fp16 with loss scaling (fp32 on "
                        "the CPU); bf16 also runs on CPUs. Default fp32 (with --fast: bf16 where the chip has it)")
    p.add_argument("--fast", action="store_true",
                   help="the fast path: bf16 where the chip computes it natively; on CUDA also torch.compile, fused "
                        "Adam and cuDNN autotuning; image folders cached in memory. Same model, same losses; "
                        "checkpoints resume either way")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the networks (default: with --fast on CUDA; on the CPU it measured faster "
                        "for CycleGAN and CartoonGAN after seconds to minutes of compiling; needs a C++ compiler)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format (faster convolutions on CUDA; default: with --fast on CUDA for CycleGAN "
                        "and CartoonGAN, where it measured faster)")
    p.add_argument("--run-dir", help="folder for checkpoints, samples and pictures (default runs/MODEL-PRESET); "
                                     "one that already holds a checkpoint is refused without --resume or --overwrite")
    p.add_argument("--resume", metavar="CHECKPOINT_OR_RUN_DIR", help="continue a run from its checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in a run directory that holds a previous run, deleting its checkpoints "
                        "(only the files toonlab train writes)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="checkpoint every N steps (default 500)")
    p.add_argument("--keep-checkpoints", action="store_true", help="also keep a copy of every checkpoint")
    p.add_argument("--sample-every", type=int, default=0, help="save a sample grid every N steps")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--cache-images", action="store_true",
                   help="keep an image folder's decoded, resized images in memory (on with --fast): later epochs "
                        "only crop and flip; about load_size^2 x 3 bytes per image")
    p.add_argument("--seed", type=int, default=0,
                   help="the run's one seed: initial weights, data order, built-in data and styles (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-eval", action="store_true",
                   help="skip the final evaluation (RUN_DIR/metrics.json) on the synthetic test protocol")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("translate", help="translate an image or a folder with a checkpoint",
                       description="Translate photos to cartoons with a toonlab checkpoint (a run folder or .pt) "
                                   "or, with --official, a published reference file. A folder is translated with "
                                   "its sub-folders into the same structure under OUTPUT, as PNG: photos/sub/a.jpg "
                                   "-> OUTPUT/sub/a.png; when several inputs of one folder share a name (a.png, "
                                   "a.jpg), the non-PNG ones keep their extension in the name (a.png, a_jpg.png). "
                                   "OUTPUT may lie inside the input folder (it is not read back) but not be it; "
                                   "existing outputs are kept unless --overwrite. Unreadable images are skipped "
                                   "with one line each; the exit status is then 1.")
    p.add_argument("checkpoint", help="toonlab run folder / checkpoint, a converged model's name "
                                      f"({', '.join(PRETRAINED_NAMES)}), or an official weight file with --official")
    p.add_argument("input", help="an image or a folder of images (read with its sub-folders)")
    p.add_argument("output", help="output image (single input; .png added without a suffix) or folder")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--official", choices=("cyclegan", "cartoongan", "munit", "animegan2"),
                   help="the checkpoint is a published reference file of this kind")
    p.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"))
    p.add_argument("--size", type=int, help=f"resize inputs to SIZE x SIZE, 1-{MAX_SIZE} (default: the model's training size)")
    p.add_argument("--num-styles", type=int, default=1, help="MUNIT: random styles per image")
    p.add_argument("--style-image", help="MUNIT: take the style from this example image")
    p.add_argument("--seed", type=int, default=0, help="MUNIT: seed of the random styles")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_translate)
    p = sub.add_parser("eval", help="score a trained model beside the photo and classical baselines",
                       description="Score a toonlab checkpoint (a run folder or .pt) on the fixed synthetic test "
                                   "protocol (paired and per-problem metrics beside the baselines) or, with "
                                   "--data FOLDER, by KID and FID of its translated testA against testB.")
    p.add_argument("checkpoint", help=f"toonlab run folder, checkpoint file, or a converged model's name "
                                      f"({', '.join(PRETRAINED_NAMES)})")
    p.add_argument("--data", default="synthetic", help="'synthetic' (default) or a folder with testA and testB")
    p.add_argument("--n", type=int, default=100, help="test portraits (synthetic) or at most this many photos (default 100)")
    p.add_argument("--size", type=int, help="image size (default: the model's training size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic test identities and of random styles")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--markdown", action="store_true", help="print the table in Markdown (as in the README)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("data", help="download and lay out a dataset of the registry (--list)",
                       description="Download a dataset of toonlab's registry (checksums where known, resume, "
                                   "safe extraction, a completion marker) and lay it out as trainA/trainB/testA/testB "
                                   "(CartoonSet: trainB/testB; CelebA: trainA/valA/testA by its official partition); prints the folder.")
    p.add_argument("name", nargs="?", help="dataset name (see --list)")
    p.add_argument("--list", action="store_true", help="list the known datasets")
    p.add_argument("--root", type=Path, default=None, help="datasets folder (default: $TOONLAB_DATA/datasets)")
    p.add_argument("--delete-archive", action="store_true", help="delete the archive after extraction")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("pretrained", help="download published weights of the registry (--list)",
                       description="Download published generator weights (CycleGAN, CartoonGAN, AnimeGANv2) into "
                                   "$TOONLAB_DATA/pretrained; prints each file's path. --list also names the "
                                   "converged models that ship with toonlab.")
    p.add_argument("names", nargs="*", help="names such as cartoongan/Hayao (see --list)")
    p.add_argument("--list", action="store_true", help="list the known weights")
    p.add_argument("--dest", type=Path, default=None, help="folder (default: $TOONLAB_DATA/pretrained)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_pretrained)
    p = sub.add_parser("cartoonize", help="your photos as cartoons: faces found, levelled, cropped, every model",
                       description="Find the faces in each photo (OpenCV's bundled cascades, offline), level the eyes, "
                                   "crop a square with a margin, translate it with each model and write one image "
                                   "per model and face plus a side-by-side sheet into OUT. The exit status is 1 when "
                                   "a photo had no face or could not be read.")
    p.add_argument("photos", nargs="+", help="photo files (JPEG, PNG ...)")
    p.add_argument("--model", action="append", help="classical, a converged model's name "
                   f"({', '.join(PRETRAINED_NAMES)}) or a checkpoint; repeatable (default: classical and every "
                   "converged model installed)")
    p.add_argument("--out", default="cartoons", help="output folder (default: cartoons)")
    p.add_argument("--largest", action="store_true", help="only the largest face of each photo")
    p.add_argument("--paste", action="store_true", help="also write each photo with the cartoon face pasted back")
    p.add_argument("--margin", type=float, default=0.4, help="crop margin around the face, in face sizes (default 0.4)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_cartoonize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from toonlab.checkpoint import CheckpointError

    try:
        return args.func(args)
    except (CLIError, CheckpointError, OSError, ValueError) as err:  # OSError: missing files, a full disk ...
        print(f"toonlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from toonlab.train import TrainingDiverged

        if not isinstance(err, TrainingDiverged):
            raise
        print(f"toonlab {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the trainer has saved its last finished step
        print(f"toonlab {args.command}: {err or 'interrupted'}", file=sys.stderr)
        return 128 + int(getattr(err, "signal", signal.SIGINT))


if __name__ == "__main__":
    sys.exit(main())
