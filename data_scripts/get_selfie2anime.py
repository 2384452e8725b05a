#!/usr/bin/env python
"""Download U-GAT-IT's selfie2anime (3,400 + 100 faces per domain) into ROOT/selfie2anime/{trainA,...}.

The archive lives on Google Drive (id 1xOWj1UVgp6NKMT3HbPhBbtq2A4EDkghF), which limits popular
files. If the download is refused, the error tells you where to put a copy downloaded in a browser,
and how to give gdown your browser cookies (~/.cache/gdown/cookies.txt). Example:

    python data_scripts/get_selfie2anime.py --root /data/gan
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import toonlab  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toonlab.data.download import DownloadError, default_dataset_root, prepare_dataset
from toonlab.data.folders import describe_layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Download selfie2anime (U-GAT-IT) from Google Drive and lay it out as trainA/trainB/testA/testB "
        "(A = selfies, B = anime faces)."
    )
    parser.add_argument("--root", type=Path, default=None, help=f"datasets folder (default: {default_dataset_root()})")
    parser.add_argument("--delete-archive", action="store_true", help="delete the downloaded .zip after extraction")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    try:
        target = prepare_dataset("selfie2anime", root=args.root, quiet=args.quiet, keep_archive=not args.delete_archive)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(describe_layout(target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
