"""Sphinx configuration of the edsr-jax docs: MyST Markdown pages, API pages from the docstrings.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).
"""

from __future__ import annotations

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(DOCS))  # the checkout's edsr_jax, also without an install
sys.path.insert(0, os.path.join(DOCS, "_ext"))

project = "edsr-jax"
author = "edsr-jax authors"
copyright = "2026, edsr-jax authors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "config_reference",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}  # autosummary writes .rst stubs
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist"]
# Anchors for headings down to #### so that pages can link to sections (`file.md#a-heading`).
myst_heading_anchors = 4

# API pages: generated at build time from the docstrings (Google style, read by napoleon).
autosummary_generate = True
autosummary_imported_members = False
templates_path = ["_templates"]  # autosummary's module page: the module's own docs, then its submodules
# "ignore-module-all": a package documents what it defines, not the names it re-exports from its
# modules (those are documented once, in the module that defines them).
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "sphinx_book_theme"
html_title = "edsr-jax"
html_theme_options = {"show_toc_level": 2}
