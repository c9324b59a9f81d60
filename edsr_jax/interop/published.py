"""The registry of published EDSR/MDSR weights: names, files, hashes, sources, architectures.

:data:`REGISTRY` never changes; tests and private models add entries with :func:`registered`.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import os
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from edsr_jax.errors import UserError

OFFICIAL_URL = "https://cv.snu.ac.kr/research/EDSR/models/"
# BasicSR's download script fetches its files from Google Drive by id.
DRIVE_URL = "https://drive.google.com/uc?export=download&id="
# cccv re-hosts BasicSR's EDSR_M files, with their full SHA-256.
CCCV_URL = "https://github.com/EutropicAI/cccv/releases/download/model_zoo/"
LICENCE = "MIT (EDSR-PyTorch)"


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """One published file: ``sha256`` is the full hash where known, else the 8-digit prefix in its name."""

    filename: str
    sha256: str
    urls: tuple[str, ...]
    size: int | None = None
    layout: str = "official"
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A published model; ``spec`` includes ``res_scale``, which is not in the weights."""

    name: str
    spec: Mapping[str, Any]
    parameters: int
    files: tuple[WeightsFile, ...]
    div2k_psnr: Mapping[int, float]
    licence: str = LICENCE


def _official(filename: str, size: int | None = None, sha256: str | None = None) -> WeightsFile:
    prefix = filename.rsplit("-", 1)[1].split(".")[0]
    if sha256 is not None and not sha256.startswith(prefix):
        raise ValueError(f"{filename}: sha256 {sha256} does not start with {prefix}")
    note = "full sha256 and size as issue 26 reports them; not recomputed here" if sha256 else ""
    return WeightsFile(filename, sha256 or prefix, (OFFICIAL_URL + filename,), size, note=note)


def _basicsr(filename: str, drive_id: str, sha256: str | None = None, cccv: str | None = None) -> WeightsFile:
    prefix = filename.rsplit("-", 1)[1].split(".")[0]
    urls = ((CCCV_URL + cccv,) if cccv else ()) + (DRIVE_URL + drive_id,)
    note = "BasicSR: 'converted directly from official released models'; not compared tensor by tensor"
    return WeightsFile(filename, sha256 or prefix, urls, layout="basicsr", note=note)


def _edsr(name, scale, blocks, features, res_scale, parameters, files, psnr) -> Pretrained:
    spec = {"arch": "edsr", "scale": scale, "num_blocks": blocks, "num_features": features}
    return Pretrained(name, MappingProxyType({**spec, "res_scale": res_scale}), parameters, files, psnr)


def _mdsr(name, blocks, parameters, files, psnr) -> Pretrained:
    spec = {"arch": "mdsr", "scales": [2, 3, 4], "num_blocks": blocks, "num_features": 64, "res_scale": 1.0}
    return Pretrained(name, MappingProxyType(spec), parameters, files, psnr)


# Sources: EDSR-PyTorch (URLs, parameter counts, PSNR), BasicSR's ModelZoo (names, Drive ids), cccv
# (EDSR_M hashes); full hashes of the official files: issue 26 (WeightsFile.note: what is unconfirmed).
_ENTRIES = (
    _edsr(
        "edsr_baseline_x2",
        2, 16, 64, 1.0, 1_369_859,
        (
            _official("edsr_baseline_x2-1bc95232.pt"),
            _basicsr(
                "EDSR_Mx2_f64b16_DIV2K_official-3ba7b086.pth",
                "1mREMGVDymId3NzIc2u90sl_X4-pb4ZcV",
                "3ba7b0861913de93740110738fb621410651897e391e8057b7b6104c4f999254",
                "EDSR_Mx2_f64b16_DIV2K_official_2x.pth",
            ),
        ),
        {2: 34.61},
    ),
    _edsr(
        "edsr_baseline_x3",
        3, 16, 64, 1.0, 1_554_499,
        (
            _official("edsr_baseline_x3-abf2a44e.pt"),
            _basicsr(
                "EDSR_Mx3_f64b16_DIV2K_official-6908f88a.pth",
                "1EriqQqlIiRyPbrYGBbwr_FZzvb3iwqz5",
                "6908f88a1be95e7112f480b7b1d9608ad83b4ffa0c227416a6376f6b036a77f3",
                "EDSR_Mx3_f64b16_DIV2K_official_3x.pth",
            ),
        ),
        {3: 30.92},
    ),
    _edsr(
        "edsr_baseline_x4",
        4, 16, 64, 1.0, 1_517_571,
        (
            _official("edsr_baseline_x4-6b446fab.pt"),
            _basicsr(
                "EDSR_Mx4_f64b16_DIV2K_official-0c287733.pth",
                "1bCK6cFYU01uJudLgUUe-jgx-tZ3ikOWn",
                "0c287733e70d1b8b8fc5885613ecbe451e5f3010bcae0307612ef5e4aa08dd5f",
                "EDSR_Mx4_f64b16_DIV2K_official_4x.pth",
            ),
        ),
        {4: 28.95},
    ),
    _edsr(
        "edsr_x2",
        2, 32, 256, 0.1, 40_729_603,
        (
            _official(
                "edsr_x2-0edfb8a3.pt",
                162_939_971,
                "0edfb8a3772c94485c939f81a8aeefe02cccdfbf45243c6d22b39c29eb7d46de",
            ),
            _basicsr("EDSR_Lx2_f256b32_DIV2K_official-be38e77d.pth", "15257lZCRZ0V6F9LzTyZFYbbPrqNjKyMU"),
        ),
        {2: 35.03},
    ),
    _edsr(
        "edsr_x3",
        3, 32, 256, 0.1, 43_680_003,
        (
            _official(
                "edsr_x3-ea3ef2c6.pt",
                174_741_571,
                "ea3ef2c6449845ac3bda7290480af76a53e5006beff60bf89c84ca62f986eeca",
            ),
            _basicsr("EDSR_Lx3_f256b32_DIV2K_official-3660f70d.pth", "18q_D434sLG_rAZeHGonAX8dkqjoyZ2su"),
        ),
        {3: 31.26},
    ),
    _edsr(
        "edsr_x4",
        4, 32, 256, 0.1, 43_089_923,
        (
            _official(
                "edsr_x4-4f62e9ef.pt",
                172_381_555,
                "4f62e9ef1a4ec6a7d3da4ed837116cec641e4e1566f98187151d813e83a0c1c8",
            ),
            _basicsr("EDSR_Lx4_f256b32_DIV2K_official-76ee1c8f.pth", "1GCi30YYCzgMCcgheGWGusP9aWKOAy5vl"),
        ),
        {4: 29.25},
    ),
    _mdsr(
        "mdsr_baseline",
        16, 3_227_203,
        (_official("mdsr_baseline-a00cab12.pt"),),
        {2: 34.63, 3: 30.94, 4: 28.97},
    ),
    _mdsr(
        "mdsr",
        80, 7_953_987,
        (
            _official(
                "mdsr-4a78bedf.pt",
                31_869_146,
                "4a78bedfdb8fb1ad81b4bce9e13a907c0355a2ab52adafe2da868f9bb9096311",
            ),
        ),
        {2: 34.92, 3: 31.22, 4: 29.24},
    ),
)  # fmt: skip
REGISTRY: Mapping[str, Pretrained] = MappingProxyType({entry.name: entry for entry in _ENTRIES})

# Entries added by `registered` for the current context.
_EXTRA: contextvars.ContextVar[Mapping[str, Pretrained]] = contextvars.ContextVar(
    "edsr_jax_pretrained_extra", default=MappingProxyType({})
)


@contextlib.contextmanager
def registered(*added: Pretrained) -> Iterator[None]:
    """Adds entries (replacing registry entries of the same name) inside the ``with`` block."""
    token = _EXTRA.set(MappingProxyType({**_EXTRA.get(), **{e.name: e for e in added}}))
    try:
        yield
    finally:
        _EXTRA.reset(token)


def entries() -> dict[str, Pretrained]:
    """The models that can be asked for by name: the registry and any :func:`registered` ones."""
    return {**REGISTRY, **_EXTRA.get()}


def lookup(name: str) -> Pretrained:
    """The entry of ``name``; UserError naming the nearest names for an unknown one."""
    known = entries()
    if name not in known:
        near = difflib.get_close_matches(str(name), known, n=3)
        hint = f"did you mean {' or '.join(near)}? " if near else ""
        raise UserError(f"no published model named {name!r}; {hint}known: {', '.join(known)}")
    return known[name]


def is_model_name(value: Any) -> bool:
    """Whether ``value`` names a published model and no file or folder of that name exists."""
    return isinstance(value, str) and value in entries() and not os.path.exists(value)
