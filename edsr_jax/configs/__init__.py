"""Run configurations, shipped in the package: ``get_config()`` per file (``--config NAME``).

``default.py`` documents every field (the paper's recipe); the others import it and override a
few fields. Each docstring gives the command, the expected result and the run time.
"""
