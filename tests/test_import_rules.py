"""The package's import rules (docs/architecture.md): the folders are the architecture.

Every ``import`` statement of every module is read with ``ast``, the ones inside functions too
(a lazy import is still a dependency), so a rule cannot be broken by moving an import into a
function. A second check imports modules in a fresh interpreter and looks at what got loaded.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterable

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "edsr_jax")
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def package_modules() -> dict[str, str]:
    """``{dotted name: file}`` of every module of the package."""
    found = {}
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                found[module_name(path)] = path
    return found


MODULES = package_modules()


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports (absolute dotted names; ``from a import b`` gives ``a.b``
    when ``a.b`` is a module of the package, else ``a``)."""
    path = MODULES[name]
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_package = path.endswith("__init__.py")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                out.add(candidate if candidate in MODULES else source)
    return out


def in_folder(name: str, folder: str) -> bool:
    return name == f"edsr_jax.{folder}" or name.startswith(f"edsr_jax.{folder}.")


def top(name: str) -> str:
    return name.split(".")[0]


def modules_in(folder: str) -> list[str]:
    return sorted(m for m in MODULES if in_folder(m, folder))


def violations(names: Iterable[str], allowed) -> list[str]:
    return sorted(f"{m} imports {i}" for m in names for i in imports_of(m) if not allowed(m, i))


def test_every_folder_of_the_design_exists():
    for folder in ("models", "imaging", "data", "checkpoint", "interop", "apps", "cli", "configs"):
        assert modules_in(folder), folder
    for module in (
        "errors",
        "compiler_options",
        "atomic",
        "sharding",
        "inference",
        "evaluate",
        "writers",
        "optim",
        "train_step",
        "train",
    ):
        assert f"edsr_jax.{module}" in MODULES, module


def test_models_import_only_jax_flax_numpy_and_themselves():
    ok = {"jax", "flax", "numpy"}
    bad = violations(
        modules_in("models"), lambda m, i: top(i) in STDLIB or top(i) in ok or in_folder(i, "models")
    )
    assert not bad, bad


def test_imaging_imports_no_other_folder_of_the_package():
    # Of the package, only its own modules and the two plain helpers (errors, atomic writes).
    helpers = ("edsr_jax.errors", "edsr_jax.atomic")
    bad = violations(
        modules_in("imaging"),
        lambda m, i: top(i) != "edsr_jax" or in_folder(i, "imaging") or i in helpers,
    )
    assert not bad, bad


def test_data_imports_no_jax_sharding_models_or_train():
    def allowed(module, imported):
        if top(imported) in ("jax", "flax", "optax", "orbax"):
            return False
        return not (in_folder(imported, "models") or imported in ("edsr_jax.sharding", "edsr_jax.train"))

    bad = violations(modules_in("data"), allowed)
    assert not bad, bad


def test_nothing_outside_apps_and_cli_imports_them():
    outside = [m for m in MODULES if not (in_folder(m, "apps") or in_folder(m, "cli"))]
    bad = violations(outside, lambda m, i: not (in_folder(i, "apps") or in_folder(i, "cli")))
    assert not bad, bad


def test_configs_import_only_ml_collections_and_the_default_config():
    def allowed(module, imported):
        if module == "edsr_jax.configs.default":
            return imported == "ml_collections" or top(imported) in STDLIB
        return imported in ("ml_collections", "edsr_jax.configs.default") or top(imported) in STDLIB

    bad = violations(modules_in("configs"), allowed)
    assert not bad, bad


def test_the_core_never_imports_tensorflow_or_torch_at_module_level():
    # (the TFDS source and the PyTorch converter import them inside the functions that need them)
    bad = []
    for name, path in MODULES.items():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                bad += [
                    f"{name} imports {n}"
                    for n in names
                    if top(n) in ("tensorflow", "torch", "tensorflow_datasets")
                ]
    assert not bad, bad


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_anywhere():
    # A package's __init__ runs before its submodules: importing edsr_jax.x.y also depends on
    # edsr_jax.x, except for the root package (whose __init__ only applies the XLA flags).
    graph = {m: {i for i in imports_of(m) if i in MODULES} for m in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize(
    "module, absent",
    [
        ("edsr_jax.models", ("optax", "orbax", "tensorflow", "ml_collections", "PIL", "edsr_jax.data")),
        ("edsr_jax.data.pipeline", ("jax", "flax", "tensorflow", "edsr_jax.models", "edsr_jax.sharding")),
        ("edsr_jax.imaging.metrics", ("jax", "flax", "edsr_jax.models", "edsr_jax.data")),
        ("edsr_jax.cli", ("jax", "tensorflow", "orbax")),  # `edsr-jax --help` stays instant
        # the core install (training, evaluation, models) has no use for the apps extra
        ("edsr_jax.train", ("skimage", "matplotlib", "clu")),
        ("edsr_jax.evaluate", ("skimage", "matplotlib", "clu")),
    ],
)
def test_importing_a_module_loads_only_what_its_folder_may_use(module, absent):
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert not [m for m in absent if m in loaded], f"{module} loaded {[m for m in absent if m in loaded]}"


# Modules are split by job; about 600 lines is a guideline (DESIGN.md), and only modules far beyond
# it fail: cohesion decides, never a re-export to get under a number.
FAR_OVER_GUIDELINE = 750


def test_no_module_is_far_beyond_the_size_guideline():
    long = {
        m: n
        for m, p in MODULES.items()
        if (n := sum(1 for _ in open(p, encoding="utf-8"))) > FAR_OVER_GUIDELINE
    }
    assert not long, long
