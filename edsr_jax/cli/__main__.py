"""``python -m edsr_jax.cli ...``: the ``edsr-jax`` command (the CLI became a package)."""

import sys

from edsr_jax.cli import main

if __name__ == "__main__":  # (the docs build imports every module)
    sys.exit(main())
