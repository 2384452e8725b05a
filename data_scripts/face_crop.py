#!/usr/bin/env python
"""Turn a folder of ordinary photos (or CelebA) into square face crops for a trainA/testA folder.

Faces are found with OpenCV's bundled Haar cascade (haarcascade_frontalface_default.xml), the
largest face per photo is cropped as a square with a margin around it (hair, chin) and resized.
Photos where no face is found are listed at the end. Example:

    python data_scripts/face_crop.py ~/Pictures/friends data/mine/trainA --size 256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import toonlab  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toonlab.data.faces import crop_faces
from toonlab.data.folders import describe_layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Crop faces from photos into SIZE x SIZE JPEGs (OpenCV Haar cascade), e.g. to build a trainA folder."
    )
    parser.add_argument("source", type=Path, help="folder of photos (searched recursively; jpg png bmp webp tif)")
    parser.add_argument("dest", type=Path, help="output folder, e.g. DATASET/trainA")
    parser.add_argument("--size", type=int, default=256, help="side of the square crops in pixels (default 256)")
    parser.add_argument(
        "--margin", type=float, default=0.4, help="space around the face box per side, as a fraction of its size (default 0.4)"
    )
    parser.add_argument("--min-face", type=int, default=40, help="ignore faces smaller than this many pixels (default 40)")
    parser.add_argument("--all-faces", action="store_true", help="save every face of a photo, not only the largest")
    parser.add_argument("--cascade", type=Path, default=None, help="a Haar cascade XML to use instead of OpenCV's bundled one")
    args = parser.parse_args(argv)
    report = crop_faces(args.source, args.dest, size=args.size, margin=args.margin, min_face=args.min_face,
                        all_faces=args.all_faces, cascade=args.cascade)
    print(f"saved {len(report.saved)} face crops to {args.dest}")
    if report.no_face:
        print(f"no face found in {len(report.no_face)} photos:")
        for path in report.no_face:
            print(f"  {path}")
    if report.unreadable:
        print(f"{len(report.unreadable)} files could not be read:")
        for skipped in report.unreadable:
            print(f"  {skipped.path}: {skipped.reason}")
    if args.dest.parent.is_dir():
        print(describe_layout(args.dest.parent))
    return 0 if report.saved else 1


if __name__ == "__main__":
    sys.exit(main())
