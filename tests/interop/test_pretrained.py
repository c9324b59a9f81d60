"""Published models by name (edsr_jax.interop.pretrained / published): first download, cache hits,
hash mismatches, interrupted transfers, offline mode, mirrors, two processes at once, LFS pointers
and HTML pages, a file of another architecture, and the registry itself.

Nothing leaves the machine: the tests serve synthetic official-layout files (a tiny EDSR made with
the PyTorch reference and saved in the legacy format of the 2018 files) from an HTTP server on
127.0.0.1 (support/weights_server.py), under entries they register for the test only.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from support.optional import import_torch

torch = import_torch()  # (the synthetic files are made with PyTorch)

from support import torch_reference as ref  # noqa: E402
from support.paths import TESTS  # noqa: E402
from support.tiny_weights import FILENAME, NAME, SPEC, entry, isolate, saved  # noqa: E402
from support.trees import assert_trees_equal, numpy_init  # noqa: E402
from support.weights_server import WeightsServer, forbid_internet  # noqa: E402

import edsr_jax  # noqa: E402
from edsr_jax import models, train  # noqa: E402
from edsr_jax.checkpoint.exported import save_model  # noqa: E402
from edsr_jax.errors import UserError  # noqa: E402
from edsr_jax.interop import pretrained, published  # noqa: E402
from edsr_jax.interop import torch as torch_interop  # noqa: E402

OFFICIAL = f"/official/{FILENAME}"
# Outputs on [0, 255] against the PyTorch reference (tests/interop/test_torch.py's tolerance).
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def net():
    return ref.randomized("edsr", 2, 1, 8)


@pytest.fixture(scope="module")
def data(net) -> bytes:
    """The tiny EDSR x2 as the 2018 official files are stored (torch.save's legacy format)."""
    return saved(net)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder for the test; no offline mode, no mirror, no internet."""
    isolate(monkeypatch, tmp_path / "cache")
    forbid_internet(monkeypatch)
    return tmp_path / "cache"


@pytest.fixture
def server(data):
    with WeightsServer() as s:
        s.files[OFFICIAL] = data
        yield s


def _cache_contents(cache) -> list[str]:
    return sorted(os.listdir(cache)) if cache.exists() else []


# --- download, cache, load ------------------------------------------------------------------------


def test_first_use_downloads_converts_and_caches_and_the_next_makes_no_request(cache, server, data, net):
    with published.registered(entry(data, server.url(OFFICIAL))):
        folder = pretrained.fetch(NAME, progress=False)
        assert server.requests == [OFFICIAL]
        assert folder == str(cache / NAME) and _cache_contents(cache) == [NAME]  # no download left over
        model, variables = edsr_jax.load_model(NAME)
        assert pretrained.fetch(NAME) == folder
        model_again, _ = pretrained.load_pretrained(NAME)
    assert server.requests == [OFFICIAL]  # the cache answered the later calls
    assert models.model_spec(model) == models.model_spec(model_again) == SPEC
    lr = np.random.RandomState(0).uniform(0, 255, (1, 7, 5, 3)).astype(np.float32)
    got = np.asarray(model.apply(variables, jnp.asarray(lr)))
    np.testing.assert_allclose(got, ref.run(net, lr), rtol=0, atol=TOLERANCE)
    metadata = json.loads((cache / NAME / "model.json").read_text())["metadata"]
    assert metadata["source_sha256"] == hashlib.sha256(data).hexdigest()
    assert (metadata["pretrained"], metadata["source_url"]) == (NAME, server.url(OFFICIAL))


@pytest.mark.parametrize("expected", ["0" * 64, "deadbeef"], ids=["full_hash", "name_prefix"])
def test_a_hash_mismatch_names_both_hashes_and_caches_nothing(cache, server, data, expected):
    received = hashlib.sha256(data).hexdigest()
    with published.registered(entry(data, server.url(OFFICIAL), sha256=expected)):
        with pytest.raises(UserError) as error:
            pretrained.fetch(NAME, progress=False)
    message = str(error.value)
    assert f"{FILENAME} from {server.url(OFFICIAL)} has sha256 {received}, expected {expected}" in message
    assert "the download was deleted and nothing was cached" in message
    assert _cache_contents(cache) == []


def test_an_interrupted_transfer_caches_nothing_and_the_next_call_succeeds(cache, server, data):
    server.cut_once[OFFICIAL] = len(data) // 2
    with published.registered(entry(data, server.url(OFFICIAL))):
        with pytest.raises(UserError, match=rf"could not download {NAME}: {server.url(OFFICIAL)}: "):
            pretrained.fetch(NAME, progress=False)
        assert _cache_contents(cache) == []
        assert pretrained.fetch(NAME, progress=False) == str(cache / NAME)
    assert server.requests == [OFFICIAL, OFFICIAL]


def test_offline_without_a_cache_fails_at_once_naming_the_model_and_where_it_would_be(
    cache, server, data, monkeypatch
):
    monkeypatch.setenv(pretrained.OFFLINE_ENV, "1")
    with published.registered(entry(data, server.url(OFFICIAL))):
        with pytest.raises(
            UserError, match=rf"{NAME} is not cached at {cache / NAME}, and EDSR_JAX_OFFLINE is set"
        ):
            pretrained.fetch(NAME)
    assert server.requests == [] and _cache_contents(cache) == []


def test_offline_with_a_cache_loads_it_without_a_request(cache, server, data, monkeypatch):
    with published.registered(entry(data, server.url(OFFICIAL))):
        pretrained.fetch(NAME, progress=False)
        monkeypatch.setenv(pretrained.OFFLINE_ENV, "1")
        model, _ = edsr_jax.load_model(NAME)
    assert server.requests == [OFFICIAL] and model.scale == 2


def test_the_mirror_is_asked_first_for_each_file_by_its_published_name(cache, server, data, monkeypatch):
    mirrored = f"/mirror/{FILENAME}"
    monkeypatch.setenv(pretrained.MIRROR_ENV, server.url("/mirror"))
    with published.registered(entry(data, server.url(OFFICIAL))):
        pretrained.fetch(NAME, progress=False)  # the mirror lacks it: 404, then the official source
        assert server.requests == [mirrored, OFFICIAL]
        server.files[mirrored] = data
        shutil.rmtree(cache / NAME)
        pretrained.fetch(NAME, progress=False)
    assert server.requests == [mirrored, OFFICIAL, mirrored]


def test_a_folder_mirror_needs_no_network_even_offline(cache, server, data, tmp_path, monkeypatch):
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / FILENAME).write_bytes(data)
    monkeypatch.setenv(pretrained.MIRROR_ENV, (tmp_path / "mirror").as_uri())
    monkeypatch.setenv(pretrained.OFFLINE_ENV, "1")
    with published.registered(entry(data, server.url(OFFICIAL))):
        assert pretrained.fetch(NAME) == str(cache / NAME)
    assert server.requests == []


def test_two_processes_fetching_at_once_both_get_the_model_downloaded_once(cache, server, data, tmp_path):
    server.delay_s = 1.0  # (the first download is still running when the second process asks)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    job = {"name": NAME, "spec": SPEC, "filename": FILENAME, "sha256": hashlib.sha256(data).hexdigest()}
    job.update(url=server.url(OFFICIAL), barrier=str(barrier), count=2)
    worker = os.path.join(TESTS, "support", "fetch_worker.py")
    env = {**os.environ, "PYTHONPATH": TESTS, pretrained.CACHE_ENV: str(cache)}
    runs = [
        subprocess.Popen(
            [sys.executable, worker, json.dumps(job)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0].strip() for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    assert outputs == [str(cache / NAME)] * 2
    assert _cache_contents(cache) == [NAME]  # one model, no temporary folder left
    assert server.requests == [OFFICIAL]  # the second process waited for the first one's result
    assert edsr_jax.load_model(str(cache / NAME))[0].scale == 2


# --- files that are not the weights ---------------------------------------------------------------


LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"ab" * 32 + b"\nsize 5912\n"
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Quota exceeded</title></head><body></body></html>"


@pytest.mark.parametrize(
    "served, named",
    [
        (LFS_POINTER, rf"is a Git LFS pointer \({len(LFS_POINTER)} bytes\) to a 5,912-byte file"),
        (HTML_PAGE, rf"is an HTML page \({len(HTML_PAGE)} bytes, title 'Quota exceeded'\)"),
    ],
    ids=["lfs_pointer", "html_page"],
)
def test_lfs_pointers_and_web_pages_are_named_and_the_next_source_is_tried(
    cache, server, data, served, named
):
    server.files["/pointer/x.pt"] = served
    with published.registered(entry(data, server.url("/pointer/x.pt"))):
        with pytest.raises(
            UserError, match=rf"could not download {NAME}: {server.url('/pointer/x.pt')} {named}"
        ):
            pretrained.fetch(NAME, progress=False)
        assert _cache_contents(cache) == []
    with published.registered(entry(data, server.url("/pointer/x.pt"), server.url(OFFICIAL))):
        assert pretrained.fetch(NAME, progress=False) == str(cache / NAME)


def test_a_file_of_another_architecture_is_named_and_nothing_cached(cache, server):
    x3 = saved(ref.randomized("edsr", 3, 1, 8))
    server.files[OFFICIAL] = x3
    with published.registered(entry(x3, server.url(OFFICIAL))):
        with pytest.raises(
            UserError, match=rf"{FILENAME} holds an EDSR x3 B1 F8, not the EDSR x2 B1 F8 that {NAME} is"
        ):
            pretrained.fetch(NAME, progress=False)
    assert _cache_contents(cache) == []


# --- names ----------------------------------------------------------------------------------------


def test_an_unknown_name_suggests_the_nearest_and_lists_the_known(cache):
    expected = r"no published model named 'edsr_x5'; did you mean edsr_x4 or edsr_x3 or edsr_x2\? known: e"
    with pytest.raises(UserError, match=expected):
        pretrained.fetch("edsr_x5")


def test_a_path_of_that_name_wins_over_the_published_model(cache, tmp_path, monkeypatch, data):
    monkeypatch.chdir(tmp_path)
    model = models.EDSR(scale=3, num_blocks=1, num_features=4)
    save_model(tmp_path / NAME, model, numpy_init(model))
    with published.registered(entry(data, "http://127.0.0.1:9/never")):
        assert edsr_jax.load_model(NAME)[0].scale == 3  # the folder, no download


def test_config_init_from_takes_a_published_name(cache, server, data, net):
    with published.registered(entry(data, server.url(OFFICIAL))):
        params, note = train.load_init_params(NAME)
    state_dict = {k: v.numpy() for k, v in net.state_dict().items()}
    assert_trees_equal(params, torch_interop.convert_state_dict(state_dict)[1]["params"])
    assert note == "a published model" and server.requests == [OFFICIAL]


def test_registered_entries_last_only_for_their_block(data):
    before = dict(published.REGISTRY)
    with published.registered(entry(data, "http://127.0.0.1:9/x", name="edsr_x2")):
        assert published.lookup("edsr_x2").spec == SPEC
    assert published.lookup("edsr_x2").spec["num_features"] == 256
    assert NAME not in published.entries() and dict(published.REGISTRY) == before


# --- the registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(published.REGISTRY))
def test_registry_entries_are_consistent(name):
    item = published.REGISTRY[name]
    official = item.files[0]
    assert official.urls[0] == published.OFFICIAL_URL + official.filename  # official first
    assert official.filename.startswith(f"{name}-") and official.layout == "official"
    for file in item.files:
        prefix = file.filename.rsplit("-", 1)[1].split(".")[0]
        assert len(prefix) == 8 and file.sha256.startswith(prefix)  # the torch.hub naming convention
        assert len(file.sha256) in (8, 64) and int(file.sha256, 16) >= 0
    model = models.from_spec(dict(item.spec))
    assert sum(int(np.prod(s)) for s in models.param_shapes(model).values()) == item.parameters
    assert sorted(item.div2k_psnr) == list(model.scales)
