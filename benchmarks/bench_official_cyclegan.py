"""One CycleGAN training iteration on the CPU: the official code next to toonlab's, written as JSON.

    python benchmarks/bench_official_cyclegan.py --official-repo /path/to/pytorch-CycleGAN-and-pix2pix \
        --out benchmarks/results/official_cyclegan_cpu.json

The official code (https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix) is not part of toonlab
and is never committed: get it yourself and pass the folder holding its ``models/`` and ``util/``.
Only ``models/{__init__,base_model,networks,cycle_gan_model}.py`` and
``util/{__init__,image_pool}.py`` are imported (no visdom, dominate or option parsing).

Both sides train the paper architecture at ``--image-size`` (64) px, batch 1: ResNet-9 generators
(ngf 64), 70x70 PatchGANs (ndf 64, 3 layers), instance norm, LSGAN, cycle weights 10, identity 0.5,
image pools of 50, Adam(2e-4, (0.5, 0.999)). Three configurations are timed:

* ``official``: ``CycleGANModel.set_input`` + ``optimize_parameters`` in fp32;
* ``toonlab-eager``: ``build_model("cyclegan", "paper")``'s ``train_step`` in fp32;
* ``toonlab-fast``: the same with fused Adam, under :func:`toonlab.train.fast_precision` (bf16 autocast on a CPU that
  computes bf16 natively, else fp32; the mode used is recorded).

Every round runs each configuration in its own subprocess (so memory and thread pools do not leak
between them), in an order rotated from round to round; each process warms up, then times
``--steps`` iterations on fixed random tensors in [-1, 1]. Reported per configuration: median and
minimum seconds per iteration over all rounds, pairs/s, peak resident set size (``ru_maxrss``) and
parameter counts; and toonlab's speed-ups over the official code (ratio of the medians).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

CONFIGS = ("official", "toonlab-eager", "toonlab-fast")


def _machine_description(device: str) -> dict:
    """``machine_description`` of bench_train.py (next to this file), loaded by path."""
    spec = importlib.util.spec_from_file_location("bench_train", Path(__file__).with_name("bench_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.machine_description(device)


def official_options(image_size: int, checkpoints_dir: str) -> Namespace:
    """The options ``CycleGANModel`` and ``BaseModel`` read, at the paper's training defaults."""
    return Namespace(
        model="cycle_gan", isTrain=True, gpu_ids=[], checkpoints_dir=checkpoints_dir, name="bench",
        preprocess="resize_and_crop", load_size=image_size, crop_size=image_size, direction="AtoB",
        input_nc=3, output_nc=3, ngf=64, ndf=64, netG="resnet_9blocks", netD="basic", n_layers_D=3,
        norm="instance", init_type="normal", init_gain=0.02, no_dropout=True,
        lambda_A=10.0, lambda_B=10.0, lambda_identity=0.5, pool_size=50, gan_mode="lsgan",
        lr=0.0002, beta1=0.5, lr_policy="linear", n_epochs=100, n_epochs_decay=100, lr_decay_iters=50,
        epoch_count=1, continue_train=False, load_iter=0, epoch="latest", verbose=False,
    )


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _time_steps(step, warmup: int, steps: int) -> list[float]:
    for i in range(warmup):
        step(i)
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        step(warmup + i)
        times.append(time.perf_counter() - t0)
    return times


def run_official(official_repo: str, image_size: int, warmup: int, steps: int) -> dict:
    import random

    import torch

    sys.path.insert(0, str(Path(official_repo).resolve()))
    from models import create_model  # the official package, found through sys.path

    torch.manual_seed(0)
    random.seed(0)  # the official ImagePool draws from Python's random
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as checkpoints_dir, contextlib.redirect_stdout(sys.stderr):
        opt = official_options(image_size, checkpoints_dir)
        model = create_model(opt)
        model.setup(opt)  # schedulers, as the official train.py does
    a = torch.rand(1, 3, image_size, image_size) * 2 - 1
    b = torch.rand(1, 3, image_size, image_size) * 2 - 1
    data = {"A": a, "B": b, "A_paths": [""], "B_paths": [""]}

    def step(i: int) -> None:
        model.set_input(data)
        model.optimize_parameters()

    times = _time_steps(step, warmup, steps)
    nets = {name: getattr(model, "net" + name) for name in model.model_names}
    return {
        "precision": "fp32", "times": times, "rss_before_kib": rss_before,
        "parameters": sum(_count(n) for n in nets.values()),
        "parameters_G": _count(nets["G_A"]), "parameters_D": _count(nets["D_A"]),
    }


def run_toonlab(fast: bool, image_size: int, warmup: int, steps: int) -> dict:
    import torch

    from toonlab.models import build_model
    from toonlab.models.base import Precision
    from toonlab.train import fast_precision, set_fused_adam

    torch.manual_seed(0)
    mode = fast_precision(torch.device("cpu")) if fast else "fp32"
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = build_model("cyclegan", "paper", image_size=image_size)
    model.steps_per_epoch = 1000
    precision = Precision(mode, "cpu")
    set_fused_adam(model, fast)  # the fast path's fused Adam, as toonlab.train.Trainer(fast=True) sets it
    a = torch.rand(1, 3, image_size, image_size) * 2 - 1
    b = torch.rand(1, 3, image_size, image_size) * 2 - 1
    data = {"A": a, "B": b}

    def step(i: int) -> None:
        # a step index far past any initialisation phase (the paper preset has none anyway)
        model.train_step(data, precision, 10**6 + i)
        precision.update()

    times = _time_steps(step, warmup, steps)
    return {
        "precision": precision.mode, "times": times, "rss_before_kib": rss_before,
        "parameters": _count(model), "parameters_G": _count(model.G_A), "parameters_D": _count(model.D_A),
    }


def run_one(config: str, args: argparse.Namespace) -> dict:
    import torch

    if config == "official":
        result = run_official(args.official_repo, args.image_size, args.warmup, args.steps)
    else:
        result = run_toonlab(config == "toonlab-fast", args.image_size, args.warmup, args.steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result["peak_rss_mib"] = peak / 1024
    result["peak_rss_growth_mib"] = (peak - result.pop("rss_before_kib")) / 1024
    result["torch_threads"] = torch.get_num_threads()
    return result


def official_commit(path: Path) -> str | None:
    """The commit of the official checkout when ``path`` is the top of a git repository, else None."""
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel", "HEAD"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    top, commit = proc.stdout.split()
    return commit if Path(top).resolve() == path.resolve() else None


def summarise(config: str, runs: list[dict], image_size: int) -> dict:
    times = [t for run in runs for t in run["times"]]
    median = statistics.median(times)
    first = runs[0]
    return {
        "config": config, "precision": first["precision"], "image_size": image_size, "batch_size": 1,
        "rounds": len(runs), "steps_timed": len(times),
        "step_seconds_median": median, "step_seconds_min": min(times),
        "step_seconds_median_per_round": [statistics.median(run["times"]) for run in runs],
        "pairs_per_second": 1.0 / median,
        "peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
        "peak_rss_growth_mib": max(run["peak_rss_growth_mib"] for run in runs),
        "peak_memory_kind": "process peak RSS (ru_maxrss)",
        "parameters": first["parameters"], "parameters_G": first["parameters_G"],
        "parameters_D": first["parameters_D"], "torch_threads": first["torch_threads"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-repo", required=True,
                        help="folder of a junyanz/pytorch-CycleGAN-and-pix2pix checkout (holding models/ and util/)")
    parser.add_argument("--steps", type=int, default=10, help="timed iterations per process")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per process")
    parser.add_argument("--rounds", type=int, default=3, help="processes per configuration")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--out", default="benchmarks/results/official_cyclegan_cpu.json")
    parser.add_argument("--official-commit", default=None,
                        help="the official commit to record (default: that of --official-repo if a git checkout)")
    parser.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return 0

    repo = Path(args.official_repo)
    if not (repo / "models" / "cycle_gan_model.py").is_file():
        parser.error(f"{repo} holds no models/cycle_gan_model.py: pass the official repository's folder")
    runs: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    orders = []
    for r in range(args.rounds):
        order = CONFIGS[r % len(CONFIGS):] + CONFIGS[:r % len(CONFIGS)]  # rotate: no configuration always first
        orders.append(list(order))
        for config in order:
            cmd = [sys.executable, __file__, "--one", config, "--official-repo", str(repo),
                   "--image-size", str(args.image_size), "--warmup", str(args.warmup), "--steps", str(args.steps)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{config} (round {r + 1}) failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[config].append(run)
            print(f"round {r + 1}/{args.rounds} {config:14s} {run['precision']:5s} "
                  f"{statistics.median(run['times']) * 1000:8.1f} ms/iteration", flush=True)

    results = [summarise(c, runs[c], args.image_size) for c in CONFIGS]
    by_name = {r["config"]: r for r in results}
    base = by_name["official"]["step_seconds_median"]
    speedups = {
        "toonlab-eager_vs_official": base / by_name["toonlab-eager"]["step_seconds_median"],
        "toonlab-fast_vs_official": base / by_name["toonlab-fast"]["step_seconds_median"],
    }
    parameters_match = all(by_name["official"][k] == by_name["toonlab-eager"][k]
                           for k in ("parameters", "parameters_G", "parameters_D"))
    note = (f"One CycleGAN training iteration (G and D updates), paper architecture at {args.image_size} px, "
            "batch 1, on the CPU; random tensors in [-1, 1]. Each configuration ran in its own process per round, "
            "in rotated order; medians and minima are over all timed iterations of all rounds. Speed-ups are "
            "official median / toonlab median. toonlab-fast uses fused Adam and toonlab.train.fast_precision(cpu) "
            f"({by_name['toonlab-fast']['precision']} here).")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": _machine_description("cpu"), "note": note,
        "official": {"repository": "junyanz/pytorch-CycleGAN-and-pix2pix",
                     "commit": args.official_commit or official_commit(repo)},
        "protocol": {"steps": args.steps, "warmup": args.warmup, "rounds": args.rounds, "orders": orders},
        "results": results, "speedups": speedups, "parameters_match": parameters_match,
    }
    out.write_text(json.dumps(payload, indent=2))

    print(f"\n{'configuration':14s} {'precision':9s} {'median ms':>10s} {'min ms':>9s} {'pairs/s':>8s} "
          f"{'peak RSS MiB':>12s} {'params G':>10s} {'params D':>10s} {'params all':>11s}")
    for r in results:
        print(f"{r['config']:14s} {r['precision']:9s} {r['step_seconds_median'] * 1000:10.1f} "
              f"{r['step_seconds_min'] * 1000:9.1f} {r['pairs_per_second']:8.2f} {r['peak_rss_mib']:12.0f} "
              f"{r['parameters_G']:10,d} {r['parameters_D']:10,d} {r['parameters']:11,d}")
    print(f"speed-up over official: eager {speedups['toonlab-eager_vs_official']:.2f}x, "
          f"fast {speedups['toonlab-fast_vs_official']:.2f}x; parameter counts "
          f"{'match' if parameters_match else 'DIFFER'}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
