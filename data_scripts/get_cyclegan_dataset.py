#!/usr/bin/env python
"""Download one official CycleGAN dataset and lay it out as ROOT/NAME/{trainA,trainB,testA,testB}.

Thin wrapper over toonlab.data.download.prepare_dataset (download with resume, checksum, safe
extraction, layout check). Example:

    python data_scripts/get_cyclegan_dataset.py vangogh2photo
    python data_scripts/get_cyclegan_dataset.py horse2zebra --root /data/gan
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import toonlab  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toonlab.data.download import CYCLEGAN_DATASETS, DATASETS, default_dataset_root, prepare_dataset
from toonlab.data.folders import describe_layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Download an official CycleGAN dataset (Berkeley server) into the trainA/trainB/testA/testB layout.",
        epilog="Datasets: " + ", ".join(CYCLEGAN_DATASETS) + ". cityscapes is not redistributed (licence).",
    )
    parser.add_argument("name", nargs="?", help="dataset name, e.g. vangogh2photo (see --list)")
    parser.add_argument(
        "--root", type=Path, default=None, help=f"datasets folder (default: {default_dataset_root()})"
    )
    parser.add_argument("--list", action="store_true", help="list the known datasets and exit")
    parser.add_argument("--delete-archive", action="store_true", help="delete the downloaded .zip after extraction")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        for name in CYCLEGAN_DATASETS:
            print(f"{name:<24} {DATASETS[name].description}")
        return 0 if args.list else 2
    target = prepare_dataset(args.name, root=args.root, quiet=args.quiet, keep_archive=not args.delete_archive)
    print(describe_layout(target))
    print(f"Use it with: toonlab.data.folders.UnpairedImageFolder({str(target)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
