"""``edsr-jax convert-torch FILE.pt --out DIR``: official PyTorch weights -> an edsr-jax model."""

from __future__ import annotations

import hashlib
import os

HELP = "convert official EDSR-PyTorch weights (.pt) into an edsr-jax model directory"

# Hex digits of the file's sha256 kept in the metadata and summary (the official names carry 8).
SHA256_PREFIX_CHARS = 16


def add_arguments(parser) -> None:
    parser.add_argument("file", metavar="FILE.pt", help="an official state dict, e.g. edsr_x2-0edfb8a3.pt")
    parser.add_argument("--out", required=True, metavar="DIR", help="the model directory to write")
    parser.add_argument(
        "--res-scale",
        type=float,
        default=None,
        help="residual scaling (cannot be read from weights; default: 0.1 for an EDSR with F >= 256, "
        "else 1.0)",
    )
    parser.add_argument(
        "--img-range",
        type=float,
        default=None,
        help="BasicSR checkpoints: the img_range the model was trained with (default: BasicSR's 255)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace the edsr-jax model already in DIR (nothing else)"
    )


def run(args) -> int:
    from edsr_jax import __version__, models, overwrite
    from edsr_jax.checkpoint import exported, layout
    from edsr_jax.errors import UserError
    from edsr_jax.interop import torch as convert

    overwrite.check_folder(args.out, layout.EXPORTED_MODEL, force=args.force)
    state_dict, wrapper = convert.load_torch_checkpoint(args.file)
    layout = "official EDSR-PyTorch"
    if convert.is_basicsr(state_dict):
        img_range = convert.BASICSR_IMG_RANGE if args.img_range is None else float(args.img_range)
        if img_range <= 0:
            raise UserError(f"--img-range must be positive, got {img_range}")
        state_dict = convert.basicsr_to_official(state_dict, img_range)
        took = {"params_ema": "params_ema (the EMA weights)", "params": "params (the file has no params_ema)"}
        layout = f"BasicSR, img_range {img_range:g}"
        print(f"BasicSR checkpoint: using {took.get(wrapper, wrapper or 'the plain state dict')}")
    elif args.img_range is not None:
        raise UserError("--img-range applies to BasicSR checkpoints; this file has the official layout")
    inferred = convert.infer_spec(state_dict)
    spec = dict(inferred)
    if args.res_scale is not None:
        spec["res_scale"] = float(args.res_scale)
    model, variables = convert.convert_state_dict(state_dict, spec)
    rgb_range, diagonals = convert.read_mean_shift(state_dict)
    rgb_std = [round(float(1 / d), 6) for d in diagonals["sub_mean"]]
    digest = _sha256(args.file)
    metadata = {
        "source": os.path.basename(args.file),
        "source_sha256_prefix": digest[:SHA256_PREFIX_CHARS],
        "inferred_spec": inferred,
        "layout": layout,
        "state_dict_key": wrapper,
        "res_scale_from": "inferred" if args.res_scale is None else "--res-scale",
        "mean_shift": {"rgb_range": rgb_range, "rgb_std": rgb_std},
        "converted_by": f"edsr-jax {__version__} convert-torch",
    }
    exported.save_model(args.out, model, variables, metadata=metadata, overwrite=args.force)
    scales = "/".join(f"x{s}" for s in model.scales)
    origin = "given" if args.res_scale is not None else "inferred; override with --res-scale"
    print(f"converted {os.path.basename(args.file)} (sha256 {digest[:SHA256_PREFIX_CHARS]}) -> {args.out}")
    print(
        f"  {spec['arch']} {scales}, B{model.num_blocks}, F{model.num_features}, "
        f"res_scale {model.res_scale:g} ({origin})"
    )
    print(f"  {models.count_params(variables['params']):,} parameters")
    if rgb_range != models.RGB_RANGE or rgb_std != [1.0, 1.0, 1.0]:
        print(
            f"  trained with rgb_range {rgb_range:g}, rgb_std {', '.join(f'{v:g}' for v in rgb_std)}: "
            "folded into the head and tail convs, so the model takes and gives [0, 255] (exact)"
        )
    return 0


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
