"""Training configurations: one module per run, each with ``get_config()`` (see default.py)."""
