"""Synthetic published models for the tests: a tiny EDSR in the official layout, saved as the 2018
official files are (torch.save's legacy format), and registry entries that point at it."""

from __future__ import annotations

import hashlib
import io

from edsr_jax.interop import published

NAME = "tiny_x2"
FILENAME = "tiny_x2-0123abcd.pt"
SPEC = {"arch": "edsr", "scale": 2, "num_blocks": 1, "num_features": 8, "res_scale": 1.0}
PARAMETERS = 4_531  # of SPEC


def saved(net) -> bytes:
    """``net.state_dict()`` as torch.save writes it in the legacy format."""
    import torch

    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def entry(data: bytes, *urls: str, sha256: str | None = None, name: str = NAME, filename: str = FILENAME):
    """A registry entry for ``data`` (an EDSR of :data:`SPEC`) served at ``urls``; its hash is that
    of ``data`` unless ``sha256`` says otherwise."""
    weights = published.WeightsFile(filename, sha256 or hashlib.sha256(data).hexdigest(), urls)
    return published.Pretrained(name, SPEC, PARAMETERS, (weights,), {2: 30.0})


def isolate(monkeypatch, cache_folder) -> None:
    """Points the model cache at ``cache_folder`` and clears the offline and mirror settings."""
    from edsr_jax.interop import pretrained

    monkeypatch.setenv(pretrained.CACHE_ENV, str(cache_folder))
    monkeypatch.delenv(pretrained.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(pretrained.MIRROR_ENV, raising=False)
