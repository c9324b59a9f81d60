"""``edsr-jax train --config NAME|FILE --workdir W [--config.field=value ...]``.

Rerunning on the same workdir resumes from its latest complete checkpoint; a folder holding an
exported model or other files (without ``--allow-other-files``) is refused.
"""

from __future__ import annotations

from edsr_jax.cli import config_flags
from edsr_jax.errors import UserError

HELP = "train EDSR/MDSR from a config (rerun on the same workdir to resume)"


def add_arguments(parser) -> None:
    config_flags.add_config_flags(parser)
    parser.add_argument("--workdir", required=True, help="directory for checkpoints, logs and model.json")
    parser.add_argument(
        "--allow-other-files",
        action="store_true",
        help="train in a WORKDIR that holds files of no training run (they are left alone); "
        "an exported model's folder is refused anyway",
    )
    group = parser.add_argument_group(
        "multi-host (one process per host or per accelerator; every process runs the same command)",
        "Without these flags the settings come from the environment when a launcher sets them "
        "(SLURM srun, Open MPI, GKE TPU, JAX_COORDINATOR_ADDRESS); EDSR_JAX_DISTRIBUTED=0 turns that off.",
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() "
        "(needed on Cloud TPU VM slices, whose settings JAX reads from the TPU metadata)",
    )
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0 (reachable by all)")
    group.add_argument("--num-processes", type=int, metavar="N", help="number of processes")
    group.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    group.add_argument(
        "--local-devices",
        metavar="IDS",
        help="local accelerator ids this process uses, "
        "e.g. 0,1 (default: all it sees; same as JAX_LOCAL_DEVICE_IDS)",
    )
    parser.epilog = (
        "Override any config field with --config.FIELD=VALUE, e.g. --config.batch_size=32 "
        "--config.model.num_blocks=32 --config.scales=2,3,4"
    )


def parse_device_ids(text: str | None) -> list[int] | None:
    """``"0,1"`` -> ``[0, 1]``; None stays None; UserError for anything else."""
    if text is None:
        return None
    try:
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        ids = []
    if not ids or min(ids) < 0:
        raise UserError(f"--local-devices must be comma-separated device ids such as 0,1, got {text!r}")
    return ids


def run(args) -> int:
    config = config_flags.apply_overrides(
        config_flags.load_config(args.config), config_flags.split_overrides(args.overrides)
    )
    from edsr_jax import compile_cache, sharding, storage, train

    compile_cache.enable(str(config.compilation_cache_dir))  # (this process's; before the first compile)

    sharding.maybe_initialize_distributed(
        bool(getattr(args, "distributed", False) or config.distributed),
        coordinator_address=getattr(args, "coordinator", None),
        num_processes=getattr(args, "num_processes", None),
        process_id=getattr(args, "process_id", None),
        local_device_ids=parse_device_ids(getattr(args, "local_devices", None)),
    )

    state = train.train_and_evaluate(config, args.workdir, allow_other_files=args.allow_other_files)
    import jax

    if jax.process_index() == 0:
        print(f"done: step {int(state.step)} in {storage.location(args.workdir, 'workdir')}")
    return 0
