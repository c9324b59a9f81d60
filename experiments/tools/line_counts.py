"""How much of the package is prose: docstring and comment lines per module and in total.

    python experiments/tools/line_counts.py            # every module, then the total
    python experiments/tools/line_counts.py --summary  # the total and the README only

Docstrings are those of modules, classes and functions (ast); comments are `#` tokens (tokenize).
A line holding both (a comment on a docstring's closing line) counts once, as prose.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import sys
import tokenize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "edsr_jax")
README = os.path.join(ROOT, "README.md")
_WITH_DOCSTRINGS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def docstring_lines(source: str) -> set[int]:
    """Line numbers (1-based) covered by the docstrings of the module, its classes and functions."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, _WITH_DOCSTRINGS) or not node.body:
            continue
        first = node.body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def comment_lines(source: str) -> set[int]:
    """Line numbers holding a `#` comment."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}


def count(source: str) -> dict[str, int]:
    """Total, docstring, comment and prose (their union) line counts of one module's source."""
    docs, comments = docstring_lines(source), comment_lines(source)
    return {
        "lines": len(source.splitlines()),
        "docstrings": len(docs),
        "comments": len(comments - docs),
        "prose": len(docs | comments),
    }


def modules(package: str = PACKAGE) -> list[str]:
    """The package's .py files, sorted, relative to the repository root."""
    found = []
    for folder, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        found += [os.path.join(folder, f) for f in files if f.endswith(".py")]
    return sorted(os.path.relpath(path, ROOT) for path in found)


def _row(name: str, c: dict[str, int]) -> str:
    share = 100.0 * c["prose"] / c["lines"] if c["lines"] else 0.0
    return f"{name:<44} {c['lines']:>6} {c['docstrings']:>6} {c['comments']:>6} {share:>6.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", action="store_true", help="print only the total and the README")
    parser.add_argument("paths", nargs="*", help="only these modules (default: the whole package)")
    args = parser.parse_args(argv)
    paths = args.paths or modules()
    total = {"lines": 0, "docstrings": 0, "comments": 0, "prose": 0}
    print(f"{'module':<44} {'lines':>6} {'doc':>6} {'#':>6} {'share':>7}")
    for path in paths:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            c = count(f.read())
        total = {k: total[k] + c[k] for k in total}
        if not args.summary:
            print(_row(path, c))
    print(_row(f"total ({len(paths)} modules)", total))
    if os.path.exists(README):
        with open(README, encoding="utf-8") as f:
            text = f.read()
        print(f"README.md: {len(text.splitlines())} lines, {len(text.split())} words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
