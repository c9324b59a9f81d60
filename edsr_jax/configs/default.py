"""Defaults shared by every configuration: the paper's recipe (Lim et al. 2017, Section 4).

As is, it trains the EDSR baseline x2 on DIV2K; the other configs override a few fields. E.g.

    edsr-jax train --config edsr_baseline_x2 --workdir runs/x2 --config.batch_size=32
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """The defaults: EDSR baseline x2 on DIV2K (TFDS), 300k steps, Adam 1e-4 halved every 2e5."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # seeds the initialisation and every training batch (batch k = f(seed, k))

    # Model (edsr_jax.models): "edsr" or "mdsr"; B residual blocks, F features, residual scaling.
    config.model = ml_collections.ConfigDict()
    config.model.arch = "edsr"  # "edsr", "mdsr" (every scale in config.scales) or "srresnet" (BN)
    config.model.num_blocks = 16  # B
    config.model.num_features = 64  # F
    config.model.res_scale = 1.0  # 0.1 for the full EDSR (B32, F256)
    config.precision = "auto"  # "fp32" (the paper), "tf32", "bf16", "auto" (bf16 on GPU/TPU): precision.py

    # Data (edsr_jax.data).
    config.scales = (2,)  # upscaling factors; one for EDSR, (2, 3, 4) for MDSR
    config.batch_size = 16  # global batch (all processes and devices together)
    config.patch_size = 48  # LR patch side (HR side = patch_size * scale)
    config.data = ml_collections.ConfigDict()
    config.data.source = "tfds"  # "tfds", "div2k_folder", "folder", "paired_folder" or "skimage"
    config.data.tfds_name = "div2k"  # TFDS builder; configs "{degradation}_x{scale}"
    config.data.data_dir = ""  # TFDS data dir, or the image folder for div2k_folder/folder
    config.data.degradation = "bicubic"  # "bicubic" or "unknown" (DIV2K track 2)
    config.data.train_range = (1, 800)  # DIV2K image numbers trained on (inclusive)
    config.data.val_range = (801, 810)  # DIV2K image numbers validated on (inclusive)
    config.data.cache_dir = ""  # decoded images as memory-mapped .npy files here ("" = in memory)
    config.data.skip_small = "error"  # images smaller than a patch: "error" or "skip"
    config.data.flat_patch_threshold = 0.0  # redraw LR patches with a lower std (0 = never)
    config.data.threads = 0  # host threads that build batches (0: the cores this process may use, 2-16)
    config.data.workers = 0  # Grain worker processes (0: threads only; > 0 needs data.cache_dir)
    config.data.prefetch = 4  # batches prepared ahead of the training step

    # Optimisation (paper: L1, Adam 0.9/0.999/1e-8, learning rate 1e-4 halved every 2e5 updates, batch 16).
    config.num_train_steps = 300_000  # updates (EDSR 300k, MDSR 650k in the official runs)
    config.learning_rate = 1e-4  # peak learning rate
    config.learning_rate_schedule = "step"  # "step" (x ..._decay_factor every ..._decay_steps) or "cosine"
    config.learning_rate_decay_steps = 200_000  # steps between decays of the "step" schedule
    config.learning_rate_decay_factor = 0.5  # multiplier at each decay of the "step" schedule
    config.warmup_fraction = 0.0  # linear warm-up over this fraction of num_train_steps
    config.adam_b1 = 0.9  # Adam beta1
    config.adam_b2 = 0.999  # Adam beta2 (BasicSR uses 0.99; the paper 0.999)
    config.adam_eps = 1e-8  # Adam epsilon
    config.init_from = ""  # start from: a workdir (best by val PSNR), a model folder, a .pt, a published name
    config.loss = "l1"  # "l1" (the paper) or "l2" (SRResNet's, for the paper's ablation)
    # Not in the paper (off): the peers' and the official code's stability and averaging options.
    config.ema_decay = 0.0  # > 0 (e.g. 0.999): keep an EMA of the weights, which readers then use
    config.grad_clip_norm = 0.0  # > 0: clip the gradients' global L2 norm to this (0 = off)
    config.skip_loss_factor = 0.0  # > 1: skip updates whose loss exceeds this x the running mean

    # Logging, checkpoints and validation.
    config.log_every_steps = 100  # console line and TensorBoard training scalars
    config.checkpoint_every_steps = 5_000  # Orbax checkpoint cadence (also at each eval and the end)
    config.keep_checkpoints = 3  # keep this many latest checkpoints (plus the best by val PSNR)
    config.async_checkpoints = True  # write checkpoints in the background
    config.eval_every_steps = 10_000  # validation cadence (0 = only at the end)
    config.eval = ml_collections.ConfigDict()
    config.eval.num_images = 10  # validation images scored (0 = all of data.val_range)
    config.eval.protocol = "div2k"  # "div2k" (RGB, shave scale+6) or "benchmark" (Y, shave scale)
    config.eval.self_ensemble = False  # score with the x8 self-ensemble (EDSR+)
    config.eval.benchmark_dir = ""  # folder with Set5/Set14/B100/Urban100 ("" = skip benchmarks)
    config.eval.benchmarks = ("Set5", "Set14", "B100", "Urban100")  # sets scored when it is set
    config.eval.image_crop = 48  # LR side of the crops written as TensorBoard images
    config.distributed = False  # call jax.distributed.initialize() (multi-host; also via env)
    config.steps_per_call = 1  # steps per dispatch (accelerators; the loop is slow on CPUs)
    config.compilation_cache_dir = "auto"  # XLA cache: "auto" (per-user), a folder, or "" (off)
    return config


def use_full_edsr(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The full EDSR of the paper (B32, F256, residual scaling 0.1); changes ``config`` in place."""
    config.model.num_blocks = 32  # B
    config.model.num_features = 256  # F
    config.model.res_scale = 0.1  # the residual scaling that keeps the wide model stable
    return config


def apply_cpu_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The short CPU recipe of the demo and test configs, in place (RESULTS.md "Demo")."""
    config.data.source = "skimage"  # the photographs scikit-image installs (no download)
    config.data.flat_patch_threshold = 4.0  # redraw LR patches with a std below 4 grey levels
    config.data.prefetch = 2  # few batches ahead: the CPU also runs the steps
    config.learning_rate = 1e-3  # peak; short runs need more than the paper's 1e-4
    config.learning_rate_schedule = "cosine"  # decays to 0 at num_train_steps
    config.warmup_fraction = 0.05  # linear warm-up over the first 5 % of the steps
    return config
