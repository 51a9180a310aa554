"""Model construction from `config.model`, the age readout, and parameter accounting.

Families:
  ssr — SSR-Net with the soft stagewise readout (`ssr_jax.ssr.ssr_age`).
  dex — the same backbone with one softmax stage (usually 101 bins) and the DEX expectation readout, no Δ/η heads.
  regression — the same backbone and one fusion stage of width s (stages=(s,)), whose p layer is one linear unit:
        age = V · output (V only sets the output's scale at initialisation, as it does for DEX and SSR).
  mobilenet, densenet — the paper's compact baselines as the reference builds them (Keras MobileNet v1 of width
        `model.mobilenet_alpha`, titu1994 DenseNet of depth `model.densenet_depth`, each with its plain regression
        head; `ssr_jax/models/mobilenet.py`, `densenet.py`). Their BatchNorm epsilons are those architectures' own.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssr_jax.config_lib import fail
from ssr_jax.models import densenet
from ssr_jax.models import onednn
from ssr_jax.models.conv import CONV_CHOICES
from ssr_jax.models.densenet import DenseNetRegressor
from ssr_jax.models.mobilenet import MobileNetRegressor
from ssr_jax.models.ssrnet import SSRNet
from ssr_jax.ssr import dex_age, ssr_age

FAMILIES = ("ssr", "dex", "regression", "mobilenet", "densenet")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Families whose module returns the age itself ({"age": [batch]}) rather than SSR heads.
DIRECT_AGE_FAMILIES = ("mobilenet", "densenet")
# Families with one stage and no Δ/η heads, whose p activation is part of the family.
FIXED_P_ACTIVATION = {"dex": "softmax", "regression": "linear"}
P_ACTIVATIONS = ("relu", "softmax", "linear")
MAX_STAGES = 4
MIN_IMAGE_SIZE = 38  # the four 3×3 VALID convolutions and three poolings of the SSR-Net streams


def create_model(model_config) -> SSRNet | MobileNetRegressor | DenseNetRegressor:
    """The Flax module for `config.model` (family, stages, heads, BatchNorm and dropout settings)."""
    common = dict(dropout_rate=model_config.dropout_rate, bn_momentum=model_config.bn_momentum,
                  conv=model_config.conv)
    if model_config.family == "mobilenet":
        return MobileNetRegressor(alpha=model_config.mobilenet_alpha, **common)
    if model_config.family == "densenet":
        return DenseNetRegressor(depth=model_config.densenet_depth, **common)
    is_ssr = model_config.family == "ssr"
    return SSRNet(
        stages=tuple(model_config.stages),
        p_activation=FIXED_P_ACTIVATION.get(model_config.family, model_config.p_activation),
        p_outputs=1 if model_config.family == "regression" else None,
        with_delta=is_ssr and model_config.with_delta,
        with_eta=is_ssr and model_config.with_eta,
        dropout_rate=model_config.dropout_rate,
        bn_momentum=model_config.bn_momentum,
        bn_epsilon=model_config.bn_epsilon,
        conv=model_config.conv,
        dtype=COMPUTE_DTYPES[model_config.compute_dtype],
    )


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
    """A short name for the architecture: "ssr-3x3x3", "dex-101", "mobilenet-0.25", "densenet-19"."""
    if model_config.family == "mobilenet":
        return f"mobilenet-{model_config.mobilenet_alpha:g}"
    if model_config.family == "densenet":
        return f"densenet-{model_config.densenet_depth}"
    return f"{model_config.family}-{'x'.join(map(str, model_config.stages))}"


def regularisation(model_config, params) -> jnp.ndarray:
    """The weight penalty the reference adds to the training loss: the DenseNet's L2 on some kernels, else 0."""
    if model_config.family == "densenet":
        return densenet.weight_decay_penalty(params)
    return jnp.zeros((), jnp.float32)


def predict_age(model_config, heads: dict, *, lambda_local, lambda_d) -> jnp.ndarray:
    """Ages `[batch]` from the model's heads; λ may be traced (a vmapped sweep axis)."""
    if model_config.family in DIRECT_AGE_FAMILIES:
        return heads["age"]
    if model_config.family == "dex":
        return dex_age(heads["p"][0], v=model_config.v)
    if model_config.family == "regression":
        return model_config.v * heads["p"][0][:, 0]
    return ssr_age(
        heads["p"],
        heads["eta"],
        heads["delta"],
        stages=tuple(model_config.stages),
        v=model_config.v,
        lambda_local=lambda_local,
        lambda_d=lambda_d,
    )


def abstract_variables(model_config, image_size: int) -> Any:
    """Shapes and dtypes of `{'params', 'batch_stats'}` without allocating or running anything."""
    model = create_model(model_config)
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    return jax.eval_shape(lambda rng, x: model.init(rng, x, train=False), jax.random.key(0), images)


def count_parameters(variables) -> dict[str, int]:
    """`trainable` (params), `batch_stats` (BatchNorm moving statistics), `total` and float32 `bytes`."""
    count = lambda tree: int(sum(np.prod(leaf.shape, dtype=int) for leaf in jax.tree.leaves(tree)))  # noqa: E731
    trainable = count(variables.get("params", {}))
    batch_stats = count(variables.get("batch_stats", {}))
    total = trainable + batch_stats
    return {"trainable": trainable, "batch_stats": batch_stats, "total": total, "bytes": 4 * total}


def validate_config(config) -> None:
    """Checks `config.model` and the input it needs (`data.image_size`, `data.input_scale`); raises `ConfigError`."""
    model, data = config.model, config.data
    if model.family not in FAMILIES:
        fail("model.family", model.family, f"must be one of {FAMILIES}")
    stages = model.stages
    if (
        not isinstance(stages, (tuple, list))
        or not 1 <= len(stages) <= MAX_STAGES
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in stages)
    ):
        fail("model.stages", stages, f"needs 1 to {MAX_STAGES} positive integers, e.g. --config.model.stages=3,3,3")
    if model.family == "dex" and len(stages) != 1:
        fail("model.stages", stages, "DEX has one softmax stage, e.g. --config.model.stages='(101,)'")
    if not 0 < model.mobilenet_alpha < float("inf"):
        fail("model.mobilenet_alpha", model.mobilenet_alpha, "the MobileNet width multiplier must be positive and "
             "finite (Table 1: 0.25)")
    depth = model.densenet_depth
    if not (isinstance(depth, int) and depth >= 7 and (depth - 4) % 3 == 0):
        fail("model.densenet_depth", depth, "needs depth = 3n + 4 with n >= 1 (the reference: 13 or 19)")
    if model.compute_dtype not in COMPUTE_DTYPES:
        fail("model.compute_dtype", model.compute_dtype, f"must be one of {tuple(COMPUTE_DTYPES)}")
    if model.compute_dtype != "float32" and model.family in DIRECT_AGE_FAMILIES:
        fail("model.compute_dtype", model.compute_dtype, "mixed precision is implemented for ssr, dex and "
             "regression; the baselines compute in float32")
    if model.family == "regression" and len(stages) != 1:
        fail("model.stages", stages, "the regression head has one fusion stage (its width), e.g. '(101,)'")
    if not 0 < model.v < float("inf"):
        fail("model.v", model.v, "the age range V must be positive and finite (the reference uses 101)")
    for name in ("lambda_local", "lambda_d"):
        if not 0.0 <= model[name] <= 1.0:
            fail(f"model.{name}", model[name], "must lie in [0, 1] (0 switches the term off, 1 is the reference)")
    if model.p_activation not in P_ACTIVATIONS:
        fail("model.p_activation", model.p_activation, f"must be one of {P_ACTIVATIONS}")
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
