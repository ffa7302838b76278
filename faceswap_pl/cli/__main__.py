"""``python -m faceswap_pl.cli ...``: the `faceswap-pl` command (used by sweep trials and torchrun)."""

import sys

from faceswap_pl.cli import main

sys.exit(main())
