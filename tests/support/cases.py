"""The bad and awkward inputs every command is tested against, and what edsr-jax does with each.

One table serves two readers: ``tests/cli/test_bad_inputs.py`` runs every case through the CLI and
checks the promised behaviour, and ``experiments/tools/what_happens_table.py`` turns it into the
docs' "What happens when..." table, docs/what_happens.md (a test keeps the two equal).

Arguments name their files with placeholders: ``{in}`` (the input the case's ``make`` writes),
``{out}`` (an output path that must stay absent on failure), ``{model}`` (a tiny exported EDSR x2),
``{tmp}`` (the case's own empty folder), ``{config}`` (``configs/test.py``). ``env`` sets
environment variables for the case (placeholders ``{in}`` and ``{tmp}``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

# Model scale of the tiny exported model the upscale/eval cases use.
MODEL_SCALE = 2


@dataclasses.dataclass(frozen=True)
class Case:
    """One situation.

    Attributes:
      id: short test id.
      command: the ``edsr-jax`` subcommand.
      situation: the table's column 1 ("What happens when ...").
      outcome: the table's column 2 (what edsr-jax does).
      make: the builder (name in :data:`BUILDERS`) that writes ``{in}``, or None.
      args: the command's arguments with placeholders.
      error: a regex the one-line error must match (naming the culprit); None: success.
      env: ``(variable, value)`` pairs set while the case runs.
      size: expected output ``(width, height)`` on success.
      mode: expected Pillow mode of the output on success.
      replaces: files (relative to the case's folder) the command may replace; every other file
        present before it runs must survive unchanged.
    """

    id: str
    command: str
    situation: str
    outcome: str
    make: str | None
    args: tuple[str, ...]
    error: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    size: tuple[int, int] | None = None
    mode: str | None = None
    replaces: tuple[str, ...] = ()


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _save(array: np.ndarray, path: str, **kwargs) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, **kwargs)


def _rgb(h: int, w: int) -> np.ndarray:
    return _rng().integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_old_export(path: str) -> None:
    with open(path, "wb") as f:
        f.write(b"an earlier export")


def make_rgb(path: str) -> None:
    _save(_rgb(10, 13), path)


def make_zero_bytes(path: str) -> None:
    open(path, "wb").close()


def make_truncated(path: str) -> None:
    _save(_rgb(64, 64), path)
    with open(path, "r+b") as f:
        f.truncate(60)


def make_text(path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("hello, I am not an image\n")


def make_gray(path: str) -> None:
    _save(_rng().integers(0, 256, (10, 13), dtype=np.uint8), path)


def make_rgba(path: str) -> None:
    _save(_rng().integers(0, 256, (10, 13, 4), dtype=np.uint8), path)


def make_palette(path: str) -> None:
    from PIL import Image

    Image.fromarray(_rgb(10, 13)).convert("P").save(path)


def make_gray16(path: str) -> None:
    _save(_rng().integers(0, 65536, (10, 13)).astype(np.uint16), path)


def make_cmyk(path: str) -> None:
    from PIL import Image

    Image.fromarray(_rgb(10, 13)).convert("CMYK").save(path, quality=95)


def make_one_pixel(path: str) -> None:
    _save(_rgb(1, 1), path)


def make_huge(path: str) -> None:
    # 520 x 530 LR pixels: above the 512 x 512 default, so it is cut into 256-pixel tiles.
    _save(np.zeros((530, 520, 3), np.uint8) + np.arange(520, dtype=np.uint8)[None, :, None], path)


def make_empty_folder(path: str) -> None:
    os.makedirs(path)


def make_folder_with_a_file(path: str) -> None:
    os.makedirs(path)
    make_text(os.path.join(path, "notes.txt"))


def make_set_with_a_truncated_image(path: str) -> None:
    """A benchmark folder whose Set5 holds one good and one half-copied (truncated) HR image."""
    hr = os.path.join(path, "Set5", "HR")
    os.makedirs(hr)
    _save(_rgb(24, 24), os.path.join(hr, "good.png"))
    make_truncated(os.path.join(hr, "half_copied.png"))


def make_lfs_pointer(path: str) -> None:
    """What a clone without ``git lfs pull`` holds instead of edsr_x4-4f62e9ef.pt (git-lfs spec v1)."""
    with open(path, "w", encoding="ascii") as f:
        f.write("version https://git-lfs.github.com/spec/v1\n")
        f.write("oid sha256:4f62e9ef1a4ec6a7d3da4ed837116cec641e4e1566f98187151d813e83a0c1c8\n")
        f.write("size 172381555\n")


def make_html_page(path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body></body></html>\n")


def make_mirror_with_a_wrong_file(path: str) -> None:
    """A mirror folder whose edsr_baseline_x2-1bc95232.pt is not the published file."""
    os.makedirs(path)
    with open(os.path.join(path, "edsr_baseline_x2-1bc95232.pt"), "wb") as f:
        f.write(_rng().integers(0, 256, 4096, dtype=np.uint8).tobytes())


def make_pt_of_other_tensors(path: str) -> None:
    from support.optional import import_torch

    torch = import_torch()
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)


# --- issue 25: folders holding what a user wrote, and what edsr-jax wrote -----------------------------


def make_user_folder(path: str) -> None:
    """A folder holding the user's own work."""
    os.makedirs(path)
    with open(os.path.join(path, "thesis.txt"), "w", encoding="utf-8") as f:
        f.write("three years of work\n")


def make_exported_model(path: str) -> None:
    """A tiny exported EDSR x2 (B1, F8), as save_model writes it."""
    from edsr_jax import models
    from edsr_jax.checkpoint.exported import save_model
    from support.trees import numpy_init

    model = models.EDSR(scale=MODEL_SCALE, num_blocks=1, num_features=8)
    save_model(path, model, numpy_init(model))


def make_model_with_notes(path: str) -> None:
    """An exported model with the user's notes beside its files."""
    make_exported_model(path)
    make_text(os.path.join(path, "notes.txt"))


def make_training_workdir(path: str) -> None:
    """What `edsr-jax train` leaves: model.json (source training), a step folder, events."""
    from edsr_jax.checkpoint import layout

    spec = {"arch": "edsr", "scale": MODEL_SCALE, "num_blocks": 1, "num_features": 8, "res_scale": 1.0}
    os.makedirs(os.path.join(path, "checkpoints", "40", "params"))
    layout.write_model_json(path, spec, {"source": "training", "config": {}})
    make_text(os.path.join(path, "checkpoints", "40", "params", "manifest.ocdbt"))
    make_text(os.path.join(path, "events.out.tfevents.1.host"))


def make_set_with_results(path: str) -> None:
    """A benchmark folder (Set5) and, beside it, the SR images and CSV of an earlier evaluation."""
    make_set_with_a_truncated_image(path)
    os.remove(os.path.join(path, "Set5", "HR", "half_copied.png"))
    os.makedirs(os.path.join(path, "results", "Set5", "x2"))
    make_rgb(os.path.join(path, "results", "Set5", "x2", "good_x2_SR.png"))
    make_text(os.path.join(path, "results", "Set5_x2.csv"))


BUILDERS: dict[str, Callable[[str], None]] = {
    name[len("make_") :]: fn for name, fn in dict(globals()).items() if name.startswith("make_")
}

_U = ("--checkpoint", "{model}", "--no-progress")  # upscale's model arguments
_T = (
    "--config",
    "{config}",
    "--workdir",
    "{out}",
    "--config.model.num_blocks=1",
    "--config.model.num_features=8",
    "--config.batch_size=8",
    "--config.patch_size=12",
)
_ONE_LINE = "a one-line error naming"

CASES: tuple[Case, ...] = (
    # --- upscale: inputs ------------------------------------------------------------------------
    Case(
        "missing",
        "upscale",
        "the input file does not exist",
        f"{_ONE_LINE} the path; exit 2",
        None,
        (*_U, "{in}.png", "{out}.png"),
        error=r"input not found: .*in\.png",
    ),
    Case(
        "zero_bytes",
        "upscale",
        "the input is a zero-byte file",
        f"{_ONE_LINE} the file; exit 2",
        "zero_bytes",
        (*_U, "{in}.png", "{out}.png"),
        error=r"in\.png",
    ),
    Case(
        "truncated",
        "upscale",
        "the input PNG is truncated (half-downloaded)",
        f"{_ONE_LINE} the file; exit 2; no output file",
        "truncated",
        (*_U, "{in}.png", "{out}.png"),
        error=r"in\.png",
    ),
    Case(
        "not_an_image",
        "upscale",
        "the input is a text file named `.png`",
        f"{_ONE_LINE} the file; exit 2",
        "text",
        (*_U, "{in}.png", "{out}.png"),
        error=r"in\.png",
    ),
    Case(
        "grayscale",
        "upscale",
        "the input is grayscale (`L`)",
        "upscaled through the model as RGB, written back as 8-bit grayscale",
        "gray",
        (*_U, "{in}.png", "{out}.png"),
        size=(26, 20),
        mode="L",
    ),
    Case(
        "rgba",
        "upscale",
        "the input has an alpha channel (`RGBA`)",
        "colour through the model; alpha upscaled by bicubic; written as RGBA (PNG/TIFF/WebP)",
        "rgba",
        (*_U, "{in}.png", "{out}.png"),
        size=(26, 20),
        mode="RGBA",
    ),
    Case(
        "rgba_to_jpeg",
        "upscale",
        "an `RGBA` input is written to `.jpg`",
        "the alpha is dropped (JPEG has none); RGB output",
        "rgba",
        (*_U, "{in}.png", "{out}.jpg"),
        size=(26, 20),
        mode="RGB",
    ),
    Case(
        "palette",
        "upscale",
        "the input is a palette image (`P`)",
        "expanded to RGB, upscaled, written as RGB",
        "palette",
        (*_U, "{in}.png", "{out}.png"),
        size=(26, 20),
        mode="RGB",
    ),
    Case(
        "gray16",
        "upscale",
        "the input is 16-bit grayscale",
        "processed as 8-bit (value / 257), written as 8-bit grayscale",
        "gray16",
        (*_U, "{in}.png", "{out}.png"),
        size=(26, 20),
        mode="L",
    ),
    Case(
        "cmyk",
        "upscale",
        "the input is a CMYK JPEG",
        "converted to RGB, written as RGB",
        "cmyk",
        (*_U, "{in}.jpg", "{out}.png"),
        size=(26, 20),
        mode="RGB",
    ),
    Case(
        "one_pixel",
        "upscale",
        "the input is 1x1 pixel",
        "a 2x2 output (x2)",
        "one_pixel",
        (*_U, "{in}.png", "{out}.png"),
        size=(2, 2),
        mode="RGB",
    ),
    Case(
        "huge",
        "upscale",
        "the input is large (over 512x512 LR pixels)",
        "cut into overlapping 256-pixel tiles (exact, bounded memory); full-size output",
        "huge",
        (*_U, "{in}.png", "{out}.png"),
        size=(1040, 1060),
        mode="RGB",
    ),
    Case(
        "empty_folder",
        "upscale",
        "the input folder holds no images",
        f"{_ONE_LINE} the folder; exit 2",
        "empty_folder",
        (*_U, "{in}", "{out}"),
        error=r"no image files .* in .*in",
    ),
    Case(
        "same_file",
        "upscale",
        "the output is the input file itself",
        "refused before any work; the input is untouched",
        "rgb",
        (*_U, "{in}.png", "{in}.png"),
        error=r"refusing to overwrite the input .*in\.png",
    ),
    Case(
        "bad_extension",
        "upscale",
        "the output has an unknown extension (`.xyz`)",
        f"{_ONE_LINE} the extension; exit 2",
        "rgb",
        (*_U, "{in}.png", "{out}.xyz"),
        error=r"'\.xyz'",
    ),
    Case(
        "negative_tile",
        "upscale",
        "`--tile` is negative",
        f"{_ONE_LINE} the value",
        "rgb",
        (*_U, "--tile", "-4", "{in}.png", "{out}.png"),
        error=r"--tile .* got -4",
    ),
    # --- upscale / eval: models -----------------------------------------------------------------
    Case(
        "wrong_scale",
        "upscale",
        "`--scale` is one the model lacks (x3 for an x2 model)",
        f"{_ONE_LINE} the scales the model has; exit 2",
        "rgb",
        (*_U, "--scale", "3", "{in}.png", "{out}.png"),
        error=r"upscales by x2 only, not x3",
    ),
    Case(
        "checkpoint_is_pt",
        "upscale",
        "`--checkpoint` is an official `.pt` file",
        f"{_ONE_LINE} the file (convert it with `edsr-jax convert-torch` first)",
        "rgb",
        ("--checkpoint", "{tmp}/edsr_x2.pt", "{in}.png", "{out}.png"),
        error=r"edsr_x2\.pt",
    ),
    Case(
        "checkpoint_is_other_folder",
        "upscale",
        "`--checkpoint` is a folder that holds no model",
        f"{_ONE_LINE} the folder",
        "folder_with_a_file",
        ("--checkpoint", "{in}", "{tmp}/a.png", "{out}.png"),
        error=r"in\b",
    ),
    Case(
        "eval_checkpoint_missing",
        "eval",
        "`eval --checkpoint` does not exist",
        f"{_ONE_LINE} the path",
        None,
        ("--data-dir", "{tmp}", "--datasets", "Set5", "--scales", "2", "--checkpoint", "{in}"),
        error=r"no model at .*in",
    ),
    Case(
        "eval_unknown_dataset",
        "eval",
        "`eval --datasets` names an unknown or absent set",
        f"{_ONE_LINE} the set and the folder",
        None,
        ("--data-dir", "{tmp}", "--datasets", "Set6", "--scales", "2", "--method", "bicubic"),
        error=r"Set6",
    ),
    Case(
        "eval_missing_data_dir",
        "eval",
        "`eval --data-dir` does not exist",
        f"{_ONE_LINE} the folder",
        None,
        ("--data-dir", "{in}", "--datasets", "Set5", "--scales", "2", "--method", "bicubic"),
        error=r"in\b",
    ),
    Case(
        "eval_truncated_image",
        "eval",
        "a benchmark set holds a truncated or non-image file (a half-copied Urban100)",
        f"{_ONE_LINE} the file (`--skip-bad` scores the others and lists it)",
        "set_with_a_truncated_image",
        ("--data-dir", "{in}", "--datasets", "Set5", "--scales", "2", "--method", "bicubic", "--no-progress"),
        error=r"half_copied\.png",
    ),
    # --- export -----------------------------------------------------------------------------------
    Case(
        "export_unknown_format",
        "export",
        "`export --format` names a format edsr-jax does not write",
        f"{_ONE_LINE} the format and the ones it writes",
        None,
        ("--checkpoint", "{model}", "--format", "keras", "{out}"),
        error=r"unknown export format 'keras'; use one of stablehlo, savedmodel, tflite, onnx",
    ),
    Case(
        "export_output_exists",
        "export",
        "the `export` output exists (no `--force`)",
        f"{_ONE_LINE} the file; it is left as it was",
        "old_export",
        ("--checkpoint", "{model}", "--format", "torch", "{in}.pt"),
        error=r"in\.pt exists; pass --force",
    ),
    # --- downscale --------------------------------------------------------------------------------
    Case(
        "downscale_missing",
        "downscale",
        "`downscale` input does not exist",
        f"{_ONE_LINE} the path",
        None,
        ("--scale", "2", "{in}.png", "{out}.png"),
        error=r"input not found: .*in\.png",
    ),
    Case(
        "downscale_not_an_image",
        "downscale",
        "`downscale` input is not an image",
        f"{_ONE_LINE} the file; no output",
        "text",
        ("--scale", "2", "{in}.png", "{out}.png"),
        error=r"in\.png",
    ),
    Case(
        "downscale_too_small",
        "downscale",
        "`downscale` input is smaller than the scale (1x1, x2)",
        f"{_ONE_LINE} the file and its size",
        "one_pixel",
        ("--scale", "2", "{in}.png", "{out}.png"),
        error=r"in\.png \(1x1\) is smaller than the scale 2",
    ),
    Case(
        "downscale_zero_scale",
        "downscale",
        "`downscale --scale 0`",
        f"{_ONE_LINE} the value",
        "rgb",
        ("--scale", "0", "{in}.png", "{out}.png"),
        error=r"--scale .* got 0",
    ),
    Case(
        "downscale_gray16",
        "downscale",
        "`downscale` input is 16-bit grayscale",
        "read as 8-bit, replicated to RGB, downscaled",
        "gray16",
        ("--scale", "2", "{in}.png", "{out}.png"),
        size=(6, 5),
        mode="RGB",
    ),
    # --- convert-torch ----------------------------------------------------------------------------
    Case(
        "convert_missing",
        "convert-torch",
        "`convert-torch` file does not exist",
        f"{_ONE_LINE} the path",
        None,
        ("{in}.pt", "--out", "{out}"),
        error=r"in\.pt",
    ),
    Case(
        "convert_zero_bytes",
        "convert-torch",
        "`convert-torch` file is empty",
        f"{_ONE_LINE} the file",
        "zero_bytes",
        ("{in}.pt", "--out", "{out}"),
        error=r"in\.pt",
    ),
    Case(
        "convert_not_torch",
        "convert-torch",
        "`convert-torch` file is not a PyTorch file",
        f"{_ONE_LINE} the file",
        "text",
        ("{in}.pt", "--out", "{out}"),
        error=r"in\.pt",
    ),
    Case(
        "convert_other_model",
        "convert-torch",
        "`convert-torch` file holds another network's tensors",
        f"{_ONE_LINE} what is missing; nothing written",
        "pt_of_other_tensors",
        ("{in}.pt", "--out", "{out}"),
        error=r"(?i)edsr|mdsr|head|tensor",
    ),
    # --- train: configs ---------------------------------------------------------------------------
    Case(
        "config_missing",
        "train",
        "`train --config` does not exist",
        f"{_ONE_LINE} the file",
        None,
        ("--config", "{in}.py", "--workdir", "{out}"),
        error=r"config .*in\.py is neither a packaged config nor a file",
    ),
    Case(
        "negative_steps",
        "train",
        "`--config.num_train_steps=-5`",
        f"{_ONE_LINE} the field, value and rule, before anything is written",
        None,
        (*_T, "--config.num_train_steps=-5"),
        error=r"num_train_steps=-5 \(must be >= 0\)",
    ),
    Case(
        "patch_zero",
        "train",
        "`--config.patch_size=0`",
        f"{_ONE_LINE} the field and rule",
        None,
        (*_T, "--config.patch_size=0"),
        error=r"patch_size=0 \(must be >= 1",
    ),
    Case(
        "log_every_zero",
        "train",
        "`--config.log_every_steps=0`",
        f"{_ONE_LINE} the field and rule",
        None,
        (*_T, "--config.log_every_steps=0"),
        error=r"log_every_steps=0",
    ),
    Case(
        "unknown_arch",
        "train",
        "`--config.model.arch=srgan` (unknown model)",
        f"{_ONE_LINE} the value and the known models",
        None,
        (*_T, "--config.model.arch=srgan"),
        error=r"model\.arch='srgan'.*edsr, mdsr",
    ),
    Case(
        "unknown_source",
        "train",
        "`--config.data.source=imagenet` (unknown dataset source)",
        f"{_ONE_LINE} the value and the known sources",
        None,
        (*_T, "--config.data.source=imagenet"),
        error=r"data\.source='imagenet'.*tfds",
    ),
    Case(
        "unknown_field",
        "train",
        "a misspelt field (`--config.batch_sise=8`)",
        f"{_ONE_LINE} the field, with the closest names",
        None,
        (*_T, "--config.batch_sise=8"),
        error=r"unknown config field --config\.batch_sise.*batch_size",
    ),
    Case(
        "unsupported_scale",
        "train",
        "`--config.scales=5`",
        f"{_ONE_LINE} the supported scales",
        None,
        (*_T, "--config.scales=5"),
        error=r"unsupported scales \[5\]",
    ),
    Case(
        "batch_not_divisible",
        "train",
        "the batch does not divide over the devices (12 on 8)",
        f"{_ONE_LINE} both numbers and a batch that works",
        None,
        (*_T, "--config.batch_size=12"),
        error=r"batch_size=12 .* multiple of the number of devices \(8",
    ),
    Case(
        "workdir_is_file",
        "train",
        "`--workdir` is a file",
        f"{_ONE_LINE} the path",
        "text",
        ("--config", "{config}", "--workdir", "{in}", "--config.model.num_blocks=1"),
        error=r"is a file",
    ),
    # --- published models (--model NAME) and files that are not weights ---------------------------
    Case(
        "convert_lfs_pointer",
        "convert-torch",
        "`convert-torch` file is a Git LFS pointer (a clone without `git lfs pull`)",
        f"{_ONE_LINE} it as an LFS pointer and the size of the real file; nothing written",
        "lfs_pointer",
        ("{in}.pt", "--out", "{out}"),
        error=r"in\.pt is a Git LFS pointer \(\d+ bytes\) to a 172,381,555-byte file",
    ),
    Case(
        "convert_html_page",
        "convert-torch",
        "`convert-torch` file is an HTML page (a download that returned an error page)",
        f"{_ONE_LINE} it as an HTML page, with its title; nothing written",
        "html_page",
        ("{in}.pt", "--out", "{out}"),
        error=r"in\.pt is an HTML page \(\d+ bytes, title '404 Not Found'\)",
    ),
    Case(
        "model_hash_mismatch",
        "upscale",
        "`--model NAME` gets a file whose SHA-256 is not the registry's (here: from a mirror)",
        f"{_ONE_LINE} both hashes; the download is deleted and nothing cached; no other source tried",
        "mirror_with_a_wrong_file",
        ("--model", "edsr_baseline_x2", "--no-progress", "{tmp}/a.png", "{out}.png"),
        error=r"edsr_baseline_x2-1bc95232\.pt from file:.* has sha256 [0-9a-f]{64}, expected 1bc95232\.\.\.",
        env=(("EDSR_JAX_WEIGHTS_MIRROR", "file://{in}"), ("EDSR_JAX_CACHE", "{tmp}/cache")),
    ),
    Case(
        "model_offline_not_cached",
        "upscale",
        "`--model NAME` with `EDSR_JAX_OFFLINE=1` and the model not in the cache",
        f"{_ONE_LINE} the model and the folder it would be cached in, at once (no network)",
        None,
        ("--model", "edsr_x4", "--no-progress", "{tmp}/a.png", "{out}.png"),
        error=r"edsr_x4 is not cached at .*cache/edsr_x4, and EDSR_JAX_OFFLINE is set",
        env=(("EDSR_JAX_OFFLINE", "1"), ("EDSR_JAX_CACHE", "{tmp}/cache")),
    ),
)

# --- issue 25: no command loses a user's data; user mistakes are one line -----------------------------
# (Every case also checks that each file present before the command is still there, unchanged,
# unless the case lists it in `replaces`.)
_FORCE = "refused whatever `--force` says; every file in it survives"
_BENCH = ("--method", "bicubic", "--datasets", "Set5", "--scales", "2", "--no-progress")
CASES += (
    Case(
        "export_savedmodel_over_user_folder",
        "export",
        "`export --format savedmodel --force DIR` where DIR holds the user's files",
        f"{_ONE_LINE} DIR and what it holds; {_FORCE}",
        "user_folder",
        ("--checkpoint", "{model}", "--format", "savedmodel", "--force", "{in}"),
        error=r"refusing to replace .*in: it holds files edsr-jax did not write \(thesis\.txt\)",
    ),
    Case(
        "export_into_a_model",
        "export",
        "the `export` output lies inside an exported model's folder",
        f"{_ONE_LINE} the model it would write into; nothing written",
        "exported_model",
        ("--checkpoint", "{model}", "--format", "torch", "{in}/edsr_x2.pt"),
        error=r"refusing to write .*in/edsr_x2\.pt: it is part of an exported edsr-jax model",
    ),
    Case(
        "export_unwritable",
        "export",
        "the `export` output cannot be written (its folder is a file)",
        f"{_ONE_LINE} the path given (never a temporary file), before anything is converted",
        "text",
        ("--checkpoint", "{model}", "--format", "onnx", "{in}/edsr_x2.onnx"),
        error=r"cannot write .*in/edsr_x2\.onnx: .*in is a file, not a folder",
    ),
    Case(
        "convert_force_over_workdir",
        "convert-torch",
        "`convert-torch --out DIR --force` where DIR is a training workdir",
        f"{_ONE_LINE} the workdir; {_FORCE}",
        "training_workdir",
        ("{tmp}/edsr_x2.pt", "--out", "{in}", "--force"),
        error=r"refusing to replace .*in: it holds an edsr-jax training workdir",
    ),
    Case(
        "convert_force_beside_notes",
        "convert-torch",
        "`convert-torch --out DIR --force` where DIR holds an earlier model and the user's notes",
        f"{_ONE_LINE} the files edsr-jax did not write; {_FORCE}",
        "model_with_notes",
        ("{tmp}/edsr_x2.pt", "--out", "{in}", "--force"),
        error=r"besides an exported edsr-jax model .* files edsr-jax did not write \(notes\.txt\)",
    ),
    Case(
        "train_into_exported_model",
        "train",
        "`train --workdir` is an exported model's folder",
        f"{_ONE_LINE} what the folder holds (and `config.init_from` to start from it); nothing written",
        "exported_model",
        ("--config", "{config}", "--workdir", "{in}", "--config.model.num_blocks=1"),
        error=r"holds an exported edsr-jax model .*not a training run.*init_from",
    ),
    Case(
        "train_into_user_folder",
        "train",
        "`train --workdir` holds other files and no training run",
        f"{_ONE_LINE} the files (`--allow-other-files` trains beside them); nothing written",
        "user_folder",
        ("--config", "{config}", "--workdir", "{in}", "--config.model.num_blocks=1"),
        error=r"not empty and holds no training run \(thesis\.txt\).*--allow-other-files",
    ),
    Case(
        "non_finite_loss",
        "train",
        "the loss becomes NaN in a new workdir (`--config.learning_rate=1e30`)",
        f"{_ONE_LINE} the step, loss, gradient norm and what to change; exit 2; the workdir is removed "
        "again (no checkpoint was saved)",
        None,
        (*_T, "--config.learning_rate=1e30", "--config.learning_rate_schedule=step"),
        error=r"non-finite training values at step \d+: loss=nan.*config\.learning_rate",
    ),
    Case(
        "demo_into_user_folder",
        "demo",
        "`demo --workdir` holds other files",
        f"{_ONE_LINE} the files; nothing written",
        "user_folder",
        ("--workdir", "{in}", "--steps", "1", "--no-progress"),
        error=r"holds files of no demo run \(thesis\.txt\)",
    ),
    Case(
        "upscale_output_exists",
        "upscale",
        "the `upscale` output file exists (no `--force`)",
        f"{_ONE_LINE} the file; it is left as it was (`--force` replaces it)",
        "rgb",
        (*_U, "{in}.png", "{tmp}/a.png"),
        error=r"a\.png exists; pass --force",
    ),
    Case(
        "upscale_force",
        "upscale",
        "`upscale --force` onto an existing output file",
        "the file is replaced by the new output",
        "rgb",
        (*_U, "--force", "{in}.png", "{tmp}/a.png"),
        size=(26, 20),
        mode="RGB",
        replaces=("a.png",),
    ),
    Case(
        "upscale_huge_tile",
        "upscale",
        "`--tile` is larger than the image (`--tile 100000` on 13x10)",
        "the tile is clamped to the image (one whole-image pass)",
        "rgb",
        (*_U, "--tile", "100000", "{in}.png", "{out}.png"),
        size=(26, 20),
        mode="RGB",
    ),
    Case(
        "downscale_output_exists",
        "downscale",
        "the `downscale` output file exists (no `--force`)",
        f"{_ONE_LINE} the file; it is left as it was",
        "rgb",
        ("--scale", "2", "{in}.png", "{tmp}/a.png"),
        error=r"a\.png exists; pass --force",
    ),
    Case(
        "eval_report_exists",
        "eval",
        "the `eval --report` file exists (no `--force`)",
        f"{_ONE_LINE} the file, before any image is scored",
        "set_with_results",
        ("--data-dir", "{in}", *_BENCH, "--report", "{in}/results/Set5_x2.csv"),
        error=r"Set5_x2\.csv exists; pass --force",
    ),
    Case(
        "eval_results_exist",
        "eval",
        "`eval --save-results DIR` where DIR holds an earlier evaluation's images and CSVs",
        f"{_ONE_LINE} them, before any image is scored (`--force` replaces them)",
        "set_with_results",
        ("--data-dir", "{in}", *_BENCH, "--save-results", "{in}/results"),
        error=r"results holds an earlier evaluation's results \(Set5, Set5_x2\.csv\); pass --force",
    ),
    Case(
        "eval_json_unwritable",
        "eval",
        "the `eval --json` path cannot be written (its folder is a file)",
        f"{_ONE_LINE} the path, before any image is scored",
        "set_with_results",
        ("--data-dir", "{in}", *_BENCH, "--json", "{in}/results/Set5_x2.csv/r.json"),
        error=r"the folder of --json .*r\.json does not exist|cannot write",
    ),
    Case(
        "eval_compare_missing",
        "eval",
        "`eval --compare` does not exist",
        f"{_ONE_LINE} the path, before the first model is scored",
        "set_with_results",
        ("--data-dir", "{in}", "--datasets", "Set5", "--checkpoint", "{model}", "--compare", "{tmp}/nothing"),
        error=r"no model at --compare .*nothing",
    ),
    Case(
        "eval_output_is_an_input",
        "eval",
        "an `eval` output is one of the benchmark images (`--json Set5/HR/good.png --force`)",
        f"{_ONE_LINE} the input; {_FORCE}",
        "set_with_results",
        ("--data-dir", "{in}", *_BENCH, "--force", "--json", "{in}/Set5/HR/good.png"),
        error=r"refusing to overwrite .*good\.png: it is an input of this command",
    ),
)

# Training faults, checked by the tests named here (tests/test_train_faults.py, tests/test_train.py):
# (situation, what edsr-jax does, "file under tests/::test").
FAULTS: tuple[tuple[str, str, str], ...] = (
    (
        "`train` is killed (SIGKILL) between checkpoints, while a checkpoint's files are being written, "
        "or just before a checkpoint is committed",
        "the rerun resumes from the last complete checkpoint and ends bit-identical to an uninterrupted run",
        "test_train_faults.py::test_sigkill_then_rerun_resumes_from_the_last_complete_checkpoint_bit_identical",
    ),
    (
        "`train` gets SIGTERM (preemption)",
        "saves a checkpoint of the current step, then exits; the rerun resumes",
        "test_train.py::test_resume_after_sigterm_is_bit_identical",
    ),
    (
        "the latest checkpoint is corrupt or truncated",
        "a warning names it; it is moved to `checkpoints/unreadable-<step>` (never deleted) and the "
        "previous one is used",
        "test_train_faults.py::test_an_unreadable_latest_checkpoint_is_set_aside_with_a_warning_and_the_previous_used",
    ),
    (
        "the disk fills up while a checkpoint is written",
        "stops with the OS error naming the checkpoint folder; the previous checkpoint stays intact",
        "test_train_faults.py::test_a_failing_write_keeps_the_previous_checkpoint_and_says_what_failed",
    ),
    (
        "the loss becomes NaN or infinite",
        "stops with a one-line error (exit 2) naming the step, loss, gradient norm and what to change; "
        "keeps the last good checkpoint",
        "test_train_faults.py::test_non_finite_loss_names_the_step_and_values_and_keeps_the_good_checkpoints",
    ),
    (
        "`train` is started on a workdir that another trainer is using",
        "exits at once with a one-line error naming the other trainer (host, PID, since when); exit 2",
        "checkpoint/test_lock.py::test_a_second_trainer_on_a_workdir_exits_at_once_naming_the_first",
    ),
    (
        "a trainer was killed (SIGKILL) and left its workdir lock behind",
        "the next `train` takes the lock over with a warning naming the dead trainer",
        "checkpoint/test_lock.py::test_a_lock_left_by_a_killed_trainer_is_taken_over_naming_it",
    ),
    (
        "`eval --checkpoint` or `load_model` on a workdir while `train` writes it",
        "only complete checkpoints are read (or one line says there is none yet); nothing is written "
        "or deleted; the trainer's result is unchanged",
        "checkpoint/test_readers.py::test_loading_and_evaluating_while_training_sees_only_complete_steps",
    ),
    (
        "`upscale` of a very large photo (3000x2250 at x4 in the test; 4000x3000 measured)",
        "host memory stays about the uint8 output (tiles quantised as they finish, PNG written in "
        "blocks of rows); outputs over `--max-memory-mb` are built in a memory-mapped file beside the output",
        "apps/test_upscale_files.py::test_upscaling_a_3000x2250_photo_at_x4_stays_within_its_uint8_output_size_in_memory",
    ),
    (
        "`upscale` input over Pillow's decompression-bomb pixel limit",
        "a one-line error naming the limit and how to raise it (`EDSR_JAX_MAX_IMAGE_PIXELS`); exit 2",
        "apps/test_upscale_files.py::test_an_image_over_the_pixel_limit_names_the_limit_and_how_to_raise_it",
    ),
    (
        "`eval --skip-bad` on a set with unreadable files",
        "scores the readable images; the table and the JSON list each skipped file with its error",
        "cli/test_eval.py::test_skip_bad_scores_the_readable_images_and_lists_the_others",
    ),
    (
        "`export` to a format whose package is not installed (e.g. onnx)",
        'a one-line error naming the package and `pip install "edsr-jax[export]"`; nothing written',
        "interop/test_export.py::test_export_errors_name_what_is_wrong",
    ),
    (
        "`--workdir` holds a run of a different model",
        "a one-line error naming both models; nothing is written",
        "test_train_faults.py::test_a_workdir_of_another_model_is_refused_before_anything_is_written",
    ),
)

# --- issue 25: checkpoints are set aside only when their files are damaged ---------------------------
FAULTS += (
    (
        "reading the latest checkpoint fails for another reason (permission denied, memory exhausted, "
        "an Orbax that reads the files differently)",
        "stops with the error, naming the step and its folder, which stays in place; nothing is set aside",
        "checkpoint/test_recovery.py::test_a_failure_that_is_not_damage_leaves_every_step_in_place_and_names_the_step",
    ),
    (
        "a multi-process run: one process finds the latest checkpoint damaged, or cannot read it",
        "every process makes the same decision: all set it aside and use the previous one, or all stop",
        "checkpoint/test_recovery.py::test_damage_seen_by_another_process_sets_the_step_aside_on_this_one_too",
    ),
    (
        "a step folder lacks its commit record or an item (a partial copy)",
        "never restored; moved to `checkpoints/incomplete-<step>` (never deleted)",
        "checkpoint/test_manager.py::test_partial_checkpoints_are_never_restored",
    ),
    (
        "`train` fails (a non-finite loss, a bad data folder) before its first checkpoint",
        "the workdir is left as it was found: what the run added is removed (a new workdir entirely)",
        "test_train_faults.py::test_a_run_that_fails_before_its_first_checkpoint_leaves_the_workdir_as_it_found_it",
    ),
    (
        "`export --format savedmodel --force` onto a SavedModel an earlier `export` wrote",
        "replaced (edsr-jax marks the folders it writes); a file a user added there makes it refuse",
        "interop/test_export.py::test_force_replaces_only_a_savedmodel_that_export_wrote",
    ),
)
