"""Layer-by-layer comparison of a Flax model with a saved Keras 2 architecture (`model.to_json()`).

Why: the baselines (`mobilenet.py`, `densenet.py`) must be the reference's Keras models exactly, and a parameter
total alone says neither which layer is wrong nor whether strides, padding or BatchNorm settings match. Both sides
are reduced to the same `Layer` records — one per layer that holds weights and one per dropout, in the order they
run — so that a mismatch names the first differing layer. Activations and pooling are plain functions in Flax, not
modules, so they are not records; pooling still shows in the next layer's output shape.

Keras side: the JSON graph (nested models flattened into their parent) with output shapes inferred layer by
layer; trainable = kernels, biases and BN γ/β, non-trainable = BN moving mean/variance. Flax side: the model's
Conv/Dense/BatchNorm/Dropout modules in call order (found with `capture_intermediates` under `jax.eval_shape`,
nothing is computed), `params` counted as trainable and `batch_stats` as non-trainable.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Keras layer classes that become `Layer` records, and the Flax modules that correspond to them.
_RECORDED = {"Conv2D", "DepthwiseConv2D", "Dense", "BatchNormalization", "Dropout"}
_FLAX_RECORDED = (nn.Conv, nn.Dense, nn.BatchNorm, nn.Dropout)


@dataclasses.dataclass(frozen=True)
class Layer:
    """One weighted or dropout layer. `config` holds what determines its computation; the name and the L2 factor
    are not compared (the regulariser is a training-loss term: `densenet.weight_decay_penalty`)."""

    kind: str  # "conv", "depthwise_conv", "dense", "batch_norm" or "dropout"
    config: tuple  # conv: (features, kernel_size, strides, padding, use_bias); dense: (features, use_bias);
    #                batch_norm: (epsilon, momentum); dropout: (rate,)
    trainable: int
    non_trainable: int
    output_shape: tuple[int, ...]  # without the batch axis
    name: str = dataclasses.field(compare=False)
    l2: float = dataclasses.field(default=0.0, compare=False)


def read_keras_layers(json_path: str | os.PathLike) -> list[Layer]:
    """The weighted and dropout layers of a saved Keras 2 model architecture, in graph order."""
    with open(json_path) as f:
        model = json.load(f)
    layers: list[Layer] = []
    _walk(model["config"]["layers"], {}, layers)
    return layers


def flax_layers(model: nn.Module, image_size: int = 64) -> list[Layer]:
    """The model's Conv/Dense/BatchNorm/Dropout modules in call order (eval mode, one `[1, size, size, 3]` image)."""
    modules: list[nn.Module] = []

    def record(module: nn.Module, method_name: str) -> bool:
        keep = method_name == "__call__" and isinstance(module, _FLAX_RECORDED)
        if keep:
            modules.append(module)
        return keep

    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    variables = jax.eval_shape(
        lambda key, x: model.init(key, x, train=False, capture_intermediates=record), jax.random.key(0), images
    )
    count = lambda tree: int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))  # noqa: E731
    layers = []
    for module in modules:
        path = module.path
        params, stats, outputs = (_subtree(variables.get(c, {}), path) for c in ("params", "batch_stats", "intermediates"))
        shape = tuple(outputs["__call__"][0].shape[1:])
        layers.append(Layer(_kind(module), _config(module), count(params), count(stats), shape, "/".join(path)))
    return layers


def first_difference(expected: list[Layer], actual: list[Layer]) -> str | None:
    """A message naming the first layer where the two lists differ, or None when they agree."""
    for index, (keras, flax) in enumerate(zip(expected, actual)):
        if keras != flax:
            return f"layer {index}: Keras {keras.name} {keras} ≠ Flax {flax.name} {flax}"
    if len(expected) != len(actual):
        return f"{len(expected)} Keras layers ≠ {len(actual)} Flax layers"
    return None


def _walk(layers: list[dict], shapes: dict[str, tuple], out: list[Layer]) -> None:
    """Infer every layer's output shape into `shapes` (by layer name) and append the recorded ones to `out`.

    Unknown layer classes (a Lambda preprocessing layer, say) are refused rather than skipped.
    """
    for layer in layers:
        class_name, config, name = layer["class_name"], layer["config"], layer["name"]
        inbound = [shapes[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        if class_name == "InputLayer":
            shape = tuple(config["batch_input_shape"][1:])
        elif class_name == "Model":
            (inner_input,) = [entry[0] for entry in config["input_layers"]]
            (inner_output,) = [entry[0] for entry in config["output_layers"]]
            nested = {inner_input: inbound[0]}
            _walk([entry for entry in config["layers"] if entry["name"] != inner_input], nested, out)
            shape = nested[inner_output]
        elif class_name in _RECORDED:
            out.append(_layer(class_name, config, inbound[0], name))
            shape = out[-1].output_shape
        elif class_name == "Activation":
            shape = inbound[0]
        elif class_name == "Concatenate":
            shape = inbound[0][:-1] + (sum(s[-1] for s in inbound),)
        elif class_name == "AveragePooling2D":
            pool, strides, padding = config["pool_size"], config["strides"], config["padding"].upper()
            height, width, channels = inbound[0]
            shape = (_out_size(height, pool[0], strides[0], padding), _out_size(width, pool[1], strides[1], padding),
                     channels)
        elif class_name == "GlobalAveragePooling2D":
            shape = inbound[0][-1:]
        elif class_name == "Flatten":
            shape = (int(np.prod(inbound[0])),)
        else:
            raise ValueError(f"unsupported Keras layer {class_name} ({name})")
        if name in shapes:
            raise ValueError(f"duplicate Keras layer name {name}")
        shapes[name] = shape


def _layer(class_name: str, config: dict, in_shape: tuple, name: str) -> Layer:
    l2 = float((config.get("kernel_regularizer") or {}).get("config", {}).get("l2", 0.0))
    if class_name in ("Conv2D", "DepthwiseConv2D"):
        (kh, kw), strides, padding = tuple(config["kernel_size"]), tuple(config["strides"]), config["padding"].upper()
        height, width, c_in = in_shape
        if class_name == "Conv2D":
            kind, features, weights = "conv", config["filters"], kh * kw * c_in * config["filters"]
        else:
            kind, features = "depthwise_conv", c_in * config["depth_multiplier"]
            weights = kh * kw * features
        use_bias = config["use_bias"]
        out = (_out_size(height, kh, strides[0], padding), _out_size(width, kw, strides[1], padding), features)
        return Layer(kind, (features, (kh, kw), strides, padding, use_bias), weights + use_bias * features, 0, out,
                     name, l2)
    if class_name == "Dense":
        (c_in,), units, use_bias = in_shape, config["units"], config["use_bias"]
        return Layer("dense", (units, use_bias), c_in * units + use_bias * units, 0, (units,), name, l2)
    if class_name == "BatchNormalization":
        channels = in_shape[-1]
        trainable = channels * (int(config["center"]) + int(config["scale"]))
        return Layer("batch_norm", (config["epsilon"], config["momentum"]), trainable, 2 * channels, in_shape, name)
    return Layer("dropout", (config["rate"],), 0, 0, in_shape, name)


def _out_size(size: int, kernel: int, stride: int, padding: str) -> int:
    return math.ceil(size / stride) if padding == "SAME" else (size - kernel) // stride + 1


def _subtree(tree, path):
    for key in path:
        tree = tree.get(key, {})
    return tree


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.Conv):
        return "depthwise_conv" if module.feature_group_count > 1 else "conv"
    if isinstance(module, nn.Dense):
        return "dense"
    return "dropout" if isinstance(module, nn.Dropout) else "batch_norm"


def _config(module: nn.Module) -> tuple:
    if isinstance(module, nn.Conv):
        rank = len(module.kernel_size)
        strides = module.strides if isinstance(module.strides, tuple) else (module.strides or 1,) * rank
        return (module.features, tuple(module.kernel_size), tuple(strides), module.padding, module.use_bias)
    if isinstance(module, nn.Dense):
        return (module.features, module.use_bias)
    if isinstance(module, nn.Dropout):
        return (module.rate,)
    return (module.epsilon, module.momentum)
