"""The ``{config-reference}`` directive: every field of ``edsr_jax/configs/default.py`` as a table.

Read at build time from the file itself, so the reference cannot drift from the code: the field
names and defaults come from ``get_config()``, the explanations from the comments beside (or just
above) each assignment in the source. A field without a comment is an error, so a new field gets
documented where it is defined.
"""

from __future__ import annotations

import ast
import io
import tokenize

CONFIG_MODULE = "edsr_jax.configs.default"


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line (without ``#``)."""
    return {
        token.start[0]: token.string
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }


def _text(comment: str) -> str:
    return comment.lstrip("#").strip()


def _target_name(node: ast.expr) -> str | None:
    """``config.data.cache_dir`` -> ``data.cache_dir``; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "config" and parts:
        return ".".join(reversed(parts))
    return None


def field_comments(source: str, function: str = "get_config") -> dict[str, str]:
    """Each ``config.X = ...`` in ``function`` of ``source`` -> its comment.

    The comment is the one at the end of the assignment's line, continued by the indented
    comment-only lines that follow it (``#   ...``); without one, the block of comment lines
    right above. In source order.
    """
    comments = _comments(source)
    lines = source.splitlines()
    tree = ast.parse(source)
    body = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function).body
    out = {}
    for node in body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        name = _target_name(node.targets[0])
        if name is None:
            continue
        text = []
        if node.end_lineno in comments:
            text.append(_text(comments[node.end_lineno]))
            line = node.end_lineno + 1
            while (
                line in comments
                and lines[line - 1].lstrip().startswith("#")
                and comments[line].startswith("#  ")
            ):
                text.append(_text(comments[line]))
                line += 1
        else:
            line = node.lineno - 1
            while line in comments and lines[line - 1].lstrip().startswith("#"):
                text.insert(0, _text(comments[line]))
                line -= 1
        out[name] = " ".join(text)
    return out


def _leaves(config, prefix: str = "") -> list[tuple[str, object]]:
    """``(dotted name, value)`` of every field of a ConfigDict, sections flattened, in order."""
    out = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if hasattr(value, "keys"):
            out.extend(_leaves(value, f"{name}."))
        else:
            out.append((name, value))
    return out


def rows() -> list[tuple[str, str, str]]:
    """``(field, default, what it does)`` for every field of the default config.

    Raises:
      ValueError: a field has no comment in the source (or the source assigns no such field).
    """
    import importlib
    import inspect

    module = importlib.import_module(CONFIG_MODULE)
    comments = field_comments(inspect.getsource(module))
    config = module.get_config()
    values = dict(_leaves(config))
    missing = sorted(name for name in values if not comments.get(name))
    out = [(name, repr(values[name]), text) for name, text in comments.items() if name in values]
    if missing:
        raise ValueError(f"{CONFIG_MODULE}: fields without a comment: {', '.join(missing)}")
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The reference as a Markdown table (field, default, what it does)."""
    lines = ["| field | default | what it does |", "|---|---|---|"]
    for name, default, comment in rows():
        lines.append(f"| `{name}` | `{_cell(default)}` | {_cell(comment)} |")
    return "\n".join(lines)


def setup(app):
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class ConfigReference(SphinxDirective):
        """Inserts :func:`markdown_table`, parsed as the page's own Markdown."""

        def run(self):
            import inspect

            import edsr_jax.configs.default as default

            self.env.note_dependency(inspect.getsourcefile(default))
            container = __import__("docutils.nodes", fromlist=["container"]).container()
            self.state.nested_parse(StringList(markdown_table().splitlines()), self.content_offset, container)
            return container.children

    app.add_directive("config-reference", ConfigReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
