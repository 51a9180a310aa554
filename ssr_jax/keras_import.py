"""Import the Keras reference's released SSR-Net (3,3,3) weights (Keras 2 HDF5) as an ssr_jax model directory.

The released files (shamangary/SSR-Net `pre-trained/<db>/ssrnet_3_3_3_64_1.0_1.0/*.h5`) are `save_weights` files:
one top-level group per layer holding datasets `<layer>/<weight>:0`. A full `model.save` file has the same groups
under `model_weights/`; both are read.

Layer map (ssrnet-facts.md §3.2; the s/x side of each pair checked against the saved Keras graph, where e.g.
dense_1 ← dropout_1 ← flatten_1 ← conv2d_9 ← the 16-channel stream, and against the golden Keras outputs):

  conv2d_1–4, batch_normalization_1–4   x stream (32 ch, ReLU, average pooling)
  conv2d_5–8, batch_normalization_5–8   s stream (16 ch, tanh, max pooling)
  conv2d_9 / 10, dense_1 / 2 / 3        stage 1 (4×4 conv4 tap): s_conv / x_conv, s_mix / x_mix / fused
  conv2d_11 / 12, dense_4 / 5 / 6       stage 2 (pool2 tap)
  conv2d_13 / 14, dense_7 / 8 / 9       stage 3 (pool1 tap)
  delta_sK, pred_age_stageK, local_delta_stageK   stage K's Δ, p, η

Keras stores conv kernels HWIO and dense kernels (in, out) and flattens H, W, C — all as Flax does, so every array
is used unchanged.
"""
from __future__ import annotations

import os
import pathlib

import h5py
import jax
import ml_collections
import numpy as np

from ssr_jax import config_lib, saved_model
from ssr_jax.models import abstract_variables

IMAGE_SIZE = 64
EXPECTS = "64x64 BGR raw 0-255"
# What the released weights are: SSR-Net (3,3,3) with both λ = 1 and ReLU p, on 64×64 input (dotted overrides).
RELEASED_MODEL = {"model.backbone": "ssrnet", "model.head": "ssr", "model.stages": (3, 3, 3), "model.lambda_local": 1.0, "model.lambda_d": 1.0,
                  "model.p_activation": "relu", "model.with_delta": True, "model.with_eta": True, "model.v": 101.0,
                  "data.image_size": IMAGE_SIZE}

# Keras weight name → (Flax collection, Flax leaf name); conv and dense layers both hold kernel + bias.
KERNEL_BIAS = {"kernel": ("params", "kernel"), "bias": ("params", "bias")}
BN_WEIGHTS = {
    "gamma": ("params", "scale"),
    "beta": ("params", "bias"),
    "moving_mean": ("batch_stats", "mean"),
    "moving_variance": ("batch_stats", "var"),
}


def layer_map() -> dict[str, tuple[tuple[str, ...], dict[str, tuple[str, str]]]]:
    """Keras layer name → (Flax module path, {Keras weight: (collection, leaf)}) for SSR-Net (3,3,3)."""
    layers = {}
    for block in range(1, 5):
        for offset, stream in ((0, "x_stream"), (4, "s_stream")):
            layers[f"conv2d_{block + offset}"] = ((stream, f"conv{block}"), KERNEL_BIAS)
            layers[f"batch_normalization_{block + offset}"] = ((stream, f"bn{block}"), BN_WEIGHTS)
    for k in range(1, 4):
        stage = f"stage{k}"
        # Keras numbered the fusion layers in creation order: per stage, conv s then x, dense s, x, then fused.
        conv_s, dense_s = 7 + 2 * k, 3 * k - 2
        names = {
            f"conv2d_{conv_s}": "s_conv", f"conv2d_{conv_s + 1}": "x_conv",
            f"dense_{dense_s}": "s_mix", f"dense_{dense_s + 1}": "x_mix", f"dense_{dense_s + 2}": "fused",
            f"delta_s{k}": "delta", f"pred_age_stage{k}": "p", f"local_delta_stage{k}": "eta",
        }
        for keras_name, flax_name in names.items():
            layers[keras_name] = ((stage, flax_name), KERNEL_BIAS)
    return layers


def reference_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config` (a recipe such as `configs/ssrnet.py`'s) pinned to what the released weights are
    (`RELEASED_MODEL`)."""
    return config_lib.apply_overrides(config, RELEASED_MODEL)


def _weight_groups(file: h5py.File) -> h5py.Group:
    """The group holding one subgroup per layer: the file itself (save_weights) or `model_weights` (model.save)."""
    return file["model_weights"] if "model_weights" in file else file


def _layer_arrays(group: h5py.Group) -> dict[str, np.ndarray]:
    """{"kernel": array, …} from a layer group, whatever the nesting (`conv2d_1/kernel:0` or `kernel:0`)."""
    arrays = {}

    def collect(name, item):
        if isinstance(item, h5py.Dataset):
            arrays[name.rsplit("/", 1)[-1].split(":", 1)[0]] = np.asarray(item, np.float32)

    group.visititems(collect)
    return arrays


def read_keras_weights(h5_path: str | os.PathLike, config: ml_collections.ConfigDict) -> dict:
    """Flax `{"params", "batch_stats"}` for SSR-Net (3,3,3) from a Keras 2 HDF5 weight file (shapes checked
    against `reference_config(config)`).

    Raises ValueError naming the layer (and the expected shape) when the file is not such a file.
    """
    h5_path = pathlib.Path(h5_path)
    if not h5_path.is_file():
        raise FileNotFoundError(f"{h5_path} does not exist")
    if not h5py.is_hdf5(h5_path):
        raise ValueError(f"{h5_path} is not an HDF5 file; expected a Keras 2 SSR-Net (3,3,3) weight file (.h5)")
    try:
        return _read(h5_path, config)
    except (OSError, RuntimeError, KeyError) as error:  # what h5py raises from deep inside HDF5 on a damaged file
        reason = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(f"{h5_path} cannot be read ({reason}); the file is damaged or truncated: download it "
                         "again") from None


def _read(h5_path: pathlib.Path, config: ml_collections.ConfigDict) -> dict:
    expected = jax.tree.map(lambda leaf: leaf.shape, abstract_variables(reference_config(config).model, IMAGE_SIZE))
    variables = {"params": {}, "batch_stats": {}}
    mapping = layer_map()
    with h5py.File(h5_path, "r") as file:
        groups = _weight_groups(file)
        for layer, (module_path, weights) in mapping.items():
            if layer not in groups:
                raise ValueError(f"layer {layer} missing from {h5_path}; is this an SSR-Net (3,3,3) weight file?")
            arrays = _layer_arrays(groups[layer])
            for keras_name, (collection, leaf) in weights.items():
                want = _lookup(expected[collection], module_path)[leaf]
                if keras_name not in arrays:
                    raise ValueError(f"{layer}/{keras_name} missing from {h5_path}; expected shape {want}")
                if arrays[keras_name].shape != want:
                    raise ValueError(
                        f"{layer}/{keras_name}: expected shape {want}, file has {arrays[keras_name].shape}"
                    )
                node = variables[collection]
                for name in module_path:
                    node = node.setdefault(name, {})
                node[leaf] = arrays[keras_name]
        # Layers with weights that the map does not know mean a different architecture (e.g. a fourth stage).
        extra = sorted(name for name in groups if name not in mapping and _layer_arrays(groups[name]))
        if extra:
            raise ValueError(
                f"{h5_path} has weighted layers an SSR-Net (3,3,3) file does not have: {', '.join(extra)}"
            )
    insane = _insane_weight(variables)
    if insane:
        raise ValueError(f"{h5_path}: {insane}, which no trained SSR-Net has; the file is damaged: download it again")
    return variables


# Bounds no trained SSR-Net comes near (the released files: parameters within ±2.5, BatchNorm moving means within
# ±700 and variances within 0.6-1.4e5 on raw 0-255 input), and bytes overwritten with noise land far beyond them
# (a float32 of random bits exceeds 1e3 in magnitude nearly half the time).
PARAMETER_LIMIT, MEAN_LIMIT, VARIANCE_LIMIT = 1e3, 1e6, 1e9


def _insane_weight(variables: dict) -> str | None:
    """What makes the weights unusable — the first non-finite or out-of-bounds array, or a BatchNorm variance that
    is not positive — or None."""
    for name, leaf in saved_model.named_leaves(variables):
        if not np.all(np.isfinite(leaf)):
            return f"{name} holds {int(np.sum(~np.isfinite(leaf)))} non-finite value(s) (NaN or infinity)"
        if name.endswith("/var"):
            if not (np.all(leaf > 0) and np.all(leaf <= VARIANCE_LIMIT)):
                return f"{name} holds a moving variance of {float(leaf.min() if leaf.min() <= 0 else leaf.max()):g}"
            continue
        limit = MEAN_LIMIT if name.endswith("/mean") else PARAMETER_LIMIT
        if np.abs(leaf).max() > limit:
            return f"{name} holds {float(leaf.flat[np.abs(leaf).argmax()]):g}, beyond ±{limit:g}"
    return None


def _lookup(tree: dict, path: tuple[str, ...]) -> dict:
    for name in path:
        tree = tree[name]
    return tree


def convert_keras(h5_path: str | os.PathLike, out_dir: str | os.PathLike,
                  config: ml_collections.ConfigDict) -> pathlib.Path:
    """Writes the Keras weights as a model directory (`saved_model.load`-able) whose config is
    `reference_config(config)`, and returns its path."""
    h5_path = pathlib.Path(h5_path).resolve()
    saved_model.check_new_directory(out_dir)  # before reading: nothing to wait for when --out is taken
    variables = read_keras_weights(h5_path, config)
    source = {"kind": "keras", "file": str(h5_path), "expects": EXPECTS}
    return saved_model.save(out_dir, reference_config(config), variables, source=source)
