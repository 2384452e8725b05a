"""Measuring translations (notebook 05): per-problem metrics on synthetic portraits, KID/FID on real data.

* :mod:`toonlab.metrics.synthetic` — paired and per-problem metrics (abstraction, colour, shape,
  identity) on synthetic test portraits whose true cartoon is known, under one fixed :class:`Protocol`;
* :mod:`toonlab.metrics.distribution` — KID and FID between translated photos and real cartoons
  (no ground truth), through torchmetrics.
"""

from toonlab.metrics.synthetic import DIRECTION, HEADLINE, METRICS, Protocol, evaluate, ground_truth, score_images

__all__ = ["DIRECTION", "HEADLINE", "METRICS", "Protocol", "evaluate", "ground_truth", "score_images"]
