"""Published EDSR/MDSR weights by name: download, verify (SHA-256), convert, cache, load.

Environment: ``EDSR_JAX_CACHE`` (the cache folder), ``EDSR_JAX_OFFLINE=1`` (no network) and
``EDSR_JAX_WEIGHTS_MIRROR`` (a URL or folder tried first). A hash mismatch caches nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from edsr_jax.errors import UserError, listing, quote
from edsr_jax.interop.published import Pretrained, WeightsFile, is_model_name, lookup

CACHE_ENV = "EDSR_JAX_CACHE"
OFFLINE_ENV = "EDSR_JAX_OFFLINE"
MIRROR_ENV = "EDSR_JAX_WEIGHTS_MIRROR"
# Values of OFFLINE_ENV that leave the network on.
FALSE_VALUES = ("", "0", "false", "no", "off")
# Bytes per read and write of a download, and seconds a connection may stay silent.
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60


def cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """The folder of cached models: ``$EDSR_JAX_CACHE``, else ``$XDG_CACHE_HOME/edsr-jax/models``."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_ENV):
        return os.path.abspath(os.path.expanduser(env[CACHE_ENV]))
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "edsr-jax", "models")


def cached_path(name: str) -> str | None:
    """The cached model folder of ``name``, or None when it is not (completely) cached."""
    from edsr_jax.checkpoint import layout

    folder = os.path.join(cache_dir(), name)
    return folder if os.path.isfile(os.path.join(folder, layout.MODEL_JSON)) else None


def is_offline(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``EDSR_JAX_OFFLINE`` forbids the network."""
    env = os.environ if environ is None else environ
    return env.get(OFFLINE_ENV, "").strip().lower() not in FALSE_VALUES


@contextlib.contextmanager
def _cache_lock(folder: str) -> Iterator[None]:
    """An exclusive lock on the cache folder (none where the file system lacks one)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class _Unavailable(Exception):
    """A source that did not give the file (unreachable, an HTTP error, a web page instead)."""


def _mirror_url(filename: str, environ: Mapping[str, str]) -> str | None:
    """Where the mirror (if one is set) would hold ``filename``."""
    mirror = environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return None
    scheme = urllib.parse.urlsplit(mirror).scheme
    if scheme in ("http", "https", "file"):
        return mirror.rstrip("/") + "/" + urllib.parse.quote(filename)
    if not scheme and os.path.isdir(os.path.expanduser(mirror)):
        return pathlib.Path(os.path.expanduser(mirror), filename).absolute().as_uri()
    raise UserError(f"{MIRROR_ENV}={mirror!r} is neither an http(s):// or file:// URL nor an existing folder")


def _candidates(entry: Pretrained, environ: Mapping[str, str]) -> list[tuple[WeightsFile, str]]:
    """``(file, url)`` in the order tried: the mirror for every file, then each file's sources."""
    mirrored = [(f, url) for f in entry.files if (url := _mirror_url(f.filename, environ))]
    sources = [(f, url) for f in entry.files for url in f.urls]
    if is_offline(environ):
        return [(f, url) for f, url in mirrored if url.startswith("file:")]
    return mirrored + sources


def _transfer(url: str, destination: str, progress: bool) -> None:
    """Copies ``url`` (http(s) or file) to ``destination``; raises _Unavailable when it cannot."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        source = urllib.request.url2pathname(parts.path)
        if not os.path.isfile(source):
            raise _Unavailable(f"{url}: no such file")
        shutil.copyfile(source, destination)
        return
    import pooch
    import requests
    from tqdm import tqdm

    name = os.path.basename(destination)
    # total=1: pooch uses the bar only if truthy, then sets the total from Content-Length.
    bar = tqdm(
        desc=name, total=1, unit="B", unit_scale=True, unit_divisor=1024, disable=None if progress else True
    )
    try:
        download = pooch.HTTPDownloader(progressbar=bar, chunk_size=CHUNK_BYTES, timeout=TIMEOUT_S)
        download(url, destination, None)
    except requests.HTTPError as e:
        raise _Unavailable(f"{url}: HTTP {e.response.status_code}") from None
    except requests.RequestException as e:
        raise _Unavailable(f"{url}: {quote(e)}") from None
    finally:
        bar.close()


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: str, file: WeightsFile, url: str) -> str:
    """The SHA-256 of the published file; _Unavailable for a web page, UserError for another hash."""
    from edsr_jax.interop import torch_file

    digest, size = _sha256(path), os.path.getsize(path)
    if digest.startswith(file.sha256) and file.size in (None, size):
        return digest
    with open(path, "rb") as f:
        other = torch_file.describe_other_file(f.read(torch_file.SNIFF_BYTES), size)
    if other is not None:
        raise _Unavailable(f"{url} {other}")
    full = len(file.sha256) == 64
    expected = f"{file.sha256} (the registry's)" if full else f"{file.sha256}... (its name's)"
    short = f" ({size:,} of {file.size:,} bytes: cut short?)" if file.size and size < file.size else ""
    raise UserError(
        f"{file.filename} from {url} has sha256 {digest}{short}, expected {expected}: the download was "
        "deleted and nothing was cached"
    )


def _convert(entry: Pretrained, path: str, file: WeightsFile):
    """``(model, variables)`` of a verified file, checked to be the entry's architecture."""
    from edsr_jax.interop import torch as torch_interop

    state_dict, _ = torch_interop.load_torch_checkpoint(path)
    if file.layout == "basicsr":
        state_dict = torch_interop.basicsr_to_official(state_dict)
    found = torch_interop.infer_spec(state_dict)
    expected = dict(entry.spec)
    if {**found, "res_scale": None} != {**expected, "res_scale": None}:
        raise UserError(
            f"{file.filename} holds an {torch_interop.describe_spec(found)}, not the "
            f"{torch_interop.describe_spec(expected)} that {entry.name} is"
        )
    return torch_interop.convert_state_dict(state_dict, expected)


def _download(entry: Pretrained, folder: str, workdir: str, progress: bool, log) -> None:
    """Downloads, verifies and converts the first file a source gives; saves the model to ``folder``."""
    from edsr_jax.checkpoint import exported

    failures = []
    for file, url in _candidates(entry, os.environ):
        path = os.path.join(workdir, file.filename)
        log(f"downloading {entry.name} from {url}")
        try:
            _transfer(url, path, progress)
            digest = _verify(path, file, url)
        except _Unavailable as e:
            failures.append(str(e))
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            continue
        model, variables = _convert(entry, path, file)
        metadata = {
            "pretrained": entry.name,
            "source": file.filename,
            "source_url": url,
            "source_sha256": digest,
            "layout": file.layout,
            "licence": entry.licence,
            "converted_by": f"edsr-jax {_version()}",
        }
        try:
            exported.save_model(folder, model, variables, metadata=metadata)
        except UserError:
            if not cached_path(entry.name):  # another process saved it first
                raise
        return
    if is_offline():
        tried = f"; the mirror: {'; '.join(failures)}" if failures else ""
        raise UserError(
            f"{entry.name} is not cached at {folder}, and {OFFLINE_ENV} is set: nothing is downloaded "
            f"(run `edsr-jax models --fetch {entry.name}` where there is a network and copy the folder "
            f"there, or set {MIRROR_ENV} to a folder holding {entry.files[0].filename}){tried}"
        )
    raise UserError(f"could not download {entry.name}: {'; '.join(failures)}")


def _version() -> str:
    """The installed edsr-jax version (from metadata: the package root imports this module)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("edsr-jax")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def fetch(name: str, *, progress: bool = True, log: Callable[[str], None] | None = None) -> str:
    """The cached model folder of a published model, downloaded, verified and converted on first use.

    Raises:
      UserError: an unknown name, offline and not cached, no source gave the file, a hash mismatch,
        or a file of another architecture.
    """
    entry = lookup(name)
    folder = os.path.join(cache_dir(), entry.name)
    if cached_path(entry.name):
        return folder
    root = os.path.dirname(folder)
    os.makedirs(root, exist_ok=True)
    with _cache_lock(root):
        if not cached_path(entry.name):
            with tempfile.TemporaryDirectory(prefix=f".{entry.name}.download-", dir=root) as workdir:
                _download(entry, folder, workdir, progress, log or (lambda _: None))
    return folder


def load_pretrained(name: str, *, dtype: Any = None, progress: bool = True):
    """``(model, variables)`` of a published model (:func:`fetch`, then ``load_model``)."""
    from edsr_jax.checkpoint import exported

    return exported.load_model(fetch(name, progress=progress), dtype=dtype)


def load_model(
    path_or_name: str | os.PathLike, *, dtype: Any = None, which: str | int = "latest", weights: str = "auto"
):
    """``(model, variables)`` of an exported model, a training workdir or a published model's name.

    Arguments as :func:`edsr_jax.checkpoint.exported.load_model`; a name is looked up only when no
    file or folder of that name exists.
    """
    if is_model_name(path_or_name):
        return load_pretrained(path_or_name, dtype=dtype)
    from edsr_jax.checkpoint import exported

    return exported.load_model(path_or_name, dtype=dtype, which=which, weights=weights)


def describe(entry: Pretrained) -> dict[str, Any]:
    """One row of ``edsr-jax models``: name, network, parameters, size, source, PSNR, cached."""
    from edsr_jax.interop import torch as torch_interop

    size = entry.files[0].size
    hosts = listing(list(dict.fromkeys(urllib.parse.urlsplit(u).netloc for f in entry.files for u in f.urls)))
    return {
        "name": entry.name,
        "network": torch_interop.describe_spec(dict(entry.spec)),
        "parameters": entry.parameters,
        "size": f"{size / 1e6:.1f} MB" if size else f"~{entry.parameters * 4 / 1e6:.1f} MB",
        "sources": hosts,
        "div2k_psnr": " / ".join(f"x{s} {p:.2f}" for s, p in sorted(entry.div2k_psnr.items())),
        "cached": bool(cached_path(entry.name)),
    }
