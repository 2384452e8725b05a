#!/usr/bin/env python
"""What each change of a cpu recipe buys, on the fixed synthetic protocol (issue "Cartoons that work").

Trains one model per variant (the reference recipe and its deviations) on the built-in portraits,
scores it with ``toonlab.metrics`` every ``--eval-every`` steps (so time-to-quality can be read off),
and writes one JSON with the photo and classical baselines beside it:

    python benchmarks/ablation.py cyclegan --steps 1500 --variant reference --variant warmup=warmup_steps=100
    python benchmarks/ablation.py cyclegan --variant "noise=cycle_noise=0.1" --out benchmarks/results/x.json

A variant is ``NAME`` (the preset as it is) or ``NAME=field=value[,field=value...]`` (config overrides).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

try:
    import toonlab  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from toonlab.metrics.report import baseline_scores, machine_description, scored_training, write_record
from toonlab.metrics.synthetic import Protocol
from toonlab.models import build_config
from toonlab.train import make_trainer

TARGETS = "L1 person <= 0.7x photo, L1 < photo, SSIM > photo, texture <= photo/3, spread < photo, strange <= photo"


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, spec = text.partition("=")
    overrides = {}
    for item in filter(None, spec.split(",")):
        field, _, raw = item.partition("=")
        try:
            overrides[field] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            overrides[field] = raw
    return name, overrides


def targets_met(scores: dict, photo: dict) -> dict[str, bool]:
    """The cpu-recipe targets of the 'Cartoons that work' issue, one boolean each."""
    return {
        "l1_person": scores["l1_person"] <= 0.7 * photo["l1_person"],
        "l1": scores["l1"] < photo["l1"],
        "ssim": scores["ssim"] > photo["ssim"],
        "texture": scores["texture"] <= photo["texture"] / 3,
        "colour_spread": scores["colour_spread"] < photo["colour_spread"],
        "strange_colours": scores["strange_colours"] <= photo["strange_colours"],
    }


def run_variant(kind: str, preset: str, name: str, overrides: dict, steps: int, eval_every: int, protocol: Protocol,
                photo: dict, seed: int, pictures: Path | None = None) -> dict:
    config = build_config(kind, preset, **{**overrides, "seed": seed})
    trainer = make_trainer(kind, config=config, seed=seed, progress=False)
    curve, first_l1 = [], None
    for _, seconds, scores in scored_training(trainer, steps, eval_every, protocol, seed):
        curve.append({"step": trainer.step, "train_seconds": round(seconds, 1), **scores})
        if first_l1 is None and scores["l1_person"] <= 0.7 * photo["l1_person"]:
            first_l1 = {"step": trainer.step, "train_seconds": round(seconds, 1)}
        print(f"  step {trainer.step:5d} {seconds:6.0f} s  L1 person {scores['l1_person']:.3f}  SSIM {scores['ssim']:.3f}  "
              f"texture {scores['texture']:.2f}  spread {scores['colour_spread']:.2f}  strange {scores['strange_colours']:.3f}  "
              f"eyes {scores['eye_size']:.2f}", flush=True)
    final = curve[-1]
    if pictures is not None:
        from toonlab import viz
        from toonlab.metrics.synthetic import ground_truth, translate_all

        truth = ground_truth(protocol)
        photos = truth.photo_batch()[:8]
        rows = {"photo": photos, "generated": translate_all(trainer.model.translator("AtoB", seed=seed), photos),
                "true cartoon": truth.cartoon_batch()[:8]}
        viz.save_figure(viz.image_rows(rows, title=f"{kind} {preset} {name}, step {trainer.step}"),
                        Path(pictures) / f"{kind}_{preset}_{name}.png")
    return {"overrides": overrides, "config": trainer.model.config_dict(), "curve": curve, "final": final,
            "targets_met": targets_met(final, photo), "time_to_l1_target": first_l1}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--variant", action="append", default=None, help="NAME or NAME=field=value,...")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--pictures", type=Path, default=None, help="write each variant's final test picture here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = int(build_config(args.model, args.preset).image_size)
    protocol = Protocol(size=size)
    baselines = baseline_scores(protocol)
    photo = baselines["photo (identity)"]
    out = args.out or Path(__file__).parent / "results" / f"ablation_{args.model}_{args.preset}.json"
    record = json.loads(out.read_text()) if out.is_file() else {}
    record.update({"benchmark": "ablation", "model": args.model, "preset": args.preset, "steps": args.steps,
                   "machine": machine_description(), "threads": torch.get_num_threads(),
                   "protocol": protocol.to_dict(), "targets": TARGETS, "baselines": baselines})
    record.setdefault("variants", {})
    for text in args.variant or ["reference"]:
        name, overrides = parse_variant(text)
        print(f"{args.model} {args.preset} variant {name}: {overrides}", flush=True)
        record["variants"][name] = run_variant(args.model, args.preset, name, overrides, args.steps, args.eval_every,
                                               protocol, photo, args.seed, args.pictures)
        write_record(record, out)  # after every variant, so a long sweep loses nothing
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
