#!/usr/bin/env python
"""Download published generator weights (official CycleGAN, CartoonGAN styles, AnimeGANv2).

Files land in $TOONLAB_DATA/pretrained/<kind>/ and load with
``toonlab.hub.load_official(kind, path)``, where kind is the part of the name before "/". Example:

    python data_scripts/get_pretrained.py cartoongan/Hayao animegan2/face_paint_512_v2
    python data_scripts/get_pretrained.py --list

The same as ``toonlab pretrained NAME...`` (this script passes its arguments on).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import toonlab  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toonlab.cli import main as toonlab_main


def main(argv: list[str] | None = None) -> int:
    """``toonlab pretrained ARGS``: names (``--list`` shows them), ``--dest DIR``, ``--quiet``."""
    return toonlab_main(["pretrained", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
