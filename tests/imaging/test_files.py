"""Image files (edsr_jax.imaging.files): reading every mode as RGB uint8, atomic writing, folder
listing, and planning (input, output) pairs for file and folder arguments."""

import os

import numpy as np
import pytest
from PIL import Image
from support.cases import BUILDERS

from edsr_jax.errors import UserError
from edsr_jax.imaging import files


def _png(path, shape=(6, 7, 3)):
    Image.fromarray(np.zeros(shape, np.uint8)).save(path)
    return str(path)


def test_bad_image_files_are_user_errors_naming_the_file(tmp_path, set5_dir):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    data = open(os.path.join(set5_dir, "HR", "bird.png"), "rb").read()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    for name, pattern in (
        ("missing.png", "not found"),
        ("empty.png", "empty"),
        ("text.png", "not an image"),
        ("cut.png", "cannot decode"),
    ):
        with pytest.raises(UserError, match=pattern) as info:
            files.read_image(str(tmp_path / name))
        assert name in str(info.value)


def test_write_image_is_atomic_and_round_trips(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    path = tmp_path / "out.png"
    files.write_image(str(path), img)
    np.testing.assert_array_equal(files.read_image(str(path)), img)
    assert os.listdir(tmp_path) == ["out.png"]  # no temporary file left
    raw = files.load_raw(str(path))
    assert raw.mode == "RGB"
    with pytest.raises(UserError, match="float64"):
        files.write_image(str(tmp_path / "bad.png"), img.astype(float))
    with pytest.raises(UserError, match="output folder does not exist"):
        files.write_image(str(tmp_path / "no" / "such.png"), img)
    assert os.listdir(tmp_path) == ["out.png"]


def test_16_bit_values_are_read_as_8_bit_not_clipped(tmp_path):
    path = str(tmp_path / "a.png")
    BUILDERS["gray16"](path)
    raw = np.asarray(Image.open(path), np.float64)
    rgb = files.read_image(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (*raw.shape, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.floor(raw / 257 + 0.5))


def test_encoded_bytes_decode_with_the_file_rules(tmp_path, monkeypatch):
    # TFDS records hold encoded images: same 16-bit rule, size header and bomb guard as files.
    path = str(tmp_path / "a.png")
    BUILDERS["gray16"](path)
    data = open(path, "rb").read()
    np.testing.assert_array_equal(files.decode_image(data, "record 3"), files.read_image(path))
    assert files.image_size(data) == files.image_size(path) == files.read_image(path).shape[:2]
    monkeypatch.setenv(files.MAX_PIXELS_ENV, "10")
    with pytest.raises(UserError, match=r"image record 3 \(\d+x\d+\) is larger than the limit of 10 pixels"):
        files.decode_image(data, "record 3")
    with pytest.raises(UserError, match=r"not an image file .*: record 4"):
        files.decode_image(b"not an image", "record 4")


def test_list_images_sorts_by_name_and_refuses_a_missing_or_imageless_folder(tmp_path):
    for name in ("b.png", "a.JPG", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert files.list_images(str(tmp_path)) == [str(tmp_path / "a.JPG"), str(tmp_path / "b.png")]
    with pytest.raises(UserError, match=r"image folder .*nothing does not exist"):
        files.list_images(str(tmp_path / "nothing"))
    with pytest.raises(UserError, match=r"image folder .*b\.png is a file, not a folder"):
        files.list_images(str(tmp_path / "b.png"))
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"no image files .* in .*texts"):
        files.list_images(str(tmp_path / "texts"))


def test_output_format_follows_the_extension():
    assert files.output_format("a/b.PNG") == "PNG" and files.output_format("x.jpg") == "JPEG"
    with pytest.raises(UserError, match=r"cannot write b\.xyz: unknown image extension '\.xyz'"):
        files.output_format("b.xyz")


# --- plan_outputs ---------------------------------------------------------------------------------


def test_plan_a_file_to_a_file_and_into_a_folder(tmp_path):
    src = _png(tmp_path / "a.png")
    assert files.plan_outputs(src, str(tmp_path / "b.jpg")) == [(src, str(tmp_path / "b.jpg"))]
    (tmp_path / "out").mkdir()
    expected = [(src, os.path.join(str(tmp_path / "out"), "a.png"))]
    assert files.plan_outputs(src, str(tmp_path / "out")) == expected  # an existing folder
    new = str(tmp_path / "new") + os.sep  # a path ending with a separator
    assert files.plan_outputs(src, new) == [(src, os.path.join(new, "a.png"))]
    bare = str(tmp_path / "bare")  # no extension: a folder
    assert files.plan_outputs(src, bare, name=lambda p: "ax2.png") == [(src, os.path.join(bare, "ax2.png"))]
    assert not os.path.exists(new) and not os.path.exists(bare)  # planning creates nothing


def test_plan_a_folder_into_a_folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    a, b = _png(src / "a.png"), _png(src / "b.bmp")
    (src / "notes.txt").write_text("not an image")
    dst = str(tmp_path / "out")
    assert files.plan_outputs(str(src), dst) == [
        (a, os.path.join(dst, "a.png")),
        (b, os.path.join(dst, "b.bmp")),
    ]
    named = files.plan_outputs(str(src), dst, name=lambda p: os.path.basename(p) + ".png")
    assert [d for _, d in named] == [os.path.join(dst, "a.png.png"), os.path.join(dst, "b.bmp.png")]


def test_plan_refuses_a_folder_to_a_file_and_the_same_folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _png(src / "a.png")
    with pytest.raises(UserError, match=r"is a folder, so the output must be a folder, got .*x\.png"):
        files.plan_outputs(str(src), str(tmp_path / "x.png"))
    existing = _png(tmp_path / "existing.png")
    with pytest.raises(UserError, match="output must be a folder"):
        files.plan_outputs(str(src), existing)
    with pytest.raises(UserError, match="the output folder must differ from the input folder"):
        files.plan_outputs(str(src), str(src))
    with pytest.raises(UserError, match="the output folder must differ"):
        files.plan_outputs(str(src), str(tmp_path / "." / "in"))


def test_plan_refuses_to_overwrite_the_input(tmp_path):
    src = _png(tmp_path / "a.png")
    with pytest.raises(UserError, match=r"refusing to overwrite the input .*a\.png"):
        files.plan_outputs(src, src)
    with pytest.raises(UserError, match="refusing to overwrite the input"):
        files.plan_outputs(src, str(tmp_path))  # into its own folder under its own name


def test_plan_refuses_an_unknown_extension_and_a_missing_input(tmp_path):
    src = _png(tmp_path / "a.png")
    with pytest.raises(UserError, match=r"'\.xyz'"):
        files.plan_outputs(src, str(tmp_path / "b.xyz"))
    folder = tmp_path / "in"
    folder.mkdir()
    _png(folder / "c.png")
    with pytest.raises(UserError, match=r"'\.xyz'"):
        files.plan_outputs(str(folder), str(tmp_path / "out"), name=lambda p: "c.xyz")
    with pytest.raises(UserError, match=r"input not found: .*nope\.png"):
        files.plan_outputs(str(tmp_path / "nope.png"), str(tmp_path / "b.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no image files .* in .*empty"):
        files.plan_outputs(str(tmp_path / "empty"), str(tmp_path / "out"))
