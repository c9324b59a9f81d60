"""Every case of tests/support/cases.py through the CLI (in-process): a correct output, or a one-line
error naming the culprit, exit 2, no traceback and no output left behind; every file that was
there before survives unchanged (unless the case replaces it); and the "What happens
when..." table of docs/what_happens.md is the one generated from those cases."""

import hashlib
import os
import re

import pytest
from PIL import Image
from support.cases import BUILDERS, CASES, FAULTS, MODEL_SCALE, Case
from support.paths import ROOT, TEST_CONFIG, TESTS
from support.scripts import load_script
from support.trees import numpy_init

from edsr_jax import cli, models
from edsr_jax.checkpoint.exported import save_model
from edsr_jax.errors import UserError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny exported EDSR x2 (B1, F8), initialised without compiling (support.trees.numpy_init)."""
    model = models.EDSR(scale=MODEL_SCALE, num_blocks=1, num_features=8)
    path = str(tmp_path_factory.mktemp("model") / "edsr_x2")
    save_model(path, model, numpy_init(model))
    return path


def fill(case: Case, folder, model_dir) -> list[str]:
    """The case's arguments with its files in ``folder``; builds ``{in}`` first."""
    paths = {
        "in": str(folder / "in"),
        "out": str(folder / "out" / "result"),
        "model": model_dir,
        "tmp": str(folder),
        "config": TEST_CONFIG,
    }
    args = [a.format(**paths) for a in case.args]
    if case.make:
        target = next((a for a in args if a.startswith(paths["in"])), paths["in"])
        if target.startswith(paths["in"] + "/"):  # ({in}/name: the builder makes the folder {in})
            target = paths["in"]
        BUILDERS[case.make](target)
    if any("{tmp}/a.png" in a for a in case.args):
        BUILDERS["rgb"](paths["tmp"] + "/a.png")
    if any("{tmp}/edsr_x2.pt" in a for a in case.args):
        BUILDERS["text"](paths["tmp"] + "/edsr_x2.pt")
    return args


def everything_under(folder) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, model_dir, tmp_path, capsys, monkeypatch):
    args = fill(case, tmp_path, model_dir)
    if case.env:  # (placeholders {in} and {tmp}; no offline mode or mirror but the case's own)
        for key in ("EDSR_JAX_OFFLINE", "EDSR_JAX_WEIGHTS_MIRROR"):
            monkeypatch.delenv(key, raising=False)
        for key, value in case.env:
            monkeypatch.setenv(key, value.format(tmp=str(tmp_path), **{"in": str(tmp_path / "in")}))
    before = everything_under(tmp_path)
    code = cli.main([case.command, *args])
    out, err = capsys.readouterr()
    after = everything_under(tmp_path)
    lost = sorted(p for p, digest in before.items() if after.get(p) != digest and p not in case.replaces)
    assert not lost, f"files that were there before and are gone or changed: {lost}"
    written = {p for p, digest in after.items() if before.get(p) != digest}
    if case.error is None:
        assert code == 0, err
        (result,) = [os.path.join(tmp_path, p) for p in written]
        with Image.open(result) as im:
            assert (im.size, im.mode) == (case.size, case.mode)
        return
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"edsr-jax {case.command}: error: "), lines[0]
    assert re.search(case.error, lines[0]), lines[0]
    assert not written, written  # no output, partial file or workdir left behind


def test_at_least_13_upscale_situations_are_covered():
    assert len([c for c in CASES if c.command == "upscale"]) >= 13
    assert {c.command for c in CASES} == {
        "upscale",
        "eval",
        "downscale",
        "convert-torch",
        "train",
        "export",
        "demo",
    }


def test_the_docs_table_is_the_generated_one():
    what_happens_table = load_script("experiments/tools/what_happens_table.py")
    assert what_happens_table.load_cases() == (CASES, FAULTS)  # the script finds the same cases
    with open(os.path.join(ROOT, "docs", "what_happens.md"), encoding="utf-8") as f:
        page = f.read()
    begin, end = what_happens_table.BEGIN, what_happens_table.END
    assert begin in page and end in page, "docs/what_happens.md lacks the What happens when... table markers"
    current = page[page.index(begin) + len(begin) : page.index(end)].strip()
    assert current == what_happens_table.table(CASES, FAULTS).strip(), (
        "docs/what_happens.md is out of date: run python experiments/tools/what_happens_table.py --write"
    )


def test_every_fault_row_names_a_test_that_exists():
    for _, _, where in FAULTS:
        module, name = where.split("::")
        with open(os.path.join(TESTS, module), encoding="utf-8") as f:
            assert f"def {name}(" in f.read(), where


def test_debug_shows_the_traceback_instead(model_dir, tmp_path):
    with pytest.raises(UserError, match="input not found"):
        cli.main(["upscale", "--debug", "--checkpoint", model_dir, str(tmp_path / "no.png"), "x.png"])
