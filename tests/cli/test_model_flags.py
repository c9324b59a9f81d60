"""``--model NAME`` in ``upscale``, ``eval`` (and ``--compare``) and ``export``: the issue's acceptance
(a mirror serving a file whose hash differs: exit 2, one line naming both hashes, nothing cached; a
matching entry: the image is upscaled, and a second call makes no request), and the other commands.

Files come from an HTTP server on 127.0.0.1 (support/weights_server.py); the name lookup of any
other host fails, so nothing can reach the internet.
"""

import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image
from support.optional import import_torch

torch = import_torch()  # (the synthetic published files are made with PyTorch)

from support import torch_reference as ref  # noqa: E402
from support.tiny_weights import NAME, entry, isolate, saved  # noqa: E402
from support.weights_server import WeightsServer, forbid_internet  # noqa: E402

from edsr_jax import cli  # noqa: E402
from edsr_jax.interop import pretrained, published  # noqa: E402

REAL_NAME = "edsr_baseline_x2"
REAL_FILE = "edsr_baseline_x2-1bc95232.pt"


@pytest.fixture(scope="module")
def net():
    return ref.randomized("edsr", 2, 1, 8)


@pytest.fixture(scope="module")
def data(net) -> bytes:
    return saved(net)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path / "cache")
    forbid_internet(monkeypatch)
    return tmp_path / "cache"


@pytest.fixture
def server():
    with WeightsServer() as s:
        yield s


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(path)
    return path


def test_upscale_model_with_a_mismatching_mirror_file_exits_2_naming_both_hashes(
    cache, server, data, photo, tmp_path, monkeypatch, capsys
):
    server.files[f"/mirror/{REAL_FILE}"] = data  # a real torch file, but not the published one
    monkeypatch.setenv(pretrained.MIRROR_ENV, server.url("/mirror"))
    code = cli.main(["upscale", "--model", REAL_NAME, "--no-progress", str(photo), str(tmp_path / "b.png")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("edsr-jax upscale: error: "), err
    assert hashlib.sha256(data).hexdigest() in err and "1bc95232" in err  # received and expected
    assert not (tmp_path / "b.png").exists() and os.listdir(cache) == []
    assert server.requests == [f"/mirror/{REAL_FILE}"]  # no other source was tried


def test_upscale_model_with_a_matching_entry_upscales_and_a_second_call_makes_no_request(
    cache, server, data, photo, tmp_path, monkeypatch, capsys
):
    server.files[f"/mirror/{REAL_FILE}"] = data
    monkeypatch.setenv(pretrained.MIRROR_ENV, server.url("/mirror"))
    registered = entry(data, "http://127.0.0.1:9/unused", name=REAL_NAME, filename=REAL_FILE)
    with published.registered(registered):
        for output in ("b.png", "c.png"):
            args = ["upscale", "--model", REAL_NAME, "--no-progress", str(photo), str(tmp_path / output)]
            assert cli.main(args) == 0, capsys.readouterr().err
            with Image.open(tmp_path / output) as image:
                assert image.size == (22, 18)
    assert server.requests == [f"/mirror/{REAL_FILE}"]
    assert os.listdir(cache) == [REAL_NAME]


def test_eval_model_and_compare_by_name(cache, server, data, tmp_path, capsys):
    server.files["/w.pt"] = data
    (tmp_path / "sets" / "Set5" / "HR").mkdir(parents=True)
    hr = np.random.default_rng(1).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    Image.fromarray(hr).save(tmp_path / "sets" / "Set5" / "HR" / "x.png")
    out = tmp_path / "results.json"
    common = ["eval", "--data-dir", str(tmp_path / "sets"), "--datasets", "Set5", "--no-progress"]
    with published.registered(entry(data, server.url("/w.pt"))):
        assert cli.main([*common, "--model", NAME, "--compare", NAME, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"method: model {NAME} ({cache / NAME})" in printed
    results = json.loads(out.read_text())
    (first,), (second,) = results["results"], results["compare"]["results"]
    assert first["scale"] == 2 and first["images"] == second["images"]  # the same model, named twice
    assert server.requests == ["/w.pt"]


def test_export_model_writes_the_published_tensors(cache, server, data, net, tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    server.files["/w.pt"] = data
    out = tmp_path / "tiny.safetensors"
    with published.registered(entry(data, server.url("/w.pt"))):
        assert cli.main(["export", "--model", NAME, "--format", "safetensors", str(out)]) == 0
    tensors = safetensors_numpy.load_file(str(out))
    for key, value in net.state_dict().items():  # (the official layout: the same keys and values)
        np.testing.assert_allclose(tensors[key], value.numpy(), rtol=0, atol=1e-6)


def test_model_and_checkpoint_exclude_each_other(photo, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["upscale", "--model", NAME, "--checkpoint", "x", str(photo), "b.png"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
