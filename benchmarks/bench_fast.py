"""Eager fp32 against the fast path (``toonlab train --fast``), as JSON with the speed-ups.

    python benchmarks/bench_fast.py --out benchmarks/results/fast_cpu.json
    python benchmarks/bench_fast.py --device cuda --out benchmarks/results/fast_h200.json
    python benchmarks/bench_fast.py --cases cyclegan:paper:1:64 munit:cpu

For each case (``MODEL:PRESET[:BATCH[:SIZE]]``) it runs :mod:`bench_train`'s one-configuration
subprocess for eager fp32, the fast path, and (``--with-compile``, on the CPU) the fast path plus
``torch.compile`` (on CUDA the fast path compiles anyway), alternating the variants ``--rounds``
times so that a change of machine load hits them alike, and keeps each variant's fastest round.
The fast path's precision here is :func:`toonlab.train.fast_precision`'s, without the timing steps
that ``toonlab train --fast`` runs on a CPU: the table shows what those steps decide.
Default cases -- CPU: the paper CycleGAN step at 64 px, batch 1 and 8, and every model's ``cpu``
preset; CUDA: every model's paper preset (CycleGAN at batch 1 and 8, CartoonGAN at 8).
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
CPU_CASES = ("cyclegan:paper:1:64", "cyclegan:paper:8:64", *(f"{m}:cpu" for m in MODELS))
CUDA_CASES = ("cyclegan:paper:1", "cyclegan:paper:8", "cartoongan:paper:8", "munit:paper:1", "munit:paper:8",
              "xgan:paper:1", "xgan:paper:8")


def parse_case(text: str) -> tuple[str, str, int | None, int | None]:
    model, preset, *rest = text.split(":")
    batch, size = (int(v) if v else None for v in (rest + ["", ""])[:2])
    return model, preset, batch, size


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
    parser.add_argument("--cases", nargs="+", default=None, metavar="MODEL:PRESET[:BATCH[:SIZE]]",
                        help="default: the CPU or CUDA cases above")
    parser.add_argument("--with-compile", action="store_true", help="also the fast path with torch.compile")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/fast_cpu.json")
    args = parser.parse_args(argv)
    cases = [parse_case(c) for c in (args.cases or (CPU_CASES if args.device == "cpu" else CUDA_CASES))]

    variants = {"eager_fp32": [], "fast": ["--fast"]}
    if args.with_compile:
        variants["fast_compiled"] = ["--fast", "--compile"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(rows: list[dict]) -> None:
        out.write_text(json.dumps({"machine": machine_description(args.device), "rounds": args.rounds,
                                   "results": rows}, indent=2))

    rows = []
    for model, preset, batch, case_size in cases:
        best: dict[str, dict] = {}
        for _ in range(args.rounds):
            for name, flags in variants.items():
                result = measure(model, preset, args.device, case_size, batch, flags, args.warmup, args.steps)
                seconds = result.get("step_seconds_median", float("inf"))
                if name not in best or seconds < best[name].get("step_seconds_median", float("inf")):
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
        write(rows)  # after every case: a run cut short by a time limit keeps what it measured
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
