"""Defaults shared by every experiment: the Keras reference's recipe on the embedded synthetic dataset.

Not meant to be trained directly (it has no schedule argument); `ssrnet.py` is this recipe as a runnable config,
with its command and the result to expect; every config starts from it. Fields and their reference values:
  model.*   SSR-Net (3,3,3) (backbone ssrnet, head ssr), V = 101, λ_local = λ_d = 1, ReLU p, BatchNorm momentum 0.99 /
            epsilon 1e-3, dropout 0.2
  optim.*   Adam lr 1e-3 (the code; the paper text says 2e-3), ε 1e-8, ×0.1 at 1/3 and 2/3 of training
  train.*   batch 50, 90 epochs, L1 loss in years
  data.*    synthetic faces (64×64×3 uint8 BGR, ages 0–100), a fixed dataset seed independent of the run seed;
            augmentation as the reference: flip p=0.5, then p=0.25 each rotation ±20°, shear 0.2, shift 0.2,
            zoom 0.8–1.2
"""
import ml_collections

from ssr_jax.config_lib import ConfigError


def get_config():
    """The recipe, then this machine's settings."""
    return machine_settings(recipe())


def recipe():
    """What a run trains and on what: the paper's model, optimiser, schedule, data and augmentation. Changing any of
    these changes the result a run should reach."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    # A model directory whose weights start this run (the reference: IMDB from scratch → WIKI from the IMDB model →
    # MORPH2 from the WIKI model); "" = random initialisation.
    config.init_from = ""

    config.model = ml_collections.ConfigDict()
    # The architecture is a backbone (ssrnet, mobilenet, densenet) and a head (ssr_jax/models/heads: ssr, dex,
    # regression, coral, corn, or_cnn, mean_variance, dldl, dldl_v2, sord); the head's decision rule ("" = its own;
    # expectation, median or mode where the head gives a distribution over ages).
    config.model.backbone = "ssrnet"
    config.model.head = "ssr"
    config.model.decode = ""
    config.model.stages = (3, 3, 3)
    config.model.v = 101.0
    config.model.lambda_local = 1.0
    config.model.lambda_d = 1.0
    config.model.p_activation = "relu"
    config.model.with_delta = True
    config.model.with_eta = True
    config.model.dropout_rate = 0.2
    config.model.bn_momentum = 0.99
    config.model.bn_epsilon = 1e-3
    # The other heads' options (their papers' values): DEX's loss ("l1" on the expectation, as SSR's; or
    # "cross_entropy"), mean-variance's λ1, λ2, DLDL's and DLDL-v2's label σ (years), DLDL-v2's λ, SORD's τ (years).
    config.model.dex_loss = "l1"
    config.model.lambda_mean = 0.2
    config.model.lambda_variance = 0.05
    config.model.label_sigma = 2.0
    config.model.lambda_expectation = 1.0
    config.model.sord_scale = 2.0
    # The baselines' sizes (backbones mobilenet / densenet): Table 1's are α = 0.25 and depth 19.
    config.model.mobilenet_alpha = 0.25
    config.model.densenet_depth = 19

    config.data = ml_collections.ConfigDict()
    config.data.name = "synthetic"
    config.data.num_train = 10_000
    config.data.num_test = 2_500
    config.data.image_size = 64
    config.data.age_distribution = "uniform"
    config.data.age_min = 0
    config.data.age_max = 100
    config.data.seed = 0
    # A prepared dataset instead (`ssr-jax data prepare NAME --manual_dir DIR` first) is named by data.name and its
    # split protocol ("" = the dataset's default, e.g. morph2's random 80/20; "subject" = subject-exclusive;
    # "benchmark" = split `split_index` 0–4 of the benchmark's ten folds, with a validation part that selects the
    # reported epoch: ssr_jax/data/folds.py). `fold_file`: the benchmark's folds from this file (file,fold rows,
    # e.g. from `ssr-jax data export-folds`) instead of the dataset's own.
    config.data.protocol = ""
    config.data.split_index = -1
    config.data.fold_file = ""
    # What the model sees: colour order and scale of the stored uint8 BGR images (reference: BGR, raw 0–255).
    config.data.colour_order = "BGR"
    config.data.input_scale = "raw"
    # The reference's training augmentation (ssr_jax/data/augment.py), on the device, off at evaluation. A range of
    # 0 (or flip=False) leaves that transform out; enabled=False turns all of it off.
    config.data.augment = ml_collections.ConfigDict()
    config.data.augment.enabled = True
    config.data.augment.flip = True
    config.data.augment.rotation_deg = 20.0
    config.data.augment.shear = 0.2
    config.data.augment.shift = 0.2
    config.data.augment.zoom = (0.8, 1.2)
    config.data.augment.probability = 0.25

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 50
    config.train.epochs = 90

    config.optim = ml_collections.ConfigDict()
    config.optim.learning_rate = 1e-3
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.eps = 1e-8
    config.optim.decay_fractions = (1 / 3, 2 / 3)
    config.optim.decay_factor = 0.1
    return config


def machine_settings(config):
    """How a run computes here: implementations, devices, memory and I/O. The same parameters and, up to rounding,
    the same numbers whatever these are (bfloat16 aside, which changes rounding on purpose)."""
    # Where prepared datasets live ("" = $SSR_JAX_DATA_DIR or ~/ssr_jax_data) and a cap on examples per split for
    # quick runs (0 = all).
    config.data.data_dir = ""
    config.data.cap = 0
    # Training examples on the device at a time (0: the whole split, the fast default). Set it when a split does
    # not fit in device memory (IMDB at full size is ~2.2 GB of uint8): each epoch then streams chunks.
    config.data.device_chunk = 0
    # How convolutions and poolings are computed: "auto" (the fastest program per backend and pass), "onednn"
    # (CPU), "mixed", "patches" or "xla" (lax.conv). Same parameters and results; ssr_jax/models/conv.py says which
    # runs where.
    config.model.conv = "auto"
    # "bfloat16": the two streams compute in bfloat16 (mixed precision; parameters, optimizer state, heads and
    # readout stay float32). The ssrnet backbone only.
    config.model.compute_dtype = "float32"
    config.train.eval_batch_size = 500
    # Images evaluated at once across a vmapped group's members: a group of 25 at eval batch 500 would hold 12,500
    # images' activations (≈30 GB on a CPU); above this many, members are evaluated a few at a time (lax.map).
    config.train.eval_images_at_once = 2500
    config.train.checkpoint_every = 1
    # Also time the finished model's inference on the host CPU, one image at a time (Table 1's "CPU inference").
    config.train.measure_inference = False

    # Devices (ssr_jax/parallel.py): `members` split a vmapped group's member axis, `data` split each batch; a
    # run uses members × data devices (on several hosts too). 1 × 1 = one device.
    config.parallel = ml_collections.ConfigDict()
    config.parallel.members = 1
    config.parallel.data = 1
    config.parallel.shard_data = False  # True: the dataset split over the data devices instead of copied to each
    return config


# The schedules a config's argument can name (`configs/ssrnet.py:medium`), for `parse_arg`; none = the recipe's.
SCHEDULES = {"smoke": False, "demo": False, "medium": False}


def schedule(config, arg):
    """The schedule `arg` names (`parse_arg` over `SCHEDULES`): data sizes, batch and epochs only, except `smoke`,
    which also changes the model (`smoke_model`).
      smoke   64 train / 40 test, batch 16, 2 epochs (tests: seconds)
      demo    3,000 / 1,000, 6 epochs (`make demo`: minutes)
      medium  5,000 / 2,500, 20 epochs, learning-rate drops at 1/3 and 2/3 as the recipe's (the experiments'
              recorded results, RESULTS.md: minutes per run on a 2-core CPU)
    """
    if sum(bool(arg[name]) for name in SCHEDULES) > 1:
        raise ConfigError(f"choose one schedule of {', '.join(SCHEDULES)}, e.g. configs/ssrnet.py:medium")
    if arg.smoke:
        config.data.num_train, config.data.num_test = 64, 40
        config.train.batch_size, config.train.epochs, config.train.eval_batch_size = 16, 2, 32
        return smoke_model(config)
    if arg.demo:
        config.data.num_train, config.data.num_test = 3_000, 1_000
        config.train.epochs = 6
    elif arg.medium:
        config.data.num_train, config.data.num_test = 5_000, 2_500
        config.train.epochs = 20
    return config


def smoke_model(config):
    """The smoke schedule's model change: BatchNorm momentum 0.8 instead of the reference's 0.99. Eight steps leave
    momentum-0.99 running averages ~92% at their initial values, which makes the evaluation net (raw 0–255 input)
    blow up; a shorter memory keeps smoke metrics finite and comparable."""
    config.model.bn_momentum = 0.8
    return config
