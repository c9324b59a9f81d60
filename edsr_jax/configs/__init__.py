"""Run configurations: ``get_config()`` per file (``--config NAME``); ``default.py`` documents every field."""
