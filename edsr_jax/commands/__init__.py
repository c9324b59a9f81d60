"""Subcommands of the ``edsr-jax`` CLI (see ``edsr_jax.cli``)."""
