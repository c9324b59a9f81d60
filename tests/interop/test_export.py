"""Exporting (edsr_jax.interop.export, ``edsr-jax export``): every format reloaded in its own
runtime and compared with the JAX model, at two image sizes, EDSR x2/x3/x4 and MDSR; the PyTorch
export in the independent official-layout EDSR; BasicSR checkpoints in; the NNX bridge."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from support.optional import import_torch

torch = import_torch()  # (skips the module where PyTorch is not installed)

from support import torch_reference as ref  # noqa: E402

from edsr_jax import cli, models  # noqa: E402
from edsr_jax.checkpoint import exported  # noqa: E402
from edsr_jax.errors import UserError  # noqa: E402
from edsr_jax.interop import export  # noqa: E402
from edsr_jax.interop import torch as torch_interop  # noqa: E402

# Largest |export - JAX| on [0, 255] outputs: float32 formats, and ONNX fp16 (measured: 0.04-0.07
# on these tiny random models; stated in the README).
FP32_TOLERANCE = 1e-3
FP16_TOLERANCE = 0.25
SIZES = ((13, 17), (8, 21))  # two sizes: the graphs have dynamic height and width


@pytest.fixture(scope="module")
def tiny_models():
    """name -> (model, variables): EDSR x2 (residual scaling 0.1), x3, x4 and an MDSR."""
    built = {}
    for name, model in {
        "edsr_x2": models.EDSR(scale=2, num_blocks=2, num_features=8, res_scale=0.1),
        "edsr_x3": models.EDSR(scale=3, num_blocks=1, num_features=8),
        "edsr_x4": models.EDSR(scale=4, num_blocks=1, num_features=8),
        "mdsr": models.MDSR(num_blocks=1, num_features=8),
    }.items():
        built[name] = model, models.init(model, jax.random.key(len(built)))
    return built


def images(set5_dir=None):
    rng = np.random.default_rng(0)
    out = [rng.uniform(0, 255, (1, *hw, 3)).astype(np.float32) for hw in SIZES]
    if set5_dir:
        with Image.open(os.path.join(set5_dir, "HR", "baby.png")) as im:
            out.append(np.asarray(im.convert("RGB"), np.float32)[None, 100:140, 60:92])
    return out


def run_format(fmt: str, path: str, x: np.ndarray) -> np.ndarray:
    """The exported graph at ``path`` run in its own runtime on NHWC ``x``; NHWC output."""
    if fmt == "stablehlo":
        with open(path, "rb") as f:
            return np.asarray(jax.export.deserialize(f.read()).call(x))
    if fmt == "savedmodel":
        import tensorflow as tf

        return tf.saved_model.load(path).signatures["serving_default"](lr=tf.constant(x))["sr"].numpy()
    if fmt == "tflite":
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=path)
        (inp,) = interpreter.get_input_details()
        interpreter.resize_tensor_input(inp["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"lr": x.transpose(0, 3, 1, 2)})[0].transpose(0, 2, 3, 1)


@pytest.mark.parametrize("fmt", ["stablehlo", "savedmodel", "tflite", "onnx", "onnx-fp16"])
def test_every_graph_format_matches_the_jax_model(fmt, tiny_models, tmp_path, set5_dir):
    fp16 = fmt.endswith("-fp16")
    fmt = fmt.removesuffix("-fp16")
    tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
    for name, (model, variables) in tiny_models.items():
        paths = export.export_model(model, variables, str(tmp_path / name), fmt, fp16=fp16)
        assert len(paths) == len(model.scales)  # MDSR: one graph per scale
        for path, scale in zip(paths, model.scales, strict=True):
            assert f"_x{scale}" in os.path.basename(path) or len(paths) == 1
            for x in images(set5_dir):
                want = np.asarray(model.apply(variables, jnp.asarray(x), scale=scale))
                got = run_format(fmt, path, x)
                assert got.shape == want.shape, (name, scale, got.shape)
                assert np.abs(got - want).max() <= tolerance, (name, scale, x.shape, np.abs(got - want).max())


def test_the_torch_export_loads_into_the_official_layout_and_converts_back_bit_for_bit(tiny_models, tmp_path):
    for name, (model, variables) in tiny_models.items():
        (path,) = export.export_model(model, variables, str(tmp_path / f"{name}.pt"), "torch")
        state = torch.load(path, weights_only=True)
        spec = models.model_spec(model)
        scales = spec.get("scale", spec.get("scales"))
        net = ref.build_model(
            spec["arch"], scales, spec["num_blocks"], spec["num_features"], spec["res_scale"]
        )
        net.load_state_dict(state, strict=True)  # every official key, nothing else
        x = images()[0]
        for index, scale in enumerate(model.scales):
            want = np.asarray(model.apply(variables, jnp.asarray(x), scale=scale))
            np.testing.assert_allclose(ref.run(net, x, index), want, atol=FP32_TOLERANCE)
        out = tmp_path / f"{name}_back"
        args = ["convert-torch", path, "--out", str(out), "--res-scale", str(spec["res_scale"])]
        assert cli.main(args) == 0
        back_model, back = exported.load_model(str(out))
        assert models.model_spec(back_model) == spec
        for a, b in zip(jax.tree.leaves(back["params"]), jax.tree.leaves(variables["params"]), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_safetensors_holds_the_same_tensors_as_the_torch_export(tiny_models, tmp_path):
    from safetensors.numpy import load_file

    model, variables = tiny_models["mdsr"]
    (path,) = export.export_model(model, variables, str(tmp_path / "m"), "safetensors")
    assert path.endswith("m.safetensors")
    tensors = load_file(path)
    want = torch_interop.export_state_dict(model, variables)
    assert sorted(tensors) == sorted(want) and "upsample.2.2.weight" in tensors
    for key, value in want.items():
        np.testing.assert_array_equal(tensors[key], value)


def basicsr_state(net: torch.nn.Module) -> dict:
    """An official-layout EDSR's tensors under BasicSR's EDSR key names (basicsr/archs/edsr_arch.py)."""
    out = {}
    blocks = len([m for m in net.body if hasattr(m, "body")])
    for key, value in net.state_dict().items():
        if key.startswith(("sub_mean", "add_mean")):
            continue
        parts = key.split(".")
        if parts[0] == "head":
            new = f"conv_first.{parts[-1]}"
        elif parts[0] == "body" and int(parts[1]) == blocks:
            new = f"conv_after_body.{parts[-1]}"
        elif parts[0] == "body":
            new = f"body.{parts[1]}.conv{1 if parts[3] == '0' else 2}.{parts[-1]}"
        elif parts[:2] == ["tail", "0"]:
            new = f"upsample.{parts[2]}.{parts[-1]}"
        else:
            new = f"conv_last.{parts[-1]}"
        out[new] = value.clone()
    return out


def test_basicsr_checkpoints_convert_preferring_the_ema_weights(tmp_path, capsys):
    ema = ref.randomize_(ref.build_model("edsr", 4, 2, 8), seed=1)
    plain = ref.randomize_(ref.build_model("edsr", 4, 2, 8), seed=2)
    torch.save({"params": basicsr_state(plain), "params_ema": basicsr_state(ema)}, tmp_path / "b.pth")
    assert cli.main(["convert-torch", str(tmp_path / "b.pth"), "--out", str(tmp_path / "m")]) == 0
    assert "BasicSR checkpoint: using params_ema (the EMA weights)" in capsys.readouterr().out
    model, variables = exported.load_model(str(tmp_path / "m"))
    x = images()[1]
    np.testing.assert_allclose(np.asarray(model.apply(variables, jnp.asarray(x))), ref.run(ema, x), atol=1e-3)
    torch.save({"params": basicsr_state(plain)}, tmp_path / "p.pth")
    assert cli.main(["convert-torch", str(tmp_path / "p.pth"), "--out", str(tmp_path / "p")]) == 0
    assert "using params (the file has no params_ema)" in capsys.readouterr().out


def test_a_basicsr_img_range_is_mapped_exactly(tmp_path):
    # BasicSR's EDSR: y01 = f((x01 - mean) * r) / r + mean with f the convs alone. Our converted
    # model must give 255 * y01 on 255 * x01.
    net = ref.randomize_(ref.build_model("edsr", 2, 2, 8), seed=3)
    r = 1.0
    state = {k: v.numpy() for k, v in basicsr_state(net).items()}
    model, basic = torch_interop.convert_state_dict(
        torch_interop.basicsr_to_official(state, 255.0)
    )  # f itself
    _, mapped = torch_interop.convert_state_dict(torch_interop.basicsr_to_official(state, r))
    mean = 255.0 * np.asarray(models.DIV2K_RGB_MEAN, np.float32)
    x01 = np.random.default_rng(0).uniform(0, 1, (1, 11, 9, 3)).astype(np.float32)
    f = lambda z: np.asarray(model.apply(basic, jnp.asarray(z + mean))) - mean  # noqa: E731
    y01 = f((x01 - mean / 255.0) * r) / r + mean / 255.0
    ours = np.asarray(model.apply(mapped, jnp.asarray(255.0 * x01)))
    np.testing.assert_allclose(ours, 255.0 * y01, rtol=1e-4, atol=1e-3)  # (float32 rounding at two scales)


def test_the_nnx_bridge_runs_the_model_as_in_the_readme():
    from flax import nnx
    from flax.nnx import bridge

    model = models.mdsr_baseline()
    model = model.clone(num_blocks=1, num_features=8)
    variables = models.init(model, jax.random.key(0))
    x = jnp.asarray(images()[0])
    nnx_model = bridge.ToNNX(model, rngs=nnx.Rngs(0))
    bridge.lazy_init(nnx_model, x, scale=2)
    params = nnx.state(nnx_model, nnx.Param)
    params.replace_by_pure_dict(variables["params"])
    nnx.update(nnx_model, params)
    for scale in model.scales:
        np.testing.assert_array_equal(
            np.asarray(nnx_model(x, scale=scale)), np.asarray(model.apply(variables, x, scale=scale))
        )


def test_export_errors_name_what_is_wrong(tiny_models, tmp_path, monkeypatch):
    model, variables = tiny_models["edsr_x2"]
    with pytest.raises(UserError, match="unknown export format 'keras'; use one of stablehlo, savedmodel"):
        export.export_model(model, variables, str(tmp_path / "m"), "keras")
    (tmp_path / "m.pt").write_bytes(b"old")
    with pytest.raises(UserError, match=r"m\.pt exists; pass --force"):
        export.export_model(model, variables, str(tmp_path / "m.pt"), "torch")
    assert (tmp_path / "m.pt").read_bytes() == b"old"
    with pytest.raises(UserError, match="fp16 applies to the onnx format"):
        export.export_model(model, variables, str(tmp_path / "m"), "tflite", fp16=True)
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # `import onnx` raises ImportError
    with pytest.raises(UserError, match=r'exporting ONNX needs onnx: pip install "edsr-jax\[export\]"'):
        export.export_model(model, variables, str(tmp_path / "n.onnx"), "onnx")
    assert not (tmp_path / "n.onnx").exists()


def test_force_replaces_only_a_savedmodel_that_export_wrote(tiny_models, tmp_path):
    model, variables = tiny_models["edsr_x2"]
    out = tmp_path / "sm"
    export.export_model(model, variables, str(out), "savedmodel")
    with pytest.raises(
        UserError, match=r"holds a SavedModel written by edsr-jax export already; pass --force"
    ):
        export.export_model(model, variables, str(out), "savedmodel")
    stamp = (out / "saved_model.pb").stat().st_mtime_ns
    export.export_model(model, variables, str(out), "savedmodel", force=True)
    assert (out / "saved_model.pb").stat().st_mtime_ns != stamp  # replaced
    x = images()[0]
    np.testing.assert_allclose(
        run_format("savedmodel", str(out), x), model.apply(variables, x), atol=FP32_TOLERANCE
    )
    (out / "notes.txt").write_text("mine")
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.txt").write_text("mine")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for folder, message in (
        (out, r"besides a SavedModel .* \(notes\.txt\)"),
        (user, r"holds files edsr-jax did not write \(thesis\.txt\)"),
        (tmp_path / "user" / "thesis.txt", "is a file"),
    ):
        with pytest.raises(UserError, match=message):
            export.export_model(model, variables, str(folder), "savedmodel", force=True)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("fmt", ["stablehlo", "onnx", "torch", "safetensors"])
def test_unwritable_outputs_are_named_as_given_before_anything_is_converted(fmt, tiny_models, tmp_path):
    model, variables = tiny_models["edsr_x2"]
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / f"m{export.EXTENSIONS[fmt]}"
    with pytest.raises(UserError, match=rf"cannot write {out}: .*a_file is a file, not a folder"):
        export.export_model(model, variables, str(out), fmt)
    assert os.listdir(tmp_path) == ["a_file"]


def test_a_write_that_fails_half_way_names_the_output_not_a_temporary_file(
    tiny_models, tmp_path, monkeypatch
):
    from edsr_jax import atomic

    model, variables = tiny_models["edsr_x2"]
    real_fdopen = os.fdopen

    class DiskFull:  # a file whose writes fail, as on a full disk
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(28, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        return DiskFull(f) if "w" in mode else f

    monkeypatch.setattr(atomic.os, "fdopen", fdopen)
    for fmt in ("onnx", "torch"):
        out = tmp_path / f"m{export.EXTENSIONS[fmt]}"
        with pytest.raises(OSError, match="No space left") as raised:
            export.export_model(model, variables, str(out), fmt)
        assert raised.value.filename == str(out)
    assert os.listdir(tmp_path) == []
