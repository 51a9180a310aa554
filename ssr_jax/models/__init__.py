"""Model construction from `config.model` (a backbone and a head), the age readout, and parameter accounting.

Backbones (`model.backbone`), each images → features, then the head's output layer on them:
  ssrnet — the SSR-Net trunk: two streams and a fusion block per stage (`ssr_jax/models/ssrnet.py`); K stages of
        widths `model.stages` for the SSR head, one stage (its width s = the head's number of bins) for the others.
  mobilenet, densenet — the paper's compact baselines as the reference builds them (Keras MobileNet v1 of width
        `model.mobilenet_alpha`, titu1994 DenseNet of depth `model.densenet_depth`), up to the reference head's
        Dense 32 (`ssr_jax/models/mobilenet.py`, `densenet.py`). Their BatchNorm epsilons are those architectures'
        own.
Heads (`model.head`): `ssr_jax.models.heads` — ssr, dex, regression, coral, corn, or_cnn, mean_variance, dldl,
dldl_v2, sord; every head on every backbone except ssr, whose stages need the SSR-Net trunk. The configs name the
pairs: SSR-Net = (ssrnet, ssr), DEX = (ssrnet, dex), regression = (ssrnet, regression), the baselines = (mobilenet
| densenet, regression).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssr_jax.config_lib import fail
from ssr_jax.models import densenet
from ssr_jax.models import onednn
from ssr_jax.models import conv as conv_lib
from ssr_jax.models.conv import CONV_CHOICES, Kernels
from ssr_jax.models import heads
from ssr_jax.models.densenet import DenseNet
from ssr_jax.models.heads import dex as dex_head
from ssr_jax.models.heads.ssr import P_ACTIVATIONS
from ssr_jax.models.mobilenet import MobileNet
from ssr_jax.models.ssrnet import SSRNet
from ssr_jax.xla_options import run_once

BACKBONES = ("ssrnet", "mobilenet", "densenet")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
MAX_STAGES = 4
MIN_IMAGE_SIZE = 38  # the four 3×3 VALID convolutions and three poolings of the SSR-Net streams


def create_model(model_config, kernels: Kernels | None = None) -> SSRNet | MobileNet | DenseNet:
    """The Flax module for `config.model`: its backbone (BatchNorm and dropout settings) with its head's layer,
    convolving with `kernels` — what a run resolved from its devices (`conv.kernels`); by default `model.conv`
    resolved here, before any trace, for the default device, unvmapped."""
    kernels = kernels or conv_lib.kernels(model_config.conv, platform=jax.default_backend())
    common = dict(head=heads.create(model_config), dropout_rate=model_config.dropout_rate,
                  bn_momentum=model_config.bn_momentum, conv=kernels)
    if model_config.backbone == "mobilenet":
        return MobileNet(alpha=model_config.mobilenet_alpha, **common)
    if model_config.backbone == "densenet":
        return DenseNet(depth=model_config.densenet_depth, **common)
    return SSRNet(stages=tuple(model_config.stages), bn_epsilon=model_config.bn_epsilon,
                  dtype=COMPUTE_DTYPES[model_config.compute_dtype], **common)


INPUT_SCALES = {"raw": (1.0, 0.0), "unit": (1 / 255, 0.0), "symmetric": (2 / 255, -1.0)}  # x · a + b


def model_input(images: jnp.ndarray, data_config) -> jnp.ndarray:
    """Stored uint8 BGR images `[..., H, W, 3]` → the float32 input the model trains on: `data.colour_order`
    (the reference feeds BGR, as cv2 reads) and `data.input_scale` (raw 0–255 = the reference; unit [0, 1];
    symmetric [−1, 1])."""
    images = images.astype(jnp.float32)
    if data_config.colour_order == "RGB":
        images = images[..., ::-1]
    scale, offset = INPUT_SCALES[data_config.input_scale]
    return images if (scale, offset) == (1.0, 0.0) else images * scale + offset


def architecture_label(model_config) -> str:
    """A short name for the architecture: "ssr-3x3x3", "dex-101", "mobilenet-0.25-regression",
    "densenet-19-coral"."""
    if model_config.backbone == "mobilenet":
        return f"mobilenet-{model_config.mobilenet_alpha:g}-{model_config.head}"
    if model_config.backbone == "densenet":
        return f"densenet-{model_config.densenet_depth}-{model_config.head}"
    return f"{model_config.head}-{'x'.join(map(str, model_config.stages))}"


# What `model.family` named in configs recorded before the backbone and the head were separate choices.
FAMILY_PAIRS = {"ssr": ("ssrnet", "ssr"), "dex": ("ssrnet", "dex"), "regression": ("ssrnet", "regression"),
                "mobilenet": ("mobilenet", "regression"), "densenet": ("densenet", "regression")}


def upgrade_recorded(record: dict) -> dict:
    """A recorded config (config.json's JSON) with `model.family` → the same model as `model.backbone` and
    `model.head` (the baselines with one stage, as their configs now say); any other record as it is."""
    if "family" not in record.get("model", {}):
        return record
    model = {key: value for key, value in record["model"].items() if key != "family"}
    model["backbone"], model["head"] = FAMILY_PAIRS[record["model"]["family"]]
    if model["backbone"] != "ssrnet":
        model["stages"] = [101]
    return {**record, "model": model}


def architecture(model_config) -> dict[str, str]:
    """What summary.json and results rows record of the model: `backbone`, `head` and the `decode` rule used."""
    return {"backbone": model_config.backbone, "head": model_config.head, "decode": heads.decode_rule(model_config)}


def describe(model_config) -> str:
    """One line naming the backbone, the head and their settings, for `ssr-jax info`."""
    model = model_config
    backbone = {"mobilenet": f"mobilenet alpha={model.mobilenet_alpha}", "densenet": f"densenet depth="
                f"{model.densenet_depth}"}.get(model.backbone, f"ssrnet stages={tuple(model.stages)}")
    ssr = f" p={model.p_activation} delta={model.with_delta} eta={model.with_eta}" if model.head == "ssr" else ""
    return f"{backbone}, head {model.head}{ssr}, decode {heads.decode_rule(model)}"


def with_head(model_config, head: str):
    """`model_config` with another head: the SSR head keeps an SSR config's stages (else (3, 3, 3)); a one-stage
    head keeps a one-stage config's width (else V bins, 101 for the reference)."""
    config = model_config.copy_and_resolve_references()
    if head == "ssr" and model_config.head != "ssr":
        config.stages = (3, 3, 3)
    elif head != "ssr" and len(model_config.stages) != 1:
        config.stages = (round(model_config.v),)
    config.head = head
    return config


def head_parameter_counts(model_config, image_size: int) -> dict[str, tuple[tuple[int, ...], int]]:
    """{head: (stages, total parameters)} for every head that can sit on this config's backbone."""
    configs = {head: with_head(model_config, head) for head in heads.HEADS
               if head != "ssr" or model_config.backbone == "ssrnet"}
    return {head: (tuple(config.stages), count_parameters(abstract_variables(config, image_size))["total"])
            for head, config in configs.items()}


def regularisation(model_config, params) -> jnp.ndarray:
    """The weight penalty the reference adds to the training loss: the DenseNet's L2 on some kernels, else 0."""
    if model_config.backbone == "densenet":
        return densenet.weight_decay_penalty(params)
    return jnp.zeros((), jnp.float32)


def predict_age(model_config, outputs: dict, *, lambda_local, lambda_d, rule: str | None = None) -> jnp.ndarray:
    """Ages `[batch]` from the model's outputs by the head's readout under `rule` (default: `model.decode`, else
    the head's own); λ may be traced (a vmapped sweep axis)."""
    head = heads.create(model_config, lambda_local=lambda_local, lambda_d=lambda_d)
    return head.age(outputs, rule or heads.decode_rule(model_config))


def training_loss(model_config, outputs: dict, ages: jnp.ndarray, *, lambda_local, lambda_d) -> jnp.ndarray:
    """The head's training loss (a batch mean) for float ages `[batch]`; λ may be traced."""
    return heads.create(model_config, lambda_local=lambda_local, lambda_d=lambda_d).loss(outputs, ages)


def abstract_variables(model_config, image_size: int) -> Any:
    """Shapes and dtypes of `{'params', 'batch_stats'}` without allocating or running anything (traced with XLA's
    convolutions: every implementation has the same parameters, and nothing needs building)."""
    model = create_model(model_config, Kernels("xla", "xla"))
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    return jax.eval_shape(lambda rng, x: model.init(rng, x, train=False), jax.random.key(0), images)


def init_variables(model, images, key) -> Any:
    """`model.init(key, images, train=False)` as one program compiled for compile speed
    (`xla_options.run_once`), as the trainer compiles its own initialisation: it runs once, and most of
    its compile time at XLA's default optimisation goes to the random draws of the parameters, one threefry
    expansion each (benchmarks/README.md, "Initialisation")."""
    return run_once(lambda key, images: model.init(key, images, train=False), key, images)


def count_parameters(variables) -> dict[str, int]:
    """`trainable` (params), `batch_stats` (BatchNorm moving statistics), `total` and float32 `bytes`."""
    count = lambda tree: int(sum(np.prod(leaf.shape, dtype=int) for leaf in jax.tree.leaves(tree)))  # noqa: E731
    trainable = count(variables.get("params", {}))
    batch_stats = count(variables.get("batch_stats", {}))
    total = trainable + batch_stats
    return {"trainable": trainable, "batch_stats": batch_stats, "total": total, "bytes": 4 * total}


def validate_head(model) -> None:
    """Checks `model.head`, the pair it makes with `model.backbone`, `model.decode` and the head's options."""
    if model.head not in heads.HEADS:
        fail("model.head", model.head, f"must be one of {tuple(heads.HEADS)}")
    if model.head == "ssr" and model.backbone != "ssrnet":
        fail("model.head", model.head, f"SSR's stages read the two streams of the ssrnet backbone; on "
             f"{model.backbone} choose another head (e.g. regression or dex), or --config.model.backbone=ssrnet")
    rules = heads.HEADS[model.head].rules
    if model.decode not in ("", *rules):
        why = heads.HEADS[model.head].only_these_rules
        fail("model.decode", model.decode, f"the {model.head} head can be read by {' or '.join(rules)}"
             + (f" ({why})" if why else "") + "; '' = its own rule")
    if model.dex_loss not in dex_head.LOSSES:
        fail("model.dex_loss", model.dex_loss, f"must be one of {dex_head.LOSSES} (DEX's paper: cross_entropy)")
    for name, fix in (("label_sigma", "DLDL's label σ in years must be positive and finite (paper: 2)"),
                      ("sord_scale", "SORD's distance scale τ in years must be positive and finite (default 2)")):
        if not 0 < model[name] < float("inf"):
            fail(f"model.{name}", model[name], fix)
    for name, paper in (("lambda_mean", 0.2), ("lambda_variance", 0.05), ("lambda_expectation", 1.0)):
        if not 0 <= model[name] < float("inf"):
            fail(f"model.{name}", model[name], f"a loss weight must be finite and not negative (paper: {paper})")


def validate_config(config) -> None:
    """Checks `config.model` and the input it needs (`data.image_size`, `data.input_scale`); raises `ConfigError`."""
    model, data = config.model, config.data
    if model.backbone not in BACKBONES:
        fail("model.backbone", model.backbone, f"must be one of {BACKBONES}")
    validate_head(model)
    stages = model.stages
    if (
        not isinstance(stages, (tuple, list))
        or not 1 <= len(stages) <= MAX_STAGES
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in stages)
    ):
        fail("model.stages", stages, f"needs 1 to {MAX_STAGES} positive integers, e.g. --config.model.stages=3,3,3")
    if model.head != "ssr" and len(stages) != 1:
        fail("model.stages", stages, f"the {model.head} head has one stage, its number of bins (the fusion width "
             "on the SSR-Net backbone), e.g. --config.model.stages='(101,)'")
    if issubclass(heads.HEADS[model.head], heads.Ordinal) and stages[0] < 2:  # s − 1 ≥ 1 binary tasks
        fail("model.stages", stages, f"the {model.head} head needs at least 2 classes, e.g. '(101,)'")
    if not 0 < model.mobilenet_alpha < float("inf"):
        fail("model.mobilenet_alpha", model.mobilenet_alpha, "the MobileNet width multiplier must be positive and "
             "finite (Table 1: 0.25)")
    depth = model.densenet_depth
    if not (isinstance(depth, int) and depth >= 7 and (depth - 4) % 3 == 0):
        fail("model.densenet_depth", depth, "needs depth = 3n + 4 with n >= 1 (the reference: 13 or 19)")
    if model.compute_dtype not in COMPUTE_DTYPES:
        fail("model.compute_dtype", model.compute_dtype, f"must be one of {tuple(COMPUTE_DTYPES)}")
    if model.compute_dtype != "float32" and model.backbone != "ssrnet":
        fail("model.compute_dtype", model.compute_dtype, "mixed precision is implemented for the ssrnet backbone; "
             "the baselines compute in float32")
    if not 0 < model.v < float("inf"):
        fail("model.v", model.v, "the age range V must be positive and finite (the reference uses 101)")
    for name in ("lambda_local", "lambda_d"):
        if not 0.0 <= model[name] <= 1.0:
            fail(f"model.{name}", model[name], "must lie in [0, 1] (0 switches the term off, 1 is the reference)")
    if model.p_activation not in P_ACTIVATIONS:
        fail("model.p_activation", model.p_activation, f"must be one of {tuple(P_ACTIVATIONS)}")
    if model.conv not in CONV_CHOICES:
        fail("model.conv", model.conv, f"must be one of {CONV_CHOICES}")
    if model.conv == "onednn" and (reason := onednn.unavailable()):
        fail("model.conv", model.conv, f"{reason}; choose 'auto'")
    if not 0.0 <= model.dropout_rate < 1.0:
        fail("model.dropout_rate", model.dropout_rate, "must lie in [0, 1)")
    if data.input_scale not in INPUT_SCALES:
        fail("data.input_scale", data.input_scale, f"must be one of {tuple(INPUT_SCALES)} (the reference: raw)")
    if not data.image_size >= MIN_IMAGE_SIZE:
        fail("data.image_size", data.image_size,
             f"the four 3×3 VALID convs and three poolings need at least {MIN_IMAGE_SIZE} pixels (reference: 64)")
