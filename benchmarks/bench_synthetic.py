"""Generation speed of the built-in synthetic portraits on one CPU thread, written as JSON.

    python benchmarks/bench_synthetic.py --out benchmarks/results/synthetic_cpu.json --seconds 3

For each size it renders new identities for ``--seconds`` each: photos, cartoons, pairs (one
identity in both styles) and dataset samples (``SyntheticPortraits[(i, j, seed)]``: a photo and a
cartoon of two identities, each turned into a tensor). Every image includes drawing its description,
as on-the-fly training does. Rates are given per wall-clock second and per CPU second of this
process; on a shared machine the second is the steadier one, and ``python_reference_s`` (CPU time of
a fixed pure-Python loop) says how fast this machine ran at the time. The target is 500 images/s at
64 px.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

TARGET_SIZE, TARGET_RATE = 64, 500.0


def python_reference_seconds() -> float:
    """CPU seconds of ``sum(range(10**7))``: about 0.1 s on a current desktop core with Python 3.11."""
    start = time.process_time()
    sum(range(10**7))
    return time.process_time() - start


def measure(render, seconds: float) -> dict:
    """Call ``render(i)`` for i = 0, 1, ... for ``seconds`` of wall time; rates per wall and CPU second."""
    count = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while True:
        render(count)
        count += 1
        wall = time.perf_counter() - wall0
        if wall >= seconds:
            break
    cpu = time.process_time() - cpu0
    return {"calls": count, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "per_second": round(count / wall, 1), "per_cpu_second": round(count / max(cpu, 1e-9), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/synthetic_cpu.json"))
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of rendering per measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    args = parser.parse_args(argv)

    import cv2
    import numpy as np
    import torch
    from bench_train import machine_description  # same folder; python puts it on sys.path

    from toonlab.data.synthetic import SyntheticPortraits, describe, render_cartoon, render_pair, render_photo

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    machine = machine_description("cpu")
    machine.update(numpy=np.__version__, opencv=cv2.__version__, opencv_threads=cv2.getNumThreads(),
                   load_average_before=[round(x, 2) for x in os.getloadavg()],
                   python_reference_s=round(python_reference_seconds(), 3))

    results = []
    for size in args.sizes:
        dataset = SyntheticPortraits(size=size, split="train", seed=0, length=10**6)
        cases = {
            "photo": (1, lambda i, size=size: render_photo(describe(0, i, "trainA"), size)),
            "cartoon": (1, lambda i, size=size: render_cartoon(describe(0, i, "trainB"), size)),
            "pair": (2, lambda i, size=size: render_pair(describe(0, i, "test"), size)),
            "dataset_sample": (2, lambda i, dataset=dataset: dataset[(i, i, i)]),
        }
        for kind, (images, render) in cases.items():
            for i in range(5):  # warm caches (noise tile, outlines)
                render(10**5 + i)
            rate = measure(render, args.seconds)
            row = {"size": size, "kind": kind, "images_per_call": images,
                   "images_per_second": round(images * rate["per_second"], 1),
                   "images_per_cpu_second": round(images * rate["per_cpu_second"], 1), **rate}
            results.append(row)
            print(f"{size:4d} px  {kind:15s} {row['images_per_second']:8.1f} images/s "
                  f"({row['images_per_cpu_second']:8.1f} per CPU second)", flush=True)

    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    photo64 = next((r for r in results if r["size"] == TARGET_SIZE and r["kind"] == "photo"), None)
    report = {
        "benchmark": "synthetic portraits generation, one thread",
        "machine": machine,
        "settings": {"seconds": args.seconds, "sizes": args.sizes, "threads": 1,
                     "includes": "describe() of a new identity for every image"},
        "target": {"size": TARGET_SIZE, "images_per_second": TARGET_RATE,
                   "photo_met": None if photo64 is None else photo64["images_per_second"] >= TARGET_RATE,
                   "photo_met_per_cpu_second": (None if photo64 is None
                                                else photo64["images_per_cpu_second"] >= TARGET_RATE)},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
