"""Eager fp32 against the fast path (``toonlab train --fast``), as JSON with the speed-ups.

    python benchmarks/bench_fast.py --out benchmarks/results/fast_cpu.json
    python benchmarks/bench_fast.py --device cuda --size 256 --out benchmarks/results/fast_h200.json

For each case (a model and preset at a batch size) it runs :mod:`bench_train`'s one-configuration
subprocess twice or three times -- eager fp32, the fast path, and (``--with-compile``) the fast
path plus ``torch.compile`` -- alternating the variants ``--rounds`` times so that a change of
machine load hits them alike, and keeps each variant's fastest round. Default cases: the paper
CycleGAN step (at ``--size``, 64 px on the CPU) at batch 1 and 8, and every model's ``cpu`` preset.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import machine_description  # noqa: E402

MODELS = ("cyclegan", "cartoongan", "munit", "xgan")


def measure(model: str, preset: str, device: str, size: int | None, batch: int | None, flags: list[str],
            warmup: int, steps: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).parent / "bench_train.py"), "--one", model, preset, "--device", device,
           "--warmup", str(warmup), "--steps", str(steps), *flags]
    if size:
        cmd += ["--size", str(size)]
    if batch:
        cmd += ["--batch-size", str(batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"model": model, "preset": preset, "flags": flags, "error": proc.stderr[-800:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=None, help="image size of the paper cases (default 64 on the CPU)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes of the paper cases")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="models whose cpu preset is measured")
    parser.add_argument("--with-compile", action="store_true", help="also the fast path with torch.compile")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/fast_cpu.json")
    args = parser.parse_args(argv)
    size = args.size or (64 if args.device == "cpu" else None)

    variants = {"eager_fp32": [], "fast": ["--fast"]}
    if args.with_compile:
        variants["fast_compiled"] = ["--fast", "--compile"]
    cases = [("cyclegan", "paper", size, batch) for batch in args.batches]
    cases += [(model, "cpu", None, None) for model in args.models]
    rows = []
    for model, preset, case_size, batch in cases:
        best: dict[str, dict] = {}
        for _ in range(args.rounds):
            for name, flags in variants.items():
                result = measure(model, preset, args.device, case_size, batch, flags, args.warmup, args.steps)
                kept = best.get(name)
                if "error" in result or kept is None or \
                        result["step_seconds_median"] < kept.get("step_seconds_median", float("inf")):
                    best[name] = result
        row = {"model": model, "preset": preset, "variants": best}
        eager = best["eager_fp32"].get("step_seconds_median")
        for name, result in best.items():
            if name != "eager_fp32" and eager and "step_seconds_median" in result:
                row[f"speedup_{name}"] = eager / result["step_seconds_median"]
        first = best["eager_fp32"]
        row["label"] = f"{model} {preset} {first.get('image_size')}px batch {first.get('batch_size')}"
        print(row["label"] + ": " + ", ".join(
            f"{name} {r['step_seconds_median'] * 1000:.0f} ms ({r['precision']})" if "step_seconds_median" in r
            else f"{name} failed" for name, r in best.items())
            + "".join(f", {k} x{v:.2f}" for k, v in row.items() if k.startswith("speedup_")), flush=True)
        rows.append(row)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_description(args.device), "rounds": args.rounds,
                               "results": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
