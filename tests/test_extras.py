"""A feature whose optional dependency is missing says which extra to install (edsr_jax.extras)."""

import sys

import pytest

from edsr_jax import cli
from edsr_jax.apps import sweep
from edsr_jax.data import sources
from edsr_jax.errors import UserError

INSTALL = "pip install 'edsr-jax[apps]'"


def block(monkeypatch, *modules):
    """Makes ``import module`` fail in this test only, as if the package were not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_the_sample_photographs_without_scikit_image_name_the_extra(monkeypatch):
    block(monkeypatch, "skimage", "skimage.data")
    with pytest.raises(UserError, match=r"needs the scikit-image package: pip install 'edsr-jax\[apps\]'"):
        sources.skimage_source(["astronaut"], [2])


def test_the_sweep_plot_without_matplotlib_names_the_extra(monkeypatch):
    block(monkeypatch, "matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg")
    rows = [{"step": 1, "dataset": "Set5", "scale": 2, "psnr": 30.0, "ssim": 0.9}]
    with pytest.raises(UserError, match=r"needs the matplotlib package"):
        sweep.plot(rows, "title")


def test_eval_curve_without_matplotlib_stops_before_scoring(monkeypatch, tmp_path, capsys):
    block(monkeypatch, "matplotlib")
    (tmp_path / "run").mkdir()
    (tmp_path / "data").mkdir()
    prefix = str(tmp_path / "curve")
    args = ["--checkpoint", str(tmp_path / "run"), "--data-dir", str(tmp_path / "data")]
    assert cli.main(["eval", *args, "--steps", "all", "--curve", prefix, "--no-progress"]) == 2
    assert INSTALL in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]  # nothing scored or written
