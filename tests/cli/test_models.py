"""``edsr-jax models``: the published models with their numbers and whether each is cached;
``--fetch`` puts models into the cache ahead of time (for offline jobs)."""

import pytest
from support.optional import import_torch

torch = import_torch()  # (the synthetic published file is made with PyTorch)

from support import torch_reference as ref  # noqa: E402
from support.tiny_weights import NAME, entry, isolate, saved  # noqa: E402
from support.weights_server import WeightsServer, forbid_internet  # noqa: E402

from edsr_jax import cli  # noqa: E402
from edsr_jax.interop import pretrained, published  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path / "cache")
    forbid_internet(monkeypatch)
    return tmp_path / "cache"


def _rows(out: str) -> dict[str, str]:
    return {line.split()[0]: line for line in out.splitlines()[1:] if line and not line.startswith("cache:")}


def test_models_lists_the_registry_with_numbers_and_fetch_caches(cache, capsys):
    data = saved(ref.randomized("edsr", 2, 1, 8))
    with WeightsServer() as server, published.registered(entry(data, server.url("/w.pt"))):
        server.files["/w.pt"] = data
        assert cli.main(["models"]) == 0
        rows = _rows(capsys.readouterr().out)
        assert set(published.REGISTRY) | {NAME} == set(rows)
        assert rows["edsr_x4"].split()[1:] == (
            "EDSR x4 B32 F256 43.09M 172.4 MB cv.snu.ac.kr, drive.google.com x4 29.25 no".split()
        )
        assert "x2 34.92 / x3 31.22 / x4 29.24" in rows["mdsr"] and rows[NAME].endswith(" no")

        assert cli.main(["models", "--fetch", NAME, "--no-progress"]) == 0
        assert f"{NAME}: {cache / NAME}" in capsys.readouterr().out
        assert cli.main(["models"]) == 0
        out = capsys.readouterr().out
    assert _rows(out)[NAME].endswith(" yes") and f"cache: {cache} (set {pretrained.CACHE_ENV}" in out
    assert server.requests == ["/w.pt"]
