#!/usr/bin/env python
"""Train the synthetic part-segmentation network (toonlab.parts) and write it with its manifest.

It replaces ImageNet VGG19 in CartoonGAN's content loss on the built-in portraits when no VGG19 file
is present. The shipped weights were made by running this script without options (the recipe is
toonlab.parts.RECIPE; about 15 minutes on 2 CPU cores); rerun it to reproduce them:

    python data_scripts/train_parts_net.py                       # -> toonlab/weights/parts_synthetic_v1.pt
    python data_scripts/train_parts_net.py --steps 200 --out /tmp/parts.pt
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

try:
    import toonlab  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from toonlab.parts import RECIPE, evaluate_parts_net, save_parts_net, train_parts_net, weights_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in RECIPE.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (results depend on it slightly)")
    parser.add_argument("--out", type=Path, default=weights_path(), help="weight file to write (its .json beside it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = {name: getattr(args, name) for name in RECIPE}
    start = time.perf_counter()
    net, history = train_parts_net(**recipe)
    seconds = time.perf_counter() - start
    scores = evaluate_parts_net(net, size=recipe["size"], seed=recipe["seed"])
    record = {
        "what": "toonlab.parts.PartsNet: per-pixel face parts of the synthetic portraits (photos and cartoons)",
        "command": "python data_scripts/train_parts_net.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "recipe": recipe, "threads": args.threads, "train_seconds": round(seconds, 1),
        "final_loss": sum(h["loss"] for h in history[-100:]) / min(100, len(history)),
        "test": {"identities": "test stream 0-199, seed %d" % recipe["seed"], **scores},
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {args.threads} threads",
        "torch": torch.__version__,
    }
    path = save_parts_net(net, args.out, record)
    for style in ("photo", "cartoon"):
        s = scores[style]
        print(f"{style}: pixel accuracy {s['pixel_accuracy']:.3f}, mean IoU {s['mean_iou']:.3f}, "
              + ", ".join(f"{k} {v:.2f}" for k, v in s["iou"].items()))
    print(f"wrote {path} and {path.with_suffix('.json')} ({seconds:.0f} s of training)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
