"""A program that uses edsr-jax as a library and prints what process-wide state changed (JSON).

Run as a script (``python side_effect_probe.py WORKDIR``): it imports the third-party packages
first (their own import-time effects are not edsr-jax's), takes a snapshot, then imports
``edsr_jax``, trains ``configs/test.py`` for 4 steps through ``train.train_and_evaluate`` (the
data pipeline, checkpoints, TensorBoard events, validation), loads the model and upscales an image,
scores it, reads and writes image files, exports safetensors and a StableHLO file, draws a
checkpoint-sweep plot, and takes the snapshot again. ``os.umask`` is watched while it runs (a
change restored at once would not show in a snapshot).
"""

import json
import logging
import os
import sys
import threading
import xml.parsers.expat  # noqa: F401  (a C extension that adds spec-less submodules when imported)

import etils.epath  # noqa: F401  (the dependencies first: their own import-time effects,
import flax.linen  # noqa: F401     such as absl's logging handler on the root logger, are theirs)
import grain  # noqa: F401
import jax
import matplotlib
import numpy as np
import optax  # noqa: F401
import orbax.checkpoint  # noqa: F401
import tensorboard.summary.writer.record_writer  # noqa: F401
from PIL import Image

UMASK_CALLS = []
_real_umask = os.umask


def _watched_umask(mask):
    UMASK_CALLS.append(mask)
    return _real_umask(mask)


def snapshot() -> dict:
    """Everything process-wide a library must leave as it found it."""
    return {
        "environ": dict(os.environ),
        "jax.config": {k: repr(v) for k, v in jax.config.values.items()},
        "sys.unraisablehook": repr(sys.unraisablehook),
        "sys.excepthook": repr(sys.excepthook),
        "threading.excepthook": repr(threading.excepthook),
        "PIL.Image.MAX_IMAGE_PIXELS": Image.MAX_IMAGE_PIXELS,
        "matplotlib backend": repr(dict.__getitem__(matplotlib.rcParams, "backend")),
        "matplotlib figures": len(__import__("matplotlib._pylab_helpers")._pylab_helpers.Gcf.figs)
        if "matplotlib.pyplot" in sys.modules
        else 0,
        "root logger": [repr(logging.root.level), [repr(h) for h in logging.root.handlers]],
        "umask": _real_umask(_real_umask(0)),
    }


def planted_modules(before: set) -> list[str]:
    """Modules added to ``sys.modules`` that no import system made (no ``__spec__``)."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name not in before and module is not None and getattr(module, "__spec__", None) is None
    )


def use_the_library(workdir: str) -> None:
    from edsr_jax import evaluate, inference, load_model, train
    from edsr_jax.apps import sweep
    from edsr_jax.configs import test as test_config
    from edsr_jax.data.benchmarks import Sample
    from edsr_jax.imaging import files
    from edsr_jax.interop import export

    config = test_config.get_config()
    config.num_train_steps = 4
    config.log_every_steps = 2
    config.eval_every_steps = 4
    config.checkpoint_every_steps = 4
    config.eval.num_images = 1
    train.train_and_evaluate(config, os.path.join(workdir, "run"))
    model, variables = load_model(os.path.join(workdir, "run"))
    lr = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    upscale = inference.make_upscaler(model, variables)
    sr = upscale(lr)
    hr = np.clip(np.round(sr), 0, 255).astype(np.uint8)
    evaluate.evaluate_images(upscale, [Sample("probe", lr, hr)], scale=2)
    files.write_image(os.path.join(workdir, "sr.png"), hr)
    files.read_image(os.path.join(workdir, "sr.png"))
    export.export_model(model, variables, os.path.join(workdir, "model.safetensors"), "safetensors")
    export.export_model(model, variables, os.path.join(workdir, "model.stablehlo"), "stablehlo")
    rows = [{"step": s, "dataset": "Set5", "scale": 2, "psnr": 30.0 + s, "ssim": 0.9} for s in (1, 2)]
    sweep.plot(rows, "probe")


def main() -> int:
    workdir = sys.argv[1]
    before_modules = set(sys.modules)
    before = snapshot()
    os.umask = _watched_umask
    use_the_library(workdir)
    os.umask = _real_umask
    after = snapshot()
    changed = {k: {"before": before[k], "after": after[k]} for k in before if before[k] != after[k]}
    if "environ" in changed:  # (only the variables that differ)
        b, a = before["environ"], after["environ"]
        changed["environ"] = {k: [b.get(k), a.get(k)] for k in set(b) | set(a) if b.get(k) != a.get(k)}
    if "jax.config" in changed:
        b, a = before["jax.config"], after["jax.config"]
        changed["jax.config"] = {k: [b.get(k), a.get(k)] for k in set(b) | set(a) if b.get(k) != a.get(k)}
    report = {
        "changed": changed,
        "planted_modules": planted_modules(before_modules),
        "umask_calls": UMASK_CALLS,
    }
    print(json.dumps(report, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
