"""Training-step time and peak memory per model and preset, written as JSON.

    python benchmarks/bench_train.py --models cyclegan --presets fast cpu paper --out benchmarks/results/train_cpu.json
    python benchmarks/bench_train.py --device cuda --precision bf16 --channels-last --out benchmarks/results/train_h100.json
    python benchmarks/bench_train.py --models cyclegan --presets paper --size 64 --fast --out ...

``--fast`` is the training loop's fast path (``toonlab train --fast``): the precision of
:func:`toonlab.train.fast_precision` (bf16 where the chip computes it natively), fused Adam, and on
CUDA ``torch.compile`` of the networks and cuDNN autotuning; ``--compile`` and ``--fused-adam`` turn
those on alone (on the CPU too).

Each (model, preset) runs in its own subprocess so that the peak memory (CUDA: max allocated;
CPU: peak resident set size above the idle process) belongs to that configuration alone. Random
tensors stand in for data (the data pipeline is measured by bench_synthetic.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def machine_description(device: str) -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        # OMP_WAIT_POLICY=PASSIVE made CPU steps 1.5-3x slower here (docs/performance.md §4.3): say which ran
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def run_one(model_kind: str, preset: str, device: str, precision: str, channels_last: bool,
            warmup: int, steps: int, batch_size: int | None, size: int | None = None, compile: bool = False,
            fused_adam: bool = False) -> dict:
    import torch

    from toonlab.models import build_model
    from toonlab.models.base import Precision
    from toonlab.train import set_fused_adam

    torch.manual_seed(0)
    overrides = {"batch_size": batch_size} if batch_size else {}
    if size:
        overrides["image_size"] = size
    if model_kind == "cartoongan":
        overrides["vgg_weights"] = None  # a random VGG costs the same FLOPs and needs no download
    model = build_model(model_kind, preset, **overrides).to(device)
    if channels_last:
        model.to_memory_format(torch.channels_last)
    set_fused_adam(model, fused_adam)
    if compile:
        model.compile_networks()
    if device.startswith("cuda") and (compile or fused_adam):
        torch.backends.cudnn.benchmark = True
    cfg = model.config
    size, batch = int(cfg.image_size), int(cfg.batch_size)
    model.steps_per_epoch = 1000
    amp = Precision(precision, device)

    def batch_tensors():
        b = {k: torch.rand(batch, 3, size, size, device=device) * 2 - 1 for k in ("A", "B", "B_smooth")}
        if channels_last:
            b = {k: v.contiguous(memory_format=torch.channels_last) for k, v in b.items()}
        return b

    data = batch_tensors()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    # step index far past any initialisation phase, so the full adversarial step is measured
    step0 = 10**6
    started = time.perf_counter()
    for i in range(warmup):
        model.set_learning_rates(step0 + i)
        model.train_step(data, amp, step0 + i)
        amp.update()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    warmup_seconds = time.perf_counter() - started
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        model.train_step(data, amp, step0 + warmup + i)
        amp.update()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    result = {
        "model": model_kind, "preset": preset, "image_size": size, "batch_size": batch,
        "precision": amp.mode, "channels_last": channels_last, "compiled": compile, "fused_adam": fused_adam,
        "warmup_steps": warmup, "warmup_seconds": warmup_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps_timed": steps, "step_seconds_median": times[len(times) // 2], "step_seconds_min": times[0],
        "images_per_second": batch / times[len(times) // 2],
    }
    if device.startswith("cuda"):
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["peak_memory_kind"] = "torch.cuda.max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        result["peak_memory_mib"] = peak / 1024
        result["peak_rss_growth_mib"] = (peak - rss_before) / 1024
        result["peak_memory_kind"] = "process peak RSS (ru_maxrss)"
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cyclegan"])
    parser.add_argument("--presets", nargs="+", default=["fast", "cpu", "paper"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--size", type=int, default=None, help="image size (overrides the preset's)")
    parser.add_argument("--fast", action="store_true", help="the training loop's fast path (see above)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks")
    parser.add_argument("--fused-adam", action="store_true", help="fused Adam")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/train_cpu.json")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "PRESET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fast:
        import torch

        from toonlab.train import fast_precision

        cuda = args.device.startswith("cuda")
        args.precision = fast_precision(torch.device(args.device)) if args.precision == "fp32" else args.precision
        args.compile, args.fused_adam = args.compile or cuda, True

    if args.one:
        result = run_one(args.one[0], args.one[1], args.device, args.precision, args.channels_last,
                         args.warmup, args.steps, args.batch_size, args.size, args.compile, args.fused_adam)
        print(json.dumps(result))
        return 0

    results = []
    for model_kind in args.models:
        for preset in args.presets:
            cmd = [sys.executable, __file__, "--one", model_kind, preset, "--device", args.device,
                   "--precision", args.precision, "--warmup", str(args.warmup), "--steps", str(args.steps)]
            if args.channels_last:
                cmd.append("--channels-last")
            if args.batch_size:
                cmd += ["--batch-size", str(args.batch_size)]
            if args.size:
                cmd += ["--size", str(args.size)]
            cmd += ["--compile"] * args.compile + ["--fused-adam"] * args.fused_adam
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{model_kind}/{preset} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                results.append({"model": model_kind, "preset": preset, "error": proc.stderr[-500:]})
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{model_kind:10s} {preset:6s} {result['image_size']:4d}px batch {result['batch_size']:2d}: "
                  f"{result['step_seconds_median'] * 1000:9.1f} ms/step, peak {result['peak_memory_mib']:8.0f} MiB")
            results.append(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_description(args.device), "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
