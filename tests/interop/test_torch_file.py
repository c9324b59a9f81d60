"""The torch-free reader of torch.save files (edsr_jax.interop.torch_file): the same tensors, dtypes,
keys and containers as ``torch.load(weights_only=True)`` on both formats, refusal of pickles that
would run code, and one-line descriptions of files that are not PyTorch files."""

import collections
import os

import numpy as np
import pytest
from support.optional import import_torch

torch = import_torch()  # (files are made with PyTorch; the reader itself never imports it)

from support import torch_reference as ref  # noqa: E402

from edsr_jax.errors import UserError  # noqa: E402
from edsr_jax.interop import torch_file  # noqa: E402

FORMATS = {"zip": True, "legacy": False}  # torch.save's _use_new_zipfile_serialization


def _save(obj, path, fmt, **kwargs):
    torch.save(obj, path, _use_new_zipfile_serialization=FORMATS[fmt], **kwargs)
    return path


def _assert_same(expected, got, where="file"):
    """``got`` (the reader's) is ``expected`` (torch.load's) with numpy arrays for tensors."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, np.ndarray), where
        if expected.dtype == torch.bfloat16:
            assert str(got.dtype) == "bfloat16", where
            expected, got = expected.float(), got.astype(np.float32)
        want = expected.detach().numpy()
        assert (got.dtype, got.shape) == (want.dtype, want.shape), where
        np.testing.assert_array_equal(got, want, err_msg=where)
    elif isinstance(expected, dict):
        assert type(got) is type(expected) and list(got) == list(expected), where
        for key in expected:
            _assert_same(expected[key], got[key], f"{where}[{key!r}]")
    elif isinstance(expected, list | tuple):
        assert type(got) is type(expected) and len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            _assert_same(a, b, f"{where}[{i}]")
    else:
        assert type(got) is type(expected) and got == expected, where


def _checkpoint():
    """A BasicSR-style wrapper around a real state dict, and tensors of every layout and dtype."""
    generator = torch.Generator().manual_seed(0)
    grid = torch.rand(5, 7, generator=generator)
    return {
        "params": ref.randomized("edsr", 2, 2, 8).state_dict(),  # an OrderedDict with _metadata
        "iter": 300000,
        "lr": 1e-4,
        "name": "EDSR_Mx2",
        "flags": (True, None),
        "transposed": grid.t(),  # non-contiguous: strides (1, 7) over a shared storage
        "column": grid[:, 3],  # a view with an offset
        "same_storage": grid,
        "half": grid.half(),
        "bfloat16": grid.bfloat16(),
        "double": grid.double(),
        "int64": torch.arange(-3, 9),
        "uint8": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "special": torch.tensor([float("inf"), -0.0, 1e-45]),
        "nested": [torch.ones(2, 2), {"deep": torch.full((1,), 7.0)}],
        "parameter": torch.nn.Parameter(torch.ones(3)),
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_what_torch_load_reads_on_both_formats(tmp_path, fmt):
    path = _save(_checkpoint(), tmp_path / "checkpoint.pt", fmt)
    expected = torch.load(path, weights_only=True)
    got = torch_file.read(path)
    _assert_same(expected, got)
    assert isinstance(got["params"], collections.OrderedDict)
    assert got["column"].flags.c_contiguous and got["column"].flags.writeable  # copies, not views


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_official_layout_file_reads_as_torch_loads_it(tmp_path, fmt):
    net = ref.randomized("mdsr", (2, 3, 4), 2, 8)
    path = _save(net.state_dict(), tmp_path / "mdsr.pt", fmt)
    _assert_same(torch.load(path, weights_only=True), torch_file.read(path))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling calls os.makedirs(marker)
        return (os.makedirs, (self.marker,))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, fmt):
    marker = tmp_path / "the_file_ran_code"
    path = _save({"weight": torch.ones(2), "payload": _RunsCode(str(marker))}, tmp_path / "evil.pt", fmt)
    with pytest.raises(UserError, match=r"evil\.pt was refused: its pickle asks for (posix|os|nt)\.makedirs"):
        torch_file.read(path)
    assert not marker.exists()
    with pytest.raises(Exception, match="(?i)weights.only"):  # (PyTorch's safe loader refuses it too)
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_opcodes_a_state_dict_never_uses_are_refused(tmp_path):
    path = _save({"weight": torch.ones(1), "ids": {1, 2}}, tmp_path / "set.pt", "zip", pickle_protocol=4)
    with pytest.raises(UserError, match=r"set\.pt was refused: .* the pickle opcode EMPTY_SET"):
        torch_file.read(path)


def test_a_whole_pickled_model_is_refused_naming_its_class(tmp_path):
    path = _save(ref.build_model("edsr", 2, 1, 4), tmp_path / "model.pt", "zip")
    with pytest.raises(UserError, match=r"asks for support\.torch_reference\.EDSR.*save a state_dict\(\)"):
        torch_file.read(path)


def _lfs_pointer() -> bytes:
    return (
        b"version https://git-lfs.github.com/spec/v1\n"
        b"oid sha256:4f62e9ef1a4ec6a7d3da4ed837116cec641e4e1566f98187151d813e83a0c1c8\n"
        b"size 172381555\n"
    )


def _html_page() -> bytes:
    return b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>gone</body></html>\n"


def _cut(fmt, keep):
    def make(tmp_path):
        path = _save(ref.randomized("edsr", 2, 1, 8).state_dict(), tmp_path / "full.pt", fmt)
        data = path.read_bytes()
        return data[: keep(len(data))]

    return make


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"x\.pt is empty \(0 bytes\): an interrupted download or copy\?$"),
        (
            _lfs_pointer(),
            r"x\.pt is a Git LFS pointer \(134 bytes\) to a 172,381,555-byte file "
            r"\(sha256 4f62e9ef1a4ec6a7\.\.\.\), not the weights",
        ),
        (_html_page(), r"x\.pt is an HTML page \(88 bytes, title '404 Not Found'\), not PyTorch weights"),
        (b"weights go here\n", r"x\.pt is a text file \(16 bytes, starting 'weights go here'\)"),
        (_cut("zip", lambda n: n - 100), r"x\.pt is truncated or damaged: it starts as a zip-format"),
        (_cut("legacy", lambda n: n - 100), r"x\.pt is truncated: storage \S+ needs [\d,]+ bytes at byte"),
        (_cut("legacy", lambda n: 400), r"x\.pt is truncated: its pickle at byte \d+ ends early"),
        (b"\x89PNG\r\n\x1a\n" + bytes(50), r"x\.pt is not a PyTorch file \(it starts with b'\\x89PNG"),
    ],
    ids=["empty", "lfs", "html", "text", "truncated_zip", "truncated_legacy_data", "truncated_pickle", "png"],
)
def test_files_that_are_not_pytorch_files_are_named_as_what_they_are(tmp_path, content, message):
    data = content(tmp_path) if callable(content) else content
    (tmp_path / "x.pt").write_bytes(data)
    with pytest.raises(UserError, match=message) as error:
        torch_file.read(tmp_path / "x.pt")
    assert "\n" not in str(error.value)


def test_a_missing_path_and_a_folder_are_named(tmp_path):
    with pytest.raises(UserError, match=r"cannot read PyTorch weights from .*none\.pt: it does not exist"):
        torch_file.read(tmp_path / "none.pt")
    with pytest.raises(UserError, match=r"it is a directory"):
        torch_file.read(tmp_path)
