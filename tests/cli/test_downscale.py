"""``edsr-jax downscale``: EDSR names, bit-exact MATLAB LR files, files and folders."""

import os

import numpy as np
from support.images import copy_hr

from edsr_jax import cli
from edsr_jax.imaging import files


def test_downscale_command_writes_edsr_names_bit_exact(set5_dir, tmp_path):
    src = tmp_path / "hr"
    copy_hr(set5_dir, src, names=("bird", "woman"))
    out = tmp_path / "lr" / "X4"
    assert cli.main(["downscale", "--scale", "4", str(src / "HR"), str(out)]) == 0
    assert sorted(os.listdir(out)) == ["birdx4.png", "womanx4.png"]
    for n in ("bird", "woman"):
        real = files.read_image(os.path.join(set5_dir, "LR_bicubic", "X4", f"{n}x4.png"))
        np.testing.assert_array_equal(files.read_image(str(out / f"{n}x4.png")), real)
    single = tmp_path / "single"
    hr = str(src / "HR" / "bird.png")
    assert cli.main(["downscale", "--scale", "2", "--boundary", "mirror", hr, str(single) + os.sep]) == 0
    real = files.read_image(os.path.join(set5_dir, "LR_bicubic_edsrpkg", "X2", "birdx2.png"))
    np.testing.assert_array_equal(files.read_image(str(single / "birdx2.png")), real)
    assert cli.main(["downscale", "--scale", "2", str(tmp_path / "nothing.png"), str(single)]) == 2


def test_downscale_to_a_file_name_and_without_modcrop(set5_dir, tmp_path, capsys):
    hr = os.path.join(set5_dir, "HR", "woman.png")  # 344 x 228
    assert cli.main(["downscale", "--scale", "3", hr, str(tmp_path / "small.png")]) == 0
    assert files.read_image(str(tmp_path / "small.png")).shape == (114, 76, 3)
    assert cli.main(["downscale", "--scale", "3", "--no-modcrop", hr, str(tmp_path / "ceil.png")]) == 0
    assert files.read_image(str(tmp_path / "ceil.png")).shape == (115, 76, 3)
    assert "wrote 1 image (x1/3, replicate)" in capsys.readouterr().out
