#!/usr/bin/env python
"""Download published generator weights (official CycleGAN, CartoonGAN styles, AnimeGANv2).

Files land in $TOONLAB_DATA/pretrained/<kind>/ and load with
``toonlab.hub.load_official(kind, path)``, where kind is the part of the name before "/". Example:

    python data_scripts/get_pretrained.py cartoongan/Hayao animegan2/face_paint_512_v2
    python data_scripts/get_pretrained.py --list
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import toonlab  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toonlab.data.download import PRETRAINED, DownloadError, fetch_pretrained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download published generator checkpoints into toonlab's data folder.")
    parser.add_argument("names", nargs="*", help="checkpoint names such as cyclegan/horse2zebra, cartoongan/Hayao (see --list)")
    parser.add_argument("--dest", type=Path, default=None, help="folder to write to (default: $TOONLAB_DATA/pretrained)")
    parser.add_argument("--list", action="store_true", help="list the known checkpoints and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for name, asset in PRETRAINED.items():
            print(f"{name:<34} {asset.description}")
        return 0 if args.list else 2
    status = 0
    for name in args.names:
        try:
            path = fetch_pretrained(name, dest=args.dest, quiet=args.quiet)
        except (DownloadError, ValueError) as err:
            print(f"error: {name}: {err}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {path}  ->  toonlab.hub.load_official({name.split('/')[0]!r}, {str(path)!r})")
    return status


if __name__ == "__main__":
    sys.exit(main())
