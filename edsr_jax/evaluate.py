"""The one scoring loop: samples -> per-image and mean PSNR/SSIM under the paper's protocol.

``edsr-jax eval`` (:func:`evaluate_sets`), training's :class:`Validation` and the demo all run
:func:`evaluate_images`. Scores are float64 on the host, or float32 on the device so validation
never waits for the host (the difference: RESULTS.md "Validation off the critical path").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from edsr_jax import inference
from edsr_jax.data import benchmarks
from edsr_jax.data.benchmarks import Sample
from edsr_jax.errors import UserError
from edsr_jax.imaging import metrics, resize

# LR uint8 (H, W, 3) -> SR (H*s, W*s, 3): an inference.Upscaler, bicubic(s), or any such function.
SuperResolve = Callable[[np.ndarray], np.ndarray]
# Called with each sample and the quantised (uint8) output that was scored.
OnOutput = Callable[[Sample, np.ndarray], None]
# (sample, SR output, scale, protocol) -> (psnr, ssim).
Scorer = Callable[[Sample, np.ndarray, int, metrics.Protocol], tuple[float, float]]


def host_scorer(sample: Sample, sr, scale: int, protocol: metrics.Protocol) -> tuple[float, float]:
    """The protocol in float64 on the host (``edsr-jax eval``'s numbers)."""
    return metrics.evaluate_pair(np.asarray(sr), sample.hr, scale=scale, protocol=protocol)


class DeviceScorer:
    """The protocol in float32 on the SR output's device; each HR sent once, each shape compiled once."""

    def __init__(self):
        import jax

        self._hr: dict[int, object] = {}
        self._scores = jax.jit(
            lambda sr, hr, scale, y_only, shave: (
                metrics.psnr(sr, hr, scale=scale, y_only=y_only, shave=shave),
                metrics.ssim(sr, hr, scale=scale, y_only=y_only, shave=shave),
            ),
            static_argnums=(2, 3, 4),
        )

    def __call__(self, sample: Sample, sr, scale: int, protocol: metrics.Protocol) -> tuple[float, float]:
        import jax

        key = id(sample.hr)
        if key not in self._hr:
            self._hr[key] = (sample.hr, jax.device_put(sample.hr, next(iter(sr.devices()))))
        p, s = self._scores(sr, self._hr[key][1], scale, protocol.y_only, protocol.shave(scale))
        return float(p), float(s)


def bicubic(scale: int, *, boundary: str = "replicate") -> SuperResolve:
    """The paper's Bicubic row: MATLAB ``imresize(lr, scale)`` as an upscale function."""

    def upscale(lr: np.ndarray) -> np.ndarray:
        return resize.imresize(lr, scale, boundary=boundary)

    return upscale


def evaluate_images(
    upscale_fn: SuperResolve,
    samples: Sequence[Sample],
    *,
    scale: int,
    protocol: metrics.Protocol = metrics.BENCHMARK,
    progress: Callable[[], None] | None = None,
    on_output: OnOutput | None = None,
    scorer: Scorer = host_scorer,
) -> dict:
    """Upscales every sample's LR and scores it against its HR.

    ``upscale_fn`` maps LR uint8 (h, w, 3) to SR (h*s, w*s, 3) in [0, 255] (quantised before scoring);
    ``on_output`` gets each sample and the uint8 output scored; ``scorer`` is :func:`host_scorer` or a
    :class:`DeviceScorer` for device outputs. Returns the ``"psnr"`` and ``"ssim"`` means, the
    ``"seconds"`` spent upscaling, and per image ``{"name", "psnr", "ssim"}`` in ``"images"``.

    Raises:
      UserError: no samples, or an SR output of the wrong shape.
    """
    if not samples:
        raise UserError("nothing to evaluate: the sample list is empty")
    images, seconds = [], 0.0
    # An Upscaler on several devices keeps one image per device in flight (its ``map``).
    mapper = getattr(upscale_fn, "map", None)
    outputs = mapper(s.lr for s in samples) if mapper else (upscale_fn(s.lr) for s in samples)
    for sample in samples:
        start = time.perf_counter()
        sr = next(outputs)
        if scorer is host_scorer:
            sr = np.asarray(sr)
        seconds += time.perf_counter() - start
        if tuple(sr.shape) != sample.hr.shape:
            raise UserError(
                f"{sample.name}: the upscaler returned shape {tuple(sr.shape)}, expected {sample.hr.shape} "
                f"(LR {sample.lr.shape} x{scale})"
            )
        p, s = scorer(sample, sr, scale, protocol)
        images.append({"name": sample.name, "psnr": p, "ssim": s})
        if on_output is not None:
            on_output(sample, metrics.quantize_uint8(sr))
        if progress is not None:
            progress()
    return {
        "psnr": float(np.mean([i["psnr"] for i in images])),
        "ssim": float(np.mean([i["ssim"] for i in images])),
        "seconds": seconds,
        "images": images,
    }


def evaluate_sets(
    super_resolve_for_scale: Callable[[int], SuperResolve],
    data_dir: str,
    datasets: Sequence[str],
    scales: Sequence[int],
    *,
    protocol: metrics.Protocol | None = None,
    boundary: str = "replicate",
    progress_factory: Callable[[int], Callable[[], None]] | None = None,
    on_result: Callable[[dict], None] | None = None,
    skip_bad: bool = False,
    on_output: Callable[[str, int, Sample, np.ndarray], None] | None = None,
) -> list[dict]:
    """One result dict per (dataset, scale) of sets in the EDSR layout, as :func:`evaluate_images` plus
    ``dataset``, ``scale``, ``protocol`` and ``skipped``.

    Every set is checked before any computation. ``protocol`` None picks per set (DIV2K*: RGB, others
    Y); ``skip_bad`` scores the readable images and lists the others; ``on_output`` gets
    ``(dataset, scale, sample, uint8 output)``. UserError names a missing set or unreadable image.
    """
    counts = {name: len(benchmarks.hr_files(data_dir, name)) for name in datasets}  # fail fast
    progress = progress_factory(sum(counts.values()) * len(scales)) if progress_factory else None
    results = []
    for s in scales:
        upscale_fn = super_resolve_for_scale(s)
        for name in datasets:
            skipped = [] if skip_bad else None
            samples = benchmarks.load_benchmark(data_dir, name, s, boundary=boundary, skipped=skipped)
            if progress is not None:
                for _ in skipped or ():
                    progress()
            proto = protocol or metrics.protocol_for_dataset(name)
            hook = (
                None if on_output is None else (lambda sample, sr, n=name, s=s: on_output(n, s, sample, sr))
            )
            res = evaluate_images(
                upscale_fn, samples, scale=s, protocol=proto, progress=progress, on_output=hook
            )
            res = {"dataset": name, "scale": int(s), "protocol": proto.name, **res, "skipped": skipped or []}
            results.append(res)
            if on_result is not None:
                on_result(res)
    return results


class Validation:
    """Training's validation: fixed samples rescored with new variables, compiled once, scored on device."""

    def __init__(
        self,
        model,
        sets: Mapping[str, tuple[metrics.Protocol, Mapping[int, Sequence[Sample]]]],
        *,
        self_ensemble: bool = False,
    ):
        """``sets``: ``{prefix: (protocol, {scale: samples})}``."""
        self.model, self.sets, self.self_ensemble = model, sets, self_ensemble
        self._upscalers: dict[int, inference.Upscaler] = {}
        self._scorer = DeviceScorer()

    def _upscaler(self, scale: int, variables) -> inference.Upscaler:
        if scale not in self._upscalers:
            self._upscalers[scale] = inference.make_upscaler(
                self.model, variables, scale, self_ensemble=self.self_ensemble
            )
        else:
            self._upscalers[scale].set_variables(variables)
        return self._upscalers[scale]

    def __call__(self, variables: dict) -> tuple[dict[str, float], dict[tuple[str, int], np.ndarray]]:
        """``({"<prefix>/psnr_x<s>": dB, ...}, {(prefix, s): uint8 first output})`` of ``variables``."""
        scalars, firsts = {}, {}
        for prefix, (protocol, by_scale) in self.sets.items():
            for scale, samples in by_scale.items():
                if not samples:
                    continue
                up = self._upscaler(scale, variables)

                def upscale(lr, up=up, key=(prefix, scale)):
                    out = up.on_device(lr)
                    firsts.setdefault(key, out)
                    return out

                result = evaluate_images(
                    upscale, samples, scale=scale, protocol=protocol, scorer=self._scorer
                )
                scalars[f"{prefix}/psnr_x{scale}"] = result["psnr"]
                scalars[f"{prefix}/ssim_x{scale}"] = result["ssim"]
        return scalars, {key: metrics.quantize_uint8(out) for key, out in firsts.items()}


def format_table(results: Sequence[dict]) -> str:
    """A plain-text table: dataset, scale, PSNR, SSIM, images, seconds; then any skipped files."""
    lines = [f"{'dataset':<12} {'scale':>5} {'PSNR':>8} {'SSIM':>7} {'images':>6} {'seconds':>8}"]
    notes = []
    for r in results:
        skipped = r.get("skipped") or []
        count = f"{len(r['images'])}" + (f" (+{len(skipped)} skipped)" if skipped else "")
        lines.append(
            f"{r['dataset']:<12} {'x' + str(r['scale']):>5} {r['psnr']:>8.2f} {r['ssim']:>7.4f} "
            f"{count:>6} {r['seconds']:>8.1f}"
        )
        notes += [f"skipped {r['dataset']} x{r['scale']} {s['name']}: {s['error']}" for s in skipped]
    return "\n".join(lines + notes)
