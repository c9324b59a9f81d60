"""``python -m edsr_jax.cli ...``: the ``edsr-jax`` command (the CLI became a package)."""

import sys

from edsr_jax.cli import main

sys.exit(main())
