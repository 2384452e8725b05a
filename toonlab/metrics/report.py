"""A model beside its baselines: the table ``toonlab eval`` prints and the JSON it writes (notebook 05).

:func:`evaluate_model` scores a trained model and the baselines of :mod:`toonlab.baselines` under
one :class:`~toonlab.metrics.synthetic.Protocol`; :func:`format_table` prints them side by side;
:func:`headline` is the one-line summary a result picture carries; :func:`evaluate_folder` does the
same on a real test folder with KID and FID (no ground truth there).
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from toonlab.metrics.synthetic import DIRECTION, Protocol, evaluate

#: columns of the printed table (every metric is in the JSON)
TABLE_METRICS = ("l1", "l1_person", "ssim", "texture", "colour_spread", "strange_colours", "shape_l1",
                 "eye_size", "skin_error", "hair_iou")
PHOTO = "photo (identity)"
#: which way is better, for every column a table may show (KID/FID: lower)
BETTER = {**DIRECTION, "kid_mean": -1, "kid_std": -1, "fid": -1, "identity_distance": -1, "same_person_rate": 1}
DISTRIBUTION_METRICS = ("kid_mean", "kid_std", "fid", "n_real", "n_fake", "identity_distance", "same_person_rate")
RECORD_FORMAT = "toonlab-eval"


def machine_description(device: torch.device | str | None = None) -> str:
    """The machine the numbers come from: CPU (cores) or GPU name, torch version."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"
    return f"{where}; torch {torch.__version__}"


@functools.lru_cache(maxsize=8)
def _baseline_scores(protocol: Protocol, with_animegan2: bool) -> dict[str, dict[str, float]]:
    from toonlab.baselines import baseline_translators

    # ``with_animegan2`` is part of the cache key only: a weight file placed later gets its own entry
    translators = baseline_translators()
    return {name: evaluate(translate, protocol) for name, translate in translators.items()}


def baseline_scores(protocol: Protocol = Protocol()) -> dict[str, dict[str, float]]:
    """Scores of the baselines (photo, classical filter, AnimeGANv2 when present); cached per protocol."""
    from toonlab.baselines import animegan2_weights

    return {name: dict(scores) for name, scores in
            _baseline_scores(protocol, animegan2_weights() is not None).items()}


def score_model(model, protocol: Protocol, direction: str = "AtoB", seed: int = 0,
                device: torch.device | str | None = None) -> dict[str, float]:
    """:func:`~toonlab.metrics.synthetic.evaluate` of ``model.translator`` in eval mode, restoring the model's mode."""
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return evaluate(model.translator(direction, seed=seed), protocol, device=device)
    finally:
        model.train(was_training)


def scored_training(trainer, steps: int, every: int, protocol: Protocol, seed: int = 0
                    ) -> Iterator[tuple[int, float, dict[str, float]]]:
    """Train ``trainer`` up to ``steps`` in chunks of ``every``; after each, yield ``(step, train_seconds, scores)``.

    ``train_seconds`` counts training only (scoring is left out), so time-to-quality reads off directly;
    ``scores`` is :func:`score_model` under ``protocol``. The loop of ``benchmarks/ablation.py`` and
    ``data_scripts/train_converged.py``.
    """
    seconds = 0.0
    while trainer.step < steps:
        started = time.perf_counter()
        trainer.fit(min(every, steps - trainer.step))
        seconds += time.perf_counter() - started
        yield trainer.step, seconds, score_model(trainer.model, protocol, seed=seed)


def evaluate_model(model, protocol: Protocol | None = None, name: str | None = None, baselines: bool = True,
                   device: torch.device | str | None = None, seed: int = 0,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Score ``model`` (a :class:`~toonlab.models.base.TranslationModel`) beside the baselines.

    ``protocol`` defaults to the standard one at the model's image size. Returns the JSON record:
    protocol, machine, model description and ``results`` (name -> metrics), the model first.
    """
    protocol = protocol or Protocol(size=int(model.config.image_size))
    if device is None:
        device = next(model.parameters()).device
    name = name or model.kind
    results = {name: score_model(model, protocol, seed=seed, device=device)}
    if baselines:
        results.update(baseline_scores(protocol))
    return make_record(results, protocol, device=device, model={"name": name, "kind": model.kind, **(extra or {})})


def converged_results(name: str, n: int = 100, device: torch.device | str | None = None):
    """A converged model that ships with toonlab (:mod:`toonlab.pretrained`), scored beside the baselines.

    Returns ``(model, manifest, results)``: the model in eval mode, its manifest (recipe, kept step,
    the scores it was shipped with) and ``results`` (``name`` and each baseline -> metrics) on the
    protocol's first ``n`` identities at the model's size. The notebooks' "train or load" cell.
    """
    from toonlab.checkpoint import load_trained_model
    from toonlab.pretrained import pretrained_path, read_manifest

    model = load_trained_model(name, device)
    protocol = Protocol(size=int(model.config.image_size), n=n)
    results = {name: score_model(model, protocol), **baseline_scores(protocol)}
    return model, read_manifest(pretrained_path(name)), results


def make_record(results: Mapping[str, Mapping[str, float]], protocol: Protocol | None = None,
                device: torch.device | str | None = None, model: Mapping[str, Any] | None = None,
                data: str = "synthetic") -> dict[str, Any]:
    """The JSON record: what was measured, how, where, and the results."""
    return {"format": RECORD_FORMAT, "data": data, "protocol": protocol.to_dict() if protocol else None,
            "machine": machine_description(device), "model": dict(model or {}),
            "directions": dict(BETTER), "results": {k: dict(v) for k, v in results.items()}}


def write_record(record: Mapping[str, Any], path: str | Path) -> Path:
    """Write a record as JSON atomically (NaN written as null)."""
    from toonlab.io import atomic_write

    text = json.dumps(_finite(record), indent=2) + "\n"
    return atomic_write(path, lambda handle: handle.write(text.encode()), fsync=False)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _format_value(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_table(results: Mapping[str, Mapping[str, float]], metrics=TABLE_METRICS) -> str:
    """A plain-text table: one row per model or baseline, one column per metric (arrows: which way is better)."""
    metrics = [m for m in metrics if any(m in r for r in results.values())]
    arrow = {1: "↑", -1: "↓", 0: "→1"}
    header = ["", *[f"{m} {arrow.get(BETTER.get(m), '')}".strip() for m in metrics]]
    rows = [[name, *[_format_value(scores.get(m)) for m in metrics]] for name, scores in results.items()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_markdown(results: Mapping[str, Mapping[str, float]], metrics=TABLE_METRICS) -> str:
    """The same table in Markdown (the README's results table)."""
    arrow = {1: "↑", -1: "↓", 0: "→1"}
    lines = ["| | " + " | ".join(f"{m} {arrow.get(BETTER.get(m), '')}".strip() for m in metrics) + " |",
             "|---|" + "---:|" * len(metrics)]
    for name, scores in results.items():
        lines.append(f"| {name} | " + " | ".join(_format_value(scores.get(m)) for m in metrics) + " |")
    return "\n".join(lines)


def headline(scores: Mapping[str, float], photo: Mapping[str, float] | None = None) -> str:
    """One line for a picture's title: the model's L1 on the person, SSIM and texture, the photo's in brackets."""
    parts = []
    for key, label in (("l1_person", "L1 person"), ("ssim", "SSIM"), ("texture", "texture")):
        value = scores.get(key)
        if value is None:
            continue
        text = f"{label} {_format_value(value)}"
        if photo and photo.get(key) is not None:
            text += f" (photo {_format_value(photo[key])})"
        parts.append(text)
    return " · ".join(parts)


def evaluate_folder(translate: Callable[[torch.Tensor], torch.Tensor], folder: str | Path, size: int,
                    n: int | None = None, device: torch.device | str | None = None, feature=None,
                    baselines: bool = True, name: str = "model") -> dict[str, Any]:
    """KID and FID of translated ``folder/testA`` photos against the real cartoons of ``folder/testB``.

    No ground truth exists for real photos, so only distribution metrics apply (see
    :mod:`toonlab.metrics.distribution`), plus, with the ``toonlab[faces]`` extra, the face-recognition
    distance of each photo to its cartoon (:mod:`toonlab.metrics.identity`). ``n`` caps the photos used; ``feature`` replaces the
    Inception network (tests, offline use).
    """
    from toonlab.data.folders import UnpairedImageFolder
    from toonlab.metrics.distribution import distribution_metrics
    from toonlab.metrics.synthetic import translate_all

    test = UnpairedImageFolder(folder, size=size, split="test")
    count_a = test.len_a if n is None else min(n, test.len_a)
    photos = torch.stack([test.transform(test.image_a(i), 0) for i in range(count_a)])  # each image read once
    cartoons = torch.stack([test.transform(test.image_b(j), 0) for j in range(test.len_b)])
    translators = {name: translate}
    if baselines:
        from toonlab.baselines import classical_cartoon, identity

        translators.update({PHOTO: identity, "classical filter": classical_cartoon})
    from toonlab.metrics.identity import identity_available, identity_scores

    with_identity = identity_available()  # the optional toonlab[faces] extra
    results = {}
    for label, fn in translators.items():
        fakes = translate_all(fn, photos, device=device)
        results[label] = distribution_metrics(cartoons, fakes, feature=feature)
        if with_identity:
            results[label].update(identity_scores(photos, fakes))
    return make_record(results, None, device=device, data=str(folder),
                       model={"name": name, "n_photos": count_a, "n_cartoons": test.len_b, "size": size})
