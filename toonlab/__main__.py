"""``python -m toonlab ...`` (and ``torchrun --nproc_per_node N -m toonlab train ...``): the ``toonlab`` command."""

import sys

from toonlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
