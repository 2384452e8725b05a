#!/usr/bin/env python
"""Train a converged model on the built-in portraits and ship its generators (toonlab.pretrained).

The ``cpu``-size networks of a lesson, trained far longer than a lesson has time for; the result is
written as ``toonlab/weights/KIND-synthetic.pt`` (generators only, float16) with its manifest (this
command, seed, steps, sha256, test scores, machine) and ``benchmarks/results/converged_KIND.json``
(the scores every ``--eval-every`` steps beside the baselines). The generators kept are those of the
evaluation with the lowest L1 on the person over *validation* identities (test stream 100-149, not
the protocol's 0-99), so a long run that drifts late loses nothing and the test scores stay unseen
by the choice. The recipe of each kind is :data:`RECIPES`; rerun the same command to reproduce a
file (results depend slightly on the thread count):

    python data_scripts/train_converged.py cyclegan              # -> toonlab/weights/cyclegan-synthetic.pt
    python data_scripts/train_converged.py munit --steps 200 --out /tmp/munit.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import toonlab  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from toonlab.metrics.report import baseline_scores, machine_description, score_model, scored_training, write_record
from toonlab.metrics.synthetic import Protocol
from toonlab.models import build_config
from toonlab.pretrained import NAMES, pretrained_path, save_pretrained
from toonlab.train import make_trainer

#: kind -> the preset, its overrides and the length of the long run (each override is a deviation
#: from the lesson's preset that only a long run needs, measured in benchmarks/results/converged_KIND.json)
RECIPES = {
    "cyclegan": dict(preset="cpu", overrides=dict(n_epochs=20, n_epochs_decay=20, lr=5e-5), steps=2000),
    "cartoongan": dict(preset="cpu", overrides=dict(n_epochs=3, n_epochs_decay=3), steps=3050),
    # the shipped munit and xgan files were trained before their cpu presets gained the cartoon filter,
    # hence cartoon_filter "none" (XGAN's retrained with it was not shipped: README "Converged models")
    "munit": dict(preset="cpu", overrides=dict(max_iter=3000, step_size=1500, cartoon_filter="none"), steps=3000),
    "xgan": dict(preset="cpu", overrides=dict(max_iter=4500, cartoon_filter="none"), steps=4500),
}
#: validation identities (test stream): never in the protocol's 0-99, never in training
VALIDATION_START, VALIDATION_N = 100, 50
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(RECIPES))
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's length")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (results depend on it slightly)")
    parser.add_argument("--out", type=Path, default=None, help="weight file (default: the package's KIND-synthetic.pt)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = RECIPES[args.kind]
    steps = args.steps or recipe["steps"]
    name = next(n for n, k in NAMES.items() if k == args.kind)
    out = args.out or pretrained_path(name)
    config = build_config(args.kind, recipe["preset"], **recipe["overrides"], seed=args.seed)
    trainer = make_trainer(args.kind, config=config, seed=args.seed, progress=False)
    size = int(config.image_size)
    protocol, validation = Protocol(size=size), Protocol(size=size, start=VALIDATION_START, n=VALIDATION_N)
    baselines = baseline_scores(protocol)
    curve, seconds, best = [], 0.0, None
    for _, seconds, scores in scored_training(trainer, steps, args.eval_every, protocol, args.seed):
        checked = score_model(trainer.model, validation, seed=args.seed)["l1_person"]
        curve.append({"step": trainer.step, "train_seconds": round(seconds, 1), "validation_l1_person": checked,
                      **scores})
        if best is None or checked < best["validation_l1_person"]:
            best = {"step": trainer.step, "validation_l1_person": checked, "scores": scores,
                    "state": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}}
        print(f"step {trainer.step:6d} {seconds:7.0f} s  validation {checked:.3f}  L1 person {scores['l1_person']:.3f}  "
              f"SSIM {scores['ssim']:.3f}  texture {scores['texture']:.2f}  strange {scores['strange_colours']:.3f}  "
              f"eyes {scores['eye_size']:.2f}", flush=True)
    trainer.model.load_state_dict(best["state"])
    final = best["scores"]
    command = "python data_scripts/train_converged.py " + " ".join(argv if argv is not None else sys.argv[1:])
    small = score_model(trainer.model, Protocol(size=size, n=16), seed=args.seed)
    record = {"what": f"{args.kind} generators of the {recipe['preset']} preset trained {steps} steps on the "
                      "built-in synthetic portraits", "command": command,
              "recipe": {"preset": recipe["preset"], "overrides": recipe["overrides"], "steps": steps,
                         "seed": args.seed}, "kept_step": best["step"],
              "kept_because": f"lowest L1 on the person over validation identities {validation.name}",
              "threads": args.threads, "train_seconds": round(seconds, 1),
              "protocol": protocol.name, "scores": final, "scores_n16": small,
              "machine": machine_description(), "torch": torch.__version__}
    path = save_pretrained(trainer.model, out, record)
    results = {"benchmark": "converged", "model": args.kind, **record, "baselines": baselines, "curve": curve}
    if args.out is None:
        write_record(results, RESULTS / f"converged_{args.kind}.json")
    print(f"wrote {path} and {path.with_suffix('.json')} ({seconds:.0f} s of training)")
    print(json.dumps({k: round(v, 4) for k, v in final.items() if isinstance(v, float)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
