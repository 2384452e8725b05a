#!/usr/bin/env python
"""Check a dataset folder: layout, image counts, unreadable/tiny/non-RGB files; optionally fix train/A.

Example:

    python data_scripts/check_dataset.py ~/.cache/toonlab/datasets/selfie2anime --full
    python data_scripts/check_dataset.py my_data --fix-layout     # PyTorch-GAN train/A -> trainA
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import toonlab  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toonlab.data.folders import (
    LAYOUT_FOLDERS,
    MIN_SIDE,
    DatasetLayoutError,
    describe_layout,
    normalize_layout,
    scan_folder,
    validate_layout,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check an unpaired dataset folder in the trainA/trainB/testA/testB layout.")
    parser.add_argument("root", type=Path, help="dataset folder")
    parser.add_argument("--full", action="store_true", help="decode every image (slower; finds all corrupt files)")
    parser.add_argument(
        "--min-side", type=int, default=MIN_SIDE, help=f"report images with a shorter side as too small (default {MIN_SIDE})"
    )
    parser.add_argument(
        "--fix-layout", action="store_true", help="first move train/A (PyTorch-GAN) or nested folders to ROOT/trainA ..."
    )
    parser.add_argument("--train-only", action="store_true", help="do not require testA/testB")
    args = parser.parse_args(argv)
    if args.fix_layout:
        normalize_layout(args.root)
    splits = ("train",) if args.train_only else ("train", "test")
    try:
        validate_layout(args.root, splits)
    except DatasetLayoutError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(describe_layout(args.root))
    problems = 0
    for name in LAYOUT_FOLDERS:
        folder = args.root / name
        if not folder.is_dir():
            continue
        _, skipped, converted = scan_folder(folder, args.min_side, "full" if args.full else "quick")
        problems += len(skipped)
        for item in skipped:
            print(f"  skip {item.path}: {item.reason}")
        if converted:
            print(f"  {name}: {sum(converted.values())} non-RGB images will be converted ({dict(converted)})")
    print("ok" if not problems else f"{problems} files will be skipped by UnpairedImageFolder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
